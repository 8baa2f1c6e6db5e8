/* The M:N scheduler: workers, run queues, stealing, the idle protocol, and
 * the runtime's public calls (np_run, np_go, np_yield, np_sleep).
 *
 * Workers. Each worker is a thread with its own scheduler context (the
 * thread's stack), a local run queue (runq.h) and a `runnext` slot: a task
 * made runnable by the running task goes there and runs next, inheriting the
 * CPU's warm cache (ping-pong). Tasks readied by a network poll go to the
 * runq's tail instead, in the kernel's order, so no connection overtakes
 * another that became ready first. A global queue takes tasks from threads that
 * are not workers and the overflow of full local queues.
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
 *
 * Spinning and idling (Go's protocol, simplified). A worker looking for work
 * to steal is "spinning"; at most about half the busy workers spin. wakep()
 * — called by anything that makes a task runnable — does nothing if some
 * worker already spins; otherwise it wakes one sleeping worker (which starts
 * out spinning), or, if none sleeps, wakes the worker blocked in the poller.
 * A spinner that finds work stops spinning and, if it was the last, calls
 * wakep() so that remaining work keeps one looker. A worker going idle puts
 * itself on the idle list, stops spinning, and then checks every queue once
 * more: a producer that published work and saw a spinner (so did not wake
 * anybody) is covered by that re-check (both sides seq_cst).
 *
 * An idle worker then either blocks in the poller — only one at a time, and
 * only if some descriptor has a waiter or some timer is pending; it blocks
 * until the next timer — or sleeps on its own futex until wakep() picks it.
 *
 * The end. np_run returns when the live-task count drops to zero: the last
 * task's exit sets `done` and wakes every worker. np_go from outside
 * increments the count only while it is not zero, so no task can be started
 * into a runtime that is ending.
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/cpu_relax.h"
#include "runtime/idle_stack.h"
#include "netpoll.h"
#include "pd/netpoll_driver.h"
#include "base/np_assert.h"
#include "pd/pd.h"
#include "poller/poller.h"
#include "runtime/offload.h"
#include "runtime/runq.h"
#include "runtime/sanitizer.h"
#include "runtime/scheduler.h"
#include "runtime/task.h"
#include "pd/timer.h"

#define SCHED_TICK 61                  /* picks between fairness checks */
#define HOT_STACKS 32                  /* per worker, memory kept */
#define COLD_STACKS 256                /* process-wide, memory released */
#define HOT_TASKS 256                  /* free task structs kept per worker */
#define DEFAULT_STACK_SIZE (256 * 1024)
#define MIN_STACK_SIZE (16 * 1024)
#define MAX_STACK_SIZE ((size_t)1 << 30)
#define MAX_WORKERS 1024
#define DEFAULT_OFFLOAD_THREADS 64
#define MAX_OFFLOAD_THREADS 4096
#define ALTSTACK_SIZE (64 * 1024)
#define SWEEP_MOVES 4096               /* idle stacks moved per sweep pass, at most */

enum { AFTER_NONE, AFTER_PARK, AFTER_YIELD, AFTER_EXIT, AFTER_MIGRATE };

typedef struct worker {
    int id;
    pthread_t thread;
    np__ctx sched_ctx;          /* this worker's scheduler context */
    np__stackinfo sched_stack;
    np__task *current;          /* running task, NULL in the scheduler */
    uint32_t schedtick;
    int pending;                /* AFTER_*: what the next context must do */
    np__task *pending_task;
    bool spinning;
    bool delivering;            /* inside a network poll: readied tasks queue FIFO */
    int delivered;              /* how many, this poll */

    np__runq runq;
    np__task *_Atomic runnext;

    np__stack *hot;             /* free stacks, memory still warm */
    int nhot;
    np__task *free_tasks;       /* free task structs */
    int nfree_tasks;

    _Atomic uint32_t wake_word; /* futex: 1 = woken */
    struct worker *idle_next;   /* under S.lock */
    bool on_idle;               /* under S.lock */
    np__task *inbox;            /* under S.lock: migrated tasks (test hook) */
    _Atomic int has_inbox;

    uint32_t rand;
    char *altstack;
} __attribute__((aligned(64))) worker;

static struct {
    _Atomic int running;        /* np_run in progress */
    int nworkers;
    worker *workers;
    size_t stack_size;

    pthread_mutex_t lock;       /* global queue, idle list, cold stacks */
    np__task *gq_head, *gq_tail;
    _Atomic uint32_t gq_len;
    worker *idle;
    np__stack *cold;            /* free stacks, memory released */
    int ncold;
    np__task *free_tasks;       /* free task structs */
    np__task *stackwait;        /* runnable, but no stack can be had yet */
    _Atomic int nstackwait;

    _Atomic int nidle;          /* workers on the idle list */
    _Atomic int nspinning;
    _Atomic int polling;        /* a worker is blocked in the poller */
    _Atomic int64_t ntasks;     /* live tasks */
    _Atomic int done;           /* ntasks reached 0: workers exit */
    _Atomic int foreign;        /* plain threads inside np_go / ready */
    _Atomic int64_t started;    /* tasks holding a stack */
    int64_t stack_budget;       /* at most this many at once */

    _Atomic unsigned long steals, polls, sleeps, mapped, unmapped;
    _Atomic int64_t spawned;    /* tasks made since np_run began (np_stats) */

    /* Idle stacks (idle_stack.h). Every task struct ever made, for the sweep
     * (they are pooled, never freed while the runtime runs). */
    pthread_mutex_t reg_lock;
    np__task **reg;
    size_t nreg, capreg;
    int64_t idle_stack_ns;      /* 0: off */
    _Atomic int64_t sweep_next; /* time of the next pass */
    _Atomic int sweep_wanted;   /* the last pass saw parked stacks still resident */
    _Atomic int sweeping;
} S = { .reg_lock = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER };

/* initial-exec: read by the SIGSEGV handler, which must not go through
 * __tls_get_addr (not async-signal-safe in a dlopen'd library). */
static _Thread_local worker *tls_worker __attribute__((tls_model("initial-exec")));

/* Not inlined, and opaque to the optimiser: a task may resume on another
 * thread after any switch, so nothing may reuse a thread-local address
 * computed before one. */
__attribute__((noinline)) static worker *me(void)
{
    worker *w = tls_worker;
    __asm__ volatile("" : "+r"(w));
    return w;
}

np__task *np__sched_current_task(void)
{
    worker *w = me();
    return w ? w->current : NULL;
}

