/* Coordination, part 1: np_mutex, np_cond, np_waitgroup against the
 * contract in include/netpoll.h ("Coordination") and Go's package sync.
 * One case per sentence of the contract; tasks and plain threads on both
 * sides; deadlines never early (strict lower bounds), generous upper bounds.
 *
 * Sleeps appear only where no event can be awaited (to let a task or a
 * thread get queued in a wait before the next step); the checks stay
 * correct, if weaker, when a sleep is too short.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"
#include "np_test.h"
#include "base/sanitizer.h"

/* ---- helpers ------------------------------------------------------------ */

#if defined(NP_TSAN) || defined(NP_ASAN)
#define SAN 1
#define SLACK (6 * NP_SECOND) /* a deadline fires within this much */
#define SCALE 4               /* loop counts divided by this */
#else
#define SAN 0
#define SLACK (2 * NP_SECOND)
#define SCALE 1
#endif

#define MS NP_MILLISECOND

typedef void (*body_fn)(void);
static void grp_free_retired(void);
static void run_body(void *arg)
{
    ((body_fn)arg)();
}

/* Runs fn as the main task of a runtime with `workers` workers. */
static void run_n(int workers, body_fn fn)
{
    np_config c = { .workers = workers };
    NP_CHECK_OK(np_run(&c, run_body, (void *)fn));
    grp_free_retired();
}

/* A call that took a deadline returned now: not early, not absurdly late. */
#define CHECK_AT_DEADLINE(deadline)                                          \
    do {                                                                     \
        int64_t np_t_ = np_now();                                            \
        NP_CHECK_GE(np_t_, (deadline));                                      \
        NP_CHECK_LT(np_t_, (deadline) + SLACK);                              \
    } while (0)

/* A call that must not block returned quickly. */
#define CHECK_QUICK(t0) NP_CHECK_LT(np_now() - (t0), SLACK)

