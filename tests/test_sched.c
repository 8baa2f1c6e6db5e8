/* Tasks and the M:N scheduler: np_run, np_go, np_yield, np_sleep, task
 * waiters on poll descriptors, stealing, fairness, migration, stacks. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/context.h"
#include "netpoll.h"
#include "np_test.h"
#include "pd/pd.h"
#include "poller/poller.h"
#include "base/sanitizer.h"
#include "runtime/scheduler.h"
#include "runtime/task.h"

static np_config cfg_workers(int n)
{
    return (np_config){ .workers = n };
}

/* ---- lifecycle ----------------------------------------------------------- */

static _Atomic int ran;
static void set_ran(void *arg)
{
    (void)arg;
    atomic_fetch_add(&ran, 1);
}

static void t_run_returns_after_all_tasks(void)
{
    for (int round = 0; round < 3; round++) { /* and can be called again */
        atomic_store(&ran, 0);
        np_config c = cfg_workers(round + 1);
        NP_CHECK_OK(np_run(&c, set_ran, NULL));
        NP_CHECK_EQ(atomic_load(&ran), 1);
        NP_CHECK_EQ(np__sched_workers(), 0);
    }
    NP_CHECK_OK(np_run(NULL, set_ran, NULL)); /* defaults */
}

static void nested_run(void *arg)
{
    *(int *)arg = np_run(NULL, set_ran, NULL);
}

static void t_bad_config_and_misuse(void)
{
    np_config c = { .workers = -1 };
    NP_CHECK_EQ(np_run(&c, set_ran, NULL), -EINVAL);
    c = (np_config){ .workers = 100000 };
    NP_CHECK_EQ(np_run(&c, set_ran, NULL), -EINVAL);
    c = (np_config){ .stack_size = 1024 };
    NP_CHECK_EQ(np_run(&c, set_ran, NULL), -EINVAL);
    c = (np_config){ .stack_size = (size_t)1 << 40 };
    NP_CHECK_EQ(np_run(&c, set_ran, NULL), -EINVAL);
    NP_CHECK_EQ(np_run(NULL, NULL, NULL), -EINVAL);
    /* Outside a runtime. */
    NP_CHECK_EQ(np_go(set_ran, NULL), -ESRCH);
    NP_CHECK_EQ(np_go(NULL, NULL), -EINVAL);
    NP_CHECK_EQ(np_sleep(1), -ESRCH);
    NP_CHECK_EQ(np_sleep_until(np_now() + 1), -ESRCH);
    c = (np_config){ .offload_threads = -1 };
    NP_CHECK_EQ(np_run(&c, set_ran, NULL), -EINVAL);
    c = (np_config){ .offload_threads = 100000 };
    NP_CHECK_EQ(np_run(&c, set_ran, NULL), -EINVAL);
    np_yield(); /* a plain sched_yield */
    int rc = 0;
    NP_CHECK_OK(np_run(NULL, nested_run, &rc));
    NP_CHECK_EQ(rc, -EBUSY);
}

/* ---- many tasks -------------------------------------------------------------- */

static _Atomic long counter;
static void incr(void *arg)
{
    (void)arg;
    atomic_fetch_add(&counter, 1);
}

static void spawn_100k(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++)
        NP_CHECK_OK(np_go(incr, NULL));
}

static void t_100k_tasks_spawned_and_finished(void)
{
    np_config c = cfg_workers(2);
    NP_CHECK_OK(np_run(&c, spawn_100k, NULL));
    NP_CHECK_EQ(atomic_load(&counter), 100000);
    np__sched_stats st;
    np__sched_get_stats(&st);
    /* Unstarted tasks hold no stack; finished ones hand theirs on. */
    printf("  stacks mapped: %lu for 100000 tasks\n", st.stacks_mapped);
    NP_CHECK_LT(st.stacks_mapped, 2000);
    NP_CHECK_EQ(st.stacks_mapped, st.stacks_unmapped);
}

/* ---- ping-pong between workers, through poll descriptors ---------------- */

typedef struct pingpong {
    np__pd *pd[2]; /* deadline-only pds: readied by hand */
    int rounds;
    _Atomic int on_worker[2][2]; /* [side][worker] seen */
} pingpong;

/* Side `me` lives on worker `me`. A readied task goes to its readier's
 * worker (runnext), so after each wake the side moves back home: every
 * hand-off crosses workers, and each side checks it runs where it should. */
