/* Many connections at once: an echo server and its clients, each in its own
 * process (the fd limit, 20,000 here, cannot hold 10,000 connections' both
 * ends in one).
 *
 * The case forks before any runtime starts: the parent is the server, the
 * child the client; each runs its own np_run with 2 workers. The server
 * listens on 127.0.0.1 port 0 and passes the address to the client through a
 * pipe. A watcher thread in the server fails the case at once if the client
 * dies; the client gets SIGKILL if the server dies (PR_SET_PDEATHSIG).
 *
 *  t_10k_connections_echo   10,000 connections open at the same time, each
 *                           echoing a few small messages. Two barriers in the
 *                           client (all dialed; all echoed once) make every
 *                           connection open on both sides at once; the server
 *                           counts its live connections and checks the
 *                           maximum was 10,000.
 *  t_1k_connections_random_sizes
 *                           1,000 connections, many round trips of 1..64 KiB
 *                           messages, read and written in random pieces on
 *                           both sides (partial reads and writes); every byte
 *                           checked.
 *
 * Under ThreadSanitizer both cases are scaled down (1,000 connections; 500
 * x 8 rounds): every task that ever blocks holds a TSan fiber, and creating
 * one costs TSan several milliseconds (its thread context is allocated and
 * cleared: 300 tasks that merely sleep take 2.7 s under TSan); measured,
 * 2,000 / 4,000 / 8,000 tasks dialing at once take 3 / 6 / 29 s under TSan
 * against 0.08 s for 2,000 without, so 10,000 per process cannot finish
 * within the harness's 60 s per case on a busy 2-core machine.
 *
 * Time budget: the harness's per-case timeout (NP_TEST_TIMEOUT, default
 * 60 s) less 10 s; every call has that as its deadline, so a stuck
 * connection is reported by name rather than by the alarm.
 *
 * The client's barrier uses the API itself: a task waiting at it parks in
 * np_wait_readable on its own connection (no data comes: the server only
 * echoes), and the last one to arrive moves every connection's read deadline
 * into the past, which wakes them all with -ETIMEDOUT; each then puts its
 * deadline back. No polling of a counter by 10,000 tasks.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netpoll.h"
#include "np_test.h"
#include "base/sanitizer.h"

typedef struct scale_cfg {
    int conns;
    int rounds;
    int barrier_round;   /* the round after which the second barrier is: 0 = no barriers */
    size_t min_size, max_size; /* message sizes (random between, per connection and round) */
    bool random_pieces;  /* read and write in random pieces */
    size_t stack_size;
} scale_cfg;

/* The whole exchange must end by then (absolute, set before the fork: both
 * processes share CLOCK_MONOTONIC). */
static int64_t test_deadline;
static unsigned case_timeout; /* the harness's, seconds */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static size_t msg_size(const scale_cfg *cfg, int conn, int round)
{
    if (cfg->min_size == cfg->max_size)
        return cfg->min_size;
    uint64_t r = mix(((uint64_t)conn << 32) ^ (uint64_t)round ^ 0x5eed);
    return cfg->min_size + (size_t)(r % (cfg->max_size - cfg->min_size + 1));
}

static void msg_fill(unsigned char *buf, size_t len, int conn, int round)
{
    uint64_t s = mix(((uint64_t)conn << 32) ^ ((uint64_t)round << 1) ^ 1) | 1;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t x = xorshift(&s);
        memcpy(buf + i, &x, 8);
    }
    uint64_t x = xorshift(&s);
    memcpy(buf + i, &x, len - i);
}

static uint64_t expected_bytes(const scale_cfg *cfg)
{
    uint64_t total = 0;
    for (int c = 0; c < cfg->conns; c++)
        for (int r = 0; r < cfg->rounds; r++)
            total += msg_size(cfg, c, r);
    return total;
}

static double ms_since(int64_t t0)
{
    return (double)(np_now() - t0) / 1e6;
}

/* Soft fd limit up to the hard one; skips when the hard one is too low. */
static void raise_fd_limit(int need)
{
    struct rlimit rl;
    NP_CHECK_SYS(getrlimit(RLIMIT_NOFILE, &rl));
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)need) {
        char why[128];
        snprintf(why, sizeof why, "RLIMIT_NOFILE hard limit %llu < %d",
                 (unsigned long long)rl.rlim_max, need);
        NP_SKIP(why);
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        NP_CHECK_SYS(setrlimit(RLIMIT_NOFILE, &rl));
    }
}

/* ---- server ------------------------------------------------------------------------------ */

typedef struct server {
    const scale_cfg *cfg;
    int port_fd;             /* pipe to the client: the address */
    np_conn *conns;
    int accepted;
    _Atomic int live, max_live, finished;
    _Atomic uint64_t bytes;
    int64_t t_all_accepted, t0;
} server;

