/* Poll descriptors (src/pd/pd.h) with thread waiters, driven by the poll
 * thread: every transition of the semaphore, deadlines, close, reuse. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"
#include "pd/netpoll_driver.h"
#include "np_test.h"
#include "pd/pd.h"
#include "poller/poller.h"
#include "pd/waiter.h"

typedef struct conn {
    int sv[2];
    np__pd *pd;
} conn;

static void conn_open(conn *c)
{
    NP_CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, c->sv));
    NP_CHECK_OK(np__pd_open(c->sv[0], &c->pd));
}

static void conn_close(conn *c)
{
    np__pd_unblock(c->pd);
    np__pd_close(c->pd);
    close(c->sv[0]);
    close(c->sv[1]);
}

static void fill(int fd)
{
    char buf[65536] = { 0 };
    while (write(fd, buf, sizeof buf) > 0) {
    }
    NP_CHECK_EQ(errno, EAGAIN);
}

static void msleep(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

/* A thread waiting on a pd: reset, then wait, recording result and time. */
typedef struct waiter {
    pthread_t th;
    np__pd *pd;
    int mode;
    bool no_reset;
    int rc;
    int64_t returned_at;
    _Atomic int done;
} waiter;

static void *wait_main(void *arg)
{
    waiter *w = arg;
    int rc = w->no_reset ? 0 : np__pd_reset(w->pd, w->mode);
    if (rc == 0)
        rc = np__pd_wait(w->pd, w->mode);
    w->rc = rc;
    w->returned_at = np_now();
    unsigned long parks, readies;
    np__thread_waiter_counts(&parks, &readies);
    NP_CHECK_EQ(parks, readies);
    atomic_store(&w->done, 1);
    return NULL;
}

/* Starts a waiter and returns once it is parked (the pd counts it). */
static void start_parked(waiter *w, np__pd *pd, int mode)
{
    uint32_t before = np__pd_waiters();
    w->pd = pd;
    w->mode = mode;
    NP_CHECK_OK(pthread_create(&w->th, NULL, wait_main, w));
    int64_t until = np_now() + 10 * NP_SECOND;
    while (np__pd_waiters() == before) {
        NP_CHECK_MSG(!atomic_load(&w->done), "waiter returned (%d) instead of parking", w->rc);
        NP_CHECK_MSG(np_now() < until, "waiter never parked");
        sched_yield();
    }
}

static int join(waiter *w)
{
    NP_CHECK_OK(pthread_join(w->th, NULL));
    return w->rc;
}

static void setup(void)
{
    NP_CHECK_OK(np__pollthread_start());
}

static void teardown(void)
{
    NP_CHECK_EQ(np__pd_waiters(), 0);
    np__pollthread_stop();
}

/* READY set before the wait is consumed by it; a second wait would block. */
static void t_ready_before_wait_is_consumed(void)
{
    conn c;
    setup();
    conn_open(&c);
    NP_CHECK_OK(np__pd_reset(c.pd, NP__PD_READ));
    np__pd_ready(c.pd, NP__POLL_READ, false);
    NP_CHECK_EQ(np__pd_wait(c.pd, NP__PD_READ), 0);
    /* Consumed: the next wait parks until something happens. */
    waiter w = { 0 };
    w.no_reset = true;
    start_parked(&w, c.pd, NP__PD_READ);
    np__pd_ready(c.pd, NP__POLL_READ, false);
    NP_CHECK_EQ(join(&w), 0);
    conn_close(&c);
    teardown();
}

/* reset drops a READY that came before it (the I/O is retried first). */
static void t_reset_clears_ready(void)
{
    conn c;
    setup();
    conn_open(&c);
    np__pd_ready(c.pd, NP__POLL_READ, false);
    NP_CHECK_OK(np__pd_reset(c.pd, NP__PD_READ));
    np__pd_set_deadline(c.pd, np_now() + 30 * NP_MILLISECOND, NP__PD_READ);
    NP_CHECK_EQ(np__pd_wait(c.pd, NP__PD_READ), -ETIMEDOUT);
    conn_close(&c);
    teardown();
}

/* The poller's readiness wakes a parked reader and a parked writer. */
static void t_real_readiness_wakes_waiters(void)
{
    conn c;
    char buf[65536];
    setup();
    conn_open(&c);
    waiter r = { 0 }, w = { 0 };
    start_parked(&r, c.pd, NP__PD_READ);
    NP_CHECK_EQ(write(c.sv[1], "x", 1), 1);
    NP_CHECK_EQ(join(&r), 0);
    NP_CHECK_EQ(read(c.sv[0], buf, 1), 1);

    fill(c.sv[0]);
    start_parked(&w, c.pd, NP__PD_WRITE);
    while (read(c.sv[1], buf, sizeof buf) > 0) {
    }
    NP_CHECK_EQ(join(&w), 0);
    conn_close(&c);
    teardown();
}

