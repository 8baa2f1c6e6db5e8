/* The idle-stack sweep: which parked tasks have their stacks moved out
 * (idle_stack.h does the moving), and when the next pass runs.
 */
#include <stdatomic.h>
#include <sys/uio.h>

#include "base/clock.h"
#include "poller/poller.h"
#include "runtime/sched_internal.h"

#define BATCH 128                         /* stacks in MOVING at once, their pages released in one call */
#define PASS_BUSY_NS (100 * 1000)         /* a pass on a busy worker's fairness tick, at most, */
#define BUSY_GAP_NS (19 * PASS_BUSY_NS)   /* then this long without: 5% of the worker, at most */
#define PASS_IDLE_NS (2 * 1000 * 1000)    /* a pass on a worker with nothing to run, at most */

/* ---- idle stacks: the sweep --------------------------------------------------
 *
 * A task that parks stack-free (with idle stacks on) is queued, in park
 * order, stamped with its park's word (idle_stack.h: the park count) and
 * the time (np_now: the coarse clock of t->park_since is too coarse for a
 * period of a few ms). A pass takes tasks from the front while they were queued a
 * period (np_config.idle_stack_ns) ago or more, and stops at the first
 * that was not: the rest were queued later. So a pass costs what it moves,
 * not what is parked. A task still in that park is moved out; one resumed
 * since is dropped, or queued again at the back if it has parked again
 * (a task is in the queue once at most: `sweep_queued`).
 *
 * Moves go in batches of BATCH: each stack is copied out, then the pages of
 * the whole batch are released in one call (one TLB shootdown, which is
 * most of the cost of a release), then the batch is published MOVED.
 *
 * Passes run on a busy worker's fairness tick, at most PASS_BUSY_NS each
 * and then not for BUSY_GAP_NS (so a busy worker gives the sweep 5% of its
 * time at most: moving stacks is background work, as Go's scavenger, and
 * should not slow the tasks that run; a million tasks spawned at once are
 * mostly moved once the spawning is over), and before a worker blocks in the poller: then up to
 * PASS_IDLE_NS, and if more is due the poller only looks (timeout 0) and the
 * next pass follows at once. Otherwise the poller blocks no later than the
 * time the front task becomes due, and indefinitely once the queue is
 * empty: an idle server stays asleep. A pass is one worker's at a time
 * (`sweeping`), which owns the queue's front.
 *
 * Pushing is onto a lock-free stack, newest first, one per worker (no
 * cache line shared by parkers on different workers; `inbox` for a thread
 * without one), which the pass takes whole and appends, reversed, to its
 * queue: so the queue is in park order per worker, and across workers to
 * within a pass's interval (a task so queued behind a younger one is moved
 * a pass later).
 */

static struct {
    _Atomic(np__task *) inbox; /* a parker without a worker pushes here */
    np__task *head, *tail;     /* the pass's queue, oldest first */
    np__task *batch[BATCH];    /* in MOVING, pages not yet released */
    struct iovec iov[BATCH];
    int nbatch;
} Q;

void np__sweep_start(void)
{
    atomic_store(&Q.inbox, NULL);
    Q.head = Q.tail = NULL;
    Q.nbatch = 0;
    for (int i = 0; i < np__sched.nworkers; i++)
        atomic_store(&np__sched.workers[i].sweep_inbox, NULL);
    atomic_store(&np__sched.sweep_next, 0);
    atomic_store(&np__sched.sweep_wanted, 0);
    atomic_store(&np__sched.sweeping, 0);
}

static void append(np__task *t)
{
    t->sweep_link = NULL;
    if (Q.tail)
        Q.tail->sweep_link = t;
    else
        Q.head = t;
    Q.tail = t;
}

/* The parker, off t's stack, after np__idle_stack_parked and before the
 * wait's commit (so nothing has resumed t yet). */
void np__sweep_parked(worker *w, np__task *t)
{
    /* The PARKED store (seq_cst) before the flag's exchange (seq_cst), as
     * the flag's clearing before the look at the word in drop_or_requeue:
     * of a parker and a sweeper dropping t at once, one queues t. */
    if (atomic_exchange(&t->sweep_queued, 1))
        return; /* still queued from an earlier park: the pass will see this one */
    t->sweep_seen = atomic_load_explicit(&t->idle, memory_order_relaxed);
    t->sweep_seen_at = np_now();
    np__task *_Atomic *in = w ? &w->sweep_inbox : &Q.inbox;
    np__task *old = atomic_load_explicit(in, memory_order_relaxed);
    do
        t->sweep_link = old;
    while (!atomic_compare_exchange_weak_explicit(in, &old, t, memory_order_seq_cst, memory_order_relaxed));
    /* If the last pass found the queue empty, a poller may be blocked with
     * no pass to come: have it schedule one. (The push above is seq_cst, as
     * the pass's store of sweep_wanted and its look at the inbox after.) */
    if (atomic_load(&np__sched.sweep_wanted))
        return;
    if (atomic_exchange(&np__sched.sweep_wanted, 1) == 0 && atomic_load(&np__sched.polling))
        np__poller_wake();
}