static void pp_side(pingpong *p, int me)
{
    for (int i = 0; i < p->rounds; i++) {
        if (me == 1 || i > 0) {
            NP_CHECK_OK(np__pd_wait(p->pd[me], NP__PD_READ));
        }
        NP_CHECK_OK(np__sched_yield_to(me));
        int wid = np__sched_worker_id();
        NP_CHECK_EQ(wid, me);
        atomic_store(&p->on_worker[me][wid], 1);
        np__pd_ready(p->pd[!me], NP__POLL_READ, false);
    }
}

static void pp0(void *arg) { pp_side(arg, 0); }
static void pp1(void *arg) { pp_side(arg, 1); }

static void pp_main(void *arg)
{
    pingpong *p = arg;
    NP_CHECK_OK(np__pd_open(-1, &p->pd[0]));
    NP_CHECK_OK(np__pd_open(-1, &p->pd[1]));
    NP_CHECK_OK(np_go(pp1, p));
    pp0(p);
    /* Wait for side 1's last readiness, then close. */
    NP_CHECK_OK(np__pd_wait(p->pd[0], NP__PD_READ));
    for (int i = 0; i < 2; i++) {
        np__pd_unblock(p->pd[i]);
        np__pd_close(p->pd[i]);
    }
}

static void t_ping_pong_across_workers(void)
{
    static pingpong p = { .rounds = 2000 };
#ifdef NP_VALGRIND
    if (RUNNING_ON_VALGRIND) /* one thread at a time: each round waits for
                              * valgrind to schedule the sleeping worker */
        p.rounds = 10;
#endif
    np_config c = cfg_workers(2);
    int64_t t0 = np_now();
    NP_CHECK_OK(np_run(&c, pp_main, &p));
    printf("  %d round trips in %.1f ms\n", p.rounds, (double)(np_now() - t0) / 1e6);
    /* Each side ran on the worker it was moved to, at least at first. */
    NP_CHECK(atomic_load(&p.on_worker[0][0]));
    NP_CHECK(atomic_load(&p.on_worker[1][1]));
}

/* ---- a task blocked on a real socket, woken by the poller --------------- */

typedef struct sockwait {
    int sv[2];
    int rc;
    char got;
} sockwait;

static void sock_reader(void *arg)
{
    sockwait *s = arg;
    np__pd *pd;
    NP_CHECK_OK(np__pd_open(s->sv[0], &pd));
    NP_CHECK_OK(np__pd_reset(pd, NP__PD_READ));
    while (read(s->sv[0], &s->got, 1) != 1) {
        NP_CHECK_EQ(errno, EAGAIN);
        s->rc = np__pd_wait(pd, NP__PD_READ);
        NP_CHECK_OK(s->rc);
    }
    np__pd_unblock(pd);
    np__pd_close(pd);
}

static void *write_later(void *arg)
{
    sockwait *s = arg;
    /* Wait until the reader is parked on the pd, then write. */
    while (np__pd_waiters() == 0)
        sched_yield();
    NP_CHECK_EQ(write(s->sv[1], "k", 1), 1);
    return NULL;
}

static void t_task_parks_on_socket(void)
{
    sockwait s = { 0 };
    NP_CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, s.sv));
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, write_later, &s));
    np_config c = cfg_workers(2);
    NP_CHECK_OK(np_run(&c, sock_reader, &s));
    NP_CHECK_OK(pthread_join(th, NULL));
    NP_CHECK_EQ(s.got, 'k');
    close(s.sv[0]);
    close(s.sv[1]);
}

/* ---- np_go from a foreign thread while every worker is idle ------------- */

typedef struct foreign {
    np__pd *gate;
    _Atomic int64_t sent_at, ran_at;
} foreign;

static void foreign_task(void *arg)
{
    foreign *f = arg;
    atomic_store(&f->ran_at, np_now());
    np__pd_ready(f->gate, NP__POLL_READ, false);
}

static void *foreign_thread(void *arg)
{
    foreign *f = arg;
    /* Every worker idle: one blocked in the poller (the main task waits on
     * a pd), the others asleep on their futex. */
    while (np__pd_waiters() == 0)
        sched_yield();
    np__sched_stats st;
    do {
        sched_yield();
        np__sched_get_stats(&st);
    } while (st.sleeps == 0 || st.polls == 0);
    atomic_store(&f->sent_at, np_now());
    NP_CHECK_OK(np_go(foreign_task, f));
    return NULL;
}

