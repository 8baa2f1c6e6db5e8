/* np_addr (np_addr_parse / np_addr_format) and Unix datagram sockets
 * against include/netpoll.h ("Datagrams"): round trips and malformed text,
 * "unixgram" by path and abstract name, -EMSGSIZE over the send buffer, a
 * full receive queue, close waking a blocked writer, and the socket file
 * removed by np_close (and by np_run's closing of what was left open). */
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "beyond.h"

static np_conn packet(const char *network, const char *address)
{
    np_conn c;
    int rc = np_listen_packet(&c, network, address);
    NP_CHECK_MSG(rc == 0, "np_listen_packet(%s, %s): %s", network, address, np_strerror(rc));
    return c;
}

static char *tmp_path(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "/tmp/np_beyond_%s_%d.sock", tag, (int)getpid());
    unlink(buf);
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- np_addr_parse / np_addr_format ------------------------------------------------ */

static void round_trips(const char *network, const char *text, const char *want)
{
    np_addr a;
    int rc = np_addr_parse(&a, network, text);
    NP_CHECK_MSG(rc == 0, "np_addr_parse(%s, \"%s\") = %d", network, text, rc);
    char buf[160];
    NP_CHECK_OK(np_addr_format(&a, buf, sizeof buf));
    NP_CHECK_MSG(strcmp(buf, want) == 0, "np_addr_format(np_addr_parse(%s, \"%s\")) = \"%s\", want \"%s\"",
                 network, text, buf, want);
    /* And the text it gives parses to the same address. */
    np_addr b;
    NP_CHECK_OK(np_addr_parse(&b, network, buf));
    char buf2[160];
    NP_CHECK_OK(np_addr_format(&b, buf2, sizeof buf2));
    NP_CHECK_STR_EQ(buf2, buf);
}

static void t_addr_round_trip(void)
{
    /* No runtime needed: these are pure calls. */
    round_trips("udp4", "127.0.0.1:53", "127.0.0.1:53");
    round_trips("udp", "127.0.0.1:53", "127.0.0.1:53");
    round_trips("udp", "0.0.0.0:0", "0.0.0.0:0");
    round_trips("udp4", "255.255.255.255:65535", "255.255.255.255:65535");
    round_trips("udp6", "[::1]:53", "[::1]:53");
    round_trips("udp", "[::1]:53", "[::1]:53");
    round_trips("udp6", "[2001:db8::1]:8080", "[2001:db8::1]:8080");
    round_trips("udp6", "[::ffff:1.2.3.4]:5", "[::ffff:1.2.3.4]:5");
    round_trips("udp4", ":53", "0.0.0.0:53");
    round_trips("udp6", ":53", "[::]:53");
    round_trips("tcp4", "10.1.2.3:80", "10.1.2.3:80"); /* "network as for np_dial" */
    round_trips("unixgram", "/tmp/np_x.sock", "/tmp/np_x.sock");
    round_trips("unixgram", "@np_abstract", "@np_abstract");
    round_trips("unix", "relative.sock", "relative.sock");
    char longest[sizeof(((struct sockaddr_un *)0)->sun_path)];
    memset(longest, 'p', sizeof longest - 1);
    longest[0] = '/';
    longest[sizeof longest - 1] = 0; /* 107 bytes: the longest path that fits */
    round_trips("unixgram", longest, longest);
    /* ":53" on "udp": the unspecified address of some family. */
    np_addr a;
    char buf[64];
    NP_CHECK_OK(np_addr_parse(&a, "udp", ":53"));
    NP_CHECK_OK(np_addr_format(&a, buf, sizeof buf));
    NP_CHECK_MSG(!strcmp(buf, "[::]:53") || !strcmp(buf, "0.0.0.0:53"), "\":53\" -> \"%s\"", buf);
}

