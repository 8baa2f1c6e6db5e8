/* Poll descriptors: semaphores, deadlines and the descriptor cache.
 *
 * The semaphore (rg for reads, wg for writes) is a word with four kinds of
 * value:
 *
 *   NIL     nothing pending, nobody waiting.
 *   READY   the poller reported readiness that no waiter has consumed yet.
 *   WAIT    a waiter has announced it will park but has not committed.
 *   waiter  a parked waiter (its np__waiter pointer).
 *
 * Transitions:
 *
 *   reset (owner, before trying the syscall)      any of NIL/READY -> NIL
 *   park  (owner, after EAGAIN)                   READY -> NIL: return ready
 *                                                 NIL -> WAIT, then re-check
 *                                                 the summary bits; if clean,
 *                                                 commit WAIT -> waiter (CAS,
 *                                                 run by the waiter's park once
 *                                                 it can safely be readied)
 *         and, when woken or not committed,       swap -> NIL; ready iff the
 *                                                 old value was READY
 *   ready (poller)                                NIL/WAIT/waiter -> READY;
 *                                                 a waiter taken out is readied
 *   unblock (close or deadline)                   WAIT/waiter -> NIL; a waiter
 *                                                 taken out is readied; never
 *                                                 sets READY (the waiter then
 *                                                 finds the summary bit)
 *
 * The summary bits (closing, read/write expired, event error) are written
 * under the lock and published to `info` BEFORE any unblock, and the parker
 * re-checks them AFTER it set WAIT. With both sides sequentially consistent,
 * either the parker sees the bit (and does not commit) or the unblocker sees
 * WAIT or the waiter (and takes it out): a close or deadline can never be
 * missed by a waiter about to park. tests/model/pollsem.pml checks this.
 *
 * Exactly one party takes a waiter out of the word (a CAS or swap returning
 * it), and only that party readies it: no lost and no double wake-up.
 *
 * Deadlines. rd/wd are 0 (none), -1 (expired) or the time. Each armed timer
 * carries the seq (rseq/wseq) it was set with; changing a deadline, closing,
 * or reusing the pd bumps the seq, so a timer that fires late finds a
 * mismatch under the lock and does nothing. When rd == wd > 0 one timer
 * (rt, "combo") serves both directions, as in Go.
 *
 * Lock order: pd lock, then a timer shard lock (inside np__timer_set/stop).
 * Timer callbacks run with no timer lock held and take the pd lock.
 */
#include <errno.h>
#include <stdlib.h>

#include "netpoll.h"
#include "base/np_assert.h"
#include "pd/pd.h"
#include "poller/poller.h"
#include "pd/waiter.h"

#define PD_NIL ((uintptr_t)0)
#define PD_READY ((uintptr_t)1)
#define PD_WAIT ((uintptr_t)2)

static _Atomic uint32_t waiters; /* committed parks not yet readied */

uint32_t np__pd_waiters(void)
{
    return atomic_load_explicit(&waiters, memory_order_relaxed);
}

/* ---- summary word ---------------------------------------------------------- */

/* Under pd->lock: recompute the lock-derived bits, keep EVENT_ERR and
 * READ_HUP (set by events, without the lock). Must run
 * after any change to closing/rd/wd and before unblocking a waiter. */
static void publish_info(np__pd *pd)
{
    uint32_t bits = 0;
    if (pd->closing)
        bits |= NP__PD_CLOSING;
    if (pd->rd < 0)
        bits |= NP__PD_READ_EXPIRED;
    if (pd->wd < 0)
        bits |= NP__PD_WRITE_EXPIRED;
    uint32_t old = atomic_load(&pd->info);
    uint32_t keep = NP__PD_EVENT_ERR | NP__PD_READ_HUP;
    while (!atomic_compare_exchange_weak(&pd->info, &old, (old & keep) | bits)) {
    }
}

static void set_event_err(np__pd *pd, bool on)
{
    if (on)
        atomic_fetch_or(&pd->info, NP__PD_EVENT_ERR);
    else
        atomic_fetch_and(&pd->info, ~(uint32_t)NP__PD_EVENT_ERR);
}

static int check_err(np__pd *pd, int mode)
{
    uint32_t info = atomic_load(&pd->info);
    if (info & NP__PD_CLOSING)
        return -ECANCELED;
    if ((mode == NP__PD_READ && (info & NP__PD_READ_EXPIRED)) ||
        (mode == NP__PD_WRITE && (info & NP__PD_WRITE_EXPIRED)))
        return -ETIMEDOUT;
    /* Only reads report the poller's error: a write attempt gets the more
     * precise error from the syscall itself. */
    if (mode == NP__PD_READ && (info & NP__PD_EVENT_ERR))
        return -EIO;
    return 0;
}

