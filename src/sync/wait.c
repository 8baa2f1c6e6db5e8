/* Coordination waits: records, queues, claims and parking. The protocol is
 * in wait.h. */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "base/cpu_relax.h"
#include "base/np_assert.h"
#include "netpoll.h"
#include "os/os.h"
#include "runtime/scheduler.h"
#include "sync/wait.h"

#define WORD(seq, state) (((uint64_t)(seq) << 3) | (uint64_t)(state))

/* ---- spinlock ---------------------------------------------------------- */

void np__spin_lock(_Atomic int *l)
{
    for (;;) {
        if (!atomic_exchange_explicit(l, 1, memory_order_acquire))
            return;
        while (atomic_load_explicit(l, memory_order_relaxed))
            np__cpu_relax();
    }
}

void np__spin_unlock(_Atomic int *l)
{
    atomic_store_explicit(l, 0, memory_order_release);
}

void np__spin_unlock_cb(void *lock)
{
    np__spin_unlock(lock);
}

/* ---- queues ------------------------------------------------------------- */

void np__wq_push(np__wqueue *q, np__wnode *n)
{
    n->next = NULL;
    n->prev = q->tail;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    n->linked = true;
}

void np__wq_unlink(np__wqueue *q, np__wnode *n)
{
    if (!n->linked)
        return;
    if (n->prev)
        n->prev->next = n->next;
    else
        q->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        q->tail = n->prev;
    n->prev = n->next = NULL;
    n->linked = false;
}

void np__wake_list_push(np__wake_list *l, np__wnode *n)
{
    n->next = l->head;
    l->head = n;
}

void np__wake_all(np__wake_list *l)
{
    np__wnode *n = l->head;
    l->head = NULL;
    while (n) {
        np__wnode *next = n->next; /* n may be gone once done */
        bool parked = n->parked;
        np__wrec *r = np__wnode_done(n, n->result);
        if (parked)
            np__wait_ready(r);
        n = next;
    }
}

bool np__wnode_claim(np__wnode *n, bool *was_parked)
{
    uint64_t cur = atomic_load(&n->rec->claim);
    for (;;) {
        if (NP__W_SEQ(cur) != n->seq)
            return false; /* a later wait of the same owner: not this node's */
        unsigned st = NP__W_STATE(cur);
        if (st != NP__W_OPEN && st != NP__W_PARKED)
            return false; /* another case, or the deadline, won */
        if (atomic_compare_exchange_weak(&n->rec->claim, &cur, WORD(n->seq, NP__W_CLAIMING))) {
            *was_parked = n->parked = st == NP__W_PARKED;
            return true;
        }
    }
}

np__wnode *np__wq_claim_first(np__wqueue *q, bool *was_parked)
{
    while (q->head) {
        np__wnode *n = q->head;
        np__wq_unlink(q, n);
        if (np__wnode_claim(n, was_parked))
            return n;
    }
    return NULL;
}

np__wrec *np__wnode_done(np__wnode *n, int result)
{
    np__wrec *r = n->rec;
    n->result = result;
    r->winner = n->index;
    /* Release: the outcome (result, winner, a copied element) is visible to
     * an owner that sees DONE. Nothing may touch n after this store. */
    atomic_store_explicit(&r->claim, WORD(n->seq, NP__W_DONE), memory_order_release);
    return r;
}

void np__wait_ready(np__wrec *r)
{
    np__waiter_ready(r->waiter);
}

/* ---- records -------------------------------------------------------------
 *
 * A task's record is in its struct, and its deadline is a timer run by the
 * workers. A plain thread's record comes from a pool of records that are
 * never freed (a late timer or ready may still touch one), and goes back
 * to it when the thread exits. A thread sleeps on a futex in its record and keeps its
 * deadline itself too (the futex's timeout): once the runtime has ended (its
 * last task returned while the thread was blocked) no worker runs the timer,
 * and the thread would block forever past its deadline. The timer is armed
 * all the same: while it is pending, idle workers keep polling the network,
 * which a thread's np_wait_fd (net/foreign.c) needs. Timer and thread make
 * the same claim; one wins.
 *
 * The thread's park, on the futex word `token`:
 *   park    token = 0; commit (or return at once); then sleep while
 *           token == 0, at most until the deadline; at the deadline, expire
 *           the wait itself (the timer's CAS, PARKED -> TIMEDOUT): won, it
 *           returns (nobody will ready it); lost, a waker or the timer
 *           claimed it while PARKED and readies it: sleep on, with no
 *           timeout.
 *   ready   token = 1 (finding it 1 already: readied twice, abort); wake. */

typedef struct trec {
    np__wrec rec;           /* first: a thread's np__wrec * is its trec * */
    np__waiter w;           /* rec.waiter for every wait of the thread */
    _Atomic uint32_t token; /* 0 parked or about to, 1 readied */
    int64_t deadline;       /* of the wait in progress; 0 none */
} trec;

