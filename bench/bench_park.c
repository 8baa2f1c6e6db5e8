/* Park / ready hand-off between two threads, against raw futex and eventfd
 * hand-offs measured in the same run.
 *
 *   bench_park [round_trips]      default 15000 round trips per run
 *
 * Two threads play ping-pong: each round trip is two one-way hand-offs
 * ("wake the other side, then sleep until woken"). Variants, interleaved in
 * each repetition so that all see the same machine state:
 *
 *   futex    baseline: a word per side; post = store 1 + FUTEX_WAKE (always,
 *            as the thread waiter does); wait = exchange 0, FUTEX_WAIT while 0
 *   eventfd  baseline: an eventfd per side; post = write 1, wait = read
 *   waiter   netpoll thread waiters (src/pd/waiter.h): a one-word semaphore per
 *            side (NIL / READY / parked waiter, the pd's protocol), wait =
 *            np__waiter_park with a commit that publishes the waiter,
 *            post = take the waiter out and np__waiter_ready it
 *   pd       netpoll poll descriptors (src/pd/pd.h) on a socketpair, the kernel
 *            bypassed: wait = np__pd_wait(pd, READ), post = np__pd_ready(pd,
 *            NP__POLL_READ) as the poller would. READY persists until a wait
 *            consumes it, so no reset between rounds and no lost hand-off.
 *
 * Reported: ns per one-way hand-off (round trip / 2), median of the
 * repetitions, and netpoll / futex and netpoll / eventfd. Runs with the two
 * threads pinned to two CPUs (if there are two) and unpinned.
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>

#include "cpu_pin.h"
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"
#include "pd/netpoll_driver.h"
#include "pd/pd.h"
#include "poller/poller.h"
#include "pd/waiter.h"

/* ---- helpers ---------------------------------------------------------------- */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NP_SECOND + ts.tv_nsec;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_park: %s: %s\n", what, strerror(err < 0 ? -err : err));
    exit(1);
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

/* ---- variants: post(side) wakes that side, wait(side) sleeps until posted --- */

typedef struct variant {
    const char *name;
    void (*post)(int side);
    void (*wait)(int side);
} variant;

/* futex */

static _Alignas(64) _Atomic uint32_t fword[2][16]; /* [side][0], a line each */

