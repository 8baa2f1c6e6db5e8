/* The net API against shared/API.md: every row of the error table, and the
 * contract's sentences on handles, close, half-close, addresses and EOF. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dns_fake.h"
#include "net/resolve.h"
#include "netpoll.h"
#include "np_test.h"
#include "base/sanitizer.h"

typedef void (*body_fn)(void);
static void run_body(void *arg)
{
    ((body_fn)arg)();
}

/* Runs fn as the main task of a 2-worker runtime. */
static void run(body_fn fn)
{
    np_config c = { .workers = 2 };
    NP_CHECK_OK(np_run(&c, run_body, (void *)fn));
}

/* A listener on a free loopback port and its address. */
static np_listener listen_any(const char *network, const char *address, char *addr, size_t cap)
{
    np_listener l;
    NP_CHECK_OK(np_listen(&l, network, address));
    NP_CHECK_OK(np_listener_addr(l, addr, cap));
    return l;
}

static np_conn accept_one(np_listener l)
{
    np_conn c;
    NP_CHECK_OK(np_accept(l, &c));
    return c;
}

static void write_all(np_conn c, const void *buf, size_t len)
{
    NP_CHECK_EQ(np_write(c, buf, len), (ssize_t)len);
}

static void read_exact(np_conn c, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = np_read(c, (char *)buf + got, len - got);
        NP_CHECK_GT(n, 0);
        got += (size_t)n;
    }
}

/* ---- echo over every network ------------------------------------------------- */

static np_listener echo_l;
static void echo_server(void *arg)
{
    (void)arg;
    np_conn c = accept_one(echo_l);
    char buf[4096];
    ssize_t n;
    while ((n = np_read(c, buf, sizeof buf)) > 0)
        write_all(c, buf, (size_t)n);
    NP_CHECK_EQ(n, 0);
    NP_CHECK_OK(np_close(c));
}

static void echo_over(const char *network, const char *listen_addr, const char *dial_network)
{
    char addr[128];
    echo_l = listen_any(network, listen_addr, addr, sizeof addr);
    NP_CHECK_OK(np_go(echo_server, NULL));
    np_conn c;
    int rc = np_dial(&c, dial_network, addr, np_now() + 5 * NP_SECOND);
    NP_CHECK_MSG(rc == 0, "dial %s %s (listening with %s on %s): %s", dial_network, addr, network,
                 listen_addr, np_strerror(rc));
    char local[128], remote[128];
    NP_CHECK_OK(np_local_addr(c, local, sizeof local));
    NP_CHECK_OK(np_remote_addr(c, remote, sizeof remote));
    if (strcmp(network, "unix") != 0 && listen_addr[0] != ':') /* not a wildcard */
        NP_CHECK_STR_EQ(remote, addr);
    const char msg[] = "hello, netpoll";
    for (int i = 0; i < 100; i++) {
        char back[sizeof msg];
        write_all(c, msg, sizeof msg);
        read_exact(c, back, sizeof back);
        NP_CHECK(memcmp(back, msg, sizeof msg) == 0);
    }
    NP_CHECK_OK(np_close_write(c)); /* the server sees EOF and closes */
    char b;
    NP_CHECK_EQ(np_read(c, &b, 1), 0);
    NP_CHECK_EQ(np_read(c, &b, 1), 0); /* and again */
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_listener_close(echo_l));
}

static char unix_path[64];
static void body_echo(void)
{
    echo_over("tcp4", "127.0.0.1:0", "tcp");
    echo_over("tcp", "127.0.0.1:0", "tcp4");
    echo_over("tcp6", "[::1]:0", "tcp6");
    echo_over("tcp", ":0", "tcp"); /* every interface, dialled on its port */
    snprintf(unix_path, sizeof unix_path, "/tmp/np_test_%d.sock", (int)getpid());
    echo_over("unix", unix_path, "unix");
    struct stat st;
    NP_CHECK_EQ(stat(unix_path, &st), -1); /* removed at listener close */
    echo_over("unix", "@np_test_abstract", "unix");
}

static void t_echo_tcp4_tcp6_unix(void)
{
    run(body_echo);
}

