/* Timer costs per operation (src/pd/timer.h), beside baselines measured in the
 * same run.
 *
 *   bench_timers [N...]        default: 10000 1000000
 *
 * For each N, N timers (one calloc'd array, np__timer_init with hint i) go
 * through these phases, each timed over the whole array:
 *
 *   set            arm N idle timers at now + 1h + random spread (< 1h)
 *   reset later    move each one later (+1h): the lazy O(1) path
 *   reset earlier  move each one to a random time before every key: sift-up
 *   stop           disarm each one (lazy: the entry stays in the heap)
 *   deadline       "deadline before every read": round-robin over all N,
 *                  timer i re-set to now + 30s + i us (now read once a pass;
 *                  a second row reads np_now() before every set)
 *   fire           N timers already due; one np__timers_run(now, ...), the
 *                  callback a counter increment; cost per timer fired
 *   re-file        N keys due whose timers were moved later (lazy): one
 *                  np__timers_run(now, ...) re-files each at its real time;
 *                  the deferred cost of "reset later"
 *
 * Baselines, same run, same N, same keys:
 *   bheap  a plain 2-ary min-heap of int64 keys in one array (below): ns per
 *          push (set / reset / stop / deadline rows) or per pop (fire and
 *          re-file rows)
 *   mutex  one uncontended pthread_mutex lock + unlock pair
 *
 * Then two threads re-set disjoint halves of the timers ("deadline" pattern)
 * concurrently, once with the halves on disjoint shards and once with both
 * halves spread over every shard, against each thread alone.
 *
 * The process starts a thread before measuring (glibc's mutexes skip their
 * atomic instructions in a process that never had a second thread).
 *
 * Figures are medians over the repetitions. Absolute ns are machine-specific;
 * read the ratios.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>

#include "cpu_pin.h"
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "netpoll.h"
#include "pd/timer.h"

#define HOUR (3600 * NP_SECOND)
#define MINUTE (60 * NP_SECOND)
#define FAR_FUTURE (INT64_MAX - 1)

/* ---- helpers ---------------------------------------------------------------- */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NP_SECOND + ts.tv_nsec;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p) {
        fprintf(stderr, "bench_timers: out of memory (%zu x %zu)\n", n, size);
        exit(1);
    }
    return p;
}

/* The idx-th CPU this process may run on, or -1. */
/* ---- baseline: a plain binary heap of int64 keys ------------------------------ */

typedef struct bheap {
    int64_t *a;
    size_t len;
} bheap;

static void bheap_push(bheap *h, int64_t k)
{
    size_t i = h->len++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->a[p] <= k)
            break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = k;
}

static int64_t bheap_pop(bheap *h)
{
    int64_t top = h->a[0];
    int64_t k = h->a[--h->len];
    size_t i = 0, n = h->len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && h->a[c + 1] < h->a[c])
            c++;
        if (k <= h->a[c])
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (n)
        h->a[i] = k;
    return top;
}

/* ---- timer phases ----------------------------------------------------------- */

static uint64_t fired;

static void on_fire(void *arg, uintptr_t seq)
{
    (void)seq;
    (*(uint64_t *)arg)++;
}

/* Stops every timer and drops the stopped entries from the heaps (untimed):
 * the shards are empty afterwards. */
static void purge(np__timer *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        np__timer_stop(&t[i]);
    np__timers_run(FAR_FUTURE, NULL); /* everything is stopped: nothing fires */
}

enum {
    OP_SET, OP_LATER, OP_EARLIER, OP_STOP, OP_DEADLINE, OP_DEADLINE_NOW,
    OP_FIRE, OP_REFILE, OP_COUNT
};

static const char *const op_name[OP_COUNT] = {
    "set (idle -> armed)", "reset later (lazy)", "reset earlier (sift-up)",
    "stop (lazy)", "deadline: re-set now+30s", "deadline, np_now() per op",
    "fire (run + callback)", "re-file moved-later keys",
};

