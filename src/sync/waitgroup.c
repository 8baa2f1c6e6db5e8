/* np_waitgroup: a counter and a queue of waiters.
 *
 * add changes the counter atomically (a CAS, so a count that would go
 * negative is refused with no change); the add that brings it to 0 then
 * takes the queue lock and wakes every waiter. A waiter checks the counter
 * under the queue lock before it queues: an add that reaches 0 after that
 * check takes the lock after the waiter queued (its decrement came first,
 * its lock after), so it finds the waiter.
 */
#include <errno.h>

#include "netpoll.h"
#include "sync/wait.h"

typedef struct wg_impl {
    _Atomic int64_t count;
    _Atomic int qlock;
    np__wqueue q;
} wg_impl;

_Static_assert(sizeof(wg_impl) <= sizeof(np_waitgroup), "np_waitgroup too small");

static void unlock_q(void *p)
{
    np__spin_unlock(p);
}

int np_waitgroup_add(np_waitgroup *pw, int64_t delta)
{
    if (!pw)
        return -EINVAL;
    wg_impl *wg = (wg_impl *)pw;
    int64_t c = atomic_load(&wg->count), next;
    do {
        if (__builtin_add_overflow(c, delta, &next) || next < 0)
            return -EINVAL;
    } while (!atomic_compare_exchange_weak(&wg->count, &c, next));
    if (next != 0 || delta == 0)
        return 0;
    np__spin_lock(&wg->qlock);
    bool parked;
    np__wnode *n;
    while ((n = np__wq_claim_first(&wg->q, &parked))) {
        np__wrec *r = np__wnode_done(n, 0);
        if (parked)
            np__wait_ready(r);
    }
    np__spin_unlock(&wg->qlock);
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
    if (atomic_load(&wg->count) == 0)
        return 0;
    np__spin_lock(&wg->qlock);
    if (atomic_load(&wg->count) == 0) {
        np__spin_unlock(&wg->qlock);
        return 0;
    }
    np__wrec *r;
    int rc = deadline != 0 && deadline <= np_now() ? -ETIMEDOUT : np__wait_begin(&r);
    if (rc < 0) {
        np__spin_unlock(&wg->qlock);
        return rc;
    }
    np__wnode n = { .rec = r, .seq = np__wait_seq(r) };
    np__wq_push(&wg->q, &n);
    np__wait_arm(r, deadline);
    if (np__wait_park(r, unlock_q, &wg->qlock) == NP__W_DONE)
        return 0;
    np__spin_lock(&wg->qlock);
    np__wq_unlink(&wg->q, &n);
    np__spin_unlock(&wg->qlock);
    return -ETIMEDOUT;
}
