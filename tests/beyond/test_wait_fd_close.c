/* np_wait_fd against include/netpoll.h ("Foreign descriptors"), the hard
 * part: the caller closing its fd during the wait (-EBADF within about a
 * second, never a hang), the number reused for another file (-EBADF, never
 * another file's readiness), errors counting as ready, many fds at once,
 * and a plain thread still waiting when np_run ends. And the duplicates
 * kept between waits: a number closed and reused between two waits (the
 * new file is waited on, never the old one's readiness reported), a wait
 * on a number its owner closed (-EBADF), the owner's close reaching the
 * peer within the linger, and no descriptor left once np_run returns. */
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>

#include "beyond.h"

static void make_pipe(int p[2])
{
    NP_CHECK_SYS(pipe2(p, O_CLOEXEC));
}

/* ---- closing the fd during the wait: -EBADF within about a second --------------------- */

static int close_pipe[2];
static _Atomic int64_t close_done_at;
#define WAITING 12345
static _Atomic int close_result = WAITING;

static void close_waiter(void *arg)
{
    (void)arg;
    atomic_store(&close_result, np_wait_fd(close_pipe[0], NP_READABLE, np_now() + 20 * NP_SECOND));
    atomic_store(&close_done_at, np_now());
}

static void close_during_wait(int64_t after)
{
    make_pipe(close_pipe);
    atomic_store(&close_result, WAITING);
    NP_CHECK_OK(np_go(close_waiter, NULL));
    np_sleep(after);
    NP_CHECK_EQ(atomic_load(&close_result), WAITING);
    int64_t t_close = np_now();
    close(close_pipe[0]); /* the writer stays open: no hang-up to wake it */
    while (atomic_load(&close_result) == WAITING && np_now() - t_close < 5 * NP_SECOND)
        np_sleep(NP_MILLISECOND);
    int rc = atomic_load(&close_result);
    double ms = (double)(atomic_load(&close_done_at) - t_close) / 1e6;
    NP_CHECK_MSG(rc == -EBADF, "np_wait_fd on an fd closed after %lld ms of waiting: %d (%d = still "
                 "waiting 5 s after the close)", (long long)(after / NP_MILLISECOND), rc, WAITING);
    NP_CHECK_MSG(ms < 1500, "-EBADF came %.0f ms after the close (header: within about a second)", ms);
    close(close_pipe[1]);
}

static void body_close_early(void)
{
    close_during_wait(50 * NP_MILLISECOND);
}

static void t_wait_fd_close_during_wait_ebadf(void)
{
    b_run(body_close_early);
}

static void body_close_late(void)
{
    close_during_wait(2500 * NP_MILLISECOND); /* its checks are 1 s apart by now */
}

static void t_wait_fd_close_after_long_wait_ebadf(void)
{
    b_run(body_close_late);
}

/* ---- the number reused for another file during the wait --------------------------------- */

static void reused(bool old_file_ready)
{
    make_pipe(close_pipe);
    atomic_store(&close_result, WAITING);
    NP_CHECK_OK(np_go(close_waiter, NULL));
    /* Long enough that the wait looks at its fd only every second or so:
     * what happens right after the reuse is up to the poller's report. */
    np_sleep(old_file_ready ? 1700 * NP_MILLISECOND : 50 * NP_MILLISECOND);
    int q[2];
    make_pipe(q);
    int64_t t_reuse = np_now();
    NP_CHECK_SYS(dup2(q[0], close_pipe[0])); /* the number now names q's read end */
    if (old_file_ready) {
        /* The file the wait began on (its duplicate keeps it open). */
        NP_CHECK_EQ(write(close_pipe[1], "o", 1), 1);
    } else {
        NP_CHECK_EQ(write(q[1], "n", 1), 1); /* the file the number names now */
    }
    while (atomic_load(&close_result) == WAITING && np_now() - t_reuse < 5 * NP_SECOND)
        np_sleep(NP_MILLISECOND);
    int rc = atomic_load(&close_result);
    NP_CHECK_MSG(rc == -EBADF, "np_wait_fd whose fd number was reused (%s then readable): %d, want -EBADF",
                 old_file_ready ? "the old file" : "the new file", rc);
    NP_CHECK_LT(atomic_load(&close_done_at) - t_reuse, 1500 * NP_MILLISECOND);
    close(close_pipe[0]);
    close(close_pipe[1]);
    close(q[0]);
    close(q[1]);
}