static void bad_parse(const char *network, const char *text)
{
    np_addr a;
    int rc = np_addr_parse(&a, network, text);
    NP_CHECK_MSG(rc == -EINVAL, "np_addr_parse(%s, \"%s\") = %d, want -EINVAL", network ? network : "NULL",
                 text ? text : "NULL", rc);
}

static void t_addr_parse_malformed_einval(void)
{
    /* Ports. */
    bad_parse("udp", "127.0.0.1:65536");
    bad_parse("udp", "127.0.0.1:99999999999999999999");
    bad_parse("udp", "127.0.0.1:");
    bad_parse("udp", "127.0.0.1");
    bad_parse("udp", "127.0.0.1:-1");
    bad_parse("udp", "127.0.0.1:+80");
    bad_parse("udp", "127.0.0.1: 80");
    bad_parse("udp", "127.0.0.1:80x");
    bad_parse("udp", "127.0.0.1:0x50");
    bad_parse("udp", "127.0.0.1:80:80");
    /* Brackets. */
    bad_parse("udp", "[::1");
    bad_parse("udp", "[::1]");
    bad_parse("udp", "[::1]53");
    bad_parse("udp", "[::1]:");
    bad_parse("udp", "::1:53");
    bad_parse("udp", "[[::1]]:53");
    bad_parse("udp", "[127.0.0.1:53");
    /* Names: no lookup here. */
    bad_parse("udp", "localhost:53");
    bad_parse("udp", "example.com:53");
    bad_parse("udp6", "localhost:53");
    /* Empty, NULL, bad networks. */
    bad_parse("udp", "");
    bad_parse("udp", NULL);
    bad_parse(NULL, "127.0.0.1:53");
    bad_parse("bogus", "127.0.0.1:53");
    bad_parse("", "127.0.0.1:53");
    bad_parse("UDP", "127.0.0.1:53");
    /* Unix: empty, and one byte over sun_path. */
    bad_parse("unixgram", "");
    char over[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
    memset(over, 'o', sizeof over - 1);
    over[0] = '/';
    over[sizeof over - 1] = 0; /* 108 bytes: no room for the NUL */
    bad_parse("unixgram", over);
    char way_over[4096];
    memset(way_over, 'w', sizeof way_over - 1);
    way_over[sizeof way_over - 1] = 0;
    bad_parse("unixgram", way_over);
    NP_CHECK_EQ(np_addr_parse(NULL, "udp", "127.0.0.1:53"), -EINVAL);
}

/* The header: np_addr_parse gives 0 or -EINVAL, and a network narrows the
 * family as for np_dial. */
static void t_addr_parse_family_mismatch_einval(void)
{
    static const char *const cases[][2] = {
        { "udp4", "[::1]:53" }, { "udp6", "127.0.0.1:53" }, { "tcp4", "[::1]:53" },
        { "tcp6", "127.0.0.1:53" }, { "udp6", ":53x" },
    };
    char report[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        np_addr a;
        int rc = np_addr_parse(&a, cases[i][0], cases[i][1]);
        if (rc != -EINVAL && used < sizeof report)
            used += (size_t)snprintf(report + used, sizeof report - used, " (%s, \"%s\") = %d;",
                                     cases[i][0], cases[i][1], rc);
    }
    NP_CHECK_MSG(used == 0, "np_addr_parse, want -EINVAL:%s", report);
}

/* Go keeps an IPv6 zone: "[fe80::1%lo]:53" formats back with its zone. */
static void t_addr_ipv6_zone_round_trip(void)
{
    np_addr a;
    int rc = np_addr_parse(&a, "udp6", "[fe80::1%lo]:53");
    if (rc == -EINVAL)
        NP_SKIP("zones not accepted by np_addr_parse (the header does not promise them)");
    NP_CHECK_OK(rc);
    char buf[64];
    NP_CHECK_OK(np_addr_format(&a, buf, sizeof buf));
    NP_CHECK_MSG(strcmp(buf, "[fe80::1%lo]:53") == 0 || strcmp(buf, "[fe80::1%1]:53") == 0,
                 "np_addr_format(np_addr_parse(\"[fe80::1%%lo]:53\")) = \"%s\": the zone is lost", buf);
}

static void t_addr_format_enospc_exact(void)
{
    np_addr a;
    NP_CHECK_OK(np_addr_parse(&a, "udp4", "127.0.0.1:53"));
    char buf[32];
    size_t need = strlen("127.0.0.1:53") + 1;
    NP_CHECK_OK(np_addr_format(&a, buf, need));
    NP_CHECK_STR_EQ(buf, "127.0.0.1:53");
    memset(buf, 'X', sizeof buf);
    NP_CHECK_EQ(np_addr_format(&a, buf, need - 1), -ENOSPC);
    NP_CHECK_EQ(buf[need - 1], 'X'); /* nothing written past len */
    NP_CHECK_EQ(np_addr_format(&a, buf, 1), -ENOSPC);
    NP_CHECK_OK(np_addr_parse(&a, "unixgram", "@abc"));
    NP_CHECK_EQ(np_addr_format(&a, buf, 4), -ENOSPC);
    NP_CHECK_OK(np_addr_format(&a, buf, 5));
    NP_CHECK_STR_EQ(buf, "@abc");
    NP_CHECK_OK(np_addr_parse(&a, "unixgram", "/x/y"));
    NP_CHECK_EQ(np_addr_format(&a, buf, 4), -ENOSPC);
    NP_CHECK_OK(np_addr_format(&a, buf, 5));
    NP_CHECK_STR_EQ(buf, "/x/y");
}

/* "-EINVAL for a corrupt one": any bytes that are not an address. */
static void t_addr_format_corrupt_einval(void)
{
    char buf[160];
    np_addr a;
    memset(&a, 0, sizeof a);
    NP_CHECK_EQ(np_addr_format(&a, buf, sizeof buf), -EINVAL);
    memset(&a, 0xff, sizeof a);
    NP_CHECK_EQ(np_addr_format(&a, buf, sizeof buf), -EINVAL);
    NP_CHECK_EQ(np_addr_format(NULL, buf, sizeof buf), -EINVAL);
    /* A valid address with its family byte overwritten: same length, a
     * family that is none of the three. */
    NP_CHECK_OK(np_addr_parse(&a, "udp4", "127.0.0.1:53"));
    sa_family_t fam = 250;
    memcpy(a.opaque, &fam, sizeof fam);
    int rc = np_addr_format(&a, buf, sizeof buf);
    NP_CHECK_MSG(rc == -EINVAL, "np_addr_format(address of family 250) = %d (%s), want -EINVAL", rc,
                 np_strerror(rc));
}

/* Corrupt addresses given to np_write_to: an error, never a send. */
static void body_write_to_corrupt(void)
{
    np_conn s = packet("udp4", "127.0.0.1:0");
    np_addr a;
    memset(&a, 0, sizeof a);
    NP_CHECK_EQ(np_write_to(s, "x", 1, &a), -EINVAL);
    memset(&a, 0xff, sizeof a);
    NP_CHECK_EQ(np_write_to(s, "x", 1, &a), -EINVAL);
    NP_CHECK_EQ(np_write_to(s, "x", 1, NULL), -EINVAL);
    NP_CHECK_OK(np_close(s));
}

static void t_write_to_corrupt_address_einval(void)
{
    b_run(body_write_to_corrupt);
}

/* ---- unixgram round trips by path and by abstract name ----------------------------------- */

static void unix_round_trip(const char *spath, const char *kpath)
{
    np_conn s = packet("unixgram", spath);
    np_conn k = packet("unixgram", kpath);
    np_addr to;
    NP_CHECK_OK(np_addr_parse(&to, "unixgram", spath));
    for (int i = 0; i < 20; i++) {
        char msg[32], got[64];
        int len = snprintf(msg, sizeof msg, "hi %d", i);
        NP_CHECK_EQ(np_write_to(k, msg, (size_t)len, &to), len);
        np_addr from;
        NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, &from), len);
        NP_CHECK(memcmp(got, msg, (size_t)len) == 0);
        NP_CHECK_STR_EQ(b_fmt(&from), kpath);
        NP_CHECK_EQ(np_write_to(s, "ho", 2, &from), 2);
        np_addr back;
        NP_CHECK_EQ(b_read_from_soon(k, got, sizeof got, &back), 2);
        NP_CHECK_STR_EQ(b_fmt(&back), spath);
    }
    NP_CHECK_OK(np_close(k));
    NP_CHECK_OK(np_close(s));
}