int np__sched_worker_id(void)
{
    worker *w = me();
    return w ? w->id : -1;
}

int np__sched_workers(void)
{
    return atomic_load(&S.running) ? S.nworkers : 0;
}

void np__sched_get_stats(np__sched_stats *o)
{
    o->steals = atomic_load(&S.steals);
    o->polls = atomic_load(&S.polls);
    o->sleeps = atomic_load(&S.sleeps);
    o->stacks_mapped = atomic_load(&S.mapped);
    o->stacks_unmapped = atomic_load(&S.unmapped);
    o->global_queue = atomic_load(&S.gq_len);
    o->local_queues = 0;
    for (int i = 0; i < (atomic_load(&S.running) ? S.nworkers : 0); i++)
        o->local_queues += np__runq_len(&S.workers[i].runq);
    o->idle = atomic_load(&S.nidle);
    o->polling = atomic_load(&S.polling);
    o->started = (long)atomic_load(&S.started);
}

void np__sched_fill_stats(np_stats *o)
{
    /* The caller holds the runtime (np__runtime_enter): S.workers stays. */
    int64_t queued = (int64_t)atomic_load(&S.gq_len) + atomic_load(&S.nstackwait);
    for (int i = 0; i < S.nworkers; i++)
        queued += np__runq_len(&S.workers[i].runq) + (atomic_load(&S.workers[i].runnext) != NULL);
    int idle = atomic_load(&S.nidle), polling = atomic_load(&S.polling);
    int64_t busy = S.nworkers - idle - polling; /* running a task, or about to */
    o->tasks = atomic_load(&S.ntasks);
    o->tasks_runnable = queued;
    o->tasks_parked = o->tasks - queued - (busy > 0 ? busy : 0);
    if (o->tasks_parked < 0)
        o->tasks_parked = 0; /* counted at different moments */
    o->tasks_started = atomic_load_explicit(&S.spawned, memory_order_relaxed);
    o->workers = S.nworkers;
    o->workers_idle = idle + polling;
    o->threads = S.nworkers + np__offload_threads();
    o->polls = (int64_t)atomic_load(&S.polls);
    o->steals = (int64_t)atomic_load(&S.steals);
    o->handoffs = 0; /* no hand-off yet (issue 14) */
    o->stalls = 0;
    int64_t stacks = (int64_t)atomic_load(&S.mapped) - (int64_t)atomic_load(&S.unmapped);
    size_t per = S.stack_size + np__page_size();
    o->stack_bytes_mapped = stacks * (int64_t)per;
    /* Stacks in the cold pool gave their memory back; the rest may hold
     * it, up to their whole size (an upper bound: untouched pages are not
     * resident, and idle stacks moved out are counted in full). */
    pthread_mutex_lock(&S.lock);
    int64_t warm = stacks - S.ncold;
    pthread_mutex_unlock(&S.lock);
    o->stack_bytes_resident = (warm > 0 ? warm : 0) * (int64_t)S.stack_size;
}

static void futex_wait(_Atomic uint32_t *word, uint32_t val)
{
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
#ifdef NP_TSAN
    /* ThreadSanitizer runs a signal's handler only in or after a call it
     * intercepts, and a raw futex is not one: a signal that interrupted
     * this sleep would wait for its handler until the worker next made such
     * a call (np_signal_notify's deliveries stalled). A zero sleep is one. */
    struct timespec zero = { 0, 0 };
    nanosleep(&zero, NULL);
#endif
}

static void futex_wake(_Atomic uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* ---- the global queue (under S.lock) ------------------------------------ */

static void gq_push_locked(np__task *t)
{
    t->next = NULL;
    if (S.gq_tail)
        S.gq_tail->next = t;
    else
        S.gq_head = t;
    S.gq_tail = t;
    atomic_fetch_add(&S.gq_len, 1);
}

static np__task *gq_pop_locked(void)
{
    np__task *t = S.gq_head;
    if (t) {
        S.gq_head = t->next;
        if (!S.gq_head)
            S.gq_tail = NULL;
        atomic_fetch_sub(&S.gq_len, 1);
    }
    return t;
}

static void global_put(np__task *t)
{
    pthread_mutex_lock(&S.lock);
    gq_push_locked(t);
    pthread_mutex_unlock(&S.lock);
}

/* Takes one task to run and moves a fair share of the rest into w's runq. */
static np__task *global_get_locked(worker *w)
{
    np__task *t = gq_pop_locked();
    if (!t)
        return NULL;
    uint32_t n = atomic_load(&S.gq_len) / (uint32_t)S.nworkers;
    if (n > NP__RUNQ_SIZE / 2)
        n = NP__RUNQ_SIZE / 2;
    while (n-- > 0) {
        np__task *x = S.gq_head;
        if (!x || !np__runq_put(&w->runq, x))
            break;
        gq_pop_locked();
    }
    return t;
}

static np__task *global_get(worker *w)
{
    if (atomic_load(&S.gq_len) == 0)
        return NULL;
    pthread_mutex_lock(&S.lock);
    np__task *t = global_get_locked(w);
    pthread_mutex_unlock(&S.lock);
    return t;
}

/* ---- making tasks runnable ---------------------------------------------- */

/* Owner: t at the tail of the runnable tasks. Into w's runq while it has
 * room and the global queue is empty; otherwise at the global queue's tail.
 * Once the global queue holds tasks, everything new goes behind them, so
 * that the runq and the global queue together stay one FIFO, shared by all
 * workers (who take from the global queue in batches as their runqs
 * drain, which also balances them).
 *
 * It used to go to the runq whenever that had room, and a full runq spilled
 * its oldest half to the global queue (Go's runqputslow). But a busy
 * worker serves the global queue one task per SCHED_TICK picks, and the
 * tick's poll refilled the runq each time: under load most tasks ended up
 * in the global queue behind thousands of others, while those in the runq,
 * readied again round after round, were served at once. The soak at 6,000
 * connections saw reads wait over 10 s with data in their sockets. */
static void local_put(worker *w, np__task *t)
{
    if (atomic_load_explicit(&S.gq_len, memory_order_relaxed) == 0 && np__runq_put(&w->runq, t))
        return;
    global_put(t);
}

/* Owner: queue t on w; `next` puts it in runnext (the displaced one goes to
 * the tail, local_put). */
static void runq_put(worker *w, np__task *t, bool next)
{
    if (next) {
        t = atomic_exchange(&w->runnext, t);
        if (!t)
            return;
    }
    local_put(w, t);
}

/* Takes w off the idle list if it is still there (true); false if a waker
 * already took it (a wake is then on its way to w->wake_word). */
static bool unidle(worker *w)
{
    bool removed = false;
    pthread_mutex_lock(&S.lock);
    if (w->on_idle) {
        worker **pp = &S.idle;
        while (*pp != w)
            pp = &(*pp)->idle_next;
        *pp = w->idle_next;
        w->on_idle = false;
        atomic_fetch_sub(&S.nidle, 1);
        removed = true;
    }
    pthread_mutex_unlock(&S.lock);
    return removed;
}

/* Wakes w, taken off the idle list by the caller (under S.lock). */
static void wake_worker(worker *w)
{
    atomic_store(&w->wake_word, 1);
    futex_wake(&w->wake_word);
}

/* Something became runnable: make sure some worker will look. */
static void wakep(void)
{
    /* Order the caller's publication of work before the reads below; the
     * idle path does the mirror image (see the comment at the top). */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&S.nspinning) != 0)
        return;
    if (atomic_load(&S.nidle) == 0) {
        /* Nobody asleep on a futex: at most the poller to wake, and it
         * looks for work as it comes out (no spinner needed). */
        if (atomic_load(&S.polling))
            np__poller_wake();
        return; /* otherwise everyone is busy: they will find it */
    }
    int zero = 0;
    if (!atomic_compare_exchange_strong(&S.nspinning, &zero, 1))
        return;
    pthread_mutex_lock(&S.lock);
    worker *w = S.idle;
    if (w) {
        S.idle = w->idle_next;
        w->on_idle = false;
        atomic_fetch_sub(&S.nidle, 1);
    }
    pthread_mutex_unlock(&S.lock);
    if (w) {
        wake_worker(w); /* it starts out spinning: it owns the count */
        return;
    }
    atomic_fetch_sub(&S.nspinning, 1);
    if (atomic_load(&S.polling))
        np__poller_wake();
}

