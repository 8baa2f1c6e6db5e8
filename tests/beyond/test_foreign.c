/* np_conn_from_fd against include/netpoll.h ("Foreign descriptors"): a
 * child process's pipes, socketpair ends (stream, datagram, seqpacket), an
 * eventfd, a FIFO, a pty, big writes and write deadlines, what cannot be
 * polled (-EINVAL), bad descriptors (-EBADF), a write to a pipe with no
 * reader (-EPIPE and never SIGPIPE), and np_close (or the end of np_run)
 * closing the descriptor. */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "beyond.h"

extern char **environ;

static np_conn adopt(int fd)
{
    np_conn c;
    int rc = np_conn_from_fd(&c, fd);
    NP_CHECK_MSG(rc == 0, "np_conn_from_fd(%d): %s", fd, np_strerror(rc));
    NP_CHECK_NE(c.id, 0);
    return c;
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* ---- a child process's pipes --------------------------------------------------------- */

typedef struct child {
    pid_t pid;
    int status;
} child;

static void wait_child(void *arg) /* on the offload pool: waitpid blocks */
{
    child *c = arg;
    while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR) {
    }
}

/* Reads a line (the child writes whole lines) with a deadline. */
static void read_line(np_conn c, char *buf, size_t cap, int64_t deadline)
{
    size_t got = 0;
    NP_CHECK_OK(np_set_read_deadline(c, deadline));
    while (got == 0 || buf[got - 1] != '\n') {
        NP_CHECK_LT(got, cap - 1);
        ssize_t n = np_read(c, buf + got, cap - 1 - got);
        NP_CHECK_MSG(n > 0, "reading the child's stdout: %zd (%s)", n, np_strerror((int)n));
        got += (size_t)n;
    }
    buf[got] = 0;
    NP_CHECK_OK(np_set_read_deadline(c, 0));
}

static void body_child(void)
{
    int out[2], in[2];
    NP_CHECK_SYS(pipe2(out, O_CLOEXEC));
    NP_CHECK_SYS(pipe2(in, O_CLOEXEC));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    char *argv[] = { "/bin/sh", "-c", "echo hello; read x; echo \"bye $x\"; sleep 0.2; echo end", NULL };
    child ch = { 0 };
    int rc = posix_spawn(&ch.pid, "/bin/sh", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    NP_CHECK_MSG(rc == 0, "posix_spawn: %s", strerror(rc));
    close(out[1]);
    close(in[0]);
    np_conn r = adopt(out[0]), w = adopt(in[1]);
    NP_CHECK(fcntl(out[0], F_GETFL) & O_NONBLOCK); /* made non-blocking */
    char line[128];
    read_line(r, line, sizeof line, np_now() + 10 * NP_SECOND);
    NP_CHECK_STR_EQ(line, "hello\n");
    /* The child waits for our line: a read deadline fires, never early. */
    int64_t d = np_now() + 50 * NP_MILLISECOND;
    NP_CHECK_OK(np_set_read_deadline(r, d));
    NP_CHECK_EQ(np_read(r, line, sizeof line), -ETIMEDOUT);
    NP_CHECK_GE(np_now(), d);
    NP_CHECK_OK(np_set_read_deadline(r, 0));
    NP_CHECK_EQ(np_write(w, "go\n", 3), 3);
    read_line(r, line, sizeof line, np_now() + 10 * NP_SECOND);
    NP_CHECK_STR_EQ(line, "bye go\n");
    int64_t t0 = np_now();
    read_line(r, line, sizeof line, np_now() + 10 * NP_SECOND); /* after its sleep 0.2 */
    NP_CHECK_STR_EQ(line, "end\n");
    NP_CHECK_GE(np_now() - t0, 100 * NP_MILLISECOND);
    /* The child exits: end of stream, and again. */
    NP_CHECK_OK(np_set_read_deadline(r, np_now() + 10 * NP_SECOND));
    NP_CHECK_EQ(np_read(r, line, sizeof line), 0);
    NP_CHECK_EQ(np_read(r, line, sizeof line), 0);
    NP_CHECK_OK(np_offload(wait_child, &ch));
    NP_CHECK(WIFEXITED(ch.status) && WEXITSTATUS(ch.status) == 0);
    NP_CHECK_OK(np_close(r));
    NP_CHECK_OK(np_close(w));
    NP_CHECK(!fd_open(out[0]));
    NP_CHECK(!fd_open(in[1]));
}

static void t_from_fd_child_process_pipes(void)
{
    b_run(body_child);
}

/* ---- socketpairs ------------------------------------------------------------------ */

static np_conn sp_reader;
static _Atomic long sp_total = -1;

static void stream_reader(void *arg)
{
    (void)arg;
    static char got[1 << 16];
    long total = 0;
    ssize_t n;
    while ((n = np_read(sp_reader, got, sizeof got)) > 0)
        total += n;
    NP_CHECK_EQ(n, 0);
    atomic_store(&sp_total, total);
}

static void body_stream_pair_real(void)
{
    int s[2];
    NP_CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s));
    np_conn a = adopt(s[0]);
    sp_reader = adopt(s[1]);
    NP_CHECK_OK(np_go(stream_reader, NULL));
    static char big[1 << 20];
    memset(big, 's', sizeof big);
    NP_CHECK_EQ(np_write(a, big, sizeof big), (ssize_t)sizeof big);
    NP_CHECK_OK(np_close_write(a)); /* shutdown works on an adopted socket */
    int64_t t0 = np_now();
    while (atomic_load(&sp_total) < 0 && np_now() - t0 < 10 * NP_SECOND)
        np_sleep(NP_MILLISECOND);
    NP_CHECK_EQ(atomic_load(&sp_total), (long)sizeof big);
    char b[4];
    NP_CHECK_EQ(np_read_from(a, b, sizeof b, NULL), -EINVAL); /* a stream */
    NP_CHECK_OK(np_close(a));
    NP_CHECK_OK(np_close(sp_reader));
    NP_CHECK(!fd_open(s[0]));
    NP_CHECK(!fd_open(s[1]));
}