static void body_unix_round_trip(void)
{
    char sp[96], kp[96];
    unix_round_trip(tmp_path(sp, sizeof sp, "s"), tmp_path(kp, sizeof kp, "k"));
    snprintf(sp, sizeof sp, "@np_beyond_s_%d", (int)getpid());
    snprintf(kp, sizeof kp, "@np_beyond_k_%d", (int)getpid());
    unix_round_trip(sp, kp);
}

static void t_unixgram_round_trip_path_and_abstract(void)
{
    b_run(body_unix_round_trip);
}

/* np_dial "unixgram": one write, one datagram; a short buffer truncates. */
static void body_unix_dial(void)
{
    char sp[96];
    np_conn s = packet("unixgram", tmp_path(sp, sizeof sp, "d"));
    np_conn c;
    NP_CHECK_OK(np_dial(&c, "unixgram", sp, np_now() + 5 * NP_SECOND));
    NP_CHECK_EQ(np_write(c, "abcdef", 6), 6);
    NP_CHECK_EQ(np_write(c, "gh", 2), 2);
    NP_CHECK_EQ(np_write(c, "", 0), 0);
    NP_CHECK_EQ(np_write(c, "i", 1), 1);
    char got[16];
    NP_CHECK_EQ(b_read_from_soon(s, got, 3, NULL), 3);
    NP_CHECK(memcmp(got, "abc", 3) == 0);
    NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, NULL), 2);
    NP_CHECK(memcmp(got, "gh", 2) == 0);
    NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, NULL), 0);
    NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, NULL), 1);
    NP_CHECK_EQ(got[0], 'i');
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
}

