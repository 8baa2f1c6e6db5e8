/* np_mutex and np_cond.
 *
 * The mutex is one state word and a FIFO of waiters (wait.h's nodes):
 *
 *   state  LOCKED   held by someone
 *          WAITERS  the queue is not empty (set and cleared only under the
 *                   queue lock)
 *
 *   lock     0 -> LOCKED (one CAS: the uncontended case). Otherwise, under
 *            the queue lock: take it if it is free, else set WAITERS,
 *            queue, and park.
 *   unlock   LOCKED -> 0 (one CAS). With WAITERS: under the queue lock,
 *            claim the first waiter and hand the mutex to it (LOCKED
 *            stays set: it returns owning it); clear WAITERS once the queue
 *            is empty. Hand-off is FIFO: no waiter starves.
 *
 * A waiter whose deadline wins unlinks its node and clears WAITERS if it
 * was the last. No lost wake-up: WAITERS is set under the queue lock
 * before a waiter parks, so an unlock that sees LOCKED alone (its fast
 * path) happened before it, and the waiter's own check under the lock saw
 * LOCKED; any later unlock sees WAITERS and takes the queue lock.
 *
 * The condition variable is a FIFO of nodes; a waiter queues itself before
 * it unlocks the mutex, so a signal after that unlock finds it.
 */
#include <errno.h>
#include <string.h>

#include "netpoll.h"
#include "sync/wait.h"

enum { LOCKED = 1u, WAITERS = 2u };

typedef struct mutex_impl {
    _Atomic uint32_t state;
    _Atomic int qlock;
    np__wqueue q;
} mutex_impl;

typedef struct cond_impl {
    _Atomic int qlock;
    np__wqueue q;
} cond_impl;

_Static_assert(sizeof(mutex_impl) <= sizeof(np_mutex), "np_mutex too small");
_Static_assert(sizeof(cond_impl) <= sizeof(np_cond), "np_cond too small");
_Static_assert(_Alignof(mutex_impl) <= _Alignof(np_mutex), "np_mutex misaligned");

static void unlock_q(void *p)
{
    np__spin_unlock(p);
}

static bool past(int64_t deadline)
{
    return deadline != 0 && deadline <= np_now();
}

/* Under m's queue lock: the queue is empty, clear WAITERS. */
static void clear_waiters(mutex_impl *m)
{
    if (!m->q.head)
        atomic_fetch_and(&m->state, ~WAITERS);
}

static int lock_slow(mutex_impl *m, int64_t deadline)
{
    np__spin_lock(&m->qlock);
    uint32_t s = atomic_load(&m->state);
    for (;;) {
        if (!(s & LOCKED)) {
            if (atomic_compare_exchange_weak(&m->state, &s, s | LOCKED)) {
                np__spin_unlock(&m->qlock);
                return 0;
            }
            continue;
        }
        if ((s & WAITERS) || atomic_compare_exchange_weak(&m->state, &s, s | WAITERS))
            break;
    }
    np__wrec *r;
    int rc = past(deadline) ? -ETIMEDOUT : np__wait_begin(&r);
    if (rc < 0) {
        clear_waiters(m);
        np__spin_unlock(&m->qlock);
        return rc;
    }
    np__wnode n = { .rec = r, .seq = np__wait_seq(r) };
    np__wq_push(&m->q, &n);
    np__wait_arm(r, deadline);
    if (np__wait_park(r, unlock_q, &m->qlock) == NP__W_DONE)
        return 0; /* handed over: we own it */
    np__spin_lock(&m->qlock);
    np__wq_unlink(&m->q, &n);
    clear_waiters(m);
    np__spin_unlock(&m->qlock);
    return -ETIMEDOUT;
}

int np_mutex_lock_until(np_mutex *pm, int64_t deadline)
{
    if (!pm)
        return -EINVAL;
    mutex_impl *m = (mutex_impl *)pm;
    uint32_t zero = 0;
    if (atomic_compare_exchange_strong(&m->state, &zero, LOCKED))
        return 0;
    return lock_slow(m, deadline);
}

