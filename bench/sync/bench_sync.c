/* Coordination costs: np_mutex, channels and np_select, one scenario per
 * run, printed as one machine-readable line; bench/sync/go_sync.go is the
 * same program in Go, and bench/sync/run.sh runs the two in turns.
 *
 *   mutex_uncontended  one task: lock; counter++; unlock, n times.
 *                      ns = ns per lock+unlock pair.
 *   mutex_contended    two tasks (run with -w 2: one per worker), each doing
 *                      lock; counter++; unlock n times on one mutex.
 *                      ns = wall time / (2n): ns per pair, both tasks.
 *   chan_pingpong      two tasks, two unbuffered channels of 8-byte
 *                      elements: A sends on one and receives on the other,
 *                      B echoes. ns = ns per round trip (two hand-offs).
 *   chan_buffered      a producer task sends n 8-byte elements into a
 *                      channel of capacity 128, a consumer receives them.
 *                      per_s = elements per second (ns = ns per element).
 *   select4            a producer sends n 8-byte elements round-robin into
 *                      4 unbuffered channels; the consumer receives them
 *                      with np_select over 4 receive cases. ns per select.
 *   select4_buffered   the same with capacity 128 on each channel: most
 *                      selects find a case ready without blocking.
 *
 * Each scenario runs once with n / 10 to warm up (stacks, pools, caches),
 * then measured with n, inside np_run with -w workers (default 1).
 *
 * Output (one line, key=value after the scenario name):
 *   sync SCENARIO impl=netpoll workers=W n=N ns=X [per_s=Y] [tids=T]
 *        wall_ns=W cpu_ns=C nivcsw=K check=ok
 * tids (mutex_contended): distinct threads the two tasks were seen on at
 * their start and end (2 or more: they ran on different workers).
 * wall_ns, cpu_ns, nivcsw: the measured run's wall time, the process's CPU
 * time (all threads) and its involuntary context switches meanwhile: many
 * of those mean other processes took the CPUs (run.sh runs it again).
 *
 * Usage: bench_sync SCENARIO [-w workers] [-n iterations]
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"
#include "../cpu_pin.h"

static const char *scenario;
static int workers = 1;
static long iters;
static double result_ns;
static long result_tids;
static int result_bad;
static int64_t result_cpu_ns, result_wall_ns;
static long result_nivcsw;

static void fail(const char *what, int rc)
{
    fprintf(stderr, "bench_sync %s: %s: %s\n", scenario, what, np_strerror(rc));
    fflush(stderr);
    _exit(2);
}

#define CHECK(call)                 \
    do {                            \
        int rc_ = (call);           \
        if (rc_ < 0)                \
            fail(#call, rc_);       \
    } while (0)

static long tid(void)
{
    return (long)syscall(SYS_gettid);
}

/* ---- mutex, uncontended ----------------------------------------------------- */
static np_mutex mu = NP_MUTEX_INIT;
static long counter;

static double mutex_uncontended(long n)
{
    int rc = 0;
    counter = 0;
    int64_t t0 = np_now();
    for (long i = 0; i < n; i++) {
        rc |= np_mutex_lock(&mu);
        counter++;
        rc |= np_mutex_unlock(&mu);
    }
    int64_t t1 = np_now();
    if (rc != 0)
        fail("np_mutex_lock / unlock", rc);
    if (counter != n)
        result_bad = 1;
    return (double)(t1 - t0) / (double)n;
}

/* ---- mutex, contended by two tasks ------------------------------------------ */
typedef struct contend {
    long n;
    _Atomic int ready;
    np_waitgroup wg;
    int64_t t0[2], t1[2];
    long tid[4];
} contend;

static contend ct;

/* Both tasks wait here until both run, so that they start together, on
 * different workers when there are two. A task queued behind its spawner
 * on the same worker is stolen by the idle one; should that not happen
 * within 200 ms (one worker), yield so the other one can run at all. */
static void start_barrier(_Atomic int *ready, int parties)
{
    atomic_fetch_add(ready, 1);
    int64_t give_up = np_now() + 200 * NP_MILLISECOND;
    unsigned k = 0;
    while (atomic_load(ready) < parties) {
        if ((++k & 1023) == 0 && np_now() > give_up)
            np_yield();
    }
}