static void tr_ready(np__waiter *w);
static void tr_park(np__waiter *w, np__commit_fn commit, void *arg, unsigned flags,
                    const np__park_site *site, const void *obj);
static const np__waiter_ops thread_rec_ops = { .ready = tr_ready, .park = tr_park };

static trec *tr_of_waiter(np__waiter *w)
{
    return (trec *)((char *)w - offsetof(trec, w));
}

static trec *tr_of(np__wrec *r)
{
    return r->waiter && r->waiter->ops == &thread_rec_ops ? (trec *)r : NULL;
}

static void tr_ready(np__waiter *w)
{
    trec *tr = tr_of_waiter(w);
    if (atomic_exchange_explicit(&tr->token, 1, memory_order_release) != 0)
        NP__PANIC("sync: a thread's wait readied twice");
    np__os_futex_wake(&tr->token);
}

/* Sleeps while token is 0, at most until deadline (0: none; CLOCK_MONOTONIC,
 * np_now's clock). Returns early now and then (a signal, a stale wake). */
static void tr_sleep(trec *tr, int64_t deadline)
{
    np__os_futex_wait_until(&tr->token, 0, deadline);
}

static bool claim_expired(np__wrec *r, uint64_t seq, unsigned *was);

static void tr_park(np__waiter *w, np__commit_fn commit, void *arg, unsigned flags,
                    const np__park_site *site, const void *obj)
{
    (void)flags;
    (void)site; /* np_dump lists tasks only */
    (void)obj;
    trec *tr = tr_of_waiter(w);
    atomic_store_explicit(&tr->token, 0, memory_order_relaxed);
    if (!commit(w, arg)) {
        atomic_store_explicit(&tr->token, 1, memory_order_relaxed);
        return;
    }
    /* A wait on the network needs a worker polling for it. */
    void (*hook)(void) = atomic_load_explicit(&np__thread_park_hook, memory_order_acquire);
    if (hook)
        hook();
    int64_t deadline = tr->deadline;
    uint64_t seq = np__wait_seq(&tr->rec);
    while (atomic_load_explicit(&tr->token, memory_order_acquire) == 0) {
        if (deadline > 0 && np_now() >= deadline) {
            unsigned was;
            if (claim_expired(&tr->rec, seq, &was))
                return; /* the deadline won: nobody else readies us */
            deadline = 0; /* a waker won: its ready is coming */
            continue;
        }
        tr_sleep(tr, deadline);
    }
}

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static np__wrec *pool;
static pthread_key_t thread_key;
static pthread_once_t thread_once = PTHREAD_ONCE_INIT;
static _Thread_local np__wrec *thread_rec;

static void thread_rec_release(void *p)
{
    np__wrec *r = p;
    /* A later key's destructor may wait again: it gets a record anew (and
     * this key's destructor runs again), never this one, now in the pool. */
    thread_rec = NULL;
    pthread_mutex_lock(&pool_lock);
    r->next_free = pool;
    pool = r;
    pthread_mutex_unlock(&pool_lock);
}

static void thread_key_create(void)
{
    if (pthread_key_create(&thread_key, thread_rec_release) != 0)
        NP__PANIC("sync: pthread_key_create failed");
}

/* Not inlined: the thread-local address must not be kept across a switch
 * (a plain thread never switches, but the rule is cheap to keep). */
__attribute__((noinline)) static np__wrec *my_thread_rec(void)
{
    if (thread_rec)
        return thread_rec;
    pthread_once(&thread_once, thread_key_create);
    pthread_mutex_lock(&pool_lock);
    np__wrec *r = pool;
    if (r)
        pool = r->next_free;
    pthread_mutex_unlock(&pool_lock);
    if (!r) {
        trec *tr = calloc(1, sizeof *tr);
        if (!tr)
            return NULL;
        tr->w.ops = &thread_rec_ops;
        atomic_init(&tr->token, 1);
        r = &tr->rec;
        if (np__timer_init(&r->timer, (uint32_t)((uintptr_t)r >> 6)) != 0) {
            free(tr);
            return NULL;
        }
        r->timer_ready = true;
    }
    pthread_setspecific(thread_key, r);
    thread_rec = r;
    return r;
}

/* The caller's record; a plain thread with no runtime gets one only if
 * anyway (nothing but another plain thread can end its wait then). */