/* Called by a plain thread around anything that touches the workers, so
 * that np_run cannot free them underneath it. */
static bool foreign_enter(void)
{
    atomic_fetch_add(&S.foreign, 1);
    return true;
}

static void foreign_leave(void)
{
    atomic_fetch_sub(&S.foreign, 1);
}

__attribute__((noinline)) np__waiter *np__waiter_current(void)
{
    np__task *t = np__sched_current_task();
    return t ? &t->waiter : np__thread_waiter_self();
}

/* A plain thread parked (np__thread_park_hook): what it waits for — an
 * event, a deadline — needs a worker watching the poller and the timers,
 * and every worker may be asleep. Wake one, as np_go does for new work. */
static void plain_thread_parked(void)
{
    foreign_enter();
    if (atomic_load(&S.ntasks) > 0)
        wakep();
    foreign_leave();
}

bool np__runtime_enter(void)
{
    if (me())
        return true;
    /* foreign first, then ntasks: np_run stores ntasks = 0 before it reads
     * foreign, so either it waits for us or we see the 0 (seq_cst). */
    atomic_fetch_add(&S.foreign, 1);
    if (atomic_load(&S.ntasks) > 0)
        return true;
    atomic_fetch_sub(&S.foreign, 1);
    return false;
}

void np__runtime_leave(void)
{
    if (!me())
        atomic_fetch_sub(&S.foreign, 1);
}

bool np__runtime_running(void)
{
    return atomic_load(&S.ntasks) > 0;
}

#define MAX_STOP_HOOKS 4
static void (*_Atomic stop_hooks[MAX_STOP_HOOKS])(void);

void np__sched_on_stop(void (*fn)(void))
{
    for (int i = 0; i < MAX_STOP_HOOKS; i++) {
        void (*cur)(void) = NULL;
        if (atomic_compare_exchange_strong(&stop_hooks[i], &cur, fn) || cur == fn)
            return;
    }
    NP__PANIC("more than %d stop hooks", MAX_STOP_HOOKS);
}

/* ---- task waiters ---------------------------------------------------------- */