static void foreign_main(void *arg)
{
    foreign *f = arg;
    NP_CHECK_OK(np__pd_open(-1, &f->gate));
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, foreign_thread, f));
    NP_CHECK_OK(np__pd_wait(f->gate, NP__PD_READ));
    NP_CHECK_OK(pthread_join(th, NULL));
    np__pd_unblock(f->gate);
    np__pd_close(f->gate);
}

static void t_foreign_go_wakes_idle_workers(void)
{
    for (int round = 0; round < 5; round++) {
        foreign f = { 0 };
        np_config c = cfg_workers(2);
        NP_CHECK_OK(np_run(&c, foreign_main, &f));
        int64_t lat = atomic_load(&f.ran_at) - atomic_load(&f.sent_at);
        printf("  foreign np_go to task running: %.3f ms\n", (double)lat / 1e6);
        NP_CHECK_GE(lat, 0);
#if defined(NP_ASAN) || defined(NP_TSAN)
        NP_CHECK_LT(lat, 250 * NP_MILLISECOND);
#else
        NP_CHECK_LT(lat, 50 * NP_MILLISECOND);
#endif
    }
    /* And with no runtime at all: refused. */
    NP_CHECK_EQ(np_go(set_ran, NULL), -ESRCH);
}

/* ---- sleeping ------------------------------------------------------------- */

static _Atomic int sleep_early;
static void sleeper(void *arg)
{
    int64_t d = (int64_t)(intptr_t)arg;
    int64_t t0 = np_now();
    NP_CHECK_OK(np_sleep(d));
    if (np_now() - t0 < d)
        atomic_fetch_add(&sleep_early, 1);
    int64_t until = np_now() + d;
    NP_CHECK_OK(np_sleep_until(until));
    if (np_now() < until)
        atomic_fetch_add(&sleep_early, 1);
}

static void sleep_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++)
        NP_CHECK_OK(np_go(sleeper, (void *)(intptr_t)((i % 20 + 1) * NP_MILLISECOND)));
    NP_CHECK_OK(np_sleep(0));
    NP_CHECK_OK(np_sleep(-5));
    NP_CHECK_OK(np_sleep_until(np_now() - NP_SECOND));
}

static void t_sleep_never_early(void)
{
    np_config c = cfg_workers(2);
    int64_t t0 = np_now();
    NP_CHECK_OK(np_run(&c, sleep_main, NULL));
    NP_CHECK_EQ(atomic_load(&sleep_early), 0);
    int64_t dt = np_now() - t0;
    NP_CHECK_GE(dt, 40 * NP_MILLISECOND); /* the longest: 2 x 20 ms */
    NP_CHECK_LT(dt, 5 * NP_SECOND);
}

/* ---- fairness: a yield loop starves no one -------------------------------- */

enum { F_LOCAL = 1, F_GLOBAL = 2, F_NET = 4, F_TIMER = 8, F_ALL = 15 };
static _Atomic int fair_flags;
static int fair_sv[2];

static void fair_local(void *arg) { (void)arg; atomic_fetch_or(&fair_flags, F_LOCAL); }
static void fair_global(void *arg) { (void)arg; atomic_fetch_or(&fair_flags, F_GLOBAL); }
static void fair_timer(void *arg)
{
    (void)arg;
    np_sleep(5 * NP_MILLISECOND);
    atomic_fetch_or(&fair_flags, F_TIMER);
}
static void fair_net(void *arg)
{
    (void)arg;
    np__pd *pd;
    char b;
    NP_CHECK_OK(np__pd_open(fair_sv[0], &pd));
    NP_CHECK_OK(np__pd_reset(pd, NP__PD_READ));
    while (read(fair_sv[0], &b, 1) != 1)
        NP_CHECK_OK(np__pd_wait(pd, NP__PD_READ));
    atomic_fetch_or(&fair_flags, F_NET);
    np__pd_unblock(pd);
    np__pd_close(pd);
}

static void *fair_outsider(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_go(fair_global, NULL));
    while (np__pd_waiters() == 0) /* fair_net parked */
        sched_yield();
    NP_CHECK_EQ(write(fair_sv[1], "n", 1), 1);
    return NULL;
}

