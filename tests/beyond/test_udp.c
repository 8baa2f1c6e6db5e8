/* UDP datagrams against include/netpoll.h ("Datagrams"): one read is one
 * datagram, a write is never partial (-EMSGSIZE over the limit), a short
 * buffer truncates, zero-length datagrams, np_listen_packet with
 * np_read_from / np_write_to round-tripping by replying to the `from` it
 * got, a dual-stack socket, a refused port, several readers on one socket,
 * and an echo under load. Errors are in test_dgram_errors.c, Unix
 * datagrams and np_addr in test_unixgram.c. */
#include <sys/socket.h>

#include "beyond.h"

/* ---- one read = one datagram ------------------------------------------------ */

static const char *bound_net, *bound_addr, *dial_net;

static void body_boundaries(void)
{
    char text[128];
    np_conn s = b_packet(bound_net, bound_addr, NULL, text, sizeof text);
    np_conn c = b_dial(dial_net, text);
    static char big[70000], got[70000];
    memset(big, 'b', sizeof big);
    const size_t sizes[] = { 10, 1000, 1, 1472, 9000, 3 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        big[0] = (char)('0' + i);
        NP_CHECK_EQ(np_write(c, big, sizes[i]), (ssize_t)sizes[i]);
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        np_addr from;
        ssize_t n = b_read_from_soon(s, got, sizeof got, &from);
        NP_CHECK_EQ(n, (ssize_t)sizes[i]); /* never merged, never split */
        NP_CHECK_EQ(got[0], '0' + (int)i);
        /* The reply goes back to the sender, by the address we were given. */
        NP_CHECK_EQ(np_write_to(s, got, (size_t)n, &from), n);
        NP_CHECK_EQ(b_read_soon(c, big + 1, sizeof big - 1), n);
    }
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
}

static void t_udp4_one_read_one_datagram(void)
{
    bound_net = "udp4", bound_addr = "127.0.0.1:0", dial_net = "udp4";
    b_run(body_boundaries);
}

static void t_udp6_one_read_one_datagram(void)
{
    b_skip_without_ipv6();
    bound_net = "udp6", bound_addr = "[::1]:0", dial_net = "udp6";
    b_run(body_boundaries);
}

static void t_udp_network_dials_v4_literal(void)
{
    bound_net = "udp4", bound_addr = "127.0.0.1:0", dial_net = "udp";
    b_run(body_boundaries);
}

/* ---- a write is never partial; over the limit, -EMSGSIZE -------------------------- */

static size_t limit_ok, limit_over;

static void body_emsgsize(void)
{
    char text[128];
    np_conn s = b_packet(bound_net, bound_addr, NULL, text, sizeof text);
    np_conn c = b_dial(dial_net, text);
    int big = 1 << 20;
    setsockopt(np_conn_fd(s), SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    static char buf[200000], got[200000];
    memset(buf, 'e', sizeof buf);
    NP_CHECK_EQ(np_write(c, buf, limit_ok), (ssize_t)limit_ok);
    NP_CHECK_EQ(np_write(c, buf, limit_over), -EMSGSIZE);
    NP_CHECK_EQ(np_write(c, buf, sizeof buf), -EMSGSIZE);
    NP_CHECK_EQ(np_write(c, "m", 1), 1);
    NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, NULL), (ssize_t)limit_ok);
    /* Nothing of the refused ones went out: the marker is next. */
    NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, NULL), 1);
    NP_CHECK_EQ(got[0], 'm');
    /* The same through np_write_to on an unconnected socket. */
    np_addr to;
    NP_CHECK_OK(np_addr_parse(&to, bound_net, text));
    np_conn u = b_packet(bound_net, bound_addr, NULL, NULL, 0);
    NP_CHECK_EQ(np_write_to(u, buf, limit_over, &to), -EMSGSIZE);
    NP_CHECK_EQ(np_write_to(u, "n", 1, &to), 1);
    NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, NULL), 1);
    NP_CHECK_EQ(got[0], 'n');
    NP_CHECK_OK(np_close(u));
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
}

