/* Wake latency: np_go from a foreign (plain) thread until the new task runs,
 * beside a raw eventfd ping-pong between two threads, measured in the same
 * run, taking turns.
 *
 *   eventfd   thread A: t0 = now; write(efd_go); read(efd_back) (blocks).
 *             thread B: blocked in read(efd_go); t1 = now; write(efd_back).
 *   np_go     thread A (not a worker): t0 = now; np_go(fn); read(efd_back).
 *             fn, a new task: t1 = now; write(efd_back); returns.
 *             Meanwhile the runtime has nothing else to run: its main task
 *             sleeps (np_sleep in 20 ms steps, so a timer is always armed),
 *             hence the idle worker waits in the poller (epoll_wait), which
 *             is where a server's idle worker waits; with 2 workers the
 *             second one sleeps on its futex and is the one woken.
 *
 * One-way latency = t1 - t0 (both CLOCK_MONOTONIC, the same clock np_now
 * reads); round trip = until A has read efd_back. Between rounds A waits
 * GAP microseconds (busy, default 50), so that the other side has gone back
 * to sleep: every round measures a wake from sleep, not a hand-off to a
 * thread still spinning.
 *
 * Variants, each measured REPS times (interleaved, a fresh runtime each
 * time), ROUNDS rounds each:
 *   pinned   A on CPU 1, B / the worker on CPU 0  (needs 2 CPUs)
 *   unpinned the kernel's choice
 * and for np_go: 1 worker, and (unpinned only) 2 workers.
 *
 * Output: a markdown table and, with -o FILE, raw key=value lines.
 * Usage: bench_wake [-n ROUNDS] [-r REPS] [-g GAP_US] [-o FILE]
 */
#define _GNU_SOURCE /* pthread_setaffinity_np, CPU_SET */
#include <netpoll.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static int rounds = 5000, reps = 5, gap_us = 50;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
        fprintf(stderr, "bench_wake: cannot pin to CPU %d\n", cpu);
        exit(1);
    }
}

static void unpin(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    for (long i = 0; i < n && i < CPU_SETSIZE; i++)
        CPU_SET((int)i, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void efd_signal(int fd)
{
    uint64_t one = 1;
    while (write(fd, &one, sizeof one) != (ssize_t)sizeof one)
        ;
}

static void efd_wait(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof v) != (ssize_t)sizeof v)
        ;
}

static void spin_gap(void)
{
    int64_t until = now_ns() + (int64_t)gap_us * 1000;
    while (now_ns() < until)
        ;
}

/* One measurement: rounds one-way latencies and round trips, in ns. */
typedef struct sample {
    int64_t *one_way, *rtt;
} sample;

/* ---- eventfd ping-pong ------------------------------------------------------ */
static int efd_go, efd_back;
static _Atomic int64_t t_woken;

static void *pong_thread(void *arg)
{
    pin(*(int *)arg);
    for (int i = 0; i < rounds; i++) {
        efd_wait(efd_go);
        atomic_store_explicit(&t_woken, now_ns(), memory_order_relaxed);
        efd_signal(efd_back);
    }
    return NULL;
}

static void run_eventfd(int cpu_a, int cpu_b, sample *s)
{
    pthread_t t;
    pin(cpu_a);
    if (pthread_create(&t, NULL, pong_thread, &cpu_b) != 0)
        exit(1);
    usleep(10000);
    for (int i = 0; i < rounds; i++) {
        spin_gap();
        int64_t t0 = now_ns();
        efd_signal(efd_go);
        efd_wait(efd_back);
        int64_t t2 = now_ns();
        s->one_way[i] = atomic_load_explicit(&t_woken, memory_order_relaxed) - t0;
        s->rtt[i] = t2 - t0;
    }
    pthread_join(t, NULL);
    unpin();
}

/* ---- np_go from a foreign thread ------------------------------------------- */
static atomic_int foreign_done;
static int foreign_cpu;
static sample *cur;

static void woken_task(void *arg)
{
    (void)arg;
    atomic_store_explicit(&t_woken, np_now(), memory_order_relaxed);
    efd_signal(efd_back);
}

static void *foreign_thread(void *arg)
{
    (void)arg;
    if (foreign_cpu >= 0)
        pin(foreign_cpu);
    else
        unpin();
    usleep(10000); /* let the runtime settle into its idle wait */
    for (int i = 0; i < rounds; i++) {
        spin_gap();
        int64_t t0 = now_ns();
        int rc = np_go(woken_task, NULL);
        if (rc < 0) {
            fprintf(stderr, "bench_wake: np_go: %s\n", np_strerror(rc));
            exit(1);
        }
        efd_wait(efd_back);
        int64_t t2 = now_ns();
        cur->one_way[i] = atomic_load_explicit(&t_woken, memory_order_relaxed) - t0;
        cur->rtt[i] = t2 - t0;
    }
    atomic_store(&foreign_done, 1);
    return NULL;
}

static void np_main(void *arg)
{
    (void)arg;
    pthread_t t;
    if (pthread_create(&t, NULL, foreign_thread, NULL) != 0)
        exit(1);
    while (!atomic_load(&foreign_done))
        np_sleep(20 * NP_MILLISECOND);
    pthread_join(t, NULL);
}

static void run_npgo(int workers, int cpu_foreign, int cpu_worker, sample *s)
{
    atomic_store(&foreign_done, 0);
    foreign_cpu = cpu_foreign;
    cur = s;
    if (cpu_worker >= 0)
        pin(cpu_worker); /* np_run's caller is worker 0 */
    np_config cfg = {.workers = workers};
    int rc = np_run(&cfg, np_main, NULL);
    unpin();
    if (rc < 0) {
        fprintf(stderr, "bench_wake: np_run: %s\n", np_strerror(rc));
        exit(1);
    }
}