static void plain_sleep(int64_t ns)
{
    struct timespec ts = { (time_t)(ns / NP_SECOND), (long)(ns % NP_SECOND) };
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Sleeps from a task or a plain thread. */
static void any_sleep(int64_t ns)
{
    if (np_sleep(ns) == -EPERM)
        plain_sleep(ns);
}

/* A group of tasks and plain threads, joined through a wait group (the
 * runtime must keep running until the threads are done: a plain thread's
 * blocking call with no runtime gives -ESRCH). The group's wait group is
 * never reused or freed while the runtime runs: each round gets a new one
 * and retired ones are freed after np_run returns. A done may still be
 * touching it after wait returned (t_wg_released_when_wait_returns in
 * test_sync.c tests exactly that); here it must not turn every case that
 * joins twice into a failure of that one defect. */
typedef struct grp {
    np_waitgroup *wg;
    pthread_t th[64];
    int nth;
} grp;

typedef struct spawn {
    np_waitgroup *wg;
    void (*fn)(void *);
    void *arg;
} spawn;

static np_waitgroup *grp_retired[4096];
static _Atomic int grp_nretired;

static void grp_free_retired(void) /* after np_run */
{
    int n = atomic_exchange(&grp_nretired, 0);
    for (int i = 0; i < n; i++)
        free(grp_retired[i]);
}

static void grp_task_main(void *p)
{
    spawn s = *(spawn *)p;
    free(p);
    s.fn(s.arg);
    NP_CHECK_OK(np_waitgroup_done(s.wg));
}

static void *grp_thread_main(void *p)
{
    grp_task_main(p);
    return NULL;
}

static spawn *new_spawn(grp *g, void (*fn)(void *), void *arg)
{
    if (!g->wg) {
        g->wg = calloc(1, sizeof *g->wg);
        NP_CHECK(g->wg != NULL);
    }
    spawn *s = malloc(sizeof *s);
    NP_CHECK(s != NULL);
    *s = (spawn){ g->wg, fn, arg };
    NP_CHECK_OK(np_waitgroup_add(g->wg, 1));
    return s;
}

static void grp_task(grp *g, void (*fn)(void *), void *arg)
{
    NP_CHECK_OK(np_go(grp_task_main, new_spawn(g, fn, arg)));
}

static void grp_thread(grp *g, void (*fn)(void *), void *arg)
{
    NP_CHECK_LT(g->nth, 64);
    NP_CHECK_OK(pthread_create(&g->th[g->nth++], NULL, grp_thread_main, new_spawn(g, fn, arg)));
}

static void grp_wait(grp *g)
{
    if (g->wg) {
        NP_CHECK_OK(np_waitgroup_wait(g->wg, 0));
        int i = atomic_fetch_add(&grp_nretired, 1);
        NP_CHECK_LT(i, 4096);
        grp_retired[i] = g->wg;
        g->wg = NULL;
    }
    for (int i = 0; i < g->nth; i++)
        NP_CHECK_OK(pthread_join(g->th[i], NULL));
    g->nth = 0;
}

/* ========================================================================== */
/* ---- mutex ---------------------------------------------------------------- */

static np_mutex g_static_mutex; /* zeroed storage: ready */

static void check_lock_cycle(np_mutex *m)
{
    NP_CHECK_OK(np_mutex_lock(m));
    NP_CHECK_EQ(np_mutex_trylock(m), -EBUSY);
    NP_CHECK_EQ(np_mutex_lock_until(m, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_OK(np_mutex_unlock(m));
    NP_CHECK_OK(np_mutex_trylock(m));
    NP_CHECK_OK(np_mutex_unlock(m));
    NP_CHECK_OK(np_mutex_lock_until(m, np_now() + NP_SECOND));
    NP_CHECK_OK(np_mutex_unlock(m));
    NP_CHECK_OK(np_mutex_lock_until(m, 0)); /* 0 = no deadline */
    NP_CHECK_OK(np_mutex_unlock(m));
}

static void body_lock_unlock(void)
{
    np_mutex a = NP_MUTEX_INIT, b;
    memset(&b, 0, sizeof b);
    check_lock_cycle(&a);
    check_lock_cycle(&b);
    check_lock_cycle(&g_static_mutex);
}

/* lock, trylock (-EBUSY), unlock; NP_MUTEX_INIT, memset 0 and static
 * storage all ready; in a task, and with no runtime at all (uncontended
 * calls never block). */
static void t_mutex_lock_trylock_unlock(void)
{
    body_lock_unlock(); /* no runtime */
    run_n(2, body_lock_unlock);
}

/* Unlock of an unlocked mutex: -EPERM, and the mutex still works after. */
static void t_mutex_unlock_unlocked_eperm(void)
{
    np_mutex m = NP_MUTEX_INIT;
    NP_CHECK_EQ(np_mutex_unlock(&m), -EPERM);
    NP_CHECK_EQ(np_mutex_unlock(&m), -EPERM);
    NP_CHECK_OK(np_mutex_trylock(&m));
    NP_CHECK_OK(np_mutex_unlock(&m));
    NP_CHECK_EQ(np_mutex_unlock(&m), -EPERM);
    NP_CHECK_OK(np_mutex_trylock(&m)); /* the failed unlock left it sane */
    NP_CHECK_EQ(np_mutex_trylock(&m), -EBUSY);
    NP_CHECK_OK(np_mutex_unlock(&m));
}

/* NULL: -EINVAL from every call of the section that takes a pointer. */
static void t_null_einval(void)
{
    np_mutex m = NP_MUTEX_INIT;
    np_cond c = NP_COND_INIT;
    NP_CHECK_EQ(np_mutex_lock(NULL), -EINVAL);
    NP_CHECK_EQ(np_mutex_lock_until(NULL, 0), -EINVAL);
    NP_CHECK_EQ(np_mutex_lock_until(NULL, np_now() - 1), -EINVAL);
    NP_CHECK_EQ(np_mutex_trylock(NULL), -EINVAL);
    NP_CHECK_EQ(np_mutex_unlock(NULL), -EINVAL);
    NP_CHECK_EQ(np_cond_signal(NULL), -EINVAL);
    NP_CHECK_EQ(np_cond_broadcast(NULL), -EINVAL);
    NP_CHECK_OK(np_mutex_lock(&m));
    NP_CHECK_EQ(np_cond_wait(NULL, &m, np_now() - 1), -EINVAL);
    NP_CHECK_EQ(np_cond_wait(&c, NULL, np_now() - 1), -EINVAL);
    NP_CHECK_EQ(np_cond_wait(NULL, NULL, 0), -EINVAL);
    NP_CHECK_EQ(np_mutex_trylock(&m), -EBUSY); /* still held */
    NP_CHECK_OK(np_mutex_unlock(&m));
    NP_CHECK_EQ(np_waitgroup_add(NULL, 1), -EINVAL);
    NP_CHECK_EQ(np_waitgroup_done(NULL), -EINVAL);
    NP_CHECK_EQ(np_waitgroup_wait(NULL, 0), -EINVAL);
    NP_CHECK_EQ(np_waitgroup_wait(NULL, np_now() - 1), -EINVAL);
}

/* No runtime: calls that need not block work; one that would have to
 * block returns -ESRCH (nothing could wake it); a past deadline is a
 * non-blocking try (-ETIMEDOUT), it need not block. */
static void t_no_runtime_would_block_esrch(void)
{
    np_mutex m = NP_MUTEX_INIT;
    np_cond c = NP_COND_INIT;
    np_waitgroup wg = NP_WAITGROUP_INIT;
    NP_CHECK_OK(np_mutex_lock(&m));
    int64_t t0 = np_now();
    NP_CHECK_EQ(np_mutex_lock(&m), -ESRCH);
    NP_CHECK_EQ(np_mutex_lock_until(&m, np_now() + 10 * NP_SECOND), -ESRCH);
    NP_CHECK_EQ(np_mutex_lock_until(&m, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_EQ(np_mutex_trylock(&m), -EBUSY);
    NP_CHECK_EQ(np_cond_wait(&c, &m, 0), -ESRCH);
    NP_CHECK_EQ(np_mutex_trylock(&m), -EBUSY); /* held again on return */
    NP_CHECK_EQ(np_cond_wait(&c, &m, np_now() + 10 * NP_SECOND), -ESRCH);
    NP_CHECK_EQ(np_mutex_trylock(&m), -EBUSY);
    NP_CHECK_EQ(np_cond_wait(&c, &m, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_EQ(np_mutex_trylock(&m), -EBUSY);
    NP_CHECK_OK(np_cond_signal(&c));
    NP_CHECK_OK(np_cond_broadcast(&c));
    NP_CHECK_OK(np_mutex_unlock(&m));
    NP_CHECK_OK(np_waitgroup_wait(&wg, 0)); /* count 0: need not block */
    NP_CHECK_OK(np_waitgroup_add(&wg, 2));
    NP_CHECK_EQ(np_waitgroup_wait(&wg, 0), -ESRCH);
    NP_CHECK_EQ(np_waitgroup_wait(&wg, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_OK(np_waitgroup_done(&wg));
    NP_CHECK_OK(np_waitgroup_done(&wg));
    NP_CHECK_OK(np_waitgroup_wait(&wg, 0));
    CHECK_QUICK(t0);
}

/* ---- lock_until ---- */

static np_mutex lu_m;
static void lu_waiter(void *arg)
{
    int64_t d = *(int64_t *)arg;
    int64_t deadline = np_now() + d;
    NP_CHECK_EQ(np_mutex_lock_until(&lu_m, deadline), -ETIMEDOUT);
    CHECK_AT_DEADLINE(deadline);
}

static void body_lock_until_timeout(void)
{
    static int64_t d[] = { 1 * MS, 20 * MS, 60 * MS };
    grp g = { 0 };
    NP_CHECK_OK(np_mutex_lock(&lu_m));
    for (int i = 0; i < 3; i++) {
        grp_task(&g, lu_waiter, &d[i]);
        grp_thread(&g, lu_waiter, &d[i]);
    }
    int64_t deadline = np_now() + 30 * MS;
    NP_CHECK_EQ(np_mutex_lock_until(&lu_m, deadline), -ETIMEDOUT); /* not recursive */
    CHECK_AT_DEADLINE(deadline);
    grp_wait(&g);
    NP_CHECK_EQ(np_mutex_trylock(&lu_m), -EBUSY); /* still ours */
    NP_CHECK_OK(np_mutex_unlock(&lu_m));
    /* The timed-out waiters left the queue: the unlock left it free. */
    NP_CHECK_OK(np_mutex_trylock(&lu_m));
    NP_CHECK_OK(np_mutex_unlock(&lu_m));
}

/* lock_until on a held mutex: -ETIMEDOUT, never before the deadline, from
 * tasks and plain threads, and the timed-out waiters leave no trace. */
static void t_mutex_lock_until_not_early(void)
{
    run_n(2, body_lock_until_timeout);
}

static void body_lock_until_past(void)
{
    np_mutex m = NP_MUTEX_INIT;
    NP_CHECK_OK(np_mutex_lock_until(&m, np_now() - 1)); /* free: taken */
    int64_t t0 = np_now();
    NP_CHECK_EQ(np_mutex_lock_until(&m, np_now()), -ETIMEDOUT);
    NP_CHECK_EQ(np_mutex_lock_until(&m, 1), -ETIMEDOUT);
    NP_CHECK_EQ(np_mutex_lock_until(&m, -1), -ETIMEDOUT);
    NP_CHECK_EQ(np_mutex_lock_until(&m, INT64_MIN), -ETIMEDOUT);
    NP_CHECK_LT(np_now() - t0, 100 * MS);
    NP_CHECK_OK(np_mutex_unlock(&m));
    NP_CHECK_OK(np_mutex_lock_until(&m, INT64_MIN));
    NP_CHECK_OK(np_mutex_unlock(&m));
}

/* A deadline at or before now is trylock: 0 on a free mutex, -ETIMEDOUT at
 * once on a held one (negative deadlines included). */
static void t_mutex_past_deadline_is_trylock(void)
{
    run_n(1, body_lock_until_past);
}

/* ---- not owned ---- */

static np_mutex no_m;
static void no_unlocker(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_mutex_unlock(&no_m));
}

static void body_not_owned(void)
{
    grp g = { 0 };
    NP_CHECK_OK(np_mutex_lock(&no_m));
    grp_task(&g, no_unlocker, NULL); /* another task unlocks */
    grp_wait(&g);
    NP_CHECK_OK(np_mutex_trylock(&no_m));
    grp_thread(&g, no_unlocker, NULL); /* a plain thread unlocks */
    grp_wait(&g);
    NP_CHECK_OK(np_mutex_trylock(&no_m));
    NP_CHECK_OK(np_mutex_unlock(&no_m));
}

/* Not owned: a task locks, another task (or a plain thread) unlocks. */
static void t_mutex_not_owned(void)
{
    run_n(2, body_not_owned);
}

/* ---- FIFO hand-off ---- */

#define FIFO_N 8
static np_mutex fifo_m;
static int fifo_order[FIFO_N * 2];
static int fifo_n;
static _Atomic int fifo_arrived;

static void fifo_waiter(void *arg)
{
    int id = (int)(intptr_t)arg;
    atomic_fetch_add(&fifo_arrived, 1);
    NP_CHECK_OK(np_mutex_lock(&fifo_m));
    fifo_order[fifo_n++] = id;
    any_sleep(2 * MS); /* hold it a little: the chain takes a while */
    NP_CHECK_OK(np_mutex_unlock(&fifo_m));
}

static void fifo_body(bool threads)
{
    grp g = { 0 };
    fifo_n = 0;
    atomic_store(&fifo_arrived, 0);
    NP_CHECK_OK(np_mutex_lock(&fifo_m));
    for (int i = 0; i < FIFO_N; i++) {
        if (threads && i % 2 == 1)
            grp_thread(&g, fifo_waiter, (void *)(intptr_t)i);
        else
            grp_task(&g, fifo_waiter, (void *)(intptr_t)i);
        /* Queued before the next one starts (no event says "parked"). */
        while (atomic_load(&fifo_arrived) < i + 1)
            np_sleep(1 * MS);
        np_sleep(SAN ? 60 * MS : 20 * MS);
    }
    NP_CHECK_OK(np_mutex_unlock(&fifo_m));
    /* Handed to the first waiter: not free for a barging caller. */
    NP_CHECK_EQ(np_mutex_trylock(&fifo_m), -EBUSY);
    grp_wait(&g);
    NP_CHECK_EQ(fifo_n, FIFO_N);
    for (int i = 0; i < FIFO_N; i++)
        NP_CHECK_MSG(fifo_order[i] == i, "position %d got waiter %d (FIFO expected)", i,
                     fifo_order[i]);
    NP_CHECK_OK(np_mutex_trylock(&fifo_m));
    NP_CHECK_OK(np_mutex_unlock(&fifo_m));
}

static void body_fifo_tasks(void)
{
    fifo_body(false);
}
static void body_fifo_mixed(void)
{
    fifo_body(true);
}

/* Unlock with waiters queued hands the mutex to the first of them (FIFO):
 * the unlocker's immediate trylock gets -EBUSY, and waiters get it in
 * arrival order. On 1 worker (the first waiter cannot even run before the
 * trylock) and on 2. */
static void t_mutex_fifo_handoff_tasks(void)
{
    run_n(1, body_fifo_tasks);
    run_n(2, body_fifo_tasks);
}

/* The same, tasks and plain threads alternating in the queue. */
static void t_mutex_fifo_handoff_tasks_and_threads(void)
{
    run_n(2, body_fifo_mixed);
}

/* ---- no starvation ---- */

static np_mutex st_m;
static _Atomic int st_stop;
static long st_greedy_rounds;

static void st_greedy(void *arg)
{
    (void)arg;
    while (!atomic_load(&st_stop)) {
        NP_CHECK_OK(np_mutex_lock(&st_m));
        st_greedy_rounds++;
        NP_CHECK_OK(np_mutex_unlock(&st_m));
    }
}

static void st_victim(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++) {
        int64_t t0 = np_now();
        int rc = np_mutex_lock_until(&st_m, t0 + SLACK);
        NP_CHECK_MSG(rc == 0, "victim starved: lock_until gave %d after %" PRId64 " ms", rc,
                     (np_now() - t0) / MS);
        NP_CHECK_OK(np_mutex_unlock(&st_m));
        any_sleep(1 * MS);
    }
}

static void body_starvation(void)
{
    grp greedy = { 0 }, victims = { 0 };
    atomic_store(&st_stop, 0);
    grp_task(&greedy, st_greedy, NULL);
    grp_task(&greedy, st_greedy, NULL);
    grp_thread(&greedy, st_greedy, NULL);
    np_sleep(10 * MS);
    grp_task(&victims, st_victim, NULL);
    grp_thread(&victims, st_victim, NULL);
    grp_wait(&victims);
    atomic_store(&st_stop, 1);
    grp_wait(&greedy);
}

/* Greedy lockers in tight loops (2 tasks, 1 thread) never starve a task or
 * a thread that wants the mutex: each gets it well within its deadline. */
static void t_mutex_no_starvation(void)
{
    run_n(2, body_starvation);
}

/* ---- counter ---- */

#define CNT_TASKS 8
#define CNT_THREADS 2
#define CNT_ITERS (10000 / SCALE)
static np_mutex cnt_m;
static long cnt_value; /* plain: guarded by cnt_m only */

static void cnt_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < CNT_ITERS; i++) {
        NP_CHECK_OK(np_mutex_lock(&cnt_m));
        long v = cnt_value;
        if (i % 64 == 0)
            np_yield(); /* holding it across a switch (a thread: sched_yield) */
        cnt_value = v + 1;
        NP_CHECK_OK(np_mutex_unlock(&cnt_m));
    }
}

static void body_counter(void)
{
    grp g = { 0 };
    for (int i = 0; i < CNT_TASKS; i++)
        grp_task(&g, cnt_worker, NULL);
    for (int i = 0; i < CNT_THREADS; i++)
        grp_thread(&g, cnt_worker, NULL);
    grp_wait(&g);
    NP_CHECK_OK(np_mutex_lock(&cnt_m));
    NP_CHECK_EQ(cnt_value, (long)(CNT_TASKS + CNT_THREADS) * CNT_ITERS);
    NP_CHECK_OK(np_mutex_unlock(&cnt_m));
}

/* A plain counter incremented under the mutex by 8 tasks x 10k and 2 plain
 * threads x 10k on 4 workers: the sum is exact (and TSan sees the mutex's
 * happens-before). */
static void t_mutex_counter_tasks_and_threads(void)
{
    cnt_value = 0;
    run_n(4, body_counter);
    NP_CHECK_EQ(cnt_value, (long)(CNT_TASKS + CNT_THREADS) * CNT_ITERS);
}

/* ---- a task and a plain thread, hand-off both ways ---- */

static np_mutex tt_m;
static _Atomic int tt_phase;
static int64_t tt_task_unlock_at, tt_thread_lock_at, tt_thread_unlock_at;

static void tt_thread(void *arg)
{
    (void)arg;
    atomic_store(&tt_phase, 1);
    NP_CHECK_OK(np_mutex_lock(&tt_m)); /* the task holds it: blocks */
    tt_thread_lock_at = np_now();
    NP_CHECK_GE(tt_thread_lock_at, tt_task_unlock_at);
    atomic_store(&tt_phase, 2);
    plain_sleep(50 * MS); /* the task is (very likely) queued by now */
    tt_thread_unlock_at = np_now();
    NP_CHECK_OK(np_mutex_unlock(&tt_m));
}

static void body_task_thread(void)
{
    grp g = { 0 };
    NP_CHECK_OK(np_mutex_lock(&tt_m));
    grp_thread(&g, tt_thread, NULL);
    while (atomic_load(&tt_phase) < 1)
        np_sleep(1 * MS);
    np_sleep(50 * MS); /* the thread is (very likely) blocked by now */
    tt_task_unlock_at = np_now();
    NP_CHECK_OK(np_mutex_unlock(&tt_m));
    while (atomic_load(&tt_phase) < 2)
        np_sleep(1 * MS);
    NP_CHECK_OK(np_mutex_lock(&tt_m)); /* the thread holds it: parks */
    NP_CHECK_GE(np_now(), tt_thread_unlock_at);
    NP_CHECK_GT(tt_thread_unlock_at, 0);
    NP_CHECK_OK(np_mutex_unlock(&tt_m));
    grp_wait(&g);
}

/* A plain thread and a task contend: the thread blocks while the task
 * holds it and gets it at the unlock; then the task parks while the thread
 * holds it. Mutual exclusion checked by timestamps. */
static void t_mutex_thread_and_task_contend(void)
{
    run_n(2, body_task_thread);
}

/* ---- held across np_sleep ---- */

static np_mutex hs_m;
static int hs_count;
static _Atomic int hs_ticks;

static void hs_locker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10; i++) {
        NP_CHECK_OK(np_mutex_lock(&hs_m));
        NP_CHECK_OK(np_sleep(1 * MS)); /* held while parked in a sleep */
        hs_count++;
        NP_CHECK_OK(np_mutex_unlock(&hs_m));
    }
}

static void hs_ticker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++) {
        NP_CHECK_OK(np_sleep(1 * MS));
        atomic_fetch_add(&hs_ticks, 1);
    }
}

static void body_held_sleep(void)
{
    hs_count = 0;
    atomic_store(&hs_ticks, 0);
    for (int i = 0; i < 10; i++)
        NP_CHECK_OK(np_go(hs_locker, NULL));
    NP_CHECK_OK(np_go(hs_ticker, NULL));
}

/* A mutex held across np_sleep while 9 other tasks wait for it does not
 * deadlock the runtime, on 1 worker (waiters park, the worker runs on) and
 * on 2; an unrelated task keeps ticking meanwhile. */
static void t_mutex_held_across_sleep(void)
{
    for (int w = 1; w <= 2; w++) {
        run_n(w, body_held_sleep);
        NP_CHECK_EQ(hs_count, 100);
        NP_CHECK_EQ(atomic_load(&hs_ticks), 20);
    }
}

/* ---- a plain thread holds it, the only worker's task waits ---- */

static np_mutex th1_m;
static sem_t th1_locked, th1_other_ran;

static void th1_thread(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_mutex_lock(&th1_m));
    sem_post(&th1_locked);
    /* Released only once another task ran on the single worker: the
     * waiting task must have parked, not blocked the thread. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    NP_CHECK_MSG(sem_timedwait(&th1_other_ran, &ts) == 0,
                 "the waiting task blocked the only worker");
    NP_CHECK_OK(np_mutex_unlock(&th1_m));
}

static void th1_other(void *arg)
{
    (void)arg;
    sem_post(&th1_other_ran);
}

static void body_thread_holds_1w(void)
{
    grp g = { 0 };
    sem_init(&th1_locked, 0, 0);
    sem_init(&th1_other_ran, 0, 0);
    grp_thread(&g, th1_thread, NULL);
    while (sem_trywait(&th1_locked) != 0)
        np_sleep(1 * MS);
    NP_CHECK_OK(np_go(th1_other, NULL)); /* queued on the only worker */
    NP_CHECK_OK(np_mutex_lock(&th1_m));  /* must park */
    NP_CHECK_OK(np_mutex_unlock(&th1_m));
    grp_wait(&g);
    sem_destroy(&th1_locked);
    sem_destroy(&th1_other_ran);
}

