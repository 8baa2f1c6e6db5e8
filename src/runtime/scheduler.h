/* The M:N scheduler: internal interface. */
#ifndef NP_SCHEDULER_H
#define NP_SCHEDULER_H

#include <stdbool.h>

#include "netpoll.h"
#include "runtime/task.h"
#include "pd/waiter.h"

/* The task running on this thread, or NULL on a plain thread. */
np__task *np__sched_current_task(void);

/* This thread's worker id, or -1 on a plain thread. Not inlined. */
int np__sched_worker_id(void);

/* Number of workers of the running runtime (0 when none runs). */
int np__sched_workers(void);

/* Go's canSpin, for a lock about to park its caller: a short spin is worth
 * it only on 2+ CPUs with at least two workers busy (the caller's, and
 * one whose task may hold the lock and be about to let go). From any
 * thread; false when no runtime runs. */
bool np__sched_may_spin(void);

/* For a plain thread about to create something the runtime must clean up
 * at its end (a handle): true if a runtime runs, and np_run then does not
 * finish before the matching np__runtime_leave. Always true in a task. */
bool np__runtime_enter(void);
void np__runtime_leave(void);

/* Whether a runtime runs (and has not begun to finish). */
bool np__runtime_running(void);

/* fn runs at the end of every np_run, once every task has finished and no
 * plain thread is inside np__runtime_enter, before the poller is torn down:
 * the net layer closes the handles still open (fd.c) and np_wait_fd's
 * duplicates (foreign_cache.c). Up to 4 hooks, run in the order they were
 * first set; setting one again changes nothing. */
void np__sched_on_stop(void (*fn)(void));

/* Test hook: the current task's next np_yield moves it to worker `id` (it
 * resumes there). Returns -EINVAL for a bad id, -EPERM outside a task. */
int np__sched_yield_to(int id);

/* np_dump (dump.c): the task thread i (0 .. np__sched_threads() - 1) runs
 * now, or NULL, and in *on the worker it runs on (-1: the thread's
 * worker was handed off while the task kept the thread); read without
 * synchronisation, so possibly stale. The caller holds the runtime
 * (np__runtime_enter). */
int np__sched_threads(void);
np__task *np__sched_running_on(int i, int *on);

/* Statistics for tests and benchmarks. */
typedef struct np__sched_stats {
    unsigned long steals;       /* tasks taken from another worker */
    unsigned long polls;        /* poller rounds run by workers */
    unsigned long sleeps;       /* workers going to sleep on their futex */
    unsigned long stacks_mapped;/* task stacks mmap'd */
    unsigned long stacks_unmapped;
    unsigned long global_queue; /* tasks in the global queue now */
    unsigned long local_queues; /* tasks in all local queues now */
    int idle;                   /* workers asleep on their futex now */
    int polling;                /* a worker blocked in the poller now */
    long started;               /* tasks holding a stack now */
} np__sched_stats;
void np__sched_get_stats(np__sched_stats *out);

/* np_stats' scheduler fields (the net layer fills the rest). The caller
 * holds the runtime: np__runtime_enter() returned true. */
void np__sched_fill_stats(np_stats *out);

#endif
