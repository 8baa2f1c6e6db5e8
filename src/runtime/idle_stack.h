/* Idle stacks: the memory of a task's stack handed back while the task
 * waits a long time, for servers with many idle connections.
 *
 * A parked task's stack is mostly untouched address space, but the pages it
 * did touch stay resident: one or two pages per task, more than a Go
 * goroutine's whole footprint. When enabled (np_config.idle_stack_ns), the
 * scheduler's sweep (stack_sweep.c) finds tasks that have been parked, in a
 * wait whose state is all off the stack (NP__PARK_STACK_FREE), for at least
 * that long; it copies the live part of each such stack, from the
 * saved stack pointer to the top of the mapping, into a heap block of just
 * that size, and releases the stack's pages (madvise). The mapping stays, so
 * every address on the stack is the same when the task runs again; the
 * worker that resumes it copies the contents back first.
 *
 * Each task has one word, `idle`: a 62-bit park count (it never wraps) and a
 * 2-bit state.
 *
 *   RUN      running, queued, or parked in a wait that is not stack-free
 *   PARKED   switched away in a stack-free wait; nothing runs on the stack
 *   MOVING   the sweeper is copying the stack out
 *   MOVED    the contents are in t->moved; the stack's pages are released
 *
 *   RUN -> PARKED     the parker, once off the task's stack and before the
 *                     wait's commit (so before anything can ready the task);
 *                     the park count goes up by one
 *   PARKED -> RUN     the resumer, before switching to the task (CAS)
 *   PARKED -> MOVING  the sweeper (CAS), only if the word, count included,
 *                     is one it first saw a whole period ago: the task has
 *                     been in this one park at least that long
 *   MOVING -> MOVED   the sweeper, after copying out and releasing the
 *                     stack's pages (one call for a batch of stacks)
 *   MOVING            the resumer spins until MOVED (a copy takes microseconds)
 *   MOVED -> RUN      the resumer, after copying back
 *
 * A park whose commit fails (the event came first) leaves PARKED for the
 * resumer like any other. The sweeper may move a task that was readied but
 * has not run yet; the resumer copies it back as usual.
 *
 * This is opt-in because C, unlike Go, lets one task keep a pointer into
 * another's stack: while a task's stack is moved, such a pointer would read
 * zeros. np_config documents the rule.
 */
#ifndef NP_IDLE_STACK_H
#define NP_IDLE_STACK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime/task.h"

enum { NP__IDLE_RUN = 0, NP__IDLE_PARKED = 1, NP__IDLE_MOVING = 2, NP__IDLE_MOVED = 3 };
#define NP__IDLE_STATE(w) ((unsigned)((w) & 3u))

/* The parker: t has switched away into a stack-free wait. seq_cst, not
 * just release: the sweep's queue flag is set after it (stack_sweep.c). */
static inline void np__idle_stack_parked(np__task *t)
{
    uint64_t w = atomic_load_explicit(&t->idle, memory_order_relaxed);
    atomic_store_explicit(&t->idle, ((w >> 2) + 1) << 2 | NP__IDLE_PARKED, memory_order_seq_cst);
}

void np__idle_stack_resume_slow(np__task *t);

/* The resumer, before switching to t: its stack is in place afterwards. */
static inline void np__idle_stack_resume(np__task *t)
{
    if (NP__IDLE_STATE(atomic_load_explicit(&t->idle, memory_order_acquire)) != NP__IDLE_RUN)
        np__idle_stack_resume_slow(t);
}

/* The sweeper, in two steps so that the pages of many stacks are released
 * in one call (stack_sweep.c). First: if t's word is still `seen`
 * (PARKED), takes t to MOVING and copies the live part of its stack to the
 * heap; *release_from and *release_len say which pages the caller must
 * release (np__stack_release_ranges) before the second step. False, with no
 * harm, if t has been resumed meanwhile or the copy cannot be allocated.
 * Then, once the pages are released: MOVING -> MOVED. A resumer spins on
 * MOVING meanwhile, so the caller keeps the two steps close (a batch of a
 * hundred or so stacks: tens of microseconds). Releasing after MOVED would
 * be wrong: the resumer may already have copied the stack back. */
bool np__idle_stack_copy_out(np__task *t, uint64_t seen, char **release_from, size_t *release_len);
void np__idle_stack_moved(np__task *t);

/* The tasks in v are about to run: fault in, in one system call, the
 * pages of those whose stacks were moved out, rather than one page fault
 * each as their stacks are copied back (a mass wake of idle tasks). Best
 * effort; at most NP__PREFAULT_MAX of them. */
#define NP__PREFAULT_MAX 16
void np__idle_stack_prefault(np__task *const *v, int n);
/* Stacks faulted in so, in all (tests). */
unsigned long np__idle_stack_prefaulted(void);

/* Bytes of heap held by moved stacks now, and stacks moved in all (tests). */
void np__idle_stack_counts(int64_t *bytes, unsigned long *moves);

#endif