static void body_localhost(void)
{
    char addr[128], port[16], name[64];
    echo_l = listen_any("tcp4", "127.0.0.1:0", addr, sizeof addr);
    snprintf(port, sizeof port, "%s", strrchr(addr, ':') + 1);
    snprintf(name, sizeof name, "localhost:%s", port);
    NP_CHECK_OK(np_go(echo_server, NULL));
    np_conn c;
    NP_CHECK_OK(np_dial(&c, "tcp4", name, 0)); /* resolved off the workers */
    write_all(c, "x", 1);
    char b;
    read_exact(c, &b, 1);
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_listener_close(echo_l));
    /* An unknown name: asked of a fake server on loopback (never the
     * network), which says it does not exist. */
    if (strcmp(np__resolver_name(), "c-ares") == 0) {
        dns_fake d;
        NP_CHECK_OK(dns_fake_start(&d, DNS_NXDOMAIN));
        NP_CHECK_EQ(np_dial(&c, "tcp", "no-such-host.example:80", 0), NP_ENOHOST);
        NP_CHECK_STR_EQ(np_strerror(NP_ENOHOST), "no such host");
        dns_fake_stop(&d);
    }
}

static void t_hostname_resolution(void)
{
    run(body_localhost);
}

/* ---- bad input --------------------------------------------------------------------- */

static void body_bad_input(void)
{
    np_listener l;
    np_conn c;
    NP_CHECK_EQ(np_listen(&l, "udp", "127.0.0.1:0"), -EINVAL);
    NP_CHECK_EQ(np_listen(&l, "tcp", "127.0.0.1"), -EINVAL);
    NP_CHECK_EQ(np_listen(&l, "tcp", "127.0.0.1:99999"), -EINVAL);
    NP_CHECK_EQ(np_listen(&l, "tcp", "127.0.0.1:8x"), -EINVAL);
    NP_CHECK_EQ(np_listen(&l, "tcp", "::1:80"), -EINVAL); /* needs brackets */
    NP_CHECK_EQ(np_listen(&l, "tcp", "[::1:80"), -EINVAL);
    NP_CHECK_EQ(np_listen(&l, NULL, "127.0.0.1:0"), -EINVAL);
    NP_CHECK_EQ(np_listen(&l, "tcp", NULL), -EINVAL);
    NP_CHECK_EQ(np_listen(NULL, "tcp", "127.0.0.1:0"), -EINVAL);
    NP_CHECK_EQ(np_listen(&l, "unix", ""), -EINVAL);
    NP_CHECK_EQ(np_dial(&c, "tcp", "", 0), -EINVAL);
    NP_CHECK_EQ(np_dial(NULL, "tcp", "127.0.0.1:1", 0), -EINVAL);
    NP_CHECK_EQ(np_listen(&l, "tcp6", "127.0.0.1:0") < 0, 1);
    /* A port in use. */
    char addr[128];
    np_listener a = listen_any("tcp4", "127.0.0.1:0", addr, sizeof addr);
    NP_CHECK_EQ(np_listen(&l, "tcp4", addr), -EADDRINUSE);
    NP_CHECK_OK(np_listener_close(a));
    /* Refused: the port is closed now. */
    NP_CHECK_EQ(np_dial(&c, "tcp4", addr, np_now() + 5 * NP_SECOND), -ECONNREFUSED);
    NP_CHECK_EQ(c.id, 0);
    /* A dial deadline already past. */
    NP_CHECK_EQ(np_dial(&c, "tcp4", addr, np_now() - 1), -ETIMEDOUT);
    /* Buffers too small for an address. */
    a = listen_any("tcp4", "127.0.0.1:0", addr, sizeof addr);
    char tiny[4];
    NP_CHECK_EQ(np_listener_addr(a, tiny, sizeof tiny), -ENOSPC);
    NP_CHECK_OK(np_listener_close(a));
}

static void t_bad_input(void)
{
    run(body_bad_input);
}

/* ---- -EBADF: closed, stale, zero, never issued ----------------------------------- */

