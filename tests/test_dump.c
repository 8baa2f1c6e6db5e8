/* np_dump and np_config.dump_signal (issue 14, "nothing to look at").
 *
 *   bad_input          -ESRCH with no runtime, -EBADF for fd < 0, -EINVAL
 *                      for a dump signal the runtime cannot take
 *   entries            tasks parked in np_read (with a deadline), np_sleep,
 *                      np_chan_recv, np_mutex_lock, np_waitgroup_wait,
 *                      np_wait_fd and np_offload, a spinner, the caller:
 *                      each entry's state, object, duration and deadline,
 *                      and backtraces naming the test's functions
 *   readied            a task readied but not yet run is "runnable"
 *   moved_stack        a task whose idle stack was moved out is walked in
 *                      its copy
 *   signal_usr1        kill -USR1 with dump_signal = SIGUSR1 dumps to stderr
 *                      and the program carries on
 *   signal_quit        kill -QUIT with dump_signal = SIGQUIT dumps, then the
 *                      process dies of SIGQUIT
 *   race_dumpers       plain threads dump in a loop while tasks start, park
 *                      and end and the runtime ends under them: 0 or -ESRCH,
 *                      no crash (run under TSan and ASan)
 *
 * The functions a backtrace must name are external and never inlined.
 */
#include <errno.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netpoll.h"
#include "np_test.h"

#if defined(__clang__)
#define NOINLINE __attribute__((noinline, optnone)) /* clang has no noipa */
#else
#define NOINLINE __attribute__((noinline, noipa))
#endif

/* External, so that every backtrace can name them. */
void dumptest_reader(void *arg);
void dumptest_sleeper(void *arg);
void dumptest_chan_receiver(void *arg);
void dumptest_locker(void *arg);
void dumptest_wg_waiter(void *arg);
void dumptest_fd_waiter(void *arg);
void dumptest_blocking_job(void *arg);
void dumptest_offloader(void *arg);
void dumptest_spinner(void *arg);
const char *dumptest_dump_when_parked(void);
void dumptest_main(void *arg);
void dumptest_ready_reader(void *arg);
void dumptest_ready_main(void *arg);
void dumptest_moved_main(void *arg);
void dumptest_signal_helper(void *arg);
void dumptest_signal_main(void *arg);
void dumptest_churner(void *arg);

/* ---- reading a dump ------------------------------------------------------------ */

static char dumpbuf[1 << 20];

/* np_dump into a memory file; the text, NUL-terminated, in dumpbuf. */
static const char *take_dump(void)
{
    int fd = memfd_create("dump", 0);
    NP_CHECK(fd >= 0);
    NP_CHECK_OK(np_dump(fd));
    off_t len = lseek(fd, 0, SEEK_CUR);
    NP_CHECK(len > 0 && (size_t)len < sizeof dumpbuf);
    NP_CHECK_EQ(pread(fd, dumpbuf, (size_t)len, 0), len);
    dumpbuf[len] = 0;
    close(fd);
    return dumpbuf;
}

/* The entry of task id (its header line and frames), copied into out. */
static bool entry_of(const char *dump, int64_t id, char *out, size_t outlen)
{
    char head[32];
    snprintf(head, sizeof head, "task %lld (", (long long)id);
    const char *p = dump;
    size_t hl = strlen(head);
    while (p && strncmp(p, head, hl) != 0) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    if (!p)
        return false;
    const char *end = strchr(p, '\n');
    while (end && strncmp(end + 1, "    ", 4) == 0)
        end = strchr(end + 1, '\n');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, p, n);
    out[n] = 0;
    return true;
}

/* Seconds after `key` in s ("for 1.204 s" -> 1.204), or -1. */
static double secs_after(const char *s, const char *key)
{
    const char *p = strstr(s, key);
    return p ? strtod(p + strlen(key), NULL) : -1;
}

#define CHECK_HAS(s, sub) NP_CHECK_MSG(strstr((s), (sub)) != NULL, "no \"%s\" in:\n%s", (sub), (s))