/* On 1 worker, a task waiting for a mutex a plain thread holds parks: the
 * other task runs (and lets the thread unlock). */
static void t_mutex_wait_parks_not_blocks_worker(void)
{
    run_n(1, body_thread_holds_1w);
}

/* ---- deadline racing the unlock ---- */

static np_mutex race_m;
static _Atomic long race_got, race_timedout;

static void spin(int n)
{
    for (volatile int k = 0; k < n; k++) {
    }
}

static void race_holder(void *arg)
{
    int rounds = (int)(intptr_t)arg;
    for (int i = 0; i < rounds; i++) {
        int64_t t0 = np_now();
        int rc = np_mutex_lock_until(&race_m, t0 + SLACK);
        NP_CHECK_MSG(rc == 0,
                     "holder could not lock for %" PRId64 " ms (%d): the mutex was left locked "
                     "(a hand-off to a waiter that had timed out?)",
                     (np_now() - t0) / MS, rc);
        if (i % 3)
            any_sleep((i % 11) * 20 * NP_MICROSECOND); /* held 0-200 us, parked */
        else
            spin((i % 50) * 400);
        NP_CHECK_OK(np_mutex_unlock(&race_m));
        if (i % 8 == 0)
            np_yield();
    }
}

static void race_waiter(void *arg)
{
    int rounds = (int)(intptr_t)arg;
    for (int i = 0; i < rounds; i++) {
        int rc = np_mutex_lock_until(&race_m, np_now() + (i % 13) * 15 * NP_MICROSECOND);
        if (rc == 0) {
            atomic_fetch_add(&race_got, 1);
            spin(20);
            NP_CHECK_OK(np_mutex_unlock(&race_m));
        } else {
            NP_CHECK_EQ(rc, -ETIMEDOUT);
            atomic_fetch_add(&race_timedout, 1);
        }
    }
}

