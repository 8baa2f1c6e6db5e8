/* The platform unit: every call the library makes that differs between
 * Linux, macOS and FreeBSD, behind one small interface, the way the poller
 * backends are (poller/poller.h). One file per platform implements it:
 *
 *   os_linux.c    futex(2), pthread_getattr_np, strerrordesc_np,
 *                 process_vm_readv, kcmp, raw sigaction, MADV_DONTNEED
 *   os_darwin.c   __ulock_wait2/__ulock_wake, pthread_get_stackaddr_np,
 *                 fcntl + SO_NOSIGPIPE, vm_read_overwrite, MADV_FREE_REUSABLE
 *   os_freebsd.c  _umtx_op(UMTX_OP_WAIT_UINT_PRIVATE), pthread_attr_get_np,
 *                 MADV_FREE
 *   os_posix.c    what macOS and FreeBSD share (strerror_r, nanosleep,
 *                 sigaction + pthread_kill, getsockname)
 *   fd_atomic.c   what Linux and FreeBSD share: descriptors made with their
 *                 flags (SOCK_NONBLOCK, SOCK_CLOEXEC, accept4, pipe2)
 *   futex_table.c the fallback wait-on-address: a hash table of mutexes and
 *                 condition variables, for a platform without one, or by
 *                 choice (cmake -DNP_FUTEX_TABLE=ON, e.g. where private
 *                 symbols such as __ulock_wait are not allowed)
 *
 * The choice is made in cmake/NetpollOptions.cmake (NP_OS_SOURCES) and
 * nowhere else. Every call that can fail returns -errno, never sets it
 * (base/sys.h: errno is not read after a possible task switch).
 *
 * Linux's futex calls sit on the scheduler's hot paths: they are static
 * inline here, one system call each, as they were before this unit.
 */
#ifndef NP_OS_H
#define NP_OS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

#include "base/sanitizer.h"
#include "netpoll.h"

/* ---- wait on an address (futex) --------------------------------------------
 *
 * np__os_futex_wait sleeps while *word == val, at most ns nanoseconds
 * (ns < 0: no limit); np__os_futex_wait_until until deadline, an absolute
 * CLOCK_MONOTONIC time (np_now's clock; 0: no limit). Both may return early
 * (a signal, a stale wake): callers look at the word again. Wake wakes at
 * most one thread asleep on word. Process-private words only. */
void np__os_futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t ns);
void np__os_futex_wait_until(_Atomic uint32_t *word, uint32_t val, int64_t deadline);
void np__os_futex_wake(_Atomic uint32_t *word);

/* For waits that take a relative timeout: the ns from now to deadline
 * (0: none, as for np__os_futex_wait_until), as np__os_futex_wait takes
 * them: -1 for no limit, 0 once it has passed. */
static inline int64_t np__os_ns_until(int64_t deadline)
{
    if (deadline <= 0)
        return -1;
    int64_t ns = deadline - np_now();
    return ns > 0 ? ns : 0;
}

#if defined(__linux__) && !defined(NP_FUTEX_TABLE)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef NP_TSAN
static inline void np__os_futex_wait_inline(_Atomic uint32_t *word, uint32_t val, int64_t ns)
{
    struct timespec rel = { .tv_sec = ns / NP_SECOND, .tv_nsec = ns % NP_SECOND };
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, ns >= 0 ? &rel : NULL, NULL, 0);
}

static inline void np__os_futex_wait_until_inline(_Atomic uint32_t *word, uint32_t val,
                                                  int64_t deadline)
{
    struct timespec ts, *tsp = NULL;
    if (deadline > 0) {
        ts.tv_sec = (time_t)(deadline / NP_SECOND);
        ts.tv_nsec = (long)(deadline % NP_SECOND);
        tsp = &ts;
    }
    /* BITSET: an absolute timeout, on CLOCK_MONOTONIC. */
    syscall(SYS_futex, word, FUTEX_WAIT_BITSET_PRIVATE, val, tsp, NULL, FUTEX_BITSET_MATCH_ANY);
}
#else
#include "base/sys.h"

/* Under ThreadSanitizer a futex sleep is cut into slices with the signal
 * point between them (base/sanitizer.h): a signal whose handler was
 * queued just before the sleep, or during it, is handled within a slice,
 * not at the thread's next wake-up, which may never come (CI: the dump
 * signal unanswered for 30 s while every worker slept). Returns as the
 * plain call does: when woken, when *word != val, at the deadline. */
#define NP__OS_FUTEX_SLICE (20 * NP_MILLISECOND)