static void check_all_ebadf(np_conn c)
{
    char b[64];
    NP_CHECK_EQ(np_read(c, b, 1), -EBADF);
    NP_CHECK_EQ(np_write(c, b, 1), -EBADF);
    NP_CHECK_EQ(np_wait_readable(c), -EBADF);
    NP_CHECK_EQ(np_set_deadline(c, 0), -EBADF);
    NP_CHECK_EQ(np_set_read_deadline(c, 0), -EBADF);
    NP_CHECK_EQ(np_set_write_deadline(c, 0), -EBADF);
    NP_CHECK_EQ(np_close(c), -EBADF);
    NP_CHECK_EQ(np_close_write(c), -EBADF);
    NP_CHECK_EQ(np_local_addr(c, b, sizeof b), -EBADF);
    NP_CHECK_EQ(np_remote_addr(c, b, sizeof b), -EBADF);
    NP_CHECK_EQ(np_conn_fd(c), -EBADF);
}

static void body_ebadf(void)
{
    char addr[128];
    np_listener l = listen_any("tcp4", "127.0.0.1:0", addr, sizeof addr);
    check_all_ebadf((np_conn){ 0 });
    check_all_ebadf((np_conn){ 0xdeadbeefcafeULL });
    check_all_ebadf((np_conn){ (3ULL << 32) | 1 });
    check_all_ebadf((np_conn){ l.id }); /* a listener is not a connection */
    np_conn c;
    NP_CHECK_OK(np_dial(&c, "tcp4", addr, 0));
    np_conn s = accept_one(l);
    NP_CHECK_OK(np_close(c));
    check_all_ebadf(c); /* closed; closing twice too */
    /* The slot is reused by the next connection: the old handle stays dead
     * and the new one works. */
    np_conn c2;
    NP_CHECK_OK(np_dial(&c2, "tcp4", addr, 0));
    NP_CHECK_NE(c2.id, c.id);
    check_all_ebadf(c);
    NP_CHECK_GE(np_conn_fd(c2), 0);
    np_conn s2 = accept_one(l);
    write_all(c2, "z", 1);
    char z;
    read_exact(s2, &z, 1);
    NP_CHECK_EQ(z, 'z');
    NP_CHECK_OK(np_close(c2));
    NP_CHECK_OK(np_close(s2));
    NP_CHECK_OK(np_close(s));
    NP_CHECK_OK(np_listener_close(l));
    np_conn x;
    NP_CHECK_EQ(np_accept(l, &x), -EBADF);
    NP_CHECK_EQ(np_listener_close(l), -EBADF);
    NP_CHECK_EQ(np_listener_set_deadline(l, 0), -EBADF);
    NP_CHECK_EQ(np_listener_addr(l, addr, sizeof addr), -EBADF);
    NP_CHECK_EQ(np_accept((np_listener){ 0 }, &x), -EBADF);
    NP_CHECK_EQ(np_listener_close((np_listener){ c2.id }), -EBADF);
}

static void t_ebadf_closed_stale_zero_forged(void)
{
    run(body_ebadf);
}

/* ---- -ECANCELED: closed by another task while blocked ----------------------------------- */

static np_conn cancel_conn;
static np_listener cancel_l;
static _Atomic int cancel_results[3];

static void blocked_reader(void *arg)
{
    (void)arg;
    char b;
    atomic_store(&cancel_results[0], (int)np_read(cancel_conn, &b, 1));
}

static void blocked_writer(void *arg)
{
    (void)arg;
    static char big[1 << 20];
    ssize_t n;
    while ((n = np_write(cancel_conn, big, sizeof big)) == (ssize_t)sizeof big) {
    }
    /* Either the close came during a write that had made progress (short
     * count, then -EBADF) or before any byte of it went out. */
    if (n >= 0)
        n = np_write(cancel_conn, big, sizeof big);
    atomic_store(&cancel_results[1], (int)n);
}

static void blocked_acceptor(void *arg)
{
    (void)arg;
    np_conn c;
    atomic_store(&cancel_results[2], np_accept(cancel_l, &c));
}

