/* A task that holds its thread does not hold up the others (issue 14, the
 * hand-off): the monitor retakes the worker's queues after
 * np_config.stall_ns and hands them to another thread.
 *
 * Each case runs a ticker task (np_sleep of TICK in a loop, recording its
 * worst gap) beside tasks that keep their thread: in sleep(3)/usleep(3), or
 * computing without a scheduling point. The bounds are generous (2 noisy
 * cores, sanitizers): bench/stall measures the real figures. The control
 * (stall_ns < 0) shows the old behaviour, so that the test would notice a
 * monitor that does nothing. A gap is never shorter than TICK (a timer does
 * not fire early).
 *
 *   sleeping_task_one_worker     workers 1, a task in sleep(1)
 *   spinning_task_one_worker     workers 1, a task computing for 1 s
 *   two_sleepers_two_workers     workers 2, two tasks each in usleep(500 ms)
 *   control_no_monitor           stall_ns < 0: the ticker waits the call out
 *   stalled_task_goes_on         after its long call the task parks, yields,
 *                                readies others and starts tasks as usual
 *   stalls_counted_and_reported  np_stats counts them; stderr gets a line
 *                                naming the task's function, rate-limited
 *   threads_bounded              many stalled tasks: threads stay bounded
 *   stress                       many short stalls among ping-pong,
 *                                sleeps and spawns, stall_ns 1 ms (TSan)
 *   readier_that_never_parks     a task that never parks (so its worker
 *                                is handed on) keeps readying a task on
 *                                another worker and waits for it, spinning:
 *                                every readied task must run (it once sat
 *                                in the runnext of a worker whose new
 *                                thread had gone to sleep)
 *   timers_on_time_among_yielders  workers 1, two tasks computing 3 ms
 *                                between yields: the ticker is late by about
 *                                one such stretch, not by SCHED_TICK of them
 *                                (the monitor tells busy workers when timers
 *                                are due); the control without the monitor
 *                                shows the old lateness
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"
#include "np_test.h"

#define TICK (10 * NP_MILLISECOND)

static bool sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    return true;
#else
    return false;
#endif
#else
    return false;
#endif
}

/* The bound on a ticker's worst gap while the monitor works: the target is
 * 30 ms (bench/stall); this leaves room for a loaded 2-core machine. */
static int64_t gap_bound(void)
{
    return (sanitized() ? 400 : 150) * NP_MILLISECOND;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NP_SECOND + ts.tv_nsec;
}

static struct {
    _Atomic bool stop;
    _Atomic int64_t worst_gap;
    _Atomic int64_t shortest_gap;
    _Atomic int ticks;
    _Atomic int blockers_done;
    np_waitgroup wg;
} T;

static void reset(void)
{
    atomic_store(&T.stop, false);
    atomic_store(&T.worst_gap, 0);
    atomic_store(&T.shortest_gap, INT64_MAX);
    atomic_store(&T.ticks, 0);
    atomic_store(&T.blockers_done, 0);
}

static void ticker(void *arg)
{
    (void)arg;
    int64_t last = np_now();
    while (!atomic_load(&T.stop)) {
        NP_CHECK_EQ(np_sleep(TICK), 0);
        int64_t now = np_now();
        int64_t gap = now - last;
        last = now;
        if (gap > atomic_load(&T.worst_gap))
            atomic_store(&T.worst_gap, gap);
        if (gap < atomic_load(&T.shortest_gap))
            atomic_store(&T.shortest_gap, gap);
        atomic_fetch_add(&T.ticks, 1);
    }
    np_waitgroup_done(&T.wg);
}

/* Blocks its thread: what a careless task does. Not inlined and external,
 * so the stall report can name it. */
#define EXPORTED __attribute__((visibility("default"))) /* the build hides by default */
EXPORTED void stall_test_sleeper(void *arg);
EXPORTED void stall_test_spinner(void *arg);
__attribute__((noinline)) void stall_test_sleeper(void *arg)
{
    usleep((useconds_t)(intptr_t)arg);
    atomic_fetch_add(&T.blockers_done, 1);
    np_waitgroup_done(&T.wg);
}