static void t_close_wakes_both_and_sticks(void)
{
    conn c;
    setup();
    conn_open(&c);
    fill(c.sv[0]);
    waiter r = { 0 }, w = { 0 };
    start_parked(&r, c.pd, NP__PD_READ);
    start_parked(&w, c.pd, NP__PD_WRITE);
    np__pd_unblock(c.pd);
    NP_CHECK_EQ(join(&r), -ECANCELED);
    NP_CHECK_EQ(join(&w), -ECANCELED);
    /* Closing is permanent, and beats readiness for new calls. */
    np__pd_ready(c.pd, NP__POLL_READ, false);
    NP_CHECK_EQ(np__pd_reset(c.pd, NP__PD_READ), -ECANCELED);
    NP_CHECK_EQ(np__pd_wait(c.pd, NP__PD_READ), -ECANCELED);
    NP_CHECK_EQ(np__pd_wait(c.pd, NP__PD_WRITE), -ECANCELED);
    np__pd_set_deadline(c.pd, np_now() - 1, NP__PD_BOTH); /* no-op when closing */
    NP_CHECK_EQ(np__pd_wait(c.pd, NP__PD_READ), -ECANCELED);
    np__pd_close(c.pd);
    close(c.sv[0]);
    close(c.sv[1]);
    teardown();
}

/* A deadline in the past fails the wait at once, even with data ready. */
static void t_past_deadline_beats_readiness(void)
{
    conn c;
    setup();
    conn_open(&c);
    NP_CHECK_EQ(write(c.sv[1], "x", 1), 1);
    np__pd_ready(c.pd, NP__POLL_READ, false);
    np__pd_set_deadline(c.pd, np_now() - NP_SECOND, NP__PD_READ);
    NP_CHECK_EQ(np__pd_reset(c.pd, NP__PD_READ), -ETIMEDOUT);
    NP_CHECK_EQ(np__pd_wait(c.pd, NP__PD_READ), -ETIMEDOUT);
    /* -1 and INT64_MIN are "past" too; writes are unaffected. */
    np__pd_set_deadline(c.pd, INT64_MIN, NP__PD_READ);
    NP_CHECK_EQ(np__pd_wait(c.pd, NP__PD_READ), -ETIMEDOUT);
    NP_CHECK_EQ(np__pd_reset(c.pd, NP__PD_WRITE), 0);
    /* Moving it to the future makes the pd usable again. */
    np__pd_set_deadline(c.pd, np_now() + 10 * NP_SECOND, NP__PD_READ);
    NP_CHECK_EQ(np__pd_reset(c.pd, NP__PD_READ), 0);
    np__pd_ready(c.pd, NP__POLL_READ, false);
    NP_CHECK_EQ(np__pd_wait(c.pd, NP__PD_READ), 0);
    /* And clearing it too. */
    np__pd_set_deadline(c.pd, -5, NP__PD_READ);
    np__pd_set_deadline(c.pd, 0, NP__PD_READ);
    NP_CHECK_EQ(np__pd_reset(c.pd, NP__PD_READ), 0);
    conn_close(&c);
    teardown();
}

static void t_deadline_fires_while_parked_never_early(void)
{
    conn c;
    setup();
    conn_open(&c);
    for (int i = 0; i < 5; i++) {
        int64_t d = np_now() + (5 + 10 * i) * NP_MILLISECOND;
        np__pd_set_deadline(c.pd, d, NP__PD_READ);
        waiter w = { 0 };
        NP_CHECK_OK(pthread_create(&w.th, NULL, wait_main, (w.pd = c.pd, w.mode = NP__PD_READ, &w)));
        NP_CHECK_EQ(join(&w), -ETIMEDOUT);
        NP_CHECK_GE(w.returned_at, d);
        NP_CHECK_LT(w.returned_at - d, NP_SECOND);
        np__pd_set_deadline(c.pd, 0, NP__PD_READ);
    }
    conn_close(&c);
    teardown();
}