static void bad_input(void)
{
    NP_CHECK_EQ(np_dump(1), -ESRCH);
    NP_CHECK_EQ(np_dump(-1), -EBADF);
    int bad[] = { -1, SIGKILL, SIGSTOP, SIGSEGV, NSIG, 100000 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        np_config cfg = { .workers = 1, .dump_signal = bad[i] };
        NP_CHECK_EQ(np_run(&cfg, (void (*)(void *))abort, NULL), -EINVAL);
    }
}

/* ---- entries ------------------------------------------------------------------- */

static np_conn rconn;
static np_chan chan;
static np_mutex mtx = NP_MUTEX_INIT;
static np_waitgroup wg = NP_WAITGROUP_INIT;
static int wait_fd_pipe[2];
static _Atomic int stop_spin, offload_release;

NOINLINE void dumptest_reader(void *arg)
{
    (void)arg;
    char b;
    NP_CHECK_EQ(np_read(rconn, &b, 1), 1);
}

NOINLINE void dumptest_sleeper(void *arg)
{
    int64_t ns = arg ? *(int64_t *)arg : 30 * NP_SECOND;
    NP_CHECK_OK(np_sleep(ns));
}

NOINLINE void dumptest_chan_receiver(void *arg)
{
    (void)arg;
    int v;
    NP_CHECK_EQ(np_chan_recv(chan, &v, 0), 0);
}

NOINLINE void dumptest_locker(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_mutex_lock(&mtx));
    NP_CHECK_OK(np_mutex_unlock(&mtx));
}

NOINLINE void dumptest_wg_waiter(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_waitgroup_wait(&wg, 0));
}

NOINLINE void dumptest_fd_waiter(void *arg)
{
    (void)arg;
    NP_CHECK(np_wait_fd(wait_fd_pipe[0], NP_READABLE, 0) >= 0);
}

NOINLINE void dumptest_blocking_job(void *arg)
{
    (void)arg;
    while (!atomic_load(&offload_release))
        usleep(1000);
}

NOINLINE void dumptest_offloader(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_offload(dumptest_blocking_job, NULL));
}

NOINLINE void dumptest_spinner(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_spin))
        np_yield();
}

enum { T_MAIN = 1, T_READER, T_SLEEPER, T_CHAN, T_LOCKER, T_WG, T_FD, T_OFFLOAD, T_SPIN, NTASKS = T_SPIN };

/* Dumps until every task is in the state its test expects (they get
 * there on their own time): the dump in which they all are. */
NOINLINE const char *dumptest_dump_when_parked(void)
{
    static const char *const want[] = {
        [T_READER] = "parked in np_read", [T_SLEEPER] = "parked in np_sleep",
        [T_CHAN] = "parked in np_chan_recv", [T_LOCKER] = "parked in np_mutex_lock",
        [T_WG] = "parked in np_waitgroup_wait", [T_FD] = "parked in np_wait_fd",
        [T_OFFLOAD] = "parked in np_offload",
    };
    int64_t until = np_now() + 20 * NP_SECOND;
    for (;;) {
        const char *d = take_dump();
        bool all = true;
        char e[8192];
        for (int id = T_READER; id <= T_OFFLOAD && all; id++)
            all = entry_of(d, id, e, sizeof e) && strstr(e, want[id]);
        if (all)
            return d;
        NP_CHECK_MSG(np_now() < until, "tasks never all parked; last dump:\n%s", d);
        np_sleep(NP_MILLISECOND);
    }
}