static void t_udp4_write_never_partial_emsgsize(void)
{
    bound_net = "udp4", bound_addr = "127.0.0.1:0", dial_net = "udp4";
    limit_ok = 65507, limit_over = 65508;
    b_run(body_emsgsize);
}

static void t_udp6_write_never_partial_emsgsize(void)
{
    b_skip_without_ipv6();
    bound_net = "udp6", bound_addr = "[::1]:0", dial_net = "udp6";
    limit_ok = 65527, limit_over = 65528;
    b_run(body_emsgsize);
}

/* ---- a short buffer truncates; the rest is dropped ------------------------------- */

static void body_truncate(void)
{
    char text[128];
    np_conn s = b_packet("udp4", "127.0.0.1:0", NULL, text, sizeof text);
    np_conn c = b_dial("udp4", text);
    char msg[100];
    for (int i = 0; i < 100; i++)
        msg[i] = (char)('A' + i % 26);
    NP_CHECK_EQ(np_write(c, msg, sizeof msg), 100);
    NP_CHECK_EQ(np_write(c, "next", 4), 4);
    char got[16] = { 0 };
    np_addr from;
    NP_CHECK_EQ(b_read_from_soon(s, got, 10, &from), 10);
    NP_CHECK(memcmp(got, msg, 10) == 0);
    NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, NULL), 4); /* not the rest of the first */
    NP_CHECK(memcmp(got, "next", 4) == 0);
    /* np_read on the connected end too. */
    NP_CHECK_EQ(np_write_to(s, msg, sizeof msg, &from), 100);
    NP_CHECK_EQ(np_write_to(s, "tail", 4, &from), 4);
    NP_CHECK_EQ(b_read_soon(c, got, 1), 1);
    NP_CHECK_EQ(got[0], 'A');
    NP_CHECK_EQ(b_read_soon(c, got, sizeof got), 4);
    NP_CHECK(memcmp(got, "tail", 4) == 0);
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
}

static void t_udp_short_buffer_truncates(void)
{
    b_run(body_truncate);
}

/* ---- zero-length datagrams ------------------------------------------------------ */

static void body_zero_length(void)
{
    char text[128], ctext[128];
    np_conn s = b_packet("udp4", "127.0.0.1:0", NULL, text, sizeof text);
    np_conn c = b_dial("udp4", text);
    NP_CHECK_OK(np_local_addr(c, ctext, sizeof ctext));
    NP_CHECK_EQ(np_write(c, "", 0), 0); /* a datagram of its own, not a no-op */
    NP_CHECK_EQ(np_write(c, "z", 1), 1);
    char got[8];
    np_addr from;
    memset(&from, 0, sizeof from);
    NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, &from), 0);
    NP_CHECK_STR_EQ(b_fmt(&from), ctext);
    NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, NULL), 1);
    NP_CHECK_EQ(got[0], 'z');
    /* And back: an empty datagram to the connected end. */
    NP_CHECK_EQ(np_write_to(s, NULL, 0, &from), 0);
    NP_CHECK_EQ(np_write_to(s, "y", 1, &from), 1);
    NP_CHECK_EQ(b_read_soon(c, got, sizeof got), 0);
    NP_CHECK_EQ(b_read_soon(c, got, sizeof got), 1); /* 0 was no end of stream */
    NP_CHECK_EQ(got[0], 'y');
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
}

/* A zero-length read_from asks for nothing: it returns 0 at once, leaves
 * the queued datagram alone and gives no sender (*from zeroed; it read the
 * uninitialised address before, which valgrind showed). */
