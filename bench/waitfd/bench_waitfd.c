/* np_wait_fd ping-pong on two pipes, beside a raw epoll ping-pong between
 * two threads; one mode per run, printed as one machine-readable line.
 * bench/waitfd/run.sh runs the modes in turns.
 *
 * Two pipes: ping (A -> B) and pong (B -> A), read ends non-blocking (as a
 * foreign library's descriptors usually are). One round trip: A writes a
 * byte into ping and waits until pong is readable, then reads it; B waits
 * until ping is readable, reads the byte and writes it into pong.
 *
 *   waitfd  A and B are tasks; each wait is np_wait_fd(fd, NP_READABLE, 0):
 *           what a task driving another library's descriptor does. The
 *           first wait on a descriptor duplicates it and registers the
 *           duplicate, kept for the waits after it; each wait then checks
 *           the level (poll) and that fd still names the same file (fstat)
 *           before parking, and the level again when woken
 *           (src/net/foreign_wait.c). Run with -w 1 or -w 2.
 *   conn    the same tasks on descriptors adopted once with
 *           np_conn_from_fd, waiting inside np_read: one registration for
 *           the whole run. Not a baseline, the yardstick for what the
 *           checks a foreign descriptor needs cost.
 *   epoll   A and B are plain threads, each with an epoll set of its own
 *           holding its pipe's read end (registered once, level-triggered),
 *           each blocking in epoll_wait(2) and then reading: the raw form.
 *           The CPUs the threads may use are the ones the process was
 *           given (run.sh: taskset).
 *
 *   cycle   no ping-pong: the system calls np_wait_fd makes per wait beyond
 *           the wait itself, timed alone in tight loops on an idle pipe, to
 *           say where its extra time goes: poll(fd, 0), fstat, kcmp
 *           (KCMP_FILE, the exact check, used for what fstat cannot tell
 *           apart), the per-wait sequence of a blocking wait (poll, fstat,
 *           and poll again once woken), and what making an entry and
 *           dropping it costs (dup, fstat, epoll_ctl ADD with the flags
 *           netpoll registers, EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLPRI|EPOLLET,
 *           DEL, close), paid once per descriptor number waited on and
 *           again after each idle linger. Prints ns per step (n each).
 *
 * The run warms up with n / 10 round trips, then times n; every byte is
 * checked (it counts up, so a lost or doubled wake-up shows).
 *
 * Output (one line):
 *   waitfd MODE impl=netpoll|epoll workers=W n=N ns=X wall_ns=W cpu_ns=C
 *          sys_ns=S nivcsw=K nvcsw=V busy_ns=B check=ok
 * ns: ns per round trip (two waits and two wake-ups). cpu_ns: the process's
 * CPU time, all threads, and sys_ns the part of it spent in the kernel
 * (getrusage, microsecond resolution); nivcsw / nvcsw: involuntary / voluntary context
 * switches of all threads over the timed part (getrusage); busy_ns: the
 * whole machine's busy time meanwhile (/proc/stat), all processes.
 *
 * Usage: bench_waitfd waitfd|conn|epoll|cycle [-w workers] [-n round_trips]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/kcmp.h>
#endif

#include "netpoll.h"

static const char *mode;
static int workers = 1;
static long iters = 200000;
static int ping[2], pong[2];
static int result_bad;

static void fail(const char *what, int err)
{
    fprintf(stderr, "bench_waitfd %s: %s: %s\n", mode, what, strerror(err < 0 ? -err : err));
    fflush(stderr);
    _exit(2);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t process_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Busy time of the whole machine (user, nice, system, irq, softirq, steal
 * from /proc/stat), ns at clock-tick resolution; -1 if unreadable. Over the
 * timed part, minus this process's CPU time, it is what other processes
 * took: run.sh's measure of a disturbed run. */
static int64_t machine_busy_ns(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8)
        return -1;
    return (int64_t)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * (1000000000LL / sysconf(_SC_CLK_TCK));
}

/* Context switches (involuntary, voluntary) and system CPU time (ns) of
 * the whole process. */
static void csw(long *inv, long *vol, int64_t *sys_ns)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *inv = ru.ru_nivcsw;
    *vol = ru.ru_nvcsw;
    *sys_ns = (int64_t)ru.ru_stime.tv_sec * 1000000000 + (int64_t)ru.ru_stime.tv_usec * 1000;
}

static void put(int fd, unsigned char b)
{
    for (;;) {
        ssize_t w = write(fd, &b, 1);
        if (w == 1)
            return;
        if (w < 0 && errno != EINTR)
            fail("write", errno);
    }
}

/* One byte from a descriptor reported readable. */
static unsigned char get(int fd)
{
    unsigned char b;
    for (;;) {
        ssize_t r = read(fd, &b, 1);
        if (r == 1)
            return b;
        if (r == 0)
            fail("read", EPIPE);
        if (errno != EINTR)
            fail("read", errno); /* EAGAIN: a wait said readable when it was not */
    }
}

