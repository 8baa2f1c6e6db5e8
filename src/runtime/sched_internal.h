/* The scheduler's shared state, for its units only (scheduler.c lists
 * them): the state struct np__sched, the worker struct, the running
 * worker (me), the calls the units make on one another, and the hot-path
 * helpers every unit inlines (runq_put, local_put, ensure_stack).
 */
#ifndef NP_SCHED_INTERNAL_H
#define NP_SCHED_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "netpoll.h"
#include "pd/waiter.h"
#include "runtime/context.h"
#include "runtime/idle_stack.h"
#include "runtime/runq.h"
#include "runtime/sanitizer.h"
#include "runtime/scheduler.h"
#include "runtime/task.h"

/* Hidden even when declared: direct (not GOT) access from the other units. */
#pragma GCC visibility push(hidden)

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
    struct worker *idle_next;   /* under np__sched.lock */
    bool on_idle;               /* under np__sched.lock */
    np__task *inbox;            /* under np__sched.lock: migrated tasks (test hook) */
    _Atomic int has_inbox;

    uint32_t rand;
    char *altstack;
} __attribute__((aligned(64))) worker;

struct np__sched_state {
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
};
extern struct np__sched_state np__sched;

/* initial-exec: read by the SIGSEGV handler, which must not go through
 * __tls_get_addr (not async-signal-safe in a dlopen'd library). */
extern _Thread_local worker *np__tls_worker __attribute__((tls_model("initial-exec")));

/* Not inlined, and opaque to the optimiser: a task may resume on another
 * thread after any switch, so nothing may reuse a thread-local address
 * computed before one. One copy per unit that calls it. */
__attribute__((noinline, unused)) static worker *me(void)
{
    worker *w = np__tls_worker;
    __asm__ volatile("" : "+r"(w));
    return w;
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
void np__worker_run(worker *w);
void *np__worker_thread(void *arg);

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

void np__sweep(int64_t now);              /* stack_sweep.c */
int64_t np__sweep_deadline(void);
void np__sweep_wanted_again(void);
void np__segv_install(void);              /* segv_guard.c */
void np__segv_remove(void);
void np__task_done(void);                 /* scheduler.c */

#pragma GCC visibility pop

#endif