static void t_deadline_moved_earlier_while_parked(void)
{
    conn c;
    setup();
    conn_open(&c);
    np__pd_set_deadline(c.pd, np_now() + 60 * NP_SECOND, NP__PD_READ);
    waiter w = { 0 };
    start_parked(&w, c.pd, NP__PD_READ);
    int64_t d = np_now() + 30 * NP_MILLISECOND;
    np__pd_set_deadline(c.pd, d, NP__PD_READ);
    NP_CHECK_EQ(join(&w), -ETIMEDOUT);
    NP_CHECK_GE(w.returned_at, d);
    NP_CHECK_LT(w.returned_at - d, 5 * NP_SECOND);
    /* Moved into the past while parked: at once. */
    np__pd_set_deadline(c.pd, np_now() + 60 * NP_SECOND, NP__PD_READ);
    waiter w2 = { 0 };
    start_parked(&w2, c.pd, NP__PD_READ);
    np__pd_set_deadline(c.pd, np_now() - 1, NP__PD_READ);
    NP_CHECK_EQ(join(&w2), -ETIMEDOUT);
    conn_close(&c);
    teardown();
}

/* Extended or cleared while parked: the old timer's firing is stale. */
static void t_deadline_extended_or_cleared_while_parked(void)
{
    conn c;
    char b;
    setup();
    conn_open(&c);
    for (int clear = 0; clear < 2; clear++) {
        np__pd_set_deadline(c.pd, np_now() + 50 * NP_MILLISECOND, NP__PD_READ);
        waiter w = { 0 };
        start_parked(&w, c.pd, NP__PD_READ);
        np__pd_set_deadline(c.pd, clear ? 0 : np_now() + 60 * NP_SECOND, NP__PD_READ);
        msleep(150); /* past the old deadline: it must not fire */
        NP_CHECK_EQ(atomic_load(&w.done), 0);
        NP_CHECK_EQ(write(c.sv[1], "x", 1), 1);
        NP_CHECK_EQ(join(&w), 0);
        NP_CHECK_EQ(read(c.sv[0], &b, 1), 1);
    }
    conn_close(&c);
    teardown();
}

/* Equal read and write deadlines share one timer (Go's combined timer); it
 * expires both directions. Different ones expire separately. */
static void t_combined_and_separate_deadlines(void)
{
    conn c;
    setup();
    conn_open(&c);
    fill(c.sv[0]);
    int64_t d = np_now() + 40 * NP_MILLISECOND;
    np__pd_set_deadline(c.pd, d, NP__PD_BOTH);
    NP_CHECK(c.pd->rt_armed);
    NP_CHECK(!c.pd->wt_armed);
    waiter r = { 0 }, w = { 0 };
    start_parked(&r, c.pd, NP__PD_READ);
    start_parked(&w, c.pd, NP__PD_WRITE);
    NP_CHECK_EQ(join(&r), -ETIMEDOUT);
    NP_CHECK_EQ(join(&w), -ETIMEDOUT);
    NP_CHECK_GE(r.returned_at, d);
    NP_CHECK_GE(w.returned_at, d);

    /* Separate: the read deadline expires, the writer keeps waiting. */
    d = np_now() + 30 * NP_MILLISECOND;
    np__pd_set_deadline(c.pd, d, NP__PD_READ);
    np__pd_set_deadline(c.pd, np_now() + 60 * NP_SECOND, NP__PD_WRITE);
    NP_CHECK(c.pd->rt_armed);
    NP_CHECK(c.pd->wt_armed);
    waiter r2 = { 0 }, w2 = { 0 };
    start_parked(&r2, c.pd, NP__PD_READ);
    start_parked(&w2, c.pd, NP__PD_WRITE);
    NP_CHECK_EQ(join(&r2), -ETIMEDOUT);
    NP_CHECK_GE(r2.returned_at, d);
    NP_CHECK_EQ(atomic_load(&w2.done), 0);
    /* Making them equal again switches to the combined timer. */
    d = np_now() + 30 * NP_MILLISECOND;
    np__pd_set_deadline(c.pd, d, NP__PD_BOTH);
    NP_CHECK(!c.pd->wt_armed);
    NP_CHECK_EQ(join(&w2), -ETIMEDOUT);
    NP_CHECK_GE(w2.returned_at, d);
    conn_close(&c);
    teardown();
}

/* An error event fails a read's wait with -EIO and wakes a writer, which
 * retries; a new call starts clean (its syscall reports the socket's
 * error, and a truly unpollable fd is reported again by the next poll). */