__attribute__((noinline)) void stall_test_spinner(void *arg)
{
    int64_t until = mono_ns() + (int64_t)(intptr_t)arg * 1000;
    volatile uint64_t x = 0;
    while (mono_ns() < until)
        x++;
    atomic_fetch_add(&T.blockers_done, 1);
    np_waitgroup_done(&T.wg);
}

static struct {
    void (*blocker)(void *);
    int nblockers;
    intptr_t us;
} B;

/* Starts the ticker, lets it tick once, then the blockers; stops the
 * ticker once they are done. */
static void scenario_main(void *arg)
{
    (void)arg;
    NP_CHECK_EQ(np_waitgroup_add(&T.wg, 1 + B.nblockers), 0);
    NP_CHECK_EQ(np_go(ticker, NULL), 0);
    while (atomic_load(&T.ticks) < 2)
        np_sleep(NP_MILLISECOND);
    atomic_store(&T.worst_gap, 0); /* start-up is not the point */
    for (int i = 0; i < B.nblockers; i++)
        NP_CHECK_EQ(np_go(B.blocker, (void *)B.us), 0);
    while (atomic_load(&T.blockers_done) < B.nblockers)
        np_sleep(TICK);
    atomic_store(&T.stop, true);
    np_waitgroup_wait(&T.wg, 0);
}

static void run_scenario(int workers, int64_t stall_ns, void (*blocker)(void *), int n, intptr_t us)
{
    reset();
    T.wg = (np_waitgroup)NP_WAITGROUP_INIT;
    B.blocker = blocker;
    B.nblockers = n;
    B.us = us;
    np_config cfg = { .workers = workers, .stall_ns = stall_ns };
    NP_CHECK_EQ(np_run(&cfg, scenario_main, NULL), 0);
    NP_CHECK_GE(atomic_load(&T.shortest_gap), TICK);
    printf("    workers %d, stall_ns %lld, %d x %ld ms: worst ticker gap %.1f ms\n", workers,
           (long long)stall_ns, n, (long)(us / 1000), atomic_load(&T.worst_gap) / 1e6);
}

static void t_sleeping_task_one_worker(void)
{
    run_scenario(1, 0, stall_test_sleeper, 1, 1000 * 1000);
    NP_CHECK_LE(atomic_load(&T.worst_gap), gap_bound());
}

static void t_spinning_task_one_worker(void)
{
    run_scenario(1, 0, stall_test_spinner, 1, 1000 * 1000);
    NP_CHECK_LE(atomic_load(&T.worst_gap), gap_bound());
}

static void t_two_sleepers_two_workers(void)
{
    run_scenario(2, 0, stall_test_sleeper, 2, 500 * 1000);
    NP_CHECK_LE(atomic_load(&T.worst_gap), gap_bound());
}

static void t_control_no_monitor(void)
{
    run_scenario(1, -1, stall_test_sleeper, 1, 300 * 1000);
    /* The one worker sat in usleep(300 ms): the ticker waited it out. */
    NP_CHECK_GE(atomic_load(&T.worst_gap), 290 * NP_MILLISECOND);
}

/* ---- the stalled task goes on as usual ----------------------------------- */

static struct {
    np_chan ch;
    _Atomic int children;
    _Atomic int received;
    np_mutex mu;
    int in_mutex;
} G;

static void child(void *arg)
{
    (void)arg;
    np_mutex_lock(&G.mu);
    G.in_mutex++;
    np_mutex_unlock(&G.mu);
    atomic_fetch_add(&G.children, 1);
}

static void receiver(void *arg)
{
    (void)arg;
    int v;
    for (int i = 0; i < 100; i++) {
        NP_CHECK_EQ(np_chan_recv(G.ch, &v, 0), 0);
        NP_CHECK_EQ(v, i);
        atomic_fetch_add(&G.received, 1);
    }
}

