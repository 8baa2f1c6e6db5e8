/* netpoll — Go's integrated network poller, in C.
 *
 * Conventions (see docs and shared/API.md for the full contract):
 *  - Every public name starts with np_; nothing else is exported.
 *  - A call that can fail returns a negative errno value (-ETIMEDOUT, ...);
 *    errno itself is never the only report. np_strerror() turns one into text.
 *  - Time is int64_t nanoseconds of CLOCK_MONOTONIC. Deadlines are absolute
 *    (np_now() + 2 * NP_SECOND); 0 means "no deadline"; any other value at or
 *    before now, negative ones included, is a deadline already past.
 *
 * This header grows issue by issue toward shared/API.md. It declares only what
 * the library implements today.
 */
#ifndef NETPOLL_H
#define NETPOLL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NP_API __attribute__((visibility("default")))
#else
#define NP_API
#endif

#define NP_MICROSECOND ((int64_t)1000)
#define NP_MILLISECOND ((int64_t)1000000)
#define NP_SECOND      ((int64_t)1000000000)

/* Nanoseconds of CLOCK_MONOTONIC. Callable from any thread. */
NP_API int64_t np_now(void);

/* Text for an error code; err may be negative (-ECONNRESET, as the library
 * returns them) or positive. Never NULL; unknown codes get a generic text. The
 * string is static and must not be freed. Callable from any thread. */
NP_API const char *np_strerror(int err);

/* Runtime ------------------------------------------------------------------
 *
 * Tasks are stackful coroutines run by `workers` threads (M:N). A task runs
 * until it blocks (I/O, sleep) or yields; it may resume on another worker
 * thread, so thread-local state (errno included) does not survive a blocking
 * call: the library's calls return their errors, never only in errno.
 */
typedef struct np_config {
    int    workers;    /* worker threads; 0 = number of online CPUs (max 1024) */
    size_t stack_size; /* bytes per task stack; 0 = 256 KiB. Rounded up to a
                        * page; at least 16 KiB, at most 1 GiB. Pages are
                        * committed only when touched; below each stack is a
                        * guard page, and overflowing into it aborts with a
                        * message naming the cause. */
} np_config;

/* Starts the runtime (cfg may be NULL for defaults), runs main_task(arg) as a
 * task, and returns 0 once main_task and every task started since have
 * finished; everything the runtime allocated is released by then. Returns
 * -EINVAL for a bad config or a NULL main_task, -EBUSY if a runtime is
 * already running (in this process), -ENOMEM. May be called again after it
 * returns. The calling thread becomes worker 0. */
NP_API int np_run(const np_config *cfg, void (*main_task)(void *), void *arg);

/* Starts fn(arg) as a new task. Callable from a task or from any other thread
 * while the runtime runs (the task is queued and an idle worker is woken).
 * 0, -EINVAL (fn NULL), -ENOMEM, or -ESRCH when no runtime is running (or the
 * running one is finishing: its last task has already ended). */
NP_API int np_go(void (*fn)(void *), void *arg);

/* Lets other runnable tasks run; the caller is queued behind them. From a
 * plain thread: sched_yield(). */
NP_API void np_yield(void);

/* Blocks the task for ns nanoseconds (<= 0: returns at once), or until the
 * absolute monotonic time `deadline`. Never returns early. 0, or -EPERM from
 * a plain thread. */
NP_API int np_sleep(int64_t ns);
NP_API int np_sleep_until(int64_t deadline);

/* Name of the poller backend this library was built with: "epoll",
 * "epoll_pipe" (epoll woken through a pipe instead of an eventfd) or "poll".
 * Chosen at build time with -DNP_POLLER=epoll|poll (and -DNP_WAKE=pipe). */
NP_API const char *np_poller_name(void);

#ifdef __cplusplus
}
#endif
#endif /* NETPOLL_H */