NOINLINE void dumptest_main(void *arg)
{
    (void)arg;
    int sv[2];
    NP_CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    NP_CHECK_OK(np_conn_from_fd(&rconn, sv[0]));
    NP_CHECK_OK(np_set_read_deadline(rconn, np_now() + 60 * NP_SECOND));
    NP_CHECK_OK(np_chan_make(&chan, sizeof(int), 0));
    NP_CHECK_OK(pipe(wait_fd_pipe));
    NP_CHECK_OK(np_mutex_lock(&mtx));
    NP_CHECK_OK(np_waitgroup_add(&wg, 1));
    NP_CHECK_OK(np_go(dumptest_reader, NULL));
    NP_CHECK_OK(np_go(dumptest_sleeper, NULL));
    NP_CHECK_OK(np_go(dumptest_chan_receiver, NULL));
    NP_CHECK_OK(np_go(dumptest_locker, NULL));
    NP_CHECK_OK(np_go(dumptest_wg_waiter, NULL));
    NP_CHECK_OK(np_go(dumptest_fd_waiter, NULL));
    NP_CHECK_OK(np_go(dumptest_offloader, NULL));
    NP_CHECK_OK(np_go(dumptest_spinner, NULL));
    np_sleep(250 * NP_MILLISECOND); /* some age for the parks (not a sync) */
    const char *d = dumptest_dump_when_parked();
    char e[8192];

    CHECK_HAS(d, "netpoll: np_dump: 2 workers\n");
    char footer[64];
    snprintf(footer, sizeof footer, "netpoll: np_dump: %d tasks\n", NTASKS);
    CHECK_HAS(d, footer);

    NP_CHECK(entry_of(d, T_MAIN, e, sizeof e));
    CHECK_HAS(e, "task 1 (dumptest_main+0x0): running on worker ");
    CHECK_HAS(e, "(it called np_dump)");
    /* np_dump tail-calls the dump: either may be the frame. */
    NP_CHECK_MSG(strstr(e, "\n    np_dump+") || strstr(e, "\n    dump+"), "%s", e);
    CHECK_HAS(e, "\n    dumptest_dump_when_parked+");
    CHECK_HAS(e, "\n    dumptest_main+");

    NP_CHECK(entry_of(d, T_READER, e, sizeof e));
    char want[128];
    snprintf(want, sizeof want, "(dumptest_reader+0x0): parked in np_read on conn fd %d for ", sv[0]);
    CHECK_HAS(e, want);
    double dl = secs_after(e, "deadline in ");
    NP_CHECK_MSG(dl > 50 && dl <= 60, "deadline %f in:\n%s", dl, e);
    /* np_read tail-calls its loop: either may be the frame. */
    NP_CHECK_MSG(strstr(e, "\n    np_read+") || strstr(e, "\n    read_loop+"), "%s", e);
    CHECK_HAS(e, "\n    np__pd_wait");
    CHECK_HAS(e, "\n    dumptest_reader+");

    NP_CHECK(entry_of(d, T_SLEEPER, e, sizeof e));
    CHECK_HAS(e, "(dumptest_sleeper+0x0): parked in np_sleep for ");
    double age = secs_after(e, " for ");
    NP_CHECK_MSG(age >= 0.2 && age < 20, "age %f in:\n%s", age, e);
    dl = secs_after(e, "deadline in ");
    NP_CHECK_MSG(dl > 5 && dl <= 30, "deadline %f in:\n%s", dl, e);
    CHECK_HAS(e, "\n    np_sleep"); /* np_sleep tail-calls np_sleep_until */
    CHECK_HAS(e, "\n    dumptest_sleeper+");

    NP_CHECK(entry_of(d, T_CHAN, e, sizeof e));
    CHECK_HAS(e, "parked in np_chan_recv on chan 0x");
    NP_CHECK(!strstr(e, "deadline"));
    CHECK_HAS(e, "\n    np__wait_park+"); /* np_chan_recv's own frame is a tail call */
    CHECK_HAS(e, "\n    dumptest_chan_receiver+");

    NP_CHECK(entry_of(d, T_LOCKER, e, sizeof e));
    snprintf(want, sizeof want, "parked in np_mutex_lock on mutex %p for ", (void *)&mtx);
    CHECK_HAS(e, want);
    CHECK_HAS(e, "\n    dumptest_locker+");

    NP_CHECK(entry_of(d, T_WG, e, sizeof e));
    snprintf(want, sizeof want, "parked in np_waitgroup_wait on waitgroup %p for ", (void *)&wg);
    CHECK_HAS(e, want);
    CHECK_HAS(e, "\n    dumptest_wg_waiter+");

    NP_CHECK(entry_of(d, T_FD, e, sizeof e));
    snprintf(want, sizeof want, "parked in np_wait_fd on fd %d for ", wait_fd_pipe[0]);
    CHECK_HAS(e, want);
    CHECK_HAS(e, "\n    dumptest_fd_waiter+");

    NP_CHECK(entry_of(d, T_OFFLOAD, e, sizeof e));
    CHECK_HAS(e, "parked in np_offload running dumptest_blocking_job+0x0 for ");
    CHECK_HAS(e, "\n    dumptest_offloader+");

    NP_CHECK(entry_of(d, T_SPIN, e, sizeof e));
    NP_CHECK_MSG(strstr(e, "): runnable\n    ") || strstr(e, "): running on worker "),
                 "spinner:\n%s", e);
    /* Its frames are not checked: with two workers it may start running
     * while its stack is read (a torn snapshot, which is allowed). The
     * readied case checks a runnable task's frames with one worker. */

    /* Let everyone go. */
    NP_CHECK_EQ(write(sv[1], "x", 1), 1);
    int v = 1;
    NP_CHECK_OK(np_chan_send(chan, &v, 0));
    NP_CHECK_OK(np_mutex_unlock(&mtx));
    NP_CHECK_OK(np_waitgroup_done(&wg));
    NP_CHECK_EQ(write(wait_fd_pipe[1], "x", 1), 1);
    atomic_store(&offload_release, 1);
    atomic_store(&stop_spin, 1);
    /* The sleeper sleeps on; the dump after the others finish shows it
     * alone beside us. */
    int64_t until = np_now() + 20 * NP_SECOND;
    for (;;) {
        d = take_dump();
        if (strstr(d, "netpoll: np_dump: 2 tasks\n"))
            break;
        NP_CHECK_MSG(np_now() < until, "tasks never finished; last dump:\n%s", d);
        np_sleep(NP_MILLISECOND);
    }
    NP_CHECK(entry_of(d, T_SLEEPER, e, sizeof e));
    NP_CHECK(!entry_of(d, T_READER, e, sizeof e));
    /* Cut the sleep short: end the run. */
    NP_CHECK_OK(np_close(rconn));
    close(sv[1]);
    close(wait_fd_pipe[0]);
    close(wait_fd_pipe[1]);
    NP_CHECK_OK(np_chan_free(chan));
    _exit(0); /* the sleeper has 30 s to go; the case is done */
}

