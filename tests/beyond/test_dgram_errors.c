/* Datagram errors against include/netpoll.h ("Datagrams"): addresses of
 * another family (-EAFNOSUPPORT), np_write_to on a connected socket
 * (-EISCONN), np_read_from / np_write_to on a stream (-EINVAL), deadlines
 * (never early; Go's rule once past), close waking a blocked np_read_from
 * (task and plain thread), and stale, forged and closed handles (-EBADF). */
#include <sys/socket.h>

#include "beyond.h"

/* ---- addresses of another family: -EAFNOSUPPORT ---------------------------------- */

static void body_other_family(void)
{
    np_conn s4 = b_packet("udp4", "127.0.0.1:0", NULL, NULL, 0);
    np_addr v6, un, ab;
    NP_CHECK_OK(np_addr_parse(&v6, "udp6", "[::1]:9"));
    NP_CHECK_OK(np_addr_parse(&un, "unixgram", "/tmp/np_beyond_nowhere.sock"));
    NP_CHECK_OK(np_addr_parse(&ab, "unixgram", "@np_beyond_nowhere"));
    NP_CHECK_EQ(np_write_to(s4, "x", 1, &v6), -EAFNOSUPPORT);
    NP_CHECK_EQ(np_write_to(s4, "x", 1, &un), -EAFNOSUPPORT);
    NP_CHECK_EQ(np_write_to(s4, "x", 1, &ab), -EAFNOSUPPORT);
    NP_CHECK_OK(np_close(s4));
    char path[64];
    snprintf(path, sizeof path, "@np_beyond_fam_%d", (int)getpid());
    np_conn u = b_packet("unixgram", path, NULL, NULL, 0);
    np_addr v4;
    NP_CHECK_OK(np_addr_parse(&v4, "udp4", "127.0.0.1:9"));
    NP_CHECK_EQ(np_write_to(u, "x", 1, &v4), -EAFNOSUPPORT);
    NP_CHECK_OK(np_close(u));
}

static void t_write_to_other_family_eafnosupport(void)
{
    b_run(body_other_family);
}

/* A "udp6" socket bound to [::1] is IPv6 only: an IPv4 address is of
 * another family than the socket's. */
static void body_v4_to_udp6(void)
{
    np_conn s6 = b_packet("udp6", "[::1]:0", NULL, NULL, 0);
    np_addr v4;
    NP_CHECK_OK(np_addr_parse(&v4, "udp4", "127.0.0.1:9"));
    ssize_t r = np_write_to(s6, "x", 1, &v4);
    NP_CHECK_MSG(r == -EAFNOSUPPORT, "np_write_to(udp6 [::1] socket, 127.0.0.1:9) = %zd (%s), "
                 "want -EAFNOSUPPORT", r, np_strerror((int)r));
    NP_CHECK_OK(np_close(s6));
}

static void t_write_to_v4_on_udp6_loopback_eafnosupport(void)
{
    b_skip_without_ipv6();
    b_run(body_v4_to_udp6);
}

/* Go: "udp6" is IPv6 only even on the unspecified address (only "udp" is
 * dual-stack), so a v4 peer is another family there too. */
static void body_v4_to_udp6_any(void)
{
    np_conn s6 = b_packet("udp6", "[::]:0", NULL, NULL, 0);
    np_conn k = b_packet("udp4", "127.0.0.1:0", NULL, NULL, 0);
    char ktext[128];
    NP_CHECK_OK(np_local_addr(k, ktext, sizeof ktext));
    np_addr v4;
    NP_CHECK_OK(np_addr_parse(&v4, "udp4", ktext));
    ssize_t r = np_write_to(s6, "x", 1, &v4);
    NP_CHECK_MSG(r == -EAFNOSUPPORT, "np_write_to(udp6 [::] socket, %s) = %zd, want -EAFNOSUPPORT "
                 "(a \"udp6\" socket is IPv6-only, as Go's)", ktext, r);
    NP_CHECK_OK(np_close(k));
    NP_CHECK_OK(np_close(s6));
}

static void t_write_to_v4_on_udp6_any_eafnosupport(void)
{
    b_skip_without_ipv6();
    b_run(body_v4_to_udp6_any);
}