/* ---- semaphore ------------------------------------------------------------- */

static inline _Atomic uintptr_t *sem(np__pd *pd, int mode)
{
    return mode == NP__PD_READ ? &pd->rg : &pd->wg;
}

static bool commit_park(np__waiter *self, void *arg)
{
    uintptr_t expected = PD_WAIT;
    if (!atomic_compare_exchange_strong((_Atomic uintptr_t *)arg, &expected, (uintptr_t)self))
        return false; /* readied or unblocked between WAIT and here */
    atomic_fetch_add_explicit(&waiters, 1, memory_order_relaxed);
    return true;
}

/* Returns true if the mode became ready, false if unblocked (closing or
 * deadline) or if an error bit was already set. */
static bool block(np__pd *pd, int mode, const np__park_site *site)
{
    _Atomic uintptr_t *gp = sem(pd, mode);
    for (;;) {
        uintptr_t v = PD_READY;
        if (atomic_compare_exchange_strong(gp, &v, PD_NIL))
            return true;
        v = PD_NIL;
        if (atomic_compare_exchange_strong(gp, &v, PD_WAIT))
            break;
        if (v != PD_READY && v != PD_NIL)
            NP__PANIC("pd %p: two waiters in one direction (mode %d)", (void *)pd, mode);
    }
    /* WAIT is visible now; a close or deadline published before this point
     * is seen here, one published after will find WAIT or the waiter. */
    if (check_err(pd, mode) == 0)
        np__waiter_park_in(np__waiter_current(), commit_park, (void *)gp, NP__PARK_STACK_FREE,
                           site, pd);
    uintptr_t old = atomic_exchange(gp, PD_NIL);
    if (old > PD_WAIT)
        NP__PANIC("pd %p: waiter still in the semaphore after wake-up", (void *)pd);
    return old == PD_READY;
}

/* Takes the waiter out of the semaphore, if any, and returns it for the
 * caller to ready. ioready: the poller's readiness (sets READY); otherwise a
 * close or deadline (clears WAIT, never sets READY). */
static np__waiter *unblock(np__pd *pd, int mode, bool ioready)
{
    _Atomic uintptr_t *gp = sem(pd, mode);
    uintptr_t old = atomic_load(gp);
    for (;;) {
        if (old == PD_READY)
            return NULL;
        if (old == PD_NIL && !ioready)
            return NULL; /* the next wait checks the summary bits itself */
        uintptr_t next = ioready ? PD_READY : PD_NIL;
        if (atomic_compare_exchange_weak(gp, &old, next))
            break;
    }
    if (old <= PD_WAIT)
        return NULL;
    atomic_fetch_sub_explicit(&waiters, 1, memory_order_relaxed);
    return (np__waiter *)old;
}

static void ready_both(np__waiter *r, np__waiter *w)
{
    if (r)
        np__waiter_ready(r);
    if (w)
        np__waiter_ready(w);
}

/* check_err, and the clock when a deadline is set: its timer may not have
 * run yet (a busy worker runs timers between tasks), but a call that starts
 * after the deadline must fail even if it need not block. One clock read
 * (vDSO), only on descriptors with a deadline. */
static int check_start(np__pd *pd, int mode)
{
    int rc = check_err(pd, mode);
    if (rc)
        return rc;
    int64_t d = atomic_load_explicit(mode == NP__PD_READ ? &pd->rd_at : &pd->wd_at,
                                     memory_order_relaxed);
    if (d != 0 && d <= np_now())
        return -ETIMEDOUT;
    return 0;
}

int np__pd_reset(np__pd *pd, int mode)
{
    /* A call about to try its syscall: the poller's error report is about
     * an error the syscall will itself return (and clear): an ICMP error on
     * UDP, a socket error. Kept, it turned every later read into -EIO on
     * the poll backend. A descriptor that truly cannot be polled is
     * reported again by the next poll, for the wait that follows. */
    if (mode == NP__PD_READ &&
        (atomic_load_explicit(&pd->info, memory_order_relaxed) & NP__PD_EVENT_ERR))
        set_event_err(pd, false);
    int rc = check_start(pd, mode);
    if (rc)
        return rc;
    atomic_store(sem(pd, mode), PD_NIL);
    return 0;
}

int np__pd_check(np__pd *pd, int mode)
{
    return check_start(pd, mode);
}

