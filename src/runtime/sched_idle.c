/* The idle protocol: spinning, the idle list, waking a worker (wakep),
 * the futex a worker sleeps on, and a worker's way to sleep (go_idle): in
 * the poller or on its futex.
 *
 * Spinning and idling (Go's protocol, simplified). A worker looking for work
 * to steal is "spinning"; at most about half the busy workers spin. np__wakep()
 * — called by anything that makes a task runnable — does nothing if some
 * worker already spins; otherwise it wakes one sleeping worker (which starts
 * out spinning), or, if none sleeps, wakes the worker blocked in the poller.
 * A spinner that finds work stops spinning and, if it was the last, calls
 * np__wakep() so that remaining work keeps one looker. A worker going idle puts
 * itself on the idle list, stops spinning, and then checks every queue once
 * more: a producer that published work and saw a spinner (so did not wake
 * anybody) is covered by that re-check (both sides seq_cst).
 *
 * An idle worker then either blocks in the poller — only one at a time, and
 * only if some descriptor has a waiter or some timer is pending; it blocks
 * until the next timer — or sleeps on its own futex until np__wakep() picks
 * it.
 */
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "pd/netpoll_driver.h"
#include "pd/pd.h"
#include "pd/timer.h"
#include "poller/poller.h"
#include "os/os.h"
#include "runtime/sched_internal.h"

/* Under np__sched.lock: takes w, which is on the idle list, off it. The
 * caller wakes it, or it leaves by itself (unidle). */
void np__idle_unlink_locked(worker *w)
{
    worker **pp = &np__sched.idle;
    while (*pp != w)
        pp = &(*pp)->idle_next;
    *pp = w->idle_next;
    w->on_idle = false;
    atomic_fetch_sub(&np__sched.nidle, 1);
}

/* Takes w off the idle list if it is still there (true); false if a waker
 * already took it (a wake is then on its way to w->wake_word). */
static bool unidle(worker *w)
{
    bool removed = false;
    pthread_mutex_lock(&np__sched.lock);
    if (w->on_idle) {
        np__idle_unlink_locked(w);
        removed = true;
    }
    pthread_mutex_unlock(&np__sched.lock);
    return removed;
}

/* Wakes w, taken off the idle list by the caller (under np__sched.lock). */
void np__wake_worker(worker *w)
{
    atomic_store(&w->wake_word, 1);
    np__os_futex_wake(&w->wake_word);
}

/* Something became runnable: make sure some worker will look. */
void np__wakep(void)
{
    /* Order the caller's publication of work before the reads below; the
     * idle path does the mirror image (see the comment at the top). */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&np__sched.nspinning) != 0)
        return;
    if (atomic_load(&np__sched.nidle) == 0) {
        /* Nobody asleep on a futex: at most the poller to wake, and it
         * looks for work as it comes out (no spinner needed). */
        if (atomic_load(&np__sched.polling))
            np__poller_wake();
        return; /* otherwise everyone is busy: they will find it */
    }
    int zero = 0;
    if (!atomic_compare_exchange_strong(&np__sched.nspinning, &zero, 1))
        return;
    pthread_mutex_lock(&np__sched.lock);
    worker *w = np__sched.idle;
    if (w)
        np__idle_unlink_locked(w);
    pthread_mutex_unlock(&np__sched.lock);
    if (w) {
        np__wake_worker(w); /* it starts out spinning: it owns the count */
        return;
    }
    atomic_fetch_sub(&np__sched.nspinning, 1);
    if (atomic_load(&np__sched.polling))
        np__poller_wake();
}

/* ---- polling the network -------------------------------------------------- */

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

void np__poll_network(worker *w)
{
    if (timers_or_waiters() && poll_round(w, false, 0))
        np__wakep();
}

static bool work_anywhere(void)
{
    if (atomic_load(&np__sched.gq_len))
        return true;
    for (int i = 0; i < np__sched.nworkers; i++)
        if (np__runq_len(&np__sched.workers[i].runq) || atomic_load(&np__sched.workers[i].runnext) ||
            atomic_load(&np__sched.workers[i].has_inbox))
            return true;
    return false;
}

static void wait_for_wake(worker *w)
{
    atomic_fetch_add(&np__sched.sleeps, 1);
    while (atomic_load(&w->wake_word) == 0)
        np__os_futex_wait(&w->wake_word, 0, -1);
    atomic_store(&w->wake_word, 0);
    w->spinning = true; /* the waker counted us in nspinning */
}

/* Nothing found: block in the poller or sleep. Returns a task found on the
 * way, or NULL to look again. */
static np__task *go_idle(worker *w)
{
    pthread_mutex_lock(&np__sched.lock);
    np__task *t = np__global_get_locked(w);
    if (!t && w->inbox) { /* posted under this lock: we cannot miss it */
        t = w->inbox;
        w->inbox = t->next;
        if (!w->inbox)
            atomic_store(&w->has_inbox, 0);
    }
    if (t || atomic_load(&np__sched.done)) {
        pthread_mutex_unlock(&np__sched.lock);
        return t;
    }
    w->on_idle = true;
    w->idle_next = np__sched.idle;
    np__sched.idle = w;
    atomic_fetch_add(&np__sched.nidle, 1);
    pthread_mutex_unlock(&np__sched.lock);

    if (w->spinning) {
        w->spinning = false;
        atomic_fetch_sub(&np__sched.nspinning, 1);
        /* A producer may have seen us spinning and not woken anybody. */
        if (work_anywhere()) {
            if (unidle(w)) {
                w->spinning = true;
                atomic_fetch_add(&np__sched.nspinning, 1);
            } else {
                wait_for_wake(w);
            }
            return NULL;
        }
    }
    int zero = 0;
    if (timers_or_waiters() && atomic_compare_exchange_strong(&np__sched.polling, &zero, 1)) {
        if (!unidle(w)) { /* picked by a waker meanwhile */
            atomic_store(&np__sched.polling, 0);
            wait_for_wake(w);
            return NULL;
        }
        atomic_fetch_add(&np__sched.polls, 1);
        bool share = poll_round(w, true, np__sweep_deadline());
        atomic_store(&np__sched.polling, 0);
        if (share)
            np__wakep();
        return NULL;
    }
    wait_for_wake(w);
    return NULL;
}

/* The monitor may sleep while every worker is idle (monitor.c): a worker
 * coming out of the idle state (off the idle list, out of the poller: both
 * seq_cst, as the monitor's announcement and look) wakes it. */
np__task *np__go_idle(worker *w)
{
    np__task *t = go_idle(w);
    if (atomic_load(&np__sched.monitor_idle))
        np__monitor_nudge();
    return t;
}
