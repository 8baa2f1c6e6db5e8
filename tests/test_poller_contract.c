/* The poller backend contract (src/poller/poller.h), run unchanged against every
 * backend built on the platform: ctest registers one program per backend,
 * each linked with that backend's objects. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"
#include "np_test.h"
#include "poller/poller.h"

#define CAP 64
#define REGS 256

static np__pollreg regs[REGS]; /* static: registrations must be type-stable */

/* One poll, closing the resolve batch the backend opened. */
static int poll_(int64_t delay, np__pollev *ev, int cap)
{
    int n = np__poller_poll(delay, ev, cap);
    NP_CHECK_EQ(atomic_load(&np__pollreg_epoch) & 1, 1);
    np__pollreg_batch_end();
    return n;
}

static void setup(void)
{
    for (int i = 0; i < REGS; i++)
        NP_CHECK_OK(np__pollreg_init(&regs[i]));
    NP_CHECK_OK(np__poller_init());
}

static void teardown(void)
{
    np__poller_fini();
}

static void make_pair(int sv[2])
{
    NP_CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv));
}

static void open_reg(np__pollreg *reg, int fd, int mode)
{
    reg->fd = fd;
    NP_CHECK_OK(np__poller_open(reg));
    NP_CHECK_OK(np__poller_arm(reg, mode));
}

/* Discards whatever is ready now. */
static void drain(void)
{
    np__pollev ev[CAP];
    while (poll_(0, ev, CAP) > 0) {
    }
}

/* Polls until reg has been reported with every bit of want, or timeout.
 * Returns the union of modes seen for reg; *err gets whether any had err. */
static int wait_for(np__pollreg *reg, int want, int64_t timeout, bool *err)
{
    np__pollev ev[CAP];
    int64_t until = np_now() + timeout;
    int got = 0;
    bool e = false;
    while ((got & want) != want) {
        int64_t left = until - np_now();
        if (left <= 0)
            break;
        int n = poll_(left, ev, CAP);
        NP_CHECK_GE(n, 0);
        for (int i = 0; i < n; i++) {
            NP_CHECK_NE(ev[i].mode, 0);
            if (ev[i].reg == reg) {
                got |= ev[i].mode;
                e |= ev[i].err;
            }
        }
    }
    if (err)
        *err = e;
    return got;
}

/* -------------------------------------------------------------------- */

static void t_backend_name(void)
{
    NP_CHECK_STR_EQ(np_poller_name(), NP_EXPECT_POLLER);
}

static void t_pollreg_tags(void)
{
    np__pollreg *r = &regs[0];
    setup();
    uint64_t tag = np__pollreg_tag(r);
    NP_CHECK_PTR_EQ(np__pollreg_resolve(tag), r);
    np__pollreg_retire(r);
    NP_CHECK_PTR_EQ(np__pollreg_resolve(tag), NULL);
    NP_CHECK_PTR_EQ(np__pollreg_resolve(np__pollreg_tag(r)), r);
    NP_CHECK_NE(regs[0].index, regs[1].index);
    teardown();
}

static void t_read_ready(void)
{
    int sv[2];
    setup();
    make_pair(sv);
    open_reg(&regs[0], sv[0], NP__POLL_READ);
    drain();
    /* Nothing to read yet: no read readiness. */
    NP_CHECK_EQ(wait_for(&regs[0], NP__POLL_READ, 20 * NP_MILLISECOND, NULL) & NP__POLL_READ, 0);
    NP_CHECK_OK(np__poller_arm(&regs[0], NP__POLL_READ));
    NP_CHECK_EQ(write(sv[1], "x", 1), 1);
    bool err = true;
    NP_CHECK_EQ(wait_for(&regs[0], NP__POLL_READ, 5 * NP_SECOND, &err) & NP__POLL_READ, NP__POLL_READ);
    NP_CHECK(!err);
    NP_CHECK_OK(np__poller_close(&regs[0]));
    close(sv[0]);
    close(sv[1]);
    teardown();
}