bool np__pd_read_ended(np__pd *pd)
{
    return atomic_load(&pd->info) & NP__PD_READ_HUP;
}

int np__pd_wait_in(np__pd *pd, int mode, const np__park_site *site)
{
    int rc = check_err(pd, mode);
    if (rc)
        return rc;
    /* Level-triggered backends watch a direction only while armed. A
     * failure means the registration is gone (closing): check_err says so. */
    if (pd->reg.fd >= 0 &&
        np__poller_arm(&pd->reg, mode == NP__PD_READ ? NP__POLL_READ : NP__POLL_WRITE) < 0 &&
        (rc = check_err(pd, mode)) != 0)
        return rc;
    while (!block(pd, mode, site)) {
        rc = check_err(pd, mode);
        if (rc)
            return rc;
        /* Woken by a deadline that was moved again before we ran: wait on. */
    }
    return 0;
}

void np__pd_ready(np__pd *pd, int mode, bool err)
{
    void (*notify)(void *, int, bool) = atomic_load_explicit(&pd->notify, memory_order_acquire);
    if (notify) {
        notify(atomic_load_explicit(&pd->notify_arg, memory_order_relaxed), mode, err);
        return;
    }
    if (err)
        set_event_err(pd, true);
    /* Before the unblock, so a reader that misses this bit finds READY. */
    if ((mode & NP__POLL_HUP) && !(atomic_load_explicit(&pd->info, memory_order_relaxed) & NP__PD_READ_HUP))
        atomic_fetch_or(&pd->info, NP__PD_READ_HUP);
    np__waiter *r = (mode & NP__POLL_READ) ? unblock(pd, NP__PD_READ, true) : NULL;
    np__waiter *w = (mode & NP__POLL_WRITE) ? unblock(pd, NP__PD_WRITE, true) : NULL;
    ready_both(r, w);
}

/* ---- deadlines ------------------------------------------------------------- */

static void deadline_fired(np__pd *pd, uintptr_t seq, bool read, bool write)
{
    np__waiter *r = NULL, *w = NULL;
    pthread_mutex_lock(&pd->lock);
    if (seq != (read ? pd->rseq : pd->wseq)) {
        /* Stale: the deadline was changed, or the pd closed or reused. */
        pthread_mutex_unlock(&pd->lock);
        return;
    }
    if (read) {
        if (pd->rd <= 0 || !pd->rt_armed)
            NP__PANIC("pd %p: read deadline fired but none is set", (void *)pd);
        pd->rd = -1;
    }
    if (write) {
        if (pd->wd <= 0 || (!pd->wt_armed && !read))
            NP__PANIC("pd %p: write deadline fired but none is set", (void *)pd);
        pd->wd = -1;
    }
    publish_info(pd); /* before the unblock: see the comment at the top */
    if (read)
        r = unblock(pd, NP__PD_READ, false);
    if (write)
        w = unblock(pd, NP__PD_WRITE, false);
    pthread_mutex_unlock(&pd->lock);
    ready_both(r, w);
}

static void read_deadline_fired(void *arg, uintptr_t seq)
{
    deadline_fired(arg, seq, true, false);
}

static void write_deadline_fired(void *arg, uintptr_t seq)
{
    deadline_fired(arg, seq, false, true);
}

static void both_deadlines_fired(void *arg, uintptr_t seq)
{
    deadline_fired(arg, seq, true, true);
}

/* Under pd->lock: makes the timers match rd/wd after a change from
 * (rd0, wd0). rt_armed/wt_armed mean "the timer is in use" (it may have
 * fired already); a change re-arms it with a new seq so that the old firing,
 * if still to come, is stale. */
static void sync_timers(np__pd *pd, int64_t rd0, int64_t wd0)
{
    bool combo0 = rd0 > 0 && rd0 == wd0;
    bool combo = pd->rd > 0 && pd->rd == pd->wd;
    np__timer_fn rfn = combo ? both_deadlines_fired : read_deadline_fired;

    if (!pd->rt_armed) {
        if (pd->rd > 0) {
            np__timer_set(&pd->rt, pd->rd, rfn, pd, pd->rseq);
            pd->rt_armed = true;
        }
    } else if (pd->rd != rd0 || combo != combo0) {
        pd->rseq++;
        if (pd->rd > 0) {
            np__timer_set(&pd->rt, pd->rd, rfn, pd, pd->rseq);
        } else {
            np__timer_stop(&pd->rt);
            pd->rt_armed = false;
        }
    }
    if (!pd->wt_armed) {
        if (pd->wd > 0 && !combo) {
            np__timer_set(&pd->wt, pd->wd, write_deadline_fired, pd, pd->wseq);
            pd->wt_armed = true;
        }
    } else if (pd->wd != wd0 || combo != combo0) {
        pd->wseq++;
        if (pd->wd > 0 && !combo) {
            np__timer_set(&pd->wt, pd->wd, write_deadline_fired, pd, pd->wseq);
        } else {
            np__timer_stop(&pd->wt);
            pd->wt_armed = false;
        }
    }
}

