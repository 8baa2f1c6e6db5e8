/* Tasks: stackful coroutines.
 *
 * A task is a small struct (np__task) plus, once it has started running, a
 * stack. Stacks are pooled and reused; a task that is queued but has not run
 * yet holds none, so spawning many tasks costs little and a stack freed by
 * one task is warm for the next. Stacks, their guard regions and their
 * layouts are stack.h's.
 *
 * Every switch goes through np__task_switch, which tells AddressSanitizer,
 * ThreadSanitizer and valgrind about the change of stack.
 */
#ifndef NP_TASK_H
#define NP_TASK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/context.h"
#include "base/sanitizer.h"
#include "runtime/stack.h"
#include "pd/timer.h"
#include "pd/waiter.h"
#include "pd/waitrec.h"

typedef struct np__task np__task;

struct np__task {
    /* The first cache line holds everything a worker reads to resume the
     * task (the task struct is 64-byte aligned). With thousands of
     * connections the struct is cold when its turn comes, and readying it
     * (waiter.ops) has just brought this line in: the switch then costs
     * no other miss on the struct. */
    np__waiter waiter;        /* first: how pds and timers ready this task */
    np__ctx ctx;              /* saved registers while not running */
    np__stackinfo stack;      /* the running stack, and the task's fiber */
    np__stack *stk;           /* NULL until the task first runs */
    _Atomic uint64_t idle;    /* idle-stack park count and state (idle_stack.h) */
    unsigned park_flags;      /* NP__PARK_* of the park in progress */
    int target_worker;        /* test hook: migrate to this worker, -1 none */

    void (*fn)(void *);       /* entry point and its argument */
    void *arg;
    np__task *next;           /* run queues, free lists */
    np__commit_fn commit;     /* park in progress: run after switching away */
    void *commit_arg;

    /* Idle stacks (idle_stack.h), beside `idle` above: the sweep's queue
     * (stack_sweep.c), the word of the park it was queued for and when;
     * where the moved contents are. */
    np__task *sweep_link;
    _Atomic int sweep_queued;
    uint64_t sweep_seen;
    int64_t sweep_seen_at;
    void *moved;
    char *moved_at;
    size_t moved_len;

    /* For np_dump and the gdb script (runtime/dump.c). Written by the task
     * itself and its scheduler; read from any thread with no
     * synchronisation (a snapshot, dump.c says how that is made safe). */
    int64_t id;               /* 1, 2, ... in order of np_go, per np_run; 0 once finished */
    const np__park_site *park_site; /* the park in progress (pd/waiter.h), else NULL */
    const void *park_obj;     /* what it waits on */
    int64_t park_since;       /* when it parked: coarse monotonic clock, ns */
    np__task *all_next;       /* every task struct of the run (np__task_register) */

    np__wrec wrec;            /* coordination waits (sync/wait.h) */
    np__timer sleep_timer;    /* np_sleep */
    _Atomic uintptr_t sleep_sem; /* 0 idle, 1 fired, 2 waiting, or waiter */
    _Atomic uintptr_t sleep_seq;
};

/* Task structs. */
np__task *np__task_new_struct(void);        /* NULL on failure */
void np__task_free_struct(np__task *t);
/* Unmaps the memory of every struct made: the run's end, once each has
 * been through np__task_free_struct. */
void np__task_structs_release(void);

/* Every task struct made while a runtime runs, newest first, for np_dump
 * and the gdb script: a list readers walk without a lock (from a signal
 * handler too). Structs are added once, when made, and never leave while
 * the runtime runs (they are pooled); np__task_registry_clear forgets them
 * all once np_run has finished every task and no reader can be inside. */
void np__task_register(np__task *t);
np__task *np__task_registry_first(void);
void np__task_registry_clear(void);

/* Gives t the stack s and prepares it to run entry(t) from the top of it on
 * its next switch. */
void np__task_start_on(np__task *t, np__stack *s, void (*entry)(void *));

/* After t finished (from another context): takes its stack back. */
np__stack *np__task_finished(np__task *t);

/* The running thread's own stack, for switching back to it. */
void np__stackinfo_of_thread(np__stackinfo *si);

/* Saves the running context in `from` and resumes `to`, whose stack is
 * `to_stack`. If `exiting`, the running context never resumes. Returns when
 * something switches back to `from`. */
void np__task_switch(np__ctx *from, np__ctx *to, const np__stackinfo *to_stack, bool exiting);

/* The last switch of a finished task: like np__task_switch with exiting,
 * never returns. Not instrumented by ThreadSanitizer (see np__stack_map). */
NP_NO_TSAN void np__task_exit_switch(np__ctx *from, np__ctx *to, const np__stackinfo *to_stack)
    __attribute__((__noreturn__));

/* First thing a new task runs: completes the sanitizers' view of the switch
 * that started it. */
void np__task_started(void);

/* Whether addr is in the guard region of the stack t runs on (all of it:
 * the slot from its start up to the stack's bottom). Async-signal-safe. */
static inline bool np__task_in_guard(const np__task *t, const void *addr)
{
    const np__stack *s = t->stk;
    if (!s)
        return false;
    const char *a = addr, *m = s->map;
    return a >= m && a < (const char *)s->info.bottom;
}

#endif