static void t_event_error(void)
{
    conn c;
    setup();
    conn_open(&c);
    waiter w = { 0 };
    fill(c.sv[0]);
    start_parked(&w, c.pd, NP__PD_WRITE);
    np__pd_ready(c.pd, NP__POLL_READ | NP__POLL_WRITE, true);
    NP_CHECK_EQ(join(&w), 0);
    NP_CHECK_EQ(np__pd_wait(c.pd, NP__PD_READ), -EIO);
    NP_CHECK_EQ(np__pd_reset(c.pd, NP__PD_READ), 0);
    conn_close(&c);
    teardown();
}

/* A freed pd reused by a new owner: none of the old owner's deadline,
 * readiness or error reaches it. */
static void t_reuse_is_clean(void)
{
    conn a, b;
    char x;
    setup();
    conn_open(&a);
    np__pd *old = a.pd;
    np__pd_set_deadline(a.pd, np_now() + 20 * NP_MILLISECOND, NP__PD_BOTH);
    np__pd_ready(a.pd, NP__POLL_READ | NP__POLL_WRITE, true);
    NP_CHECK_EQ(write(a.sv[1], "x", 1), 1);
    conn_close(&a);
    conn_open(&b);
    NP_CHECK_PTR_EQ(b.pd, old); /* the per-thread cache hands it back */
    NP_CHECK_EQ(np__pd_reset(b.pd, NP__PD_READ), 0);
    waiter w = { 0 };
    start_parked(&w, b.pd, NP__PD_READ);
    msleep(100); /* past the old deadline */
    NP_CHECK_EQ(atomic_load(&w.done), 0);
    NP_CHECK_EQ(write(b.sv[1], "y", 1), 1);
    NP_CHECK_EQ(join(&w), 0);
    NP_CHECK_EQ(read(b.sv[0], &x, 1), 1);
    NP_CHECK_EQ(x, 'y');
    conn_close(&b);
    teardown();
}

/* Two waiters in one direction is a bug in the caller: abort, loudly. */
static void t_two_waiters_one_direction_aborts(void)
{
    pid_t pid = fork();
    NP_CHECK(pid >= 0);
    if (pid == 0) {
        conn c;
        setup();
        conn_open(&c);
        waiter w = { 0 };
        start_parked(&w, c.pd, NP__PD_READ);
        int fd = open("/dev/null", O_WRONLY); /* silence the expected message */
        dup2(fd, 2);
        np__pd_wait(c.pd, NP__PD_READ);
        _exit(0);
    }
    int st;
    NP_CHECK_EQ(waitpid(pid, &st, 0), pid);
    NP_CHECK(WIFSIGNALED(st));
    NP_CHECK_EQ(WTERMSIG(st), SIGABRT);
}

/* Deadline accuracy: never early; median lateness under 5 ms. */
enum { ACC_THREADS = 8, ACC_ROUNDS = 25 };
static int64_t lateness[ACC_THREADS * ACC_ROUNDS];