static void task_ready(np__waiter *wt)
{
    np__task *t = (np__task *)wt;
    worker *w = me();
    if (w && w->delivering) {
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
    if (w) {
        runq_put(w, t, true);
        wakep();
        return;
    }
    foreign_enter();
    global_put(t);
    wakep();
    foreign_leave();
}

static void switch_away(worker *w, np__task *cur, int action);

static void task_park(np__waiter *wt, np__commit_fn commit, void *arg, unsigned flags)
{
    np__task *t = (np__task *)wt;
    worker *w = me();
    np__assert(w && w->current == t);
    t->commit = commit;
    t->commit_arg = arg;
    t->park_flags = flags;
    switch_away(w, t, AFTER_PARK);
}

static const np__waiter_ops task_ops = { .ready = task_ready, .park = task_park };

/* ---- task structs and stacks ------------------------------------------
 *
 * Both are pooled: per worker without a lock, then process-wide under
 * S.lock. Stacks beyond HOT_STACKS per worker have their memory handed back
 * (madvise) and wait in a cold pool of COLD_STACKS; beyond that they are
 * unmapped. So a burst of 10,000 finished tasks does not keep 10,000 stacks
 * resident.
 *
 * Each stack is two mappings (guard + stack) and the kernel allows
 * vm.max_map_count of them per process, so at most stack_budget tasks may
 * hold a stack at once; a task that would go over waits, unstarted, on
 * S.stackwait until another task finishes. Unstarted tasks hold no stack.
 */

static bool registry_add(np__task *t)
{
    bool ok = true;
    pthread_mutex_lock(&S.reg_lock);
    if (S.nreg == S.capreg) {
        size_t cap = S.capreg ? 2 * S.capreg : 1024;
        np__task **r = realloc(S.reg, cap * sizeof *r);
        if (r) {
            S.reg = r;
            S.capreg = cap;
        } else {
            ok = false;
        }
    }
    if (ok)
        S.reg[S.nreg++] = t;
    pthread_mutex_unlock(&S.reg_lock);
    return ok;
}

static np__task *task_struct_alloc(worker *w)
{
    np__task *t = w ? w->free_tasks : NULL;
    if (t) {
        w->free_tasks = t->next;
        w->nfree_tasks--;
        return t;
    }
    pthread_mutex_lock(&S.lock);
    t = S.free_tasks;
    if (t)
        S.free_tasks = t->next;
    pthread_mutex_unlock(&S.lock);
    if (t)
        return t;
    t = np__task_new_struct();
    if (!t)
        return NULL;
    t->waiter.ops = &task_ops;
    if (S.idle_stack_ns > 0 && !registry_add(t)) {
        np__task_free_struct(t);
        return NULL;
    }
    return t;
}

static void task_struct_free(worker *w, np__task *t)
{
    if (w->nfree_tasks < HOT_TASKS) {
        t->next = w->free_tasks;
        w->free_tasks = t;
        w->nfree_tasks++;
        return;
    }
    pthread_mutex_lock(&S.lock);
    t->next = S.free_tasks;
    S.free_tasks = t;
    pthread_mutex_unlock(&S.lock);
}

static np__stack *stack_alloc(worker *w)
{
    np__stack *st = w->hot;
    if (st) {
        w->hot = st->next;
        w->nhot--;
        return st;
    }
    pthread_mutex_lock(&S.lock);
    st = S.cold;
    if (st) {
        S.cold = st->next;
        S.ncold--;
    }
    pthread_mutex_unlock(&S.lock);
    if (st)
        return st;
    st = np__stack_map(S.stack_size);
    if (st)
        atomic_fetch_add(&S.mapped, 1);
    return st;
}

static void stack_unmap(np__stack *st)
{
    np__stack_unmap(st);
    atomic_fetch_add(&S.unmapped, 1);
}

static void stack_free(worker *w, np__stack *st)
{
    if (w->nhot < HOT_STACKS) {
        st->next = w->hot;
        w->hot = st;
        w->nhot++;
        return;
    }
    np__stack_release_memory(st);
    pthread_mutex_lock(&S.lock);
    if (S.ncold < COLD_STACKS) {
        st->next = S.cold;
        S.cold = st;
        S.ncold++;
        st = NULL;
    }
    pthread_mutex_unlock(&S.lock);
    if (st)
        stack_unmap(st);
}

static void task_entry(void *arg);

/* Gives t a stack before its first run. False if none can be had now: t
 * then waits on S.stackwait for a running task to finish. */
static bool ensure_stack(worker *w, np__task *t)
{
    if (t->stk)
        return true;
    np__stack *st = NULL;
    if (atomic_fetch_add(&S.started, 1) < S.stack_budget)
        st = stack_alloc(w);
    if (st) {
        np__task_start_on(t, st, task_entry);
        return true;
    }
    if (atomic_fetch_sub(&S.started, 1) == 1)
        NP__PANIC("cannot map a task stack of %zu bytes and no task holds one", S.stack_size);
    pthread_mutex_lock(&S.lock);
    t->next = S.stackwait;
    S.stackwait = t;
    atomic_fetch_add(&S.nstackwait, 1);
    pthread_mutex_unlock(&S.lock);
    return false;
}

/* A task finished on w: recycle its stack and struct; let a task waiting
 * for a stack go. */
static void task_recycle(worker *w, np__task *t)
{
    stack_free(w, np__task_finished(t));
    task_struct_free(w, t);
    atomic_fetch_sub(&S.started, 1);
    if (atomic_load(&S.nstackwait) == 0)
        return;
    pthread_mutex_lock(&S.lock);
    np__task *x = S.stackwait;
    if (x) {
        S.stackwait = x->next;
        atomic_fetch_sub(&S.nstackwait, 1);
        gq_push_locked(x);
    }
    pthread_mutex_unlock(&S.lock);
    if (x)
        wakep();
}

/* ---- switching ------------------------------------------------------------- */

static void task_done(void);
static void sweep_wanted_again(void);

/* The deferred half of a switch: runs in the context that got control. */
static void after_switch(worker *w)
{
    int what = w->pending;
    np__task *t = w->pending_task;
    w->pending = AFTER_NONE;
    w->pending_task = NULL;
    switch (what) {
    case AFTER_NONE:
        break;
    case AFTER_PARK:
        if (S.idle_stack_ns > 0 && (t->park_flags & NP__PARK_STACK_FREE)) {
            np__idle_stack_parked(t);
            sweep_wanted_again();
        }
        if (!t->commit(&t->waiter, t->commit_arg))
            runq_put(w, t, true); /* the event came first: run again */
        break;
    case AFTER_YIELD:
        runq_put(w, t, false);
        break;
    case AFTER_EXIT:
        task_recycle(w, t);
        task_done();
        break;
    case AFTER_MIGRATE: {
        worker *to = &S.workers[t->target_worker];
        t->target_worker = -1;
        pthread_mutex_lock(&S.lock);
        t->next = to->inbox;
        to->inbox = t;
        atomic_store(&to->has_inbox, 1);
        bool was_idle = to->on_idle;
        if (was_idle) {
            worker **pp = &S.idle;
            while (*pp != to)
                pp = &(*pp)->idle_next;
            *pp = to->idle_next;
            to->on_idle = false;
            atomic_fetch_sub(&S.nidle, 1);
            atomic_fetch_add(&S.nspinning, 1); /* it wakes up spinning */
        }
        pthread_mutex_unlock(&S.lock);
        if (was_idle)
            wake_worker(to);
        else if (atomic_load(&S.polling))
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

/* The next task this worker can run without looking further, or NULL (then
 * the scheduler context looks: also every SCHED_TICK picks, for fairness). */
static np__task *pick_local(worker *w)
{
    if (++w->schedtick % SCHED_TICK == 0 || atomic_load_explicit(&w->has_inbox, memory_order_relaxed))
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
        np__idle_stack_resume(t);
        prefetch_next(w);
    }
    return t;
}

/* Leaves the running task `cur` for the next local task or the scheduler,
 * with `action` to be done for cur once off its stack. */
static void switch_away(worker *w, np__task *cur, int action)
{
    w->pending = action;
    w->pending_task = cur;
    np__task *next = pick_local(w);
    np__ctx *to;
    const np__stackinfo *si;
    if (next) {
        to = &next->ctx;
        si = &next->stack;
    } else {
        to = &w->sched_ctx;
        si = &w->sched_stack;
    }
    w->current = next;
    np__task_switch(&cur->ctx, to, si, false);
    /* Resumed, maybe on another worker: look it up again. */
    after_switch(me());
}

/* A task's first and outermost frame. It never returns, so it is not
 * instrumented by ThreadSanitizer (see np__stack_map): what it calls returns
 * normally and is checked as usual. */
NP_NO_TSAN static void task_entry(void *arg)
{
    np__task *t = arg;
    np__task_started();
    after_switch(me());
    t->fn(t->arg);
    worker *w = me();
    w->pending = AFTER_EXIT;
    w->pending_task = t;
    np__task *next = pick_local(w);
    w->current = next;
    if (next)
        np__task_exit_switch(&t->ctx, &next->ctx, &next->stack);
    np__task_exit_switch(&t->ctx, &w->sched_ctx, &w->sched_stack);
}

/* The last task's exit ends the runtime. */
static void task_done(void)
{
    if (atomic_fetch_sub(&S.ntasks, 1) != 1)
        return;
    atomic_store(&S.done, 1);
    pthread_mutex_lock(&S.lock);
    while (S.idle) {
        worker *w = S.idle;
        S.idle = w->idle_next;
        w->on_idle = false;
        atomic_fetch_sub(&S.nidle, 1);
        wake_worker(w);
    }
    pthread_mutex_unlock(&S.lock);
    np__poller_wake();
}

/* ---- idle stacks: the sweep --------------------------------------------------
 *
 * Every half period (np_config.idle_stack_ns) one worker looks at every
 * task: a task in a stack-free park that an earlier pass, a whole period ago
 * or more, saw in that same park has its stack moved out (idle_stack.h). So
 * a task is moved after one to one and a half periods blocked. At most
 * SWEEP_MOVES a pass (the next pass then comes sooner). Passes run on a busy worker's fairness tick
 * and before a worker blocks in the poller, which then blocks no later than
 * the next pass while some parked stack is still resident, and indefinitely
 * once all are moved: an idle server stays asleep.
 */

static void sweep(int64_t now)
{
    if (now < atomic_load_explicit(&S.sweep_next, memory_order_relaxed))
        return;
    int zero = 0;
    if (!atomic_compare_exchange_strong(&S.sweeping, &zero, 1))
        return;
    int64_t period = S.idle_stack_ns;
    bool wanted = false;
    int budget = SWEEP_MOVES;
    np__task *chunk[256], *fresh[256];
    for (size_t i = 0;;) {
        pthread_mutex_lock(&S.reg_lock);
        size_t n = S.nreg - i < 256 ? S.nreg - i : 256;
        memcpy(chunk, S.reg + i, n * sizeof *chunk);
        pthread_mutex_unlock(&S.reg_lock);
        if (n == 0)
            break;
        i += n;
        size_t nfresh = 0;
        for (size_t k = 0; k < n; k++) {
            np__task *t = chunk[k];
            uint64_t word = atomic_load_explicit(&t->idle, memory_order_relaxed);
            if (NP__IDLE_STATE(word) != NP__IDLE_PARKED)
                continue;
            if (word != t->sweep_seen) { /* a park not seen before */
                t->sweep_seen = word;
                fresh[nfresh++] = t;
            } else if (now - t->sweep_seen_at >= period && budget > 0 &&
                       np__idle_stack_try_move(t, word)) {
                budget--;
                continue;
            }
            wanted = true;
        }
        /* Stamped after looking: each of these parked before this time, so
         * moving it no sooner than a period later never moves early. */
        int64_t seen = np_now();
        for (size_t k = 0; k < nfresh; k++)
            fresh[k]->sweep_seen_at = seen;
    }
    atomic_store(&S.sweep_wanted, wanted);
    atomic_store(&S.sweep_next, np__add_sat(np_now(), budget == 0 ? period / 8 : period / 2));
    atomic_store(&S.sweeping, 0);
}

/* The time a blocked poller must wake for the next pass. */
static int64_t sweep_deadline(void)
{
    if (S.idle_stack_ns <= 0)
        return INT64_MAX;
    int64_t now = np_now();
    sweep(now);
    if (!atomic_load(&S.sweep_wanted))
        return INT64_MAX;
    /* Past only while another worker's pass is still running. */
    int64_t next = atomic_load(&S.sweep_next);
    return next > now ? next : np__add_sat(now, S.idle_stack_ns / 8);
}

/* A task parked stack-free: if the last pass found nothing left to move,
 * a poller may be blocked with no pass scheduled; have it schedule one. */
static void sweep_wanted_again(void)
{
    if (atomic_load_explicit(&S.sweep_wanted, memory_order_relaxed))
        return;
    if (atomic_exchange(&S.sweep_wanted, 1) == 0 && atomic_load(&S.polling))
        np__poller_wake();
}

/* ---- finding work --------------------------------------------------------- */

static bool timers_or_waiters(void)
{
    return np__pd_waiters() > 0 || np__timers_next() != INT64_MAX;
}

/* One network poll on w's thread; what it readies lands on w's runq's
 * tail (task_ready), or, once the runq is full, the global queue's: never
 * ahead of older work. It takes about as many events as the runq has room
 * for (the kernel keeps the rest, in order, for the next round), and at
 * least a few, so that the network is heard however busy the worker is.
 * Returns whether helpers should be woken for what it readied: more than
 * one task, or one behind other queued work. The caller wakes them (after
 * leaving the poller, or it would wake itself). */
static bool poll_round(worker *w, bool block, int64_t until)
{
    int room = (int)(NP__RUNQ_SIZE - np__runq_len(&w->runq));
    w->delivering = true;
    w->delivered = 0;
    int rc = np__netpoll_round(block, until, room < 16 ? 16 : room);
    w->delivering = false;
    if (rc == -EBUSY)
        np__timers_run_due(NULL); /* another worker polls; timers are ours too */
    return w->delivered > 1 ||
           (w->delivered == 1 && np__runq_len(&w->runq) + (atomic_load(&w->runnext) != NULL) > 1);
}

static void poll_network(worker *w)
{
    if (timers_or_waiters() && poll_round(w, false, 0))
        wakep();
}

static np__task *steal(worker *w)
{
    for (int attempt = 0; attempt < 4; attempt++) {
        w->rand = w->rand * 1103515245u + 12345u;
        int start = (int)(w->rand >> 16) % S.nworkers;
        for (int i = 0; i < S.nworkers; i++) {
            worker *v = &S.workers[(start + i) % S.nworkers];
            if (v == w)
                continue;
            if (np__runq_steal(&v->runq, &w->runq) > 0) {
                atomic_fetch_add(&S.steals, 1);
                return np__runq_get(&w->runq);
            }
            /* Last resort: the task the victim was about to run next. Give
             * the victim a moment first: typically its running task readied
             * this one and is about to park, and then it should run here,
             * not bounce to another CPU (Go waits 3 us likewise). */
            if (attempt == 3 && atomic_load_explicit(&v->runnext, memory_order_relaxed)) {
                int64_t until = np_now() + 2 * NP_MICROSECOND;
                while (atomic_load_explicit(&v->runnext, memory_order_relaxed) && np_now() < until)
                    np__cpu_relax();
                np__task *t = atomic_exchange(&v->runnext, NULL);
                if (t) {
                    atomic_fetch_add(&S.steals, 1);
                    return t;
                }
            }
        }
    }
    return NULL;
}

static bool work_anywhere(void)
{
    if (atomic_load(&S.gq_len))
        return true;
    for (int i = 0; i < S.nworkers; i++)
        if (np__runq_len(&S.workers[i].runq) || atomic_load(&S.workers[i].runnext) ||
            atomic_load(&S.workers[i].has_inbox))
            return true;
    return false;
}

static np__task *found(worker *w, np__task *t)
{
    prefetch_next(w);
    if (w->spinning) {
        w->spinning = false;
        if (atomic_fetch_sub(&S.nspinning, 1) == 1)
            wakep(); /* we were the last looker: there may be more */
    }
    return t;
}

static np__task *inbox_get(worker *w)
{
    pthread_mutex_lock(&S.lock);
    np__task *t = w->inbox;
    if (t)
        w->inbox = t->next;
    if (!w->inbox)
        atomic_store(&w->has_inbox, 0);
    pthread_mutex_unlock(&S.lock);
    return t;
}

static void wait_for_wake(worker *w)
{
    atomic_fetch_add(&S.sleeps, 1);
    while (atomic_load(&w->wake_word) == 0)
        futex_wait(&w->wake_word, 0);
    atomic_store(&w->wake_word, 0);
    w->spinning = true; /* the waker counted us in nspinning */
}

/* Nothing found: block in the poller or sleep. Returns a task found on the
 * way, or NULL to look again. */
static np__task *go_idle(worker *w)
{
    pthread_mutex_lock(&S.lock);
    np__task *t = global_get_locked(w);
    if (!t && w->inbox) { /* posted under this lock: we cannot miss it */
        t = w->inbox;
        w->inbox = t->next;
        if (!w->inbox)
            atomic_store(&w->has_inbox, 0);
    }
    if (t || atomic_load(&S.done)) {
        pthread_mutex_unlock(&S.lock);
        return t;
    }
    w->on_idle = true;
    w->idle_next = S.idle;
    S.idle = w;
    atomic_fetch_add(&S.nidle, 1);
    pthread_mutex_unlock(&S.lock);

    if (w->spinning) {
        w->spinning = false;
        atomic_fetch_sub(&S.nspinning, 1);
        /* A producer may have seen us spinning and not woken anybody. */
        if (work_anywhere()) {
            if (unidle(w)) {
                w->spinning = true;
                atomic_fetch_add(&S.nspinning, 1);
            } else {
                wait_for_wake(w);
            }
            return NULL;
        }
    }
    int zero = 0;
    if (timers_or_waiters() && atomic_compare_exchange_strong(&S.polling, &zero, 1)) {
        if (!unidle(w)) { /* picked by a waker meanwhile */
            atomic_store(&S.polling, 0);
            wait_for_wake(w);
            return NULL;
        }
        atomic_fetch_add(&S.polls, 1);
        bool share = poll_round(w, true, sweep_deadline());
        atomic_store(&S.polling, 0);
        if (share)
            wakep();
        return NULL;
    }
    wait_for_wake(w);
    return NULL;
}

static np__task *find_runnable(worker *w)
{
    for (;;) {
        if (atomic_load(&S.done))
            return NULL;
        np__task *t;
        if (atomic_load_explicit(&w->has_inbox, memory_order_relaxed) && (t = inbox_get(w)))
            return found(w, t);
        /* Due timers first, whatever else is queued (as Go's checkTimers):
         * a busy worker must not make sleepers and deadlines late. */
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
            if (S.idle_stack_ns > 0)
                sweep(np_now());
            t = global_get(w);
            poll_network(w);
            if (t || (t = np__runq_get(&w->runq)))
                return found(w, t);
        }
        if ((t = atomic_exchange(&w->runnext, NULL)) || (t = np__runq_get(&w->runq)))
            return found(w, t);
        if ((t = global_get(w)))
            return found(w, t);
        poll_network(w);
        if ((t = atomic_exchange(&w->runnext, NULL)) || (t = np__runq_get(&w->runq)))
            return found(w, t);
        if (!w->spinning &&
            2 * atomic_load(&S.nspinning) < S.nworkers - atomic_load(&S.nidle)) {
            w->spinning = true;
            atomic_fetch_add(&S.nspinning, 1);
        }
        if (w->spinning && (t = steal(w)))
            return found(w, t);
        if ((t = go_idle(w)))
            return found(w, t);
    }
}

/* ---- stack overflow --------------------------------------------------------- */

/* The handler the program had when np_run installed ours. A fault that is
 * not an overflow into a task's guard page is the program's: it is passed to
 * that handler, and ours stays installed, so detection lasts the whole run.
 * At the end of the run ours is replaced by the saved one only if it is still
 * installed: a handler the program set meanwhile is left alone. */
static struct sigaction old_segv;
static _Atomic int segv_installed;

/* Puts the default action back and makes the fault happen again with it:
 * a fault re-runs its instruction when the handler returns; a SIGSEGV
 * sent by kill or raise (si_code <= 0) does not, so it is raised again
 * (pending while this handler runs, delivered when it returns). */
static void refault_default(int sig, const siginfo_t *si)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (si->si_code <= 0)
        raise(sig);
}

/* The frame of the on_segv that is running the program's handler on this
 * thread, or NULL. If that handler calls ours again (it chained to us, as
 * handlers do), the chain has come round: the default action ends it. The
 * program's handler may also leave by siglongjmp, leaving this stale; a
 * nested call is recognised by its frame lying below the recorded one on
 * the same stack (within STACK_WINDOW), which a later, fresh delivery's
 * frame never does. */
static _Thread_local char *segv_outer __attribute__((tls_model("initial-exec")));
#define STACK_WINDOW ((uintptr_t)256 * 1024)

static void on_segv(int sig, siginfo_t *si, void *uctx)
{
    worker *w = tls_worker;
    np__task *t = w ? w->current : NULL;
    if (t && np__task_in_guard(t, si->si_addr)) {
        static const char msg[] =
            "netpoll: fatal: task stack overflow: the task ran past the end of its stack "
            "and hit the guard page (raise np_config.stack_size)\n";
        ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)n;
        abort();
    }
    /* Not ours: the program's. SIG_DFL / SIG_IGN first: the kernel may keep
     * SA_SIGINFO in the flags of a default disposition. A fault cannot be
     * ignored, so SIG_IGN is the default too. */
    const struct sigaction *old = &old_segv;
    char here;
    bool nested = segv_outer && (uintptr_t)&here < (uintptr_t)segv_outer &&
                  (uintptr_t)segv_outer - (uintptr_t)&here < STACK_WINDOW;
    if (nested || old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN) {
        refault_default(sig, si);
        return;
    }
    /* Call it as the kernel would have: with its mask, and, for a one-shot
     * handler (SA_RESETHAND), with the default action installed first. */
    if (old->sa_flags & SA_RESETHAND)
        refault_default(sig, &(siginfo_t){ .si_code = 1 });
    sigset_t mask, saved;
    mask = old->sa_mask;
    if (!(old->sa_flags & SA_NODEFER))
        sigaddset(&mask, sig);
    pthread_sigmask(SIG_BLOCK, &mask, &saved);
    char *outer = segv_outer;
    segv_outer = &here;
    if (old->sa_flags & SA_SIGINFO)
        old->sa_sigaction(sig, si, uctx);
    else
        old->sa_handler(sig);
    segv_outer = outer;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

static void install_segv_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    struct sigaction prev;
    if (sigaction(SIGSEGV, &sa, &prev) != 0)
        return;
    /* Ours already (left by a run whose program chained to it): what we
     * would chain to is then the default, never ourselves. */
    if ((prev.sa_flags & SA_SIGINFO) && prev.sa_sigaction == on_segv) {
        memset(&prev, 0, sizeof prev);
        prev.sa_handler = SIG_DFL;
        sigemptyset(&prev.sa_mask);
    }
    old_segv = prev;
    atomic_store(&segv_installed, 1);
}