/* t, taken off the queue, is not in the park it was queued for. */
static void drop_or_requeue(np__task *t)
{
    uint64_t w = atomic_load_explicit(&t->idle, memory_order_relaxed);
    if (NP__IDLE_STATE(w) != NP__IDLE_PARKED) {
        atomic_exchange(&t->sweep_queued, 0);
        w = atomic_load(&t->idle);
        if (NP__IDLE_STATE(w) != NP__IDLE_PARKED || atomic_exchange(&t->sweep_queued, 1))
            return; /* running or queued; or its parker has queued it */
    }
    /* Parked again since: before this clock read, not before the pass's
     * start (a task re-parked during the pass and stamped with the start
     * could be moved up to a pass's length early). */
    t->sweep_seen = w;
    t->sweep_seen_at = np_now();
    append(t);
}

/* Releases the batch's pages and publishes its tasks MOVED. */
static void flush(void)
{
    np__stack_release_ranges(Q.iov, Q.nbatch);
    for (int i = 0; i < Q.nbatch; i++)
        np__idle_stack_moved(Q.batch[i]);
    Q.nbatch = 0;
}

/* Moves t's stack out (t's word was `seen`, the park it was queued for). */
static bool move(np__task *t, uint64_t seen)
{
    char *from;
    size_t len;
    if (!np__idle_stack_copy_out(t, seen, &from, &len))
        return false;
    /* Moved: the next park queues it again. Before MOVED is published,
     * which the resumer, and so the next parker, acquires. */
    atomic_store_explicit(&t->sweep_queued, 0, memory_order_relaxed);
    /* One range per stack, its top page or two: a range merged over
     * neighbouring slots would have the kernel walk their guard regions. */
    Q.iov[Q.nbatch] = (struct iovec){ .iov_base = from, .iov_len = len };
    Q.batch[Q.nbatch++] = t;
    if (Q.nbatch == BATCH)
        flush();
    return true;
}

/* Appends the pushes to one inbox since the last pass, oldest first. */
static void take(np__task *_Atomic *inbox)
{
    if (!atomic_load_explicit(inbox, memory_order_relaxed))
        return;
    np__task *in = atomic_exchange_explicit(inbox, NULL, memory_order_acquire), *rev = NULL;
    while (in) {
        np__task *next = in->sweep_link;
        in->sweep_link = rev;
        rev = in;
        in = next;
    }
    while (rev) {
        np__task *next = rev->sweep_link;
        append(rev);
        rev = next;
    }
}

static bool inboxes_empty(void)
{
    if (atomic_load(&Q.inbox))
        return false;
    for (int i = 0; i < np__sched.nworkers; i++)
        if (atomic_load(&np__sched.workers[i].sweep_inbox))
            return false;
    return true;
}

static void pass(int64_t now, bool idle)
{
    int zero = 0;
    if (!atomic_compare_exchange_strong(&np__sched.sweeping, &zero, 1))
        return;
    int64_t period = np__sched.idle_stack_ns;
    take(&Q.inbox);
    for (int i = 0; i < np__sched.nworkers; i++)
        take(&np__sched.workers[i].sweep_inbox);
    int64_t stop = now + (idle ? PASS_IDLE_NS : PASS_BUSY_NS);
    bool more = false;
    for (unsigned k = 1; Q.head; k++) {
        np__task *t = Q.head;
        uint64_t w = atomic_load_explicit(&t->idle, memory_order_relaxed);
        if (w == t->sweep_seen && now - t->sweep_seen_at < period)
            break; /* the oldest still parked is not due: nor is any behind it */
        Q.head = t->sweep_link;
        if (!Q.head)
            Q.tail = NULL;
        if (w != t->sweep_seen || !move(t, w))
            drop_or_requeue(t);
        if (k % 32 == 0 && np_now() >= stop) {
            more = Q.head != NULL;
            break;
        }
    }
    flush();
    int64_t next;
    if (more)
        next = idle ? now : np__add_sat(np_now(), BUSY_GAP_NS);
    else if (Q.head)
        next = Q.head->sweep_seen_at + period; /* then a batch has gathered */
    else
        next = now;
    /* Not before an eighth of a period: the moves of tasks parked over
     * that time go together. */
    if (!more && next < now + period / 8)
        next = np__add_sat(now, period / 8);
    atomic_store(&np__sched.sweep_next, next);
    /* Nothing queued: a poller may block for good, unless a push comes
     * (np__sweep_parked sees wanted clear, or this sees the inbox). */
    atomic_store(&np__sched.sweep_wanted, Q.head != NULL);
    if (!Q.head && !inboxes_empty())
        atomic_store(&np__sched.sweep_wanted, 1);
    atomic_store(&np__sched.sweeping, 0);
}

/* A pass on a busy worker's fairness tick, if one is due. */
void np__sweep(int64_t now)
{
    if (now >= atomic_load_explicit(&np__sched.sweep_next, memory_order_relaxed))
        pass(now, false);
}

/* Before a worker blocks in the poller: a pass if one is due, then the time
 * the poller must wake for the next. */
int64_t np__sweep_deadline(void)
{
    if (np__sched.idle_stack_ns <= 0)
        return INT64_MAX;
    int64_t now = np_now();
    if (now >= atomic_load_explicit(&np__sched.sweep_next, memory_order_relaxed))
        pass(now, true);
    if (!atomic_load(&np__sched.sweep_wanted))
        return INT64_MAX;
    int64_t next = atomic_load(&np__sched.sweep_next);
    if (next > now)
        return next;
    /* Due: more to move (this pass stopped for time; the poller only
     * looks), or another worker's pass is running (no need to spin). */
    return atomic_load(&np__sched.sweeping) ? np__add_sat(now, np__sched.idle_stack_ns / 8) : now;
}
