/* The platform unit on FreeBSD (os.h). Shares os_posix.c with macOS.
 *
 * Written to FreeBSD's manual pages (_umtx_op(2), pthread_attr_get_np(3),
 * accept4(2), pipe2(2), madvise(2)); neither compiled nor run here: there
 * is no FreeBSD toolchain or sysroot on the machines this was written on. */
#include <errno.h>
#include <pthread.h>
#include <pthread_np.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/umtx.h>
#include <ucontext.h>
#include <unistd.h>

#include "base/sys.h"
#include "os/os.h"

/* ---- wait on an address: _umtx_op ------------------------------------------------ */
#ifndef NP_FUTEX_TABLE
void np__os_futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t ns)
{
    /* UMTX_OP_WAIT_UINT_PRIVATE compares an unsigned int; a relative
     * timespec is passed with uaddr (the size argument) = NULL. */
    struct timespec rel = { .tv_sec = ns / NP_SECOND, .tv_nsec = ns % NP_SECOND };
    _umtx_op((void *)word, UMTX_OP_WAIT_UINT_PRIVATE, val, NULL, ns >= 0 ? &rel : NULL);
}

void np__os_futex_wait_until(_Atomic uint32_t *word, uint32_t val, int64_t deadline)
{
    if (deadline <= 0) {
        np__os_futex_wait(word, val, -1);
        return;
    }
    /* An absolute timeout on CLOCK_MONOTONIC: struct _umtx_time, whose size
     * goes in uaddr. */
    struct _umtx_time t = {
        ._timeout = { .tv_sec = deadline / NP_SECOND, .tv_nsec = deadline % NP_SECOND },
        ._flags = UMTX_ABSTIME,
        ._clockid = CLOCK_MONOTONIC,
    };
    _umtx_op((void *)word, UMTX_OP_WAIT_UINT_PRIVATE, val, (void *)(uintptr_t)sizeof t, &t);
}

void np__os_futex_wake(_Atomic uint32_t *word)
{
    _umtx_op((void *)word, UMTX_OP_WAKE_PRIVATE, 1, NULL, NULL);
}
#endif

/* ---- threads and signals -------------------------------------------------------- */

int np__os_thread_stack(void **lo, size_t *size)
{
    *lo = NULL;
    *size = 0;
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc != 0)
        return -rc;
    rc = pthread_attr_get_np(pthread_self(), &attr);
    if (rc == 0)
        rc = pthread_attr_getstack(&attr, lo, size);
    pthread_attr_destroy(&attr);
    return -rc;
}

bool np__os_signal_regs(const void *uc, uintptr_t *pc, uintptr_t *fp, uintptr_t *sp)
{
    const ucontext_t *u = uc;
#if defined(__x86_64__)
    *pc = (uintptr_t)u->uc_mcontext.mc_rip;
    *fp = (uintptr_t)u->uc_mcontext.mc_rbp;
    *sp = (uintptr_t)u->uc_mcontext.mc_rsp;
    return true;
#elif defined(__aarch64__)
    *pc = (uintptr_t)u->uc_mcontext.mc_gpregs.gp_elr;
    *fp = (uintptr_t)u->uc_mcontext.mc_gpregs.gp_x[29];
    *sp = (uintptr_t)u->uc_mcontext.mc_gpregs.gp_sp;
    return true;
#else
    (void)u, (void)pc, (void)fp, (void)sp; /* no known layout */
    return false;
#endif
}

long np__os_read_self(void *out, uintptr_t addr, size_t n)
{
    (void)out; /* no process_vm_readv: backtrace.c reads directly */
    (void)addr;
    (void)n;
    return -ENOSYS;
}

/* ---- memory ------------------------------------------------------------------------ */

void np__os_release_pages(void *addr, size_t len)
{
    /* MADV_DONTNEED only deactivates pages here; MADV_FREE frees them. */
    (void)madvise(addr, len, MADV_FREE);
}

void np__os_no_huge_pages(void *addr, size_t len)
{
    (void)addr; /* superpages are only made of fully populated runs */
    (void)len;
}