static void t_unixgram_dial_boundaries(void)
{
    b_run(body_unix_dial);
}

/* A dialled socket is connected: np_write_to is -EISCONN (the header),
 * even though Linux would send a unixgram datagram to the address given. */
static void body_unix_eisconn(void)
{
    char sp[96], op[96];
    np_conn s = packet("unixgram", tmp_path(sp, sizeof sp, "e"));
    np_conn o = packet("unixgram", tmp_path(op, sizeof op, "o"));
    np_conn c;
    NP_CHECK_OK(np_dial(&c, "unixgram", sp, 0));
    np_addr to;
    NP_CHECK_OK(np_addr_parse(&to, "unixgram", op));
    ssize_t r = np_write_to(c, "x", 1, &to);
    NP_CHECK_MSG(r == -EISCONN, "np_write_to(dialled unixgram, another socket's path) = %zd, want -EISCONN",
                 r);
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(o));
    NP_CHECK_OK(np_close(s));
}

static void t_write_to_dialled_unixgram_eisconn(void)
{
    b_run(body_unix_eisconn);
}

/* The `from` of an unnamed (dialled, never bound) sender is something the
 * library made: np_addr_format must not call it corrupt. */
static void body_unnamed_from(void)
{
    char sp[96];
    np_conn s = packet("unixgram", tmp_path(sp, sizeof sp, "u"));
    np_conn c;
    NP_CHECK_OK(np_dial(&c, "unixgram", sp, 0));
    NP_CHECK_EQ(np_write(c, "u", 1), 1);
    np_addr from;
    char got[4], text[128];
    NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, &from), 1);
    int rc = np_addr_format(&from, text, sizeof text);
    NP_CHECK_MSG(rc == 0, "np_addr_format(from of an unnamed unixgram sender) = %d (%s)", rc,
                 np_strerror(rc));
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
}