static void contender(void *arg)
{
    int me = (int)(intptr_t)arg;
    contend *c = &ct;
    start_barrier(&c->ready, 2);
    c->tid[me] = tid();
    int rc = 0;
    int64_t t0 = np_now();
    for (long i = 0; i < c->n; i++) {
        rc |= np_mutex_lock(&mu);
        counter++;
        rc |= np_mutex_unlock(&mu);
    }
    c->t1[me] = np_now();
    c->t0[me] = t0;
    c->tid[2 + me] = tid();
    if (rc != 0)
        fail("np_mutex_lock / unlock", rc);
    CHECK(np_waitgroup_done(&c->wg));
}

static double mutex_contended(long n)
{
    contend *c = &ct;
    /* Not a memset: the wait group may still be inside the last run's
     * np_waitgroup_done (holding its lock) when np_waitgroup_wait returns. */
    c->n = n;
    atomic_store(&c->ready, 0);
    memset(c->tid, 0, sizeof c->tid);
    counter = 0;
    CHECK(np_waitgroup_add(&c->wg, 2));
    CHECK(np_go(contender, (void *)(intptr_t)0));
    CHECK(np_go(contender, (void *)(intptr_t)1));
    CHECK(np_waitgroup_wait(&c->wg, 0));
    if (counter != 2 * n)
        result_bad = 1;
    int64_t t0 = c->t0[0] < c->t0[1] ? c->t0[0] : c->t0[1];
    int64_t t1 = c->t1[0] > c->t1[1] ? c->t1[0] : c->t1[1];
    long distinct = 0;
    for (int i = 0; i < 4; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= c->tid[j] == c->tid[i];
        distinct += !seen;
    }
    result_tids = distinct;
    return (double)(t1 - t0) / (double)(2 * n);
}

/* ---- unbuffered ping-pong ---------------------------------------------------- */
typedef struct pingpong {
    np_chan ping, pong;
    long n;
    np_waitgroup wg;
} pingpong;

static pingpong pp;

static void echoer(void *arg)
{
    pingpong *p = arg;
    int64_t v;
    for (long i = 0; i < p->n; i++) {
        CHECK(np_chan_recv(p->ping, &v, 0));
        v++;
        CHECK(np_chan_send(p->pong, &v, 0));
    }
    CHECK(np_waitgroup_done(&p->wg));
}

static double chan_pingpong(long n)
{
    pingpong *p = &pp;
    p->n = n;
    CHECK(np_chan_make(&p->ping, sizeof(int64_t), 0));
    CHECK(np_chan_make(&p->pong, sizeof(int64_t), 0));
    CHECK(np_waitgroup_add(&p->wg, 1));
    CHECK(np_go(echoer, p));
    int64_t v = 0;
    int64_t t0 = np_now();
    for (long i = 0; i < n; i++) {
        CHECK(np_chan_send(p->ping, &v, 0));
        CHECK(np_chan_recv(p->pong, &v, 0));
    }
    int64_t t1 = np_now();
    CHECK(np_waitgroup_wait(&p->wg, 0));
    if (v != n)
        result_bad = 1;
    CHECK(np_chan_free(p->ping));
    CHECK(np_chan_free(p->pong));
    return (double)(t1 - t0) / (double)n;
}

/* ---- buffered throughput and select ---------------------------------------- */
typedef struct stream {
    np_chan ch[4];
    int nch;
    long n;
    np_waitgroup wg;
} stream;

static stream st;

static void producer(void *arg)
{
    stream *s = arg;
    int k = 0;
    for (long i = 0; i < s->n; i++) {
        int64_t v = i;
        CHECK(np_chan_send(s->ch[k], &v, 0));
        if (++k == s->nch)
            k = 0;
    }
    CHECK(np_waitgroup_done(&s->wg));
}

static void stream_open(stream *s, int nch, size_t cap, long n)
{
    s->nch = nch;
    s->n = n;
    for (int i = 0; i < nch; i++)
        CHECK(np_chan_make(&s->ch[i], sizeof(int64_t), cap));
    CHECK(np_waitgroup_add(&s->wg, 1));
}

static void stream_close(stream *s, int64_t sum)
{
    CHECK(np_waitgroup_wait(&s->wg, 0));
    if (sum != (int64_t)s->n * (s->n - 1) / 2)
        result_bad = 1;
    for (int i = 0; i < s->nch; i++)
        CHECK(np_chan_free(s->ch[i]));
}