/* Which baseline heap op each timer op is compared with: 0 push, 1 pop. */
static const int op_vs_pop[OP_COUNT] = { 0, 0, 0, 0, 0, 0, 1, 1 };

typedef struct phase_input {
    np__timer *t;
    size_t n;
    const int64_t *set_when;     /* T0 + 1h + spread */
    const int64_t *earlier_when; /* T0 + 1min + spread, < every set_when */
    const int64_t *past_when;    /* now - spread: due */
    size_t deadline_passes;
} phase_input;

/* One repetition of every phase; ns per op into out[OP_*]. */
static void run_phases(const phase_input *in, double out[OP_COUNT])
{
    np__timer *t = in->t;
    size_t n = in->n;
    int64_t t0, t1;

    /* set, reset later, reset earlier, stop: one sequence on empty shards. */
    t0 = mono_ns();
    for (size_t i = 0; i < n; i++)
        np__timer_set(&t[i], in->set_when[i], on_fire, &fired, 0);
    t1 = mono_ns();
    out[OP_SET] = (double)(t1 - t0) / (double)n;

    t0 = mono_ns();
    for (size_t i = 0; i < n; i++)
        np__timer_set(&t[i], in->set_when[i] + HOUR, on_fire, &fired, 0);
    t1 = mono_ns();
    out[OP_LATER] = (double)(t1 - t0) / (double)n;

    t0 = mono_ns();
    for (size_t i = 0; i < n; i++)
        np__timer_set(&t[i], in->earlier_when[i], on_fire, &fired, 0);
    t1 = mono_ns();
    out[OP_EARLIER] = (double)(t1 - t0) / (double)n;

    t0 = mono_ns();
    for (size_t i = 0; i < n; i++)
        np__timer_stop(&t[i]);
    t1 = mono_ns();
    out[OP_STOP] = (double)(t1 - t0) / (double)n;
    purge(t, n);

    /* deadline pattern: prime (inserts, untimed), then timed passes, each
     * later than the previous one. */
    const int64_t step = NP_MICROSECOND;
    int64_t now = np_now();
    for (size_t i = 0; i < n; i++)
        np__timer_set(&t[i], now + 30 * NP_SECOND + (int64_t)i * step, on_fire, &fired, 0);
    t0 = mono_ns();
    for (size_t p = 0; p < in->deadline_passes; p++) {
        now = np_now();
        for (size_t i = 0; i < n; i++)
            np__timer_set(&t[i], now + 30 * NP_SECOND + (int64_t)i * step, on_fire, &fired, 0);
    }
    t1 = mono_ns();
    out[OP_DEADLINE] = (double)(t1 - t0) / (double)(n * in->deadline_passes);

    t0 = mono_ns();
    for (size_t p = 0; p < in->deadline_passes; p++)
        for (size_t i = 0; i < n; i++)
            np__timer_set(&t[i], np_now() + 30 * NP_SECOND + (int64_t)i * step, on_fire,
                          &fired, 0);
    t1 = mono_ns();
    out[OP_DEADLINE_NOW] = (double)(t1 - t0) / (double)(n * in->deadline_passes);
    purge(t, n);

    /* fire: everything due. */
    for (size_t i = 0; i < n; i++)
        np__timer_set(&t[i], in->past_when[i], on_fire, &fired, 0);
    fired = 0;
    int ran = 0;
    t0 = mono_ns();
    np__timers_run(np_now(), &ran);
    t1 = mono_ns();
    out[OP_FIRE] = (double)(t1 - t0) / (double)n;
    if (fired != n || (size_t)ran != n) {
        fprintf(stderr, "bench_timers: fired %llu (run says %d) of %zu timers\n",
                (unsigned long long)fired, ran, n);
        exit(1);
    }

    /* re-file: keys due, timers moved later (lazy) before the run. */
    for (size_t i = 0; i < n; i++)
        np__timer_set(&t[i], in->past_when[i], on_fire, &fired, 0);
    for (size_t i = 0; i < n; i++)
        np__timer_set(&t[i], in->set_when[i], on_fire, &fired, 0);
    fired = 0;
    t0 = mono_ns();
    np__timers_run(np_now(), &ran);
    t1 = mono_ns();
    out[OP_REFILE] = (double)(t1 - t0) / (double)n;
    if (fired != 0 || ran != 0) {
        fprintf(stderr, "bench_timers: %llu moved-later timers fired early\n",
                (unsigned long long)fired);
        exit(1);
    }
    purge(t, n);
}

