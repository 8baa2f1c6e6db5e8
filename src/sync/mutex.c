/* np_mutex and np_cond.
 *
 * The mutex is one state word and a FIFO of waiters (wait.h's nodes):
 *
 *   state  LOCKED   held by someone
 *          WAITERS  the queue is not empty
 *          QLOCK    the queue's spinlock
 *
 *   lock     0 -> LOCKED (one CAS: the uncontended case). Otherwise, holding
 *            QLOCK: take it if it is free (a fetch_or, whose old value
 *            decides: trylock sets LOCKED without QLOCK), else set WAITERS,
 *            queue, and park; the park's commit drops QLOCK.
 *   unlock   LOCKED -> 0 (one CAS). With WAITERS: take QLOCK, claim the
 *            first waiter, and hand the mutex to it in one store that keeps
 *            LOCKED (it returns owning it), keeps WAITERS if others wait, and
 *            drops QLOCK. Hand-off is FIFO: no waiter starves.
 *
 * The queue's lock lives in the state word so that the unlock's last touch
 * of the mutex is that one store: the new owner may unlock and free the
 * mutex as soon as it runs (Go and pthreads allow it), and it cannot run
 * before the claim is published, which comes after the store. A waiter
 * whose deadline wins unlinks its node itself, clearing WAITERS if it was
 * the last, in the store that drops QLOCK.
 *
 * No lost wake-up: WAITERS is set while QLOCK is held, before a waiter
 * parks, so an unlock that sees LOCKED alone (its fast path) happened
 * before it, and the waiter's own check under QLOCK saw LOCKED; any later
 * unlock sees WAITERS (or QLOCK) and takes the slow path.
 *
 * The condition variable is a FIFO of nodes; a waiter queues itself before
 * it unlocks the mutex, so a signal after that unlock finds it.
 */
#include <errno.h>
#include <string.h>

#include "base/cpu_relax.h"
#include "netpoll.h"
#include "runtime/scheduler.h"
#include "sync/wait.h"

enum { LOCKED = 1u, WAITERS = 2u, QLOCK = 4u };

typedef struct mutex_impl {
    _Atomic uint32_t state;
    np__wqueue q;
} mutex_impl;

typedef struct cond_impl {
    _Atomic int qlock;
    np__wqueue q;
} cond_impl;

_Static_assert(sizeof(mutex_impl) <= sizeof(np_mutex), "np_mutex too small");
_Static_assert(sizeof(cond_impl) <= sizeof(np_cond), "np_cond too small");
_Static_assert(_Alignof(mutex_impl) <= _Alignof(np_mutex), "np_mutex misaligned");
/* The header's inline fast paths touch the state word as np_mutex.u_.state_. */
_Static_assert(offsetof(mutex_impl, state) == offsetof(np_mutex, u_.state_), "np_mutex.state_ moved");
_Static_assert(LOCKED == 1, "the header's inline fast paths lock with 1");

/* Takes QLOCK; returns the state as it was (without QLOCK). */
static uint32_t qlock(mutex_impl *m)
{
    uint32_t s = atomic_load_explicit(&m->state, memory_order_relaxed);
    for (;;) {
        if (s & QLOCK) {
            np__cpu_relax();
            s = atomic_load_explicit(&m->state, memory_order_relaxed);
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&m->state, &s, s | QLOCK, memory_order_acquire,
                                                  memory_order_relaxed))
            return s;
    }
}

/* Drops QLOCK, and WAITERS too if the queue is empty. */
static void qunlock(mutex_impl *m)
{
    uint32_t clear = QLOCK | (m->q.head ? 0 : WAITERS);
    atomic_fetch_and_explicit(&m->state, ~clear, memory_order_release);
}

static void qunlock_commit(void *p)
{
    qunlock(p);
}

/* Go's active spinning: a holder running on another CPU usually lets go
 * within a few hundred nanoseconds, far sooner than a park and a wake
 * (the hand-off readies the waiter, and with two tasks contending the
 * waiter's worker has often gone idle meanwhile). Spins only while the
 * word is LOCKED alone: with waiters queued the unlock hands the mutex to
 * the first of them, so FIFO order holds and a spinner cannot barge past
 * a queued waiter. At most SPIN_PAUSES pauses, Go's 4 rounds of 30. */
enum { SPIN_PAUSES = 120 };

static bool spin_acquire(mutex_impl *m)
{
    if (!np__sched_may_spin())
        return false;
    for (int i = 0; i < SPIN_PAUSES; i++) {
        np__cpu_relax();
        uint32_t s = atomic_load_explicit(&m->state, memory_order_relaxed);
        if (s == 0 && atomic_compare_exchange_weak_explicit(&m->state, &s, LOCKED,
                                                            memory_order_acquire,
                                                            memory_order_relaxed))
            return true;
        if (s & WAITERS)
            return false;
    }
    return false;
}

/* anyway: a plain thread waits even with no runtime (np_cond_wait's relock:
 * it must return holding m). */
