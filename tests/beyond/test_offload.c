/* np_offload and np_config.offload_threads against include/netpoll.h
 * ("Runtime"): a blocking call offloaded leaves the workers free (a 10 ms
 * ticker keeps its pace on a single worker), offloads run in parallel up to
 * the limit and no further, NULL and no-runtime errors, the direct call on
 * a plain thread, pool threads retiring when idle and none outliving
 * np_run. */
#include <time.h>

#include "beyond.h"

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- the target: a ticker keeps its pace -------------------------------------- */

enum { OFFLOADERS = 4, BLOCK_MS = 300 };
static np_waitgroup off_wg;
static _Atomic int off_running, off_done;
static _Atomic int64_t worst_gap;

static void block_300(void *arg)
{
    (void)arg;
    atomic_fetch_add(&off_running, 1);
    sleep_ms(BLOCK_MS); /* a plain blocking call, as a file read or a library's */
}

static void offloader(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_offload(block_300, NULL));
    atomic_fetch_add(&off_done, 1);
    np_waitgroup_done(&off_wg);
}

static void ticker(void *arg)
{
    (void)arg;
    int64_t last = np_now();
    while (atomic_load(&off_done) < OFFLOADERS) {
        np_sleep(10 * NP_MILLISECOND);
        int64_t now = np_now();
        if (now - last > atomic_load(&worst_gap))
            atomic_store(&worst_gap, now - last);
        last = now;
    }
    np_waitgroup_done(&off_wg);
}

static void body_ticker(void)
{
    NP_CHECK_OK(np_waitgroup_add(&off_wg, OFFLOADERS + 1));
    NP_CHECK_OK(np_go(ticker, NULL));
    int64_t t0 = np_now();
    for (int i = 0; i < OFFLOADERS; i++)
        NP_CHECK_OK(np_go(offloader, NULL));
    NP_CHECK_OK(np_waitgroup_wait(&off_wg, np_now() + 20 * NP_SECOND));
    int64_t took = np_now() - t0;
    int64_t gap = atomic_load(&worst_gap);
    fprintf(stderr, "4 x %d ms offloaded in %.0f ms; ticker's worst gap %.1f ms\n", BLOCK_MS,
            (double)took / 1e6, (double)gap / 1e6);
    NP_CHECK_GE(took, BLOCK_MS * NP_MILLISECOND); /* each did block that long */
    NP_CHECK_MSG(took < 900 * NP_MILLISECOND, "4 offloads of %d ms took %.0f ms: not in parallel",
                 BLOCK_MS, (double)took / 1e6);
    NP_CHECK_MSG(gap < 50 * NP_MILLISECOND, "a 10 ms ticker's worst gap was %.1f ms (target < 50)",
                 (double)gap / 1e6);
}

static void t_offload_ticker_keeps_pace_on_one_worker(void)
{
    b_run_workers(1, body_ticker);
}

/* ---- NULL, no runtime, plain threads --------------------------------------------------- */

static _Atomic int called;
static _Atomic pid_t called_on;

static void note_call(void *arg)
{
    atomic_fetch_add(&called, 1);
    atomic_store(&called_on, b_gettid());
    if (arg)
        *(int *)arg = 42;
}

static void *plain_null(void *arg)
{
    (void)arg;
    NP_CHECK_EQ(np_offload(NULL, NULL), -EINVAL);
    return NULL;
}

static void body_null(void)
{
    NP_CHECK_EQ(np_offload(NULL, NULL), -EINVAL);
    NP_CHECK_EQ(np_offload(NULL, &called), -EINVAL);
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, plain_null, NULL));
    NP_CHECK_OK(np_offload(b_join_thread, &th));
}

static void t_offload_null_fn_einval(void)
{
    b_run(body_null);
}

static void t_offload_no_runtime_esrch(void)
{
    NP_CHECK_EQ(np_offload(note_call, NULL), -ESRCH);
    NP_CHECK_EQ(atomic_load(&called), 0); /* and fn was not called */
    b_run(body_null); /* a run in between changes nothing after it */
    NP_CHECK_EQ(np_offload(note_call, NULL), -ESRCH);
    NP_CHECK_EQ(atomic_load(&called), 0);
}