/* Baselines: out[0] ns per bheap push, out[1] per pop, out[2] per mutex pair. */
static void run_baselines(const int64_t *keys, size_t n, int64_t *store, double out[3])
{
    bheap h = { .a = store, .len = 0 };
    int64_t t0 = mono_ns();
    for (size_t i = 0; i < n; i++)
        bheap_push(&h, keys[i]);
    int64_t t1 = mono_ns();
    int64_t prev = INT64_MIN, sum = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t k = bheap_pop(&h);
        if (k < prev) {
            fprintf(stderr, "bench_timers: baseline heap out of order\n");
            exit(1);
        }
        prev = k;
        sum += k & 1;
    }
    int64_t t2 = mono_ns();
    out[0] = (double)(t1 - t0) / (double)n;
    out[1] = (double)(t2 - t1) / (double)n;
    if (sum < 0) /* keeps the pops observable */
        puts("");

    static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    enum { PAIRS = 200000 };
    t0 = mono_ns();
    for (int i = 0; i < PAIRS; i++) {
        pthread_mutex_lock(&m);
        pthread_mutex_unlock(&m);
    }
    t1 = mono_ns();
    out[2] = (double)(t1 - t0) / PAIRS;
}

/* ---- two threads ------------------------------------------------------------- */

typedef struct worker {
    np__timer *t;          /* this thread's half */
    size_t n;
    size_t passes;
    int cpu;
    pthread_barrier_t *go; /* NULL: run alone */
    double ns_per_op;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    (void)pin_self(w->cpu); /* unpinned still measures, just noisier */
    if (w->go)
        pthread_barrier_wait(w->go);
    int64_t t0 = mono_ns();
    for (size_t p = 0; p < w->passes; p++) {
        int64_t now = np_now();
        for (size_t i = 0; i < w->n; i++)
            np__timer_set(&w->t[i], now + 30 * NP_SECOND + (int64_t)i * NP_MICROSECOND,
                          on_fire, &fired, 0);
    }
    int64_t t1 = mono_ns();
    w->ns_per_op = (double)(t1 - t0) / (double)(w->n * w->passes);
    return NULL;
}

static void run_workers(worker *w, int count)
{
    pthread_t th[2];
    for (int i = 0; i < count; i++)
        if (pthread_create(&th[i], NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "bench_timers: pthread_create failed\n");
            exit(1);
        }
    for (int i = 0; i < count; i++)
        pthread_join(th[i], NULL);
}

static void init_all(np__timer *t, size_t n, int disjoint)
{
    uint32_t ns = np__timers_shards();
    for (size_t i = 0; i < n; i++) {
        /* disjoint: first half on even shards, second half on odd shards;
         * shared: both halves spread over every shard. */
        uint32_t hint = disjoint ? 2 * (uint32_t)(i % (ns / 2)) + (i >= n / 2)
                                 : (uint32_t)i;
        if (np__timer_init(&t[i], hint) != 0) {
            fprintf(stderr, "bench_timers: np__timer_init: out of memory\n");
            exit(1);
        }
    }
}

static void destroy_all(np__timer *t, size_t n)
{
    purge(t, n);
    for (size_t i = 0; i < n; i++)
        np__timer_destroy(&t[i]);
}

