/* The scheduler's shared state, for its units only (scheduler.c lists
 * them): the state struct np__sched, the worker struct, the running
 * worker (me), the calls the units make on one another, and the hot-path
 * helpers every unit inlines (runq_put, local_put, ensure_stack).
 */
#ifndef NP_SCHED_INTERNAL_H
#define NP_SCHED_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "netpoll.h"
#include "pd/waiter.h"
#include "runtime/context.h"
#include "runtime/handoff.h"
#include "runtime/idle_stack.h"
#include "runtime/runq.h"
#include "base/sanitizer.h"
#include "runtime/scheduler.h"
#include "runtime/task.h"

/* Hidden even when declared: direct (not GOT) access from the other units. */
#pragma GCC visibility push(hidden)

enum { AFTER_NONE, AFTER_PARK, AFTER_YIELD, AFTER_EXIT, AFTER_MIGRATE };

/* A worker (Go's P): the queues and caches one thread at a time runs
 * tasks from. Which thread, and whether it may be taken from it, is `own`
 * (handoff.h); everything else here belongs to that thread while it holds
 * the worker, except what says otherwise. */
typedef struct worker {
    int id;
    uint32_t schedtick;
    bool spinning;
    bool delivering;            /* inside a network poll: readied tasks queue FIFO */
    int delivered;              /* how many, this poll */

    np__runq runq;
    np__task *_Atomic runnext;

    np__stack *hot;             /* free stacks, memory still warm */
    int nhot;
    np__task *free_tasks;       /* free task structs */
    int nfree_tasks;

    _Atomic uint32_t wake_word; /* futex: 1 = woken (its thread sleeps on it) */
    struct worker *idle_next;   /* under np__sched.lock */
    bool on_idle;               /* under np__sched.lock */
    np__task *inbox;            /* under np__sched.lock: migrated tasks (test hook) */
    _Atomic int has_inbox;
    _Atomic int timers_due;     /* set by the monitor: look at the timers */
    np__task *_Atomic sweep_inbox; /* tasks parked here, for the idle-stack sweep */

    uint32_t rand;
    uint32_t prefault_mark;     /* runq position up to which stacks were prefaulted */

    /* The ownership word (handoff.h), on a line of its own: the monitor
     * reads it, the holding thread writes it at every switch. */
    _Alignas(64) _Atomic uint64_t own;
    uint64_t mon_word;          /* the monitor's: `own` as last seen, */
    int64_t mon_since;          /* and since when */
    bool mon_counted;           /* that stretch was counted as a stall */
} __attribute__((aligned(64))) worker;

/* A thread that runs tasks (Go's M): its scheduler context, the task it
 * runs, and the worker it holds (NULL for a spare, or once the monitor
 * took the worker away). The first nworkers start with worker i each;
 * more are started by the monitor for hand-offs, up to max_threads. */
typedef struct sched_thread {
    int idx;                    /* in np__sched.threads; in `own` words */
    bool joinable;              /* started with pthread_create (not np_run's caller) */
    pthread_t thread;
    np__ctx sched_ctx;          /* this thread's scheduler context */
    np__stackinfo sched_stack;
    np__task *current;          /* running task, NULL in the scheduler */
    int pending;                /* AFTER_*: what the next context must do */
    np__task *pending_task;
    worker *p;                  /* the worker it holds or lent, or NULL */
    bool lent;                  /* p is lent to the running task's code */
    uint64_t lent_word;         /* the LENT word it stored */
    _Atomic uint32_t wake_word; /* a spare sleeps on it: 1 = woken */
    worker *_Atomic given;      /* a worker handed to this spare */
    struct sched_thread *spare_next; /* under np__sched.lock */
    char *altstack;
    stack_t old_altstack; /* the thread's before np__thread_init */
    np__sig_hold sig_hold; /* across a switch (base/sanitizer.h) */
    /* The monitor's: the task this thread was in when the monitor took its
     * worker, reported only if the thread is still in it a while later
     * (monitor.c, confirm_stalls). */
    np__task *mon_task;
    int64_t mon_since, mon_seen; /* the stall's start; the retake */
    int mon_wid;
    bool mon_handed;
} __attribute__((aligned(64))) sched_thread;

struct np__sched_state {
    _Atomic int running;        /* np_run in progress */
    int nworkers;
    worker *workers;
    sched_thread *threads;      /* max_threads of them; nthreads started */
    int max_threads;
    _Atomic int nthreads;
    sched_thread *spare;        /* under lock: threads waiting for a worker */
    int nspare;
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
    _Atomic int spin_workers;   /* nworkers while running on 2+ CPUs, else 0 */
    _Atomic int nspinning;
    _Atomic int polling;        /* a worker is blocked in the poller */
    _Atomic int64_t ntasks;     /* live tasks */
    _Atomic int done;           /* ntasks reached 0: workers exit */
    _Atomic int foreign;        /* plain threads inside np_go / ready */
    _Atomic int64_t started;    /* tasks holding a stack */
    int64_t stack_budget;       /* at most this many at once */

    _Atomic unsigned long steals, polls, sleeps, mapped, unmapped;
    _Atomic int64_t spawned;    /* tasks made since np_run began (np_stats) */

    int64_t idle_stack_ns;      /* idle stacks (idle_stack.h); 0: off */

    /* The monitor (monitor.c). */
    int64_t stall_ns;           /* < 0: no monitor */
    pthread_t monitor;
    _Atomic bool monitor_running;
    _Atomic int monitor_idle;   /* asleep until a worker leaves the idle state */
    _Atomic int monitor_stop;
    _Atomic uint32_t monitor_word; /* futex: its sleep between looks */
    _Atomic int64_t monitor_until; /* when it looks next (a timer due
                                    * earlier wakes it: monitor.c) */
    _Atomic int64_t stalls, handoffs;
    _Atomic int64_t sweep_next; /* time of the next pass */
    _Atomic int sweep_wanted;   /* the last pass saw parked stacks still resident */
    _Atomic int sweeping;
};
extern struct np__sched_state np__sched;

