/* Thread waiters: a plain thread parked on a futex.
 *
 * Each thread has one waiter (thread-local), with a token:
 *   0  parked or about to park: ready() has not run for this park;
 *   1  readied: park() may return.
 * park() clears the token, runs the commit, and sleeps while the token is 0.
 * ready() sets it and wakes the futex. A ready() that finds the token already
 * set readied one park twice: an invariant violation, so it aborts.
 */
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>

#include "base/np_assert.h"
#include "os/os.h"
#include "pd/waiter.h"

typedef struct thread_waiter {
    np__waiter base;
    _Atomic uint32_t token;
    _Atomic unsigned long parks, readies;
} thread_waiter;

static void tw_ready(np__waiter *w);
static void tw_park(np__waiter *w, np__commit_fn commit, void *arg, unsigned flags,
                    const np__park_site *site, const void *obj);

static const np__waiter_ops thread_ops = { .ready = tw_ready, .park = tw_park };

void (*_Atomic np__thread_park_hook)(void);

static _Thread_local thread_waiter self = { .base.ops = &thread_ops, .token = 1 };

static void tw_ready(np__waiter *w)
{
    thread_waiter *tw = (thread_waiter *)w;
    atomic_fetch_add_explicit(&tw->readies, 1, memory_order_relaxed);
    uint32_t was = atomic_exchange_explicit(&tw->token, 1, memory_order_release);
    if (was != 0)
        NP__PANIC("thread waiter readied twice for one park");
    np__os_futex_wake(&tw->token);
}

static void tw_park(np__waiter *w, np__commit_fn commit, void *arg, unsigned flags,
                    const np__park_site *site, const void *obj)
{
    (void)flags;
    (void)site; /* np_dump lists tasks only */
    (void)obj;
    thread_waiter *tw = (thread_waiter *)w;
    atomic_store_explicit(&tw->token, 0, memory_order_relaxed);
    if (!commit(w, arg)) {
        atomic_store_explicit(&tw->token, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&tw->parks, 1, memory_order_relaxed);
    void (*hook)(void) = atomic_load_explicit(&np__thread_park_hook, memory_order_acquire);
    if (hook)
        hook();
    while (atomic_load_explicit(&tw->token, memory_order_acquire) == 0)
        np__os_futex_wait(&tw->token, 0, -1);
}

__attribute__((noinline)) np__waiter *np__thread_waiter_self(void)
{
    np__waiter *w = &self.base;
    __asm__ volatile("" : "+r"(w)); /* not to be reused across a switch */
    return w;
}

void np__thread_waiter_counts(unsigned long *parks, unsigned long *readies)
{
    *parks = atomic_load(&self.parks);
    *readies = atomic_load(&self.readies);
}
