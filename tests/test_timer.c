/* Timers (src/pd/timer.h). Most cases drive time by hand: np__timers_run(now, NULL)
 * takes the clock as an argument, so "now" here is any number we like. */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "netpoll.h"
#include "np_test.h"
#include "pd/timer.h"

#define BASE ((int64_t)1000 * NP_SECOND) /* virtual time, far from 0 */

typedef struct rec {
    np__timer t;
    int fired;          /* times the callback ran */
    int64_t fired_at;   /* the `now` of the run that fired it */
    uintptr_t seq_seen;
} rec;

static int64_t run_now; /* the `now` passed to np__timers_run */
static int order_n;
static rec *order[4096];

static void on_fire(void *arg, uintptr_t seq)
{
    rec *r = arg;
    r->fired++;
    r->fired_at = run_now;
    r->seq_seen = seq;
    if (order_n < 4096)
        order[order_n++] = r;
}

static int64_t run(int64_t now)
{
    run_now = now;
    return np__timers_run(now, NULL);
}

static void t_fires_once_in_time_order(void)
{
    enum { N = 2000 };
    static rec r[N];
    srand(1);
    for (int i = 0; i < N; i++) {
        NP_CHECK_OK(np__timer_init(&r[i].t, (uint32_t)i));
        np__timer_set(&r[i].t, BASE + 1 + rand() % 100000, on_fire, &r[i], (uintptr_t)i);
    }
    /* Advance in steps; each run fires exactly what is due. */
    for (int64_t now = BASE; now <= BASE + 100000; now += 997) {
        order_n = 0;
        int64_t next = run(now);
        for (int i = 0; i < N; i++) {
            int64_t when = r[i].t.when ? r[i].t.when : r[i].fired_at;
            if (r[i].fired) {
                NP_CHECK_EQ(r[i].fired, 1);
                NP_CHECK_LE(r[i].seq_seen, N);
                NP_CHECK_EQ(r[i].seq_seen, (uintptr_t)i);
            } else {
                NP_CHECK_GT(when, now); /* not due: must not have fired */
                NP_CHECK_LE(next, when); /* next is a lower bound */
            }
        }
    }
    run(BASE + 100001);
    for (int i = 0; i < N; i++)
        NP_CHECK_EQ(r[i].fired, 1);
    NP_CHECK_EQ(np__timers_next(), INT64_MAX);
    for (int i = 0; i < N; i++)
        np__timer_destroy(&r[i].t);
}

static void t_reset_later_earlier_and_stop(void)
{
    static rec a, b, c;
    NP_CHECK_OK(np__timer_init(&a.t, 0));
    NP_CHECK_OK(np__timer_init(&b.t, 0));
    NP_CHECK_OK(np__timer_init(&c.t, 0));
    np__timer_set(&a.t, BASE + 100, on_fire, &a, 1);
    np__timer_set(&a.t, BASE + 500, on_fire, &a, 2); /* later: lazy */
    np__timer_set(&b.t, BASE + 500, on_fire, &b, 1);
    np__timer_set(&b.t, BASE + 50, on_fire, &b, 2);  /* earlier */
    np__timer_set(&c.t, BASE + 10, on_fire, &c, 1);
    NP_CHECK(np__timer_stop(&c.t));
    NP_CHECK(!np__timer_stop(&c.t));

    run(BASE + 49);
    NP_CHECK_EQ(a.fired + b.fired + c.fired, 0);
    run(BASE + 50);
    NP_CHECK_EQ(b.fired, 1);
    NP_CHECK_EQ(b.seq_seen, 2);
    NP_CHECK_EQ(b.fired_at, BASE + 50);
    run(BASE + 100); /* a's old key surfaces; it must be re-filed, not fired */
    NP_CHECK_EQ(a.fired, 0);
    NP_CHECK_LE(np__timers_next(), BASE + 500);
    run(BASE + 499);
    NP_CHECK_EQ(a.fired, 0);
    run(BASE + 500);
    NP_CHECK_EQ(a.fired, 1);
    NP_CHECK_EQ(a.seq_seen, 2);
    run(BASE + 100000);
    NP_CHECK_EQ(c.fired, 0);
    NP_CHECK(!np__timer_stop(&a.t)); /* fired: not pending */
    /* A fired timer can be set again. */
    np__timer_set(&a.t, BASE + 200000, on_fire, &a, 3);
    run(BASE + 200000);
    NP_CHECK_EQ(a.fired, 2);
    NP_CHECK_EQ(a.seq_seen, 3);
    np__timer_destroy(&a.t);
    np__timer_destroy(&b.t);
    np__timer_destroy(&c.t);
}