static void body_deadline_race(void)
{
    int rounds = 1500 / SCALE;
    grp g = { 0 };
    grp_task(&g, race_holder, (void *)(intptr_t)rounds);
    grp_thread(&g, race_holder, (void *)(intptr_t)rounds);
    grp_task(&g, race_waiter, (void *)(intptr_t)rounds);
    grp_task(&g, race_waiter, (void *)(intptr_t)rounds);
    grp_thread(&g, race_waiter, (void *)(intptr_t)rounds);
    grp_wait(&g);
    /* No hand-off went to a waiter that had already timed out. */
    NP_CHECK_OK(np_mutex_trylock(&race_m));
    NP_CHECK_OK(np_mutex_unlock(&race_m));
    NP_CHECK_EQ(atomic_load(&race_got) + atomic_load(&race_timedout), 3L * rounds);
    printf("  lock_until vs unlock: %ld acquired, %ld timed out\n", atomic_load(&race_got),
           atomic_load(&race_timedout));
}

/* lock_until deadlines of 0-180 us racing holders' unlocks (tasks and plain
 * threads): a waiter either got the mutex (and unlocks it) or timed out
 * and does not own it; the mutex is never left locked by a lost hand-off
 * (the holders' own lock_until would fail), and it ends unlocked. */
static void t_mutex_deadline_races_unlock(void)
{
    run_n(2, body_deadline_race);
}

/* cond_wait until it reports something other than 0 (spurious wake-ups
 * are allowed), but not forever: a wait that never times out fails. */
static int cond_wait_out(np_cond *c, np_mutex *m, int64_t deadline)
{
    int rc;
    do
        rc = np_cond_wait(c, m, deadline);
    while (rc == 0 && np_now() < deadline + SLACK);
    return rc;
}

/* ========================================================================== */
/* ---- cond ----------------------------------------------------------------- */

static np_mutex cv_m;
static np_cond cv_c;
static int cv_items;    /* guarded by cv_m */
static long cv_sum;     /* guarded by cv_m */
static int cv_consumed; /* guarded by cv_m */

#define CV_ITEMS (2000 / SCALE)

static void cv_consumer(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_mutex_lock(&cv_m));
    for (;;) {
        while (cv_items == 0 && cv_consumed < CV_ITEMS)
            NP_CHECK_OK(np_cond_wait(&cv_c, &cv_m, 0));
        if (cv_consumed == CV_ITEMS)
            break;
        cv_items--;
        cv_consumed++;
        cv_sum += cv_consumed;
        if (cv_consumed == CV_ITEMS)
            NP_CHECK_OK(np_cond_broadcast(&cv_c)); /* the others may stop */
    }
    NP_CHECK_OK(np_mutex_unlock(&cv_m));
}

static void body_cond_pc(void)
{
    grp g = { 0 };
    for (int i = 0; i < 3; i++)
        grp_task(&g, cv_consumer, NULL);
    grp_thread(&g, cv_consumer, NULL);
    for (int i = 0; i < CV_ITEMS; i++) {
        NP_CHECK_OK(np_mutex_lock(&cv_m));
        cv_items++;
        if (i % 2)
            NP_CHECK_OK(np_cond_signal(&cv_c)); /* with m held */
        NP_CHECK_OK(np_mutex_unlock(&cv_m));
        if (i % 2 == 0)
            NP_CHECK_OK(np_cond_signal(&cv_c)); /* without */
        if (i % 16 == 0)
            np_yield();
    }
    grp_wait(&g);
    NP_CHECK_EQ(cv_consumed, CV_ITEMS);
    NP_CHECK_EQ(cv_sum, (long)CV_ITEMS * (CV_ITEMS + 1) / 2);
}

/* wait / signal with predicate loops: a producer signals each item (with
 * and without the mutex held), 3 tasks and a plain thread consume; every
 * item is consumed exactly once. */
static void t_cond_signal_predicate_loop(void)
{
    run_n(2, body_cond_pc);
}

/* ---- timeout ---- */

static np_mutex cto_m;
static np_cond cto_c;
static int64_t cto_hold_until;

static void cto_waiter(void *arg)
{
    int64_t d = *(int64_t *)arg;
    NP_CHECK_OK(np_mutex_lock(&cto_m));
    int64_t deadline = np_now() + d;
    NP_CHECK_EQ(cond_wait_out(&cto_c, &cto_m, deadline), -ETIMEDOUT);
    CHECK_AT_DEADLINE(deadline);
    NP_CHECK_EQ(np_mutex_trylock(&cto_m), -EBUSY); /* held again */
    NP_CHECK_OK(np_mutex_unlock(&cto_m));
    /* Not "a second unlock gives -EPERM" here: the other three waiters
     * share cto_m, and the mutex is not owned (any task or thread may
     * unlock it), so a second unlock could release another waiter's hold
     * (seen under valgrind). body_cond_timeout checks it alone, below. */
}