/* ---- statistics --------------------------------------------------------------- */
static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct(int64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp64);
    size_t k = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)v[k];
}

typedef struct variant {
    const char *name, *kind, *pinning;
    int workers, cpu_a, cpu_b;
    int64_t *all_ow, *all_rtt; /* reps * rounds */
    double *rep_med;           /* one-way median per rep */
} variant;

int main(int argc, char **argv)
{
    const char *raw_path = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "n:r:g:o:")) != -1) {
        switch (opt) {
        case 'n': rounds = atoi(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 'g': gap_us = atoi(optarg); break;
        case 'o': raw_path = optarg; break;
        default:
            fprintf(stderr, "usage: bench_wake [-n ROUNDS] [-r REPS] [-g GAP_US] [-o FILE]\n");
            return 2;
        }
    }
    if (rounds < 10 || reps < 1 || gap_us < 0) {
        fprintf(stderr, "bench_wake: bad arguments\n");
        return 2;
    }
    efd_go = eventfd(0, EFD_CLOEXEC);
    efd_back = eventfd(0, EFD_CLOEXEC);
    if (efd_go < 0 || efd_back < 0) {
        perror("eventfd");
        return 1;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    variant vs[] = {
        {"eventfd ping-pong (baseline)", "eventfd", "pinned", 0, 1, 0, NULL, NULL, NULL},
        {"np_go, 1 worker", "npgo", "pinned", 1, 1, 0, NULL, NULL, NULL},
        {"eventfd ping-pong (baseline)", "eventfd", "unpinned", 0, -1, -1, NULL, NULL, NULL},
        {"np_go, 1 worker", "npgo", "unpinned", 1, -1, -1, NULL, NULL, NULL},
        {"np_go, 2 workers", "npgo", "unpinned", 2, -1, -1, NULL, NULL, NULL},
    };
    int nv = (int)(sizeof vs / sizeof vs[0]);
    int first = ncpu >= 2 ? 0 : 2; /* pinned variants need two CPUs */
    for (int v = first; v < nv; v++) {
        vs[v].all_ow = calloc((size_t)reps * (size_t)rounds, sizeof(int64_t));
        vs[v].all_rtt = calloc((size_t)reps * (size_t)rounds, sizeof(int64_t));
        vs[v].rep_med = calloc((size_t)reps, sizeof(double));
        if (!vs[v].all_ow || !vs[v].all_rtt || !vs[v].rep_med)
            return 1;
    }
    int64_t *tmp = calloc((size_t)rounds, sizeof(int64_t));
    FILE *raw = raw_path ? fopen(raw_path, "w") : NULL;
    int64_t start = now_ns();
    for (int r = 0; r < reps; r++) {
        for (int v = first; v < nv; v++) {
            variant *x = &vs[v];
            sample s = {x->all_ow + (size_t)r * (size_t)rounds, x->all_rtt + (size_t)r * (size_t)rounds};
            if (strcmp(x->kind, "eventfd") == 0)
                run_eventfd(x->cpu_a, x->cpu_b, &s);
            else
                run_npgo(x->workers, x->cpu_a, x->cpu_b, &s);
            memcpy(tmp, s.one_way, (size_t)rounds * sizeof *tmp);
            x->rep_med[r] = pct(tmp, (size_t)rounds, 0.5);
            if (raw)
                fprintf(raw, "variant=%s pinning=%s workers=%d rep=%d median_ns=%.0f\n", x->kind,
                        x->pinning, x->workers, r + 1, x->rep_med[r]);
        }
    }
    printf("| variant | threads | one-way median µs | one-way p99 µs | round trip median µs "
           "| median per run µs (min–max) | one-way / eventfd |\n");
    printf("|---|---|--:|--:|--:|--:|--:|\n");
    double base = 0;
    for (int v = first; v < nv; v++) {
        variant *x = &vs[v];
        size_t n = (size_t)reps * (size_t)rounds;
        double med = pct(x->all_ow, n, 0.5), p99 = pct(x->all_ow, n, 0.99);
        double rtt = pct(x->all_rtt, n, 0.5);
        double lo = x->rep_med[0], hi = x->rep_med[0];
        for (int r = 1; r < reps; r++) {
            if (x->rep_med[r] < lo) lo = x->rep_med[r];
            if (x->rep_med[r] > hi) hi = x->rep_med[r];
        }
        if (strcmp(x->kind, "eventfd") == 0)
            base = med;
        printf("| %s | %s | %.2f | %.2f | %.2f | %.2f–%.2f | %.2f |\n", x->name, x->pinning,
               med / 1e3, p99 / 1e3, rtt / 1e3, lo / 1e3, hi / 1e3, base > 0 ? med / base : 0);
        if (raw)
            fprintf(raw, "summary kind=%s pinning=%s workers=%d median_ns=%.0f p99_ns=%.0f "
                         "rtt_median_ns=%.0f ratio=%.3f run_median_min_ns=%.0f run_median_max_ns=%.0f\n",
                    x->kind, x->pinning, x->workers, med, p99, rtt, base > 0 ? med / base : 0, lo, hi);
    }
    printf("\n%d rounds x %d runs per variant, %d µs busy gap between rounds, %ld CPUs, "
           "%.1f s.\n", rounds, reps, gap_us, ncpu, (double)(now_ns() - start) / 1e9);
    if (raw)
        fclose(raw);
    return 0;
}
