/* Switching and finding work: the task waiter (ready/park), the switch
 * from task to task with its deferred half (after_switch), a task's first
 * frame, np_yield, a worker's search for work (find_runnable) and its loop.
 *
 * Switching. A task that parks, yields or exits picks its successor from its
 * own worker's runnext/runq and switches to it directly; only when there is
 * none (or every SCHED_TICK picks, for fairness) does it switch to the
 * scheduler context, which looks further. What must happen to the task left
 * behind (commit its park, requeue it, free its stack) cannot happen on its
 * own stack, so it is recorded in the worker (`pending`) and done by
 * whichever context runs next on that thread (after_switch).
 *
 * Finding work (find_runnable), in order: the test-hook inbox; on a fairness
 * tick the global queue, the network and the runq before runnext; runnext and
 * runq; the global queue; a non-blocking network poll (which also runs due
 * timers); stealing half of another worker's queue. Then idle.
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>

#include "base/clock.h"
#include "base/np_assert.h"
#include "pd/timer.h"
#include "poller/poller.h"
#include "runtime/sched_internal.h"

#define SCHED_TICK 61                  /* picks between fairness checks */
#define ALTSTACK_SIZE (64 * 1024)

/* ---- task waiters ---------------------------------------------------------- */

static void task_ready(np__waiter *wt)
{
    np__task *t = (np__task *)wt;
    sched_thread *m = me();
    if (!m) {
        foreign_enter();
        np__global_put(t);
        np__wakep();
        foreign_leave();
        return;
    }
    if (m->lent) {
        /* From a task's code, the common case: into runnext, which takes
         * exchanges from any thread (thieves use it too), so no hold is
         * needed. Only a task it displaces goes to the runq, which is the
         * holder's alone. If the worker was handed to another thread
         * meanwhile, t still lands in its runnext, where that thread (or a
         * thief) finds it. */
        worker *w = m->p;
        np__task *old = atomic_exchange(&w->runnext, t);
        if (atomic_load(&w->own) != m->lent_word) {
            /* Handed to another thread meanwhile (seq_cst, after the
             * exchange: if the retake came later, the new holder sees t).
             * That thread may be on its way to sleep without another look
             * at its runnext (a worker that was not spinning does not look
             * again), and nobody may be spinning: take t back if it is still
             * there, and queue globally, which a worker looks at under the
             * lock before it sleeps. If t is gone, a thread took it, or
             * displaced it and queued it. */
            np__task *x = t;
            if (atomic_compare_exchange_strong(&w->runnext, &x, NULL))
                np__global_put(t);
            if (old)
                np__global_put(old);
        } else if (old) {
            worker *h = p_hold(m);
            if (h) {
                local_put(h, old);
                p_lend_same(m);
            } else {
                np__global_put(old);
            }
        }
        np__wakep();
        return;
    }
    worker *w = m->p; /* in the scheduler: held, or none */
    if (!w) {
        /* This thread's worker was handed to another thread while its task
         * kept it (handoff.h): queue like a plain thread. */
        np__global_put(t);
        np__wakep();
        return;
    }
    if (w->delivering) {
        /* A poll's batch goes to the tail in the order the kernel reported
         * it, behind what was already queued (Go's injectglist): runnext
         * would let each arrival jump the queue and push the one before it
         * back, and under load a few connections would be served far more
         * often than the rest. A full runq sends the newcomer, not the
         * runq's oldest half, to the global queue. The poller's caller
         * wakes helpers once for the whole batch. */
        local_put(w, t);
        w->delivered++;
        return;
    }
    runq_put(w, t, true);
    np__wakep();
}

static void switch_away(sched_thread *m, np__task *cur, int action);

static void task_park(np__waiter *wt, np__commit_fn commit, void *arg, unsigned flags,
                      const np__park_site *site, const void *obj)
{
    np__task *t = (np__task *)wt;
    sched_thread *m = me();
    np__assert(m && m->current == t);
    t->commit = commit;
    t->commit_arg = arg;
    t->park_flags = flags;
    t->park_site = site; /* np_dump */
    t->park_obj = obj;
    t->park_since = np__coarse_now();
    p_hold(m);
    switch_away(m, t, AFTER_PARK);
    t->park_site = NULL;
}