__attribute__((noinline, cold)) static int lock_slow(mutex_impl *m, int64_t deadline, bool anyway)
{
    if (!np__deadline_past(deadline) && spin_acquire(m))
        return 0;
    uint32_t s = qlock(m);
    /* Free: take it. A trylock does not look at QLOCK and may have taken it
     * since qlock read the word: only the fetch_or's old value says who. */
    if (!(s & LOCKED) && !(atomic_fetch_or(&m->state, LOCKED) & LOCKED)) {
        qunlock(m);
        return 0;
    }
    np__wrec *r;
    int rc = np__deadline_past(deadline) ? -ETIMEDOUT
             : anyway                     ? np__wait_begin_anyway(&r)
                                          : np__wait_begin(&r);
    if (rc < 0) {
        qunlock(m);
        return rc;
    }
    np__wnode n = { .rec = r, .seq = np__wait_seq(r) };
    np__wq_push(&m->q, &n);
    atomic_fetch_or(&m->state, WAITERS);
    np__wait_arm(r, deadline);
    static const np__park_site site_lock = { "np_mutex_lock", "mutex", NP__ON_WREC };
    static const np__park_site site_relock = { "np_cond_wait (relocking)", "mutex", NP__ON_WREC };
    if (np__wait_park(r, qunlock_commit, m, anyway ? &site_relock : &site_lock, m) == NP__W_DONE)
        return 0; /* handed over: we own it */
    qlock(m);
    np__wq_unlink(&m->q, &n);
    qunlock(m);
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
    return lock_slow(m, deadline, false);
}

/* Parenthesised: the header inlines a fast path under this name, whose
 * call into the library lands here. */
int(np_mutex_lock)(np_mutex *pm)
{
    if (!pm)
        return -EINVAL;
    mutex_impl *m = (mutex_impl *)pm;
    uint32_t zero = 0;
    if (atomic_compare_exchange_strong(&m->state, &zero, LOCKED))
        return 0;
    return lock_slow(m, 0, false);
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

__attribute__((noinline, cold)) static int unlock_slow(mutex_impl *m, uint32_t s);

int(np_mutex_unlock)(np_mutex *pm)
{
    if (!pm)
        return -EINVAL;
    mutex_impl *m = (mutex_impl *)pm;
    uint32_t s = LOCKED;
    if (atomic_compare_exchange_strong(&m->state, &s, 0))
        return 0;
    return unlock_slow(m, s);
}

static int unlock_slow(mutex_impl *m, uint32_t s)
{
    for (;;) {
        if (!(s & LOCKED))
            return -EPERM;
        if (s & (WAITERS | QLOCK))
            break;
        if (atomic_compare_exchange_weak(&m->state, &s, 0))
            return 0;
    }
    s = qlock(m);
    if (!(s & LOCKED)) { /* unlocked meanwhile by another (not owned) */
        qunlock(m);
        return -EPERM;
    }
    bool parked = false;
    np__wnode *n = np__wq_claim_first(&m->q, &parked);
    if (!n) {
        /* Every waiter timed out: nobody to hand to. One store frees the
         * mutex and the queue lock: the last touch of m. */
        atomic_store_explicit(&m->state, 0, memory_order_release);
        return 0;
    }
    /* Hand over: LOCKED stays; this store is the last touch of m. */
    atomic_store_explicit(&m->state, LOCKED | (m->q.head ? WAITERS : 0), memory_order_release);
    np__wrec *r = np__wnode_done(n, 0);
    if (parked)
        np__wait_ready(r);
    return 0;
}

/* ---- condition variables ---------------------------------------------- */

/* np_cond_wait's relock: m is held on return, whatever (a plain thread
 * whose runtime ended while it waited still gets it back). */
static void relock(mutex_impl *m)
{
    uint32_t zero = 0;
    if (!atomic_compare_exchange_strong(&m->state, &zero, LOCKED))
        (void)lock_slow(m, 0, true);
}

int np_cond_wait(np_cond *pc, np_mutex *pm, int64_t deadline)
{
    if (!pc || !pm)
        return -EINVAL;
    cond_impl *c = (cond_impl *)pc;
    mutex_impl *m = (mutex_impl *)pm;
    if (!(atomic_load(&m->state) & LOCKED))
        return -EPERM;
    if (np__deadline_past(deadline))
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
    static const np__park_site site_cond = { "np_cond_wait", "cond", NP__ON_WREC };
    unsigned st = np__wait_park(r, NULL, NULL, &site_cond, pc);
    if (st != NP__W_DONE) {
        np__spin_lock(&c->qlock);
        np__wq_unlink(&c->q, &n);
        np__spin_unlock(&c->qlock);
    }
    relock(m);
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
    np__spin_unlock(&c->qlock);
    /* After the unlock: once woken, a waiter may free c. */
    if (n) {
        np__wrec *r = np__wnode_done(n, 0);
        if (parked)
            np__wait_ready(r);
    }
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
    np__wake_list woken = { NULL };
    while ((n = np__wq_claim_first(&c->q, &parked))) {
        n->result = 0;
        np__wake_list_push(&woken, n);
    }
    np__spin_unlock(&c->qlock);
    np__wake_all(&woken); /* after the unlock: a woken waiter may free c */
    return 0;
}