static void body_ecanceled(void)
{
    char addr[128];
    cancel_l = listen_any("tcp4", "127.0.0.1:0", addr, sizeof addr);
    np_conn peer;
    NP_CHECK_OK(np_dial(&cancel_conn, "tcp4", addr, 0));
    peer = accept_one(cancel_l);
    for (int i = 0; i < 3; i++)
        atomic_store(&cancel_results[i], 1);
    NP_CHECK_OK(np_go(blocked_reader, NULL));
    NP_CHECK_OK(np_go(blocked_writer, NULL));
    NP_CHECK_OK(np_go(blocked_acceptor, NULL));
    np_sleep(50 * NP_MILLISECOND); /* all three are blocked by then (no peer action) */
    NP_CHECK_EQ(atomic_load(&cancel_results[0]), 1);
    NP_CHECK_OK(np_close(cancel_conn));
    NP_CHECK_OK(np_listener_close(cancel_l));
    while (atomic_load(&cancel_results[0]) == 1 || atomic_load(&cancel_results[1]) == 1 ||
           atomic_load(&cancel_results[2]) == 1)
        np_sleep(NP_MILLISECOND);
    NP_CHECK_EQ(atomic_load(&cancel_results[0]), -ECANCELED);
    int w = atomic_load(&cancel_results[1]);
    NP_CHECK_MSG(w == -ECANCELED || w == -EBADF, "writer got %d", w);
    NP_CHECK_EQ(atomic_load(&cancel_results[2]), -ECANCELED);
    NP_CHECK_OK(np_close(peer));
}

static void t_close_cancels_blocked_calls(void)
{
    run(body_ecanceled);
}

/* ---- plain threads doing I/O ------------------------------------------------------------- */

static np_conn perm_conn;
static np_listener perm_l;
/* Plain threads do I/O while a runtime runs: the blocking calls block the
 * thread (on its futex), with the same deadlines and close semantics. */
static np_waitgroup plain_wg;
static char plain_addr[128];

static void *plain_thread(void *arg)
{
    (void)arg;
    char b = 0;
    np_conn c, d;
    /* Blocks until the task writes. */
    NP_CHECK_EQ(np_read(perm_conn, &b, 1), 1);
    NP_CHECK_EQ(b, 'x');
    NP_CHECK_EQ(np_write(perm_conn, "y", 1), 1);
    /* A read deadline, never early. */
    int64_t d0 = np_now() + 20 * NP_MILLISECOND;
    NP_CHECK_OK(np_set_read_deadline(perm_conn, d0));
    NP_CHECK_EQ(np_read(perm_conn, &b, 1), -ETIMEDOUT);
    NP_CHECK_GE(np_now(), d0);
    NP_CHECK_OK(np_set_read_deadline(perm_conn, 0));
    /* Waits for readability, then the data the task sends. */
    NP_CHECK_OK(np_wait_readable(perm_conn));
    NP_CHECK_EQ(np_read(perm_conn, &b, 1), 1);
    NP_CHECK_EQ(b, 'z');
    /* Dial and accept, both from this thread. */
    NP_CHECK_OK(np_dial(&c, "tcp4", plain_addr, np_now() + 5 * NP_SECOND));
    NP_CHECK_OK(np_accept(perm_l, &d));
    NP_CHECK_EQ(np_write(c, "w", 1), 1);
    NP_CHECK_EQ(np_read(d, &b, 1), 1);
    NP_CHECK_EQ(b, 'w');
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(d));
    /* Sleeps, never early. */
    int64_t t0 = np_now();
    NP_CHECK_OK(np_sleep(5 * NP_MILLISECOND));
    NP_CHECK_GE(np_now() - t0, 5 * NP_MILLISECOND);
    /* The calls allowed anywhere work from here too. */
    char addr[128];
    NP_CHECK_OK(np_set_deadline(perm_conn, np_now() + NP_SECOND));
    NP_CHECK_OK(np_local_addr(perm_conn, addr, sizeof addr));
    NP_CHECK_GE(np_conn_fd(perm_conn), 0);
    /* Blocked in a read; the task closes the connection: -ECANCELED (or
     * -EBADF if the close came first). */
    NP_CHECK_OK(np_set_deadline(perm_conn, 0));
    NP_CHECK_OK(np_waitgroup_done(&plain_wg));
    ssize_t r = np_read(perm_conn, &b, 1);
    NP_CHECK_MSG(r == -ECANCELED || r == -EBADF, "read: %zd", r);
    NP_CHECK_OK(np_listener_close(perm_l));
    return NULL;
}

static void join_thread(void *arg)
{
    pthread_join(*(pthread_t *)arg, NULL);
}