static void body_zero_length_read_from(void)
{
    char text[128];
    np_conn s = b_packet("udp4", "127.0.0.1:0", NULL, text, sizeof text);
    np_conn c = b_dial("udp4", text);
    NP_CHECK_EQ(np_write(c, "q", 1), 1);
    np_addr from;
    memset(&from, 0xa5, sizeof from);
    char got[8];
    NP_CHECK_EQ(np_read_from(s, got, 0, &from), 0);
    const unsigned char *b = (const unsigned char *)&from;
    for (size_t i = 0; i < sizeof from; i++)
        NP_CHECK_MSG(b[i] == 0, "byte %zu of *from is %#x after a zero-length read", i, b[i]);
    NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, NULL), 1); /* still queued */
    NP_CHECK_EQ(got[0], 'q');
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
}

static void t_udp_zero_length_read_from_gives_no_sender(void)
{
    b_run(body_zero_length_read_from);
}

static void t_udp_zero_length_datagram(void)
{
    b_run(body_zero_length);
}

/* ---- np_listen_packet + read_from / write_to: replying to `from` ----------------- */

static void round_trip(const char *network, const char *address)
{
    char stext[128], ktext[128];
    np_addr saddr;
    np_conn s = b_packet(network, address, &saddr, stext, sizeof stext);
    np_conn k = b_packet(network, address, NULL, ktext, sizeof ktext);
    for (int i = 0; i < 50; i++) {
        char ping[32], got[64];
        int len = snprintf(ping, sizeof ping, "ping %d", i);
        NP_CHECK_EQ(np_write_to(k, ping, (size_t)len, &saddr), len);
        np_addr from;
        NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, &from), len);
        NP_CHECK(memcmp(got, ping, (size_t)len) == 0);
        NP_CHECK_STR_EQ(b_fmt(&from), ktext);
        got[1] = 'o';
        NP_CHECK_EQ(np_write_to(s, got, (size_t)len, &from), len);
        np_addr back;
        char pong[64];
        NP_CHECK_EQ(b_read_from_soon(k, pong, sizeof pong, &back), len);
        NP_CHECK(memcmp(pong, "pong", 4) == 0);
        NP_CHECK_STR_EQ(b_fmt(&back), stext);
    }
    NP_CHECK_OK(np_close(k));
    NP_CHECK_OK(np_close(s));
}

static void body_round_trip4(void)
{
    round_trip("udp4", "127.0.0.1:0");
    round_trip("udp", "127.0.0.1:0");
}

static void t_udp4_listen_packet_round_trip(void)
{
    b_run(body_round_trip4);
}

static void body_round_trip6(void)
{
    round_trip("udp6", "[::1]:0");
    round_trip("udp", "[::1]:0");
}

static void t_udp6_listen_packet_round_trip(void)
{
    b_skip_without_ipv6();
    b_run(body_round_trip6);
}

/* A dual-stack "udp" socket on [::]: an IPv4 peer is reported as IPv4, and
 * replying to that `from` reaches it (the header: mapped, and works). */
static void body_dual_stack(void)
{
    char stext[128], ktext[128];
    np_conn s = b_packet("udp", ":0", NULL, stext, sizeof stext);
    const char *port = strrchr(stext, ':') + 1;
    char dst[64];
    snprintf(dst, sizeof dst, "127.0.0.1:%s", port);
    np_conn k = b_packet("udp4", "127.0.0.1:0", NULL, ktext, sizeof ktext);
    np_addr to;
    NP_CHECK_OK(np_addr_parse(&to, "udp4", dst));
    NP_CHECK_EQ(np_write_to(k, "v4?", 3, &to), 3);
    np_addr from;
    char got[8];
    NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, &from), 3);
    NP_CHECK_STR_EQ(b_fmt(&from), ktext); /* "127.0.0.1:port", not ::ffff: */
    NP_CHECK_EQ(np_write_to(s, "yes", 3, &from), 3);
    np_addr back;
    NP_CHECK_EQ(b_read_from_soon(k, got, sizeof got, &back), 3);
    NP_CHECK(memcmp(got, "yes", 3) == 0);
    NP_CHECK_STR_EQ(b_fmt(&back), dst);
    NP_CHECK_OK(np_close(k));
    NP_CHECK_OK(np_close(s));
}