static void remove_segv_handler(void)
{
    if (!atomic_exchange(&segv_installed, 0))
        return;
    struct sigaction now;
    if (sigaction(SIGSEGV, NULL, &now) == 0 && (now.sa_flags & SA_SIGINFO) &&
        now.sa_sigaction == on_segv)
        sigaction(SIGSEGV, &old_segv, NULL);
}

/* ---- workers --------------------------------------------------------------- */

static void worker_run(worker *w)
{
    tls_worker = w;
    np__stackinfo_of_thread(&w->sched_stack);
    w->altstack = malloc(ALTSTACK_SIZE);
    if (w->altstack) {
        stack_t ss = { .ss_sp = w->altstack, .ss_size = ALTSTACK_SIZE };
        sigaltstack(&ss, NULL);
    }
    for (;;) {
        after_switch(w);
        np__task *t = find_runnable(w);
        if (!t)
            break;
        if (!ensure_stack(w, t))
            continue;
        np__idle_stack_resume(t);
        w->current = t;
        np__task_switch(&w->sched_ctx, &t->ctx, &t->stack, false);
    }
    if (w->altstack) {
        stack_t ss = { .ss_flags = SS_DISABLE };
        sigaltstack(&ss, NULL);
        free(w->altstack);
        w->altstack = NULL;
    }
    tls_worker = NULL;
}