static server srv;

static void echo_task(void *arg)
{
    int i = (int)(intptr_t)arg;
    np_conn c = srv.conns[i];
    size_t cap = srv.cfg->max_size;
    unsigned char *buf = malloc(cap);
    NP_CHECK(buf);
    uint64_t rng = mix((uint64_t)i + 77) | 1;
    uint64_t total = 0;
    NP_CHECK_OK(np_set_deadline(c, test_deadline));
    for (;;) {
        size_t want = srv.cfg->random_pieces ? 1 + (size_t)(xorshift(&rng) % cap) : cap;
        ssize_t n = np_read(c, buf, want);
        if (n == 0)
            break;
        NP_CHECK_MSG(n > 0, "server conn %d: np_read: %s after %llu bytes", i,
                     np_strerror((int)n), (unsigned long long)total);
        /* Echo in random pieces too. */
        for (ssize_t off = 0; off < n;) {
            size_t piece = (size_t)(n - off);
            if (srv.cfg->random_pieces && piece > 1)
                piece = 1 + (size_t)(xorshift(&rng) % piece);
            ssize_t w = np_write(c, buf + off, piece);
            NP_CHECK_MSG(w == (ssize_t)piece, "server conn %d: np_write = %zd (%s)", i, w,
                         np_strerror((int)w));
            off += w;
        }
        total += (uint64_t)n;
    }
    NP_CHECK_OK(np_close(c));
    free(buf);
    atomic_fetch_add(&srv.bytes, total);
    atomic_fetch_sub(&srv.live, 1);
    atomic_fetch_add(&srv.finished, 1);
}