static void t_unixgram_unnamed_sender_from_formats(void)
{
    b_run(body_unnamed_from);
}

/* ---- over the send buffer: -EMSGSIZE, nothing sent ---------------------------------- */

static void body_unix_emsgsize(void)
{
    char sp[96];
    np_conn s = packet("unixgram", tmp_path(sp, sizeof sp, "m"));
    np_conn c;
    NP_CHECK_OK(np_dial(&c, "unixgram", sp, 0));
    int sndbuf = 0;
    socklen_t sl = sizeof sndbuf;
    NP_CHECK_SYS(getsockopt(np_conn_fd(c), SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl));
    NP_CHECK_GT(sndbuf, 0);
    size_t over = (size_t)sndbuf + 1;
    char *big = calloc(1, over * 2);
    NP_CHECK(big);
    NP_CHECK_EQ(np_write(c, big, over), -EMSGSIZE);
    NP_CHECK_EQ(np_write(c, big, over * 2), -EMSGSIZE);
    char kp[96];
    snprintf(kp, sizeof kp, "@np_beyond_mk_%d", (int)getpid());
    np_conn k = packet("unixgram", kp);
    np_addr to;
    NP_CHECK_OK(np_addr_parse(&to, "unixgram", sp));
    NP_CHECK_EQ(np_write_to(k, big, over * 2, &to), -EMSGSIZE);
    NP_CHECK_EQ(np_write(c, "m", 1), 1);
    char got[8];
    NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, NULL), 1); /* the marker is first */
    NP_CHECK_EQ(got[0], 'm');
    free(big);
    NP_CHECK_OK(np_close(k));
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
}

static void t_unixgram_over_sndbuf_emsgsize(void)
{
    b_run(body_unix_emsgsize);
}

/* ---- a full receive queue: writes wait (deadline), then resume; close wakes ------------ */

static np_conn fullq_c;
static _Atomic int fullq_started, fullq_result = 1;

static void blocked_writer(void *arg)
{
    (void)arg;
    atomic_store(&fullq_started, 1);
    atomic_store(&fullq_result, (int)np_write(fullq_c, "w", 1));
}

static void body_full_queue(void)
{
    char sp[96];
    np_conn s = packet("unixgram", tmp_path(sp, sizeof sp, "q"));
    NP_CHECK_OK(np_dial(&fullq_c, "unixgram", sp, 0));
    /* Fill the receiver's queue until a write would block. */
    char chunk[512];
    memset(chunk, 'f', sizeof chunk);
    int sent = 0;
    int64_t t0 = np_now();
    for (;;) {
        int64_t d = np_now() + 100 * NP_MILLISECOND;
        NP_CHECK_OK(np_set_write_deadline(fullq_c, d));
        ssize_t n = np_write(fullq_c, chunk, sizeof chunk);
        if (n == -ETIMEDOUT) {
            NP_CHECK_GE(np_now(), d); /* never early */
            break;
        }
        NP_CHECK_EQ(n, (ssize_t)sizeof chunk); /* never partial */
        sent++;
        NP_CHECK_LT(np_now() - t0, 20 * NP_SECOND);
    }
    NP_CHECK_GT(sent, 0);
    /* One read makes room: the next write (no deadline) goes through. */
    NP_CHECK_OK(np_set_write_deadline(fullq_c, 0));
    char got[1024];
    NP_CHECK_EQ(b_read_from_soon(s, got, sizeof got, NULL), (ssize_t)sizeof chunk);
    NP_CHECK_OK(np_set_write_deadline(fullq_c, np_now() + 5 * NP_SECOND));
    NP_CHECK_EQ(np_write(fullq_c, chunk, sizeof chunk), (ssize_t)sizeof chunk);
    NP_CHECK_OK(np_set_write_deadline(fullq_c, 0));
    /* Full again: a writer blocks; closing the connection wakes it. */
    NP_CHECK_OK(np_go(blocked_writer, NULL));
    NP_CHECK(b_wait_flag(&fullq_started, 5000));
    np_sleep(100 * NP_MILLISECOND); /* inside the write by now */
    NP_CHECK_EQ(atomic_load(&fullq_result), 1);
    NP_CHECK_OK(np_close(fullq_c));
    t0 = np_now();
    while (atomic_load(&fullq_result) == 1 && np_now() - t0 < 3 * NP_SECOND)
        np_sleep(NP_MILLISECOND);
    NP_CHECK_MSG(atomic_load(&fullq_result) == -ECANCELED, "blocked unixgram write after close: %d",
                 atomic_load(&fullq_result));
    NP_CHECK_OK(np_close(s));
}

