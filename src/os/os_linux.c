/* The platform unit on Linux (os.h). The futex calls are inline in os.h. */
#include <errno.h>
#include <linux/kcmp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "base/sys.h"
#include "os/os.h"

int np__os_thread_stack(void **lo, size_t *size)
{
    *lo = NULL;
    *size = 0;
    pthread_attr_t attr;
    int rc = pthread_getattr_np(pthread_self(), &attr);
    if (rc != 0)
        return -rc;
    rc = -pthread_attr_getstack(&attr, lo, size);
    pthread_attr_destroy(&attr);
    return rc;
}

void np__os_sleep_until(int64_t deadline)
{
    struct timespec ts = { .tv_sec = deadline / NP_SECOND, .tv_nsec = deadline % NP_SECOND };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

void np__os_reraise_default(int sig)
{
    /* Raw system calls: ThreadSanitizer runs handlers late, from its own
     * bookkeeping, and swallowed a signal re-raised through its sigaction
     * and raise. A zeroed kernel sigaction is SIG_DFL, no flags, an empty
     * mask, whatever the architecture's field order. */
    uint64_t dfl[4] = { 0, 0, 0, 0 };
    syscall(SYS_rt_sigaction, sig, dfl, NULL, sizeof(uint64_t));
    syscall(SYS_tgkill, (long)getpid(), (long)syscall(SYS_gettid), (long)sig);
}

void np__os_discard_pending(int sig)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    struct timespec zero = { 0, 0 };
    (void)sigtimedwait(&set, NULL, &zero);
}

bool np__os_signal_regs(const void *uc, uintptr_t *pc, uintptr_t *fp, uintptr_t *sp)
{
#if defined(__x86_64__) && defined(REG_RIP)
    const ucontext_t *u = uc;
    *pc = (uintptr_t)u->uc_mcontext.gregs[REG_RIP];
    *fp = (uintptr_t)u->uc_mcontext.gregs[REG_RBP];
    *sp = (uintptr_t)u->uc_mcontext.gregs[REG_RSP];
    return true;
#elif defined(__aarch64__)
    const ucontext_t *u = uc;
    *pc = (uintptr_t)u->uc_mcontext.pc;
    *fp = (uintptr_t)u->uc_mcontext.regs[29];
    *sp = (uintptr_t)u->uc_mcontext.sp;
    return true;
#else
    (void)uc, (void)pc, (void)fp, (void)sp; /* no known layout */
    return false;
#endif
}

long np__os_read_self(void *out, uintptr_t addr, size_t n)
{
    struct iovec l = { out, n }, r = { (void *)addr, n };
    return NP__SYS(process_vm_readv(getpid(), &l, 1, &r, 1, 0));
}

const char *np__os_strerror(int err)
{
    /* strerror() may format unknown codes into a shared buffer; the table
     * strerrordesc_np() reads is static and thread-safe. */
    return strerrordesc_np(err);
}

/* ---- descriptors (the flags: fd_atomic.c) -------------------------------------- */

int np__os_socket_family(int fd)
{
    int family = 0;
    socklen_t l = sizeof family;
    int rc = NP__SYS(getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &l));
    return rc < 0 ? rc : family;
}

int np__os_same_file(int a, int b)
{
#ifdef SYS_kcmp
    /* The calling thread's id, not getpid(): once the main thread has
     * called pthread_exit, the process's leader is a zombie without a
     * file table and kcmp on it fails; after a fork, getpid() at creation
     * would name the parent. All threads share the table. */
    pid_t self = (pid_t)syscall(SYS_gettid);
    long r = NP__SYS(syscall(SYS_kcmp, self, self, KCMP_FILE, a, b));
    return r < 0 ? (int)r : r == 0;
#else
    (void)a;
    (void)b;
    return -ENOSYS;
#endif
}

/* ---- memory ------------------------------------------------------------------------ */

void np__os_release_pages(void *addr, size_t len)
{
    (void)madvise(addr, len, MADV_DONTNEED);
}

void np__os_no_huge_pages(void *addr, size_t len)
{
    (void)madvise(addr, len, MADV_NOHUGEPAGE);
}

int np__os_usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
