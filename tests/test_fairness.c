/* Fairness under load (issue 11, the soak at 6,000 connections): a task
 * made runnable while its worker's run queue is full waits behind about one
 * pass over the runnable tasks, not more.
 *
 * The soak saw reads wait over 10 s with data in their sockets: a full run
 * queue spilled to the global queue, which a busy worker serves one task
 * per fairness tick, while the run queue's own tasks, readied again round
 * after round, were served at once (the fix: sched_internal.h, local_put). That
 * takes the soak's mix of thousands of connections, timers and yields to
 * show; these cases only guard the property, with one worker (with two,
 * the OS descheduling a worker for a few ms shows as passes too). The wait
 * is measured in passes, not in time: every runnable task counts its
 * turns, so the figure does not depend on the machine's speed.
 *
 *   yielders_and_a_reader   N tasks yielding in turn (more than the run
 *                           queue holds) and a reader woken by data from a
 *                           plain thread
 *   pingers_and_a_reader    the same among ping-pong pairs over sockets
 *   sleepers_and_a_reader   ... among tasks woken by timers
 *   a_mix_and_a_reader      ... among all three kinds
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netpoll.h"
#include "np_test.h"

enum { ROUNDS = 20 };

static struct {
    int ntasks;
    _Atomic bool stop;
    _Atomic long turns;   /* yields, all tasks together */
    _Atomic int running;  /* yielders started */
    np_conn reader_end;
    int writer_fd;
    _Atomic long turns_at_write;
    _Atomic int written;  /* rounds whose byte is out */
    _Atomic int seen;     /* rounds the reader has read */
    double worst_passes;
    void *pingers;
} F;

static void yielder(void *arg)
{
    (void)arg;
    atomic_fetch_add(&F.running, 1);
    while (!atomic_load_explicit(&F.stop, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&F.turns, 1, memory_order_relaxed);
        np_yield();
    }
}

/* Sleeps in turn: each turn readied by a timer. */
static void sleeper(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    atomic_fetch_add(&F.running, 1);
    while (!atomic_load_explicit(&F.stop, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&F.turns, 1, memory_order_relaxed);
        np_sleep((int64_t)(i % 7) * 100 * NP_MICROSECOND);
        i = i * 1103515245u + 12345u;
    }
}

/* One end of a ping-pong pair: the soak's load in miniature. Every turn
 * is a read woken by the poller, so the run queue is refilled by polls. */
typedef struct pinger {
    np_conn c;
    bool serve; /* waits for the other's byte before sending its own */
} pinger;

static void ping(void *arg)
{
    pinger *p = arg;
    char b = 'p';
    atomic_fetch_add(&F.running, 1);
    if (!p->serve && np_write(p->c, &b, 1) != 1)
        return;
    while (!atomic_load_explicit(&F.stop, memory_order_relaxed)) {
        if (np_read(p->c, &b, 1) != 1)
            break; /* closed at the end */
        atomic_fetch_add_explicit(&F.turns, 1, memory_order_relaxed);
        if (np_write(p->c, &b, 1) != 1)
            break;
    }
}

/* A plain thread: one byte per round, once the reader has read the last. */
static void *writer_thread(void *arg)
{
    (void)arg;
    for (int r = 0; r < ROUNDS; r++) {
        while (atomic_load(&F.seen) < r)
            sched_yield();
        usleep(2000); /* let the reader park again: a wait, not a handshake */
        /* Counted from after the write: the data is there from then on.
         * (Before it, this thread may lose its CPU to the busy workers.) */
        NP_CHECK_EQ(write(F.writer_fd, "x", 1), 1);
        atomic_store(&F.turns_at_write, atomic_load(&F.turns));
        atomic_store(&F.written, r + 1);
    }
    return NULL;
}