static void *acc_main(void *arg)
{
    int t = (int)(intptr_t)arg;
    conn c;
    conn_open(&c);
    unsigned seed = (unsigned)t + 1;
    for (int i = 0; i < ACC_ROUNDS; i++) {
        int64_t d = np_now() + NP_MILLISECOND + rand_r(&seed) % (20 * NP_MILLISECOND);
        np__pd_set_deadline(c.pd, d, NP__PD_READ);
        NP_CHECK_EQ(np__pd_reset(c.pd, NP__PD_READ), 0);
        NP_CHECK_EQ(np__pd_wait(c.pd, NP__PD_READ), -ETIMEDOUT);
        int64_t late = np_now() - d;
        NP_CHECK_GE(late, 0);
        lateness[t * ACC_ROUNDS + i] = late;
        np__pd_set_deadline(c.pd, 0, NP__PD_READ);
    }
    conn_close(&c);
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void t_deadline_accuracy(void)
{
    pthread_t th[ACC_THREADS];
    setup();
    for (int t = 0; t < ACC_THREADS; t++)
        NP_CHECK_OK(pthread_create(&th[t], NULL, acc_main, (void *)(intptr_t)t));
    for (int t = 0; t < ACC_THREADS; t++)
        NP_CHECK_OK(pthread_join(th[t], NULL));
    enum { N = ACC_THREADS * ACC_ROUNDS };
    qsort(lateness, N, sizeof lateness[0], cmp64);
    printf("  lateness over %d deadlines: min %.3f ms, median %.3f ms, p99 %.3f ms, max %.3f ms\n",
           N, lateness[0] / 1e6, lateness[N / 2] / 1e6, lateness[N * 99 / 100] / 1e6,
           lateness[N - 1] / 1e6);
    NP_CHECK_GE(lateness[0], 0);
    NP_CHECK_LT(lateness[N / 2], 5 * NP_MILLISECOND);
    teardown();
}

/* 100,000 descriptors (deadline-only: more fds than this process may open)
 * whose deadlines are reset continuously by two threads, while a few waiters
 * rely on deadlines that nobody touches: those still fire on time. */
enum { MANY = 100000 };
static np__pd *many[MANY];
static _Atomic int many_stop;
static _Atomic long many_resets;

static void *many_resetter(void *arg)
{
    int half = (int)(intptr_t)arg;
    unsigned seed = (unsigned)half + 7;
    long n = 0;
    while (!atomic_load(&many_stop)) {
        for (int i = half; i < MANY; i += 2) {
            int64_t d = np_now() + NP_SECOND + rand_r(&seed) % (10 * NP_SECOND);
            np__pd_set_deadline(many[i], d, (i & 1) ? NP__PD_BOTH : NP__PD_READ);
            n++;
        }
    }
    atomic_fetch_add(&many_resets, n);
    return NULL;
}

static void t_100k_descriptors_deadlines_reset_continuously(void)
{
    setup();
    for (int i = 0; i < MANY; i++)
        NP_CHECK_OK(np__pd_open(-1, &many[i]));
    pthread_t r[2];
    int64_t t0 = np_now();
    for (int i = 0; i < 2; i++)
        NP_CHECK_OK(pthread_create(&r[i], NULL, many_resetter, (void *)(intptr_t)i));
    conn c;
    conn_open(&c);
    for (int i = 0; i < 10; i++) {
        int64_t d = np_now() + 20 * NP_MILLISECOND;
        np__pd_set_deadline(c.pd, d, NP__PD_READ);
        NP_CHECK_EQ(np__pd_reset(c.pd, NP__PD_READ), 0);
        NP_CHECK_EQ(np__pd_wait(c.pd, NP__PD_READ), -ETIMEDOUT);
        int64_t late = np_now() - d;
        NP_CHECK_GE(late, 0);
        NP_CHECK_LT(late, NP_SECOND);
    }
    atomic_store(&many_stop, 1);
    for (int i = 0; i < 2; i++)
        NP_CHECK_OK(pthread_join(r[i], NULL));
    double secs = (double)(np_now() - t0) / 1e9;
    printf("  %ld deadline resets over %d descriptors in %.2f s (%.0f ns each, 2 threads)\n",
           atomic_load(&many_resets), MANY, secs, secs * 2e9 / (double)atomic_load(&many_resets));
    NP_CHECK_GE(atomic_load(&many_resets), MANY);
    conn_close(&c);
    for (int i = 0; i < MANY; i++) {
        np__pd_unblock(many[i]);
        np__pd_close(many[i]);
    }
    teardown();
}

static void t_bad_fd(void)
{
    np__pd *pd;
    setup();
    NP_CHECK_EQ(np__pd_open(100000, &pd), -EBADF);
    int fd = NP_CHECK_SYS(open("/dev/null", O_RDONLY));
    int rc = np__pd_open(fd, &pd);
    if (strcmp(np_poller_name(), "poll") == 0) {
        NP_CHECK_EQ(rc, 0); /* poll(2) accepts anything */
        np__pd_unblock(pd);
        np__pd_close(pd);
    } else {
        NP_CHECK_EQ(rc, -EPERM); /* epoll refuses what it cannot watch */
    }
    close(fd);
    teardown();
}

NP_TEST_LIST(
    NP_CASE(t_ready_before_wait_is_consumed),
    NP_CASE(t_reset_clears_ready),
    NP_CASE(t_real_readiness_wakes_waiters),
    NP_CASE(t_close_wakes_both_and_sticks),
    NP_CASE(t_past_deadline_beats_readiness),
    NP_CASE(t_deadline_fires_while_parked_never_early),
    NP_CASE(t_deadline_moved_earlier_while_parked),
    NP_CASE(t_deadline_extended_or_cleared_while_parked),
    NP_CASE(t_combined_and_separate_deadlines),
    NP_CASE(t_event_error),
    NP_CASE(t_reuse_is_clean),
    NP_CASE(t_two_waiters_one_direction_aborts),
    NP_CASE(t_deadline_accuracy),
    NP_CASE(t_100k_descriptors_deadlines_reset_continuously),
    NP_CASE(t_bad_fd))