/* ---- np_write_to on a connected datagram socket: -EISCONN ------------------------- */

static void body_eisconn(void)
{
    char text[128], other[128];
    np_conn s = b_packet("udp4", "127.0.0.1:0", NULL, text, sizeof text);
    np_conn o = b_packet("udp4", "127.0.0.1:0", NULL, other, sizeof other);
    np_conn c = b_dial("udp4", text);
    np_addr to;
    NP_CHECK_OK(np_addr_parse(&to, "udp4", other));
    ssize_t r = np_write_to(c, "x", 1, &to);
    NP_CHECK_MSG(r == -EISCONN, "np_write_to(dialled udp4, %s) = %zd (%s), want -EISCONN", other, r,
                 r < 0 ? np_strerror((int)r) : "sent");
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(o));
    NP_CHECK_OK(np_close(s));
}

static void t_write_to_dialled_udp_eisconn(void)
{
    b_run(body_eisconn);
}

/* ---- stream connections: np_read_from / np_write_to -EINVAL --------------------- */

static np_conn tcp_c, tcp_s;
static np_listener tcp_l;

static void tcp_pair(void)
{
    char addr[128];
    NP_CHECK_OK(np_listen(&tcp_l, "tcp4", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(tcp_l, addr, sizeof addr));
    NP_CHECK_OK(np_dial(&tcp_c, "tcp4", addr, 0));
    NP_CHECK_OK(np_accept(tcp_l, &tcp_s));
}

static void tcp_unpair(void)
{
    NP_CHECK_OK(np_close(tcp_c));
    NP_CHECK_OK(np_close(tcp_s));
    NP_CHECK_OK(np_listener_close(tcp_l));
}

static void body_stream_write_to(void)
{
    tcp_pair();
    np_addr to;
    NP_CHECK_OK(np_addr_parse(&to, "udp4", "127.0.0.1:9"));
    NP_CHECK_EQ(np_write_to(tcp_c, "x", 1, &to), -EINVAL);
    /* Nothing was written on the stream. */
    NP_CHECK_EQ(np_write(tcp_c, "k", 1), 1);
    char b;
    NP_CHECK_EQ(np_read(tcp_s, &b, 1), 1);
    NP_CHECK_EQ(b, 'k');
    tcp_unpair();
}

static void t_write_to_on_stream_einval(void)
{
    b_run(body_stream_write_to);
}

static void body_stream_read_from(void)
{
    tcp_pair();
    NP_CHECK_EQ(np_write(tcp_s, "q", 1), 1);
    char b[4];
    np_addr from;
    NP_CHECK_EQ(np_read_from(tcp_c, b, sizeof b, &from), -EINVAL);
    NP_CHECK_EQ(np_read_from(tcp_c, b, sizeof b, NULL), -EINVAL);
    /* The byte is still there for np_read. */
    NP_CHECK_EQ(np_read(tcp_c, b, sizeof b), 1);
    NP_CHECK_EQ(b[0], 'q');
    tcp_unpair();
}

static void t_read_from_on_stream_einval(void)
{
    b_run(body_stream_read_from);
}

/* The header's "-EINVAL on a stream connection" has no exception for a
 * zero length (np_read's "len 0 returns 0" is np_read's). */
static void body_stream_read_from0(void)
{
    tcp_pair();
    char b[1];
    ssize_t r = np_read_from(tcp_c, b, 0, NULL);
    NP_CHECK_MSG(r == -EINVAL, "np_read_from(tcp conn, len 0) = %zd, want -EINVAL", r);
    tcp_unpair();
}

static void t_read_from_on_stream_len0_einval(void)
{
    b_run(body_stream_read_from0);
}

/* ---- deadlines on datagram reads --------------------------------------------------- */

static void body_dgram_deadline(void)
{
    char text[128];
    np_conn s = b_packet("udp4", "127.0.0.1:0", NULL, text, sizeof text);
    np_conn c = b_dial("udp4", text);
    char b[8];
    const int64_t waits[] = { NP_MILLISECOND, 5 * NP_MILLISECOND, 20 * NP_MILLISECOND,
                              50 * NP_MILLISECOND };
    for (int i = 0; i < 4; i++) {
        int64_t d = np_now() + waits[i];
        NP_CHECK_OK(np_set_read_deadline(s, d));
        NP_CHECK_EQ(np_read_from(s, b, sizeof b, NULL), -ETIMEDOUT);
        NP_CHECK_GE(np_now(), d); /* never early */
        d = np_now() + waits[i];
        NP_CHECK_OK(np_set_read_deadline(c, d));
        NP_CHECK_EQ(np_read(c, b, sizeof b), -ETIMEDOUT);
        NP_CHECK_GE(np_now(), d);
    }
    /* A deadline moved later while a read waits: the read waits on. */
    NP_CHECK_OK(np_set_read_deadline(s, np_now() + 30 * NP_MILLISECOND));
    NP_CHECK_OK(np_set_read_deadline(s, np_now() + 5 * NP_SECOND));
    NP_CHECK_EQ(np_write(c, "d", 1), 1);
    NP_CHECK_EQ(np_read_from(s, b, sizeof b, NULL), 1);
    /* A write deadline already past fails a write that would not block. */
    NP_CHECK_OK(np_set_write_deadline(c, np_now() - 1));
    NP_CHECK_EQ(np_write(c, "w", 1), -ETIMEDOUT);
    NP_CHECK_OK(np_set_write_deadline(c, 0));
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
}

static void t_dgram_read_deadline_never_early(void)
{
    b_run(body_dgram_deadline);
}

/* Go's rule: once the deadline has passed, a read with a datagram waiting
 * fails; moving the deadline lets the same datagram be read. */
static void body_dgram_past_deadline(void)
{
    char text[128];
    np_conn s = b_packet("udp4", "127.0.0.1:0", NULL, text, sizeof text);
    np_conn c = b_dial("udp4", text);
    NP_CHECK_EQ(np_write(c, "p", 1), 1);
    char b[4];
    NP_CHECK_EQ(b_read_from_soon(s, b, sizeof b, NULL), 1); /* one arrived; the next... */
    NP_CHECK_EQ(np_write(c, "q", 1), 1);
    NP_CHECK_OK(np_set_read_deadline(s, np_now() + 2 * NP_SECOND));
    NP_CHECK_OK(np_wait_readable(s)); /* ...is waiting now */
    NP_CHECK_OK(np_set_read_deadline(s, np_now() - 1));
    NP_CHECK_EQ(np_read_from(s, b, sizeof b, NULL), -ETIMEDOUT);
    NP_CHECK_OK(np_set_read_deadline(s, 0));
    NP_CHECK_EQ(np_read_from(s, b, sizeof b, NULL), 1);
    NP_CHECK_EQ(b[0], 'q');
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
}

static void t_dgram_past_deadline_fails_with_data_waiting(void)
{
    b_run(body_dgram_past_deadline);
}

/* ---- close from another task or thread unblocks np_read_from ------------------------ */

static np_conn blk_conn;
#define NOT_YET 12345
static _Atomic int blk_started, blk_result = NOT_YET;

static void blocked_read_from(void *arg)
{
    (void)arg;
    char b[8];
    np_addr from;
    atomic_store(&blk_started, 1);
    atomic_store(&blk_result, (int)np_read_from(blk_conn, b, sizeof b, &from));
}

static void *blocked_read_from_thread(void *arg)
{
    blocked_read_from(arg);
    return NULL;
}

static void close_unblocks(bool thread)
{
    atomic_store(&blk_started, 0);
    atomic_store(&blk_result, NOT_YET);
    blk_conn = b_packet("udp4", "127.0.0.1:0", NULL, NULL, 0);
    pthread_t th;
    if (thread)
        NP_CHECK_OK(pthread_create(&th, NULL, blocked_read_from_thread, NULL));
    else
        NP_CHECK_OK(np_go(blocked_read_from, NULL));
    NP_CHECK(b_wait_flag(&blk_started, 5000));
    np_sleep(100 * NP_MILLISECOND); /* inside the read by now (nothing comes) */
    NP_CHECK_EQ(atomic_load(&blk_result), NOT_YET);
    int64_t t0 = np_now();
    NP_CHECK_OK(np_close(blk_conn));
    while (atomic_load(&blk_result) == NOT_YET && np_now() - t0 < 3 * NP_SECOND)
        np_sleep(NP_MILLISECOND);
    NP_CHECK_MSG(atomic_load(&blk_result) == -ECANCELED, "blocked np_read_from after np_close: %d "
                 "(%d = still blocked after %.0f ms)", atomic_load(&blk_result), NOT_YET, b_ms_since(t0));
    if (thread)
        NP_CHECK_OK(np_offload(b_join_thread, &th));
    NP_CHECK_EQ(np_close(blk_conn), -EBADF);
}

static void body_close_unblocks(void)
{
    close_unblocks(false);
    close_unblocks(true);
}

static void t_dgram_close_unblocks_read_from(void)
{
    b_run(body_close_unblocks);
}

/* ---- stale, forged and closed handles ------------------------------------------------- */

static void check_dgram_ebadf(np_conn c, const np_addr *to)
{
    char b[8];
    np_addr from;
    NP_CHECK_EQ(np_read_from(c, b, sizeof b, &from), -EBADF);
    NP_CHECK_EQ(np_write_to(c, "x", 1, to), -EBADF);
    NP_CHECK_EQ(np_read(c, b, sizeof b), -EBADF);
    NP_CHECK_EQ(np_write(c, "x", 1), -EBADF);
    NP_CHECK_EQ(np_set_read_deadline(c, 0), -EBADF);
    NP_CHECK_EQ(np_local_addr(c, b, sizeof b), -EBADF);
    NP_CHECK_EQ(np_conn_fd(c), -EBADF);
    NP_CHECK_EQ(np_close(c), -EBADF);
}

static void body_stale(void)
{
    char text[128];
    np_conn s = b_packet("udp4", "127.0.0.1:0", NULL, text, sizeof text);
    np_addr to;
    NP_CHECK_OK(np_addr_parse(&to, "udp4", text));
    np_listener l;
    NP_CHECK_OK(np_listen(&l, "tcp4", "127.0.0.1:0"));
    check_dgram_ebadf((np_conn){ 0 }, &to);
    check_dgram_ebadf((np_conn){ 0xdeadbeefcafeULL }, &to);
    check_dgram_ebadf((np_conn){ s.id ^ (1ULL << 40) }, &to);
    check_dgram_ebadf((np_conn){ l.id }, &to); /* a listener is no connection */
    np_conn d = b_packet("udp4", "127.0.0.1:0", NULL, NULL, 0);
    NP_CHECK_OK(np_close(d));
    check_dgram_ebadf(d, &to);
    /* The slot reused: the old handle stays dead, the new one works. */
    np_conn e = b_packet("udp4", "127.0.0.1:0", NULL, NULL, 0);
    NP_CHECK_NE(e.id, d.id);
    check_dgram_ebadf(d, &to);
    NP_CHECK_EQ(np_write_to(e, "e", 1, &to), 1);
    char b[4];
    NP_CHECK_EQ(b_read_from_soon(s, b, sizeof b, NULL), 1);
    NP_CHECK_OK(np_close(e));
    NP_CHECK_OK(np_close(s));
    NP_CHECK_OK(np_listener_close(l));
}

static void t_dgram_stale_handles_ebadf(void)
{
    b_run(body_stale);
}
NP_TEST_LIST(
    NP_CASE(t_write_to_other_family_eafnosupport),
    NP_CASE(t_write_to_v4_on_udp6_loopback_eafnosupport),
    NP_CASE(t_write_to_v4_on_udp6_any_eafnosupport),
    NP_CASE(t_write_to_dialled_udp_eisconn),
    NP_CASE(t_write_to_on_stream_einval),
    NP_CASE(t_read_from_on_stream_einval),
    NP_CASE(t_read_from_on_stream_len0_einval),
    NP_CASE(t_dgram_read_deadline_never_early),
    NP_CASE(t_dgram_past_deadline_fails_with_data_waiting),
    NP_CASE(t_dgram_close_unblocks_read_from),
    NP_CASE(t_dgram_stale_handles_ebadf))
