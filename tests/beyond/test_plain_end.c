/* Plain threads blocked across the end of np_run (issue 13, plain threads).
 *
 * A plain thread may block in a coordination call while a runtime runs;
 * the runtime may then end under it. What woke it by its deadline (the
 * runtime's timers) is gone, so before the fix such a call never returned
 * (seen: each deadline case still blocked 10 s after np_run returned). Now
 * a plain thread keeps its deadline itself (sync/wait.c): it still holds,
 * never early.
 *
 *   recv_deadline_outlives_the_run   np_chan_recv with a deadline
 *   lock_deadline_outlives_the_run   np_mutex_lock_until on a held mutex
 *   wait_deadline_outlives_the_run   np_waitgroup_wait with a deadline
 *   woken_by_a_thread_after_the_run  no deadline: another plain thread's
 *                                    send, after np_run returned, wakes it
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "netpoll.h"
#include "np_test.h"

enum { RECV, LOCK, WAIT, RECV_NO_DEADLINE };

static struct {
    int what;
    np_chan ch;
    np_mutex mu;
    np_waitgroup wg;
    int64_t deadline;
    _Atomic int started;
    _Atomic int rc;
    int64_t returned_at;
    int value;
} P;

static void *blocker(void *arg)
{
    (void)arg;
    atomic_store(&P.started, 1);
    int rc = -1;
    switch (P.what) {
    case RECV: rc = np_chan_recv(P.ch, &P.value, P.deadline); break;
    case LOCK: rc = np_mutex_lock_until(&P.mu, P.deadline); break;
    case WAIT: rc = np_waitgroup_wait(&P.wg, P.deadline); break;
    case RECV_NO_DEADLINE: rc = np_chan_recv(P.ch, &P.value, 0); break;
    }
    P.returned_at = np_now();
    atomic_store(&P.rc, rc);
    return NULL;
}

/* The main task: start the thread, give it time to block, end the run.
 * (If it has not blocked by then, its call sees no runtime: -ESRCH at once,
 * which the cases accept and count apart.) */
static void main_task(void *arg)
{
    pthread_t *th = arg;
    NP_CHECK_OK(pthread_create(th, NULL, blocker, NULL));
    while (!atomic_load(&P.started))
        np_yield();
    np_sleep(50 * NP_MILLISECOND);
}

/* Runs the case; returns the thread's result (the thread is joined, with a
 * bound: a hang fails the case instead of the whole run). */
static int run_case(int what, int64_t after_ns)
{
    P.what = what;
    atomic_store(&P.started, 0);
    atomic_store(&P.rc, 1);
    P.deadline = after_ns ? np_now() + after_ns : 0;
    pthread_t th;
    NP_CHECK_OK(np_run(NULL, main_task, &th));
    if (what == RECV_NO_DEADLINE) {
        /* No runtime now; the receiver is parked (or got -ESRCH): a send
         * that finds it waiting hands over without blocking. */
        int v = 42;
        int rc = np_chan_send(P.ch, &v, np_now() + 200 * NP_MILLISECOND);
        NP_CHECK_MSG(rc == 0 || rc == -ESRCH || rc == -ETIMEDOUT, "send: %d", rc);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    int j = pthread_timedjoin_np(th, NULL, &ts);
    NP_CHECK_MSG(j == 0, "the plain thread is still blocked 10 s after np_run returned");
    return atomic_load(&P.rc);
}

static void check_deadline(int rc, const char *what)
{
    if (rc == -ESRCH) {
        NP_SKIP("the thread reached its call after the run ended (-ESRCH): try again");
        return;
    }
    NP_CHECK_MSG(rc == -ETIMEDOUT, "%s: %d, want -ETIMEDOUT", what, rc);
    NP_CHECK_MSG(P.returned_at >= P.deadline, "%s: returned %lld ns before its deadline", what,
                 (long long)(P.deadline - P.returned_at));
    NP_CHECK_MSG(P.returned_at - P.deadline < 2 * NP_SECOND, "%s: returned %lld ms late", what,
                 (long long)((P.returned_at - P.deadline) / NP_MILLISECOND));
}

static void recv_deadline_outlives_the_run(void)
{
    NP_CHECK_OK(np_chan_make(&P.ch, sizeof(int), 0));
    check_deadline(run_case(RECV, 400 * NP_MILLISECOND), "np_chan_recv");
    NP_CHECK_OK(np_chan_free(P.ch));
}

static void lock_deadline_outlives_the_run(void)
{
    np_mutex m = NP_MUTEX_INIT;
    P.mu = m;
    NP_CHECK_OK(np_mutex_lock(&P.mu)); /* held by us: the thread must wait */
    check_deadline(run_case(LOCK, 400 * NP_MILLISECOND), "np_mutex_lock_until");
    NP_CHECK_OK(np_mutex_unlock(&P.mu));
}

static void wait_deadline_outlives_the_run(void)
{
    np_waitgroup wg = NP_WAITGROUP_INIT;
    P.wg = wg;
    NP_CHECK_OK(np_waitgroup_add(&P.wg, 1));
    check_deadline(run_case(WAIT, 400 * NP_MILLISECOND), "np_waitgroup_wait");
    NP_CHECK_OK(np_waitgroup_done(&P.wg));
}

static void woken_by_a_thread_after_the_run(void)
{
    NP_CHECK_OK(np_chan_make(&P.ch, sizeof(int), 0));
    P.value = 0;
    int rc = run_case(RECV_NO_DEADLINE, 0);
    if (rc == -ESRCH) {
        NP_CHECK_OK(np_chan_free(P.ch));
        NP_SKIP("the thread reached its call after the run ended (-ESRCH): try again");
        return;
    }
    NP_CHECK_EQ(rc, 0);
    NP_CHECK_EQ(P.value, 42);
    NP_CHECK_OK(np_chan_free(P.ch));
}

NP_TEST_LIST(NP_CASE(recv_deadline_outlives_the_run), NP_CASE(lock_deadline_outlives_the_run),
             NP_CASE(wait_deadline_outlives_the_run), NP_CASE(woken_by_a_thread_after_the_run))