static void body_plain_io(void)
{
    perm_l = listen_any("tcp4", "127.0.0.1:0", plain_addr, sizeof plain_addr);
    NP_CHECK_OK(np_dial(&perm_conn, "tcp4", plain_addr, 0));
    np_conn s = accept_one(perm_l);
    NP_CHECK_OK(np_waitgroup_add(&plain_wg, 1));
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, plain_thread, NULL));
    char b;
    NP_CHECK_EQ(np_write(s, "x", 1), 1);
    NP_CHECK_EQ(np_read(s, &b, 1), 1);
    NP_CHECK_EQ(b, 'y');
    NP_CHECK_OK(np_sleep(40 * NP_MILLISECOND)); /* past the thread's deadline */
    NP_CHECK_EQ(np_write(s, "z", 1), 1);
    NP_CHECK_OK(np_waitgroup_wait(&plain_wg, 0));
    NP_CHECK_OK(np_sleep(20 * NP_MILLISECOND)); /* let it block; either result is checked */
    NP_CHECK_OK(np_close(perm_conn));
    NP_CHECK_OK(np_offload(join_thread, &th));
    NP_CHECK_OK(np_close(s));
}

static void t_plain_thread_does_io(void)
{
    run(body_plain_io);
    /* With no runtime at all, the contract's -ESRCH. */
    char b;
    np_conn c;
    NP_CHECK_EQ(np_read((np_conn){ 1 }, &b, 1), -ESRCH);
    NP_CHECK_EQ(np_dial(&c, "tcp4", "127.0.0.1:1", 0), -ESRCH);
    NP_CHECK_EQ(np_sleep(1), -ESRCH);
}

/* ---- peer reset and broken pipe, no SIGPIPE ----------------------------------------------- */

