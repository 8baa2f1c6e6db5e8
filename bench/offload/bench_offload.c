/* np_offload round trip: one task calls np_offload(empty, &count) n times in
 * a row and the figure is ns per call: the job queued on the pool, a pool
 * thread picking it up and running it, the task readied and switched back
 * to. bench/offload/uv_offload.c is the same loop on libuv's uv_queue_work,
 * and bench/offload/run.sh runs the two in turns.
 *
 * The run warms up with n / 10 calls first (the pool thread is started by
 * the first one and stays, being idle for less than its 5 s retirement),
 * then measures n calls inside np_run with -w workers (default 1).
 *
 * Output (one line):
 *   offload impl=netpoll workers=W n=N ns=X wall_ns=W cpu_ns=C nivcsw=K
 *           nvcsw=V busy_ns=B check=ok
 * cpu_ns: the process's CPU time (all threads) over the measured calls;
 * nivcsw / nvcsw: its involuntary / voluntary context switches meanwhile
 * (all threads, from getrusage): many involuntary ones mean other processes
 * took the CPUs (run.sh runs it again); the voluntary ones are the sleeps
 * and wakes the round trips themselves cost. busy_ns: the whole machine's
 * busy time meanwhile (/proc/stat), all processes. check=ok: fn ran exactly as
 * often as np_offload returned.
 *
 * Usage: bench_offload [-w workers] [-n calls]
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"

static int workers = 1;
static long iters = 200000;
static double result_ns;
static int64_t result_wall_ns, result_cpu_ns;
static long result_nivcsw, result_nvcsw;
static int64_t result_busy_ns;
static int result_bad;

/* The job: as close to nothing as a call can be. The counter is touched by
 * the pool thread and read by the task after np_offload returns (which
 * orders the two), so it doubles as the check that every call ran fn. */
static void empty(void *arg)
{
    (*(long *)arg)++;
}

static int64_t process_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Busy time of the whole machine (user, nice, system, irq, softirq, steal
 * from /proc/stat), ns at clock-tick resolution; -1 if unreadable. Over the
 * timed part, minus this process's CPU time, it is what other processes
 * took: run.sh's measure of a disturbed run. */
static int64_t machine_busy_ns(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8)
        return -1;
    return (int64_t)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * (1000000000LL / sysconf(_SC_CLK_TCK));
}

static void csw(long *inv, long *vol)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *inv = ru.ru_nivcsw;
    *vol = ru.ru_nvcsw;
}

static long calls(long n, long *count)
{
    for (long i = 0; i < n; i++) {
        int rc = np_offload(empty, count);
        if (rc < 0) {
            fprintf(stderr, "bench_offload: np_offload: %s\n", np_strerror(rc));
            _exit(2);
        }
    }
    return n;
}

static void main_task(void *arg)
{
    (void)arg;
    long count = 0;
    long want = calls(iters / 10 > 0 ? iters / 10 : 1, &count);
    long iv0, vv0, iv1, vv1;
    csw(&iv0, &vv0);
    int64_t b0 = machine_busy_ns(), c0 = process_cpu_ns(), w0 = np_now();
    want += calls(iters, &count);
    int64_t w1 = np_now(), c1 = process_cpu_ns(), b1 = machine_busy_ns();
    result_busy_ns = b0 >= 0 && b1 >= 0 ? b1 - b0 : -1;
    csw(&iv1, &vv1);
    result_wall_ns = w1 - w0;
    result_cpu_ns = c1 - c0;
    result_nivcsw = iv1 - iv0;
    result_nvcsw = vv1 - vv0;
    result_ns = (double)result_wall_ns / (double)iters;
    result_bad = count != want;
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "w:n:")) != -1) {
        switch (opt) {
        case 'w': workers = atoi(optarg); break;
        case 'n': iters = atol(optarg); break;
        default: goto usage;
        }
    }
    if (optind != argc || workers < 1 || iters < 1) {
    usage:
        fprintf(stderr, "usage: bench_offload [-w workers] [-n calls]\n");
        return 2;
    }
    np_config cfg = {.workers = workers};
    int rc = np_run(&cfg, main_task, NULL);
    if (rc < 0) {
        fprintf(stderr, "bench_offload: np_run: %s\n", np_strerror(rc));
        return 1;
    }
    printf("offload impl=netpoll workers=%d n=%ld ns=%.1f wall_ns=%lld cpu_ns=%lld nivcsw=%ld nvcsw=%ld busy_ns=%lld check=%s\n",
           workers, iters, result_ns, (long long)result_wall_ns, (long long)result_cpu_ns, result_nivcsw,
           result_nvcsw, (long long)result_busy_ns, result_bad ? "FAILED" : "ok");
    return result_bad;
}