static void reader(void *arg)
{
    (void)arg;
    char c;
    for (int r = 0; r < ROUNDS; r++) {
        NP_CHECK_EQ(np_read(F.reader_end, &c, 1), 1);
        long now_turns = atomic_load(&F.turns);
        while (atomic_load(&F.written) <= r) /* its count is stored after the write */
            np_yield();
        long waited = now_turns - atomic_load(&F.turns_at_write);
        double passes = (double)waited / F.ntasks;
        if (getenv("NP_FAIR_VERBOSE"))
            printf("    round %d: %.2f passes\n", r, passes);
        if (passes > F.worst_passes)
            F.worst_passes = passes;
        atomic_store(&F.seen, r + 1);
    }
    atomic_store(&F.stop, true);
}

static int mode; /* 0 yielders, 1 pairs, 2 sleepers, 3 a mix of all three */

static void body(void *arg)
{
    (void)arg;
    bool pairs = mode == 1 || mode == 3;
    int sv[2];
    NP_CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    NP_CHECK_OK(np_conn_from_fd(&F.reader_end, sv[0]));
    F.writer_fd = sv[1];
    pinger *p = NULL; /* freed by run() once np_run returned: every task is done */
    if (pairs) {
        p = calloc((size_t)F.ntasks, sizeof *p);
        NP_CHECK(p != NULL);
        for (int i = 0; i < F.ntasks; i += 2) {
            int pv[2];
            NP_CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, pv));
            NP_CHECK_OK(np_conn_from_fd(&p[i].c, pv[0]));
            NP_CHECK_OK(np_conn_from_fd(&p[i + 1].c, pv[1]));
            p[i + 1].serve = true;
        }
    }
    for (int i = 0; i < F.ntasks; i++) {
        int m = mode == 3 ? (i / 2) % 3 : mode; /* pairs stay pairs */
        NP_CHECK_OK(m == 1   ? np_go(ping, &p[i])
                    : m == 2 ? np_go(sleeper, (void *)(uintptr_t)i)
                             : np_go(yielder, NULL));
    }
    while (atomic_load(&F.running) < F.ntasks)
        np_yield();
    NP_CHECK_OK(np_go(reader, NULL));
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, writer_thread, NULL));
    while (!atomic_load(&F.stop))
        np_sleep(NP_MILLISECOND);
    NP_CHECK_OK(pthread_join(th, NULL));
    NP_CHECK_OK(np_close(F.reader_end));
    close(sv[1]);
    for (int i = 0; pairs && i < F.ntasks; i++)
        np_close(p[i].c); /* wakes its task: np_read gives -ECANCELED */
    F.pingers = p;
}

static void run(int workers, int ntasks, int how)
{
    mode = how;
    F.ntasks = ntasks;
    atomic_store(&F.stop, false);
    atomic_store(&F.turns, 0);
    atomic_store(&F.running, 0);
    atomic_store(&F.seen, 0);
    atomic_store(&F.written, 0);
    F.worst_passes = 0;
    np_config c = { .workers = workers };
    NP_CHECK_OK(np_run(&c, body, NULL));
    free(F.pingers);
    F.pingers = NULL;
    printf("  %d workers, %d %s: the reader waited at most %.2f passes\n", workers, ntasks,
           how == 1 ? "ping-pong tasks" : how == 2 ? "sleeping tasks" : how == 3 ? "mixed tasks" : "yielding tasks",
           F.worst_passes);
    /* One pass for the tasks ahead of it, one for the poll that finds the
     * data (every fairness tick), and slack. Measured: about 1 (the old
     * scheduler: 0.5 to 2.5; the soak is what it failed). */
    NP_CHECK_MSG(F.worst_passes <= 4.0, "the reader waited %.2f passes of the run queue",
                 F.worst_passes);
}

static void yielders_and_a_reader(void)
{
    run(1, 1000, 0);
}

static void pingers_and_a_reader(void)
{
    run(1, 2000, 1);
}

static void sleepers_and_a_reader(void)
{
    run(1, 2000, 2);
}

static void a_mix_and_a_reader(void)
{
    run(1, 3000, 3);
}

NP_TEST_LIST(NP_CASE(yielders_and_a_reader), NP_CASE(pingers_and_a_reader),
             NP_CASE(sleepers_and_a_reader), NP_CASE(a_mix_and_a_reader))