/* ---- measured window, shared by all modes ------------------------------------ */
static struct {
    int64_t wall0, wall1, cpu0, cpu1, busy0, busy1, sys0, sys1;
    long iv0, iv1, vv0, vv1;
} win;

static void window_start(void)
{
    csw(&win.iv0, &win.vv0, &win.sys0);
    win.busy0 = machine_busy_ns();
    win.cpu0 = process_cpu_ns();
    win.wall0 = now_ns();
}

static void window_end(void)
{
    win.wall1 = now_ns();
    win.cpu1 = process_cpu_ns();
    win.busy1 = machine_busy_ns();
    csw(&win.iv1, &win.vv1, &win.sys1);
}

/* ---- netpoll: np_wait_fd, or adopted descriptors ----------------------------- */
static np_conn ping_conn, pong_conn; /* conn mode: the adopted read ends */
static np_waitgroup done = NP_WAITGROUP_INIT;
static int use_conn;

static void wait_readable(int fd)
{
    int rc = np_wait_fd(fd, NP_READABLE, 0);
    if (rc < 0)
        fail("np_wait_fd", rc);
    if (!(rc & NP_READABLE))
        fail("np_wait_fd: not readable", EIO);
}

/* One byte from a read end: waited for with np_wait_fd and read, or read
 * from the adopted connection (which waits inside np_read). */
static unsigned char recv_byte(int fd, np_conn c)
{
    if (!use_conn) {
        wait_readable(fd);
        return get(fd);
    }
    unsigned char b;
    ssize_t r = np_read(c, &b, 1);
    if (r != 1)
        fail("np_read", r < 0 ? (int)r : EPIPE);
    return b;
}

static void task_b(void *arg)
{
    long n = *(long *)arg;
    for (long i = 0; i < n; i++) {
        unsigned char b = recv_byte(ping[0], ping_conn);
        put(pong[1], (unsigned char)(b + 1));
    }
    np_waitgroup_done(&done);
}

static void np_round_trips(long n)
{
    static long nb;
    nb = n;
    np_waitgroup_add(&done, 1);
    int rc = np_go(task_b, &nb);
    if (rc < 0)
        fail("np_go", rc);
    unsigned char v = 0;
    for (long i = 0; i < n; i++) {
        put(ping[1], v);
        unsigned char b = recv_byte(pong[0], pong_conn);
        if (b != (unsigned char)(v + 1))
            result_bad = 1;
        v = (unsigned char)(b + 1);
    }
    np_waitgroup_wait(&done, 0);
}

static void np_main(void *arg)
{
    (void)arg;
    if (use_conn) {
        int rc;
        if ((rc = np_conn_from_fd(&ping_conn, ping[0])) < 0 ||
            (rc = np_conn_from_fd(&pong_conn, pong[0])) < 0)
            fail("np_conn_from_fd", rc);
    }
    np_round_trips(iters / 10 > 0 ? iters / 10 : 1);
    window_start();
    np_round_trips(iters);
    window_end();
    if (use_conn) {
        np_close(ping_conn); /* closes ping[0] and pong[0]: they are the handles' */
        np_close(pong_conn);
    }
}

/* ---- raw epoll: two threads ------------------------------------------------- */
static int ep_a, ep_b;

static void epoll_wait_one(int ep)
{
    struct epoll_event ev;
    for (;;) {
        int n = epoll_wait(ep, &ev, 1, -1);
        if (n == 1)
            return;
        if (n < 0 && errno != EINTR)
            fail("epoll_wait", errno);
    }
}

static void *thread_b(void *arg)
{
    long n = *(long *)arg;
    for (long i = 0; i < n; i++) {
        epoll_wait_one(ep_b);
        unsigned char b = get(ping[0]);
        put(pong[1], (unsigned char)(b + 1));
    }
    return NULL;
}

static void epoll_round_trips(long n)
{
    pthread_t t;
    long nb = n;
    if (pthread_create(&t, NULL, thread_b, &nb) != 0)
        fail("pthread_create", EAGAIN);
    unsigned char v = 0;
    for (long i = 0; i < n; i++) {
        put(ping[1], v);
        epoll_wait_one(ep_a);
        unsigned char b = get(pong[0]);
        if (b != (unsigned char)(v + 1))
            result_bad = 1;
        v = (unsigned char)(b + 1);
    }
    pthread_join(t, NULL);
}

static void epoll_main(void)
{
    ep_a = epoll_create1(EPOLL_CLOEXEC);
    ep_b = epoll_create1(EPOLL_CLOEXEC);
    if (ep_a < 0 || ep_b < 0)
        fail("epoll_create1", errno);
    struct epoll_event ea = {.events = EPOLLIN}, eb = {.events = EPOLLIN};
    if (epoll_ctl(ep_a, EPOLL_CTL_ADD, pong[0], &ea) < 0 || epoll_ctl(ep_b, EPOLL_CTL_ADD, ping[0], &eb) < 0)
        fail("epoll_ctl", errno);
    epoll_round_trips(iters / 10 > 0 ? iters / 10 : 1);
    /* The timed part includes one thread start, as the warm-up's did: a
     * few µs against n round trips. */
    window_start();
    epoll_round_trips(iters);
    window_end();
}