const np__waiter_ops np__task_ops = { .ready = task_ready, .park = task_park };

/* ---- switching ------------------------------------------------------------- */

/* t goes back in the queues: on the thread's worker, or (the worker was
 * taken from this thread) the global queue. */
static void requeue(worker *w, np__task *t, bool next)
{
    if (w) {
        runq_put(w, t, next);
        return;
    }
    np__global_put(t);
    np__wakep();
}

/* The deferred half of a switch: runs in the context that got control on
 * thread m, with m's worker held (or none: m lost it, handoff.h). */
static void after_switch(sched_thread *m)
{
    int what = m->pending;
    np__task *t = m->pending_task;
    worker *w = m->p;
    m->pending = AFTER_NONE;
    m->pending_task = NULL;
    switch (what) {
    case AFTER_NONE:
        break;
    case AFTER_PARK:
        if (np__sched.idle_stack_ns > 0 && (t->park_flags & NP__PARK_STACK_FREE)) {
            np__idle_stack_parked(t);
            np__sweep_parked(w, t);
        }
        if (!t->commit(&t->waiter, t->commit_arg))
            requeue(w, t, true); /* the event came first: run again */
        else if (!w)
            np__wakep(); /* as a plain thread's park: some worker must watch
                          * the poller and the timers for it, and all may be
                          * asleep (this thread is about to be a spare) */
        break;
    case AFTER_YIELD:
        requeue(w, t, false);
        break;
    case AFTER_EXIT:
        np__task_recycle(w, t);
        np__task_done();
        break;
    case AFTER_MIGRATE: {
        worker *to = &np__sched.workers[t->target_worker];
        t->target_worker = -1;
        pthread_mutex_lock(&np__sched.lock);
        t->next = to->inbox;
        to->inbox = t;
        atomic_store(&to->has_inbox, 1);
        bool was_idle = to->on_idle;
        if (was_idle) {
            np__idle_unlink_locked(to);
            atomic_fetch_add(&np__sched.nspinning, 1); /* it wakes up spinning */
        }
        pthread_mutex_unlock(&np__sched.lock);
        if (was_idle)
            np__wake_worker(to);
        else if (atomic_load(&np__sched.polling))
            np__poller_wake();
        break;
    }
    default:
        NP__PANIC("bad pending action %d", what);
    }
}

/* Warms what the next picks will touch first, while the task just picked
 * runs: the stack of the task behind it (whose struct the pick before
 * brought in), and the struct of the one after. With thousands of
 * connections both are cold when their turn comes; a task's run (its
 * socket calls) takes long enough for the loads to finish. */
static void prefetch_next(worker *w)
{
    np__task *a = np__runq_peek(&w->runq, 0);
    if (!a)
        return;
    np__ctx_prefetch(&a->ctx);
    np__task *b = np__runq_peek(&w->runq, 1);
    if (b)
        __builtin_prefetch(b);
}

/* t, just taken from w's queue, has its stack moved out (idle stacks): so,
 * most likely, have the tasks behind it, woken together. Fault their
 * stacks' pages in with one call, not one page fault each; once per
 * NP__PREFAULT_MAX picks at most. */
__attribute__((noinline)) static void prefault_ahead(worker *w)
{
    uint32_t h = atomic_load_explicit(&w->runq.head, memory_order_relaxed);
    if ((int32_t)(w->prefault_mark - h) > 0)
        return;
    np__task *v[NP__PREFAULT_MAX];
    int n = 0;
    while (n < NP__PREFAULT_MAX && (v[n] = np__runq_peek(&w->runq, (uint32_t)n)))
        n++;
    w->prefault_mark = h + NP__PREFAULT_MAX;
    np__idle_stack_prefault(v, n);
}

/* The next task this worker can run without looking further, or NULL (then
 * the scheduler context looks: also every SCHED_TICK picks, for fairness). */