static void t_from_fd_socketpair_stream(void)
{
    b_run(body_stream_pair_real);
}

static int dgram_type;

static void body_dgram_pair(void)
{
    int s[2];
    NP_CHECK_SYS(socketpair(AF_UNIX, dgram_type | SOCK_CLOEXEC, 0, s));
    np_conn a = adopt(s[0]), b = adopt(s[1]);
    NP_CHECK_EQ(np_write(a, "one", 3), 3);
    NP_CHECK_EQ(np_write(a, "three", 5), 5);
    NP_CHECK_EQ(np_write(a, "xy", 2), 2);
    char got[16];
    NP_CHECK_OK(np_set_read_deadline(b, np_now() + 5 * NP_SECOND));
    NP_CHECK_EQ(np_read(b, got, sizeof got), 3); /* one datagram per read */
    np_addr from;
    NP_CHECK_EQ(np_read_from(b, got, 2, &from), 2); /* truncated, the rest dropped */
    NP_CHECK(memcmp(got, "th", 2) == 0);
    NP_CHECK_EQ(np_read(b, got, sizeof got), 2);
    NP_CHECK(memcmp(got, "xy", 2) == 0);
    int64_t d = np_now() + 20 * NP_MILLISECOND;
    NP_CHECK_OK(np_set_read_deadline(b, d));
    NP_CHECK_EQ(np_read(b, got, sizeof got), -ETIMEDOUT);
    NP_CHECK_GE(np_now(), d);
    NP_CHECK_OK(np_close(a));
    NP_CHECK_OK(np_close(b));
}

static void t_from_fd_socketpair_dgram(void)
{
    dgram_type = SOCK_DGRAM;
    b_run(body_dgram_pair);
}

static void t_from_fd_socketpair_seqpacket(void)
{
    dgram_type = SOCK_SEQPACKET;
    b_run(body_dgram_pair);
}

/* ---- an eventfd ---------------------------------------------------------------------- */

static np_conn ev_conn;

static void ev_poster(void *arg)
{
    (void)arg;
    np_sleep(20 * NP_MILLISECOND);
    uint64_t v = 7;
    NP_CHECK_EQ(np_write(ev_conn, &v, sizeof v), 8);
}

static void body_eventfd(void)
{
    int e = NP_CHECK_SYS(eventfd(0, EFD_CLOEXEC));
    ev_conn = adopt(e);
    uint64_t v = 5;
    NP_CHECK_EQ(np_write(ev_conn, &v, sizeof v), 8);
    v = 0;
    NP_CHECK_EQ(np_read(ev_conn, &v, sizeof v), 8);
    NP_CHECK_EQ(v, 5);
    /* Empty now: a read waits, and a write from another task wakes it. */
    int64_t d = np_now() + 20 * NP_MILLISECOND;
    NP_CHECK_OK(np_set_read_deadline(ev_conn, d));
    NP_CHECK_EQ(np_read(ev_conn, &v, sizeof v), -ETIMEDOUT);
    NP_CHECK_GE(np_now(), d);
    NP_CHECK_OK(np_set_read_deadline(ev_conn, np_now() + 5 * NP_SECOND));
    NP_CHECK_OK(np_go(ev_poster, NULL));
    NP_CHECK_EQ(np_read(ev_conn, &v, sizeof v), 8);
    NP_CHECK_EQ(v, 7);
    NP_CHECK_OK(np_close(ev_conn));
    NP_CHECK(!fd_open(e));
}

