/* libuv's uv_queue_work round trip, the baseline of bench/offload: on the
 * default loop, an empty work callback queued n times in a row, each next
 * one queued from the previous one's after-work callback. One round trip =
 * uv_queue_work, a threadpool thread running the work callback, the loop
 * thread woken (libuv's async handle: an eventfd write and epoll_wait) and
 * running the after-work callback. bench_offload.c measures the same loop
 * on np_offload, and run.sh runs the two in turns.
 *
 * The threadpool is libuv's default (UV_THREADPOOL_SIZE unset: 4 threads;
 * with one job at a time one of them does the work). The run warms up with
 * n / 10 round trips, then measures n.
 *
 * Output: one line as bench_offload's, impl=libuv (workers=1: the loop
 * thread). Usage: uv_offload [-n round_trips]
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static long remaining, count, done;
static uv_work_t req;

static void work_cb(uv_work_t *r)
{
    (void)r;
    count++; /* read on the loop thread after the after-work callback: ordered by libuv */
}

static void after_cb(uv_work_t *r, int status);

static void queue_next(void)
{
    int rc = uv_queue_work(uv_default_loop(), &req, work_cb, after_cb);
    if (rc < 0) {
        fprintf(stderr, "uv_offload: uv_queue_work: %s\n", uv_strerror(rc));
        exit(2);
    }
}

static void after_cb(uv_work_t *r, int status)
{
    (void)r;
    if (status < 0) {
        fprintf(stderr, "uv_offload: after_work: %s\n", uv_strerror(status));
        exit(2);
    }
    done++;
    if (--remaining > 0)
        queue_next();
}

static void run(long n)
{
    remaining = n;
    queue_next();
    uv_run(uv_default_loop(), UV_RUN_DEFAULT); /* returns once nothing is queued */
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
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

int main(int argc, char **argv)
{
    long iters = 200000;
    int opt;
    while ((opt = getopt(argc, argv, "n:w:")) != -1) {
        switch (opt) {
        case 'n': iters = atol(optarg); break;
        case 'w': break; /* accepted for symmetry with bench_offload; one loop thread */
        default: goto usage;
        }
    }
    if (optind != argc || iters < 1) {
    usage:
        fprintf(stderr, "usage: uv_offload [-n round_trips]\n");
        return 2;
    }
    run(iters / 10 > 0 ? iters / 10 : 1);
    long iv0, vv0, iv1, vv1;
    csw(&iv0, &vv0);
    int64_t b0 = machine_busy_ns(), c0 = process_cpu_ns(), w0 = now_ns();
    run(iters);
    int64_t w1 = now_ns(), c1 = process_cpu_ns(), b1 = machine_busy_ns();
    csw(&iv1, &vv1);
    long want = iters + (iters / 10 > 0 ? iters / 10 : 1);
    int bad = count != want || done != want;
    printf("offload impl=libuv workers=1 n=%ld ns=%.1f wall_ns=%lld cpu_ns=%lld nivcsw=%ld nvcsw=%ld busy_ns=%lld check=%s\n",
           iters, (double)(w1 - w0) / (double)iters, (long long)(w1 - w0), (long long)(c1 - c0), iv1 - iv0,
           vv1 - vv0, (long long)(b0 >= 0 && b1 >= 0 ? b1 - b0 : -1), bad ? "FAILED" : "ok");
    return bad;
}