static void entries(void)
{
    np_config cfg = { .workers = 2 };
    NP_CHECK_OK(np_run(&cfg, dumptest_main, NULL));
}

/* ---- readied ------------------------------------------------------------------- */

static np_conn ready_conn;

NOINLINE void dumptest_ready_reader(void *arg)
{
    (void)arg;
    char b;
    NP_CHECK_EQ(np_read(ready_conn, &b, 1), 1);
}

NOINLINE void dumptest_ready_main(void *arg)
{
    (void)arg;
    int sv[2];
    NP_CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    NP_CHECK_OK(np_conn_from_fd(&ready_conn, sv[0]));
    NP_CHECK_OK(np_go(dumptest_ready_reader, NULL));
    char e[8192];
    int64_t until = np_now() + 20 * NP_SECOND;
    while (!(entry_of(take_dump(), 2, e, sizeof e) && strstr(e, "parked in np_read"))) {
        NP_CHECK_MSG(np_now() < until, "never parked:\n%s", dumpbuf);
        np_sleep(NP_MILLISECOND);
    }
    /* One worker: once a poll (on a yield's fairness tick) has seen the
     * byte, the reader is queued behind us, readied but not running, for
     * as long as we do not park. */
    NP_CHECK_EQ(write(sv[1], "x", 1), 1);
    until = np_now() + 20 * NP_SECOND;
    for (;;) {
        const char *d = take_dump();
        if (entry_of(d, 2, e, sizeof e) && strstr(e, "runnable (readied in np_read on conn fd")) {
            CHECK_HAS(e, "\n    dumptest_ready_reader+");
            break;
        }
        NP_CHECK_MSG(entry_of(d, 2, e, sizeof e), "reader ran before it was seen readied");
        NP_CHECK_MSG(np_now() < until, "never readied:\n%s", d);
        np_yield();
    }
    NP_CHECK_OK(np_close(ready_conn));
    close(sv[1]);
}

static void readied(void)
{
    /* No monitor: a dump that took over stall_ns (sanitizers, a loaded
     * machine) would have the worker handed to a spare thread, which runs
     * the reader while this task is still busy. */
    np_config cfg = { .workers = 1, .stall_ns = -1 };
    NP_CHECK_OK(np_run(&cfg, dumptest_ready_main, NULL));
}

/* ---- moved_stack ------------------------------------------------------------------ */

