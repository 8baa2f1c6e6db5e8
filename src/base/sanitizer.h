/* Which sanitizers this translation unit is built with, for gcc and clang. */
#ifndef NP_SANITIZER_H
#define NP_SANITIZER_H

#if defined(__SANITIZE_ADDRESS__)
#define NP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NP_ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define NP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NP_TSAN 1
#endif
#endif

/* For functions whose frames never return (a task's entry, its last
 * switch): ThreadSanitizer must not push them on the fiber's shadow stack. */
#if defined(__GNUC__) || defined(__clang__)
#define NP_NO_TSAN __attribute__((no_sanitize("thread"), noinline))
#else
#define NP_NO_TSAN
#endif

#ifdef NP_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef NP_TSAN
#include <sanitizer/tsan_interface.h>
#include <stdbool.h>
#include <time.h>

#include "base/thread.h" /* np__sigfill_async */
#endif

/* ThreadSanitizer runs a signal's handler at once only when the signal
 * lands in a call it intercepts as blocking; anywhere else it queues the
 * handler in the running fiber (the thread, or the task) until that fiber
 * next enters a call it intercepts. A raw system call (syscall(2): the
 * futex) is not one: a thread that sleeps in one passes here before and
 * after (os.h), and a task leaving its thread blocks signals first
 * (np__sig_hold below). A zero sleep is such a call. */
static inline void np__tsan_signal_point(void)
{
#ifdef NP_TSAN
    struct timespec zero = { 0, 0 };
    nanosleep(&zero, NULL);
#endif
}

/* Signals held, under ThreadSanitizer (no-ops otherwise), where its queue
 * of deferred handlers would lose one:
 * - a task leaving its thread: the handler would stay queued in the task's
 *   fiber until the task ran again (runtime/sched_switch.c). Every
 *   switch blocks signals first (the intercepted call runs what the
 *   fiber leaving holds) and the context resumed releases them (what
 *   arrived meanwhile lands there). The switch stays on one thread,
 *   which keeps the mask in its np__sig_hold;
 * - a fiber or a thread being set up or torn down: its state is reset or
 *   freed with whatever was queued in it (runtime/stack.c,
 *   base/thread.c). */
typedef struct np__sig_hold {
#ifdef NP_TSAN
    sigset_t old;
    bool held;
#else
    char unused;
#endif
} np__sig_hold;

static inline void np__sig_hold_signals(np__sig_hold *h)
{
#ifdef NP_TSAN
    sigset_t async;
    np__sigfill_async(&async);
    pthread_sigmask(SIG_BLOCK, &async, &h->old);
    h->held = true;
#else
    (void)h;
#endif
}

static inline void np__sig_release_signals(np__sig_hold *h)
{
#ifdef NP_TSAN
    if (h->held) {
        h->held = false;
        pthread_sigmask(SIG_SETMASK, &h->old, NULL);
    }
#else
    (void)h;
#endif
}

/* Has ThreadSanitizer make the signal state of the running thread, or of
 * `fiber` if not NULL, now, with signals held, rather than at its first
 * blocking call: a signal that lands while that call makes it makes a
 * second one, and the first overwrites it with the handler queued there
 * (GCC 12's runtime; newer ones make it with a compare-and-swap). The
 * handler is lost: the first signal to a new thread vanished about once in
 * 300 runs. The caller holds signals. */
static inline void np__tsan_make_signal_state(void *fiber)
{
#ifdef NP_TSAN
    /* Synchronised switches: the call's frame reuses stack the caller's
     * frames use again afterwards. */
    void *self = fiber ? __tsan_get_current_fiber() : NULL;
    if (fiber)
        __tsan_switch_to_fiber(fiber, 0);
    np__tsan_signal_point(); /* a blocking call: it makes the state */
    if (fiber)
        __tsan_switch_to_fiber(self, 0);
#else
    (void)fiber;
#endif
}

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define NP_VALGRIND 1
#endif
#endif

#endif