static void body_cond_timeout(void)
{
    static int64_t d[] = { 1 * MS, 30 * MS };
    grp g = { 0 };
    for (int i = 0; i < 2; i++) {
        grp_task(&g, cto_waiter, &d[i]);
        grp_thread(&g, cto_waiter, &d[i]);
    }
    grp_wait(&g);
    /* A past deadline: -ETIMEDOUT at once, m held on return. */
    NP_CHECK_OK(np_mutex_lock(&cto_m));
    int64_t t0 = np_now();
    NP_CHECK_EQ(np_cond_wait(&cto_c, &cto_m, t0 - 1), -ETIMEDOUT);
    NP_CHECK_EQ(np_cond_wait(&cto_c, &cto_m, -5), -ETIMEDOUT);
    NP_CHECK_LT(np_now() - t0, 100 * MS);
    NP_CHECK_EQ(np_mutex_trylock(&cto_m), -EBUSY);
    NP_CHECK_OK(np_mutex_unlock(&cto_m));
    NP_CHECK_EQ(np_mutex_unlock(&cto_m), -EPERM); /* and only once */
}

/* cond_wait with a deadline returns -ETIMEDOUT, never early, with the
 * mutex held again (tasks, plain threads, past deadlines). */
static void t_cond_wait_timeout_not_early_mutex_held(void)
{
    run_n(2, body_cond_timeout);
}

static _Atomic int cto2_waiting;
static void cto2_waiter(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_mutex_lock(&cto_m));
    int64_t deadline = np_now() + 20 * MS;
    atomic_store(&cto2_waiting, 1);
    NP_CHECK_EQ(cond_wait_out(&cto_c, &cto_m, deadline), -ETIMEDOUT);
    /* The holder kept m until cto_hold_until: we reacquired after. */
    NP_CHECK_GE(np_now(), cto_hold_until);
    NP_CHECK_EQ(np_mutex_trylock(&cto_m), -EBUSY);
    NP_CHECK_OK(np_mutex_unlock(&cto_m));
}

static void cto2_body(bool thread)
{
    grp g = { 0 };
    atomic_store(&cto2_waiting, 0);
    if (thread)
        grp_thread(&g, cto2_waiter, NULL);
    else
        grp_task(&g, cto2_waiter, NULL);
    while (!atomic_load(&cto2_waiting))
        np_sleep(1 * MS);
    NP_CHECK_OK(np_mutex_lock(&cto_m)); /* the waiter released it */
    np_sleep(80 * MS);                  /* hold past its deadline */
    cto_hold_until = np_now();
    NP_CHECK_OK(np_mutex_unlock(&cto_m));
    grp_wait(&g);
}

static void body_cond_timeout_held(void)
{
    cto2_body(false);
    cto2_body(true);
}

/* The deadline fires while another holds the mutex: the wait returns only
 * once it has the mutex again ("m is held again on return, whatever the
 * result"). */
static void t_cond_timeout_reacquires_mutex(void)
{
    run_n(2, body_cond_timeout_held);
}

/* ---- signal wakes one (the longest waiter), broadcast all ---- */

#define SW_N 6
static np_mutex sw_m;
static np_cond sw_c, sw_arrive;
static int sw_arrived, sw_tokens, sw_order[SW_N], sw_woken;

static void sw_waiter(void *arg)
{
    int id = (int)(intptr_t)arg;
    NP_CHECK_OK(np_mutex_lock(&sw_m));
    sw_arrived++;
    NP_CHECK_OK(np_cond_broadcast(&sw_arrive));
    while (sw_tokens == 0)
        NP_CHECK_OK(np_cond_wait(&sw_c, &sw_m, 0));
    sw_tokens--;
    sw_order[sw_woken++] = id;
    NP_CHECK_OK(np_cond_broadcast(&sw_arrive));
    NP_CHECK_OK(np_mutex_unlock(&sw_m));
}

static void sw_wait_for(int *field, int value)
{
    /* with sw_m held */
    while (*field < value)
        NP_CHECK_OK(np_cond_wait(&sw_arrive, &sw_m, 0));
}

static void body_signal_one(void)
{
    grp g = { 0 };
    sw_arrived = sw_tokens = sw_woken = 0;
    for (int i = 0; i < SW_N; i++) {
        if (i == 2 || i == 4)
            grp_thread(&g, sw_waiter, (void *)(intptr_t)i);
        else
            grp_task(&g, sw_waiter, (void *)(intptr_t)i);
        NP_CHECK_OK(np_mutex_lock(&sw_m));
        sw_wait_for(&sw_arrived, i + 1); /* waiter i is in cond_wait now */
        NP_CHECK_OK(np_mutex_unlock(&sw_m));
    }
    for (int k = 0; k < SW_N; k++) {
        NP_CHECK_OK(np_mutex_lock(&sw_m));
        sw_tokens++;
        NP_CHECK_OK(np_cond_signal(&sw_c));
        sw_wait_for(&sw_woken, k + 1);
        NP_CHECK_EQ(sw_tokens, 0);
        NP_CHECK_EQ(sw_woken, k + 1); /* one per signal */
        NP_CHECK_OK(np_mutex_unlock(&sw_m));
    }
    grp_wait(&g);
    for (int i = 0; i < SW_N; i++)
        NP_CHECK_MSG(sw_order[i] == i, "signal %d woke waiter %d (the longest waiter expected)",
                     i, sw_order[i]);
}

/* signal wakes the longest waiter, one per signal (waiters arrive in a
 * known order, tasks and plain threads mixed). */
static void t_cond_signal_wakes_longest_waiter(void)
{
    run_n(2, body_signal_one);
}

#define BC_N 24
static np_mutex bc_m;
static np_cond bc_c, bc_arrive;
static int bc_arrived, bc_go, bc_woken;

static void bc_waiter(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_mutex_lock(&bc_m));
    bc_arrived++;
    NP_CHECK_OK(np_cond_signal(&bc_arrive));
    while (!bc_go)
        NP_CHECK_OK(np_cond_wait(&bc_c, &bc_m, 0));
    bc_woken++;
    NP_CHECK_OK(np_mutex_unlock(&bc_m));
}

static void body_broadcast(void)
{
    grp g = { 0 };
    for (int round = 0; round < 3; round++) {
        bc_arrived = bc_go = bc_woken = 0;
        for (int i = 0; i < BC_N; i++) {
            if (i % 8 == 3)
                grp_thread(&g, bc_waiter, NULL);
            else
                grp_task(&g, bc_waiter, NULL);
        }
        NP_CHECK_OK(np_mutex_lock(&bc_m));
        while (bc_arrived < BC_N)
            NP_CHECK_OK(np_cond_wait(&bc_arrive, &bc_m, 0));
        bc_go = 1;
        if (round == 1) {
            NP_CHECK_OK(np_mutex_unlock(&bc_m));
            NP_CHECK_OK(np_cond_broadcast(&bc_c)); /* without m */
        } else {
            NP_CHECK_OK(np_cond_broadcast(&bc_c)); /* with m */
            NP_CHECK_OK(np_mutex_unlock(&bc_m));
        }
        grp_wait(&g);
        NP_CHECK_EQ(bc_woken, BC_N);
    }
}

/* broadcast wakes every waiter (24: tasks and plain threads), with and
 * without the mutex held. */
static void t_cond_broadcast_wakes_all(void)
{
    run_n(2, body_broadcast);
}

/* ---- signal is not remembered ---- */

static void body_signal_no_waiter(void)
{
    np_mutex m = NP_MUTEX_INIT;
    np_cond c = NP_COND_INIT;
    NP_CHECK_OK(np_cond_signal(&c));
    NP_CHECK_OK(np_cond_broadcast(&c));
    NP_CHECK_OK(np_mutex_lock(&m));
    int64_t deadline = np_now() + 30 * MS;
    NP_CHECK_EQ(cond_wait_out(&c, &m, deadline), -ETIMEDOUT); /* no stored wake */
    CHECK_AT_DEADLINE(deadline);
    NP_CHECK_OK(np_mutex_unlock(&m));
}

/* signal and broadcast with nobody waiting are no-ops (0), not a permit a
 * later wait would consume. */
static void t_cond_signal_without_waiters_is_lost(void)
{
    run_n(1, body_signal_no_waiter);
}

/* ---- a timed-out waiter does not swallow a signal ---- */