static void futex_post(int side)
{
    atomic_store_explicit(&fword[side][0], 1, memory_order_release);
    syscall(SYS_futex, &fword[side][0], FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static _Thread_local unsigned long futex_sleeps; /* waits that called FUTEX_WAIT */

static void futex_wait(int side)
{
    if (atomic_exchange_explicit(&fword[side][0], 0, memory_order_acquire) != 0)
        return;
    futex_sleeps++;
    do
        syscall(SYS_futex, &fword[side][0], FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    while (atomic_exchange_explicit(&fword[side][0], 0, memory_order_acquire) == 0);
}

/* eventfd */

static int efd[2] = { -1, -1 };

static void eventfd_post(int side)
{
    uint64_t one = 1;
    if (write(efd[side], &one, sizeof one) != (ssize_t)sizeof one)
        die("eventfd write", errno);
}

static void eventfd_wait(int side)
{
    uint64_t v;
    if (read(efd[side], &v, sizeof v) != (ssize_t)sizeof v)
        die("eventfd read", errno);
}

/* thread waiters, behind a one-word semaphore per side */

#define SEM_NIL ((uintptr_t)0)
#define SEM_READY ((uintptr_t)1)

static _Alignas(64) _Atomic uintptr_t wsem[2][8]; /* [side][0], a line each */

static bool commit_park(np__waiter *self, void *arg)
{
    uintptr_t expected = SEM_NIL;
    /* Fails only if the post came first (READY): then do not sleep. */
    return atomic_compare_exchange_strong((_Atomic uintptr_t *)arg, &expected,
                                          (uintptr_t)self);
}

static void waiter_post(int side)
{
    _Atomic uintptr_t *s = &wsem[side][0];
    uintptr_t old = atomic_load(s);
    for (;;) {
        if (old == SEM_READY) {
            fprintf(stderr, "bench_park: posted twice\n");
            exit(1);
        }
        uintptr_t next = old == SEM_NIL ? SEM_READY : SEM_NIL; /* waiter -> NIL */
        if (atomic_compare_exchange_weak(s, &old, next))
            break;
    }
    if (old != SEM_NIL)
        np__waiter_ready((np__waiter *)old);
}

static void waiter_wait(int side)
{
    _Atomic uintptr_t *s = &wsem[side][0];
    uintptr_t v = SEM_READY;
    if (atomic_compare_exchange_strong(s, &v, SEM_NIL))
        return;
    np__waiter_park(np__waiter_current(), commit_park, (void *)s, 0);
    /* Woken (the poster took the waiter out: NIL) or the commit found READY:
     * consume it. */
    v = SEM_READY;
    atomic_compare_exchange_strong(s, &v, SEM_NIL);
}

/* pd */

static np__pd *pds[2];
static int sp[2][2] = { { -1, -1 }, { -1, -1 } }; /* pds[i] is on sp[i][0] */

static void pd_post(int side)
{
    np__pd_ready(pds[side], NP__POLL_READ, false);
}

static void pd_wait(int side)
{
    int rc = np__pd_wait(pds[side], NP__PD_READ);
    if (rc != 0)
        die("np__pd_wait", rc);
}

static const variant variants[] = {
    { "futex", futex_post, futex_wait },
    { "eventfd", eventfd_post, eventfd_wait },
    { "waiter", waiter_post, waiter_wait },
    { "pd", pd_post, pd_wait },
};
enum { V_FUTEX, V_EVENTFD, V_WAITER, V_PD, NVARIANTS };

/* ---- ping-pong ----------------------------------------------------------------- */

typedef struct player {
    const variant *v;
    int side;             /* 0 serves first */
    long rounds;
    int cpu;              /* -1: unpinned */
    unsigned long parks;  /* waits that went to sleep (see pingpong) */
    int64_t elapsed;      /* side 0: ns for all rounds */
} player;

static void *player_main(void *arg)
{
    player *p = arg;
    int prc = pin_self(p->cpu);
    if (prc != 0)
        die("pthread_setaffinity_np", prc);
    unsigned long parks0, parks1, readies;
    np__thread_waiter_counts(&parks0, &readies);
    const variant *v = p->v;
    int64_t t0 = mono_ns();
    if (p->side == 0) {
        for (long i = 0; i < p->rounds; i++) {
            v->post(1);
            v->wait(0);
        }
    } else {
        for (long i = 0; i < p->rounds; i++) {
            v->wait(1);
            v->post(0);
        }
    }
    p->elapsed = mono_ns() - t0;
    np__thread_waiter_counts(&parks1, &readies);
    p->parks = parks1 - parks0 + futex_sleeps;
    return NULL;
}

/* ns per one-way hand-off; *slept: fraction of waits that went to sleep
 * (committed thread-waiter parks, or waits that called FUTEX_WAIT). */
static double pingpong(const variant *v, long rounds, int cpu0, int cpu1, double *slept)
{
    player p[2] = {
        { .v = v, .side = 0, .rounds = rounds, .cpu = cpu0 },
        { .v = v, .side = 1, .rounds = rounds, .cpu = cpu1 },
    };
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        int rc = pthread_create(&th[i], NULL, player_main, &p[i]);
        if (rc != 0)
            die("pthread_create", rc);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    *slept = (double)(p[0].parks + p[1].parks) / (double)(2 * rounds);
    return (double)p[0].elapsed / (double)(2 * rounds);
}

static void setup(void)
{
    efd[0] = eventfd(0, EFD_CLOEXEC);
    efd[1] = eventfd(0, EFD_CLOEXEC);
    if (efd[0] < 0 || efd[1] < 0)
        die("eventfd", errno);

    /* pds: a poller (no poll thread: nothing delivers kernel events; the
     * bench calls np__pd_ready itself), and a socketpair end per pd. */
    int rc = np__netpoll_init();
    if (rc < 0)
        die("np__netpoll_init", rc);
    for (int i = 0; i < 2; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp[i]) != 0)
            die("socketpair", errno);
        rc = np__pd_open(sp[i][0], &pds[i]);
        if (rc < 0)
            die("np__pd_open", rc);
        rc = np__pd_reset(pds[i], NP__PD_READ);
        if (rc < 0)
            die("np__pd_reset", rc);
    }
}

static void teardown(void)
{
    for (int i = 0; i < 2; i++) {
        np__pd_unblock(pds[i]);
        np__pd_close(pds[i]);
        close(sp[i][0]);
        close(sp[i][1]);
    }
    np__netpoll_fini();
    close(efd[0]);
    close(efd[1]);
}

static void run_set(const char *title, long rounds, int reps, int cpu0, int cpu1)
{
    double ns[NVARIANTS][16], slept[NVARIANTS][16];
    double dummy;
    /* warm-up: a short untimed run of each */
    for (int k = 0; k < NVARIANTS; k++)
        pingpong(&variants[k], rounds / 10 + 1, cpu0, cpu1, &dummy);
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < NVARIANTS; k++)
            ns[k][r] = pingpong(&variants[k], rounds, cpu0, cpu1, &slept[k][r]);

    double med[NVARIANTS], sl[NVARIANTS];
    for (int k = 0; k < NVARIANTS; k++) {
        med[k] = median(ns[k], reps);
        sl[k] = median(slept[k], reps);
    }
    printf("\n## %s\n\n", title);
    printf("| hand-off | ns one-way | / futex | / eventfd | waits that went to sleep* |\n");
    printf("|---|---:|---:|---:|---:|\n");
    for (int k = 0; k < NVARIANTS; k++) {
        char parked[32];
        if (k != V_EVENTFD)
            snprintf(parked, sizeof parked, "%.1f%%", 100 * sl[k]);
        else
            snprintf(parked, sizeof parked, "n/a");
        printf("| %s%s | %.0f | %.2f | %.2f | %s |\n", variants[k].name,
               k < V_WAITER ? " (baseline)" : "", med[k], med[k] / med[V_FUTEX],
               med[k] / med[V_EVENTFD], parked);
    }
    printf("* futex: waits that found no post and called FUTEX_WAIT; waiter / pd: parks whose\n"
           "  commit succeeded (then FUTEX_WAIT on the thread waiter's token). A wait that goes\n"
           "  to sleep costs its poster a real wake-up; one that finds the post skips both.\n");
}