static void *plain_direct(void *arg)
{
    (void)arg;
    int out = 0;
    atomic_store(&called_on, 0);
    NP_CHECK_OK(np_offload(note_call, &out));
    NP_CHECK_EQ(out, 42); /* done by the time it returns */
    NP_CHECK_EQ(atomic_load(&called_on), b_gettid()); /* on this very thread */
    return NULL;
}

static void body_plain_direct(void)
{
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, plain_direct, NULL));
    NP_CHECK_OK(np_offload(b_join_thread, &th));
    /* From a task: another thread than the task's worker. */
    int out = 0;
    atomic_store(&called_on, 0);
    pid_t me = b_gettid();
    NP_CHECK_OK(np_offload(note_call, &out));
    NP_CHECK_EQ(out, 42);
    NP_CHECK_NE(atomic_load(&called_on), me);
    NP_CHECK_NE(atomic_load(&called_on), 0);
}

static void t_offload_plain_thread_calls_fn_directly(void)
{
    b_run(body_plain_direct);
}

/* ---- offload_threads limits the concurrency ------------------------------------------------ */

static _Atomic int conc_now, conc_max;
static np_waitgroup conc_wg;
static int conc_ms;

static void conc_job(void *arg)
{
    (void)arg;
    int n = atomic_fetch_add(&conc_now, 1) + 1;
    int m = atomic_load(&conc_max);
    while (n > m && !atomic_compare_exchange_weak(&conc_max, &m, n)) {
    }
    sleep_ms(conc_ms);
    atomic_fetch_sub(&conc_now, 1);
}

static void conc_task(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_offload(conc_job, NULL));
    np_waitgroup_done(&conc_wg);
}

static int conc_jobs;
static int64_t conc_took;

static void body_conc(void)
{
    NP_CHECK_OK(np_waitgroup_add(&conc_wg, conc_jobs));
    int64_t t0 = np_now();
    for (int i = 0; i < conc_jobs; i++)
        NP_CHECK_OK(np_go(conc_task, NULL));
    NP_CHECK_OK(np_waitgroup_wait(&conc_wg, np_now() + 30 * NP_SECOND));
    conc_took = np_now() - t0;
}

static void run_conc(int limit, int jobs, int ms)
{
    atomic_store(&conc_now, 0);
    atomic_store(&conc_max, 0);
    conc_jobs = jobs;
    conc_ms = ms;
    np_config c = { .workers = 2, .offload_threads = limit };
    b_run_cfg(&c, body_conc);
}

static void t_offload_threads_limit_two(void)
{
    run_conc(2, 4, 100);
    NP_CHECK_EQ(atomic_load(&conc_max), 2);
    NP_CHECK_GE(conc_took, 200 * NP_MILLISECOND); /* two rounds of two */
    NP_CHECK_LT(conc_took, 1000 * NP_MILLISECOND);
}

static void t_offload_threads_limit_one_serialises(void)
{
    run_conc(1, 3, 50);
    NP_CHECK_EQ(atomic_load(&conc_max), 1);
    NP_CHECK_GE(conc_took, 150 * NP_MILLISECOND);
}

static void t_offload_many_jobs_bounded(void)
{
    run_conc(4, 200, 1);
    NP_CHECK_LE(atomic_load(&conc_max), 4);
    NP_CHECK_GE(atomic_load(&conc_max), 1);
}

static void body_nothing(void)
{
}

static void t_offload_threads_config_bounds(void)
{
    np_config c = { .workers = 1, .offload_threads = -1 };
    NP_CHECK_EQ(np_run(&c, b_run_body, (void *)body_nothing), -EINVAL);
    c.offload_threads = 4097;
    NP_CHECK_EQ(np_run(&c, b_run_body, (void *)body_nothing), -EINVAL);
    c.offload_threads = -2147483647 - 1;
    NP_CHECK_EQ(np_run(&c, b_run_body, (void *)body_nothing), -EINVAL);
    c.offload_threads = 4096;
    NP_CHECK_OK(np_run(&c, b_run_body, (void *)body_nothing));
    c.offload_threads = 1;
    NP_CHECK_OK(np_run(&c, b_run_body, (void *)body_nothing));
}

/* ---- pool threads retire when idle, and none outlive np_run ------------------------------ */