static inline void np__os_futex_wait_until_inline(_Atomic uint32_t *word, uint32_t val,
                                                  int64_t deadline)
{
    for (;;) {
        np__tsan_signal_point();
        int64_t slice = NP__OS_FUTEX_SLICE;
        if (deadline > 0) {
            int64_t left = deadline - np_now();
            if (left <= 0)
                return;
            slice = left < slice ? left : slice;
        }
        struct timespec rel = { .tv_sec = slice / NP_SECOND, .tv_nsec = slice % NP_SECOND };
        long rc = NP__SYS(syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, &rel, NULL, 0));
        if (rc != -ETIMEDOUT && rc != -EINTR) {
            np__tsan_signal_point();
            return; /* woken, or the word had changed */
        }
    }
}

static inline void np__os_futex_wait_inline(_Atomic uint32_t *word, uint32_t val, int64_t ns)
{
    int64_t now = np_now();
    np__os_futex_wait_until_inline(word, val, ns < 0 || ns > INT64_MAX - now ? 0 : now + ns);
}
#endif

static inline void np__os_futex_wake_inline(_Atomic uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* The calls above, inlined: the declarations stay for the other platforms. */
#define np__os_futex_wait np__os_futex_wait_inline
#define np__os_futex_wait_until np__os_futex_wait_until_inline
#define np__os_futex_wake np__os_futex_wake_inline
#endif

/* ---- threads and signals -------------------------------------------------- */

/* The calling thread's stack: its lowest address and size. -errno if the
 * platform cannot tell (then *lo = NULL, *size = 0). */
int np__os_thread_stack(void **lo, size_t *size);

/* CPUs this process may run on: its affinity mask (Linux), else the CPUs
 * online; at least 1. */
int np__os_usable_cpus(void);

/* Sleeps the calling thread until deadline (CLOCK_MONOTONIC), signals or not. */
void np__os_sleep_until(int64_t deadline);

/* From a handler of sig: sig's default action, raised again on this thread
 * (the process ends). Bypasses the C library where a sanitizer's
 * interceptors would swallow it (Linux: raw rt_sigaction and tgkill). */
void np__os_reraise_default(int sig);

/* Takes back a pending, blocked sig of this thread without waiting
 * (a SIGPIPE that a pipe write raised). */
void np__os_discard_pending(int sig);

/* The registers of the code a signal interrupted, from the handler's third
 * argument. False where the platform's context layout is not known. */
bool np__os_signal_regs(const void *uc, uintptr_t *pc, uintptr_t *fp, uintptr_t *sp);

/* Reads n bytes at addr of this process into out without faulting if addr
 * is not mapped: n, or -errno; -ENOSYS where there is no such call. */
long np__os_read_self(void *out, uintptr_t addr, size_t n);

/* The text of a system error code (> 0), static and thread-safe; NULL if
 * the platform does not know it. */
const char *np__os_strerror(int err);

/* ---- descriptors -------------------------------------------------------------
 * Every descriptor the library opens is non-blocking and close-on-exec, and
 * a socket's writes never raise SIGPIPE (MSG_NOSIGNAL on its sends, or
 * SO_NOSIGPIPE where the send flag is not enough: macOS). Where the platform
 * cannot set the flags atomically (macOS: no SOCK_NONBLOCK, accept4 or
 * pipe2) a fork+exec in another thread meanwhile may inherit the
 * descriptor. */

int np__os_socket(int domain, int type, int protocol); /* fd or -errno */
int np__os_accept(int listen_fd);                      /* fd or -errno */
int np__os_pipe(int p[2]);                             /* close-on-exec; 0 or -errno */

/* A socket the library did not open, adopted: what the platform needs for
 * its writes not to raise SIGPIPE (macOS: SO_NOSIGPIPE). 0 or -errno. */
int np__os_adopt_socket(int fd);

/* The address family of a socket: AF_*, or -errno. */
int np__os_socket_family(int fd);

/* Whether descriptors a and b are the same open file description: 1 or 0;
 * -ENOSYS or -EPERM where the platform cannot tell (then compare fstat). */
int np__os_same_file(int a, int b);

/* ---- memory ---------------------------------------------------------------------- */

/* Gives the pages of [addr, addr + len) back to the system, keeping the
 * mapping: the next touch finds a page whose contents are unspecified
 * (Linux: zero; macOS and FreeBSD: zero or the old contents). Callers
 * restore or overwrite what they need. Advice only: a failure leaves the
 * pages resident. Linux: MADV_DONTNEED, which frees at once. macOS:
 * MADV_DONTNEED frees nothing, MADV_FREE_REUSABLE frees and takes the pages
 * off the process's footprint. FreeBSD: MADV_FREE. */
void np__os_release_pages(void *addr, size_t len);

/* Advice that [addr, addr + len) should not be backed by huge pages (Linux). */
void np__os_no_huge_pages(void *addr, size_t len);

/* mmap flags for a task stack's mapping: MAP_STACK on Linux (no huge pages,
 * and what the kernel expects of a stack); nothing elsewhere (FreeBSD's
 * MAP_STACK makes a grows-down region, not a plain mapping). */
#if defined(__linux__)
#define NP__OS_MAP_STACK MAP_STACK
#else
#define NP__OS_MAP_STACK 0
#endif

#endif
