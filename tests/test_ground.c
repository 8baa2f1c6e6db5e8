/* Regressions from the ground-work review and soak (issue 11, part A): one
 * case per defect, each written to fail before its fix.
 *
 *   a1  a deadline already past is applied to a call that need not block
 *   a2  np_dial never returns another thread's errno (many dials, 4 workers)
 *   a3  a Unix dial to a listener whose backlog is full fails at once
 *   a4  np_run's return invalidates every handle; no runtime: -ESRCH
 *   a5  a connection left open after a deadline-ended wait (poll backend)
 *   a6  a Unix listener's file is removed by np_listener_close at once;
 *       also when two threads close it at once, the one that gets -EBADF
 *       included (found by api_fuzz)
 *   a7  extreme values: np_strerror(INT_MIN), idle_stack_ns = INT64_MAX,
 *       lengths over SSIZE_MAX
 *   a9  the SIGSEGV handler chains to the program's and restores only its own
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netpoll.h"
#include "np_test.h"
#include "base/sanitizer.h"

typedef void (*body_fn)(void);
static void run_body(void *arg)
{
    ((body_fn)arg)();
}

static void run_with(int workers, body_fn fn)
{
    np_config c = { .workers = workers };
    NP_CHECK_OK(np_run(&c, run_body, (void *)fn));
}

/* Burns the CPU without yielding until `until`: the worker cannot run its
 * timers meanwhile, which is the point. */
static void compute_until(int64_t until)
{
    while (np_now() < until) {
    }
}

/* A connected TCP pair on loopback (one worker suffices: the kernel
 * completes the handshake into the backlog before accept runs). */