enum { POOL_JOBS = 3 };
static _Atomic int pool_in;
static np_waitgroup pool_wg;
static int threads_in_run;
static _Atomic int threads_busy;

static void pool_job(void *arg)
{
    (void)arg;
    atomic_fetch_add(&pool_in, 1);
    /* All three at once, so three pool threads exist. */
    int64_t end = np_now() + 5 * NP_SECOND;
    while (atomic_load(&pool_in) < POOL_JOBS && np_now() < end)
        sleep_ms(1);
    int zero = 0;
    if (atomic_load(&pool_in) == POOL_JOBS)
        atomic_compare_exchange_strong(&threads_busy, &zero, b_threads());
    sleep_ms(20);
}

static void pool_task(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_offload(pool_job, NULL));
    np_waitgroup_done(&pool_wg);
}

static void start_pool_jobs(void)
{
    atomic_store(&pool_in, 0);
    NP_CHECK_OK(np_waitgroup_add(&pool_wg, POOL_JOBS));
    for (int i = 0; i < POOL_JOBS; i++)
        NP_CHECK_OK(np_go(pool_task, NULL));
    NP_CHECK_OK(np_waitgroup_wait(&pool_wg, np_now() + 10 * NP_SECOND));
}

static void body_retire(void)
{
    np_sleep(20 * NP_MILLISECOND); /* the workers are up */
    threads_in_run = b_threads();
    start_pool_jobs();
    NP_CHECK_GE(threads_busy, threads_in_run + POOL_JOBS);
    int64_t idle_since = np_now();
    /* Not before about 5 s idle ... */
    np_sleep(4 * NP_SECOND);
    NP_CHECK_MSG(b_threads() > threads_in_run, "pool threads retired after only %.0f ms idle",
                 b_ms_since(idle_since));
    /* ... and by 8 s at the latest. */
    while (b_threads() > threads_in_run && np_now() - idle_since < 8 * NP_SECOND)
        np_sleep(50 * NP_MILLISECOND);
    NP_CHECK_MSG(b_threads() <= threads_in_run, "%d threads %.0f ms after the pool went idle (%d before "
                 "it started)", b_threads(), b_ms_since(idle_since), threads_in_run);
}

/* Threads of the process before a run, once a thread has come and gone
 * (a sanitizer may start a helper thread of its own with the first one). */
static void *nothing_thread(void *arg)
{
    return arg;
}

static int settled_threads(void)
{
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, nothing_thread, NULL));
    pthread_join(th, NULL);
    return b_threads();
}

static void t_offload_idle_pool_threads_retire(void)
{
    int before = settled_threads();
    /* No stall monitor: its spare threads (from a false stall on a loaded
     * machine) would stay to the end of the run and count here. */
    np_config c = { .workers = 2, .stall_ns = -1 };
    b_run_cfg(&c, body_retire);
    NP_CHECK_EQ(b_threads_settled(before), before);
}

static void body_busy_at_end(void)
{
    atomic_store(&threads_busy, 0);
    start_pool_jobs();
    NP_CHECK_GE(threads_busy, POOL_JOBS + 2);
    /* np_run returns with the pool threads idle, not yet retired. */
}

static void t_offload_no_pool_thread_outlives_run(void)
{
    int before = settled_threads();
    b_run(body_busy_at_end); /* the monitor's threads end with the run too */
    int after = b_threads_settled(before);
    NP_CHECK_MSG(after == before, "%d threads after np_run, %d before", after, before);
    b_run(body_busy_at_end); /* and the next run has a pool again */
    NP_CHECK_EQ(b_threads_settled(before), before);
}

/* ---- fn runs on a plain thread: the plain-thread rules hold there ------------------------ */

static np_chan fn_chan;

static void fn_uses_runtime(void *arg)
{
    (void)arg;
    int64_t t0 = np_now();
    NP_CHECK_OK(np_sleep(10 * NP_MILLISECOND)); /* a plain thread's sleep */
    NP_CHECK_GE(np_now() - t0, 10 * NP_MILLISECOND);
    int v = 7;
    NP_CHECK_OK(np_chan_send(fn_chan, &v, np_now() + 5 * NP_SECOND)); /* blocks until received */
}