static void t_write_ready(void)
{
    int sv[2];
    char buf[65536] = { 0 };
    setup();
    make_pair(sv);
    /* Fill the send buffer so the socket is not writable. */
    while (write(sv[0], buf, sizeof buf) > 0) {
    }
    NP_CHECK_EQ(errno, EAGAIN);
    open_reg(&regs[0], sv[0], NP__POLL_WRITE);
    drain();
    NP_CHECK_EQ(wait_for(&regs[0], NP__POLL_WRITE, 20 * NP_MILLISECOND, NULL) & NP__POLL_WRITE, 0);
    NP_CHECK_OK(np__poller_arm(&regs[0], NP__POLL_WRITE));
    while (read(sv[1], buf, sizeof buf) > 0) {
    }
    NP_CHECK_EQ(wait_for(&regs[0], NP__POLL_WRITE, 5 * NP_SECOND, NULL) & NP__POLL_WRITE, NP__POLL_WRITE);
    NP_CHECK_OK(np__poller_close(&regs[0]));
    close(sv[0]);
    close(sv[1]);
    teardown();
}

static void t_read_and_write_in_one_event(void)
{
    int sv[2];
    np__pollev ev[CAP];
    setup();
    make_pair(sv);
    NP_CHECK_EQ(write(sv[1], "x", 1), 1);
    open_reg(&regs[0], sv[0], NP__POLL_READ | NP__POLL_WRITE);
    int n = poll_(5 * NP_SECOND, ev, CAP);
    NP_CHECK_EQ(n, 1);
    NP_CHECK_PTR_EQ(ev[0].reg, &regs[0]);
    NP_CHECK_EQ(ev[0].mode, NP__POLL_READ | NP__POLL_WRITE);
    NP_CHECK(!ev[0].err);
    NP_CHECK_OK(np__poller_close(&regs[0]));
    close(sv[0]);
    close(sv[1]);
    teardown();
}

static void t_hangup_wakes_both_directions(void)
{
    int sv[2];
    setup();
    make_pair(sv);
    open_reg(&regs[0], sv[0], NP__POLL_READ);
    drain();
    NP_CHECK_OK(np__poller_arm(&regs[0], NP__POLL_READ | NP__POLL_WRITE));
    close(sv[1]);
    int both = NP__POLL_READ | NP__POLL_WRITE;
    NP_CHECK_EQ(wait_for(&regs[0], both, 5 * NP_SECOND, NULL), both);
    NP_CHECK_OK(np__poller_close(&regs[0]));
    close(sv[0]);
    teardown();
}

/* A UDP socket connected to a closed port gets ICMP port-unreachable after a
 * send: a socket error the kernel reports as EPOLLERR / POLLERR. */
static void t_error_wakes_both_directions(void)
{
    setup();
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    int probe = NP_CHECK_SYS(socket(AF_INET, SOCK_DGRAM, 0));
    NP_CHECK_SYS(bind(probe, (struct sockaddr *)&a, sizeof a));
    NP_CHECK_SYS(getsockname(probe, (struct sockaddr *)&a, &alen));
    close(probe); /* the port is now closed */

    int s = NP_CHECK_SYS(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0));
    NP_CHECK_SYS(connect(s, (struct sockaddr *)&a, sizeof a));
    open_reg(&regs[0], s, NP__POLL_READ);
    drain();
    NP_CHECK_OK(np__poller_arm(&regs[0], NP__POLL_READ | NP__POLL_WRITE));
    NP_CHECK_EQ(send(s, "x", 1, 0), 1);
    bool err = true;
    int both = NP__POLL_READ | NP__POLL_WRITE;
    int got = wait_for(&regs[0], both, 5 * NP_SECOND, &err);
    NP_CHECK_EQ(got, both);
    /* Error plus writability: not the "cannot poll" flag; the next syscall
     * reports the precise error. */
    NP_CHECK(!err);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    NP_CHECK_SYS(getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl));
    NP_CHECK_EQ(soerr, ECONNREFUSED);
    NP_CHECK_OK(np__poller_close(&regs[0]));
    close(s);
    teardown();
}