/* A model-based check: random set / reset / stop against a shadow, time
 * advancing by random steps. Nothing fires early, late (after the run that
 * reaches it), twice, or after a stop. */
static void t_random_against_model(void)
{
    enum { N = 3000, STEPS = 3000 };
    static rec r[N];
    static int64_t when[N]; /* shadow: 0 = not pending */
    static int expect_fired[N];
    srand(7);
    for (int i = 0; i < N; i++)
        NP_CHECK_OK(np__timer_init(&r[i].t, (uint32_t)rand()));
    int64_t now = BASE;
    for (int step = 0; step < STEPS; step++) {
        for (int k = 0; k < 20; k++) {
            int i = rand() % N;
            int op = rand() % 4;
            if (op < 3) {
                int64_t w = now + 1 + rand() % 5000;
                np__timer_set(&r[i].t, w, on_fire, &r[i], (uintptr_t)step);
                when[i] = w;
            } else {
                bool was = np__timer_stop(&r[i].t);
                NP_CHECK_EQ(was, when[i] != 0);
                when[i] = 0;
            }
        }
        now += rand() % 300;
        int64_t next = run(now);
        int64_t min_pending = INT64_MAX;
        for (int i = 0; i < N; i++) {
            if (when[i] && when[i] <= now) {
                expect_fired[i]++;
                NP_CHECK_EQ(r[i].fired_at, now);
                when[i] = 0;
            }
            NP_CHECK_EQ(r[i].fired, expect_fired[i]);
            if (when[i] && when[i] < min_pending)
                min_pending = when[i];
        }
        NP_CHECK_LE(next, min_pending);
        NP_CHECK_GT(next, now);
    }
    for (int i = 0; i < N; i++) {
        np__timer_stop(&r[i].t);
        np__timer_destroy(&r[i].t);
    }
}

static int64_t kicked;
static int kicks;
static void on_kick(int64_t w)
{
    kicked = w;
    kicks++;
}

static void t_kick_when_earliest_moves_earlier(void)
{
    static rec a, b, c;
    np__timers_set_kick(on_kick);
    /* Same hint: same shard. */
    NP_CHECK_OK(np__timer_init(&a.t, 5));
    NP_CHECK_OK(np__timer_init(&b.t, 5));
    NP_CHECK_OK(np__timer_init(&c.t, 5));
    np__timer_set(&a.t, BASE + 100, on_fire, &a, 0);
    NP_CHECK_EQ(kicks, 1);
    NP_CHECK_EQ(kicked, BASE + 100);
    np__timer_set(&b.t, BASE + 200, on_fire, &b, 0); /* not the earliest */
    NP_CHECK_EQ(kicks, 1);
    np__timer_set(&a.t, BASE + 300, on_fire, &a, 0); /* later: no kick */
    NP_CHECK_EQ(kicks, 1);
    np__timer_set(&c.t, BASE + 50, on_fire, &c, 0); /* earliest */
    NP_CHECK_EQ(kicks, 2);
    NP_CHECK_EQ(kicked, BASE + 50);
    NP_CHECK_LE(np__timers_next(), BASE + 50);
    np__timers_set_kick(NULL);
    run(BASE + 1000);
    np__timer_destroy(&a.t);
    np__timer_destroy(&b.t);
    np__timer_destroy(&c.t);
}

/* Callbacks run with no timer lock held: one may re-arm its own timer. */
static rec self_rearm;
static void rearm(void *arg, uintptr_t seq)
{
    rec *r = arg;
    r->fired++;
    if (seq < 3)
        np__timer_set(&r->t, run_now + 10, rearm, r, seq + 1);
}

static void t_callback_rearms_own_timer(void)
{
    NP_CHECK_OK(np__timer_init(&self_rearm.t, 0));
    np__timer_set(&self_rearm.t, BASE + 10, rearm, &self_rearm, 0);
    for (int64_t now = BASE + 10; now <= BASE + 100; now += 10)
        run(now);
    NP_CHECK_EQ(self_rearm.fired, 4);
    np__timer_destroy(&self_rearm.t);
}

