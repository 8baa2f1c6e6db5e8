/* The network poller driver: timers, poller and delivery. See
 * netpoll_driver.h.
 *
 * poll_until is the time a blocked poll will return by itself (INT64_MAX for
 * "never"), or 0 while no poll is blocked. A timer set earlier than it must
 * wake the poller. The race between the poller deciding how long to block
 * and a timer being set is closed Dekker-style, all seq_cst:
 *
 *   poller: store poll_until; re-read every shard's next time; block
 *   setter: publish the shard's next time; load poll_until; wake if later
 *
 * Either the poller's re-read sees the new timer, or the setter sees
 * poll_until and wakes it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "base/thread.h"
#include "netpoll.h"
#include "pd/netpoll_driver.h"
#include "pd/pd.h"
#include "poller/poller.h"
#include "pd/timer.h"

#define BATCH 128

static pthread_mutex_t poll_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int64_t poll_until;

static void (*_Atomic earlier_hook)(int64_t when);

void np__netpoll_on_earlier_timer(void (*fn)(int64_t when))
{
    atomic_store(&earlier_hook, fn);
}

static void kick(int64_t when)
{
    int64_t u = atomic_load(&poll_until);
    if (u != 0 && when < u)
        np__poller_wake();
    void (*hook)(int64_t) = atomic_load_explicit(&earlier_hook, memory_order_relaxed);
    if (hook)
        hook(when);
}

int np__netpoll_init(void)
{
    int rc = np__poller_init();
    if (rc < 0)
        return rc;
    atomic_store(&poll_until, 0);
    np__timers_set_kick(kick);
    return 0;
}

void np__netpoll_fini(void)
{
    np__timers_set_kick(NULL);
    np__poller_fini();
}

int np__netpoll_round(bool block, int64_t until, int max)
{
    if (pthread_mutex_trylock(&poll_lock) != 0)
        return -EBUSY;
    int fired = 0;
    int64_t next = np__timers_run_due(&fired);
    int64_t delay = 0;
    /* A timer that fired may have made a waiter runnable on this very
     * thread: then look for events, but do not sleep on them. */
    if (block && fired == 0) {
        if (next < until)
            until = next;
        atomic_store(&poll_until, until);
        int64_t again = np__timers_next(); /* see the comment at the top */
        if (again < until)
            until = again;
        if (until == INT64_MAX) {
            delay = -1;
        } else {
            int64_t now = np_now();
            delay = until > now ? until - now : 0;
        }
    }
    np__pollev ev[BATCH];
    int n = np__poller_poll(delay, ev, max > 0 && max < BATCH ? max : BATCH);
    atomic_store(&poll_until, 0);
    for (int i = 0; i < n; i++)
        np__pd_ready((np__pd *)ev[i].reg, ev[i].mode | (ev[i].hup ? NP__POLL_HUP : 0), ev[i].err);
    np__pollreg_batch_end();
    pthread_mutex_unlock(&poll_lock);
    if (delay != 0)
        np__timers_run_due(NULL); /* what came due while we were blocked */
    return n;
}

/* ---- the poll thread ---------------------------------------------------- */

static pthread_t thread;
static _Atomic int stopping;

static void *poll_loop(void *arg)
{
    (void)arg;
    while (!atomic_load(&stopping))
        np__netpoll_round(true, INT64_MAX, BATCH);
    return NULL;
}

int np__pollthread_start(void)
{
    int rc = np__netpoll_init();
    if (rc < 0)
        return rc;
    atomic_store(&stopping, 0);
    rc = np__thread_create(&thread, poll_loop, NULL);
    if (rc != 0) {
        np__netpoll_fini();
        return -rc;
    }
    return 0;
}

void np__pollthread_stop(void)
{
    atomic_store(&stopping, 1);
    np__poller_wake();
    pthread_join(thread, NULL);
    np__netpoll_fini();
}
