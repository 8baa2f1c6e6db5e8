/* A million tasks: spawn N tasks that each park in np_sleep_until(deadline),
 * measure the memory they hold while parked, let the deadline pass (every
 * sleep ends at once), and time how long they take to finish.
 * bench/million/go_million.go is the same program with goroutines and
 * time.Sleep; bench/million/run.sh runs the two in turns.
 *
 * Method (both programs alike):
 *   t0        the main task starts; VmRSS / VmPTE read (the baseline)
 *   spawn     N tasks started, each: parked++; np_sleep_until(deadline);
 *             finished++. Spawn ends when parked reaches N (every task has
 *             run and is about to park); its VmRSS / VmPTE / mapping count
 *             are read then ("parked").
 *   settle    while all are parked, VmRSS is read every 100 ms until it
 *             has moved less than 0.5% over 500 ms (or the deadline is 1 s
 *             away): idle stacks (-i) are moved out meanwhile; the last
 *             reading is "settled", settle_ns the time it took (including
 *             the 500 ms that show it steady).
 *   deadline  t0 + D (-d seconds): every sleep ends.
 *   wake      from the deadline to the last task's end.
 * Per task: (reading - baseline) / N, in bytes. total_ns = spawn + wake:
 * the time spent working, not the deliberate wait between (wall_ns has it).
 * cpu_*: the process's CPU time (all threads) over the run and its phases;
 * cpu_idle_ns, between spawn and the deadline, holds the idle-stack sweeps
 * (netpoll) and garbage collection (Go).
 *
 * Output: one line
 *   million impl=netpoll config=NAME n=N workers=W stack=BYTES idle_ns=NS
 *     rss_base_kb= rss_parked_kb= rss_settled_kb= pte_base_kb= pte_parked_kb=
 *     pte_settled_kb= maps_parked= spawn_ns= settle_ns= wake_ns= total_ns= wall_ns=
 *     cpu_ns= cpu_spawn_ns= cpu_idle_ns= cpu_wake_ns= stalls= handoffs= check=ok|late|FAILED
 * check=late: the deadline came before every task had parked (raise -d).
 *
 * Usage: bench_million [-n tasks] [-w workers] [-s stack_bytes]
 *                      [-i idle_stack_ns] [-d seconds] [-c config_name]
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "netpoll.h"

static long n = 1000000;
static int workers = 2;
static size_t stack_size;          /* 0: the default (256 KiB) */
static int64_t idle_ns;            /* 0: off */
static double deadline_s = 15;
static const char *config_name = "default";

static _Atomic long parked, finished;
static int64_t deadline;
static _Atomic int64_t t_done;
static int bad;

static struct {
    long rss_base, rss_parked, rss_settled, pte_base, pte_parked, pte_settled, maps;
    int64_t t0, t_parked, t_settled, wall, cpu0, cpu_parked, cpu_deadline, cpu_end;
    int64_t stalls, handoffs;
} r;

static int64_t cpu_ns(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return ((int64_t)u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000000000 +
           ((int64_t)u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1000;
}

/* VmRSS and VmPTE, in kB. */
static void status_kb(long *rss, long *pte)
{
    *rss = *pte = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6))
            *rss = atol(line + 6);
        else if (!strncmp(line, "VmPTE:", 6))
            *pte = atol(line + 6);
    }
    fclose(f);
}

static long count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    long lines = 0;
    int c;
    while ((c = getc_unlocked(f)) != EOF)
        lines += c == '\n';
    fclose(f);
    return lines;
}

static void sleeper(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&parked, 1, memory_order_relaxed);
    if (np_sleep_until(deadline) != 0)
        bad = 1;
    if (np_now() < deadline)
        bad = 1; /* never early */
    if (atomic_fetch_add_explicit(&finished, 1, memory_order_acq_rel) + 1 == n)
        atomic_store(&t_done, np_now());
}