static void *worker_thread(void *arg)
{
    worker_run(arg);
    return NULL;
}

static void unmap_stacks(np__stack *st)
{
    while (st) {
        np__stack *next = st->next;
        stack_unmap(st);
        st = next;
    }
}

static void free_structs(np__task *t)
{
    while (t) {
        np__task *next = t->next;
        np__task_free_struct(t);
        t = next;
    }
}

/* How many tasks may hold a stack at once: each stack is two mappings of
 * the vm.max_map_count the kernel allows; leave room for everything else. */
static int64_t stack_budget(void)
{
    int64_t maps = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        long long v;
        if (fscanf(f, "%lld", &v) == 1 && v > 0)
            maps = v;
        fclose(f);
    }
    int64_t b = maps / 2 - 2048;
    return b < 256 ? 256 : b;
}

/* ---- public API -------------------------------------------------------------- */

static np__task *task_new(worker *w, void (*fn)(void *), void *arg)
{
    np__task *t = task_struct_alloc(w);
    if (!t)
        return NULL;
    t->fn = fn;
    t->arg = arg;
    t->next = NULL;
    t->stk = NULL;
    t->target_worker = -1;
    return t;
}

int np_run(const np_config *cfg, void (*main_task)(void *), void *arg)
{
    int nworkers = cfg ? cfg->workers : 0;
    size_t stack = cfg ? cfg->stack_size : 0;
    int64_t idle_stack_ns = cfg ? cfg->idle_stack_ns : 0;
    int offload_threads = cfg ? cfg->offload_threads : 0;
    if (!main_task || nworkers < 0 || nworkers > MAX_WORKERS || idle_stack_ns < 0 ||
        offload_threads < 0 || offload_threads > MAX_OFFLOAD_THREADS)
        return -EINVAL;
    if (offload_threads == 0)
        offload_threads = DEFAULT_OFFLOAD_THREADS;
    if (stack == 0)
        stack = DEFAULT_STACK_SIZE;
    if (stack < MIN_STACK_SIZE || stack > MAX_STACK_SIZE)
        return -EINVAL;
    size_t ps = np__page_size();
    stack = (stack + ps - 1) / ps * ps;
    if (nworkers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nworkers = n > 0 ? (n > MAX_WORKERS ? MAX_WORKERS : (int)n) : 1;
    }
    if (me())
        return -EBUSY; /* np_run inside a task */
    int zero = 0;
    if (!atomic_compare_exchange_strong(&S.running, &zero, 1))
        return -EBUSY;

    int rc = np__netpoll_init();
    if (rc < 0)
        goto out_running;
    S.workers = aligned_alloc(64, sizeof(worker) * (size_t)nworkers);
    if (!S.workers) {
        rc = -ENOMEM;
        goto out_netpoll;
    }
    memset(S.workers, 0, sizeof(worker) * (size_t)nworkers);
    for (int i = 0; i < nworkers; i++) {
        S.workers[i].id = i;
        S.workers[i].rand = (uint32_t)i * 2654435761u + 1;
    }
    S.nworkers = nworkers;
    S.stack_size = stack;
    S.stack_budget = stack_budget();
    S.idle_stack_ns = NP__CTX_KNOWS_SP ? idle_stack_ns : 0;
    atomic_store(&S.sweep_next, np__add_sat(np_now(), idle_stack_ns));
    atomic_store(&S.sweep_wanted, 0);
    atomic_store(&S.started, 0);
    atomic_store(&S.done, 0);
    atomic_store(&S.nidle, 0);
    atomic_store(&S.nspinning, 0);
    atomic_store(&S.polling, 0);

    np__task *t = task_new(NULL, main_task, arg);
    if (!t) {
        rc = -ENOMEM;
        goto out_workers;
    }
    atomic_store(&S.ntasks, 1);
    atomic_store(&S.spawned, 1);
    global_put(t);
    install_segv_handler();
    np__offload_start(offload_threads);
    atomic_store(&np__thread_park_hook, plain_thread_parked);

    int started = 1;
    for (; started < nworkers; started++) {
        if (pthread_create(&S.workers[started].thread, NULL, worker_thread, &S.workers[started]) != 0)
            break;
    }
    if (started < nworkers)
        S.nworkers = started; /* run with what we got */
    worker_run(&S.workers[0]);
    for (int i = 1; i < started; i++)
        pthread_join(S.workers[i].thread, NULL);

    /* Every task has finished; plain threads may still be leaving np_go. */
    atomic_store(&np__thread_park_hook, NULL);
    while (atomic_load(&S.foreign))
        sched_yield();
    for (int i = 0; i < MAX_STOP_HOOKS; i++) {
        void (*hook)(void) = atomic_load(&stop_hooks[i]);
        if (hook)
            hook(); /* what the net layer left open: closed while the poller exists */
    }
    np__offload_stop();
    remove_segv_handler();
    for (int i = 0; i < nworkers; i++) {
        unmap_stacks(S.workers[i].hot);
        free_structs(S.workers[i].free_tasks);
    }
    unmap_stacks(S.cold);
    free_structs(S.free_tasks);
    S.cold = NULL;
    S.ncold = 0;
    S.free_tasks = NULL;
    np__assert(S.gq_head == NULL && S.stackwait == NULL);
    free(S.reg); /* every task has finished: no stack is moved out */
    S.reg = NULL;
    S.nreg = S.capreg = 0;
    S.idle_stack_ns = 0;
    rc = 0;
out_workers:
    free(S.workers);
    S.workers = NULL;
    S.nworkers = 0;
out_netpoll:
    np__netpoll_fini();
out_running:
    atomic_store(&S.running, 0);
    return rc;
}