int main(int argc, char **argv)
{
    long rounds = 15000;
    if (argc > 1) {
        char *end;
        errno = 0;
        rounds = strtol(argv[1], &end, 10);
        if (errno || *end || rounds < 1 || argc > 2) {
            fprintf(stderr, "usage: %s [round_trips]   (default 15000)\n", argv[0]);
            return 2;
        }
    }
    enum { REPS = 5 };
    setup();
    int cpus = allowed_cpus();
    printf("# bench_park: two-thread hand-off, %ld round trips x %d reps per variant, %d CPU(s)\n",
           rounds, REPS, cpus);
    printf("Baselines measured in this run: raw futex ping-pong and raw eventfd ping-pong.\n");
    printf("One-way = round trip / 2; medians of %d interleaved reps.\n", REPS);
    int64_t start = mono_ns();
    if (cpus >= 2) {
        char title[96];
        int c0 = nth_cpu(0), c1 = nth_cpu(1);
        snprintf(title, sizeof title, "pinned: threads on CPU %d and CPU %d", c0, c1);
        run_set(title, rounds, REPS, c0, c1);
    } else {
        printf("\n(only one CPU available: no pinned run)\n");
    }
    run_set("unpinned (scheduler's choice)", rounds, REPS, -1, -1);
    teardown();
    printf("\ntotal run time %.1f s\n", (double)(mono_ns() - start) / NP_SECOND);
    return 0;
}