static void fair_main(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_go(fair_net, NULL));
    NP_CHECK_OK(np_go(fair_timer, NULL));
    NP_CHECK_OK(np_go(fair_local, NULL));
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, fair_outsider, NULL));
    int64_t until = np_now() + 10 * NP_SECOND;
    long spins = 0;
    while (atomic_load(&fair_flags) != F_ALL) {
        NP_CHECK_MSG(np_now() < until, "starved: flags = %d", atomic_load(&fair_flags));
        np_yield();
        spins++;
    }
    NP_CHECK_OK(pthread_join(th, NULL));
    printf("  everyone ran within %ld yields\n", spins);
}

static void t_yield_loop_starves_no_one(void)
{
    /* One worker: the yield loop shares it with queued, global, network
     * and timer work. */
    NP_CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fair_sv));
    np_config c = cfg_workers(1);
    NP_CHECK_OK(np_run(&c, fair_main, NULL));
    close(fair_sv[0]);
    close(fair_sv[1]);
}

/* ---- stealing under imbalance --------------------------------------------- */

static _Atomic int seen_worker[8];
static void busy(void *arg)
{
    (void)arg;
    int64_t until = np_now() + 500 * NP_MICROSECOND;
    while (np_now() < until) {
    }
    atomic_store(&seen_worker[np__sched_worker_id()], 1);
}

static void imbalance_main(void *arg)
{
    (void)arg;
    /* All spawned onto this worker's local queue (200 < its 256 slots, so
     * none spills to the global queue): the other worker can only get work
     * by stealing. */
    for (int i = 0; i < 200; i++)
        NP_CHECK_OK(np_go(busy, NULL));
}

static void t_stealing_under_imbalance(void)
{
#ifdef NP_VALGRIND
    if (RUNNING_ON_VALGRIND)
        NP_SKIP("valgrind runs one thread at a time: nothing to steal from");
#endif
    np_config c = cfg_workers(2);
    NP_CHECK_OK(np_run(&c, imbalance_main, NULL));
    np__sched_stats st;
    np__sched_get_stats(&st);
    printf("  steals: %lu\n", st.steals);
    NP_CHECK_GT(st.steals, 0);
    NP_CHECK(atomic_load(&seen_worker[0]) && atomic_load(&seen_worker[1]));
}

/* ---- the migration hazard -------------------------------------------------- */

static int *errno_addr[8];

/* &errno, recomputed on every call. glibc declares __errno_location const,
 * so within one function the compiler may reuse the address it got before a
 * switch: after a migration that is the old thread's errno. This accessor,
 * not inlined and opaque, is the mitigation the library uses for its own
 * per-thread state. */
__attribute__((noinline)) static int *errno_now(void)
{
    int *p = &errno;
    __asm__ volatile("" : "+r"(p));
    return p;
}

static void record_errno_addr(void *arg)
{
    int id = (int)(intptr_t)arg;
    NP_CHECK_OK(np__sched_yield_to(id));
    NP_CHECK_EQ(np__sched_worker_id(), id);
    errno_addr[id] = errno_now();
}

static void migrate_main(void *arg)
{
    int n = (int)(intptr_t)arg;
    for (int i = 0; i < n; i++)
        record_errno_addr((void *)(intptr_t)i);
    int cur = np__sched_worker_id();
    for (int i = 0; i < 2000; i++) {
        int target = (cur + 1) % n;
        /* Capture errno right after the failing call, before any switch... */
        int rc = close(-1);
        int err = errno;
        NP_CHECK_EQ(rc, -1);
        NP_CHECK_OK(np__sched_yield_to(target));
        /* ...because now we run on another thread, with its errno. */
        cur = np__sched_worker_id();
        NP_CHECK_EQ(cur, target);
        NP_CHECK_PTR_EQ(errno_now(), errno_addr[target]);
        NP_CHECK_EQ(err, EBADF);
        /* Library state reached through the thread is this thread's. */
        NP_CHECK_PTR_EQ(np__waiter_current(), &np__sched_current_task()->waiter);
    }
}

static void t_migration_every_yield(void)
{
    for (int n = 2; n <= 3; n++) {
        np_config c = cfg_workers(n);
        NP_CHECK_OK(np_run(&c, migrate_main, (void *)(intptr_t)n));
        for (int i = 0; i < n; i++)
            for (int j = 0; j < i; j++)
                NP_CHECK(errno_addr[i] != errno_addr[j]);
    }
}