int np_go(void (*fn)(void *), void *arg)
{
    if (!fn)
        return -EINVAL;
    worker *w = me();
    if (!w)
        foreign_enter();
    int rc = 0;
    int64_t n = atomic_load(&S.ntasks);
    do {
        if (n == 0) { /* no runtime, or one that is ending */
            rc = -ESRCH;
            goto out;
        }
    } while (!atomic_compare_exchange_weak(&S.ntasks, &n, n + 1));
    np__task *t = task_new(w, fn, arg);
    if (!t) {
        task_done();
        rc = -ENOMEM;
        goto out;
    }
    atomic_fetch_add_explicit(&S.spawned, 1, memory_order_relaxed);
    if (w)
        runq_put(w, t, false);
    else
        global_put(t);
    wakep();
out:
    if (!w)
        foreign_leave();
    return rc;
}

void np_yield(void)
{
    worker *w = me();
    np__task *t = w ? w->current : NULL;
    if (!t) {
        sched_yield();
        return;
    }
    if (t->target_worker >= 0) {
        switch_away(w, t, AFTER_MIGRATE);
        return;
    }
    /* Nobody else here to run (and no fairness check due): carry on. */
    if (np__runq_len(&w->runq) == 0 && !atomic_load(&w->runnext) &&
        (w->schedtick + 1) % SCHED_TICK != 0 && !atomic_load(&w->has_inbox)) {
        w->schedtick++;
        return;
    }
    switch_away(w, t, AFTER_YIELD);
}