/* ---- cycle: the per-wait system calls alone -------------------------------- */
static double per_op(int64_t t0, long n)
{
    return (double)(now_ns() - t0) / (double)n;
}

static void cycle_main(long n)
{
    int ep = epoll_create1(EPOLL_CLOEXEC), fd = ping[0];
    if (ep < 0)
        fail("epoll_create1", errno);
    struct stat st;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET};
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    pid_t pid = getpid();
    double tpoll = 0, fst = 0, cmp = -1, seq = 0, reg = 0;
    for (int pass = 0; pass < 2; pass++) { /* the first pass warms up */
        long m = pass ? n : n / 10 + 1;
        int64_t t = now_ns();
        for (long i = 0; i < m; i++)
            poll(&pf, 1, 0);
        tpoll = per_op(t, m);
        t = now_ns();
        for (long i = 0; i < m; i++)
            fstat(fd, &st);
        fst = per_op(t, m);
#ifdef SYS_kcmp
        if (syscall(SYS_kcmp, pid, pid, KCMP_FILE, fd, d) == 0) {
            t = now_ns();
            for (long i = 0; i < m; i++)
                syscall(SYS_kcmp, pid, pid, KCMP_FILE, fd, d);
            cmp = per_op(t, m);
        }
#endif
        t = now_ns();
        for (long i = 0; i < m; i++) {
            poll(&pf, 1, 0);
            fstat(fd, &st);
            poll(&pf, 1, 0);
        }
        seq = per_op(t, m);
        t = now_ns();
        for (long i = 0; i < m; i++) {
            int e = fcntl(fd, F_DUPFD_CLOEXEC, 0);
            fstat(e, &st);
            if (epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev) < 0 || epoll_ctl(ep, EPOLL_CTL_DEL, e, NULL) < 0)
                fail("epoll_ctl", errno);
            close(e);
        }
        reg = per_op(t, m);
    }
    (void)pid;
    close(d);
    close(ep);
    printf("waitfd cycle impl=syscalls n=%ld poll_ns=%.1f fstat_ns=%.1f kcmp_ns=%.1f cycle_ns=%.1f "
           "entry_ns=%.1f check=ok\n", n, tpoll, fst, cmp, seq, reg);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        goto usage;
    mode = argv[1];
    optind = 2;
    int opt;
    while ((opt = getopt(argc, argv, "w:n:")) != -1) {
        switch (opt) {
        case 'w': workers = atoi(optarg); break;
        case 'n': iters = atol(optarg); break;
        default: goto usage;
        }
    }
    if (optind != argc || workers < 1 || iters < 1 ||
        (strcmp(mode, "waitfd") != 0 && strcmp(mode, "conn") != 0 && strcmp(mode, "epoll") != 0 &&
         strcmp(mode, "cycle") != 0)) {
    usage:
        fprintf(stderr, "usage: bench_waitfd waitfd|conn|epoll|cycle [-w workers] [-n round_trips]\n");
        return 2;
    }
    if (pipe2(ping, O_CLOEXEC) < 0 || pipe2(pong, O_CLOEXEC) < 0)
        fail("pipe2", errno);
    fcntl(ping[0], F_SETFL, O_NONBLOCK);
    fcntl(pong[0], F_SETFL, O_NONBLOCK);

    const char *impl = "netpoll";
    if (strcmp(mode, "cycle") == 0) {
        cycle_main(iters);
        return 0;
    }
    if (strcmp(mode, "epoll") == 0) {
        impl = "epoll";
        workers = 2; /* two threads */
        epoll_main();
    } else {
        use_conn = strcmp(mode, "conn") == 0;
        np_config cfg = {.workers = workers};
        int rc = np_run(&cfg, np_main, NULL);
        if (rc < 0)
            fail("np_run", rc);
    }
    long n = iters;
    printf("waitfd %s impl=%s workers=%d n=%ld ns=%.1f wall_ns=%lld cpu_ns=%lld sys_ns=%lld nivcsw=%ld nvcsw=%ld busy_ns=%lld check=%s\n",
           mode, impl, workers, n, (double)(win.wall1 - win.wall0) / (double)n,
           (long long)(win.wall1 - win.wall0), (long long)(win.cpu1 - win.cpu0),
           (long long)(win.sys1 - win.sys0), win.iv1 - win.iv0,
           win.vv1 - win.vv0, (long long)(win.busy0 >= 0 && win.busy1 >= 0 ? win.busy1 - win.busy0 : -1),
           result_bad ? "FAILED" : "ok");
    return result_bad;
}