/* initial-exec: read by the SIGSEGV handler, which must not go through
 * __tls_get_addr (not async-signal-safe in a dlopen'd library). */
extern _Thread_local sched_thread *np__tls_thread __attribute__((tls_model("initial-exec")));

/* The running thread, NULL on a plain thread. Not inlined, and opaque to
 * the optimiser: a task may resume on another thread after any switch, so
 * nothing may reuse a thread-local address computed before one. One copy
 * per unit that calls it. */
__attribute__((noinline, unused)) static sched_thread *me(void)
{
    sched_thread *m = np__tls_thread;
    __asm__ volatile("" : "+r"(m));
    return m;
}

/* ---- the hand-off (handoff.h) ---------------------------------------------- */

/* Into a task's code after a switch: the worker may be taken from now on.
 * A new sequence number: the monitor sees a new stretch begin. */
static inline void p_lend_switched(sched_thread *m)
{
    worker *w = m->p;
    if (!w)
        return; /* a thread that lost its worker runs its task on without one */
    uint64_t v = (atomic_load_explicit(&w->own, memory_order_relaxed) + NP__OWN_SEQ_ONE) | NP__OWN_LENT;
    m->lent_word = v;
    m->lent = true;
    atomic_store_explicit(&w->own, v, memory_order_release);
}

/* Back into the same task's code after a call that did not switch: the
 * same stretch goes on (a task that keeps readying others is still one
 * stall). */
static inline void p_lend_same(sched_thread *m)
{
    if (!m->p)
        return;
    m->lent = true;
    atomic_store_explicit(&m->p->own, m->lent_word, memory_order_release);
}

/* At a scheduling point of the running task: takes the worker back. NULL
 * if the monitor took it meanwhile; m then never touches it again. */
static inline worker *p_hold(sched_thread *m)
{
    if (!m->lent)
        return m->p; /* in the scheduler already, or no worker */
    m->lent = false;
    uint64_t lent = m->lent_word;
    if (atomic_compare_exchange_strong_explicit(&m->p->own, &lent, lent & ~NP__OWN_LENT,
                                                memory_order_acq_rel, memory_order_acquire))
        return m->p;
    m->p = NULL;
    return NULL;
}

/* Called by a plain thread around anything that touches the workers, so
 * that np_run cannot free them underneath it. */
static inline bool foreign_enter(void)
{
    atomic_fetch_add(&np__sched.foreign, 1);
    return true;
}

static inline void foreign_leave(void)
{
    atomic_fetch_sub(&np__sched.foreign, 1);
}

/* ---- processors and queues (sched_queue.c) ------------------------------ */

void np__gq_push_locked(np__task *t);
void np__global_put(np__task *t);
np__task *np__global_get_locked(worker *w);
np__task *np__global_get(worker *w);
np__task *np__steal(worker *w);

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
static inline void local_put(worker *w, np__task *t)
{
    if (atomic_load_explicit(&np__sched.gq_len, memory_order_relaxed) == 0 && np__runq_put(&w->runq, t))
        return;
    np__global_put(t);
}

/* Owner: queue t on w; `next` puts it in runnext (the displaced one goes to
 * the tail, local_put). */
static inline void runq_put(worker *w, np__task *t, bool next)
{
    if (next) {
        t = atomic_exchange(&w->runnext, t);
        if (!t)
            return;
    }
    local_put(w, t);
}

/* ---- the idle protocol (sched_idle.c) ----------------------------------- */

void np__idle_unlink_locked(worker *w);
void np__wake_worker(worker *w);
void np__wakep(void);
void np__poll_network(worker *w);
np__task *np__go_idle(worker *w);

/* ---- switching (sched_switch.c) ----------------------------------------- */

extern const np__waiter_ops np__task_ops;
void np__task_entry(void *arg);
void np__thread_init(sched_thread *m);   /* on the thread, before it runs tasks */
void np__thread_run(sched_thread *m);    /* runs tasks until the run ends */
void np__thread_fini(sched_thread *m);
void *np__worker_thread(void *arg);

/* ---- the monitor and spare threads (monitor.c) ------------------------------ */

int np__monitor_start(void);
void np__monitor_stop(void);
bool np__spare_wait(sched_thread *m);
void np__spares_release_locked(void);
void np__monitor_nudge(void);           /* a worker left the idle state */

/* ---- task structs and stacks (stack_cache.c) ---------------------------- */

np__task *np__task_new(worker *w, void (*fn)(void *), void *arg);
bool np__ensure_stack_slow(worker *w, np__task *t);
void np__task_recycle(worker *w, np__task *t);
int64_t np__stack_budget(void);
void np__stack_cache_fini(int nworkers);

/* Gives t a stack before its first run. False if none can be had now: t
 * then waits on np__sched.stackwait for a running task to finish. */
static inline bool ensure_stack(worker *w, np__task *t)
{
    return t->stk || np__ensure_stack_slow(w, t);
}

/* ---- the rest --------------------------------------------------------------- */

void np__sweep_start(void);               /* stack_sweep.c */
void np__sweep(int64_t now);
int64_t np__sweep_deadline(void);
void np__sweep_parked(worker *w, np__task *t);
void np__segv_install(void);              /* segv_guard.c */
void np__segv_remove(void);
void np__task_done(void);                 /* scheduler.c */

#pragma GCC visibility pop

#endif