static np_mutex gh_m;
static np_cond gh_c;
static int gh_flag;
static _Atomic int gh_second_in;

static void gh_second(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_mutex_lock(&gh_m));
    atomic_store(&gh_second_in, 1);
    int64_t deadline = np_now() + SLACK;
    int rc = 0;
    while (!gh_flag && rc == 0)
        rc = np_cond_wait(&gh_c, &gh_m, deadline);
    NP_CHECK_MSG(gh_flag, "signal lost: the waiter got %d", rc);
    NP_CHECK_OK(np_mutex_unlock(&gh_m));
}

static void body_ghost(void)
{
    grp g = { 0 };
    /* The first waiter times out and leaves. */
    NP_CHECK_OK(np_mutex_lock(&gh_m));
    NP_CHECK_EQ(cond_wait_out(&gh_c, &gh_m, np_now() + 10 * MS), -ETIMEDOUT);
    NP_CHECK_OK(np_mutex_unlock(&gh_m));
    /* A second waits; one signal must reach it. */
    atomic_store(&gh_second_in, 0);
    grp_task(&g, gh_second, NULL);
    while (!atomic_load(&gh_second_in))
        np_sleep(1 * MS);
    NP_CHECK_OK(np_mutex_lock(&gh_m)); /* it is in cond_wait now */
    gh_flag = 1;
    NP_CHECK_OK(np_cond_signal(&gh_c));
    NP_CHECK_OK(np_mutex_unlock(&gh_m));
    grp_wait(&g);
}

/* A waiter that timed out left the queue: the next signal wakes the waiter
 * that is actually there. */
static void t_cond_timed_out_waiter_leaves_queue(void)
{
    run_n(2, body_ghost);
}

/* ---- -EPERM ---- */

static void body_cond_eperm(void)
{
    np_mutex m = NP_MUTEX_INIT;
    np_cond c = NP_COND_INIT;
    int64_t t0 = np_now();
    NP_CHECK_EQ(np_cond_wait(&c, &m, 0), -EPERM);
    NP_CHECK_EQ(np_cond_wait(&c, &m, np_now() + NP_SECOND), -EPERM);
    NP_CHECK_EQ(np_cond_wait(&c, &m, np_now() - 1), -EPERM);
    CHECK_QUICK(t0);
    NP_CHECK_OK(np_mutex_trylock(&m)); /* left unlocked */
    NP_CHECK_OK(np_mutex_unlock(&m));
}

/* cond_wait with m not locked: -EPERM at once (task, thread, no runtime),
 * and m is left unlocked. */
static void t_cond_eperm_mutex_not_locked(void)
{
    body_cond_eperm();
    run_n(1, body_cond_eperm);
}

/* ---- plain thread waiters, task signallers and vice versa ---- */

static np_mutex pt_m;
static np_cond pt_c;
static int pt_turn; /* 0: thread's turn, 1: task's */
#define PT_ROUNDS (2000 / SCALE)

static void pt_side(void *arg)
{
    int me = (int)(intptr_t)arg;
    for (int i = 0; i < PT_ROUNDS; i++) {
        NP_CHECK_OK(np_mutex_lock(&pt_m));
        while (pt_turn != me)
            NP_CHECK_OK(np_cond_wait(&pt_c, &pt_m, 0));
        pt_turn = !me;
        NP_CHECK_OK(np_cond_signal(&pt_c));
        NP_CHECK_OK(np_mutex_unlock(&pt_m));
    }
}

static void body_plain_thread_cond(void)
{
    grp g = { 0 };
    pt_turn = 0;
    grp_thread(&g, pt_side, (void *)(intptr_t)0);
    pt_side((void *)(intptr_t)1);
    grp_wait(&g);
    NP_CHECK_EQ(pt_turn, 0);
}

/* A plain thread and a task take turns through one cond (2000 each way):
 * thread waiters woken by a task's signal, and the reverse. */
static void t_cond_plain_thread_ping_pong(void)
{
    run_n(1, body_plain_thread_cond);
    run_n(2, body_plain_thread_cond);
}

/* ========================================================================== */
/* ---- waitgroup ------------------------------------------------------------ */

#define WG_N 50
static np_waitgroup wgb_wg;
static int wgb_results[WG_N]; /* plain: written before done, read after wait */

static void wgb_worker(void *arg)
{
    int i = (int)(intptr_t)arg;
    np_sleep((i % 5) * MS);
    wgb_results[i] = i + 1;
    NP_CHECK_OK(np_waitgroup_done(&wgb_wg));
}

static void *wgb_thread(void *arg)
{
    wgb_worker(arg);
    return NULL;
}

static void body_wg_basic(void)
{
    pthread_t th[2];
    NP_CHECK_OK(np_waitgroup_add(&wgb_wg, WG_N));
    for (int i = 0; i < WG_N - 2; i++)
        NP_CHECK_OK(np_go(wgb_worker, (void *)(intptr_t)i));
    for (int i = 0; i < 2; i++)
        NP_CHECK_OK(pthread_create(&th[i], NULL, wgb_thread, (void *)(intptr_t)(WG_N - 2 + i)));
    NP_CHECK_OK(np_waitgroup_wait(&wgb_wg, 0));
    for (int i = 0; i < WG_N; i++)
        NP_CHECK_EQ(wgb_results[i], i + 1); /* every done happened before */
    for (int i = 0; i < 2; i++)
        NP_CHECK_OK(pthread_join(th[i], NULL));
}

/* add(N) before starting, done from each (48 tasks, 2 plain threads), wait
 * returns once all are done, and sees everything written before each done. */
static void t_wg_add_done_wait(void)
{
    run_n(4, body_wg_basic);
}

static void wg0_thread(void *arg)
{
    np_waitgroup *wg = arg;
    int64_t t0 = np_now();
    NP_CHECK_OK(np_waitgroup_wait(wg, 0));
    NP_CHECK_OK(np_waitgroup_wait(wg, np_now() - 1));
    CHECK_QUICK(t0);
}

static void body_wg_zero(void)
{
    np_waitgroup wg = NP_WAITGROUP_INIT, wz;
    memset(&wz, 0, sizeof wz);
    int64_t t0 = np_now();
    NP_CHECK_OK(np_waitgroup_wait(&wg, 0));
    NP_CHECK_OK(np_waitgroup_wait(&wz, np_now() - 1)); /* nothing to wait for */
    NP_CHECK_OK(np_waitgroup_wait(&wz, INT64_MIN));
    NP_CHECK_OK(np_waitgroup_add(&wg, 0));
    NP_CHECK_OK(np_waitgroup_wait(&wg, np_now() + NP_SECOND));
    NP_CHECK_LT(np_now() - t0, 100 * MS);
    grp g = { 0 };
    grp_thread(&g, wg0_thread, &wz);
    grp_wait(&g);
}

/* wait on a count of 0 returns 0 at once (whatever the deadline), from a
 * task, a plain thread, and with no runtime. */
static void t_wg_wait_on_zero_returns_at_once(void)
{
    np_waitgroup wg = NP_WAITGROUP_INIT;
    NP_CHECK_OK(np_waitgroup_wait(&wg, 0)); /* no runtime */
    run_n(1, body_wg_zero);
}