NOINLINE void dumptest_moved_main(void *arg)
{
    (void)arg;
    static int64_t long_sleep = 600 * NP_SECOND;
    NP_CHECK_OK(np_go(dumptest_sleeper, &long_sleep));
    char e[8192];
    int64_t until = np_now() + 20 * NP_SECOND;
    for (;;) {
        const char *d = take_dump();
        if (entry_of(d, 2, e, sizeof e) && strstr(e, "moved out while idle: frames read from its copy"))
            break;
        NP_CHECK_MSG(np_now() < until, "stack never moved:\n%s", d);
        np_sleep(5 * NP_MILLISECOND);
    }
    CHECK_HAS(e, "parked in np_sleep for ");
    CHECK_HAS(e, "\n    np_sleep"); /* np_sleep tail-calls np_sleep_until */
    CHECK_HAS(e, "\n    dumptest_sleeper+");
    _exit(0);
}

static void moved_stack(void)
{
    np_config cfg = { .workers = 1, .idle_stack_ns = 10 * NP_MILLISECOND };
    NP_CHECK_OK(np_run(&cfg, dumptest_moved_main, NULL));
}

/* ---- the dump signal -------------------------------------------------------------- */

static int ready_pipe[2];
static int signo_for_child;

/* Tells the parent to signal once the main task and the sleeper are
 * parked, then sleeps too (its own state at the signal is not checked). */
NOINLINE void dumptest_signal_helper(void *arg)
{
    (void)arg;
    char e[8192];
    int64_t until = np_now() + 20 * NP_SECOND;
    for (;;) {
        const char *d = take_dump();
        if (entry_of(d, 1, e, sizeof e) && strstr(e, "parked in np_read") &&
            entry_of(d, 2, e, sizeof e) && strstr(e, "parked in np_sleep"))
            break;
        NP_CHECK_MSG(np_now() < until, "never parked:\n%s", d);
        np_sleep(NP_MILLISECOND);
    }
    NP_CHECK_EQ(write(ready_pipe[1], "r", 1), 1);
    np_sleep(60 * NP_SECOND);
}

NOINLINE void dumptest_signal_main(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_go(dumptest_sleeper, NULL));
    NP_CHECK_OK(np_go(dumptest_signal_helper, NULL));
    /* Carry on after the signal until told to stop (SIGUSR1), or die of
     * it (SIGQUIT). */
    char c;
    np_conn in;
    NP_CHECK_OK(np_conn_from_fd(&in, ready_pipe[0]));
    (void)np_read(in, &c, 1);
    _exit(signo_for_child == SIGUSR1 ? 42 : 1);
}

/* Runs a child with dump_signal = sig, signals it once it runs, and returns
 * its stderr in dumpbuf and its wait status. */