static void bench_threads(np__timer *t, size_t n, double single_ref)
{
    size_t half = n / 2;
    size_t passes = half >= 300000 ? 1 : 300000 / half;
    int cpus = allowed_cpus();
    int c0 = cpus >= 2 ? nth_cpu(0) : -1, c1 = cpus >= 2 ? nth_cpu(1) : -1;
    enum { REPS = 5 };

    printf("\nTwo threads, \"deadline\" re-sets on disjoint halves of the %zu timers "
           "(%zu ops per thread per run, %s, median of %d runs):\n",
           n, half * passes,
           cpus >= 2 ? "threads pinned to 2 CPUs" : "only 1 CPU: not pinned", REPS);
    printf("| shards | thread | alone ns/op | concurrent ns/op | concurrent / alone |\n");
    printf("|---|---|---:|---:|---:|\n");
    for (int disjoint = 1; disjoint >= 0; disjoint--) {
        init_all(t, n, disjoint);
        int64_t now = np_now();
        for (size_t i = 0; i < n; i++) /* prime: all in the heaps */
            np__timer_set(&t[i], now + 30 * NP_SECOND, on_fire, &fired, 0);
        double alone[2][REPS], conc[2][REPS];
        for (int r = 0; r < REPS; r++) {
            worker w[2] = {
                { .t = t, .n = half, .passes = passes, .cpu = c0 },
                { .t = t + half, .n = half, .passes = passes, .cpu = c1 },
            };
            run_workers(&w[0], 1);
            run_workers(&w[1], 1);
            alone[0][r] = w[0].ns_per_op;
            alone[1][r] = w[1].ns_per_op;
            pthread_barrier_t go;
            pthread_barrier_init(&go, NULL, 2);
            w[0].go = w[1].go = &go;
            run_workers(w, 2);
            pthread_barrier_destroy(&go);
            conc[0][r] = w[0].ns_per_op;
            conc[1][r] = w[1].ns_per_op;
        }
        for (int k = 0; k < 2; k++) {
            double a = median(alone[k], REPS), c = median(conc[k], REPS);
            printf("| %s | %d | %.1f | %.1f | %.2f |\n",
                   disjoint ? "disjoint (even / odd)" : "shared (all / all)", k, a, c, c / a);
        }
        destroy_all(t, n);
    }
    printf("(single-thread \"deadline\" row above, for reference: %.1f ns/op)\n", single_ref);
}

/* ---- main ----------------------------------------------------------------------- */

static void *nothing(void *arg)
{
    return arg;
}

/* glibc takes a cheaper, non-atomic path in pthread_mutex_lock while a process
 * has never had a second thread. The library lives in threaded programs, so
 * start (and end) one thread before measuring anything. */
static void become_multithreaded(void)
{
    pthread_t th;
    if (pthread_create(&th, NULL, nothing, NULL) != 0) {
        fprintf(stderr, "bench_timers: pthread_create failed\n");
        exit(1);
    }
    pthread_join(th, NULL);
}