static void body_reused_new_ready(void)
{
    reused(false);
}

static void t_wait_fd_reused_number_ebadf_not_new_files_readiness(void)
{
    b_run(body_reused_new_ready);
}

/* The wait must not report readiness for its fd once that number names
 * another file, even if the readiness is the old file's: the caller would
 * act on the new one. */
static void body_reused_old_ready(void)
{
    reused(true);
}

static void t_wait_fd_reused_number_ebadf_not_old_files_readiness(void)
{
    b_run(body_reused_old_ready);
}

/* ---- an error counts as ready; a listener with a connection is readable ------------------ */

static void body_error_ready(void)
{
    /* A TCP connect to a closed loopback port: the error is what is ready. */
    int probe = NP_CHECK_SYS(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    NP_CHECK_SYS(bind(probe, (struct sockaddr *)&a, sizeof a));
    NP_CHECK_SYS(getsockname(probe, (struct sockaddr *)&a, &al));
    close(probe); /* the port is closed now */
    int s = NP_CHECK_SYS(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    int rc = connect(s, (struct sockaddr *)&a, sizeof a);
    NP_CHECK(rc < 0 && (errno == EINPROGRESS || errno == ECONNREFUSED));
    NP_CHECK_EQ(np_wait_fd(s, NP_WRITABLE, np_now() + 5 * NP_SECOND), NP_WRITABLE);
    NP_CHECK_EQ(np_wait_fd(s, NP_READABLE, np_now() + 5 * NP_SECOND), NP_READABLE);
    close(s);
    /* A listener with a pending connection reads as readable. */
    int l = NP_CHECK_SYS(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    a.sin_port = 0;
    NP_CHECK_SYS(bind(l, (struct sockaddr *)&a, sizeof a));
    NP_CHECK_SYS(listen(l, 8));
    al = sizeof a;
    NP_CHECK_SYS(getsockname(l, (struct sockaddr *)&a, &al));
    int64_t d = np_now() + 20 * NP_MILLISECOND;
    NP_CHECK_EQ(np_wait_fd(l, NP_READABLE, d), -ETIMEDOUT);
    NP_CHECK_GE(np_now(), d);
    int c = NP_CHECK_SYS(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    NP_CHECK_SYS(connect(c, (struct sockaddr *)&a, sizeof a));
    NP_CHECK_EQ(np_wait_fd(l, NP_READABLE, np_now() + 5 * NP_SECOND), NP_READABLE);
    close(c);
    close(l);
}

static void t_wait_fd_error_and_listener_ready(void)
{
    b_run(body_error_ready);
}

/* ---- 200 fds, 200 waiting tasks, all woken ------------------------------------------------- */

enum { NFDS = 200 };
static int fds200[NFDS][2];
static np_waitgroup w200_started, w200_done;
static _Atomic int w200_ok;

static void w200_task(void *arg)
{
    int i = (int)(intptr_t)arg;
    np_waitgroup_done(&w200_started);
    if (np_wait_fd(fds200[i][0], NP_READABLE, np_now() + 20 * NP_SECOND) == NP_READABLE)
        atomic_fetch_add(&w200_ok, 1);
    np_waitgroup_done(&w200_done);
}

static void body_200(void)
{
    for (int i = 0; i < NFDS; i++)
        make_pipe(fds200[i]);
    NP_CHECK_OK(np_waitgroup_add(&w200_started, NFDS));
    NP_CHECK_OK(np_waitgroup_add(&w200_done, NFDS));
    for (int i = 0; i < NFDS; i++)
        NP_CHECK_OK(np_go(w200_task, (void *)(intptr_t)i));
    NP_CHECK_OK(np_waitgroup_wait(&w200_started, np_now() + 10 * NP_SECOND));
    np_sleep(20 * NP_MILLISECOND);
    for (int i = NFDS - 1; i >= 0; i--)
        NP_CHECK_EQ(write(fds200[i][1], "x", 1), 1);
    int rc = np_waitgroup_wait(&w200_done, np_now() + 10 * NP_SECOND);
    NP_CHECK_MSG(rc == 0 && atomic_load(&w200_ok) == NFDS, "%d of %d waits saw their fd readable",
                 atomic_load(&w200_ok), NFDS);
    for (int i = 0; i < NFDS; i++) {
        close(fds200[i][0]);
        close(fds200[i][1]);
    }
}

static void t_wait_fd_200_fds_200_tasks(void)
{
    b_run(body_200);
}

/* ---- the number closed and reused between two waits ------------------------------------- */

#define LINGER_MS 100 /* include/netpoll.h */

enum { K_PIPE, K_EVENTFD };

/* A readable-or-not file of kind k: r is waited on, w makes it readable. */
static void make_file(int k, int *r, int *w)
{
    if (k == K_PIPE) {
        int p[2];
        make_pipe(p);
        *r = p[0];
        *w = p[1];
    } else { /* every eventfd shares one inode: only the open file tells them apart */
        *r = NP_CHECK_SYS(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        *w = NP_CHECK_SYS(fcntl(*r, F_DUPFD_CLOEXEC, 0));
    }
}

static void make_ready(int k, int w)
{
    uint64_t one = 1;
    if (k == K_PIPE)
        NP_CHECK_EQ(write(w, "x", 1), 1);
    else
        NP_CHECK_EQ(write(w, &one, 8), 8);
}

static int reuse_num;
static _Atomic int reuse_rc = WAITING;
static _Atomic int64_t reuse_at;

static void reuse_waiter(void *arg)
{
    (void)arg;
    atomic_store(&reuse_rc, np_wait_fd(reuse_num, NP_READABLE, np_now() + 5 * NP_SECOND));
    atomic_store(&reuse_at, np_now());
}

static void reuse_between_waits(int k)
{
    int old_r, old_w, new_r, new_w;
    make_file(k, &old_r, &old_w);
    reuse_num = old_r;
    /* A wait that leaves the number's duplicate cached. */
    NP_CHECK_EQ(np_wait_fd(reuse_num, NP_READABLE, np_now() + 10 * NP_MILLISECOND), -ETIMEDOUT);
    /* The owner closes it and the number comes back for another file; the
     * old file, still open in the cache, becomes readable. */
    make_file(k, &new_r, &new_w);
    NP_CHECK_SYS(close(old_r));
    NP_CHECK_SYS(dup2(new_r, reuse_num));
    NP_CHECK_SYS(close(new_r));
    make_ready(k, old_w);
    int rc = np_wait_fd(reuse_num, NP_READABLE, np_now() + 30 * NP_MILLISECOND);
    NP_CHECK_MSG(rc == -ETIMEDOUT, "%s: a wait on a number reused for an empty file = %d (the old "
                 "file's readiness?)", k == K_PIPE ? "pipe" : "eventfd", rc);
    /* A wait parked on the number must be woken by the new file. */
    atomic_store(&reuse_rc, WAITING);
    NP_CHECK_OK(np_go(reuse_waiter, NULL));
    np_sleep(20 * NP_MILLISECOND);
    NP_CHECK_EQ(atomic_load(&reuse_rc), WAITING);
    int64_t t_ready = np_now();
    make_ready(k, new_w);
    while (atomic_load(&reuse_rc) == WAITING && np_now() - t_ready < 6 * NP_SECOND)
        np_sleep(NP_MILLISECOND);
    rc = atomic_load(&reuse_rc);
    NP_CHECK_MSG(rc == NP_READABLE, "%s: a wait on the reused number, its new file made readable: %d",
                 k == K_PIPE ? "pipe" : "eventfd", rc);
    NP_CHECK_LT(atomic_load(&reuse_at) - t_ready, NP_SECOND);
    uint64_t v = 0;
    NP_CHECK_EQ(read(reuse_num, &v, k == K_PIPE ? 1 : 8), k == K_PIPE ? 1 : 8);
    NP_CHECK_EQ(v, k == K_PIPE ? (uint64_t)'x' : 1u); /* the new file's */
    close(reuse_num);
    close(old_w);
    close(new_w);
}

static void body_reuse_between(void)
{
    for (int i = 0; i < 3; i++) {
        reuse_between_waits(K_PIPE);
        reuse_between_waits(K_EVENTFD);
    }
}

static void t_wait_fd_number_reused_between_waits(void)
{
    b_run(body_reuse_between);
}

/* ---- the owner's close: -EBADF at once, and the peer sees it ------------------------------ */

/* ms until s reads end of stream (0), or -1 after limit_ms. */
static double ms_until_eof(int s, int limit_ms)
{
    int64_t t0 = np_now();
    while (np_now() - t0 < (int64_t)limit_ms * NP_MILLISECOND) {
        char c;
        ssize_t r = recv(s, &c, 1, MSG_DONTWAIT);
        if (r == 0)
            return b_ms_since(t0);
        NP_CHECK(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        np_sleep(NP_MILLISECOND);
    }
    return -1;
}

static void body_closed_then_waited(void)
{
    for (int i = 0; i < 20; i++) {
        int s[2];
        NP_CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s));
        NP_CHECK_EQ(np_wait_fd(s[0], NP_WRITABLE, 0), NP_WRITABLE); /* cached now */
        NP_CHECK_SYS(close(s[0]));
        int64_t t0 = np_now();
        NP_CHECK_EQ(np_wait_fd(s[0], i % 2 ? NP_READABLE : NP_WRITABLE, np_now() + 5 * NP_SECOND),
                    -EBADF);
        NP_CHECK_LT(np_now() - t0, 500 * NP_MILLISECOND);
        /* That wait found the number closed: its duplicate goes at once. */
        double ms = ms_until_eof(s[1], 5000);
        NP_CHECK_MSG(ms >= 0 && ms < LINGER_MS / 2, "the peer saw the close %.1f ms after a wait "
                     "found it (-1: not in 5 s)", ms);
        close(s[1]);
    }
}

static void t_wait_fd_on_closed_cached_number_ebadf(void)
{
    b_run(body_closed_then_waited);
}

static void body_close_reaches_peer(void)
{
    for (int i = 0; i < 5; i++) {
        int s[2];
        NP_CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s));
        NP_CHECK_EQ(np_wait_fd(s[0], NP_WRITABLE, 0), NP_WRITABLE);
        int64_t t_last = np_now(); /* the last wait on s[0] ended */
        NP_CHECK_SYS(close(s[0]));
        double ms = ms_until_eof(s[1], 5000);
        double since_wait = ms < 0 ? -1 : b_ms_since(t_last);
        /* A timer closes the duplicate: never early, a little late under
         * load (the bound leaves room for that, not for a second linger). */
        NP_CHECK_MSG(ms >= 0 && since_wait < LINGER_MS + (b_sanitized() ? 400 : 150),
                     "the peer saw its peer's close %.1f ms after the last wait (linger: %d ms; -1: "
                     "not in 5 s)", since_wait, LINGER_MS);
        close(s[1]);
    }
}

static void t_wait_fd_close_reaches_peer_within_linger(void)
{
    b_run(body_close_reaches_peer);
}

/* ---- no descriptor left once np_run returns -------------------------------------------------- */

static int left_pipe[2];
static void *left_thread(void *arg)
{
    (void)arg;
    NP_CHECK_EQ(np_wait_fd(left_pipe[1], NP_WRITABLE, np_now() + 5 * NP_SECOND), NP_WRITABLE);
    NP_CHECK_EQ(np_wait_fd(left_pipe[0], NP_READABLE, np_now() + NP_MILLISECOND), -ETIMEDOUT);
    return NULL;
}

static void body_left(void)
{
    int s[2], e;
    make_pipe(left_pipe);
    NP_CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s));
    e = NP_CHECK_SYS(eventfd(0, EFD_CLOEXEC));
    char path[64];
    snprintf(path, sizeof path, "/tmp/np_beyond_left_%d", (int)getpid());
    int f = NP_CHECK_SYS(open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    unlink(path);
    NP_CHECK_EQ(np_wait_fd(s[0], NP_WRITABLE, 0), NP_WRITABLE);
    NP_CHECK_EQ(np_wait_fd(e, NP_READABLE, np_now() + NP_MILLISECOND), -ETIMEDOUT);
    NP_CHECK_EQ(np_wait_fd(f, NP_READABLE, 0), NP_READABLE);
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, left_thread, NULL));
    NP_CHECK_OK(np_offload(b_join_thread, &th));
    /* The caller's own descriptors go; np_wait_fd's may still be cached. */
    close(s[0]);
    close(s[1]);
    close(e);
    close(f);
    close(left_pipe[0]);
    close(left_pipe[1]);
}