int np__sched_yield_to(int id)
{
    np__task *t = np__sched_current_task();
    if (!t)
        return -EPERM;
    if (id < 0 || id >= S.nworkers)
        return -EINVAL;
    t->target_worker = id;
    np_yield();
    return 0;
}

/* ---- sleeping ------------------------------------------------------------------ */

#define SLEEP_IDLE ((uintptr_t)0)
#define SLEEP_FIRED ((uintptr_t)1)
#define SLEEP_WAIT ((uintptr_t)2)

static bool sleep_commit(np__waiter *self, void *arg)
{
    np__task *t = arg;
    uintptr_t expected = SLEEP_WAIT;
    return atomic_compare_exchange_strong(&t->sleep_sem, &expected, (uintptr_t)self);
}

static void sleep_fired(void *arg, uintptr_t seq)
{
    np__task *t = arg;
    if (seq != atomic_load(&t->sleep_seq))
        return;
    uintptr_t old = atomic_exchange(&t->sleep_sem, SLEEP_FIRED);
    if (old > SLEEP_WAIT)
        np__waiter_ready((np__waiter *)old);
}

/* A plain thread sleeps in the kernel, to the same absolute monotonic
 * time: it holds up nobody. */
static int thread_sleep_until(int64_t deadline)
{
    struct timespec ts = { .tv_sec = deadline / NP_SECOND, .tv_nsec = deadline % NP_SECOND };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
    return 0;
}

int np_sleep_until(int64_t deadline)
{
    np__task *t = np__sched_current_task();
    if (!t && !np__runtime_running())
        return -ESRCH;
    if (deadline <= np_now())
        return 0;
    if (!t)
        return thread_sleep_until(deadline);
    atomic_store(&t->sleep_sem, SLEEP_WAIT);
    uintptr_t seq = atomic_fetch_add(&t->sleep_seq, 1) + 1;
    np__timer_set(&t->sleep_timer, deadline, sleep_fired, t, seq);
    np__waiter_park(&t->waiter, sleep_commit, t, NP__PARK_STACK_FREE);
    np__assert(atomic_load(&t->sleep_sem) == SLEEP_FIRED);
    atomic_store(&t->sleep_sem, SLEEP_IDLE);
    return 0;
}

int np_sleep(int64_t ns)
{
    if (!np__sched_current_task() && !np__runtime_running())
        return -ESRCH;
    if (ns <= 0)
        return 0;
    return np_sleep_until(np__add_sat(np_now(), ns));
}