static void t_udp_dual_stack_v4_peer(void)
{
    b_skip_without_ipv6();
    b_run(body_dual_stack);
}
/* ---- a refused port: the error wakes a blocked reader ------------------------------------- */

static void body_refused(void)
{
    char text[128];
    np_conn gone = b_packet("udp4", "127.0.0.1:0", NULL, text, sizeof text);
    NP_CHECK_OK(np_close(gone)); /* nobody listens on text now */
    np_conn c = b_dial("udp4", text);
    NP_CHECK_EQ(np_write(c, "x", 1), 1);
    char b[4];
    int64_t t0 = np_now();
    NP_CHECK_OK(np_set_read_deadline(c, t0 + 3 * NP_SECOND));
    ssize_t r = np_read(c, b, sizeof b);
    /* Linux reports the ICMP port unreachable to a connected socket. */
    NP_CHECK_MSG(r == -ECONNREFUSED, "np_read after a write to a closed port: %zd (%s) after %.0f ms",
                 r, np_strerror((int)r), b_ms_since(t0));
    NP_CHECK_LT(np_now() - t0, 2 * NP_SECOND); /* woken by the error, not the deadline */
    NP_CHECK_OK(np_close(c));
}

static void t_udp_refused_port_wakes_reader(void)
{
    b_run(body_refused);
}

/* ---- several readers on one socket: each datagram to exactly one -------------------- */

enum { MR_READERS = 4, MR_N = 2000 };
static np_conn mr_s;
static unsigned char mr_seen[MR_N];
static _Atomic int mr_total, mr_dups;
static np_waitgroup mr_wg;

static void mr_reader(void *arg)
{
    (void)arg;
    char buf[32];
    ssize_t n;
    while ((n = np_read_from(mr_s, buf, sizeof buf - 1, NULL)) > 0) {
        buf[n] = 0;
        int seq = atoi(buf);
        if (seq >= 0 && seq < MR_N) {
            if (__atomic_exchange_n(&mr_seen[seq], 1, __ATOMIC_SEQ_CST))
                atomic_fetch_add(&mr_dups, 1);
            atomic_fetch_add(&mr_total, 1);
        }
    }
    NP_CHECK_MSG(n == -ECANCELED || n == -EBADF, "reader ended with %zd", n);
    np_waitgroup_done(&mr_wg);
}