static np__task *pick_local(worker *w)
{
    if (++w->schedtick % SCHED_TICK == 0 || atomic_load_explicit(&w->has_inbox, memory_order_relaxed) ||
        atomic_load_explicit(&w->timers_due, memory_order_relaxed))
        return NULL;
    /* A plain load first: the exchange is a locked instruction, and
     * runnext is empty on most picks (yields, spawns). */
    np__task *t = atomic_load_explicit(&w->runnext, memory_order_relaxed)
                      ? atomic_exchange(&w->runnext, NULL)
                      : NULL;
    if (!t)
        t = np__runq_get(&w->runq);
    while (t && !ensure_stack(w, t))
        t = np__runq_get(&w->runq);
    if (t) {
        if (NP__IDLE_STATE(atomic_load_explicit(&t->idle, memory_order_relaxed)) == NP__IDLE_MOVED)
            prefault_ahead(w);
        np__idle_stack_resume(t);
        prefetch_next(w);
    }
    return t;
}

/* Leaves the running task `cur` for the next local task or the scheduler,
 * with `action` to be done for cur once off its stack. The caller holds
 * m's worker (p_hold), or m has none left: then the scheduler context
 * queues cur globally and m becomes a spare. */
static void switch_away(sched_thread *m, np__task *cur, int action)
{
    m->pending = action;
    m->pending_task = cur;
    np__task *next = m->p ? pick_local(m->p) : NULL;
    np__ctx *to;
    const np__stackinfo *si;
    if (next) {
        to = &next->ctx;
        si = &next->stack;
    } else {
        to = &m->sched_ctx;
        si = &m->sched_stack;
    }
    m->current = next;
    np__sig_hold_signals(&m->sig_hold);
    np__task_switch(&cur->ctx, to, si, false);
    /* Resumed, maybe on another thread: look it up again. */
    m = me();
    np__sig_release_signals(&m->sig_hold);
    after_switch(m);
    p_lend_switched(m);
}

/* A task's first and outermost frame. It never returns, so it is not
 * instrumented by ThreadSanitizer (see np__stack_map): what it calls returns
 * normally and is checked as usual. */
NP_NO_TSAN void np__task_entry(void *arg)
{
    np__task *t = arg;
    np__task_started();
    sched_thread *m = me();
    np__sig_release_signals(&m->sig_hold);
    after_switch(m);
    p_lend_switched(m);
    t->fn(t->arg);
    m = me();
    worker *w = p_hold(m);
    m->pending = AFTER_EXIT;
    m->pending_task = t;
    np__task *next = w ? pick_local(w) : NULL;
    m->current = next;
    np__sig_hold_signals(&m->sig_hold);
    if (next)
        np__task_exit_switch(&t->ctx, &next->ctx, &next->stack);
    np__task_exit_switch(&t->ctx, &m->sched_ctx, &m->sched_stack);
}

/* ---- finding work --------------------------------------------------------- */

static np__task *found(worker *w, np__task *t)
{
    prefetch_next(w);
    if (w->spinning) {
        w->spinning = false;
        if (atomic_fetch_sub(&np__sched.nspinning, 1) == 1)
            np__wakep(); /* we were the last looker: there may be more */
    }
    return t;
}

static np__task *inbox_get(worker *w)
{
    pthread_mutex_lock(&np__sched.lock);
    np__task *t = w->inbox;
    if (t)
        w->inbox = t->next;
    if (!w->inbox)
        atomic_store(&w->has_inbox, 0);
    pthread_mutex_unlock(&np__sched.lock);
    return t;
}