void np__pd_set_deadline(np__pd *pd, int64_t deadline, int mode)
{
    np__assert(mode >= NP__PD_READ && mode <= NP__PD_BOTH);
    int64_t d = deadline;
    if (d != 0 && d <= np_now())
        d = -1; /* already past: expire at once */
    np__waiter *r = NULL, *w = NULL;
    pthread_mutex_lock(&pd->lock);
    if (pd->closing) {
        pthread_mutex_unlock(&pd->lock);
        return;
    }
    int64_t rd0 = pd->rd, wd0 = pd->wd;
    if (mode & NP__PD_READ) {
        pd->rd = d;
        atomic_store_explicit(&pd->rd_at, deadline, memory_order_relaxed);
    }
    if (mode & NP__PD_WRITE) {
        pd->wd = d;
        atomic_store_explicit(&pd->wd_at, deadline, memory_order_relaxed);
    }
    publish_info(pd);
    sync_timers(pd, rd0, wd0);
    /* A deadline in the past unblocks a waiter parked now. */
    if (pd->rd < 0)
        r = unblock(pd, NP__PD_READ, false);
    if (pd->wd < 0)
        w = unblock(pd, NP__PD_WRITE, false);
    pthread_mutex_unlock(&pd->lock);
    ready_both(r, w);
}

void np__pd_unblock(np__pd *pd)
{
    pthread_mutex_lock(&pd->lock);
    if (pd->closing)
        NP__PANIC("pd %p unblocked twice", (void *)pd);
    pd->closing = true;
    pd->rseq++;
    pd->wseq++;
    publish_info(pd);
    np__waiter *r = unblock(pd, NP__PD_READ, false);
    np__waiter *w = unblock(pd, NP__PD_WRITE, false);
    if (pd->rt_armed) {
        np__timer_stop(&pd->rt);
        pd->rt_armed = false;
    }
    if (pd->wt_armed) {
        np__timer_stop(&pd->wt);
        pd->wt_armed = false;
    }
    pthread_mutex_unlock(&pd->lock);
    ready_both(r, w);
}

/* ---- the descriptor cache ---------------------------------------------------
 *
 * Pds are carved in chunks that are never freed (type-stable: a poller, a
 * timer callback or a late event may still look at a closed pd, and finds a
 * valid pd whose seq says "not yours"). Each thread keeps a magazine of free
 * pds, so open/close take no shared lock in the common case; magazines refill
 * from, and spill to, a global list under a lock in batches.
 */

#define CHUNK_PDS 128
#define MAG_BATCH 32

typedef struct magazine {
    np__pd *items[2 * MAG_BATCH];
    int n;
} magazine;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static np__pd *global_free; /* under cache_lock */
static uint32_t carved;     /* under cache_lock: pds ever made */
static pthread_key_t mag_key;
static pthread_once_t mag_once = PTHREAD_ONCE_INIT;
static _Thread_local magazine *tls_mag;

static void spill(magazine *m, int keep)
{
    pthread_mutex_lock(&cache_lock);
    while (m->n > keep) {
        np__pd *pd = m->items[--m->n];
        pd->next_free = global_free;
        global_free = pd;
    }
    pthread_mutex_unlock(&cache_lock);
}

static void mag_destroy(void *p)
{
    magazine *m = p;
    spill(m, 0);
    free(m);
}

static void mag_key_create(void)
{
    if (pthread_key_create(&mag_key, mag_destroy) != 0)
        NP__PANIC("pd cache: pthread_key_create failed");
}

/* Not inlined: a task may migrate between threads, and must not keep using
 * the thread-local pointer of the thread it started on. */
__attribute__((noinline)) static magazine *my_magazine(void)
{
    if (tls_mag)
        return tls_mag;
    pthread_once(&mag_once, mag_key_create);
    magazine *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_setspecific(mag_key, m);
    tls_mag = m;
    return m;
}