static void fn_receiver(void *arg)
{
    (void)arg;
    int v = 0;
    NP_CHECK_OK(np_chan_recv(fn_chan, &v, np_now() + 5 * NP_SECOND));
    NP_CHECK_EQ(v, 7);
}

static void body_fn_runtime(void)
{
    NP_CHECK_OK(np_chan_make(&fn_chan, sizeof(int), 0));
    NP_CHECK_OK(np_go(fn_receiver, NULL));
    NP_CHECK_OK(np_offload(fn_uses_runtime, NULL));
    NP_CHECK_OK(np_chan_free(fn_chan));
}

static void t_offload_fn_may_block_like_a_plain_thread(void)
{
    b_run_workers(1, body_fn_runtime);
}

/* fn is on a plain thread: an np_offload from inside it calls its fn there
 * and then, directly. */
static _Atomic pid_t outer_tid, inner_tid;

static void inner_fn(void *arg)
{
    (void)arg;
    atomic_store(&inner_tid, b_gettid());
}

static void outer_fn(void *arg)
{
    (void)arg;
    atomic_store(&outer_tid, b_gettid());
    NP_CHECK_OK(np_offload(inner_fn, NULL));
}

static void body_nested(void)
{
    NP_CHECK_OK(np_offload(outer_fn, NULL));
    NP_CHECK_NE(atomic_load(&outer_tid), 0);
    NP_CHECK_EQ(atomic_load(&inner_tid), atomic_load(&outer_tid));
}

static void t_offload_nested_runs_directly(void)
{
    np_config c = { .workers = 1, .offload_threads = 1 }; /* a queued inner job would deadlock */
    b_run_cfg(&c, body_nested);
}

/* With idle stacks on, a task parked in np_offload keeps its stack: fn
 * may write through a pointer into it (the common np_offload(fn, &local)). */
enum { IS_TASKS = 16 };
static np_waitgroup is_wg;
static _Atomic int is_ok;

static void fill_slowly(void *arg)
{
    int *v = arg;
    sleep_ms(30); /* longer than idle_stack_ns: the stack would be given back */
    for (int i = 0; i < 64; i++)
        v[i] = i * 3 + 1;
}

static void is_task(void *arg)
{
    (void)arg;
    int local[64];
    memset(local, 0, sizeof local);
    np_sleep(15 * NP_MILLISECOND); /* an idle-able park first */
    NP_CHECK_OK(np_offload(fill_slowly, local));
    bool ok = true;
    for (int i = 0; i < 64; i++)
        ok &= local[i] == i * 3 + 1;
    if (ok)
        atomic_fetch_add(&is_ok, 1);
    np_waitgroup_done(&is_wg);
}

static void body_idle_stacks(void)
{
    NP_CHECK_OK(np_waitgroup_add(&is_wg, IS_TASKS));
    for (int i = 0; i < IS_TASKS; i++)
        NP_CHECK_OK(np_go(is_task, NULL));
    NP_CHECK_OK(np_waitgroup_wait(&is_wg, np_now() + 20 * NP_SECOND));
    NP_CHECK_EQ(atomic_load(&is_ok), IS_TASKS);
}

static void t_offload_arg_on_task_stack_with_idle_stacks(void)
{
    np_config c = { .workers = 2, .idle_stack_ns = 5 * NP_MILLISECOND };
    b_run_cfg(&c, body_idle_stacks);
}

NP_TEST_LIST(
    NP_CASE(t_offload_ticker_keeps_pace_on_one_worker),
    NP_CASE(t_offload_null_fn_einval),
    NP_CASE(t_offload_no_runtime_esrch),
    NP_CASE(t_offload_plain_thread_calls_fn_directly),
    NP_CASE(t_offload_threads_limit_two),
    NP_CASE(t_offload_threads_limit_one_serialises),
    NP_CASE(t_offload_many_jobs_bounded),
    NP_CASE(t_offload_threads_config_bounds),
    NP_CASE(t_offload_idle_pool_threads_retire),
    NP_CASE(t_offload_no_pool_thread_outlives_run),
    NP_CASE(t_offload_fn_may_block_like_a_plain_thread),
    NP_CASE(t_offload_nested_runs_directly),
    NP_CASE(t_offload_arg_on_task_stack_with_idle_stacks))
