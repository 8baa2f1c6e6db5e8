/* Processors and their queues: the global run queue (under np__sched.lock)
 * and stealing. A worker's own runq and runnext are filled by runq_put and
 * local_put (sched_internal.h, inlined on the hot path).
 *
 * Workers. Each worker is a thread with its own scheduler context (the
 * thread's stack), a local run queue (runq.h) and a `runnext` slot: a task
 * made runnable by the running task goes there and runs next, inheriting the
 * CPU's warm cache (ping-pong). Tasks readied by a network poll go to the
 * runq's tail instead, in the kernel's order, so no connection overtakes
 * another that became ready first. A global queue takes tasks from threads that
 * are not workers and the overflow of full local queues.
 */
#include <pthread.h>

#include "base/clock.h"
#include "base/np_assert.h"
#include "base/cpu_relax.h"
#include "runtime/sched_internal.h"

/* ---- the global queue (under np__sched.lock) -------------------------------- */

void np__gq_push_locked(np__task *t)
{
    t->next = NULL;
    if (np__sched.gq_tail)
        np__sched.gq_tail->next = t;
    else
        np__sched.gq_head = t;
    np__sched.gq_tail = t;
    atomic_fetch_add(&np__sched.gq_len, 1);
}

static np__task *gq_pop_locked(void)
{
    np__task *t = np__sched.gq_head;
    if (t) {
        np__sched.gq_head = t->next;
        if (!np__sched.gq_head)
            np__sched.gq_tail = NULL;
        atomic_fetch_sub(&np__sched.gq_len, 1);
    }
    return t;
}

void np__global_put(np__task *t)
{
    pthread_mutex_lock(&np__sched.lock);
    np__gq_push_locked(t);
    pthread_mutex_unlock(&np__sched.lock);
}

/* Takes one task to run and moves a fair share of the rest into w's runq. */
np__task *np__global_get_locked(worker *w)
{
    np__task *t = gq_pop_locked();
    if (!t)
        return NULL;
    uint32_t n = atomic_load(&np__sched.gq_len) / (uint32_t)np__sched.nworkers;
    if (n > NP__RUNQ_SIZE / 2)
        n = NP__RUNQ_SIZE / 2;
    /* No more than fit: only w's owner (us) puts, thieves only take, so
     * the room can only grow and every put below succeeds. */
    uint32_t room = NP__RUNQ_SIZE - np__runq_len(&w->runq);
    if (n > room)
        n = room;
    while (n-- > 0) {
        /* Off the global queue before into the run queue: once there, a
         * thief may steal x, run it to its end and recycle its struct,
         * whose link then serves the free list (ThreadSanitizer saw the
         * link read after the put, in the API fuzzer). */
        np__task *x = gq_pop_locked();
        if (!x)
            break;
        bool put = np__runq_put(&w->runq, x);
        np__assert(put);
    }
    return t;
}

np__task *np__global_get(worker *w)
{
    if (atomic_load(&np__sched.gq_len) == 0)
        return NULL;
    pthread_mutex_lock(&np__sched.lock);
    np__task *t = np__global_get_locked(w);
    pthread_mutex_unlock(&np__sched.lock);
    return t;
}

np__task *np__steal(worker *w)
{
    for (int attempt = 0; attempt < 4; attempt++) {
        w->rand = w->rand * 1103515245u + 12345u;
        int start = (int)(w->rand >> 16) % np__sched.nworkers;
        for (int i = 0; i < np__sched.nworkers; i++) {
            worker *v = &np__sched.workers[(start + i) % np__sched.nworkers];
            if (v == w)
                continue;
            if (np__runq_steal(&v->runq, &w->runq) > 0) {
                atomic_fetch_add(&np__sched.steals, 1);
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
                    atomic_fetch_add(&np__sched.steals, 1);
                    return t;
                }
            }
        }
    }
    return NULL;
}
