/* np_stats_get (issue 14, "nothing to look at"), against the header.
 *
 *   no_runtime          -ESRCH without a runtime, -EINVAL for NULL
 *   counts_follow_work  tasks, parked tasks, handles and timers move with
 *                       what the program does, and come back
 *   readers_race_the_end plain threads read the figures in a loop while
 *                       tasks come and go and the runtime ends under them:
 *                       0 or -ESRCH, never a crash (run it under TSan),
 *                       never more tasks than started
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "netpoll.h"
#include "np_test.h"

static void no_runtime(void)
{
    np_stats st;
    NP_CHECK_EQ(np_stats_get(&st), -ESRCH);
    NP_CHECK_EQ(np_stats_get(NULL), -EINVAL);
}

/* ---- counts_follow_work ------------------------------------------------------------- */

enum { WAITERS = 100, TIMED = 10 };

static np_chan gate;
static _Atomic int waiting;

static void waiter(void *arg)
{
    bool timed = arg != NULL;
    int v;
    atomic_fetch_add(&waiting, 1);
    /* A deadline far away: a timer pending until the gate closes. */
    np_chan_recv(gate, &v, timed ? np_now() + 60 * NP_SECOND : 0);
    atomic_fetch_sub(&waiting, 1);
}

static void counts_body(void *arg)
{
    (void)arg;
    np_stats a, b, c;
    NP_CHECK_OK(np_stats_get(&a));
    NP_CHECK_EQ(a.workers, 2);
    NP_CHECK(a.tasks >= 1 && a.tasks_started >= 1);
    NP_CHECK(a.workers_idle >= 0 && a.workers_idle <= 2);
    NP_CHECK(a.stack_bytes_mapped > 0 && a.stack_bytes_resident <= a.stack_bytes_mapped);

    NP_CHECK_OK(np_chan_make(&gate, sizeof(int), 0));
    for (int i = 0; i < WAITERS; i++)
        NP_CHECK_OK(np_go(waiter, i < TIMED ? (void *)1 : NULL));
    while (atomic_load(&waiting) < WAITERS)
        np_yield();
    np_listener l;
    char addr[64];
    np_conn x, y;
    NP_CHECK_OK(np_listen(&l, "tcp", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(l, addr, sizeof addr));
    NP_CHECK_OK(np_dial(&x, "tcp", addr, 0));
    NP_CHECK_OK(np_accept(l, &y));
    np_sleep(5 * NP_MILLISECOND); /* let the waiters finish parking */

    NP_CHECK_OK(np_stats_get(&b));
    NP_CHECK_MSG(b.tasks >= a.tasks + WAITERS, "tasks %lld, was %lld", (long long)b.tasks,
                 (long long)a.tasks);
    NP_CHECK_MSG(b.tasks_started >= a.tasks_started + WAITERS, "started %lld",
                 (long long)b.tasks_started);
    NP_CHECK_MSG(b.tasks_parked >= WAITERS - 2, "parked %lld of %d blocked",
                 (long long)b.tasks_parked, WAITERS);
    NP_CHECK_EQ(b.conns_open, a.conns_open + 2);
    NP_CHECK_EQ(b.listeners_open, a.listeners_open + 1);
    NP_CHECK_MSG(b.timers_pending >= a.timers_pending + TIMED, "timers %lld, was %lld",
                 (long long)b.timers_pending, (long long)a.timers_pending);

    NP_CHECK_OK(np_chan_close(gate)); /* every waiter returns */
    while (atomic_load(&waiting) > 0)
        np_yield();
    NP_CHECK_OK(np_close(x));
    NP_CHECK_OK(np_close(y));
    NP_CHECK_OK(np_listener_close(l));
    np_sleep(5 * NP_MILLISECOND); /* let the waiters' exits go through */
    NP_CHECK_OK(np_stats_get(&c));
    NP_CHECK_EQ(c.conns_open, a.conns_open);
    NP_CHECK_EQ(c.listeners_open, a.listeners_open);
    NP_CHECK_MSG(c.timers_pending <= a.timers_pending, "timers %lld after, %lld before",
                 (long long)c.timers_pending, (long long)a.timers_pending);
    NP_CHECK_MSG(c.tasks <= a.tasks, "tasks %lld after, %lld before", (long long)c.tasks,
                 (long long)a.tasks);
    NP_CHECK(c.tasks_started == b.tasks_started);
    NP_CHECK_OK(np_chan_free(gate));
}

static void counts_follow_work(void)
{
    np_config cfg = { .workers = 2 };
    NP_CHECK_OK(np_run(&cfg, counts_body, NULL));
}

/* ---- readers_race_the_end --------------------------------------------------------- */

static _Atomic bool readers_stop;
static _Atomic long reads_ok, reads_esrch;

static void *reader_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&readers_stop)) {
        np_stats st;
        int rc = np_stats_get(&st);
        if (rc == 0) {
            NP_CHECK(st.workers >= 1 && st.tasks >= 0 && st.tasks_parked >= 0);
            /* Never more alive than ever started (the API fuzzer saw 8
             * against 7 while an np_go was under way). */
            NP_CHECK_MSG(st.tasks <= st.tasks_started, "tasks %lld, started %lld", (long long)st.tasks,
                         (long long)st.tasks_started);
            atomic_fetch_add(&reads_ok, 1);
        } else {
            NP_CHECK_EQ(rc, -ESRCH);
            atomic_fetch_add(&reads_esrch, 1);
        }
        /* Paced (not a synchronisation): readers that never pause take the
         * locks np_stats_get shares with the runtime, and slow it to a crawl
         * under TSan. */
        struct timespec ts = { 0, 20000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void churn_task(void *arg)
{
    (void)arg;
    np_yield();
}

static void churn_body(void *arg)
{
    (void)arg;
    for (int i = 0; i < 400; i++) {
        if (np_go(churn_task, NULL) != 0)
            break;
        if (i % 64 == 0)
            np_sleep(NP_MILLISECOND / 4);
    }
}

static void readers_race_the_end(void)
{
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        NP_CHECK_OK(pthread_create(&th[i], NULL, reader_thread, NULL));
    for (int run = 0; run < 12; run++) {
        np_config cfg = { .workers = 1 + run % 3 };
        NP_CHECK_OK(np_run(&cfg, churn_body, NULL));
    }
    atomic_store(&readers_stop, true);
    for (int i = 0; i < 3; i++)
        NP_CHECK_OK(pthread_join(th[i], NULL));
    printf("  %ld reads during runs, %ld between them (-ESRCH)\n", atomic_load(&reads_ok),
           atomic_load(&reads_esrch));
    NP_CHECK(atomic_load(&reads_ok) > 0);
}

NP_TEST_LIST(NP_CASE(no_runtime), NP_CASE(counts_follow_work), NP_CASE(readers_race_the_end))