static void t_unixgram_full_queue_waits_resumes_close_wakes(void)
{
    b_run(body_full_queue);
}

/* ---- the socket file ------------------------------------------------------------------ */

static char file_path[96];

static void body_file_removed(void)
{
    tmp_path(file_path, sizeof file_path, "f");
    np_conn s = packet("unixgram", file_path);
    NP_CHECK(exists(file_path));
    NP_CHECK_EQ(np_listen_packet(&(np_conn){ 0 }, "unixgram", file_path), -EADDRINUSE);
    NP_CHECK(exists(file_path)); /* the failed bind took nothing away */
    NP_CHECK_OK(np_close(s));
    NP_CHECK(!exists(file_path));
    s = packet("unixgram", file_path); /* the path is free again at once */
    NP_CHECK_OK(np_close(s));
    NP_CHECK(!exists(file_path));
}

static void t_unixgram_file_removed_at_close(void)
{
    b_run(body_file_removed);
}

/* Closed while a read is blocked on it: the file goes at np_close (so the
 * path can be bound again at once), and the blocked read letting go later
 * must not remove the new socket's file. */
static np_conn rb_conn;
static _Atomic int rb_started;
static _Atomic ssize_t rb_result = 12345;

static void rb_reader(void *arg)
{
    (void)arg;
    char b[8];
    atomic_store(&rb_started, 1);
    atomic_store(&rb_result, np_read_from(rb_conn, b, sizeof b, NULL));
}

static void body_rebind(void)
{
    tmp_path(file_path, sizeof file_path, "r");
    rb_conn = packet("unixgram", file_path);
    NP_CHECK_OK(np_go(rb_reader, NULL));
    NP_CHECK(b_wait_flag(&rb_started, 5000));
    np_sleep(50 * NP_MILLISECOND);
    NP_CHECK_OK(np_close(rb_conn));
    np_conn again;
    int rc = np_listen_packet(&again, "unixgram", file_path);
    NP_CHECK_MSG(rc == 0, "binding the path again right after np_close: %s", np_strerror(rc));
    int64_t t0 = np_now();
    while (atomic_load(&rb_result) == 12345 && np_now() - t0 < 5 * NP_SECOND)
        np_sleep(NP_MILLISECOND);
    NP_CHECK_EQ(atomic_load(&rb_result), -ECANCELED);
    np_sleep(20 * NP_MILLISECOND);
    NP_CHECK_MSG(exists(file_path), "the new socket's file was removed by the old handle's close");
    /* And the new one works at that path. */
    np_conn k;
    NP_CHECK_OK(np_dial(&k, "unixgram", file_path, 0));
    NP_CHECK_EQ(np_write(k, "a", 1), 1);
    char b[4];
    NP_CHECK_EQ(b_read_from_soon(again, b, sizeof b, NULL), 1);
    NP_CHECK_OK(np_close(k));
    NP_CHECK_OK(np_close(again));
    NP_CHECK(!exists(file_path));
}

static void t_unixgram_close_during_read_then_rebind(void)
{
    b_run(body_rebind);
}