static void t_wait_fd_no_descriptor_left_after_np_run(void)
{
    int before = b_open_fds();
    for (int run = 0; run < 3; run++) {
        b_run(body_left);
        int after = b_open_fds();
        NP_CHECK_MSG(after == before, "run %d: %d descriptors open before np_run, %d after it "
                     "returned", run, before, after);
    }
}

/* ---- a plain thread still waiting when np_run ends ------------------------------------------ */

static int end_pipe[2];
static _Atomic int end_started, end_result = 12345;
static _Atomic int64_t end_at;

static void *end_waiter(void *arg)
{
    (void)arg;
    atomic_store(&end_started, 1);
    atomic_store(&end_result, np_wait_fd(end_pipe[0], NP_READABLE, np_now() + 2 * NP_SECOND));
    atomic_store(&end_at, np_now());
    return NULL;
}

static pthread_t end_th;
static void body_end(void)
{
    make_pipe(end_pipe);
    NP_CHECK_OK(pthread_create(&end_th, NULL, end_waiter, NULL));
    NP_CHECK(b_wait_flag(&end_started, 5000));
    np_sleep(50 * NP_MILLISECOND); /* the thread waits; the last task ends now */
}

/* Whatever it returns — the deadline, -ESRCH, readiness — it must return,
 * by its deadline or soon after, and touch nothing np_run has freed. */