static void body_wg_negative(void)
{
    np_waitgroup wg = NP_WAITGROUP_INIT;
    NP_CHECK_EQ(np_waitgroup_done(&wg), -EINVAL);
    NP_CHECK_EQ(np_waitgroup_add(&wg, -1), -EINVAL);
    NP_CHECK_EQ(np_waitgroup_add(&wg, INT64_MIN), -EINVAL);
    NP_CHECK_OK(np_waitgroup_wait(&wg, np_now() - 1)); /* still 0 */
    NP_CHECK_OK(np_waitgroup_add(&wg, 2));
    NP_CHECK_EQ(np_waitgroup_add(&wg, -3), -EINVAL); /* no change: still 2 */
    NP_CHECK_EQ(np_waitgroup_wait(&wg, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_OK(np_waitgroup_done(&wg));
    NP_CHECK_EQ(np_waitgroup_wait(&wg, np_now() - 1), -ETIMEDOUT); /* 1 left */
    NP_CHECK_OK(np_waitgroup_add(&wg, -1));
    NP_CHECK_OK(np_waitgroup_wait(&wg, np_now() - 1));
    NP_CHECK_EQ(np_waitgroup_done(&wg), -EINVAL);
    NP_CHECK_OK(np_waitgroup_add(&wg, 1));
    NP_CHECK_OK(np_waitgroup_done(&wg));
    NP_CHECK_OK(np_waitgroup_wait(&wg, 0));
}

/* A count that would go below 0: -EINVAL and no change (done on 0, add(-3)
 * on 2 leaves 2: two dones still needed). */
static void t_wg_negative_count_einval_no_change(void)
{
    body_wg_negative(); /* none of it blocks: no runtime needed */
    run_n(1, body_wg_negative);
}

static np_waitgroup wgd_wg;
static void wgd_waiter(void *arg)
{
    (void)arg;
    int64_t deadline = np_now() + 30 * MS;
    NP_CHECK_EQ(np_waitgroup_wait(&wgd_wg, deadline), -ETIMEDOUT);
    CHECK_AT_DEADLINE(deadline);
}

static _Atomic int wgd_after_in;
static void wgd_after(void *arg)
{
    (void)arg;
    atomic_store(&wgd_after_in, 1);
    NP_CHECK_OK(np_waitgroup_wait(&wgd_wg, np_now() + SLACK));
}

static void body_wg_deadline(void)
{
    grp g = { 0 };
    NP_CHECK_OK(np_waitgroup_add(&wgd_wg, 1));
    grp_task(&g, wgd_waiter, NULL);
    grp_thread(&g, wgd_waiter, NULL);
    int64_t deadline = np_now() + 20 * MS;
    NP_CHECK_EQ(np_waitgroup_wait(&wgd_wg, deadline), -ETIMEDOUT);
    CHECK_AT_DEADLINE(deadline);
    grp_wait(&g);
    /* The timed-out waiters left; a later one is still released. */
    atomic_store(&wgd_after_in, 0);
    grp_task(&g, wgd_after, NULL);
    while (!atomic_load(&wgd_after_in))
        np_sleep(1 * MS);
    np_sleep(5 * MS);
    NP_CHECK_OK(np_waitgroup_done(&wgd_wg));
    grp_wait(&g);
}

/* wait with a deadline: -ETIMEDOUT, never early (task and thread); later
 * waiters are still released by the done. */
static void t_wg_wait_deadline(void)
{
    run_n(2, body_wg_deadline);
}

static np_waitgroup wgr_wg;
static _Atomic int wgr_done;
static void wgr_worker(void *arg)
{
    (void)arg;
    atomic_fetch_add(&wgr_done, 1);
    NP_CHECK_OK(np_waitgroup_done(&wgr_wg));
}

static void body_wg_reuse(void)
{
    int total = 0;
    for (int round = 0; round < 300 / SCALE; round++) {
        int k = 1 + round % 9;
        NP_CHECK_OK(np_waitgroup_add(&wgr_wg, k));
        for (int i = 0; i < k; i++)
            NP_CHECK_OK(np_go(wgr_worker, NULL));
        NP_CHECK_OK(np_waitgroup_wait(&wgr_wg, 0));
        total += k;
        NP_CHECK_EQ(atomic_load(&wgr_done), total);
        NP_CHECK_OK(np_waitgroup_wait(&wgr_wg, np_now() - 1)); /* 0 again */
    }
}

/* Reusable once 0: hundreds of add / done / wait rounds on one group. */
static void t_wg_reuse_after_zero(void)
{
    run_n(2, body_wg_reuse);
}

#define WGM_N 30
static np_waitgroup wgm_wg;
static _Atomic int wgm_arrived, wgm_released;
static _Atomic int64_t wgm_done_at;
static void wgm_waiter(void *arg)
{
    (void)arg;
    atomic_fetch_add(&wgm_arrived, 1);
    NP_CHECK_OK(np_waitgroup_wait(&wgm_wg, np_now() + 2 * SLACK));
    NP_CHECK_GT(atomic_load(&wgm_done_at), 0); /* not before the done */
    atomic_fetch_add(&wgm_released, 1);
}

static void body_wg_many(void)
{
    grp g = { 0 };
    NP_CHECK_OK(np_waitgroup_add(&wgm_wg, 1));
    for (int i = 0; i < WGM_N; i++) {
        if (i % 10 == 9)
            grp_thread(&g, wgm_waiter, NULL);
        else
            grp_task(&g, wgm_waiter, NULL);
    }
    while (atomic_load(&wgm_arrived) < WGM_N)
        np_sleep(1 * MS);
    np_sleep(20 * MS); /* all (very likely) blocked in wait */
    NP_CHECK_EQ(atomic_load(&wgm_released), 0);
    atomic_store(&wgm_done_at, np_now());
    NP_CHECK_OK(np_waitgroup_done(&wgm_wg));
    grp_wait(&g);
    NP_CHECK_EQ(atomic_load(&wgm_released), WGM_N);
}

/* Many waiters (27 tasks, 3 plain threads) are all released by the done
 * that brings the count to 0. */
static void t_wg_many_waiters_all_released(void)
{
    run_n(2, body_wg_many);
}

/* ---- the example: 10 dials joined ---- */

#define DIALS 10
static np_listener dial_l;
static char dial_addr[128];
static np_waitgroup dial_wg;
static _Atomic int dial_ok;
static _Atomic int dial_accepted;

static void dial_one(void *arg)
{
    (void)arg;
    np_conn c;
    int rc = np_dial(&c, "tcp4", dial_addr, np_now() + 10 * NP_SECOND);
    NP_CHECK_MSG(rc == 0, "dial: %s", np_strerror(rc));
    NP_CHECK_EQ(np_write(c, "x", 1), 1);
    char b;
    NP_CHECK_EQ(np_read(c, &b, 1), 1); /* the server's reply */
    NP_CHECK_EQ(b, 'y');
    NP_CHECK_OK(np_close(c));
    atomic_fetch_add(&dial_ok, 1);
    NP_CHECK_OK(np_waitgroup_done(&dial_wg));
}

static void dial_serve(void *arg)
{
    np_conn c = { (uint64_t)(uintptr_t)arg };
    char b;
    NP_CHECK_EQ(np_read(c, &b, 1), 1);
    NP_CHECK_EQ(np_write(c, "y", 1), 1);
    NP_CHECK_OK(np_close(c));
}

static void dial_acceptor(void *arg)
{
    (void)arg;
    for (int i = 0; i < DIALS; i++) {
        np_conn c;
        NP_CHECK_OK(np_accept(dial_l, &c));
        atomic_fetch_add(&dial_accepted, 1);
        NP_CHECK_OK(np_go(dial_serve, (void *)(uintptr_t)c.id));
    }
}

static void body_ten_dials(void)
{
    NP_CHECK_OK(np_listen(&dial_l, "tcp4", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(dial_l, dial_addr, sizeof dial_addr));
    NP_CHECK_OK(np_go(dial_acceptor, NULL));
    for (int i = 0; i < DIALS; i++) {
        NP_CHECK_OK(np_waitgroup_add(&dial_wg, 1));
        NP_CHECK_OK(np_go(dial_one, NULL));
    }
    NP_CHECK_OK(np_waitgroup_wait(&dial_wg, np_now() + 20 * NP_SECOND));
    NP_CHECK_EQ(atomic_load(&dial_ok), DIALS);
    NP_CHECK_EQ(atomic_load(&dial_accepted), DIALS);
    NP_CHECK_OK(np_listener_close(dial_l));
}

/* The example: 10 dials to a local listener, joined with a wait
 * group; wait returns once all 10 have finished their exchange. */
static void t_wg_ten_dials_joined(void)
{
    run_n(2, body_ten_dials);
}

/* ========================================================================== */
/* ---- released as soon as the wait returns --------------------------------
 *
 * As with pthreads (POSIX: a mutex may be destroyed once unlocked, a cond
 * once nobody is blocked on it) and Go: the waiter whose call returned may
 * free the object at once. The waker's call must not touch it after the
 * point where it let the waiter go. The waiter overwrites the object with
 * a pattern, waits for the waker's call to return, checks the pattern,
 * then frees it (ASan: use after free; TSan: a race with the memset). */

#define UAF_ROUNDS (SAN ? 3000 : 20000)
static _Atomic int uaf_out;   /* the waker's call has returned */
static _Atomic int uaf_ready; /* the waker holds the mutex (mutex case) */
static int uaf_delay;         /* set before np_go: the waker's head start */

static void *uaf_new(size_t n)
{
    void *p = calloc(1, n);
    NP_CHECK(p != NULL);
    return p;
}

static void uaf_retire(void *p, size_t n, const char *what, int round)
{
    memset(p, 0x5A, n);
    int64_t t0 = np_now();
    while (!atomic_load(&uaf_out)) {
        NP_CHECK_MSG(np_now() - t0 < SLACK,
                     "%s, round %d: the waker's call has not returned %d s after the waiter's "
                     "call returned and released the object (still using it: spinning on "
                     "its lock word?)",
                     what, round, (int)(SLACK / NP_SECOND));
        np_yield();
    }
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        NP_CHECK_MSG(b[i] == 0x5A,
                     "%s, round %d: the waker's call wrote byte %zu of the object (now %#x) "
                     "after the waiter's call had returned and released it",
                     what, round, i, b[i]);
    free(p);
}

static void spin_for(int n)
{
    for (volatile int k = 0; k < n; k++) {
    }
}

static void uaf_wg_waker(void *arg)
{
    spin_for(uaf_delay);
    NP_CHECK_OK(np_waitgroup_done(arg));
    atomic_store(&uaf_out, 1);
}

static void body_uaf_wg(void)
{
    for (int r = 0; r < UAF_ROUNDS; r++) {
        np_waitgroup *wg = uaf_new(sizeof *wg);
        NP_CHECK_OK(np_waitgroup_add(wg, 1));
        atomic_store(&uaf_out, 0);
        uaf_delay = (r % 32) * 20;
        NP_CHECK_OK(np_go(uaf_wg_waker, wg));
        spin_for((r % 7) * 50);
        NP_CHECK_OK(np_waitgroup_wait(wg, 0));
        uaf_retire(wg, sizeof *wg, "np_waitgroup_done", r);
    }
}

/* The join pattern with the group on the joiner's stack or heap:
 * once wait returned, the last done no longer touches the group. */
static void t_wg_released_when_wait_returns(void)
{
    run_n(2, body_uaf_wg);
}

static void uaf_mutex_holder(void *arg)
{
    NP_CHECK_OK(np_mutex_lock(arg));
    atomic_store(&uaf_ready, 1);
    spin_for(uaf_delay);
    NP_CHECK_OK(np_mutex_unlock(arg)); /* hands it to the waiter */
    atomic_store(&uaf_out, 1);
}

static void body_uaf_mutex(void)
{
    for (int r = 0; r < UAF_ROUNDS; r++) {
        np_mutex *m = uaf_new(sizeof *m);
        atomic_store(&uaf_out, 0);
        atomic_store(&uaf_ready, 0);
        uaf_delay = (r % 32) * 30;
        NP_CHECK_OK(np_go(uaf_mutex_holder, m));
        while (!atomic_load(&uaf_ready))
            np_yield();
        NP_CHECK_OK(np_mutex_lock(m));
        NP_CHECK_OK(np_mutex_unlock(m)); /* the last user: free it */
        uaf_retire(m, sizeof *m, "np_mutex_unlock (hand-off)", r);
    }
}

/* A mutex handed off by unlock may be unlocked and freed by its new owner
 * at once: the handing unlock no longer touches it. */
static void t_mutex_released_after_handoff(void)
{
    run_n(2, body_uaf_mutex);
}

static np_mutex uaf_cm;
static int uaf_flag; /* guarded by uaf_cm */
static bool uaf_bcast;

static void uaf_cond_waker(void *arg)
{
    spin_for(uaf_delay);
    /* Woken with the mutex held, as POSIX requires for the waiter to be
     * allowed to destroy the cond as soon as it has seen the predicate
     * (without it, the waiter cannot know the wake call is over). */
    NP_CHECK_OK(np_mutex_lock(&uaf_cm));
    uaf_flag = 1;
    if (uaf_bcast)
        NP_CHECK_OK(np_cond_broadcast(arg));
    else
        NP_CHECK_OK(np_cond_signal(arg));
    NP_CHECK_OK(np_mutex_unlock(&uaf_cm));
    atomic_store(&uaf_out, 1);
}

static void uaf_cond_rounds(bool bcast)
{
    for (int r = 0; r < UAF_ROUNDS; r++) {
        np_cond *c = uaf_new(sizeof *c);
        atomic_store(&uaf_out, 0);
        uaf_flag = 0;
        uaf_bcast = bcast;
        uaf_delay = (r % 32) * 20;
        NP_CHECK_OK(np_go(uaf_cond_waker, c));
        NP_CHECK_OK(np_mutex_lock(&uaf_cm));
        while (!uaf_flag)
            NP_CHECK_OK(np_cond_wait(c, &uaf_cm, 0));
        NP_CHECK_OK(np_mutex_unlock(&uaf_cm));
        uaf_retire(c, sizeof *c, bcast ? "np_cond_broadcast" : "np_cond_signal", r);
    }
}

static void body_uaf_signal(void)
{
    uaf_cond_rounds(false);
}

static void body_uaf_broadcast(void)
{
    uaf_cond_rounds(true);
}

/* A cond whose only waiter was woken by signal (with the mutex held, as
 * POSIX's pthread_cond_destroy example) may be freed by that waiter as
 * soon as it has the mutex back and sees the predicate. */
static void t_cond_released_after_signal(void)
{
    run_n(2, body_uaf_signal);
}

/* The same after broadcast. */
static void t_cond_released_after_broadcast(void)
{
    run_n(2, body_uaf_broadcast);
}

NP_TEST_LIST(NP_CASE(t_mutex_lock_trylock_unlock),
             NP_CASE(t_mutex_unlock_unlocked_eperm),
             NP_CASE(t_null_einval),
             NP_CASE(t_no_runtime_would_block_esrch),
             NP_CASE(t_mutex_lock_until_not_early),
             NP_CASE(t_mutex_past_deadline_is_trylock),
             NP_CASE(t_mutex_not_owned),
             NP_CASE(t_mutex_fifo_handoff_tasks),
             NP_CASE(t_mutex_fifo_handoff_tasks_and_threads),
             NP_CASE(t_mutex_no_starvation),
             NP_CASE(t_mutex_counter_tasks_and_threads),
             NP_CASE(t_mutex_thread_and_task_contend),
             NP_CASE(t_mutex_held_across_sleep),
             NP_CASE(t_mutex_wait_parks_not_blocks_worker),
             NP_CASE(t_mutex_deadline_races_unlock),
             NP_CASE(t_cond_signal_predicate_loop),
             NP_CASE(t_cond_wait_timeout_not_early_mutex_held),
             NP_CASE(t_cond_timeout_reacquires_mutex),
             NP_CASE(t_cond_signal_wakes_longest_waiter),
             NP_CASE(t_cond_broadcast_wakes_all),
             NP_CASE(t_cond_signal_without_waiters_is_lost),
             NP_CASE(t_cond_timed_out_waiter_leaves_queue),
             NP_CASE(t_cond_eperm_mutex_not_locked),
             NP_CASE(t_cond_plain_thread_ping_pong),
             NP_CASE(t_wg_add_done_wait),
             NP_CASE(t_wg_wait_on_zero_returns_at_once),
             NP_CASE(t_wg_negative_count_einval_no_change),
             NP_CASE(t_wg_wait_deadline),
             NP_CASE(t_wg_reuse_after_zero),
             NP_CASE(t_wg_many_waiters_all_released),
             NP_CASE(t_wg_ten_dials_joined),
             NP_CASE(t_wg_released_when_wait_returns),
             NP_CASE(t_mutex_released_after_handoff),
             NP_CASE(t_cond_released_after_signal),
             NP_CASE(t_cond_released_after_broadcast))
