/* Task and scheduler costs:
 *   raw switch       np__ctx_switch between two contexts, nothing else
 *   yield switch     two tasks on one worker yielding to each other: one
 *                    np_yield = one switch through the scheduler
 *   yield alone      np_yield with nothing else runnable (the fast path)
 *   spawn-to-finish  np_go of an empty task until it has run and finished
 *   wake, same worker    task A readies task B (parked on a pd), B readies A
 *   wake, cross-worker   A readies B and keeps running: B is picked up by
 *                        the other (idle) worker; ready to B running
 * Prints ns per operation; bench/sched.sh puts Go's figures beside them.
 * Usage: bench_sched [iterations] */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/context.h"
#include "netpoll.h"
#include "pd/pd.h"
#include "poller/poller.h"
#include "runtime/scheduler.h"

static long iters = 2000000;

static double ns_per(int64_t t0, long n)
{
    return (double)(np_now() - t0) / (double)n;
}

/* ---- raw switch ----------------------------------------------------------- */
static np__ctx main_ctx, co_ctx;
static void co(void *arg)
{
    (void)arg;
    for (;;)
        np__ctx_switch(&co_ctx, &main_ctx);
}

static double bench_raw_switch(void)
{
    static char stack[64 * 1024] __attribute__((aligned(16)));
    np__ctx_make(&co_ctx, stack, sizeof stack, co, NULL);
    np__ctx_switch(&main_ctx, &co_ctx);
    int64_t t0 = np_now();
    for (long i = 0; i < iters; i++)
        np__ctx_switch(&main_ctx, &co_ctx);
    return ns_per(t0, 2 * iters); /* two switches per round */
}

/* ---- yields ----------------------------------------------------------------- */
static void yielder(void *arg)
{
    long n = (long)arg;
    for (long i = 0; i < n; i++)
        np_yield();
}

static double r_yield_switch, r_yield_alone, r_spawn, r_wake_same, r_wake_cross;

static void yield_main(void *arg)
{
    (void)arg;
    int64_t t0 = np_now();
    for (long i = 0; i < iters; i++)
        np_yield();
    r_yield_alone = ns_per(t0, iters);

    np_go(yielder, (void *)iters);
    np_yield(); /* let it start */
    t0 = np_now();
    for (long i = 0; i < iters; i++)
        np_yield();
    r_yield_switch = ns_per(t0, 2 * iters);
}

/* ---- spawn-to-finish ------------------------------------------------------------ */
static void nothing(void *arg)
{
    (void)arg;
}

static void spawn_main(void *arg)
{
    (void)arg;
    long n = iters;
    /* Warm the pools. */
    for (int i = 0; i < 64; i++)
        np_go(nothing, NULL);
    np_yield();
    int64_t t0 = np_now();
    for (long i = 0; i < n; i++) {
        np_go(nothing, NULL);
        if ((i & 31) == 31)
            np_yield(); /* let them run: measures spawn + run + finish */
    }
    np_yield();
    r_spawn = ns_per(t0, n);
}

/* ---- wakes ---------------------------------------------------------------------
 * same worker: A readies B (parked on a pd) and parks; B readies A and parks.
 * cross-worker: A readies B and keeps running (spins until B has run), so
 * another worker must pick B up: the time from ready to B running. */
typedef struct pp {
    np__pd *pd[2];
    long rounds;
    _Atomic long ack;
    double result;
} pp;

static void pp_side(pp *p, int me)
{
    for (long i = 0; i < p->rounds; i++) {
        if (me == 1 || i > 0)
            np__pd_wait(p->pd[me], NP__PD_READ);
        np__pd_ready(p->pd[!me], NP__POLL_READ, false);
    }
}

static void pp1(void *arg)
{
    pp_side(arg, 1);
}

static void pp_main(void *arg)
{
    pp *p = arg;
    np__pd_open(-1, &p->pd[0]);
    np__pd_open(-1, &p->pd[1]);
    np_go(pp1, p);
    int64_t t0 = np_now();
    pp_side(p, 0);
    np__pd_wait(p->pd[0], NP__PD_READ);
    p->result = ns_per(t0, 2 * p->rounds); /* one-way hand-offs */
    for (int i = 0; i < 2; i++) {
        np__pd_unblock(p->pd[i]);
        np__pd_close(p->pd[i]);
    }
}

static void cross_b(void *arg)
{
    pp *p = arg;
    for (long i = 1; i <= p->rounds; i++) {
        if (np__pd_wait(p->pd[1], NP__PD_READ) != 0)
            return;
        atomic_store(&p->ack, i);
    }
}

static void cross_main(void *arg)
{
    pp *p = arg;
    np__pd_open(-1, &p->pd[1]);
    np_go(cross_b, p);
    np_sleep(NP_MILLISECOND); /* B parks */
    int64_t total = 0;
    for (long i = 1; i <= p->rounds; i++) {
        int64_t t0 = np_now();
        np__pd_ready(p->pd[1], NP__POLL_READ, false);
        while (atomic_load(&p->ack) != i) {
        }
        total += np_now() - t0;
        /* Let B park again before the next round (after the last one it
         * finishes instead). */
        while (i < p->rounds && np__pd_waiters() == 0) {
        }
    }
    p->result = (double)total / (double)p->rounds;
    np__pd_unblock(p->pd[1]);
    np__pd_close(p->pd[1]);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        iters = atol(argv[1]);
    double raw = bench_raw_switch();
    np_config one = { .workers = 1 }, two = { .workers = 2 };
    np_run(&one, yield_main, NULL);
    np_run(&one, spawn_main, NULL);
    pp same = { .rounds = iters / 2 };
    np_run(&one, pp_main, &same);
    pp cross = { .rounds = iters / 200 };
    np_run(&two, cross_main, &cross);
    r_wake_same = same.result;
    r_wake_cross = cross.result;

    printf("netpoll raw_switch_ns %.1f\n", raw);
    printf("netpoll yield_switch_ns %.1f\n", r_yield_switch);
    printf("netpoll yield_alone_ns %.1f\n", r_yield_alone);
    printf("netpoll spawn_to_finish_ns %.1f\n", r_spawn);
    printf("netpoll wake_same_worker_ns %.1f\n", r_wake_same);
    printf("netpoll wake_cross_worker_ns %.1f\n", r_wake_cross);
    return 0;
}