static void main_task(void *arg)
{
    (void)arg;
    status_kb(&r.rss_base, &r.pte_base);
    r.cpu0 = cpu_ns();
    r.t0 = np_now();
    deadline = r.t0 + (int64_t)(deadline_s * 1e9);
    for (long i = 0; i < n; i++) {
        int rc = np_go(sleeper, NULL);
        if (rc != 0) {
            fprintf(stderr, "bench_million: np_go: %s\n", np_strerror(rc));
            exit(1);
        }
    }
    while (atomic_load_explicit(&parked, memory_order_relaxed) < n)
        np_sleep(NP_MILLISECOND);
    r.t_parked = np_now();
    r.cpu_parked = cpu_ns();
    status_kb(&r.rss_parked, &r.pte_parked);
    r.maps = count_maps();
    /* Settle: idle stacks move out over a few sweep passes. */
    long prev[6], pte = 0;
    int k = 0;
    r.rss_settled = r.rss_parked;
    r.pte_settled = r.pte_parked;
    while (np_now() < deadline - NP_SECOND) {
        np_sleep(100 * NP_MILLISECOND);
        status_kb(&r.rss_settled, &pte);
        r.pte_settled = pte;
        prev[k % 6] = r.rss_settled;
        k++;
        if (k >= 6) {
            long old = prev[k % 6]; /* 500 ms ago */
            long d = old > r.rss_settled ? old - r.rss_settled : r.rss_settled - old;
            if (d * 200 < r.rss_settled)
                break;
        }
    }
    r.t_settled = np_now();
    /* Just before the deadline (the tasks' timers and this one's would fire
     * together, this one anywhere among them). */
    np_sleep_until(deadline - 20 * NP_MILLISECOND);
    r.cpu_deadline = cpu_ns();
    while (atomic_load(&finished) < n)
        np_sleep(NP_MILLISECOND);
    r.cpu_end = cpu_ns();
    r.wall = atomic_load(&t_done) - r.t0;
    np_stats st;
    if (np_stats_get(&st) == 0) {
        r.stalls = st.stalls;
        r.handoffs = st.handoffs;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_million [-n tasks] [-w workers] [-s stack_bytes] "
                    "[-i idle_stack_ns] [-d seconds] [-c config_name]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (!strcmp(argv[i], "-n"))
            n = atol(argv[++i]);
        else if (!strcmp(argv[i], "-w"))
            workers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-s"))
            stack_size = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "-i"))
            idle_ns = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-d"))
            deadline_s = atof(argv[++i]);
        else if (!strcmp(argv[i], "-c"))
            config_name = argv[++i];
        else
            usage();
    }
    if (n < 1 || workers < 1 || deadline_s <= 0)
        usage();
    np_config cfg = { .workers = workers, .stack_size = stack_size, .idle_stack_ns = idle_ns };
    int rc = np_run(&cfg, main_task, NULL);
    if (rc != 0) {
        fprintf(stderr, "bench_million: np_run: %s\n", np_strerror(rc));
        return 1;
    }
    int64_t spawn = r.t_parked - r.t0, wake = atomic_load(&t_done) - deadline;
    const char *check = bad ? "FAILED" : r.t_parked > deadline ? "late" : "ok";
    printf("million impl=netpoll config=%s n=%ld workers=%d stack=%zu idle_ns=%lld"
           " rss_base_kb=%ld rss_parked_kb=%ld rss_settled_kb=%ld"
           " pte_base_kb=%ld pte_parked_kb=%ld pte_settled_kb=%ld maps_parked=%ld"
           " spawn_ns=%lld settle_ns=%lld wake_ns=%lld total_ns=%lld wall_ns=%lld"
           " cpu_ns=%lld cpu_spawn_ns=%lld cpu_idle_ns=%lld cpu_wake_ns=%lld stalls=%lld handoffs=%lld check=%s\n",
           config_name, n, workers, stack_size ? stack_size : (size_t)256 * 1024,
           (long long)idle_ns, r.rss_base, r.rss_parked, r.rss_settled, r.pte_base,
           r.pte_parked, r.pte_settled, r.maps, (long long)spawn,
           (long long)(r.t_settled - r.t_parked), (long long)wake,
           (long long)(spawn + wake), (long long)r.wall, (long long)(r.cpu_end - r.cpu0),
           (long long)(r.cpu_parked - r.cpu0), (long long)(r.cpu_deadline - r.cpu_parked),
           (long long)(r.cpu_end - r.cpu_deadline), (long long)r.stalls, (long long)r.handoffs, check);
    return bad ? 1 : 0;
}