static int signal_child(int sig)
{
    int err[2], go[2];
    NP_CHECK_OK(pipe(err));
    NP_CHECK_OK(pipe(ready_pipe)); /* child -> parent: ready */
    NP_CHECK_OK(pipe(go));         /* parent -> child: finish */
    pid_t pid = fork();
    NP_CHECK(pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = { 0, 0 };
        setrlimit(RLIMIT_CORE, &no_core);
        dup2(err[1], STDERR_FILENO);
        close(err[0]);
        close(ready_pipe[0]);
        close(go[1]);
        ready_pipe[0] = go[0];
        signo_for_child = sig;
        np_config cfg = { .workers = 2, .dump_signal = sig };
        np_run(&cfg, dumptest_signal_main, NULL);
        _exit(3);
    }
    close(err[1]);
    close(ready_pipe[1]);
    close(go[0]);
    char c;
    NP_CHECK_EQ(read(ready_pipe[0], &c, 1), 1);
    NP_CHECK_OK(kill(pid, sig));
    size_t len = 0;
    bool told = false;
    for (;;) {
        /* A child that never dies of its signal must not hang the test. */
        struct pollfd pf = { .fd = err[0], .events = POLLIN };
        if (poll(&pf, 1, 30000) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            dumpbuf[len] = 0;
            NP_CHECK_MSG(false, "child (signal %d) still alive after 30 s; stderr:\n%s", sig, dumpbuf);
        }
        ssize_t n = read(err[0], dumpbuf + len, sizeof dumpbuf - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        dumpbuf[len] = 0;
        if (sig == SIGUSR1 && strstr(dumpbuf, " tasks\n") && !told) {
            told = true;
            NP_CHECK_EQ(write(go[1], "s", 1), 1); /* the dump is out: finish */
        }
    }
    dumpbuf[len] = 0;
    int st;
    NP_CHECK_EQ(waitpid(pid, &st, 0), pid);
    close(err[0]);
    close(ready_pipe[0]);
    close(go[1]);
    return st;
}

static void check_signal_dump(const char *d)
{
    char e[8192];
    CHECK_HAS(d, "netpoll: np_dump: 2 workers\n");
    CHECK_HAS(d, "netpoll: np_dump: 3 tasks\n");
    NP_CHECK_MSG(entry_of(d, 2, e, sizeof e), "no task 2 in:\n%s", d);
    CHECK_HAS(e, "task 2 (dumptest_sleeper+0x0): parked in np_sleep for ");
    CHECK_HAS(e, "\n    dumptest_sleeper+");
    NP_CHECK_MSG(entry_of(d, 1, e, sizeof e), "no task 1 in:\n%s", d);
    CHECK_HAS(e, "task 1 (dumptest_signal_main+0x0): parked in np_read on conn fd ");
    CHECK_HAS(e, "\n    dumptest_signal_main+");
}

static void signal_usr1(void)
{
    int st = signal_child(SIGUSR1);
    check_signal_dump(dumpbuf);
    NP_CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 42, "status %#x, stderr:\n%s", st, dumpbuf);
}

static void signal_quit(void)
{
    int st = signal_child(SIGQUIT);
    check_signal_dump(dumpbuf);
    NP_CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGQUIT, "status %#x, stderr:\n%s", st,
                 dumpbuf);
}

/* ---- race_dumpers ---------------------------------------------------------------- */

static _Atomic int race_stop;
static np_chan race_chan;

NOINLINE void dumptest_churner(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    int v = 0;
    switch (i % 3) {
    case 0:
        np_sleep((int64_t)(i % 7) * 100 * NP_MICROSECOND);
        break;
    case 1:
        (void)np_chan_recv(race_chan, &v, np_now() + NP_MILLISECOND);
        break;
    default:
        (void)np_chan_send(race_chan, &v, np_now() + NP_MILLISECOND);
        np_yield();
        break;
    }
}

static void race_main(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_chan_make(&race_chan, sizeof(int), 0));
    int64_t until = np_now() + 1500 * NP_MILLISECOND;
    for (uintptr_t i = 0; np_now() < until; i++) {
        NP_CHECK_OK(np_go(dumptest_churner, (void *)i));
        if (i % 64 == 0)
            np_sleep(NP_MILLISECOND);
    }
}

static void *dumper_thread(void *arg)
{
    int fd = *(int *)arg;
    long ok = 0;
    while (!atomic_load(&race_stop)) {
        int rc = np_dump(fd);
        NP_CHECK_MSG(rc == 0 || rc == -ESRCH, "np_dump: %d", rc);
        ok += rc == 0;
        lseek(fd, 0, SEEK_SET);
    }
    return (void *)ok;
}

static void race_dumpers(void)
{
    int fds[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        fds[i] = memfd_create("race", 0);
        NP_CHECK(fds[i] >= 0);
        NP_CHECK_OK(pthread_create(&th[i], NULL, dumper_thread, &fds[i]));
    }
    for (int run = 0; run < 2; run++) {
        np_config cfg = { .workers = 2 };
        NP_CHECK_OK(np_run(&cfg, race_main, NULL));
    }
    atomic_store(&race_stop, 1);
    long dumps = 0;
    for (int i = 0; i < 2; i++) {
        void *r;
        NP_CHECK_OK(pthread_join(th[i], &r));
        dumps += (long)r;
        close(fds[i]);
    }
    NP_CHECK_GT(dumps, 0);
}

NP_TEST_LIST(NP_CASE(bad_input), NP_CASE(entries), NP_CASE(readied), NP_CASE(moved_stack),
             NP_CASE(signal_usr1), NP_CASE(signal_quit), NP_CASE(race_dumpers))