static void bench_n(size_t n)
{
    np__timer *t = xcalloc(n, sizeof *t);
    int64_t *set_when = xcalloc(n, sizeof *set_when);
    int64_t *earlier_when = xcalloc(n, sizeof *earlier_when);
    int64_t *past_when = xcalloc(n, sizeof *past_when);
    int64_t *heap_store = xcalloc(n, sizeof *heap_store);

    for (size_t i = 0; i < n; i++)
        if (np__timer_init(&t[i], (uint32_t)i) != 0) {
            fprintf(stderr, "bench_timers: np__timer_init: out of memory\n");
            exit(1);
        }

    int64_t t0 = np_now();
    for (size_t i = 0; i < n; i++) {
        set_when[i] = t0 + HOUR + (int64_t)(rng() % (uint64_t)HOUR);
        earlier_when[i] = t0 + MINUTE + (int64_t)(rng() % (uint64_t)(58 * MINUTE));
        int64_t p = t0 - (int64_t)(rng() % (uint64_t)NP_SECOND);
        past_when[i] = p > 0 ? p : 1;
    }

    int reps = (int)(1000000 / n);
    if (reps < 5)
        reps = 5;
    if (reps > 100)
        reps = 100;
    size_t deadline_passes = n >= 50000 ? 1 : 50000 / n;

    phase_input in = {
        .t = t, .n = n, .set_when = set_when, .earlier_when = earlier_when,
        .past_when = past_when, .deadline_passes = deadline_passes,
    };
    double *ops[OP_COUNT], *base[3];
    for (int k = 0; k < OP_COUNT; k++)
        ops[k] = xcalloc((size_t)reps, sizeof(double));
    for (int k = 0; k < 3; k++)
        base[k] = xcalloc((size_t)reps, sizeof(double));

    /* one untimed warm-up round, then interleaved repetitions */
    double scratch[OP_COUNT], bscratch[3];
    run_phases(&in, scratch);
    run_baselines(set_when, n, heap_store, bscratch);
    for (int r = 0; r < reps; r++) {
        double o[OP_COUNT], b[3];
        run_phases(&in, o);
        run_baselines(set_when, n, heap_store, b);
        for (int k = 0; k < OP_COUNT; k++)
            ops[k][r] = o[k];
        for (int k = 0; k < 3; k++)
            base[k][r] = b[k];
    }
    double med[OP_COUNT], bmed[3];
    for (int k = 0; k < OP_COUNT; k++)
        med[k] = median(ops[k], reps);
    for (int k = 0; k < 3; k++)
        bmed[k] = median(base[k], reps);

    printf("\n## N = %zu timers (%u shards, ~%zu timers per shard; median of %d reps)\n\n",
           n, np__timers_shards(), n / np__timers_shards(), reps);
    printf("Baselines (same run, same N, same keys):\n");
    printf("  bheap push = %.1f ns, bheap pop = %.1f ns  (plain 2-ary min-heap of int64 in one array)\n",
           bmed[0], bmed[1]);
    printf("  mutex pair = %.1f ns  (uncontended pthread_mutex lock + unlock)\n\n", bmed[2]);
    printf("| op | timers | ns/op | x mutex pair | x bheap (op) |\n");
    printf("|---|---:|---:|---:|---:|\n");
    for (int k = 0; k < OP_COUNT; k++) {
        double b = op_vs_pop[k] ? bmed[1] : bmed[0];
        printf("| %s | %zu | %.1f | %.2f | %.2f (%s) |\n", op_name[k], n, med[k],
               med[k] / bmed[2], med[k] / b, op_vs_pop[k] ? "pop" : "push");
    }

    /* The two-thread runs re-bind the timers to chosen shards. */
    for (size_t i = 0; i < n; i++)
        np__timer_destroy(&t[i]); /* all purged by run_phases */
    bench_threads(t, n, med[OP_DEADLINE]);

    for (int k = 0; k < OP_COUNT; k++)
        free(ops[k]);
    for (int k = 0; k < 3; k++)
        free(base[k]);
    free(heap_store);
    free(past_when);
    free(earlier_when);
    free(set_when);
    free(t); /* every timer stopped, purged and destroyed */
}

int main(int argc, char **argv)
{
    size_t sizes[8];
    int nsizes = 0;
    for (int i = 1; i < argc && nsizes < 8; i++) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(argv[i], &end, 10);
        if (errno || *end || v < 2 || v > 100000000) {
            fprintf(stderr, "usage: %s [N...]   (2 <= N <= 100000000; default 10000 1000000)\n",
                    argv[0]);
            return 2;
        }
        sizes[nsizes++] = (size_t)v;
    }
    if (nsizes == 0) {
        sizes[nsizes++] = 10000;
        sizes[nsizes++] = 1000000;
    }

    printf("# bench_timers: sharded 4-ary timer heaps (src/pd/timer.c), %d CPU(s)\n", allowed_cpus());
    printf("Ratios are against baselines measured in this run; absolute ns are for reference.\n");
    become_multithreaded();
    int64_t start = mono_ns();
    for (int i = 0; i < nsizes; i++)
        bench_n(sizes[i]);
    printf("\ntotal run time %.1f s\n", (double)(mono_ns() - start) / NP_SECOND);
    return 0;
}