static np__task *find_runnable(worker *w)
{
    for (;;) {
        if (atomic_load(&np__sched.done))
            return NULL;
        np__task *t;
        if (atomic_load_explicit(&w->has_inbox, memory_order_relaxed) && (t = inbox_get(w)))
            return found(w, t);
        /* Due timers first, whatever else is queued (as Go's checkTimers):
         * a busy worker must not make sleepers and deadlines late. */
        if (atomic_load_explicit(&w->timers_due, memory_order_relaxed))
            atomic_store_explicit(&w->timers_due, 0, memory_order_relaxed);
        np__timers_run_due(NULL);
        if (w->schedtick % SCHED_TICK == 0) {
            /* Fairness: the global queue and the network before the local
             * queue, and the runq before runnext. The global queue first:
             * its batch goes into the local runq while there is room, and
             * only then does the poll add what it readied, behind it. The
             * other way round, a busy poll kept the runq full, the batch
             * could not move, and the global queue drained one task per
             * SCHED_TICK picks: tasks waited there for seconds (the soak at
             * 6,000 connections). */
            w->schedtick++;
            if (np__sched.idle_stack_ns > 0)
                np__sweep(np_now());
            t = np__global_get(w);
            np__poll_network(w);
            if (t || (t = np__runq_get(&w->runq)))
                return found(w, t);
        }
        if ((t = atomic_exchange(&w->runnext, NULL)) || (t = np__runq_get(&w->runq)))
            return found(w, t);
        if ((t = np__global_get(w)))
            return found(w, t);
        np__poll_network(w);
        if ((t = atomic_exchange(&w->runnext, NULL)) || (t = np__runq_get(&w->runq)))
            return found(w, t);
        if (!w->spinning &&
            2 * atomic_load(&np__sched.nspinning) < np__sched.nworkers - atomic_load(&np__sched.nidle)) {
            w->spinning = true;
            atomic_fetch_add(&np__sched.nspinning, 1);
        }
        if (w->spinning && (t = np__steal(w)))
            return found(w, t);
        if ((t = np__go_idle(w)))
            return found(w, t);
    }
}

/* ---- threads --------------------------------------------------------------- */

void np__thread_init(sched_thread *m)
{
    np__tls_thread = m;
    np__stackinfo_of_thread(&m->sched_stack);
    m->altstack = malloc(ALTSTACK_SIZE);
    if (m->altstack) {
        /* The thread's own one (np_run's caller may have set one) is put
         * back at the end. */
        stack_t ss = { .ss_sp = m->altstack, .ss_size = ALTSTACK_SIZE };
        if (sigaltstack(&ss, &m->old_altstack) != 0) {
            free(m->altstack);
            m->altstack = NULL;
        }
    }
}

void np__thread_fini(sched_thread *m)
{
    if (m->altstack) {
        stack_t ss = m->old_altstack;
        if (ss.ss_flags & SS_DISABLE)
            ss = (stack_t){ .ss_flags = SS_DISABLE };
        sigaltstack(&ss, NULL);
        free(m->altstack);
        m->altstack = NULL;
    }
    np__tls_thread = NULL;
}

/* Runs tasks from m's worker until the run ends; without a worker (lost to
 * a hand-off, or a spare from the start), waits to be handed one. */
void np__thread_run(sched_thread *m)
{
    for (;;) {
        after_switch(m);
        worker *w = m->p;
        if (!w) {
            if (!np__spare_wait(m))
                break;
            continue;
        }
        np__task *t = find_runnable(w);
        if (!t)
            break;
        if (!ensure_stack(w, t))
            continue;
        np__idle_stack_resume(t);
        m->current = t;
        /* Held here too: what lands after the scheduler's last intercepted
         * call would wait in its fiber until the task came back, and with
         * ucontext the task would resume with the mask it left with. */
        np__sig_hold_signals(&m->sig_hold);
        np__task_switch(&m->sched_ctx, &t->ctx, &t->stack, false);
        np__sig_release_signals(&m->sig_hold);
    }
}

void *np__worker_thread(void *arg)
{
    sched_thread *m = arg;
    np__thread_init(m);
    np__thread_run(m);
    np__thread_fini(m);
    return NULL;
}

void np_yield(void)
{
    sched_thread *m = me();
    np__task *t = m ? m->current : NULL;
    if (!t) {
        sched_yield();
        return;
    }
    worker *w = p_hold(m);
    if (t->target_worker >= 0) {
        switch_away(m, t, AFTER_MIGRATE); /* with or without a worker: no use of it */
        return;
    }
    if (!w) {
        switch_away(m, t, AFTER_YIELD); /* to the global queue; m becomes a spare */
        return;
    }
    /* Nobody else here to run (and no fairness check due): carry on. */
    if (np__runq_len(&w->runq) == 0 && !atomic_load(&w->runnext) &&
        (w->schedtick + 1) % SCHED_TICK != 0 && !atomic_load(&w->has_inbox) &&
        !atomic_load_explicit(&w->timers_due, memory_order_relaxed)) {
        w->schedtick++;
        p_lend_switched(m); /* a scheduling point all the same */
        return;
    }
    switch_away(m, t, AFTER_YIELD);
}