/* A file that is not ours at the path: the bind fails and it stays. */
static void body_not_ours(void)
{
    tmp_path(file_path, sizeof file_path, "n");
    FILE *f = fopen(file_path, "w");
    NP_CHECK(f);
    fclose(f);
    np_conn s;
    NP_CHECK_EQ(np_listen_packet(&s, "unixgram", file_path), -EADDRINUSE);
    NP_CHECK(exists(file_path));
    unlink(file_path);
}

static void t_unixgram_failed_bind_leaves_file(void)
{
    b_run(body_not_ours);
}

/* np_run closes every handle left open, and closing removes the file. */
static void body_left_open(void)
{
    tmp_path(file_path, sizeof file_path, "l");
    packet("unixgram", file_path); /* never closed */
    NP_CHECK(exists(file_path));
}

static void t_unixgram_file_removed_when_run_ends(void)
{
    b_run(body_left_open);
    bool left = exists(file_path);
    unlink(file_path);
    NP_CHECK_MSG(!left, "%s still exists after np_run closed the handle", file_path);
}

/* ---- np_listen_packet's bad input ------------------------------------------------------- */

static void body_listen_packet_bad(void)
{
    np_conn c = { 77 };
    NP_CHECK_EQ(np_listen_packet(&c, "tcp", "127.0.0.1:0"), -EINVAL);
    NP_CHECK_EQ(c.id, 0);
    NP_CHECK_EQ(np_listen_packet(&c, "unix", "@np_beyond_x"), -EINVAL);
    NP_CHECK_EQ(np_listen_packet(&c, "udp", "127.0.0.1"), -EINVAL);
    NP_CHECK_EQ(np_listen_packet(&c, "udp", "127.0.0.1:65536"), -EINVAL);
    NP_CHECK_EQ(np_listen_packet(&c, "udp", NULL), -EINVAL);
    NP_CHECK_EQ(np_listen_packet(&c, NULL, "127.0.0.1:0"), -EINVAL);
    NP_CHECK_EQ(np_listen_packet(NULL, "udp", "127.0.0.1:0"), -EINVAL);
    NP_CHECK_EQ(np_listen_packet(&c, "unixgram", ""), -EINVAL);
    np_conn a = packet("udp4", "127.0.0.1:0");
    char text[64];
    NP_CHECK_OK(np_local_addr(a, text, sizeof text));
    NP_CHECK_EQ(np_listen_packet(&c, "udp4", text), -EADDRINUSE);
    NP_CHECK_OK(np_close(a));
    /* Datagram networks are not for np_listen. */
    np_listener l;
    NP_CHECK_EQ(np_listen(&l, "unixgram", "@np_beyond_y"), -EINVAL);
}

static void t_listen_packet_bad_input(void)
{
    b_run(body_listen_packet_bad);
}

NP_TEST_LIST(
    NP_CASE(t_addr_round_trip),
    NP_CASE(t_addr_parse_malformed_einval),
    NP_CASE(t_addr_parse_family_mismatch_einval),
    NP_CASE(t_addr_ipv6_zone_round_trip),
    NP_CASE(t_addr_format_enospc_exact),
    NP_CASE(t_addr_format_corrupt_einval),
    NP_CASE(t_write_to_corrupt_address_einval),
    NP_CASE(t_unixgram_round_trip_path_and_abstract),
    NP_CASE(t_unixgram_dial_boundaries),
    NP_CASE(t_write_to_dialled_unixgram_eisconn),
    NP_CASE(t_unixgram_unnamed_sender_from_formats),
    NP_CASE(t_unixgram_over_sndbuf_emsgsize),
    NP_CASE(t_unixgram_full_queue_waits_resumes_close_wakes),
    NP_CASE(t_unixgram_file_removed_at_close),
    NP_CASE(t_unixgram_close_during_read_then_rebind),
    NP_CASE(t_unixgram_failed_bind_leaves_file),
    NP_CASE(t_unixgram_file_removed_when_run_ends),
    NP_CASE(t_listen_packet_bad_input))
