/* The task-struct and stack cache: allocating and recycling task structs
 * and stacks, the stack budget, and tasks that wait for a stack
 * (np__sched.stackwait).
 */
#include <pthread.h>
#include <stdlib.h>

#include "base/np_assert.h"
#include "runtime/idle_copy.h"
#include "runtime/sched_internal.h"

#define HOT_STACKS 32                  /* per worker, memory kept */
#define COLD_STACKS 256                /* process-wide, memory released */
#define HOT_TASKS 256                  /* free task structs kept per worker */

/* ---- task structs and stacks ------------------------------------------
 *
 * Both are pooled: per worker without a lock, then process-wide under
 * np__sched.lock. Stacks beyond HOT_STACKS per worker have their memory
 * handed back (madvise) and wait in a cold pool of COLD_STACKS; beyond that
 * they are unmapped. So a burst of 10,000 finished tasks does not keep
 * 10,000 stacks resident.
 *
 * At most np__stack_budget tasks may hold a stack at once (np__stacks_max:
 * the kernel's vm.max_map_count bounds the fallback layout's stacks); a
 * task that would go over waits, unstarted, on np__sched.stackwait until
 * another task finishes. Unstarted tasks hold no stack.
 */

static np__task *task_struct_alloc(worker *w)
{
    np__task *t = w ? w->free_tasks : NULL;
    if (t) {
        w->free_tasks = t->next;
        w->nfree_tasks--;
        return t;
    }
    pthread_mutex_lock(&np__sched.lock);
    t = np__sched.free_tasks;
    if (t)
        np__sched.free_tasks = t->next;
    pthread_mutex_unlock(&np__sched.lock);
    if (t)
        return t;
    t = np__task_new_struct();
    if (!t)
        return NULL;
    t->waiter.ops = &np__task_ops;
    np__task_register(t); /* np_dump */
    return t;
}

/* w may be NULL: a thread whose worker was taken (handoff.h). A full
 * worker cache hands half of itself to the process-wide list under one
 * lock, as Go's gfput does: a burst of finishing tasks (a million woken at
 * once) would otherwise take np__sched.lock, which the global run queue
 * shares, once per task. */
static void task_struct_free(worker *w, np__task *t)
{
    np__task *first = t, *last = t;
    t->next = NULL;
    if (w) {
        t->next = w->free_tasks;
        w->free_tasks = t;
        if (++w->nfree_tasks <= HOT_TASKS)
            return;
        first = last = w->free_tasks;
        for (int i = 1; i < HOT_TASKS / 2; i++)
            last = last->next;
        w->free_tasks = last->next;
        w->nfree_tasks -= HOT_TASKS / 2;
    }
    pthread_mutex_lock(&np__sched.lock);
    last->next = np__sched.free_tasks;
    np__sched.free_tasks = first;
    pthread_mutex_unlock(&np__sched.lock);
}

static np__stack *stack_alloc(worker *w)
{
    np__stack *st = w->hot;
    if (st) {
        w->hot = st->next;
        w->nhot--;
        return st;
    }
    if (np__stack_layout() == NP__STACK_MAPPED) { /* the cold pool */
        pthread_mutex_lock(&np__sched.lock);
        st = np__sched.cold;
        if (st) {
            np__sched.cold = st->next;
            np__sched.ncold--;
        }
        pthread_mutex_unlock(&np__sched.lock);
        if (st)
            return st;
    }
    st = np__stack_map(np__sched.stack_size);
    if (st)
        atomic_fetch_add(&np__sched.mapped, 1);
    return st;
}

static void stack_unmap(np__stack *st)
{
    np__stack_unmap(st);
    atomic_fetch_add(&np__sched.unmapped, 1);
}

/* Beyond the warm pool, with the CARVED layout a stack goes back to its
 * chunk, which keeps the memory of a few free slots, releases the rest in
 * batches and unmaps the chunk when it is empty (stack.c); a stack mapped
 * on its own there (the advice refused) is unmapped. With the MAPPED
 * layout the stack has its memory released and waits in the cold pool, or
 * is unmapped. */
static void stack_free(worker *w, np__stack *st)
{
    if (w && w->nhot < HOT_STACKS) {
        st->next = w->hot;
        w->hot = st;
        w->nhot++;
        return;
    }
    if (np__stack_layout() == NP__STACK_CARVED) {
        stack_unmap(st);
        return;
    }
    np__stack_release_memory(st);
    pthread_mutex_lock(&np__sched.lock);
    if (np__sched.ncold < COLD_STACKS) {
        st->next = np__sched.cold;
        np__sched.cold = st;
        np__sched.ncold++;
        st = NULL;
    }
    pthread_mutex_unlock(&np__sched.lock);
    if (st)
        stack_unmap(st);
}

/* ensure_stack (sched_internal.h) for a task that has no stack yet. */
bool np__ensure_stack_slow(worker *w, np__task *t)
{
    np__stack *st = NULL;
    if (atomic_fetch_add(&np__sched.started, 1) < np__sched.stack_budget)
        st = stack_alloc(w);
    if (st) {
        np__task_start_on(t, st, np__task_entry);
        return true;
    }
    if (atomic_fetch_sub(&np__sched.started, 1) == 1)
        NP__PANIC("cannot map a task stack of %zu bytes and no task holds one", np__sched.stack_size);
    pthread_mutex_lock(&np__sched.lock);
    t->next = np__sched.stackwait;
    np__sched.stackwait = t;
    atomic_fetch_add(&np__sched.nstackwait, 1);
    pthread_mutex_unlock(&np__sched.lock);
    return false;
}

/* A task finished on w: recycle its stack and struct; let a task waiting
 * for a stack go. */
void np__task_recycle(worker *w, np__task *t)
{
    stack_free(w, np__task_finished(t));
    task_struct_free(w, t);
    atomic_fetch_sub(&np__sched.started, 1);
    if (atomic_load(&np__sched.nstackwait) == 0)
        return;
    pthread_mutex_lock(&np__sched.lock);
    np__task *x = np__sched.stackwait;
    if (x) {
        np__sched.stackwait = x->next;
        atomic_fetch_sub(&np__sched.nstackwait, 1);
        np__gq_push_locked(x);
    }
    pthread_mutex_unlock(&np__sched.lock);
    if (x)
        np__wakep();
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

/* How many tasks may hold a stack at once (stack.h). */
int64_t np__stack_budget(void)
{
    return np__stacks_max(np__sched.stack_size);
}

/* At the end of a run: every task has finished; unmaps the pooled stacks
 * and frees the pooled structs. */
void np__stack_cache_fini(int nworkers)
{
    for (int i = 0; i < nworkers; i++) {
        unmap_stacks(np__sched.workers[i].hot);
        free_structs(np__sched.workers[i].free_tasks);
    }
    unmap_stacks(np__sched.cold);
    free_structs(np__sched.free_tasks);
    np__sched.cold = NULL;
    np__sched.ncold = 0;
    np__sched.free_tasks = NULL;
    np__task_structs_release();
    np__stack_retired_flush();
    np__idle_copy_flush();
}

np__task *np__task_new(worker *w, void (*fn)(void *), void *arg)
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