static void stalled_then_busy(void *arg)
{
    (void)arg;
    usleep(200 * 1000); /* the worker's queue moves on meanwhile */
    /* Now, very likely without a processor of its own: every kind of
     * scheduling point must still work. */
    for (int i = 0; i < 100; i++) {
        NP_CHECK_EQ(np_chan_send(G.ch, &i, 0), 0);
        if (i % 10 == 0)
            NP_CHECK_EQ(np_go(child, NULL), 0);
        if (i % 7 == 0)
            np_yield();
        if (i % 13 == 0)
            NP_CHECK_EQ(np_sleep(NP_MILLISECOND), 0);
        np_mutex_lock(&G.mu);
        G.in_mutex++;
        np_mutex_unlock(&G.mu);
    }
}

static void goes_on_main(void *arg)
{
    (void)arg;
    NP_CHECK_EQ(np_go(receiver, NULL), 0);
    NP_CHECK_EQ(np_go(stalled_then_busy, NULL), 0);
}

static void t_stalled_task_goes_on(void)
{
    for (int workers = 1; workers <= 2; workers++) {
        memset(&G, 0, sizeof G);
        NP_CHECK_EQ(np_chan_make(&G.ch, sizeof(int), 0), 0);
        G.mu = (np_mutex)NP_MUTEX_INIT;
        np_config cfg = { .workers = workers, .stall_ns = 5 * NP_MILLISECOND };
        NP_CHECK_EQ(np_run(&cfg, goes_on_main, NULL), 0);
        NP_CHECK_EQ(atomic_load(&G.received), 100);
        NP_CHECK_EQ(atomic_load(&G.children), 10);
        NP_CHECK_EQ(G.in_mutex, 110);
        np_chan_free(G.ch);
    }
}

/* ---- counted and reported ------------------------------------------------- */

static np_stats stats_at_end;

static void stats_main(void *arg)
{
    scenario_main(arg);
    NP_CHECK_EQ(np_stats_get(&stats_at_end), 0);
}