/* A full pipe whose reader is gone reports an error and nothing else: the
 * err flag, and both directions woken. */
static void t_error_alone_sets_err_flag(void)
{
    int p[2];
    char buf[4096] = { 0 };
    /* kqueue reports a reader-less pipe as EV_EOF on the write filter, the
     * same as a half-closed socket: it has no "error and nothing else"
     * (only EV_ERROR, for a failed registration), so err cannot be set
     * here without breaking reads on half-closed sockets. See poller.h. */
    if (strncmp(NP_EXPECT_POLLER, "kqueue", 6) == 0)
        NP_SKIP("kqueue has no error-only report");
    setup();
    NP_CHECK_SYS(pipe2(p, O_NONBLOCK | O_CLOEXEC));
    while (write(p[1], buf, sizeof buf) > 0) {
    }
    NP_CHECK_EQ(errno, EAGAIN);
    open_reg(&regs[0], p[1], NP__POLL_WRITE);
    drain();
    NP_CHECK_OK(np__poller_arm(&regs[0], NP__POLL_READ | NP__POLL_WRITE));
    close(p[0]);
    bool err = false;
    int both = NP__POLL_READ | NP__POLL_WRITE;
    NP_CHECK_EQ(wait_for(&regs[0], both, 5 * NP_SECOND, &err), both);
    NP_CHECK(err);
    NP_CHECK_OK(np__poller_close(&regs[0]));
    close(p[1]);
    teardown();
}

static void t_delay_zero_does_not_block(void)
{
    np__pollev ev[CAP];
    setup();
    int64_t t0 = np_now();
    for (int i = 0; i < 100; i++)
        NP_CHECK_EQ(poll_(0, ev, CAP), 0);
    NP_CHECK_LT(np_now() - t0, 500 * NP_MILLISECOND);
    teardown();
}

static void t_delay_positive_never_early(void)
{
    np__pollev ev[CAP];
    static const int64_t delays[] = { 1, 300 * NP_MICROSECOND, NP_MILLISECOND,
                                      1500 * NP_MICROSECOND, 5 * NP_MILLISECOND,
                                      20 * NP_MILLISECOND };
    setup();
    for (size_t i = 0; i < sizeof delays / sizeof delays[0]; i++) {
        int64_t t0 = np_now();
        NP_CHECK_EQ(poll_(delays[i], ev, CAP), 0);
        int64_t dt = np_now() - t0;
        NP_CHECK_GE(dt, delays[i]);
        NP_CHECK_LT(dt, delays[i] + 500 * NP_MILLISECOND);
    }
    teardown();
}

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * NP_SECOND + ts.tv_nsec;
}

/* A sub-millisecond delay must sleep, not spin and not become 0. */
static void t_submillisecond_delay_does_not_spin(void)
{
    np__pollev ev[CAP];
    const int rounds = 50;
    const int64_t d = 300 * NP_MICROSECOND;
    setup();
    int64_t c0 = thread_cpu_ns(), t0 = np_now();
    for (int i = 0; i < rounds; i++)
        NP_CHECK_EQ(poll_(d, ev, CAP), 0);
    int64_t wall = np_now() - t0, cpu = thread_cpu_ns() - c0;
    NP_CHECK_GE(wall, rounds * d);
    /* Spinning would burn CPU for the whole wait. */
    NP_CHECK_LT(cpu, wall / 2);
    teardown();
}

typedef struct poll_thread {
    pthread_t th;
    int64_t delay;
    _Atomic int returned;
    _Atomic int64_t returned_at;
    int n;
} poll_thread;

static void *poll_once(void *arg)
{
    poll_thread *p = arg;
    np__pollev ev[CAP];
    p->n = poll_(p->delay, ev, CAP);
    atomic_store(&p->returned_at, np_now());
    atomic_store(&p->returned, 1);
    return NULL;
}