/* ---- a task never runs on two workers at once ------------------------------ */

static _Atomic int in_task[64];
static _Atomic int overlap;
static void exclusive(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < 2000; i++) {
        if (atomic_fetch_add(&in_task[id], 1) != 0)
            atomic_fetch_add(&overlap, 1);
        atomic_fetch_sub(&in_task[id], 1);
        np_yield();
    }
}

static void exclusive_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 64; i++)
        NP_CHECK_OK(np_go(exclusive, (void *)(intptr_t)i));
}

static void t_no_task_on_two_workers(void)
{
    np_config c = cfg_workers(4);
    NP_CHECK_OK(np_run(&c, exclusive_main, NULL));
    NP_CHECK_EQ(atomic_load(&overlap), 0);
}

/* ---- stacks ------------------------------------------------------------------- */

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    NP_CHECK(f != NULL);
    NP_CHECK_EQ(fscanf(f, "%ld %ld", &pages, &resident), 2);
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* The sanitizers map shadow memory per region and share the kernel's
 * map-count limit with our stacks: fewer tasks there. */
#if defined(NP_ASAN) || defined(NP_TSAN)
#define DEEP_TASKS 2000
#else
#define DEEP_TASKS 10000
#endif
static _Atomic int deep_started, gate_open;
static void deep_sleeper(void *arg)
{
    (void)arg;
    char buf[16 * 1024];
    memset(buf, 1, sizeof buf);
    /* The compiler must assume the buffer is read: the pages stay touched. */
    __asm__ volatile("" : : "r"(buf) : "memory");
    atomic_fetch_add(&deep_started, 1);
    while (!atomic_load(&gate_open))
        np_sleep(20 * NP_MILLISECOND);
    __asm__ volatile("" : : "r"(buf) : "memory");
}

static long rss_during, rss_after;
static void stacks_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < DEEP_TASKS; i++)
        NP_CHECK_OK(np_go(deep_sleeper, NULL));
    while (atomic_load(&deep_started) < DEEP_TASKS)
        np_sleep(5 * NP_MILLISECOND);
    rss_during = rss_kib();
    atomic_store(&gate_open, 1);
    np__sched_stats st;
    do {
        np_sleep(5 * NP_MILLISECOND);
        np__sched_get_stats(&st);
    } while (st.started > 1); /* only this task still holds a stack */
    rss_after = rss_kib();
}

static void t_finished_stacks_do_not_stay_resident(void)
{
    np_config c = cfg_workers(2);
    long before = rss_kib();
    NP_CHECK_OK(np_run(&c, stacks_main, NULL));
    np__sched_stats st;
    np__sched_get_stats(&st);
    printf("  RSS: before %ld KiB, %d tasks alive %ld KiB, after they finished %ld KiB;"
           " stacks mapped %lu, unmapped %lu\n",
           before, DEEP_TASKS, rss_during, rss_after, st.stacks_mapped, st.stacks_unmapped);
    NP_CHECK_GE(st.stacks_mapped, DEEP_TASKS);
#if defined(NP_ASAN) || defined(NP_TSAN)
    /* Shadow memory and the allocator's quarantine dominate RSS here. */
    return;
#endif
    /* qemu-user may ignore madvise, and its translation cache counts. */
    if (getenv("NP_TEST_EMULATED"))
        return;
#ifdef NP_VALGRIND
    if (RUNNING_ON_VALGRIND) /* its shadow memory dominates RSS */
        return;
#endif
    /* 10,000 x 16 KiB were touched: over 160 MB while alive. */
    NP_CHECK_GT(rss_during - before, 10000L * 16);
    /* Afterwards only the warm pools (2 workers x 32 stacks x 20 KiB), the
     * cold pool's header pages (256 x 4 KiB) and 10,000 free task structs
     * remain: a few MB, not 160. The structs count in full: with
     * NP_CONTEXT=ucontext each holds a ucontext_t (about 1 KiB: over 10 MB). */
    NP_CHECK_LT(rss_after - before, 8 * 1024 + (long)(DEEP_TASKS * sizeof(np__task) / 1024) * 3 / 2);
}