static int wait_begin(np__wrec **out, bool anyway)
{
    np__task *t = np__sched_current_task();
    np__wrec *r;
    if (t) {
        r = &t->wrec;
        r->waiter = np__waiter_current();
    } else {
        /* Only a running runtime's workers ready tasks (and poll). */
        if (!anyway && !np__runtime_running())
            return -ESRCH;
        r = my_thread_rec();
        if (!r)
            return -ENOMEM;
        trec *tr = (trec *)r;
        r->waiter = &tr->w;
        tr->deadline = 0;
    }
    uint64_t cur = atomic_load_explicit(&r->claim, memory_order_relaxed);
    atomic_store(&r->claim, WORD(NP__W_SEQ(cur) + 1, NP__W_OPEN));
    *out = r;
    return 0;
}

int np__wait_begin_anyway(np__wrec **out)
{
    return wait_begin(out, true);
}

int np__wait_begin(np__wrec **out)
{
    return wait_begin(out, false);
}

uint64_t np__wait_seq(const np__wrec *r)
{
    return NP__W_SEQ(atomic_load_explicit(&r->claim, memory_order_relaxed));
}

/* The deadline's claim: OPEN | PARKED -> TIMEDOUT for wait seq; *was is the
 * state it left (PARKED: the winner readies the owner). */
static bool claim_expired(np__wrec *r, uint64_t seq, unsigned *was)
{
    uint64_t cur = atomic_load(&r->claim);
    for (;;) {
        if (NP__W_SEQ(cur) != seq)
            return false; /* a timer of an earlier wait */
        unsigned st = NP__W_STATE(cur);
        if (st != NP__W_OPEN && st != NP__W_PARKED)
            return false; /* a waker won */
        if (atomic_compare_exchange_weak(&r->claim, &cur, WORD(seq, NP__W_TIMEDOUT))) {
            *was = st;
            return true;
        }
    }
}

/* The timer (tasks). It carries the wait's seq as a uintptr_t: compare
 * that many low bits (all of them on 64-bit targets). */
static void expire(void *arg, uintptr_t seq)
{
    np__wrec *r = arg;
    uint64_t cur_seq = NP__W_SEQ(atomic_load(&r->claim));
    if ((uintptr_t)cur_seq != seq)
        return;
    unsigned was;
    if (claim_expired(r, cur_seq, &was) && was == NP__W_PARKED)
        np__wait_ready(r);
}

void np__wait_arm(np__wrec *r, int64_t deadline)
{
    trec *tr = tr_of(r);
    if (tr) /* a thread: its park keeps the deadline too */
        tr->deadline = deadline > 0 ? deadline : 0;
    r->timer_armed = deadline > 0;
    r->deadline = deadline > 0 ? deadline : 0;
    if (deadline > 0)
        np__timer_set(&r->timer, deadline, expire, r, (uintptr_t)np__wait_seq(r));
}

typedef struct commit_arg {
    np__wrec *r;
    void (*unlock)(void *);
    void *arg;
} commit_arg;

static bool commit(np__waiter *self, void *p)
{
    (void)self;
    commit_arg *c = p;
    np__wrec *r = c->r;
    /* Read the word before the locks go: until then no waker can claim. */
    uint64_t open = atomic_load(&r->claim);
    if (c->unlock)
        c->unlock(c->arg);
    if (NP__W_STATE(open) != NP__W_OPEN)
        return false; /* the deadline won already */
    return atomic_compare_exchange_strong(&r->claim, &open,
                                          WORD(NP__W_SEQ(open), NP__W_PARKED));
}

_Static_assert(NP__WREC_WAITING(NP__W_OPEN) && NP__WREC_WAITING(NP__W_PARKED) &&
                   !NP__WREC_WAITING(NP__W_CLAIMING) && !NP__WREC_WAITING(NP__W_DONE) &&
                   !NP__WREC_WAITING(NP__W_TIMEDOUT),
               "waitrec.h's NP__WREC_WAITING must match the claim states");

unsigned np__wait_park(np__wrec *r, void (*unlock)(void *), void *arg,
                       const np__park_site *site, const void *obj)
{
    commit_arg c = { r, unlock, arg };
    np__waiter_park_in(r->waiter, commit, &c, 0, site, obj);
    uint64_t w;
    /* A waker that won before the commit may still be writing. */
    while (NP__W_STATE(w = atomic_load_explicit(&r->claim, memory_order_acquire)) ==
           NP__W_CLAIMING)
        np__cpu_relax();
    if (r->timer_armed) { /* no deadline, no timer lock to take */
        np__timer_stop(&r->timer);
        r->timer_armed = false;
    }
    unsigned st = NP__W_STATE(w);
    np__assert(st == NP__W_DONE || st == NP__W_TIMEDOUT);
    return st;
}

bool np__wait_expired(np__wrec *r)
{
    /* Claim the wait for ourselves: a past deadline, found before parking. */
    uint64_t cur = atomic_load(&r->claim);
    return NP__W_STATE(cur) == NP__W_OPEN &&
           atomic_compare_exchange_strong(&r->claim, &cur, WORD(NP__W_SEQ(cur), NP__W_TIMEDOUT));
}