static void body_many_readers(void)
{
    char text[128];
    mr_s = b_packet("udp4", "127.0.0.1:0", NULL, text, sizeof text);
    int big = 4 << 20;
    setsockopt(np_conn_fd(mr_s), SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    NP_CHECK_OK(np_waitgroup_add(&mr_wg, MR_READERS));
    for (int i = 0; i < MR_READERS; i++)
        NP_CHECK_OK(np_go(mr_reader, NULL));
    np_conn c = b_dial("udp4", text);
    for (int i = 0; i < MR_N; i++) {
        char msg[16];
        int len = snprintf(msg, sizeof msg, "%d", i);
        NP_CHECK_EQ(np_write(c, msg, (size_t)len), len);
        if (i % 64 == 63) /* let the readers keep up: no loss to the buffer */
            while (atomic_load(&mr_total) < i - 128)
                np_sleep(NP_MILLISECOND / 10);
    }
    int64_t t0 = np_now();
    while (atomic_load(&mr_total) < MR_N && np_now() - t0 < 5 * NP_SECOND)
        np_sleep(NP_MILLISECOND);
    NP_CHECK_EQ(atomic_load(&mr_dups), 0);
    NP_CHECK_EQ(atomic_load(&mr_total), MR_N);
    NP_CHECK_OK(np_close(mr_s)); /* wakes every reader: -ECANCELED */
    NP_CHECK_OK(np_waitgroup_wait(&mr_wg, np_now() + 5 * NP_SECOND));
    NP_CHECK_OK(np_close(c));
}

static void t_udp_several_readers_each_datagram_once(void)
{
    b_run(body_many_readers);
}

/* ---- a 2-task echo under load: 10k datagrams, none lost on loopback -------------------- */

enum { ECHO_N = 10000, ECHO_WINDOW = 32 };
static np_conn echo_s;
static _Atomic int echo_served;

static void echo_server(void *arg)
{
    (void)arg;
    char buf[256];
    for (;;) {
        np_addr from;
        ssize_t n = np_read_from(echo_s, buf, sizeof buf, &from);
        if (n < 0) {
            NP_CHECK_MSG(n == -ECANCELED || n == -EBADF, "echo server read: %zd", n);
            return;
        }
        NP_CHECK_EQ(np_write_to(echo_s, buf, (size_t)n, &from), n);
        atomic_fetch_add(&echo_served, 1);
    }
}

static void body_echo_load(void)
{
    char text[128];
    echo_s = b_packet("udp4", "127.0.0.1:0", NULL, text, sizeof text);
    NP_CHECK_OK(np_go(echo_server, NULL));
    np_conn c = b_dial("udp4", text);
    static unsigned char seen[ECHO_N];
    int received = 0, timeouts = 0;
    char msg[64], got[64];
    int64_t t0 = np_now();
    for (int i = 0; i < ECHO_N + ECHO_WINDOW; i++) {
        if (i < ECHO_N) {
            int len = snprintf(msg, sizeof msg, "seq=%d", i);
            NP_CHECK_EQ(np_write(c, msg, (size_t)len), len);
        }
        if (i < ECHO_WINDOW - 1)
            continue; /* keep a window of datagrams in flight */
        NP_CHECK_OK(np_set_read_deadline(c, np_now() + 2 * NP_SECOND));
        ssize_t n = np_read(c, got, sizeof got - 1);
        if (n == -ETIMEDOUT) {
            timeouts++;
            if (timeouts > 3)
                break;
            continue;
        }
        NP_CHECK_GT(n, 4);
        got[n] = 0;
        int seq = atoi(got + 4);
        NP_CHECK(seq >= 0 && seq < ECHO_N);
        NP_CHECK_MSG(!seen[seq], "seq %d echoed twice", seq);
        seen[seq] = 1;
        received++;
        if (received == ECHO_N)
            break;
    }
    NP_CHECK_MSG(received == ECHO_N, "%d of %d datagrams echoed (%d lost; server saw %d) in %.0f ms",
                 received, ECHO_N, ECHO_N - received, atomic_load(&echo_served), b_ms_since(t0));
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(echo_s)); /* ends the server's read: -ECANCELED */
}

static void t_udp_echo_10k_no_loss(void)
{
    b_run(body_echo_load);
}

NP_TEST_LIST(
    NP_CASE(t_udp4_one_read_one_datagram),
    NP_CASE(t_udp6_one_read_one_datagram),
    NP_CASE(t_udp_network_dials_v4_literal),
    NP_CASE(t_udp4_write_never_partial_emsgsize),
    NP_CASE(t_udp6_write_never_partial_emsgsize),
    NP_CASE(t_udp_short_buffer_truncates),
    NP_CASE(t_udp_zero_length_datagram),
    NP_CASE(t_udp_zero_length_read_from_gives_no_sender),
    NP_CASE(t_udp4_listen_packet_round_trip),
    NP_CASE(t_udp6_listen_packet_round_trip),
    NP_CASE(t_udp_dual_stack_v4_peer),
    NP_CASE(t_udp_refused_port_wakes_reader),
    NP_CASE(t_udp_several_readers_each_datagram_once),
    NP_CASE(t_udp_echo_10k_no_loss))