static void tcp_pair(np_conn *a, np_conn *b)
{
    np_listener l;
    char addr[64];
    NP_CHECK_OK(np_listen(&l, "tcp", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(l, addr, sizeof addr));
    NP_CHECK_OK(np_dial(a, "tcp", addr, 0));
    NP_CHECK_OK(np_accept(l, b));
    NP_CHECK_OK(np_listener_close(l));
}

/* ---- a1 ------------------------------------------------------------------ */

static void a1_body(void)
{
    np_conn a, b;
    tcp_pair(&a, &b);
    char c = 'x';

    /* Write: the socket has room, so the call need not block. */
    NP_CHECK_OK(np_set_write_deadline(a, np_now() + 5 * NP_MILLISECOND));
    compute_until(np_now() + 50 * NP_MILLISECOND);
    NP_CHECK_EQ(np_write(a, &c, 1), -ETIMEDOUT);

    /* Read with data waiting. */
    NP_CHECK_EQ(np_write(b, &c, 1), 1);
    NP_CHECK_OK(np_set_read_deadline(a, np_now() + 5 * NP_MILLISECOND));
    compute_until(np_now() + 50 * NP_MILLISECOND);
    NP_CHECK_EQ(np_read(a, &c, 1), -ETIMEDOUT);
    NP_CHECK_EQ(np_wait_readable(a), -ETIMEDOUT);

    /* Moving the deadline away makes the data readable again. */
    NP_CHECK_OK(np_set_read_deadline(a, 0));
    NP_CHECK_EQ(np_read(a, &c, 1), 1);

    /* Accept with a connection queued. */
    np_listener l;
    char addr[64];
    NP_CHECK_OK(np_listen(&l, "tcp", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(l, addr, sizeof addr));
    np_conn d, e;
    NP_CHECK_OK(np_dial(&d, "tcp", addr, 0));
    NP_CHECK_OK(np_listener_set_deadline(l, np_now() + 5 * NP_MILLISECOND));
    compute_until(np_now() + 50 * NP_MILLISECOND);
    NP_CHECK_EQ(np_accept(l, &e), -ETIMEDOUT);

    NP_CHECK_OK(np_close(d));
    NP_CHECK_OK(np_listener_close(l));
    NP_CHECK_OK(np_close(a));
    NP_CHECK_OK(np_close(b));
}

static void a1_past_deadline_applies_without_blocking(void)
{
    run_with(1, a1_body);
}

/* ---- a2 ------------------------------------------------------------------ */

enum { A2_DIALERS = 64, A2_DIALS = 40 };
static char a2_addr[64];
static np_listener a2_l;
static _Atomic int a2_bad, a2_first_bad, a2_left;

static void a2_acceptor(void *arg)
{
    (void)arg;
    np_conn c;
    while (np_accept(a2_l, &c) == 0)
        np_close(c);
}

static void a2_dialer(void *arg)
{
    (void)arg;
    for (int i = 0; i < A2_DIALS; i++) {
        np_conn c;
        int rc = np_dial(&c, "tcp", a2_addr, np_now() + 20 * NP_SECOND);
        if (rc == 0) {
            np_close(c);
        } else {
            int zero = 0;
            atomic_compare_exchange_strong(&a2_first_bad, &zero, rc);
            atomic_fetch_add(&a2_bad, 1);
        }
        if (i % 4 == 0)
            np_yield(); /* let tasks migrate between workers */
    }
    if (atomic_fetch_sub(&a2_left, 1) == 1)
        np_listener_close(a2_l);
}

static void a2_body(void)
{
    NP_CHECK_OK(np_listen(&a2_l, "tcp", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(a2_l, a2_addr, sizeof a2_addr));
    atomic_store(&a2_left, A2_DIALERS);
    NP_CHECK_OK(np_go(a2_acceptor, NULL));
    for (int i = 0; i < A2_DIALERS; i++)
        NP_CHECK_OK(np_go(a2_dialer, NULL));
}

static void a2_dial_errors_are_the_callers(void)
{
    run_with(4, a2_body);
    NP_CHECK_MSG(atomic_load(&a2_bad) == 0, "%d dials failed, the first with %s",
                 atomic_load(&a2_bad), np_strerror(atomic_load(&a2_first_bad)));
}

/* ---- a3 ------------------------------------------------------------------ */

static char a3_path[108];

static void a3_body(void)
{
    np_listener l;
    NP_CHECK_OK(np_listen(&l, "unix", a3_path));
    /* Fill the backlog (at most somaxconn) without accepting. */
    enum { MAX = 8192 };
    static np_conn conns[MAX];
    int n = 0, rc = 0;
    int64_t t0 = np_now();
    for (; n < MAX; n++) {
        rc = np_dial(&conns[n], "unix", a3_path, np_now() + 5 * NP_SECOND);
        if (rc < 0)
            break;
    }
    int64_t took = np_now() - t0;
    NP_CHECK_MSG(n < MAX, "the backlog never filled");
    NP_CHECK_MSG(rc == -EAGAIN, "dial %d: %s, expected EAGAIN", n, np_strerror(rc));
    NP_CHECK_LT(took, 4 * NP_SECOND); /* it did not wait for the deadline */
    for (int i = 0; i < n; i++)
        NP_CHECK_OK(np_close(conns[i]));
    NP_CHECK_OK(np_listener_close(l));
}

static void a3_unix_dial_full_backlog_fails(void)
{
    snprintf(a3_path, sizeof a3_path, "/tmp/np_ground_a3_%d.sock", (int)getpid());
    unlink(a3_path);
    run_with(2, a3_body);
}

/* ---- a4, a5 ---------------------------------------------------------------- */

static np_listener a4_l;
static np_conn a4_c, a4_s;

static void a4_first(void)
{
    char addr[64];
    NP_CHECK_OK(np_listen(&a4_l, "tcp", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(a4_l, addr, sizeof addr));
    NP_CHECK_OK(np_dial(&a4_c, "tcp", addr, 0));
    NP_CHECK_OK(np_accept(a4_l, &a4_s));
    /* The last wait of a4_c ends by its deadline (a5 on the poll backend). */
    char b;
    NP_CHECK_OK(np_set_read_deadline(a4_c, np_now() + 10 * NP_MILLISECOND));
    NP_CHECK_EQ(np_read(a4_c, &b, 1), -ETIMEDOUT);
    /* Returns with all three open. */
}

static void a4_second(void)
{
    char b = 'x';
    np_conn c;
    NP_CHECK_EQ(np_read(a4_c, &b, 1), -EBADF);
    NP_CHECK_EQ(np_write(a4_s, &b, 1), -EBADF);
    NP_CHECK_EQ(np_accept(a4_l, &c), -EBADF);
    NP_CHECK_EQ(np_close(a4_c), -EBADF);
    NP_CHECK_EQ(np_listener_close(a4_l), -EBADF);
}

static int count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            n++;
    return n;
}

static void a4_handles_die_with_their_run(void)
{
    int fds = count_fds();
    np_listener l;
    char buf[64];
    /* No runtime: the calls that need one say so. */
    NP_CHECK_EQ(np_listen(&l, "tcp", "127.0.0.1:0"), -ESRCH);
    run_with(2, a4_first);
    NP_CHECK_EQ(count_fds(), fds); /* the run closed what was left open */
    NP_CHECK_EQ(np_remote_addr(a4_c, buf, sizeof buf), -EBADF);
    NP_CHECK_EQ(np_listener_addr(a4_l, buf, sizeof buf), -EBADF);
    run_with(2, a4_second);
    NP_CHECK_EQ(count_fds(), fds);
}

/* ---- a6 ------------------------------------------------------------------ */

static char a6_path[108];
static np_listener a6_l;
static _Atomic int a6_accept_rc = 1;

static void a6_acceptor(void *arg)
{
    (void)arg;
    np_conn c;
    atomic_store(&a6_accept_rc, np_accept(a6_l, &c));
}

static void a6_body(void)
{
    NP_CHECK_OK(np_listen(&a6_l, "unix", a6_path));
    /* The wrong kind of handle for the close: -EBADF at once, and the live
     * listener keeps its file (this hung before: the -EBADF path waited
     * for an unlink that only a close of the listener does). */
    NP_CHECK_EQ(np_close((np_conn){ a6_l.id }), -EBADF);
    NP_CHECK_OK(np_go(a6_acceptor, NULL));
    np_yield(); /* one worker: the acceptor runs and blocks */
    NP_CHECK_EQ(atomic_load(&a6_accept_rc), 1);
    NP_CHECK_OK(np_listener_close(a6_l));
    /* The acceptor has not run since: its reference is still held. */
    struct stat st;
    NP_CHECK_MSG(stat(a6_path, &st) < 0, "the socket file outlives np_listener_close");
    np_listener again;
    NP_CHECK_OK(np_listen(&again, "unix", a6_path));
    np_sleep(20 * NP_MILLISECOND); /* the acceptor finishes */
    NP_CHECK_EQ(atomic_load(&a6_accept_rc), -ECANCELED);
    /* Its late release did not take the new listener's file. */
    NP_CHECK_OK(stat(a6_path, &st));
    np_conn c, s;
    NP_CHECK_OK(np_dial(&c, "unix", a6_path, 0));
    NP_CHECK_OK(np_accept(again, &s));
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
    NP_CHECK_OK(np_listener_close(again));
    NP_CHECK(stat(a6_path, &st) < 0);
}

static void a6_unix_file_removed_at_close(void)
{
    snprintf(a6_path, sizeof a6_path, "/tmp/np_ground_a6_%d.sock", (int)getpid());
    unlink(a6_path);
    run_with(1, a6_body);
}

/* Two plain threads close one Unix listener at the same moment. Whichever
 * loses gets -EBADF, and may look at the path as soon as it has: the file
 * must be gone for both (as with Go's second Close, which waits on the
 * first one's unlink). Before the fix the loser could return while the
 * winner was between marking the fd closed and unlinking. */
typedef struct a6r {
    np_listener l;
    char path[108];
    _Atomic int go, ready, lingering, zero_rcs;
} a6r;

static void *a6r_closer(void *p)
{
    a6r *r = p;
    atomic_fetch_add(&r->ready, 1);
    while (!atomic_load(&r->go)) {
    }
    int rc = np_listener_close(r->l);
    if (rc == 0)
        atomic_fetch_add(&r->zero_rcs, 1);
    else
        NP_CHECK_MSG(rc == -EBADF, "np_listener_close: %d", rc);
    if (access(r->path, F_OK) == 0)
        atomic_fetch_add(&r->lingering, 1);
    return NULL;
}

static void a6r_body(void)
{
    a6r r;
    int lingering = 0;
    for (int i = 0; i < 500; i++) {
        memset(&r, 0, sizeof r);
        snprintf(r.path, sizeof r.path, "/tmp/np_ground_a6r_%d.sock", (int)getpid());
        unlink(r.path);
        NP_CHECK_OK(np_listen(&r.l, "unix", r.path));
        pthread_t th[2];
        for (int k = 0; k < 2; k++)
            NP_CHECK_OK(pthread_create(&th[k], NULL, a6r_closer, &r));
        while (atomic_load(&r.ready) < 2)
            np_yield();
        atomic_store(&r.go, 1);
        for (int k = 0; k < 2; k++)
            NP_CHECK_OK(pthread_join(th[k], NULL));
        NP_CHECK_EQ(atomic_load(&r.zero_rcs), 1);
        lingering += atomic_load(&r.lingering);
        unlink(r.path);
    }
    NP_CHECK_MSG(lingering == 0, "%d of 500 closers saw the file after their close returned",
                 lingering);
}

static void a6_racing_closers_both_see_the_file_gone(void)
{
    run_with(2, a6r_body);
}

/* ---- a7 ------------------------------------------------------------------ */

static void a7_sleeper(void)
{
    np_conn a, b;
    tcp_pair(&a, &b);
    char buf[8] = "abc";
    NP_CHECK_EQ(np_write(a, buf, (size_t)SSIZE_MAX + 1), -EINVAL);
    NP_CHECK_EQ(np_write(a, buf, SIZE_MAX), -EINVAL);
    NP_CHECK_EQ(np_write(a, buf, 3), 3);
    NP_CHECK_EQ(np_read(b, buf, sizeof buf), 3);
    NP_CHECK_OK(np_sleep(30 * NP_MILLISECOND));
    NP_CHECK_OK(np_close(a));
    NP_CHECK_OK(np_close(b));
}

static void a7_extreme_values(void)
{
    NP_CHECK(np_strerror(INT_MIN) != NULL);
    NP_CHECK(np_strerror(INT_MAX) != NULL);
    NP_CHECK(np_strerror(-INT_MAX) != NULL);
    np_config c = { .workers = 2, .idle_stack_ns = INT64_MAX };
    NP_CHECK_OK(np_run(&c, run_body, (void *)a7_sleeper));
    c.idle_stack_ns = INT64_MAX - 1;
    NP_CHECK_OK(np_run(&c, run_body, (void *)a7_sleeper));
}

/* ---- a9 ------------------------------------------------------------------ */

#if !defined(NP_ASAN) && !defined(NP_TSAN)

static sigjmp_buf a9_jump;
static volatile uintptr_t a9_bad_addr = 16; /* volatile: not a constant to the compiler */
static volatile sig_atomic_t a9_caught;

static void a9_handler(int sig)
{
    (void)sig;
    a9_caught++;
    siglongjmp(a9_jump, 1);
}

static void a9_fault_then_overflow(void)
{
    /* A fault of the program's own, handled by the program's handler. */
    if (sigsetjmp(a9_jump, 1) == 0) {
        volatile int *p = (volatile int *)a9_bad_addr;
        *p = 1;
    }
    NP_CHECK_EQ(a9_caught, 1);
    /* And a second one: chaining did not uninstall anything. */
    if (sigsetjmp(a9_jump, 1) == 0) {
        volatile int *p = (volatile int *)(a9_bad_addr + 16);
        *p = 1;
    }
    NP_CHECK_EQ(a9_caught, 2);
}

static int keep_going = 1;
static void recurse(int depth)
{
    volatile char pad[1024];
    pad[0] = (char)depth;
    if (keep_going)
        recurse(depth + 1);
    (void)pad[0];
}

static void a9_overflow(void)
{
    a9_fault_then_overflow();
    recurse(0);
}

static void a9_noop(void)
{
}

static void a9_install_during_run(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = a9_handler;
    sigemptyset(&sa.sa_mask);
    NP_CHECK_SYS(sigaction(SIGSEGV, &sa, NULL));
}

#endif

static void a9_segv_handler_chains(void)
{
#if defined(NP_ASAN) || defined(NP_TSAN)
    NP_SKIP("the sanitizers own SIGSEGV");
#else
    struct sigaction sa, now;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = a9_handler;
    sigemptyset(&sa.sa_mask);
    NP_CHECK_SYS(sigaction(SIGSEGV, &sa, NULL));

    /* Faults that are not overflows reach the program's handler, every
     * time, and overflow detection still works afterwards. */
    int p[2];
    NP_CHECK_SYS(pipe(p));
    pid_t pid = fork();
    NP_CHECK(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        np_config c = { .workers = 1, .stack_size = 64 * 1024 };
        np_run(&c, run_body, (void *)a9_overflow);
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
    NP_CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x, stderr: %s", st, out);
    NP_CHECK_MSG(strstr(out, "stack overflow") != NULL, "stderr was: %s", out);

    /* The run restores the handler it replaced... */
    run_with(1, a9_noop);
    NP_CHECK_SYS(sigaction(SIGSEGV, NULL, &now));
    NP_CHECK(now.sa_handler == a9_handler);
    /* ...and leaves alone one the program installed during the run. */
    sa.sa_handler = SIG_DFL;
    NP_CHECK_SYS(sigaction(SIGSEGV, &sa, NULL));
    run_with(1, a9_install_during_run);
    NP_CHECK_SYS(sigaction(SIGSEGV, NULL, &now));
    NP_CHECK(now.sa_handler == a9_handler);
#endif
}

/* The chaining's edge cases, each in a child that must end as it would
 * without netpoll: killed by SIGSEGV (the default action), not looping,
 * not surviving. */
#if !defined(NP_ASAN) && !defined(NP_TSAN)
static volatile sig_atomic_t a9e_calls;

static void a9e_reporter(int sig)
{
    (void)sig;
    a9e_calls++; /* a one-shot crash reporter: log, return, let it re-fault */
}

static void a9e_raise(void)
{
    raise(SIGSEGV); /* sent, not a fault: returning would not re-run it */
}

static void a9e_fault(void)
{
    volatile int *p = (volatile int *)a9_bad_addr;
    *p = 1;
}

static void a9e_child(int how)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    if (how == 1) { /* SA_RESETHAND reporter */
        sa.sa_handler = a9e_reporter;
        sa.sa_flags = SA_RESETHAND;
        sigaction(SIGSEGV, &sa, NULL);
    } else if (how == 2) { /* the default, with SA_SIGINFO left in flags */
        sa.sa_handler = SIG_DFL;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, NULL);
    }
    np_config c = { .workers = 1 };
    np_run(&c, run_body, (void *)(how == 0 ? a9e_raise : a9e_fault));
    _exit(0);
}

static void a9_segv_chaining_edge_cases(void)
{
    for (int how = 0; how < 3; how++) {
        pid_t pid = fork();
        NP_CHECK(pid >= 0);
        if (pid == 0) {
            alarm(10); /* a loop would be killed by SIGALRM, and fail below */
            a9e_child(how);
        }
        int st;
        NP_CHECK_EQ(waitpid(pid, &st, 0), pid);
        NP_CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "case %d: status %#x", how, st);
    }
}
#else
static void a9_segv_chaining_edge_cases(void)
{
    NP_SKIP("the sanitizers own SIGSEGV");
}
#endif

NP_TEST_LIST(NP_CASE(a1_past_deadline_applies_without_blocking),
             NP_CASE(a2_dial_errors_are_the_callers),
             NP_CASE(a3_unix_dial_full_backlog_fails),
             NP_CASE(a4_handles_die_with_their_run),
             NP_CASE(a6_unix_file_removed_at_close),
             NP_CASE(a6_racing_closers_both_see_the_file_gone),
             NP_CASE(a7_extreme_values),
             NP_CASE(a9_segv_handler_chains),
             NP_CASE(a9_segv_chaining_edge_cases))