static void t_from_fd_eventfd(void)
{
    b_run(body_eventfd);
}

/* ---- a FIFO, a pty ---------------------------------------------------------------------- */

static void body_fifo(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/np_beyond_fifo_%d", (int)getpid());
    unlink(path);
    NP_CHECK_SYS(mkfifo(path, 0600));
    int rfd = NP_CHECK_SYS(open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    int wfd = NP_CHECK_SYS(open(path, O_WRONLY | O_CLOEXEC));
    unlink(path);
    np_conn r = adopt(rfd), w = adopt(wfd);
    NP_CHECK_EQ(np_write(w, "fifo", 4), 4);
    char b[8];
    NP_CHECK_OK(np_set_read_deadline(r, np_now() + 5 * NP_SECOND));
    NP_CHECK_EQ(np_read(r, b, sizeof b), 4);
    NP_CHECK(memcmp(b, "fifo", 4) == 0);
    NP_CHECK_OK(np_close(w)); /* the only writer gone: end of stream */
    NP_CHECK_EQ(np_read(r, b, sizeof b), 0);
    NP_CHECK_OK(np_close(r));
}

static void t_from_fd_fifo(void)
{
    b_run(body_fifo);
}

static void body_pty(void)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        NP_SKIP("no ptys here");
    NP_CHECK_SYS(grantpt(m));
    NP_CHECK_SYS(unlockpt(m));
    int sl = NP_CHECK_SYS(open(ptsname(m), O_RDWR | O_NOCTTY | O_CLOEXEC));
    struct termios t;
    NP_CHECK_SYS(tcgetattr(sl, &t));
    cfmakeraw(&t);
    NP_CHECK_SYS(tcsetattr(sl, TCSANOW, &t));
    np_conn master = adopt(m), slave = adopt(sl);
    NP_CHECK_EQ(np_write(slave, "tty!", 4), 4);
    char b[16];
    size_t got = 0;
    NP_CHECK_OK(np_set_read_deadline(master, np_now() + 5 * NP_SECOND));
    while (got < 4) {
        ssize_t n = np_read(master, b + got, sizeof b - got);
        NP_CHECK_GT(n, 0);
        got += (size_t)n;
    }
    NP_CHECK(memcmp(b, "tty!", 4) == 0);
    int64_t d = np_now() + 20 * NP_MILLISECOND;
    NP_CHECK_OK(np_set_read_deadline(master, d));
    NP_CHECK_EQ(np_read(master, b, sizeof b), -ETIMEDOUT);
    NP_CHECK_GE(np_now(), d);
    NP_CHECK_OK(np_close(slave));
    NP_CHECK_OK(np_close(master));
}

static void t_from_fd_pty(void)
{
    b_run(body_pty);
}

/* ---- a big write through a pipe; a write deadline stops it short ------------------------------ */

enum { BIG = 4 << 20 };
static np_conn big_r;
static _Atomic long big_got = -1;
static _Atomic unsigned big_sum;