/* set / reset / stop allocate nothing once the timer is initialised. */
static void t_set_reset_stop_do_not_allocate(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    NP_SKIP("sanitizer allocators do not keep mallinfo2 statistics");
#else
    enum { N = 10000 };
    rec *r = calloc(N, sizeof *r);
    NP_CHECK(r != NULL);
    for (int i = 0; i < N; i++)
        NP_CHECK_OK(np__timer_init(&r[i].t, (uint32_t)i));
    struct mallinfo2 before = mallinfo2();
    for (int round = 0; round < 20; round++)
        for (int i = 0; i < N; i++) {
            np__timer_set(&r[i].t, BASE + round * 1000 + i, on_fire, &r[i], 0);
            if (i % 3 == 0)
                np__timer_set(&r[i].t, BASE + i, on_fire, &r[i], 0);
            if (i % 7 == 0)
                np__timer_stop(&r[i].t);
        }
    struct mallinfo2 after = mallinfo2();
    NP_CHECK_EQ(after.uordblks, before.uordblks);
    NP_CHECK_EQ(after.arena, before.arena);
    for (int i = 0; i < N; i++) {
        np__timer_stop(&r[i].t);
        np__timer_destroy(&r[i].t);
    }
    free(r);
#endif
}

/* Real time, real threads: setters on their own timers while another thread
 * runs them. Under TSan this is the race check; everywhere, nothing fires
 * before its time. */
enum { CT_THREADS = 3, CT_TIMERS = 200 };
static rec ct[CT_THREADS][CT_TIMERS];
static _Atomic int ct_stop;
static _Atomic int ct_early;
static _Atomic long ct_fired;

/* seq carries the deadline of the arming that fired: exact even when the
 * setter re-arms the timer while this callback is on its way. */
static void ct_fire(void *arg, uintptr_t seq)
{
    (void)arg;
    if (np_now() < (int64_t)seq)
        atomic_fetch_add(&ct_early, 1);
    atomic_fetch_add(&ct_fired, 1);
}

static void *ct_setter(void *arg)
{
    int th = (int)(intptr_t)arg;
    unsigned seed = (unsigned)th;
    for (int round = 0; round < 300; round++)
        for (int i = 0; i < CT_TIMERS; i++) {
            int64_t w = np_now() + rand_r(&seed) % (2 * NP_MILLISECOND);
            np__timer_set(&ct[th][i].t, w, ct_fire, &ct[th][i], (uintptr_t)w);
            if (rand_r(&seed) % 5 == 0)
                np__timer_stop(&ct[th][i].t);
        }
    return NULL;
}

static void *ct_runner(void *arg)
{
    (void)arg;
    while (!atomic_load(&ct_stop))
        np__timers_run(np_now(), NULL);
    return NULL;
}

static void t_concurrent_set_and_run(void)
{
    pthread_t s[CT_THREADS], runner;
    for (int t = 0; t < CT_THREADS; t++)
        for (int i = 0; i < CT_TIMERS; i++)
            NP_CHECK_OK(np__timer_init(&ct[t][i].t, (uint32_t)(t * CT_TIMERS + i)));
    NP_CHECK_OK(pthread_create(&runner, NULL, ct_runner, NULL));
    for (int t = 0; t < CT_THREADS; t++)
        NP_CHECK_OK(pthread_create(&s[t], NULL, ct_setter, (void *)(intptr_t)t));
    for (int t = 0; t < CT_THREADS; t++)
        NP_CHECK_OK(pthread_join(s[t], NULL));
    /* Everything still pending comes due within 2 ms. */
    int64_t until = np_now() + 5 * NP_MILLISECOND;
    while (np_now() < until) {
    }
    atomic_store(&ct_stop, 1);
    NP_CHECK_OK(pthread_join(runner, NULL));
    np__timers_run(np_now(), NULL);
    int early = atomic_load(&ct_early);
    long fired = atomic_load(&ct_fired);
    printf("  %ld timers fired, %d early\n", fired, early);
    NP_CHECK_EQ(early, 0);
    NP_CHECK_GT(fired, 0);
    NP_CHECK_EQ(np__timers_next(), INT64_MAX);
    for (int t = 0; t < CT_THREADS; t++)
        for (int i = 0; i < CT_TIMERS; i++)
            np__timer_destroy(&ct[t][i].t);
}

NP_TEST_LIST(
    NP_CASE(t_fires_once_in_time_order),
    NP_CASE(t_reset_later_earlier_and_stop),
    NP_CASE(t_random_against_model),
    NP_CASE(t_kick_when_earliest_moves_earlier),
    NP_CASE(t_callback_rearms_own_timer),
    NP_CASE(t_set_reset_stop_do_not_allocate),
    NP_CASE(t_concurrent_set_and_run))
