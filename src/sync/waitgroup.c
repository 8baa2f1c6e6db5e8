/* np_waitgroup: a counter and a queue of waiters.
 *
 *   state  counter << 1 | HAS_WAITERS
 *
 * The counter and the "someone waits" bit share one word, as in Go, so the
 * add that brings the counter to 0 learns in the same atomic step whether
 * anyone waits: if nobody does, it touches the wait group no more (a
 * waiter that comes later sees 0 and returns, and may free it at once).
 * If someone does, that waiter is parked or about to be, and cannot return
 * before it is woken: the adder takes the queue lock, claims every waiter,
 * drops the lock, and only then publishes the wake-ups (np__wake_all),
 * so the wait group is not touched once a waiter can return.
 *
 * A waiter sets HAS_WAITERS while holding the queue lock and checks the
 * counter in the same CAS, then queues and parks (the commit drops the
 * lock). An add that reaches 0 after that CAS sees the bit and takes the
 * lock after the waiter released it, so it finds the waiter.
 *
 * A waiter whose deadline wins unlinks itself and clears HAS_WAITERS if the
 * queue is then empty. After a timed-out wait the group may still be in use
 * by the adds to come: free it only once the count has reached 0 and those
 * calls have returned.
 */
#include <errno.h>

#include "netpoll.h"
#include "sync/wait.h"

#define HAS_WAITERS ((uint64_t)1)
#define MAX_COUNT (INT64_MAX >> 1)

typedef struct wg_impl {
    _Atomic uint64_t state;
    _Atomic int qlock;
    np__wqueue q;
} wg_impl;

_Static_assert(sizeof(wg_impl) <= sizeof(np_waitgroup), "np_waitgroup too small");

int np_waitgroup_add(np_waitgroup *pw, int64_t delta)
{
    if (!pw)
        return -EINVAL;
    wg_impl *wg = (wg_impl *)pw;
    uint64_t s = atomic_load(&wg->state), next;
    int64_t count;
    do {
        if (__builtin_add_overflow((int64_t)(s >> 1), delta, &count) || count < 0 ||
            count > MAX_COUNT)
            return -EINVAL;
        next = count == 0 ? 0 : ((uint64_t)count << 1) | (s & HAS_WAITERS);
    } while (!atomic_compare_exchange_weak(&wg->state, &s, next));
    if (count != 0 || !(s & HAS_WAITERS))
        return 0; /* nobody to wake: wg is not touched again */
    np__spin_lock(&wg->qlock);
    bool parked;
    np__wnode *n;
    np__wake_list woken = { NULL };
    while ((n = np__wq_claim_first(&wg->q, &parked))) {
        n->result = 0;
        np__wake_list_push(&woken, n);
    }
    np__spin_unlock(&wg->qlock);
    np__wake_all(&woken); /* after the unlock: a woken waiter may free wg */
    return 0;
}

int np_waitgroup_done(np_waitgroup *wg)
{
    return np_waitgroup_add(wg, -1);
}

int np_waitgroup_wait(np_waitgroup *pw, int64_t deadline)
{
    if (!pw)
        return -EINVAL;
    wg_impl *wg = (wg_impl *)pw;
    if ((atomic_load(&wg->state) >> 1) == 0)
        return 0;
    np__spin_lock(&wg->qlock);
    uint64_t s = atomic_load(&wg->state);
    do {
        if ((s >> 1) == 0) {
            np__spin_unlock(&wg->qlock);
            return 0;
        }
    } while (!(s & HAS_WAITERS) && !atomic_compare_exchange_weak(&wg->state, &s, s | HAS_WAITERS));
    np__wrec *r;
    int rc = np__deadline_past(deadline) ? -ETIMEDOUT : np__wait_begin(&r);
    if (rc < 0) {
        if (!wg->q.head)
            atomic_fetch_and(&wg->state, ~HAS_WAITERS);
        np__spin_unlock(&wg->qlock);
        return rc;
    }
    np__wnode n = { .rec = r, .seq = np__wait_seq(r) };
    np__wq_push(&wg->q, &n);
    np__wait_arm(r, deadline);
    static const np__park_site site = { "np_waitgroup_wait", "waitgroup", NP__ON_WREC };
    if (np__wait_park(r, np__spin_unlock_cb, &wg->qlock, &site, wg) == NP__W_DONE)
        return 0;
    np__spin_lock(&wg->qlock);
    np__wq_unlink(&wg->q, &n);
    if (!wg->q.head)
        atomic_fetch_and(&wg->state, ~HAS_WAITERS);
    np__spin_unlock(&wg->qlock);
    return -ETIMEDOUT;
}