int np_mutex_lock(np_mutex *m)
{
    return np_mutex_lock_until(m, 0);
}

int np_mutex_trylock(np_mutex *pm)
{
    if (!pm)
        return -EINVAL;
    mutex_impl *m = (mutex_impl *)pm;
    uint32_t s = atomic_load(&m->state);
    while (!(s & LOCKED)) {
        if (atomic_compare_exchange_weak(&m->state, &s, s | LOCKED))
            return 0;
    }
    return -EBUSY;
}

int np_mutex_unlock(np_mutex *pm)
{
    if (!pm)
        return -EINVAL;
    mutex_impl *m = (mutex_impl *)pm;
    uint32_t s = LOCKED;
    if (atomic_compare_exchange_strong(&m->state, &s, 0))
        return 0;
    for (;;) {
        if (!(s & LOCKED))
            return -EPERM;
        if (s & WAITERS)
            break;
        if (atomic_compare_exchange_weak(&m->state, &s, 0))
            return 0;
    }
    np__spin_lock(&m->qlock);
    bool parked = false;
    np__wnode *n = np__wq_claim_first(&m->q, &parked);
    if (!n) {
        /* Every waiter timed out: nobody to hand to. Nobody can set
         * WAITERS without the queue lock, which we hold. */
        atomic_store(&m->state, 0);
        np__spin_unlock(&m->qlock);
        return 0;
    }
    clear_waiters(m); /* LOCKED stays: it passes to n's owner */
    np__wrec *r = np__wnode_done(n, 0);
    np__spin_unlock(&m->qlock);
    if (parked)
        np__wait_ready(r);
    return 0;
}

/* ---- condition variables ---------------------------------------------- */

int np_cond_wait(np_cond *pc, np_mutex *pm, int64_t deadline)
{
    if (!pc || !pm)
        return -EINVAL;
    cond_impl *c = (cond_impl *)pc;
    mutex_impl *m = (mutex_impl *)pm;
    if (!(atomic_load(&m->state) & LOCKED))
        return -EPERM;
    if (past(deadline))
        return -ETIMEDOUT;
    np__wrec *r;
    int rc = np__wait_begin(&r);
    if (rc < 0)
        return rc;
    np__wnode n = { .rec = r, .seq = np__wait_seq(r) };
    np__spin_lock(&c->qlock);
    np__wq_push(&c->q, &n);
    np__spin_unlock(&c->qlock);
    /* Queued first: a signal sent once the mutex is free finds us. A
     * signal that comes before the park claims the node while we still run;
     * the park then returns at once. */
    np_mutex_unlock(pm);
    np__wait_arm(r, deadline);
    unsigned st = np__wait_park(r, NULL, NULL);
    if (st != NP__W_DONE) {
        np__spin_lock(&c->qlock);
        np__wq_unlink(&c->q, &n);
        np__spin_unlock(&c->qlock);
    }
    np_mutex_lock(pm);
    return st == NP__W_DONE ? 0 : -ETIMEDOUT;
}

int np_cond_signal(np_cond *pc)
{
    if (!pc)
        return -EINVAL;
    cond_impl *c = (cond_impl *)pc;
    np__spin_lock(&c->qlock);
    bool parked = false;
    np__wnode *n = np__wq_claim_first(&c->q, &parked);
    np__wrec *r = n ? np__wnode_done(n, 0) : NULL;
    np__spin_unlock(&c->qlock);
    if (r && parked)
        np__wait_ready(r);
    return 0;
}

int np_cond_broadcast(np_cond *pc)
{
    if (!pc)
        return -EINVAL;
    cond_impl *c = (cond_impl *)pc;
    np__spin_lock(&c->qlock);
    bool parked;
    np__wnode *n;
    /* Readied under the lock: their nodes are gone once done, and there may
     * be any number of them. Readying takes no lock of ours. */
    while ((n = np__wq_claim_first(&c->q, &parked))) {
        np__wrec *r = np__wnode_done(n, 0);
        if (parked)
            np__wait_ready(r);
    }
    np__spin_unlock(&c->qlock);
    return 0;
}
