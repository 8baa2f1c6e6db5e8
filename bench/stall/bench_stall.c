/* bench_stall: how long one task that keeps its thread holds up the others.
 *
 *   bench_stall SCENARIO [STALL_MS]
 *
 * A ticker task sleeps 10 ms in a loop and records its worst gap while the
 * scenario's tasks keep their threads:
 *   sleep     workers 1, one task in sleep(1)
 *   spin      workers 1, one task computing for 1 s without a scheduling point
 *   usleep2   workers 2, two tasks each in usleep(500 ms)
 * STALL_MS sets np_config.stall_ns (default: the library's; "off": the
 * monitor off, the control). Prints one line of key=value pairs:
 *   scenario=sleep stall=default worst_gap_ms=12.3 ticks=104 stalls=1 handoffs=1
 * The ideal worst gap is the tick itself (10 ms); the target is 30 ms.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"

static _Atomic int64_t worst_gap;
static _Atomic int ticks, busy_left;
static _Atomic int stop;
static np_waitgroup wg = NP_WAITGROUP_INIT;
static np_stats end_stats;
static const char *scenario;

static void ticker(void *arg)
{
    (void)arg;
    int64_t last = np_now();
    while (!atomic_load(&stop)) {
        np_sleep(10 * NP_MILLISECOND);
        int64_t now = np_now();
        if (atomic_load(&ticks) > 0 && now - last > atomic_load(&worst_gap))
            atomic_store(&worst_gap, now - last);
        last = now;
        atomic_fetch_add(&ticks, 1);
    }
    np_waitgroup_done(&wg);
}

static void hog(void *arg)
{
    long us = (long)(intptr_t)arg;
    if (strcmp(scenario, "spin") == 0) {
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        volatile unsigned long x = 0;
        do {
            x++;
            clock_gettime(CLOCK_MONOTONIC, &t);
        } while ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 < us);
    } else {
        usleep((useconds_t)us);
    }
    atomic_fetch_sub(&busy_left, 1);
    np_waitgroup_done(&wg);
}

static void main_task(void *arg)
{
    (void)arg;
    int n = strcmp(scenario, "usleep2") == 0 ? 2 : 1;
    long us = n == 2 ? 500000 : 1000000;
    np_waitgroup_add(&wg, 1 + n);
    atomic_store(&busy_left, n);
    np_go(ticker, NULL);
    while (atomic_load(&ticks) < 3)
        np_sleep(NP_MILLISECOND);
    for (int i = 0; i < n; i++)
        np_go(hog, (void *)(intptr_t)us);
    while (atomic_load(&busy_left) > 0)
        np_sleep(10 * NP_MILLISECOND);
    np_sleep(50 * NP_MILLISECOND); /* a few ticks after, too */
    atomic_store(&stop, 1);
    np_waitgroup_wait(&wg, 0);
    np_stats_get(&end_stats);
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "sleep") && strcmp(argv[1], "spin") && strcmp(argv[1], "usleep2"))) {
        fprintf(stderr, "usage: bench_stall sleep|spin|usleep2 [STALL_MS|off]\n");
        return 2;
    }
    scenario = argv[1];
    np_config cfg = { .workers = strcmp(scenario, "usleep2") == 0 ? 2 : 1 };
    const char *stall = argc > 2 ? argv[2] : "default";
    if (argc > 2)
        cfg.stall_ns = strcmp(stall, "off") == 0 ? -1 : atol(stall) * NP_MILLISECOND;
    int rc = np_run(&cfg, main_task, NULL);
    if (rc != 0) {
        fprintf(stderr, "bench_stall: np_run: %s\n", np_strerror(rc));
        return 1;
    }
    printf("scenario=%s stall=%s worst_gap_ms=%.1f ticks=%d stalls=%lld handoffs=%lld\n", scenario, stall,
           atomic_load(&worst_gap) / 1e6, atomic_load(&ticks), (long long)end_stats.stalls,
           (long long)end_stats.handoffs);
    return 0;
}
