/* The platform unit on macOS (os.h). Shares os_posix.c with FreeBSD.
 *
 * Checked by cross-compiling and linking with zig cc against the macOS
 * SDK headers zig ships (.ci/macos_compile.sh); never run here. */
#include <errno.h>
#include <fcntl.h>
#include <mach/mach.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/sys.h"
#include "os/os.h"

/* ---- wait on an address: __ulock_wait2 / __ulock_wake --------------------------
 *
 * Private but stable system calls (since macOS 10.12; __ulock_wait2, with a
 * timeout in ns, since 11), the ones libc++'s std::atomic::wait and Go's
 * runtime use. macOS 14.4 made them public as os_sync_wait_on_address; the
 * SDK zig ships predates it. Where private symbols are not allowed (the App
 * Store), build with -DNP_FUTEX_TABLE=ON: futex_table.c instead. */
#ifndef NP_FUTEX_TABLE
#if __ENVIRONMENT_MAC_OS_X_VERSION_MIN_REQUIRED__ < 110000
#error "netpoll needs macOS 11 or later (__ulock_wait2), or cmake -DNP_FUTEX_TABLE=ON"
#endif
#define UL_COMPARE_AND_WAIT 1      /* compare a 32-bit word, process-private */
#define ULF_NO_ERRNO 0x01000000    /* return -errno, leave errno alone */

extern int __ulock_wait2(uint32_t operation, void *addr, uint64_t value, uint64_t timeout_ns,
                         uint64_t value2);
extern int __ulock_wake(uint32_t operation, void *addr, uint64_t wake_value);

void np__os_futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t ns)
{
    if (ns == 0)
        return; /* the call's 0 means no limit */
    (void)__ulock_wait2(UL_COMPARE_AND_WAIT | ULF_NO_ERRNO, (void *)word, val,
                        ns < 0 ? 0 : (uint64_t)ns, 0);
}

void np__os_futex_wait_until(_Atomic uint32_t *word, uint32_t val, int64_t deadline)
{
    np__os_futex_wait(word, val, np__os_ns_until(deadline));
}

void np__os_futex_wake(_Atomic uint32_t *word)
{
    (void)__ulock_wake(UL_COMPARE_AND_WAIT | ULF_NO_ERRNO, (void *)word, 0);
}
#endif

/* ---- threads and signals -------------------------------------------------------- */

int np__os_thread_stack(void **lo, size_t *size)
{
    /* The address is the stack's top: it grows down from there. */
    pthread_t self = pthread_self();
    char *top = pthread_get_stackaddr_np(self);
    size_t sz = pthread_get_stacksize_np(self);
    *lo = top - sz;
    *size = sz;
    return 0;
}

bool np__os_signal_regs(const void *uc, uintptr_t *pc, uintptr_t *fp, uintptr_t *sp)
{
    const ucontext_t *u = uc;
    if (!u->uc_mcontext)
        return false;
#if defined(__x86_64__)
    *pc = (uintptr_t)u->uc_mcontext->__ss.__rip;
    *fp = (uintptr_t)u->uc_mcontext->__ss.__rbp;
    *sp = (uintptr_t)u->uc_mcontext->__ss.__rsp;
    return true;
#elif defined(__aarch64__)
    /* Accessors: the fields are opaque where pointers are signed (arm64e). */
    *pc = (uintptr_t)__darwin_arm_thread_state64_get_pc(u->uc_mcontext->__ss);
    *fp = (uintptr_t)__darwin_arm_thread_state64_get_fp(u->uc_mcontext->__ss);
    *sp = (uintptr_t)__darwin_arm_thread_state64_get_sp(u->uc_mcontext->__ss);
    return true;
#else
    (void)pc, (void)fp, (void)sp; /* no known layout */
    return false;
#endif
}

long np__os_read_self(void *out, uintptr_t addr, size_t n)
{
    /* The kernel copies, so an unmapped address is an error, not a fault
     * (crash reporters read a crashed thread's stack so). */
    vm_size_t got = 0;
    kern_return_t kr = vm_read_overwrite(mach_task_self(), (vm_address_t)addr, (vm_size_t)n,
                                         (vm_address_t)out, &got);
    if (kr != KERN_SUCCESS)
        return -EFAULT;
    return (long)got;
}

/* ---- descriptors: no SOCK_NONBLOCK, SOCK_CLOEXEC, accept4 or pipe2 ---------------- */

int np__os_adopt_socket(int fd)
{
    /* MSG_NOSIGNAL is in the headers, but SO_NOSIGPIPE is what every
     * version honours for writes and sends alike. */
    int one = 1;
    return NP__SYS(setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one));
}

/* A new socket (or -errno, passed on): no SIGPIPE, non-blocking and
 * close-on-exec, after the fact. Closes it on failure. */
static int set_flags(int fd)
{
    if (fd < 0)
        return fd;
    int rc = np__os_adopt_socket(fd);
    int fl = rc < 0 ? rc : NP__SYS(fcntl(fd, F_GETFL));
    rc = fl < 0 ? fl : NP__SYS(fcntl(fd, F_SETFL, fl | O_NONBLOCK));
    if (rc >= 0)
        rc = NP__SYS(fcntl(fd, F_SETFD, FD_CLOEXEC));
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int np__os_socket(int domain, int type, int protocol)
{
    return set_flags(NP__SYS(socket(domain, type, protocol)));
}

int np__os_accept(int listen_fd)
{
    /* Close-on-exec is never inherited from the listener: all three flags
     * are set rather than relying on which ones are. */
    return set_flags(NP__SYS(accept(listen_fd, NULL, NULL)));
}

int np__os_pipe(int p[2])
{
    int rc = NP__SYS(pipe(p));
    if (rc < 0)
        return rc;
    if ((rc = NP__SYS(fcntl(p[0], F_SETFD, FD_CLOEXEC))) < 0 ||
        (rc = NP__SYS(fcntl(p[1], F_SETFD, FD_CLOEXEC))) < 0) {
        close(p[0]);
        close(p[1]);
        return rc;
    }
    return 0;
}

/* ---- memory ------------------------------------------------------------------------ */

void np__os_release_pages(void *addr, size_t len)
{
    /* The pages leave the footprint at once and are reclaimed when the
     * system wants them; a later write makes them ours again (the fault
     * takes them back). MADV_FREE_REUSE is not called before reuse: the
     * callers touch the memory from other code paths, and without it only
     * the footprint accounting lags. */
    if (madvise(addr, len, MADV_FREE_REUSABLE) != 0)
        (void)madvise(addr, len, MADV_FREE);
}

void np__os_no_huge_pages(void *addr, size_t len)
{
    (void)addr; /* no transparent huge pages */
    (void)len;
}