static void body_reset(void)
{
    char addr[128];
    np_listener l = listen_any("tcp4", "127.0.0.1:0", addr, sizeof addr);
    np_conn c, s;
    /* Reset: the peer closes with SO_LINGER 0 (an RST). */
    NP_CHECK_OK(np_dial(&c, "tcp4", addr, 0));
    s = accept_one(l);
    struct linger lg = { 1, 0 };
    NP_CHECK_SYS(setsockopt(np_conn_fd(s), SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
    NP_CHECK_OK(np_close(s));
    char b[16];
    NP_CHECK_EQ(np_read(c, b, sizeof b), -ECONNRESET);
    NP_CHECK_OK(np_close(c));
    /* Broken pipe: keep writing to a peer that is gone. */
    NP_CHECK_OK(np_dial(&c, "tcp4", addr, 0));
    s = accept_one(l);
    NP_CHECK_OK(np_close(s));
    static char big[64 * 1024];
    ssize_t n = 0;
    for (int i = 0; i < 100 && n >= 0; i++)
        n = np_write(c, big, sizeof big);
    NP_CHECK_MSG(n == -EPIPE || n == -ECONNRESET, "write to a closed peer: %zd", n);
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_listener_close(l));
}

static void t_peer_reset_and_broken_pipe(void)
{
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill us */
    run(body_reset);
}

/* ---- EMFILE on accept: reported, listener still usable, no spin ----------------------------- */

static void body_emfile(void)
{
    char addr[128];
    np_listener l = listen_any("tcp4", "127.0.0.1:0", addr, sizeof addr);
    np_conn c;
    NP_CHECK_OK(np_dial(&c, "tcp4", addr, 0)); /* queued for accept */
    /* Use up the descriptor table. */
    struct rlimit old, lim;
    NP_CHECK_SYS(getrlimit(RLIMIT_NOFILE, &old));
    int fds[64], nfds = 0;
    int probe = NP_CHECK_SYS(dup(0));
    close(probe);
    lim = old;
    lim.rlim_cur = (rlim_t)probe + 8;
    NP_CHECK_SYS(setrlimit(RLIMIT_NOFILE, &lim));
    int f;
    while (nfds < 64 && (f = dup(0)) >= 0)
        fds[nfds++] = f;
    NP_CHECK_EQ(errno, EMFILE);
    np_conn s;
    int64_t t0 = np_now();
    NP_CHECK_EQ(np_accept(l, &s), -EMFILE);
    NP_CHECK_EQ(np_accept(l, &s), -EMFILE); /* at once, not a spin or a hang */
    NP_CHECK_LT(np_now() - t0, NP_SECOND);
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    NP_CHECK_SYS(setrlimit(RLIMIT_NOFILE, &old));
    NP_CHECK_OK(np_accept(l, &s)); /* the same listener, the same connection */
    write_all(c, "m", 1);
    char m;
    read_exact(s, &m, 1);
    NP_CHECK_EQ(m, 'm');
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
    NP_CHECK_OK(np_listener_close(l));
}

static void t_emfile_on_accept(void)
{
#ifdef NP_VALGRIND
    /* valgrind keeps descriptors of its own above the limit we lower and
     * emulates RLIMIT_NOFILE: the scenario cannot be built under it. */
    if (RUNNING_ON_VALGRIND)
        NP_SKIP("under valgrind");
#endif
    run(body_emfile);
}

/* ---- half-close ------------------------------------------------------------------------------ */

static void body_half_close(void)
{
    char addr[128];
    np_listener l = listen_any("tcp4", "127.0.0.1:0", addr, sizeof addr);
    np_conn c, s;
    NP_CHECK_OK(np_dial(&c, "tcp4", addr, 0));
    s = accept_one(l);
    write_all(c, "req", 3);
    NP_CHECK_OK(np_close_write(c));
    char buf[8];
    read_exact(s, buf, 3);
    NP_CHECK_EQ(np_read(s, buf, sizeof buf), 0); /* EOF after the request */
    NP_CHECK_EQ(np_wait_readable(s), 0);         /* EOF counts as readable */
    write_all(s, "resp", 4);                    /* the other direction lives */
    read_exact(c, buf, 4);
    NP_CHECK(memcmp(buf, "resp", 4) == 0);
    NP_CHECK_LT(np_write(c, "x", 1), 0); /* our side is shut */
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
    NP_CHECK_OK(np_listener_close(l));
}

static void t_half_close(void)
{
    run(body_half_close);
}

/* ---- after a short read ------------------------------------------------------------------------
 * np_read waits for the poller before its next syscall after a read that
 * came back short. What ends a stream is not data and raises no event after
 * the last bytes: the read after the short one must still see the end (or
 * the reset) at once, whichever order the event and the read come in; and
 * new data after a short read must wake it. */

static void short_read_then(const char *network, const char *address, bool reset, bool settle)
{
    char addr[128];
    np_listener l = listen_any(network, address, addr, sizeof addr);
    np_conn c, s;
    NP_CHECK_OK(np_dial(&c, network, addr, 0));
    s = accept_one(l);
    write_all(s, "abc", 3);
    if (reset) {
        struct linger lg = { 1, 0 };
        NP_CHECK_SYS(setsockopt(np_conn_fd(s), SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
        NP_CHECK_OK(np_close(s));
    } else {
        NP_CHECK_OK(np_close_write(s));
    }
    /* settle: let the poller deliver the end's event before the reads, so
     * that the first read's reset consumes its READY. */
    if (settle)
        np_sleep(20 * NP_MILLISECOND);
    char b[64];
    int64_t t0 = np_now();
    ssize_t n = np_read(c, b, sizeof b);
    if (!(reset && n == -ECONNRESET)) { /* a reset may discard the bytes */
        NP_CHECK_EQ(n, 3);
        NP_CHECK(memcmp(b, "abc", 3) == 0);
        n = np_read(c, b, sizeof b);
    }
    NP_CHECK_EQ(n, reset ? -ECONNRESET : 0);
    NP_CHECK_LT(np_now() - t0, 5 * NP_SECOND);
    NP_CHECK_OK(np_close(c));
    if (!reset)
        NP_CHECK_OK(np_close(s));
    NP_CHECK_OK(np_listener_close(l));
}

static void body_short_read(void)
{
    for (int settle = 0; settle < 2; settle++) {
        short_read_then("tcp4", "127.0.0.1:0", false, settle);
        short_read_then("tcp4", "127.0.0.1:0", true, settle);
        char ua[64];
        snprintf(ua, sizeof ua, "@np_test_short_%d_%d", (int)getpid(), settle);
        short_read_then("unix", ua, false, settle);
    }
    /* New data after a short read wakes the next read. */
    char addr[128];
    np_listener l = listen_any("tcp4", "127.0.0.1:0", addr, sizeof addr);
    np_conn c, s;
    NP_CHECK_OK(np_dial(&c, "tcp4", addr, 0));
    s = accept_one(l);
    char b[64];
    for (int i = 0; i < 50; i++) {
        write_all(s, "xy", 2);
        NP_CHECK_EQ(np_read(c, b, sizeof b), 2); /* short: the next one waits first */
        if (i % 2)
            np_sleep(NP_MILLISECOND);
    }
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
    NP_CHECK_OK(np_listener_close(l));
}

static void t_short_read_then_end_reset_or_data(void)
{
    run(body_short_read);
}

/* Reads that stop short of what is queued, with no event to follow: at a
 * TCP urgent mark, and at a Unix message carrying a descriptor. The next
 * read must still get the rest at once. */
static void body_short_of_queued(void)
{
    char addr[128], b[64];
    np_listener l = listen_any("tcp4", "127.0.0.1:0", addr, sizeof addr);
    np_conn c, s;
    NP_CHECK_OK(np_dial(&c, "tcp4", addr, 0));
    s = accept_one(l);
    NP_CHECK_EQ(send(np_conn_fd(s), "hello", 5, MSG_OOB), 5); /* 'o' is urgent */
    NP_CHECK_EQ(send(np_conn_fd(s), "world", 5, 0), 5);
    np_sleep(20 * NP_MILLISECOND); /* both arrive, their events delivered */
    size_t got = 0;
    char all[16] = { 0 };
    int64_t t0 = np_now();
    while (got < 9) { /* "hell" + "world": the urgent byte is not inline */
        ssize_t n = np_read(c, b, sizeof b);
        NP_CHECK_GT(n, 0);
        NP_CHECK_LE(got + (size_t)n, sizeof all - 1);
        memcpy(all + got, b, (size_t)n);
        got += (size_t)n;
        NP_CHECK_LT(np_now() - t0, 5 * NP_SECOND);
    }
    NP_CHECK(strcmp(all, "hellworld") == 0);
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
    NP_CHECK_OK(np_listener_close(l));

    snprintf(addr, sizeof addr, "@np_test_scm_%d", (int)getpid());
    l = listen_any("unix", addr, addr, sizeof addr);
    NP_CHECK_OK(np_dial(&c, "unix", addr, 0));
    s = accept_one(l);
    int passfd = dup(0);
    NP_CHECK_SYS(passfd);
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = { .iov_base = "A", .iov_len = 1 };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                         .msg_controllen = sizeof cbuf };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &passfd, sizeof passfd);
    NP_CHECK_EQ(sendmsg(np_conn_fd(s), &mh, 0), 1);
    close(passfd);
    NP_CHECK_EQ(send(np_conn_fd(s), "B", 1, 0), 1);
    np_sleep(20 * NP_MILLISECOND);
    NP_CHECK_EQ(np_read(c, b, sizeof b), 1); /* stops after the descriptor's message */
    NP_CHECK_EQ(b[0], 'A');
    t0 = np_now();
    NP_CHECK_EQ(np_read(c, b, sizeof b), 1);
    NP_CHECK_EQ(b[0], 'B');
    NP_CHECK_LT(np_now() - t0, 5 * NP_SECOND);
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
    NP_CHECK_OK(np_listener_close(l));
}

static void t_short_read_short_of_queued_data(void)
{
    run(body_short_of_queued);
}

/* ---- serialised reads and writes, big writes --------------------------------------------------- */

enum { SER_TASKS = 8, SER_BYTES = 1 << 20 };
static np_conn ser_c, ser_s;
static _Atomic long ser_read;
static _Atomic int ser_done;

static void ser_reader(void *arg)
{
    (void)arg;
    char buf[1000];
    ssize_t n;
    while ((n = np_read(ser_s, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            NP_CHECK_EQ(buf[i], 'q');
        atomic_fetch_add(&ser_read, n);
    }
    NP_CHECK_EQ(n, 0);
    atomic_fetch_add(&ser_done, 1);
}

static char ser_chunk[SER_BYTES / SER_TASKS]; /* filled before the writers start */

static void ser_writer(void *arg)
{
    (void)arg;
    write_all(ser_c, ser_chunk, sizeof ser_chunk); /* whole: writes never interleave */
    atomic_fetch_add(&ser_done, 1);
}

static void body_serialised(void)
{
    char addr[128];
    np_listener l = listen_any("tcp4", "127.0.0.1:0", addr, sizeof addr);
    NP_CHECK_OK(np_dial(&ser_c, "tcp4", addr, 0));
    ser_s = accept_one(l);
    memset(ser_chunk, 'q', sizeof ser_chunk);
    for (int i = 0; i < SER_TASKS; i++) {
        NP_CHECK_OK(np_go(ser_reader, NULL));
        NP_CHECK_OK(np_go(ser_writer, NULL));
    }
    while (atomic_load(&ser_done) < SER_TASKS)
        np_sleep(NP_MILLISECOND);
    NP_CHECK_OK(np_close_write(ser_c));
    while (atomic_load(&ser_done) < 2 * SER_TASKS)
        np_sleep(NP_MILLISECOND);
    NP_CHECK_EQ(atomic_load(&ser_read), SER_BYTES);
    NP_CHECK_OK(np_close(ser_c));
    NP_CHECK_OK(np_close(ser_s));
    NP_CHECK_OK(np_listener_close(l));
}

static void t_concurrent_reads_and_writes(void)
{
    run(body_serialised);
}

/* ---- wait_readable: an idle connection waits without a buffer -------------------------------- */

static void body_wait_readable(void)
{
    char addr[128];
    np_listener l = listen_any("tcp4", "127.0.0.1:0", addr, sizeof addr);
    np_conn c, s;
    NP_CHECK_OK(np_dial(&c, "tcp4", addr, 0));
    s = accept_one(l);
    int64_t d = np_now() + 30 * NP_MILLISECOND;
    NP_CHECK_OK(np_set_read_deadline(s, d));
    NP_CHECK_EQ(np_wait_readable(s), -ETIMEDOUT);
    NP_CHECK_GE(np_now(), d); /* never early */
    NP_CHECK_OK(np_set_read_deadline(s, 0));
    write_all(c, "w", 1);
    NP_CHECK_EQ(np_wait_readable(s), 0);
    NP_CHECK_EQ(np_wait_readable(s), 0); /* peeks: the byte is still there */
    char w;
    read_exact(s, &w, 1);
    NP_CHECK_EQ(w, 'w');
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
    NP_CHECK_OK(np_listener_close(l));
}

static void t_wait_readable(void)
{
    run(body_wait_readable);
}

/* ---- deadlines, briefly (test_net_timeout.c has the rest) --------------------------------------- */

static void body_deadline(void)
{
    char addr[128];
    np_listener l = listen_any("tcp4", "127.0.0.1:0", addr, sizeof addr);
    np_conn c, s;
    NP_CHECK_OK(np_dial(&c, "tcp4", addr, 0));
    s = accept_one(l);
    char b;
    int64_t d = np_now() + 20 * NP_MILLISECOND;
    NP_CHECK_OK(np_set_read_deadline(s, d));
    NP_CHECK_EQ(np_read(s, &b, 1), -ETIMEDOUT);
    NP_CHECK_GE(np_now(), d);
    write_all(c, "d", 1);
    NP_CHECK_EQ(np_read(s, &b, 1), -ETIMEDOUT); /* still past, data or not */
    NP_CHECK_OK(np_set_read_deadline(s, 0));
    NP_CHECK_EQ(np_read(s, &b, 1), 1);
    NP_CHECK_OK(np_listener_set_deadline(l, np_now() + 20 * NP_MILLISECOND));
    np_conn x;
    NP_CHECK_EQ(np_accept(l, &x), -ETIMEDOUT);
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
    NP_CHECK_OK(np_listener_close(l));
}

static void t_deadlines(void)
{
    run(body_deadline);
}

NP_TEST_LIST(
    NP_CASE(t_echo_tcp4_tcp6_unix),
    NP_CASE(t_hostname_resolution),
    NP_CASE(t_bad_input),
    NP_CASE(t_ebadf_closed_stale_zero_forged),
    NP_CASE(t_close_cancels_blocked_calls),
    NP_CASE(t_plain_thread_does_io),
    NP_CASE(t_peer_reset_and_broken_pipe),
    NP_CASE(t_emfile_on_accept),
    NP_CASE(t_half_close),
    NP_CASE(t_short_read_then_end_reset_or_data),
    NP_CASE(t_short_read_short_of_queued_data),
    NP_CASE(t_concurrent_reads_and_writes),
    NP_CASE(t_wait_readable),
    NP_CASE(t_deadlines))