static void t_wait_fd_plain_thread_waiting_when_run_ends(void)
{
    /* Was a known defect (skipped): the wait's registration outlived the
     * poller. np_run's end now closes np_wait_fd's registrations and ends
     * a plain thread's wait with -ESRCH. */
    int64_t t0 = np_now();
    b_run(body_end);
    NP_CHECK_EQ(write(end_pipe[1], "l", 1), 1); /* late readiness, after the run */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    int rc = pthread_timedjoin_np(end_th, NULL, &ts);
    NP_CHECK_MSG(rc == 0, "a plain thread in np_wait_fd (2 s deadline) was still waiting 5 s after "
                 "np_run returned");
    int r = atomic_load(&end_result);
    NP_CHECK_MSG(r == -ETIMEDOUT || r == -ESRCH || r == NP_READABLE, "np_wait_fd across the end of np_run: %d",
                 r);
    if (r == -ETIMEDOUT)
        NP_CHECK_GE(atomic_load(&end_at) - t0, 2 * NP_SECOND - 100 * NP_MILLISECOND);
    close(end_pipe[0]);
    close(end_pipe[1]);
}

NP_TEST_LIST(
    NP_CASE(t_wait_fd_close_during_wait_ebadf),
    NP_CASE(t_wait_fd_close_after_long_wait_ebadf),
    NP_CASE(t_wait_fd_reused_number_ebadf_not_new_files_readiness),
    NP_CASE(t_wait_fd_reused_number_ebadf_not_old_files_readiness),
    NP_CASE(t_wait_fd_error_and_listener_ready),
    NP_CASE(t_wait_fd_200_fds_200_tasks),
    NP_CASE(t_wait_fd_number_reused_between_waits),
    NP_CASE(t_wait_fd_on_closed_cached_number_ebadf),
    NP_CASE(t_wait_fd_close_reaches_peer_within_linger),
    NP_CASE(t_wait_fd_no_descriptor_left_after_np_run),
    NP_CASE(t_wait_fd_plain_thread_waiting_when_run_ends))