static double chan_buffered(long n)
{
    stream *s = &st;
    stream_open(s, 1, 128, n);
    int64_t sum = 0, v;
    int64_t t0 = np_now();
    CHECK(np_go(producer, s));
    for (long i = 0; i < n; i++) {
        CHECK(np_chan_recv(s->ch[0], &v, 0));
        sum += v;
    }
    int64_t t1 = np_now();
    stream_close(s, sum);
    return (double)(t1 - t0) / (double)n;
}

static double select4(long n, size_t cap)
{
    stream *s = &st;
    stream_open(s, 4, cap, n);
    int64_t sum = 0, v[4];
    np_select_case cs[4];
    for (int i = 0; i < 4; i++)
        cs[i] = (np_select_case){ .chan = s->ch[i], .op = NP_RECV, .elem = &v[i] };
    int64_t t0 = np_now();
    CHECK(np_go(producer, s));
    for (long i = 0; i < n; i++) {
        int k = np_select(cs, 4, 0);
        if (k < 0)
            fail("np_select", k);
        if (cs[k].result != 0)
            fail("np_select case", cs[k].result);
        sum += v[k];
    }
    int64_t t1 = np_now();
    stream_close(s, sum);
    return (double)(t1 - t0) / (double)n;
}

/* ---- driver ------------------------------------------------------------------- */
static double run_once(long n)
{
    if (!strcmp(scenario, "mutex_uncontended"))
        return mutex_uncontended(n);
    if (!strcmp(scenario, "mutex_contended"))
        return mutex_contended(n);
    if (!strcmp(scenario, "chan_pingpong"))
        return chan_pingpong(n);
    if (!strcmp(scenario, "chan_buffered"))
        return chan_buffered(n);
    if (!strcmp(scenario, "select4"))
        return select4(n, 0);
    if (!strcmp(scenario, "select4_buffered"))
        return select4(n, 128);
    return -1;
}

static int64_t process_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * NP_SECOND + ts.tv_nsec;
}

static long nivcsw(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_nivcsw;
}

static void main_task(void *arg)
{
    (void)arg;
    long warm = iters / 10 > 0 ? iters / 10 : 1;
    run_once(warm);
    result_bad = 0;
    /* Whether other processes took our CPUs meanwhile: the process's CPU
     * time and involuntary context switches over the measured run. */
    long cs0 = nivcsw();
    int64_t c0 = process_cpu_ns(), w0 = np_now();
    result_ns = run_once(iters);
    result_wall_ns = np_now() - w0;
    result_cpu_ns = process_cpu_ns() - c0;
    result_nivcsw = nivcsw() - cs0;
}

static long default_iters(const char *s)
{
    if (!strcmp(s, "mutex_uncontended"))
        return 20000000;
    if (!strcmp(s, "mutex_contended"))
        return 2000000;
    if (!strcmp(s, "chan_buffered"))
        return 5000000;
    return 1000000;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_sync SCENARIO [-w workers] [-n iterations]\n"
                    "scenarios: mutex_uncontended mutex_contended chan_pingpong chan_buffered "
                    "select4 select4_buffered\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    scenario = argv[1];
    iters = default_iters(scenario);
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-w") && i + 1 < argc)
            workers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc)
            iters = atol(argv[++i]);
        else
            usage();
    }
    if (workers < 1 || iters < 1)
        usage();
    static const char *known[] = { "mutex_uncontended", "mutex_contended", "chan_pingpong",
                                   "chan_buffered", "select4", "select4_buffered" };
    int ok = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        ok |= !strcmp(scenario, known[i]);
    if (!ok)
        usage();
    if (workers > allowed_cpus())
        fprintf(stderr, "bench_sync: note: %d workers on %d allowed CPU(s)\n", workers,
                allowed_cpus());

    np_config cfg = { .workers = workers };
    int rc = np_run(&cfg, main_task, NULL);
    if (rc < 0)
        fail("np_run", rc);
    printf("sync %s impl=netpoll workers=%d n=%ld ns=%.2f", scenario, workers, iters, result_ns);
    if (!strcmp(scenario, "chan_buffered"))
        printf(" per_s=%.0f", 1e9 / result_ns);
    if (!strcmp(scenario, "mutex_contended"))
        printf(" tids=%ld", result_tids);
    printf(" wall_ns=%lld cpu_ns=%lld nivcsw=%ld", (long long)result_wall_ns,
           (long long)result_cpu_ns, result_nivcsw);
    printf(" check=%s\n", result_bad ? "FAILED" : "ok");
    return result_bad ? 1 : 0;
}