/* Under cache_lock: makes CHUNK_PDS new pds and puts them on the list. */
static int carve(void)
{
    np__pd *chunk = aligned_alloc(64, CHUNK_PDS * sizeof *chunk);
    if (!chunk)
        return -ENOMEM;
    for (int i = 0; i < CHUNK_PDS; i++) {
        np__pd *pd = &chunk[i];
        *pd = (np__pd){ .rd = 0 };
        int rc = np__pollreg_init(&pd->reg);
        if (rc == 0)
            rc = np__timer_init(&pd->rt, carved);
        if (rc == 0)
            rc = np__timer_init(&pd->wt, carved);
        if (rc < 0) /* chunk stays allocated: some pds are in the table */
            NP__PANIC("pd cache: out of memory while carving");
        pthread_mutex_init(&pd->lock, NULL);
        carved++;
        pd->next_free = global_free;
        global_free = pd;
    }
    return 0;
}

static np__pd *pd_alloc(void)
{
    magazine *m = my_magazine();
    if (m && m->n > 0)
        return m->items[--m->n];
    np__pd *pd = NULL;
    pthread_mutex_lock(&cache_lock);
    if (!global_free && carve() < 0)
        goto out;
    pd = global_free;
    global_free = pd->next_free;
    /* Refill the magazine while we hold the lock. */
    while (m && m->n < MAG_BATCH && global_free) {
        m->items[m->n++] = global_free;
        global_free = global_free->next_free;
    }
out:
    pthread_mutex_unlock(&cache_lock);
    return pd;
}

static void pd_free(np__pd *pd)
{
    magazine *m = my_magazine();
    if (!m) {
        pthread_mutex_lock(&cache_lock);
        pd->next_free = global_free;
        global_free = pd;
        pthread_mutex_unlock(&cache_lock);
        return;
    }
    if (m->n == 2 * MAG_BATCH)
        spill(m, MAG_BATCH);
    m->items[m->n++] = pd;
}

int np__pd_open(int fd, np__pd **out)
{
    return np__pd_open_notify(fd, NULL, NULL, out);
}

int np__pd_open_notify(int fd, void (*notify)(void *arg, int mode, bool err), void *arg,
                       np__pd **out)
{
    np__pd *pd = pd_alloc();
    if (!pd)
        return -ENOMEM;
    atomic_store_explicit(&pd->notify_arg, arg, memory_order_relaxed);
    atomic_store_explicit(&pd->notify, notify, memory_order_release);
    pthread_mutex_lock(&pd->lock);
    uintptr_t r = atomic_load(&pd->rg), w = atomic_load(&pd->wg);
    if ((r != PD_NIL && r != PD_READY) || (w != PD_NIL && w != PD_READY))
        NP__PANIC("pd %p: waiter on a free descriptor", (void *)pd);
    np__assert(!pd->rt_armed && !pd->wt_armed);
    pd->reg.fd = fd;
    pd->closing = false;
    set_event_err(pd, false);
    atomic_fetch_and(&pd->info, ~(uint32_t)NP__PD_READ_HUP);
    pd->rseq++; /* timers of a previous owner are stale */
    pd->wseq++;
    atomic_store(&pd->rg, PD_NIL);
    atomic_store(&pd->wg, PD_NIL);
    pd->rd = pd->wd = 0;
    atomic_store_explicit(&pd->rd_at, 0, memory_order_relaxed);
    atomic_store_explicit(&pd->wd_at, 0, memory_order_relaxed);
    publish_info(pd);
    pthread_mutex_unlock(&pd->lock);

    int rc = fd >= 0 ? np__poller_open(&pd->reg) : 0;
    if (rc < 0) {
        pd_free(pd);
        return rc;
    }
    *out = pd;
    return 0;
}

void np__pd_close(np__pd *pd)
{
    if (!pd->closing)
        NP__PANIC("pd %p closed without unblock", (void *)pd);
    uintptr_t r = atomic_load(&pd->rg), w = atomic_load(&pd->wg);
    if ((r != PD_NIL && r != PD_READY) || (w != PD_NIL && w != PD_READY))
        NP__PANIC("pd %p closed with a waiter parked", (void *)pd);
    if (pd->reg.fd >= 0)
        np__poller_close(&pd->reg); /* retires the tag */
    else
        np__pollreg_retire(&pd->reg);
    np__pollreg_quiesce(); /* no batch still holds the old tag */
    pd_free(pd);
}

int np__pd_wait(np__pd *pd, int mode)
{
    static const np__park_site rd = { "(pd wait)", "pd", NP__ON_PD_READ };
    static const np__park_site wr = { "(pd wait)", "pd", NP__ON_PD_WRITE };
    return np__pd_wait_in(pd, mode, mode == NP__PD_READ ? &rd : &wr);
}