#if !defined(NP_ASAN) && !defined(NP_TSAN)
static volatile int keep_going = 1;
static void recurse(int depth)
{
    volatile char pad[1024];
    pad[0] = (char)depth;
    if (keep_going) /* always: hides the unbounded recursion from -Werror */
        recurse(depth + 1);
    (void)pad[0];
}

static void overflow(void *arg)
{
    (void)arg;
    recurse(0);
}
#endif

static void t_stack_overflow_is_reported(void)
{
#if defined(NP_ASAN) || defined(NP_TSAN)
    NP_SKIP("the sanitizers handle stack overflow themselves");
#else
    int p[2];
    NP_CHECK_SYS(pipe(p));
    pid_t pid = fork();
    NP_CHECK(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        np_config c = { .workers = 2, .stack_size = 64 * 1024 };
        np_run(&c, overflow, NULL);
        _exit(0);
    }
    close(p[1]);
    char out[1024] = { 0 };
    size_t n = 0;
    ssize_t r;
    while (n < sizeof out - 1 && (r = read(p[0], out + n, sizeof out - 1 - n)) > 0)
        n += (size_t)r;
    close(p[0]);
    int st;
    NP_CHECK_EQ(waitpid(pid, &st, 0), pid);
    NP_CHECK(WIFSIGNALED(st));
    NP_CHECK_EQ(WTERMSIG(st), SIGABRT);
    NP_CHECK_MSG(strstr(out, "stack overflow") != NULL, "stderr was: %s", out);
#endif
}

static void t_context_kind(void)
{
#if defined(NP_CONTEXT_UCONTEXT)
    NP_CHECK_STR_EQ(np__ctx_kind(), "ucontext");
#elif defined(__x86_64__)
    NP_CHECK_STR_EQ(np__ctx_kind(), "asm-x86_64");
#elif defined(__aarch64__)
    NP_CHECK_STR_EQ(np__ctx_kind(), "asm-aarch64");
#endif
}

/* Callee-saved floating point state survives switches. */
static void fp_task(void *arg)
{
    volatile double x = (double)(intptr_t)arg;
    double acc = 0;
    for (int i = 0; i < 1000; i++) {
        acc += x * 0.5;
        np_yield();
    }
    NP_CHECK(acc == 500.0 * x);
}

static void fp_main(void *arg)
{
    (void)arg;
    for (int i = 1; i <= 16; i++)
        NP_CHECK_OK(np_go(fp_task, (void *)(intptr_t)i));
}

static void t_registers_survive_switches(void)
{
    np_config c = cfg_workers(2);
    NP_CHECK_OK(np_run(&c, fp_main, NULL));
}

/* ---- the migration hook after a hand-off ------------------------------------ */

/* A task whose worker was handed to another thread while it computed
 * (stall_ns 1 ms) still moves where np__sched_yield_to says (the hand-off
 * review: it used to be queued as a plain yield, anywhere). */
static void yield_to_after_handoff_main(void *arg)
{
    (void)arg;
    for (int target = 0; target < 2; target++) {
        int64_t until = np_now() + 30 * NP_MILLISECOND;
        while (np_now() < until) {
        }
        NP_CHECK_OK(np__sched_yield_to(target));
        NP_CHECK_EQ(np__sched_worker_id(), target);
    }
}

static void t_yield_to_after_handoff(void)
{
    np_config c = cfg_workers(2);
    c.stall_ns = NP_MILLISECOND;
    NP_CHECK_OK(np_run(&c, yield_to_after_handoff_main, NULL));
}

NP_TEST_LIST(
    NP_CASE(t_yield_to_after_handoff),
    NP_CASE(t_context_kind),
    NP_CASE(t_run_returns_after_all_tasks),
    NP_CASE(t_bad_config_and_misuse),
    NP_CASE(t_100k_tasks_spawned_and_finished),
    NP_CASE(t_ping_pong_across_workers),
    NP_CASE(t_task_parks_on_socket),
    NP_CASE(t_foreign_go_wakes_idle_workers),
    NP_CASE(t_sleep_never_early),
    NP_CASE(t_yield_loop_starves_no_one),
    NP_CASE(t_stealing_under_imbalance),
    NP_CASE(t_migration_every_yield),
    NP_CASE(t_no_task_on_two_workers),
    NP_CASE(t_registers_survive_switches),
    NP_CASE(t_finished_stacks_do_not_stay_resident),
    NP_CASE(t_stack_overflow_is_reported))