static void t_wake_returns_blocked_poll(void)
{
    setup();
    for (int round = 0; round < 3; round++) {
        poll_thread p = { .delay = round == 2 ? 10 * NP_SECOND : -1 };
        NP_CHECK_OK(pthread_create(&p.th, NULL, poll_once, &p));
        /* An infinite poll stays blocked on its own... */
        struct timespec ts = { 0, 50 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        NP_CHECK_EQ(atomic_load(&p.returned), 0);
        /* ...and a wake from this thread returns it promptly. */
        int64_t t0 = np_now();
        np__poller_wake();
        NP_CHECK_OK(pthread_join(p.th, NULL));
        NP_CHECK_EQ(p.n, 0);
        NP_CHECK_LT(atomic_load(&p.returned_at) - t0, NP_SECOND);
    }
    teardown();
}

/* Many wakes while none is consumed cost one signal: one blocking poll eats
 * them all, and the next one blocks for its whole delay. */
static void t_wakes_coalesce(void)
{
    np__pollev ev[CAP];
    setup();
    for (int i = 0; i < 10000; i++)
        np__poller_wake();
    int64_t t0 = np_now();
    NP_CHECK_EQ(poll_(10 * NP_SECOND, ev, CAP), 0);
    NP_CHECK_LT(np_now() - t0, NP_SECOND);
    t0 = np_now();
    NP_CHECK_EQ(poll_(20 * NP_MILLISECOND, ev, CAP), 0);
    NP_CHECK_GE(np_now() - t0, 20 * NP_MILLISECOND);
    teardown();
}

enum { STORM_THREADS = 4, STORM_WAKES = 10000 };

static void *storm_waker(void *arg)
{
    (void)arg;
    for (int i = 0; i < STORM_WAKES / STORM_THREADS; i++)
        np__poller_wake();
    return NULL;
}

/* 10,000 wakes from four threads while a poll is blocked (or about to
 * block): they collapse into a handful of returns, not thousands. Counted as
 * the blocking polls that return before one lasts its full 20 ms. */
static void t_wake_storm_costs_few_returns(void)
{
    pthread_t th[STORM_THREADS];
    setup();
    poll_thread p = { .delay = -1 };
    NP_CHECK_OK(pthread_create(&p.th, NULL, poll_once, &p));
    for (int i = 0; i < STORM_THREADS; i++)
        NP_CHECK_OK(pthread_create(&th[i], NULL, storm_waker, NULL));
    for (int i = 0; i < STORM_THREADS; i++)
        NP_CHECK_OK(pthread_join(th[i], NULL));
    NP_CHECK_OK(pthread_join(p.th, NULL));
    int returns = 1;
    np__pollev ev[CAP];
    for (;;) {
        int64_t t0 = np_now();
        NP_CHECK_EQ(poll_(20 * NP_MILLISECOND, ev, CAP), 0);
        if (np_now() - t0 >= 20 * NP_MILLISECOND)
            break;
        returns++;
        NP_CHECK_LE(returns, 5);
    }
    printf("  %d wakes -> %d poll returns\n", STORM_WAKES, returns);
    teardown();
}

/* Go issue 42515: a non-blocking poll must not swallow a pending wake. */
static void t_nonblocking_poll_keeps_wake(void)
{
    np__pollev ev[CAP];
    setup();
    np__poller_wake();
    for (int i = 0; i < 5; i++)
        poll_(0, ev, CAP);
    int64_t t0 = np_now();
    NP_CHECK_EQ(poll_(10 * NP_SECOND, ev, CAP), 0);
    NP_CHECK_LT(np_now() - t0, NP_SECOND);
    teardown();
}

/* Close a registration with an event pending, reuse its fd number (and the
 * same registration) for a fresh socket with no data: the old readability
 * must not show up. */
static void t_closed_registration_fd_reuse(void)
{
    int sv[2], sv2[2];
    setup();
    make_pair(sv);
    open_reg(&regs[0], sv[0], NP__POLL_READ | NP__POLL_WRITE);
    NP_CHECK_EQ(write(sv[1], "x", 1), 1); /* pending read event for regs[0] */
    NP_CHECK_OK(np__poller_close(&regs[0]));
    int old_fd = sv[0];
    close(sv[0]);
    make_pair(sv2);
    NP_CHECK_EQ(sv2[0], old_fd); /* the lowest free number is reused */
    open_reg(&regs[0], sv2[0], NP__POLL_READ | NP__POLL_WRITE);
    int got = wait_for(&regs[0], NP__POLL_READ, 50 * NP_MILLISECOND, NULL);
    NP_CHECK_EQ(got & NP__POLL_READ, 0);
    NP_CHECK_OK(np__poller_close(&regs[0]));
    close(sv2[0]);
    close(sv2[1]);
    close(sv[1]);
    teardown();
}

/* The kernel keeps a registration alive while another descriptor (a dup)
 * refers to the same open file, even after the registered fd number was
 * closed. If the owner retires the registration (as the descriptor cache does
 * on free), events still queued for it must be dropped, before and after its
 * fd number is reused. */
static void t_stale_registration_events_dropped(void)
{
    int sv[2], sv2[2];
    np__pollev ev[CAP];
    setup();
    make_pair(sv);
    open_reg(&regs[0], sv[0], NP__POLL_READ | NP__POLL_WRITE);
    drain();
    int keep = NP_CHECK_SYS(dup(sv[0]));
    int old_fd = sv[0];
    close(sv[0]);
    np__pollreg_retire(&regs[0]);
    NP_CHECK_EQ(write(sv[1], "x", 1), 1); /* readable through `keep` */
    int64_t until = np_now() + 50 * NP_MILLISECOND;
    while (np_now() < until) {
        int n = poll_(5 * NP_MILLISECOND, ev, CAP);
        NP_CHECK_EQ(n, 0);
    }
    make_pair(sv2);
    NP_CHECK_EQ(sv2[0], old_fd);
    open_reg(&regs[0], sv2[0], NP__POLL_READ | NP__POLL_WRITE);
    NP_CHECK_EQ(write(sv[1], "y", 1), 1); /* old file again, new one idle */
    int got = wait_for(&regs[0], NP__POLL_READ, 50 * NP_MILLISECOND, NULL);
    NP_CHECK_EQ(got & NP__POLL_READ, 0);
    NP_CHECK_EQ(write(sv2[1], "z", 1), 1); /* and the new one works */
    got = wait_for(&regs[0], NP__POLL_READ, 5 * NP_SECOND, NULL);
    NP_CHECK_EQ(got & NP__POLL_READ, NP__POLL_READ);
    NP_CHECK_OK(np__poller_close(&regs[0]));
    close(sv2[0]);
    close(sv2[1]);
    close(keep);
    close(sv[1]);
    teardown();
}

static void on_usr1(int sig)
{
    (void)sig;
}

static void t_signal_interrupts_poll(void)
{
    int sv[2];
    struct sigaction sa = { .sa_handler = on_usr1 }; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    NP_CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
    setup();
    poll_thread p = { .delay = -1 };
    NP_CHECK_OK(pthread_create(&p.th, NULL, poll_once, &p));
    /* Keep signalling until the poll returns: a signal that lands before the
     * thread blocks is simply handled; one that lands while it is blocked
     * must end the poll with an empty batch. */
    int64_t until = np_now() + 10 * NP_SECOND;
    while (!atomic_load(&p.returned) && np_now() < until) {
        pthread_kill(p.th, SIGUSR1);
        struct timespec ts = { 0, 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    NP_CHECK_EQ(atomic_load(&p.returned), 1);
    NP_CHECK_OK(pthread_join(p.th, NULL));
    NP_CHECK_EQ(p.n, 0);
    /* The contract still holds afterwards. */
    make_pair(sv);
    open_reg(&regs[0], sv[0], NP__POLL_READ);
    NP_CHECK_EQ(write(sv[1], "x", 1), 1);
    NP_CHECK_EQ(wait_for(&regs[0], NP__POLL_READ, 5 * NP_SECOND, NULL) & NP__POLL_READ, NP__POLL_READ);
    NP_CHECK_OK(np__poller_close(&regs[0]));
    close(sv[0]);
    close(sv[1]);
    teardown();
}

static bool fd_kind_is_poller_like(int fd)
{
    char path[64], link[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n < 0)
        return false;
    link[n] = 0;
    return strstr(link, "eventpoll") || strstr(link, "eventfd") || strncmp(link, "pipe:", 5) == 0;
}

static void t_is_poll_descriptor(void)
{
    int sv[2], p[2];
    NP_CHECK(!np__poller_is_poll_descriptor(-1));
    /* The test's own pipe and socket, opened before and after init. */
    NP_CHECK_SYS(pipe(p));
    setup();
    make_pair(sv);
    int ours = 0;
    for (int fd = 0; fd < 1024; fd++) {
        if (!np__poller_is_poll_descriptor(fd))
            continue;
        ours++;
        NP_CHECK(fd != p[0] && fd != p[1] && fd != sv[0] && fd != sv[1]);
        NP_CHECK_MSG(fd_kind_is_poller_like(fd), "fd %d claimed but is not an epoll/eventfd/pipe", fd);
        NP_CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    }
    NP_CHECK_GE(ours, 1);
    NP_CHECK_LE(ours, 3);
    close(sv[0]);
    close(sv[1]);
    teardown();
    close(p[0]);
    close(p[1]);
}

/* More ready descriptors than one call may return: none is lost. */
static void t_batch_larger_than_cap(void)
{
    enum { N = 100 };
    int sv[N][2];
    np__pollev ev[8];
    int seen[N] = { 0 };
    setup();
    for (int i = 0; i < N; i++) {
        make_pair(sv[i]);
        NP_CHECK_EQ(write(sv[i][1], "x", 1), 1);
        open_reg(&regs[i], sv[i][0], NP__POLL_READ);
    }
    int distinct = 0;
    int64_t until = np_now() + 5 * NP_SECOND;
    while (distinct < N && np_now() < until) {
        int n = poll_(NP_SECOND, ev, 8);
        NP_CHECK_LE(n, 8);
        for (int i = 0; i < n; i++) {
            int idx = (int)(ev[i].reg - regs);
            NP_CHECK(idx >= 0 && idx < N);
            if ((ev[i].mode & NP__POLL_READ) && !seen[idx]++)
                distinct++;
        }
    }
    NP_CHECK_EQ(distinct, N);
    for (int i = 0; i < N; i++) {
        NP_CHECK_OK(np__poller_close(&regs[i]));
        close(sv[i][0]);
        close(sv[i][1]);
    }
    teardown();
}

/* Open, arm and close from other threads while one thread is blocked in
 * poll: every readiness reaches its registration. */
enum { CW_THREADS = 4, CW_ROUNDS = 300 };
static _Atomic uint32_t cw_seen[CW_THREADS];
static _Atomic int cw_stop;

static void *cw_poller(void *arg)
{
    (void)arg;
    np__pollev ev[CAP];
    while (!atomic_load(&cw_stop)) {
        int n = poll_(-1, ev, CAP);
        for (int i = 0; i < n; i++) {
            int idx = (int)(ev[i].reg - regs);
            NP_CHECK(idx >= 0 && idx < CW_THREADS);
            if (ev[i].mode & NP__POLL_READ)
                atomic_fetch_add(&cw_seen[idx], 1);
        }
    }
    return NULL;
}

static void *cw_worker(void *arg)
{
    int idx = (int)(intptr_t)arg;
    np__pollreg *reg = &regs[idx];
    for (int r = 0; r < CW_ROUNDS; r++) {
        int sv[2];
        make_pair(sv);
        uint32_t before = atomic_load(&cw_seen[idx]);
        open_reg(reg, sv[0], NP__POLL_READ);
        NP_CHECK_EQ(write(sv[1], "x", 1), 1);
        int64_t until = np_now() + 10 * NP_SECOND;
        while (atomic_load(&cw_seen[idx]) == before) {
            NP_CHECK_MSG(np_now() < until, "thread %d round %d: readiness lost", idx, r);
            sched_yield();
        }
        NP_CHECK_OK(np__poller_close(reg));
        close(sv[0]);
        close(sv[1]);
    }
    return NULL;
}

static void t_open_close_while_blocked(void)
{
    pthread_t poller, w[CW_THREADS];
    setup();
    NP_CHECK_OK(pthread_create(&poller, NULL, cw_poller, NULL));
    for (int i = 0; i < CW_THREADS; i++)
        NP_CHECK_OK(pthread_create(&w[i], NULL, cw_worker, (void *)(intptr_t)i));
    for (int i = 0; i < CW_THREADS; i++)
        NP_CHECK_OK(pthread_join(w[i], NULL));
    atomic_store(&cw_stop, 1);
    np__poller_wake();
    NP_CHECK_OK(pthread_join(poller, NULL));
    teardown();
}

static void t_reinit(void)
{
    int sv[2];
    setup();
    for (int round = 0; round < 3; round++) {
        if (round)
            NP_CHECK_OK(np__poller_init());
        make_pair(sv);
        open_reg(&regs[0], sv[0], NP__POLL_READ);
        NP_CHECK_EQ(write(sv[1], "x", 1), 1);
        NP_CHECK_EQ(wait_for(&regs[0], NP__POLL_READ, 5 * NP_SECOND, NULL) & NP__POLL_READ, NP__POLL_READ);
        NP_CHECK_OK(np__poller_close(&regs[0]));
        close(sv[0]);
        close(sv[1]);
        np__poller_fini();
        for (int fd = 0; fd < 1024; fd++)
            NP_CHECK(!np__poller_is_poll_descriptor(fd));
    }
}

static void t_bad_input(void)
{
    setup();
    regs[0].fd = -1;
    NP_CHECK_EQ(np__poller_open(&regs[0]), -EBADF);
    regs[0].fd = 100000; /* not open */
    NP_CHECK_EQ(np__poller_open(&regs[0]), -EBADF);
    /* Arming or closing what was never opened is an error, not a crash. */
    NP_CHECK_LT(np__poller_close(&regs[0]), 0);
    teardown();
}

NP_TEST_LIST(
    NP_CASE(t_backend_name),
    NP_CASE(t_pollreg_tags),
    NP_CASE(t_read_ready),
    NP_CASE(t_write_ready),
    NP_CASE(t_read_and_write_in_one_event),
    NP_CASE(t_hangup_wakes_both_directions),
    NP_CASE(t_error_wakes_both_directions),
    NP_CASE(t_error_alone_sets_err_flag),
    NP_CASE(t_delay_zero_does_not_block),
    NP_CASE(t_delay_positive_never_early),
    NP_CASE(t_submillisecond_delay_does_not_spin),
    NP_CASE(t_wake_returns_blocked_poll),
    NP_CASE(t_wakes_coalesce),
    NP_CASE(t_wake_storm_costs_few_returns),
    NP_CASE(t_nonblocking_poll_keeps_wake),
    NP_CASE(t_closed_registration_fd_reuse),
    NP_CASE(t_stale_registration_events_dropped),
    NP_CASE(t_signal_interrupts_poll),
    NP_CASE(t_is_poll_descriptor),
    NP_CASE(t_batch_larger_than_cap),
    NP_CASE(t_open_close_while_blocked),
    NP_CASE(t_reinit),
    NP_CASE(t_bad_input))
