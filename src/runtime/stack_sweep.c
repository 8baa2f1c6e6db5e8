/* The idle-stack sweep: which parked tasks have their stacks moved out
 * (idle_stack.h does the moving), and when the next pass runs.
 */
#include <pthread.h>
#include <string.h>

#include "base/clock.h"
#include "poller/poller.h"
#include "runtime/sched_internal.h"

#define SWEEP_MOVES 4096               /* idle stacks moved per sweep pass, at most */

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

void np__sweep(int64_t now)
{
    if (now < atomic_load_explicit(&np__sched.sweep_next, memory_order_relaxed))
        return;
    int zero = 0;
    if (!atomic_compare_exchange_strong(&np__sched.sweeping, &zero, 1))
        return;
    int64_t period = np__sched.idle_stack_ns;
    bool wanted = false;
    int budget = SWEEP_MOVES;
    np__task *chunk[256], *fresh[256];
    for (size_t i = 0;;) {
        pthread_mutex_lock(&np__sched.reg_lock);
        size_t n = np__sched.nreg - i < 256 ? np__sched.nreg - i : 256;
        memcpy(chunk, np__sched.reg + i, n * sizeof *chunk);
        pthread_mutex_unlock(&np__sched.reg_lock);
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
    atomic_store(&np__sched.sweep_wanted, wanted);
    atomic_store(&np__sched.sweep_next, np__add_sat(np_now(), budget == 0 ? period / 8 : period / 2));
    atomic_store(&np__sched.sweeping, 0);
}

/* The time a blocked poller must wake for the next pass. */
int64_t np__sweep_deadline(void)
{
    if (np__sched.idle_stack_ns <= 0)
        return INT64_MAX;
    int64_t now = np_now();
    np__sweep(now);
    if (!atomic_load(&np__sched.sweep_wanted))
        return INT64_MAX;
    /* Past only while another worker's pass is still running. */
    int64_t next = atomic_load(&np__sched.sweep_next);
    return next > now ? next : np__add_sat(now, np__sched.idle_stack_ns / 8);
}

/* A task parked stack-free: if the last pass found nothing left to move,
 * a poller may be blocked with no pass scheduled; have it schedule one. */
void np__sweep_wanted_again(void)
{
    if (atomic_load_explicit(&np__sched.sweep_wanted, memory_order_relaxed))
        return;
    if (atomic_exchange(&np__sched.sweep_wanted, 1) == 0 && atomic_load(&np__sched.polling))
        np__poller_wake();
}