static void t_stalls_counted_and_reported(void)
{
    /* In a child, so that its stderr can be read. */
    int p[2];
    NP_CHECK_EQ(pipe(p), 0);
    pid_t pid = fork();
    NP_CHECK(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        reset();
        T.wg = (np_waitgroup)NP_WAITGROUP_INIT;
        B.blocker = stall_test_sleeper;
        B.nblockers = 3;
        B.us = 300 * 1000;
        np_config cfg = { .workers = 1 };
        if (np_run(&cfg, stats_main, NULL) != 0)
            _exit(10);
        if (stats_at_end.stalls < 1 || stats_at_end.handoffs < 1)
            _exit(11);
        /* a control: no monitor, nothing counted */
        reset();
        T.wg = (np_waitgroup)NP_WAITGROUP_INIT;
        B.nblockers = 1;
        B.us = 100 * 1000;
        cfg.stall_ns = -1;
        if (np_run(&cfg, stats_main, NULL) != 0)
            _exit(12);
        if (stats_at_end.stalls != 0 || stats_at_end.handoffs != 0)
            _exit(13);
        _exit(0);
    }
    close(p[1]);
    char buf[8192];
    size_t len = 0;
    ssize_t n;
    while ((n = read(p[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = 0;
    close(p[0]);
    int status;
    NP_CHECK_EQ(waitpid(pid, &status, 0), pid);
    NP_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x; stderr:\n%s",
                 status, buf);
    NP_CHECK_MSG(strstr(buf, "stall_test_sleeper") != NULL, "no report names the task:\n%s", buf);
    /* Three tasks stalled one after another within a second: one line
     * (the others counted in the next line, if any). */
    int lines = 0;
    for (char *s = buf; (s = strstr(s, "netpoll: ")) != NULL; s++)
        lines++;
    NP_CHECK_MSG(lines >= 1 && lines <= 2, "%d report lines:\n%s", lines, buf);
}

/* ---- threads stay bounded ------------------------------------------------- */

static _Atomic int max_threads;

static void sample_threads(void *arg)
{
    (void)arg;
    while (!atomic_load(&T.stop)) {
        np_stats s;
        if (np_stats_get(&s) == 0 && s.threads > atomic_load(&max_threads))
            atomic_store(&max_threads, s.threads);
        np_sleep(5 * NP_MILLISECOND);
    }
}

static void many_main(void *arg)
{
    NP_CHECK_EQ(np_go(sample_threads, NULL), 0);
    scenario_main(arg);
    NP_CHECK_EQ(np_stats_get(&stats_at_end), 0);
}

static void t_threads_bounded(void)
{
    reset();
    T.wg = (np_waitgroup)NP_WAITGROUP_INIT;
    atomic_store(&max_threads, 0);
    B.blocker = stall_test_sleeper;
    B.nblockers = 300;
    B.us = 300 * 1000;
    np_config cfg = { .workers = 1, .stall_ns = NP_MILLISECOND };
    NP_CHECK_EQ(np_run(&cfg, many_main, NULL), 0);
    printf("    300 tasks in usleep(300 ms): at most %d threads\n", atomic_load(&max_threads));
    /* the worker's, NP_HANDOFF_THREADS more, the monitor */
    NP_CHECK_LE(atomic_load(&max_threads), 2 + NP_HANDOFF_THREADS);
    NP_CHECK_GE(atomic_load(&max_threads), 3); /* hand-offs did happen */
    /* Each stuck task counted once, however long it waits for a thread
     * (the main task's np_go loop may count too). */
    printf("    stalls %lld, hand-offs %lld\n", (long long)stats_at_end.stalls,
           (long long)stats_at_end.handoffs);
    NP_CHECK_LE(stats_at_end.stalls, 300 + 5);
    NP_CHECK_LE(stats_at_end.handoffs, stats_at_end.stalls);
}

/* ---- np_dump says what a stalled task does; the monitor wakes after idle -- */

static char dump_text[1 << 16];
static int64_t main_slept;

static void dump_main(void *arg)
{
    (void)arg;
    /* All idle for 300 ms: the monitor goes to sleep meanwhile... */
    NP_CHECK_EQ(np_sleep(300 * NP_MILLISECOND), 0);
    /* ... and must wake for this stall. */
    NP_CHECK_EQ(np_waitgroup_add(&T.wg, 1), 0);
    NP_CHECK_EQ(np_go(stall_test_sleeper, (void *)(intptr_t)(400 * 1000)), 0);
    int64_t t0 = np_now();
    NP_CHECK_EQ(np_sleep(200 * NP_MILLISECOND), 0); /* the ticker of this case */
    main_slept = np_now() - t0;
    int p[2];
    NP_CHECK_EQ(pipe(p), 0);
    NP_CHECK_EQ(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    NP_CHECK_EQ(np_dump(p[1]), 0);
    close(p[1]);
    ssize_t n = read(p[0], dump_text, sizeof dump_text - 1);
    dump_text[n > 0 ? n : 0] = 0;
    close(p[0]);
    np_waitgroup_wait(&T.wg, 0);
}

static void t_dump_shows_stalled_task(void)
{
    reset();
    T.wg = (np_waitgroup)NP_WAITGROUP_INIT;
    np_config cfg = { .workers = 1, .stall_ns = 5 * NP_MILLISECOND };
    NP_CHECK_EQ(np_run(&cfg, dump_main, NULL), 0);
    /* main's 200 ms sleep ended on time although the one worker's thread
     * sat in usleep(400 ms) meanwhile: the monitor woke from its idle sleep
     * and handed the worker on. */
    printf("    main's np_sleep(200 ms) took %.1f ms\n", main_slept / 1e6);
    NP_CHECK_GE(main_slept, 200 * NP_MILLISECOND);
    NP_CHECK_LE(main_slept, (sanitized() ? 390 : 300) * NP_MILLISECOND);
    NP_CHECK_MSG(strstr(dump_text, "stall_test_sleeper") && strstr(dump_text, "stalled: its worker was handed"),
                 "np_dump during the stall:\n%s", dump_text);
}

/* ---- stress ----------------------------------------------------------------- */

enum { PAIRS = 40, ROUNDS = 300 };

static struct {
    np_chan ping[PAIRS], pong[PAIRS];
    _Atomic long sum;
    _Atomic int spawned;
} X;

static void spawned_task(void *arg)
{
    atomic_fetch_add(&X.sum, (long)(intptr_t)arg);
}

static void pinger(void *arg)
{
    int k = (int)(intptr_t)arg;
    unsigned seed = (unsigned)k * 2654435761u;
    for (int i = 0; i < ROUNDS; i++) {
        NP_CHECK_EQ(np_chan_send(X.ping[k], &i, 0), 0);
        int v;
        NP_CHECK_EQ(np_chan_recv(X.pong[k], &v, 0), 0);
        NP_CHECK_EQ(v, i + 1);
        seed = seed * 1103515245u + 12345u;
        switch ((seed >> 16) % 16) {
        case 0:
            usleep((seed >> 8) % 3000); /* a short stall */
            break;
        case 1:
            np_yield();
            break;
        case 2:
            np_sleep((seed >> 8) % NP_MILLISECOND);
            break;
        case 3:
            if (np_go(spawned_task, (void *)(intptr_t)1) == 0)
                atomic_fetch_add(&X.spawned, 1);
            break;
        default:
            break;
        }
    }
}

static void ponger(void *arg)
{
    int k = (int)(intptr_t)arg;
    for (int i = 0; i < ROUNDS; i++) {
        int v;
        NP_CHECK_EQ(np_chan_recv(X.ping[k], &v, 0), 0);
        if (i % 50 == 0)
            usleep(2000);
        v++;
        NP_CHECK_EQ(np_chan_send(X.pong[k], &v, 0), 0);
    }
}

static void stress_main(void *arg)
{
    (void)arg;
    for (int k = 0; k < PAIRS; k++) {
        NP_CHECK_EQ(np_go(pinger, (void *)(intptr_t)k), 0);
        NP_CHECK_EQ(np_go(ponger, (void *)(intptr_t)k), 0);
    }
}

static void t_stress(void)
{
    for (int workers = 1; workers <= 2; workers++) {
        memset(&X, 0, sizeof X);
        for (int k = 0; k < PAIRS; k++) {
            NP_CHECK_EQ(np_chan_make(&X.ping[k], sizeof(int), 0), 0);
            NP_CHECK_EQ(np_chan_make(&X.pong[k], sizeof(int), 0), 0);
        }
        np_config cfg = { .workers = workers, .stall_ns = NP_MILLISECOND };
        NP_CHECK_EQ(np_run(&cfg, stress_main, NULL), 0);
        NP_CHECK_EQ(atomic_load(&X.sum), atomic_load(&X.spawned));
        for (int k = 0; k < PAIRS; k++) {
            np_chan_free(X.ping[k]);
            np_chan_free(X.pong[k]);
        }
    }
}

/* ---- a readier that never parks ---------------------------------------------- */

enum { HANDSHAKES = 10000 };
static np_chan hs_ch;
static _Atomic long hs_ack;
static _Atomic int hs_lost;

static void hs_receiver(void *arg)
{
    (void)arg;
    long v;
    while (np_chan_recv(hs_ch, &v, 0) == 0)
        atomic_store(&hs_ack, v);
}

static void hs_main(void *arg)
{
    (void)arg;
    NP_CHECK_EQ(np_go(hs_receiver, NULL), 0);
    for (long i = 1; i <= HANDSHAKES && !atomic_load(&hs_lost); i++) {
        NP_CHECK_EQ(np_chan_send(hs_ch, &i, 0), 0); /* buffered: readies, never parks */
        int64_t until = mono_ns() + 5 * NP_SECOND;
        while (atomic_load(&hs_ack) != i) {
            if (mono_ns() > until) {
                atomic_store(&hs_lost, 1); /* the receiver was readied and never ran */
                break;
            }
        }
    }
    np_chan_close(hs_ch);
}

static void t_readier_that_never_parks(void)
{
    for (int round = 0; round < 3; round++) {
        NP_CHECK_EQ(np_chan_make(&hs_ch, sizeof(long), 4), 0);
        atomic_store(&hs_ack, 0);
        atomic_store(&hs_lost, 0);
        np_config cfg = { .workers = 2, .stall_ns = NP_MILLISECOND };
        NP_CHECK_EQ(np_run(&cfg, hs_main, NULL), 0);
        NP_CHECK_MSG(!atomic_load(&hs_lost), "round %d: a readied receiver did not run for 5 s (ack %ld)",
                     round, atomic_load(&hs_ack));
        np_chan_free(hs_ch);
    }
}

/* ---- timers on time ------------------------------------------------------ */

static void yielder_3ms(void *arg)
{
    (void)arg;
    while (!atomic_load(&T.stop)) {
        int64_t until = mono_ns() + 3 * NP_MILLISECOND;
        while (mono_ns() < until) {
        }
        np_yield();
    }
    np_waitgroup_done(&T.wg);
}

static void yielders_main(void *arg)
{
    int nticks = (int)(intptr_t)arg;
    NP_CHECK_EQ(np_waitgroup_add(&T.wg, 3), 0);
    NP_CHECK_EQ(np_go(ticker, NULL), 0);
    while (atomic_load(&T.ticks) < 2)
        np_sleep(NP_MILLISECOND);
    atomic_store(&T.worst_gap, 0);
    NP_CHECK_EQ(np_go(yielder_3ms, NULL), 0);
    NP_CHECK_EQ(np_go(yielder_3ms, NULL), 0);
    int start = atomic_load(&T.ticks);
    while (atomic_load(&T.ticks) < start + nticks)
        np_sleep(TICK);
    atomic_store(&T.stop, true);
    np_waitgroup_wait(&T.wg, 0);
}

static void t_timers_on_time_among_yielders(void)
{
    int64_t with_monitor = 0;
    for (int control = 0; control <= 1; control++) {
        reset();
        T.wg = (np_waitgroup)NP_WAITGROUP_INIT;
        np_config cfg = { .workers = 1, .stall_ns = control ? -1 : 0 };
        /* 40 ticks: 400 ms with the monitor; the control's take longer */
        NP_CHECK_EQ(np_run(&cfg, yielders_main, (void *)(intptr_t)(control ? 6 : 40)), 0);
        NP_CHECK_GE(atomic_load(&T.shortest_gap), TICK);
        printf("    %s: worst ticker gap %.1f ms among tasks yielding every 3 ms\n",
               control ? "no monitor" : "monitor", atomic_load(&T.worst_gap) / 1e6);
        if (!control)
            with_monitor = atomic_load(&T.worst_gap);
        else /* the old way: a look at the timers every 61 picks of 3 ms */
            NP_CHECK_GE(atomic_load(&T.worst_gap), 60 * NP_MILLISECOND);
    }
    /* A tick, plus the stretch that was running when it came due, plus the
     * monitor's wake-up: about 14 ms; room for a loaded machine. */
    NP_CHECK_LE(with_monitor, (sanitized() ? 120 : 50) * NP_MILLISECOND);
}

NP_TEST_LIST(NP_CASE(t_sleeping_task_one_worker), NP_CASE(t_spinning_task_one_worker),
             NP_CASE(t_two_sleepers_two_workers), NP_CASE(t_control_no_monitor),
             NP_CASE(t_stalled_task_goes_on), NP_CASE(t_stalls_counted_and_reported),
             NP_CASE(t_threads_bounded), NP_CASE(t_stress), NP_CASE(t_timers_on_time_among_yielders),
             NP_CASE(t_dump_shows_stalled_task), NP_CASE(t_readier_that_never_parks))