static void big_reader(void *arg)
{
    (void)arg;
    static unsigned char buf[65536];
    long total = 0;
    unsigned sum = 0;
    ssize_t n;
    while ((n = np_read(big_r, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            sum = sum * 31 + buf[i];
        total += n;
    }
    NP_CHECK_EQ(n, 0);
    atomic_store(&big_sum, sum);
    atomic_store(&big_got, total);
}

static void body_big(void)
{
    int p[2];
    NP_CHECK_SYS(pipe2(p, O_CLOEXEC));
    big_r = adopt(p[0]);
    np_conn w = adopt(p[1]);
    NP_CHECK_OK(np_go(big_reader, NULL));
    unsigned char *data = malloc(BIG);
    NP_CHECK(data);
    unsigned sum = 0;
    for (long i = 0; i < BIG; i++) {
        data[i] = (unsigned char)(i * 7 + (i >> 11));
        sum = sum * 31 + data[i];
    }
    NP_CHECK_EQ(np_write(w, data, BIG), (ssize_t)BIG); /* all of it */
    NP_CHECK_OK(np_close(w));
    int64_t t0 = np_now();
    while (atomic_load(&big_got) < 0 && np_now() - t0 < 10 * NP_SECOND)
        np_sleep(NP_MILLISECOND);
    NP_CHECK_EQ(atomic_load(&big_got), (long)BIG);
    NP_CHECK_EQ(atomic_load(&big_sum), sum);
    free(data);
    NP_CHECK_OK(np_close(big_r));
}

static void t_from_fd_pipe_big_write_all_of_it(void)
{
    b_run(body_big);
}

/* Nobody reads: a write bigger than the pipe stops at its deadline with
 * the count that went out; the next write says why. */
static void body_short_write(void)
{
    int p[2];
    NP_CHECK_SYS(pipe2(p, O_CLOEXEC));
    np_conn w = adopt(p[1]);
    static char data[1 << 20];
    int64_t d = np_now() + 50 * NP_MILLISECOND;
    NP_CHECK_OK(np_set_write_deadline(w, d));
    ssize_t n = np_write(w, data, sizeof data);
    NP_CHECK_GE(np_now(), d);
    NP_CHECK_MSG(n > 0 && n < (ssize_t)sizeof data, "a 1 MiB write to an unread pipe: %zd", n);
    NP_CHECK_EQ(np_write(w, data, 1), -ETIMEDOUT);
    NP_CHECK_OK(np_close(w));
    close(p[0]);
}

static void t_from_fd_pipe_write_deadline_short_count(void)
{
    b_run(body_short_write);
}

/* ---- what cannot be adopted ------------------------------------------------------------ */

static void body_regular(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/np_beyond_adopt_%d", (int)getpid());
    int f = NP_CHECK_SYS(open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    unlink(path);
    int fl = fcntl(f, F_GETFL);
    np_conn c = { 99 };
    NP_CHECK_EQ(np_conn_from_fd(&c, f), -EINVAL);
    NP_CHECK_EQ(c.id, 0);
    NP_CHECK(fd_open(f)); /* not taken */
    NP_CHECK_EQ(fcntl(f, F_GETFL), fl); /* and left as it was */
    int d = NP_CHECK_SYS(open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    NP_CHECK_EQ(np_conn_from_fd(&c, d), -EINVAL);
    NP_CHECK(fd_open(d));
    close(f);
    close(d);
}

static void t_from_fd_regular_file_einval(void)
{
    b_run(body_regular);
}

static void body_bad_fd(void)
{
    np_conn c = { 99 };
    NP_CHECK_EQ(np_conn_from_fd(&c, -1), -EBADF);
    NP_CHECK_EQ(c.id, 0);
    NP_CHECK_EQ(np_conn_from_fd(&c, 1 << 20), -EBADF);
    int p[2];
    NP_CHECK_SYS(pipe2(p, O_CLOEXEC));
    close(p[0]);
    NP_CHECK_EQ(np_conn_from_fd(&c, p[0]), -EBADF);
    NP_CHECK_EQ(np_conn_from_fd(NULL, p[1]), -EINVAL);
    NP_CHECK(fd_open(p[1]));
    close(p[1]);
}

static void t_from_fd_bad_fd_ebadf(void)
{
    b_run(body_bad_fd);
}

/* ---- a pipe with no reader: -EPIPE, never SIGPIPE ------------------------------------------ */

static np_conn epipe_conn;

static void *epipe_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        NP_CHECK_EQ(np_write(epipe_conn, "x", 1), -EPIPE);
    return NULL;
}

static void body_epipe(void)
{
    int p[2];
    NP_CHECK_SYS(pipe2(p, O_CLOEXEC));
    close(p[0]);
    epipe_conn = adopt(p[1]);
    for (int i = 0; i < 3; i++) /* from a task */
        NP_CHECK_EQ(np_write(epipe_conn, "x", 1), -EPIPE);
    pthread_t th; /* and from a plain thread */
    NP_CHECK_OK(pthread_create(&th, NULL, epipe_thread, NULL));
    NP_CHECK_OK(np_offload(b_join_thread, &th));
    NP_CHECK_OK(np_close(epipe_conn));
}

static void t_from_fd_pipe_no_reader_epipe_no_sigpipe(void)
{
    signal(SIGPIPE, SIG_DFL); /* the harness ignores it; a SIGPIPE now kills us */
    b_run(body_epipe);
}

/* A thread that blocks SIGPIPE itself: the write must not leave a SIGPIPE
 * pending there either (it would strike when the thread unblocks it). */
static void *epipe_blocked_thread(void *arg)
{
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    NP_CHECK_EQ(np_write(epipe_conn, "x", 1), -EPIPE);
    sigset_t pend;
    sigpending(&pend);
    NP_CHECK_MSG(!sigismember(&pend, SIGPIPE), "np_write to a reader-less pipe left a SIGPIPE pending "
                 "in a thread that blocks SIGPIPE (unblocking it would kill the process)");
    return NULL;
}

static void body_epipe_blocked(void)
{
    int p[2];
    NP_CHECK_SYS(pipe2(p, O_CLOEXEC));
    close(p[0]);
    epipe_conn = adopt(p[1]);
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, epipe_blocked_thread, NULL));
    NP_CHECK_OK(np_offload(b_join_thread, &th));
    NP_CHECK_OK(np_close(epipe_conn));
}

static void t_from_fd_epipe_in_sigpipe_blocking_thread(void)
{
    signal(SIGPIPE, SIG_DFL);
    b_run(body_epipe_blocked);
}

/* ---- np_close closes the descriptor; so does the end of np_run -------------------------- */

static np_conn cl_conn;
static _Atomic int cl_started;
static _Atomic ssize_t cl_result = 12345;

static void cl_reader(void *arg)
{
    (void)arg;
    char b;
    atomic_store(&cl_started, 1);
    atomic_store(&cl_result, np_read(cl_conn, &b, 1));
}

static void body_close(void)
{
    int p[2];
    NP_CHECK_SYS(pipe2(p, O_CLOEXEC));
    cl_conn = adopt(p[0]);
    NP_CHECK_OK(np_go(cl_reader, NULL));
    NP_CHECK(b_wait_flag(&cl_started, 5000));
    np_sleep(50 * NP_MILLISECOND); /* in the read by now */
    NP_CHECK_OK(np_close(cl_conn));
    int64_t t0 = np_now();
    while (atomic_load(&cl_result) == 12345 && np_now() - t0 < 5 * NP_SECOND)
        np_sleep(NP_MILLISECOND);
    NP_CHECK_EQ(atomic_load(&cl_result), -ECANCELED);
    NP_CHECK(!fd_open(p[0])); /* closed once the read let go */
    NP_CHECK_EQ(np_close(cl_conn), -EBADF);
    close(p[1]);
}

static void t_from_fd_close_closes_fd_and_wakes_reader(void)
{
    b_run(body_close);
}

static int left_fd = -1;

static void body_left_open(void)
{
    int p[2];
    NP_CHECK_SYS(pipe2(p, O_CLOEXEC));
    adopt(p[0]); /* never closed */
    left_fd = p[0];
    close(p[1]);
}

static void t_from_fd_closed_when_run_ends(void)
{
    b_run(body_left_open);
    NP_CHECK(!fd_open(left_fd));
}

/* With no runtime the descriptor is not taken (and left as it was). */
static void t_from_fd_no_runtime_leaves_fd(void)
{
    int p[2];
    NP_CHECK_SYS(pipe2(p, O_CLOEXEC));
    int fl = fcntl(p[0], F_GETFL);
    np_conn c;
    int rc = np_conn_from_fd(&c, p[0]);
    NP_CHECK_MSG(rc == -ESRCH, "np_conn_from_fd with no runtime: %d", rc);
    NP_CHECK(fd_open(p[0]));
    NP_CHECK_EQ(fcntl(p[0], F_GETFL), fl);
    close(p[0]);
    close(p[1]);
}

NP_TEST_LIST(
    NP_CASE(t_from_fd_child_process_pipes),
    NP_CASE(t_from_fd_socketpair_stream),
    NP_CASE(t_from_fd_socketpair_dgram),
    NP_CASE(t_from_fd_socketpair_seqpacket),
    NP_CASE(t_from_fd_eventfd),
    NP_CASE(t_from_fd_fifo),
    NP_CASE(t_from_fd_pty),
    NP_CASE(t_from_fd_pipe_big_write_all_of_it),
    NP_CASE(t_from_fd_pipe_write_deadline_short_count),
    NP_CASE(t_from_fd_regular_file_einval),
    NP_CASE(t_from_fd_bad_fd_ebadf),
    NP_CASE(t_from_fd_pipe_no_reader_epipe_no_sigpipe),
    NP_CASE(t_from_fd_epipe_in_sigpipe_blocking_thread),
    NP_CASE(t_from_fd_close_closes_fd_and_wakes_reader),
    NP_CASE(t_from_fd_closed_when_run_ends),
    NP_CASE(t_from_fd_no_runtime_leaves_fd))