static void server_main(void *arg)
{
    (void)arg;
    np_listener l;
    char addr[64];
    NP_CHECK_OK(np_listen(&l, "tcp", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(l, addr, sizeof addr));
    size_t len = strlen(addr) + 1;
    NP_CHECK_EQ(write(srv.port_fd, addr, len), (ssize_t)len);
    close(srv.port_fd);
    NP_CHECK_OK(np_listener_set_deadline(l, test_deadline));
    srv.t0 = np_now();
    while (srv.accepted < srv.cfg->conns) {
        np_conn c;
        int rc = np_accept(l, &c);
        NP_CHECK_MSG(rc == 0, "np_accept #%d: %s (%d connections live)", srv.accepted,
                     np_strerror(rc), atomic_load(&srv.live));
        int live = atomic_fetch_add(&srv.live, 1) + 1;
        int m = atomic_load(&srv.max_live);
        while (live > m && !atomic_compare_exchange_weak(&srv.max_live, &m, live)) {
        }
        srv.conns[srv.accepted] = c;
        NP_CHECK_OK(np_go(echo_task, (void *)(intptr_t)srv.accepted));
        srv.accepted++;
    }
    srv.t_all_accepted = np_now();
    NP_CHECK_OK(np_listener_close(l));
}

/* Waits for the client; fails the whole case at once if it fails. */
typedef struct watcher {
    pid_t pid;
    int status;
} watcher;

static void *watcher_thread(void *arg)
{
    watcher *w = arg;
    while (waitpid(w->pid, &w->status, 0) < 0)
        NP_CHECK(errno == EINTR);
    if (!WIFEXITED(w->status) || WEXITSTATUS(w->status) != 0) {
        if (WIFSIGNALED(w->status))
            np_test_fail(__FILE__, __LINE__, "client process killed by signal %d (%s)",
                         WTERMSIG(w->status), strsignal(WTERMSIG(w->status)));
        np_test_fail(__FILE__, __LINE__, "client process exit status %d",
                     WEXITSTATUS(w->status));
    }
    return NULL;
}

/* ---- client -------------------------------------------------------------------------------- */

typedef struct client {
    const scale_cfg *cfg;
    char addr[64];
    np_conn *conns;
    _Atomic int arrived[2];   /* at barrier 0 (all dialed), 1 (all echoed once) */
    _Atomic int finished;
    _Atomic long dial_retries;
    _Atomic uint64_t bytes;
    _Atomic int64_t t_echoed; /* the last task's last echo */
    int64_t t0, t_barrier[2];
} client;

static client cli;

/* All tasks wait here until every one has arrived (see the top comment). */
static void barrier(int which, int i)
{
    np_conn c = cli.conns[i];
    if (atomic_fetch_add(&cli.arrived[which], 1) + 1 == cli.cfg->conns) {
        cli.t_barrier[which] = np_now();
        for (int k = 0; k < cli.cfg->conns; k++)
            NP_CHECK_OK(np_set_read_deadline(cli.conns[k], 1)); /* long past: wakes all */
    } else {
        int rc = np_wait_readable(c);
        NP_CHECK_MSG(rc == -ETIMEDOUT, "client conn %d at barrier %d: %d (%s)", i, which, rc,
                     np_strerror(rc));
    }
    NP_CHECK_EQ(atomic_load(&cli.arrived[which]), cli.cfg->conns);
    NP_CHECK_OK(np_set_read_deadline(c, test_deadline));
}

static void round_trip(int i, int round, unsigned char *out, unsigned char *in, uint64_t *rng)
{
    np_conn c = cli.conns[i];
    size_t len = msg_size(cli.cfg, i, round);
    msg_fill(out, len, i, round);
    if (cli.cfg->random_pieces) {
        /* Write in random pieces; the echo comes back while we write (both
         * sides' buffers hold a whole 64 KiB message, so this cannot
         * deadlock). */
        for (size_t off = 0; off < len;) {
            size_t piece = 1 + (size_t)(xorshift(rng) % (len - off));
            ssize_t w = np_write(c, out + off, piece);
            NP_CHECK_MSG(w == (ssize_t)piece, "client conn %d round %d: np_write = %zd (%s)", i,
                         round, w, np_strerror((int)w));
            off += piece;
        }
    } else {
        ssize_t w = np_write(c, out, len);
        NP_CHECK_MSG(w == (ssize_t)len, "client conn %d round %d: np_write = %zd (%s)", i, round,
                     w, np_strerror((int)w));
    }
    for (size_t got = 0; got < len;) {
        size_t want = len - got;
        if (cli.cfg->random_pieces)
            want = 1 + (size_t)(xorshift(rng) % want);
        ssize_t n = np_read(c, in + got, want);
        NP_CHECK_MSG(n > 0, "client conn %d round %d: np_read = %zd (%s) at %zu of %zu", i,
                     round, n, np_strerror((int)n), got, len);
        got += (size_t)n;
    }
    NP_CHECK_MSG(memcmp(in, out, len) == 0, "client conn %d round %d: echo differs", i, round);
    atomic_fetch_add(&cli.bytes, len);
}

static void client_task(void *arg)
{
    int i = (int)(intptr_t)arg;
    const scale_cfg *cfg = cli.cfg;
    np_conn c;
    for (int attempt = 0;; attempt++) {
        int rc = np_dial(&c, "tcp", cli.addr, test_deadline);
        if (rc == 0)
            break;
        /* A full accept queue drops SYNs (the dial just takes longer); a
         * reset or refusal under overload is retried. */
        NP_CHECK_MSG((rc == -ECONNREFUSED || rc == -ECONNRESET || rc == -EAGAIN) && attempt < 20,
                     "client conn %d: np_dial: %s (attempt %d)", i, np_strerror(rc), attempt);
        atomic_fetch_add(&cli.dial_retries, 1);
        NP_CHECK_OK(np_sleep((attempt + 1) * 10 * NP_MILLISECOND));
    }
    cli.conns[i] = c;
    NP_CHECK_OK(np_set_deadline(c, test_deadline));
    unsigned char *out = malloc(cfg->max_size), *in = malloc(cfg->max_size);
    NP_CHECK(out && in);
    uint64_t rng = mix((uint64_t)i + 1) | 1;
    if (cfg->barrier_round)
        barrier(0, i); /* every connection dialed */
    for (int r = 0; r < cfg->rounds; r++) {
        if (cfg->barrier_round && r == cfg->barrier_round)
            barrier(1, i); /* every connection accepted and echoing */
        round_trip(i, r, out, in, &rng);
    }
    int64_t t = np_now(), m = atomic_load(&cli.t_echoed);
    while (t > m && !atomic_compare_exchange_weak(&cli.t_echoed, &m, t)) {
    }
    /* Closing first: the server's read sees end of stream. */
    NP_CHECK_OK(np_close(c));
    free(out);
    free(in);
    atomic_fetch_add(&cli.finished, 1);
}

static void client_main(void *arg)
{
    (void)arg;
    cli.t0 = np_now();
    for (int i = 0; i < cli.cfg->conns; i++)
        NP_CHECK_OK(np_go(client_task, (void *)(intptr_t)i));
}

_Noreturn static void run_client(const scale_cfg *cfg, int port_fd)
{
    alarm(case_timeout); /* alarms are not inherited */
    raise_fd_limit(cfg->conns + 100);
    cli.cfg = cfg;
    size_t n = 0;
    while (n < sizeof cli.addr) {
        ssize_t r = read(port_fd, cli.addr + n, sizeof cli.addr - n);
        if (r < 0 && errno == EINTR)
            continue;
        NP_CHECK_MSG(r > 0, "no address from the server");
        n += (size_t)r;
        if (memchr(cli.addr, 0, n))
            break;
    }
    close(port_fd);
    cli.conns = calloc((size_t)cfg->conns, sizeof *cli.conns);
    NP_CHECK(cli.conns);
    np_config c = { .workers = 2, .stack_size = cfg->stack_size };
    NP_CHECK_OK(np_run(&c, client_main, NULL));
    NP_CHECK_EQ(atomic_load(&cli.finished), cfg->conns);
    NP_CHECK_EQ(atomic_load(&cli.bytes), expected_bytes(cfg));
    if (cfg->barrier_round)
        printf("  client: all %d dialed at %.0f ms (%ld dial retries), all echoed once at "
               "%.0f ms, all %d echoes at %.0f ms, closed at %.0f ms\n",
               cfg->conns, (double)(cli.t_barrier[0] - cli.t0) / 1e6,
               atomic_load(&cli.dial_retries), (double)(cli.t_barrier[1] - cli.t0) / 1e6,
               cfg->rounds, (double)(atomic_load(&cli.t_echoed) - cli.t0) / 1e6,
               ms_since(cli.t0));
    else
        printf("  client: %d connections x %d round trips, %.1f MB each way, %ld dial retries, "
               "%.0f ms\n",
               cfg->conns, cfg->rounds, (double)atomic_load(&cli.bytes) / 1e6,
               atomic_load(&cli.dial_retries), ms_since(cli.t0));
    fflush(stdout);
    free(cli.conns);
    exit(0); /* exit, not _exit: LeakSanitizer checks at exit */
}

/* ---- the case --------------------------------------------------------------------------------- */

static void run_scale(const scale_cfg *cfg)
{
    raise_fd_limit(cfg->conns + 100);
    const char *t = getenv("NP_TEST_TIMEOUT");
    case_timeout = t ? (unsigned)strtoul(t, NULL, 10) : 60;
    if (case_timeout < 20)
        case_timeout = 60;
    test_deadline = np_now() + (int64_t)(case_timeout - 10) * NP_SECOND;
    int p[2];
    NP_CHECK_SYS(pipe2(p, O_CLOEXEC));
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = NP_CHECK_SYS(fork());
    if (pid == 0) { /* the client */
        close(p[1]);
        NP_CHECK_SYS(prctl(PR_SET_PDEATHSIG, SIGKILL)); /* the server ends: so do we */
        if (getppid() != parent) /* it had ended already */
            _exit(1);
        run_client(cfg, p[0]); /* does not return */
    }
    close(p[0]);
    srv.cfg = cfg;
    srv.port_fd = p[1];
    srv.conns = calloc((size_t)cfg->conns, sizeof *srv.conns);
    NP_CHECK(srv.conns);
    watcher w = { .pid = pid };
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, watcher_thread, &w));
    np_config c = { .workers = 2, .stack_size = cfg->stack_size };
    NP_CHECK_OK(np_run(&c, server_main, NULL));
    int64_t t_end = np_now();
    NP_CHECK_OK(pthread_join(th, NULL)); /* the client exited 0 */
    printf("  server: %d accepted in %.0f ms, max %d live at once, all closed at %.0f ms, "
           "%.1f MB echoed\n",
           srv.accepted, (double)(srv.t_all_accepted - srv.t0) / 1e6,
           atomic_load(&srv.max_live), (double)(t_end - srv.t0) / 1e6,
           (double)atomic_load(&srv.bytes) / 1e6);
    NP_CHECK_EQ(srv.accepted, cfg->conns);
    NP_CHECK_EQ(atomic_load(&srv.finished), cfg->conns);
    NP_CHECK_EQ(atomic_load(&srv.live), 0);
    if (cfg->barrier_round)
        NP_CHECK_EQ(atomic_load(&srv.max_live), cfg->conns);
    NP_CHECK_EQ(atomic_load(&srv.bytes), expected_bytes(cfg));
    free(srv.conns);
}

static void t_10k_connections_echo(void)
{
    static const scale_cfg cfg = {
#ifdef NP_TSAN
        .conns = 1000, /* see the top comment */
#else
        .conns = 10000,
#endif
        .rounds = 4,
        .barrier_round = 1,
        .min_size = 48,
        .max_size = 48,
        .stack_size = 64 * 1024,
    };
    run_scale(&cfg);
}

static void t_1k_connections_random_sizes(void)
{
    static const scale_cfg cfg = {
#ifdef NP_TSAN
        .conns = 500,
        .rounds = 8,
#else
        .conns = 1000,
        .rounds = 20,
#endif
        .min_size = 1,
        .max_size = 64 * 1024,
        .random_pieces = true,
    };
    run_scale(&cfg);
}

NP_TEST_LIST(NP_CASE(t_10k_connections_echo), NP_CASE(t_1k_connections_random_sizes))
