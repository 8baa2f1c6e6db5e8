/* api_fuzz: datagrams (np_listen_packet, np_read_from, np_write_to, np_dial
 * "udp"/"unixgram"), text addresses (np_addr_parse, np_addr_format), foreign
 * descriptors (np_wait_fd, np_conn_from_fd) and signals (np_signal_notify,
 * np_signal_stop): random calls and checked scenarios. See fuzz.h.
 *
 * Signals: only SIGUSR1 and SIGUSR2 (which have this program's counting
 * handler, so a raise nobody watches is harmless), SIGWINCH and SIGURG
 * (ignored by default) are raised at random. SIGRTMIN+3 belongs to one
 * scenario at a time, raised only while it watches it; SIGRTMIN+2 is
 * watched at random and never raised. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"

#define SAFETY (10 * NP_SECOND)


typedef struct fz_beyond {
    int pr, pw, efd, sp0, sp1, file, devnull; /* the run's, closed at its end */
    np_chan sig[2];                           /* int channels watching signals */
} fz_beyond;

static _Atomic long usr_count;

static void on_usr(int sig)
{
    (void)sig;
    atomic_fetch_add(&usr_count, 1);
}

void fz_beyond_init(void)
{
    struct sigaction sa = { 0 };
    sa.sa_handler = on_usr;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
}

static bool good_signal(int s)
{
    return s == SIGUSR1 || s == SIGUSR2 || s == SIGWINCH || s == SIGURG || s == SIGRTMIN + 2 ||
           s == SIGRTMIN + 3;
}

/* Dispositions once nobody watches: ours for SIGUSR1/2, the default else. */
void fz_check_dispositions(fz_actor *a, const char *when)
{
    static const int sigs[] = { SIGUSR1, SIGUSR2, SIGWINCH, SIGURG };
    for (size_t i = 0; i < 4; i++) {
        struct sigaction old;
        sigaction(sigs[i], NULL, &old);
        void (*want)(int) = i < 2 ? on_usr : SIG_DFL;
        if (old.sa_handler != want)
            fz_fail(a, "%s: signal %d's disposition is not back to %s", when, sigs[i],
                    i < 2 ? "the program's handler" : "the default");
    }
}

struct fz_beyond *fz_beyond_new(fz_actor *a)
{
    fz_beyond *b = calloc(1, sizeof *b);
    int p[2], s[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, s) != 0)
        abort();
    b->pr = p[0];
    b->pw = p[1];
    b->sp0 = s[0];
    b->sp1 = s[1];
    b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    b->file = open(fz_regular_file, O_RDONLY | O_CLOEXEC);
    b->devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int i = 0; i < 2; i++) {
        int rc = np_chan_make(&b->sig[i], sizeof(int), i ? 4 : 1);
        if (rc != 0)
            fz_fail(a, "np_chan_make for a signal channel = %d", rc);
    }
    return b;
}

void fz_beyond_sweep(fz_actor *a)
{
    fz_beyond *b = a->run->beyond;
    for (int i = 0; i < 2; i++)
        np_chan_close(b->sig[i]); /* wakes readers; later notifications find it closed */
}

void fz_beyond_end(fz_actor *a, struct fz_beyond *b)
{
    for (int i = 0; i < 2; i++) {
        int r1 = np_signal_stop(b->sig[i]), r2 = np_chan_free(b->sig[i]);
        if (r1 != 0 || r2 != 0)
            fz_fail(a, "signal channel %d at the end: np_signal_stop = %d, np_chan_free = %d", i,
                    r1, r2);
    }
    int fds[] = { b->pr, b->pw, b->efd, b->sp0, b->sp1, b->file, b->devnull };
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0 && close(fds[i]) != 0)
            fz_fail(a, "a descriptor of ours (%d) was closed by someone else", fds[i]);
    fz_check_dispositions(a, "end of run, every signal channel stopped and freed");
    free(b);
}

static bool all_a5(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0xa5)
            return false;
    return true;
}

/* ---- addresses ------------------------------------------------------------- */

static const char *const addr_nets[] = { "udp", "udp4", "udp6", "unixgram", "tcp", "tcp4",
                                         "tcp6", "unix" };

static const char *const addr_texts[] = {
    "127.0.0.1:53", "[::1]:53", ":53", "0.0.0.0:0", "[::]:65535", "/tmp/npf-addr.sock",
    "@npf-abstract", "[fe80::1%lo]:9", "1.2.3:4", "255.255.255.255:65535", "[::ffff:1.2.3.4]:5",
};

/* Names are never looked up here: a name is -EINVAL. */
static const char *const addr_names[] = { "localhost:80", "example.invalid:53", "a:1" };

/* Parses text into *out; the text comes from the book, a list, or noise. */
static int parse_some(fz_actor *a, np_addr *out, const char **netp, char *text, size_t cap,
                      bool *name)
{
    *name = false;
    const char *net = addr_nets[fz_below(a, 8)];
    int k = (int)fz_below(a, 10);
    if (k < 4) {
        snprintf(text, cap, "%s", addr_texts[fz_below(a, sizeof addr_texts / sizeof *addr_texts)]);
    } else if (k < 5) {
        snprintf(text, cap, "%s", addr_names[fz_below(a, 3)]);
        *name = true;
    } else if (k < 8 && a->run) {
        unsigned n = atomic_load(&a->run->book_n);
        fz_book_entry *e = n ? &a->run->book[fz_below(a, n < FZ_BOOK ? n : FZ_BOOK)] : NULL;
        if (e && atomic_load_explicit(&e->ready, memory_order_acquire)) {
            snprintf(text, cap, "%s", e->address);
            net = fz_chance(a, 70) ? e->network : net;
        } else {
            snprintf(text, cap, "127.0.0.1:9");
        }
        if (!strcmp(net, "tcp") || !strcmp(net, "unix")) /* the datagram twin */
            net = fz_chance(a, 50) ? net : net[0] == 't' ? "udp" : "unixgram";
    } else {
        size_t n = fz_below(a, 40);
        for (size_t i = 0; i < n; i++)
            text[i] = "0123456789:[]%.@/abcdefx "[fz_below(a, 25)];
        text[n] = 0;
    }
    if (fz_chance(a, 3))
        net = fz_chance(a, 50) ? NULL : "udp5";
    *netp = net;
    unsigned ri = fz_begin(a, C_ADDR_PARSE, 0, k);
    int rc = np_addr_parse(out, net, text);
    fz_end(a, ri, C_ADDR_PARSE, rc);
    return rc;
}

static void op_addr_parse(fz_actor *a)
{
    np_addr *ad = (np_addr *)(a->abuf + 1024);
    char *text = a->abuf, *t2 = a->abuf + 256, *t3 = a->abuf + 512;
    const char *net;
    bool name;
    if (fz_chance(a, 4)) {
        int rc = np_addr_parse(NULL, "udp", "127.0.0.1:1");
        if (rc != -EINVAL)
            fz_fail(a, "np_addr_parse(NULL, ...) = %d, want -EINVAL", rc);
        return;
    }
    int rc = parse_some(a, ad, &net, text, 256, &name);
    /* -EAFNOSUPPORT (an IPv6 text for udp4, ...): plausible, though the
     * header says 0 or -EINVAL */
    if (rc != 0 && rc != -EINVAL && rc != -EAFNOSUPPORT) {
        fz_fail(a, "np_addr_parse(%s, \"%s\") = %d (%s), want 0 or -EINVAL", net ? net : "NULL",
                text, rc, np_strerror(rc));
        return;
    }
    if (rc != 0)
        return;
    if (name && strncmp(net, "unix", 4) != 0) { /* for unix, "a:1" is a path */
        fz_fail(a, "np_addr_parse(%s, \"%s\"): a host name parsed (no lookups here)", net, text);
        return;
    }
    if (!net) {
        fz_fail(a, "np_addr_parse with a NULL network = 0");
        return;
    }
    /* round trip: format, parse back, format again: the same text */
    rc = np_addr_format(ad, t2, 256);
    if (rc != 0) {
        fz_fail(a, "np_addr_format of a parsed \"%s\" (%s) = %d", text, net, rc);
        return;
    }
    np_addr back;
    rc = np_addr_parse(&back, net, t2);
    if (rc != 0 || np_addr_format(&back, t3, 256) != 0 || strcmp(t2, t3) != 0)
        fz_fail(a, "np_addr round trip (%s): \"%s\" -> \"%s\" -> %d \"%s\"", net, text, t2, rc,
                rc ? "" : t3);
}

static void op_addr_format(fz_actor *a)
{
    np_addr *ad = (np_addr *)(a->abuf + 1024);
    char *buf = a->abuf + 2048;
    int k = (int)fz_below(a, 10);
    bool null_a = false;
    if (k < 5) {
        const char *net;
        bool name;
        if (parse_some(a, ad, &net, a->abuf, 256, &name) != 0)
            memset(ad, 0, sizeof *ad);
    } else if (k < 8) { /* corrupt: noise, or a valid one with noise on top */
        for (size_t i = 0; i < sizeof *ad; i++)
            if (k == 5 || fz_chance(a, 10))
                ad->opaque[i] = (unsigned char)fz_rand(a);
    } else if (k == 8) {
        memset(ad, fz_chance(a, 50) ? 0 : 0xff, sizeof *ad);
    } else {
        null_a = true;
    }
    static const size_t lens[] = { 0, 1, 2, 7, 8, 16, 22, 47, 64, 108, 128, 200 };
    size_t len = lens[fz_below(a, 12)];
    bool null_buf = fz_chance(a, 5);
    memset(buf, 0xa5, len + 64);
    unsigned ri = fz_begin(a, C_ADDR_FORMAT, 0, (int64_t)len);
    int rc = np_addr_format(null_a ? NULL : ad, null_buf ? NULL : buf, len);
    fz_end(a, ri, C_ADDR_FORMAT, rc);
    /* -EAFNOSUPPORT for a family it does not know: plausible (the header
     * says -EINVAL for a corrupt one) */
    if (rc != 0 && rc != -ENOSPC && rc != -EINVAL && rc != -EAFNOSUPPORT)
        fz_fail(a, "np_addr_format = %d (%s), want 0, -ENOSPC or -EINVAL", rc, np_strerror(rc));
    if (null_a && rc != -EINVAL)
        fz_fail(a, "np_addr_format(NULL) = %d, want -EINVAL", rc);
    if (null_buf) {
        if (rc == 0 && len)
            fz_fail(a, "np_addr_format(buf NULL, len %zu) = 0", len);
        return;
    }
    for (size_t i = len; i < len + 64; i++)
        if ((unsigned char)buf[i] != 0xa5) {
            fz_fail(a, "np_addr_format(len %zu) wrote beyond the length, at byte %zu", len, i);
            break;
        }
    if (rc == 0 && (len == 0 || strnlen(buf, len) >= len))
        fz_fail(a, "np_addr_format(len %zu) = 0 without a terminated string", len);
}

/* ---- datagrams ------------------------------------------------------------- */

static void op_listen_packet(fz_actor *a)
{
    const char *net, *addr;
    char netbuf[8];
    fz_pick_addr(a, true, true, &net, &addr, netbuf);
    bool null_out = fz_chance(a, 4);
    np_conn c = { 12345 };
    unsigned ri = fz_begin(a, C_LISTEN_PACKET, 0, 0);
    int rc = np_listen_packet(null_out ? NULL : &c, net, addr);
    fz_end(a, ri, C_LISTEN_PACKET, rc);
    char what[160];
    snprintf(what, sizeof what, "%s, \"%s\", \"%.80s\"", null_out ? "NULL" : "&c",
             net ? net : "(null)", addr ? addr : "(null)");
    fz_expect(a, C_LISTEN_PACKET, H_NONE, rc, false, fz_listen_errs, what);
    if (rc != 0)
        return;
    if (null_out || a->ctx == CTX_NORUNTIME || c.id == 0 || !a->run) {
        fz_fail(a, "np_listen_packet(%s) succeeded%s", what,
                null_out ? " with a NULL out" : c.id == 0 ? " with id 0" : " with no runtime");
        if (!null_out && c.id)
            np_close(c);
        return;
    }
    bool stream = strncmp(net, "udp", 3) != 0 && strcmp(net, "unixgram") != 0;
    if (stream)
        fz_fail(a, "np_listen_packet(%s) on a stream network succeeded", what);
    int path = !strncmp(net, "unix", 4) && addr[0] != '@' ? fz_path_add(a->run, addr) : -1;
    char text[128];
    if (np_local_addr(c, text, sizeof text) == 0)
        fz_book_add(a->run, net, text);
    fz_got_conn(a, c.id, CT_DGRAM_UNBOUND, path);
}

static void op_read_from(fz_actor *a)
{
    fz_pick h = fz_pick_handle(a, K_CONN);
    if (h.hclass == H_LIVE && fz_chance(a, 70))
        np_set_read_deadline((np_conn){ h.id }, np_now() + (int64_t)fz_below(a, 20 * NP_MILLISECOND));
    size_t len = fz_chance(a, 10) ? 0 : 1 + fz_below(a, fz_chance(a, 50) ? 100 : 70000);
    void *buf = fz_chance(a, 5) ? NULL : a->buf;
    np_addr *from = fz_chance(a, 30) ? NULL : (np_addr *)(a->abuf + 4096);
    if (from)
        memset(a->abuf + 4096, 0xa5, sizeof *from + 32);
    unsigned ri = fz_begin(a, C_READ_FROM, h.id, (int64_t)len);
    ssize_t rc = np_read_from((np_conn){ h.id }, buf, len, from);
    fz_end(a, ri, C_READ_FROM, rc);
    char what[64];
    snprintf(what, sizeof what, "%s, %zu, %s; %s", buf ? "buf" : "NULL", len,
             from ? "&from" : "NULL", fz_ctype_name(h));
    if (!fz_expect(a, C_READ_FROM, h.hclass, rc, true,
                   FZ_ERRS(EBADF, ECANCELED, ETIMEDOUT, EINVAL, ECONNREFUSED, EFAULT, ENOTSOCK,
                           ECONNRESET), what))
        return;
    if (from && !all_a5((unsigned char *)from + sizeof *from, 32))
        fz_fail(a, "np_read_from wrote past the np_addr");
    if (rc < 0 || len == 0) /* len 0: 0 at once, like np_read, is plausible */
        return;
    if (h.ctype == CT_STREAM || h.ctype == CT_FOREIGN)
        fz_fail(a, "np_read_from(%s) on a %s succeeded (%zd), want -EINVAL", what,
                h.ctype == CT_STREAM ? "stream connection" : "pipe", rc);
    if ((size_t)rc > len || (!buf && rc > 0))
        fz_fail(a, "np_read_from(%s) = %zd", what, rc);
    char text[128];
    int fr;
    if (from && (fr = np_addr_format(from, text, sizeof text)) != 0)
        fz_fail(a, "np_read_from gave a sender np_addr_format cannot format: %d (%s)", fr,
                np_strerror(fr));
}

static void op_write_to(fz_actor *a)
{
    fz_pick h = fz_pick_handle(a, K_CONN);
    if (h.hclass == H_LIVE && fz_chance(a, 70))
        np_set_write_deadline((np_conn){ h.id }, np_now() + (int64_t)fz_below(a, 20 * NP_MILLISECOND));
    np_addr *to = (np_addr *)(a->abuf + 1024);
    const char *net;
    bool name;
    int k = (int)fz_below(a, 10);
    if (k < 7) {
        if (parse_some(a, to, &net, a->abuf, 256, &name) != 0)
            k = 8;
    }
    if (k == 7)
        for (size_t i = 0; i < sizeof *to; i++)
            to->opaque[i] = (unsigned char)fz_rand(a);
    if (k == 8)
        memset(to, 0, sizeof *to);
    size_t len = (size_t[]){ 0, 1, 100, 1400, 65507, 70000 }[fz_below(a, 6)];
    memset(a->buf, 'u', len);
    unsigned ri = fz_begin(a, C_WRITE_TO, h.id, (int64_t)len);
    ssize_t rc = np_write_to((np_conn){ h.id }, a->buf, len, k == 9 ? NULL : to);
    fz_end(a, ri, C_WRITE_TO, rc);
    char what[64];
    snprintf(what, sizeof what, "%zu bytes, to %s", len,
             k == 9 ? "NULL" : k == 7 ? "noise" : k == 8 ? "zeroes" : "an address");
    static const int errs[] = { EBADF, ECANCELED, ETIMEDOUT, EINVAL, EMSGSIZE, EAFNOSUPPORT,
                                EISCONN, ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, EACCES, EPERM,
                                ENOENT, EPROTOTYPE, ENOBUFS, EDESTADDRREQ, ENOTCONN,
                                EADDRNOTAVAIL, EOPNOTSUPP, ENOTSOCK, EPIPE, ECONNRESET,
                                ENOTDIR, 0 };
    if (!fz_expect(a, C_WRITE_TO, h.hclass, rc, true, errs, what) || rc < 0)
        return;
    if (k == 9)
        fz_fail(a, "np_write_to(%s) succeeded", what);
    if ((size_t)rc != len)
        fz_fail(a, "np_write_to(%s) = %zd: a datagram is never partial", what, rc);
    if (h.ctype == CT_STREAM && h.hclass == H_LIVE)
        fz_fail(a, "np_write_to(%s) on a stream connection succeeded", what);
}

/* ---- foreign descriptors --------------------------------------------------- */

static void poke(fz_actor *a, fz_beyond *b)
{
    uint64_t one = 1;
    char c = 'p', sink[256];
    ssize_t r = 0;
    switch (fz_below(a, 6)) {
    case 0: r = write(b->pw, &c, 1); break;
    case 1: r = write(b->efd, &one, 8); break;
    case 2: r = write(b->sp1, &c, 1); break;
    case 3: r = read(b->pr, sink, sizeof sink); break;
    case 4: r = read(b->efd, sink, 8); break;
    default: r = read(b->sp0, sink, sizeof sink); break;
    }
    (void)r;
}

static void op_wait_fd(fz_actor *a)
{
    fz_beyond *b = a->run ? a->run->beyond : NULL;
    int fd, k = (int)fz_below(a, b ? 12 : 3);
    bool bad_fd = false, ready_now = false;
    switch (k) {
    case 0: fd = -1; bad_fd = true; break;
    case 1: fd = fz_chance(a, 50) ? INT_MAX : 4000; bad_fd = true; break;
    case 2: fd = fz_chance(a, 50) ? INT_MIN : -1000; bad_fd = true; break;
    case 3: fd = b->pr; break;
    case 4: fd = b->pw; break;
    case 5: fd = b->efd; break;
    case 6: fd = b->sp0; break;
    case 7: fd = b->sp1; break;
    case 8: fd = b->file; ready_now = true; break;
    case 9: fd = b->devnull; ready_now = true; break;
    default: { /* a connection's own descriptor (it may be closed meanwhile) */
        if (FZ_TSAN) { /* see FZ_TSAN */
            fd = b->devnull;
            ready_now = true;
            break;
        }
        fz_pick h = fz_pick_handle(a, K_CONN);
        fd = h.hclass == H_LIVE ? np_conn_fd((np_conn){ h.id }) : -1;
        bad_fd = fd < 0;
        break;
    }
    }
    if (b && fz_chance(a, 40))
        poke(a, b);
    int ev = (int[]){ NP_READABLE, NP_WRITABLE, NP_READABLE | NP_WRITABLE }[fz_below(a, 3)];
    bool bad_ev = fz_chance(a, 6);
    if (bad_ev)
        ev = (int[]){ 0, 4, 8, -1, INT_MIN, 0x100 | NP_READABLE }[fz_below(a, 6)];
    bool past = false;
    int64_t d = ready_now && fz_chance(a, 50) ? 0 : fz_deadline(a, true, &past);
    int64_t t0 = np_now();
    unsigned ri = fz_begin(a, C_WAIT_FD, (uint64_t)(unsigned)fd, ev);
    int rc = np_wait_fd(fd, ev, d);
    fz_end(a, ri, C_WAIT_FD, rc);
    int64_t t1 = np_now();
    char what[64];
    snprintf(what, sizeof what, "fd %d, events %d, %" PRId64, fd, ev, d);
    if (bad_ev || bad_fd) {
        bool ok = (bad_ev && rc == -EINVAL) || (bad_fd && rc == -EBADF) ||
                  (a->ctx == CTX_NORUNTIME && rc == -ESRCH);
        if (!ok)
            fz_fail(a, "np_wait_fd(%s) with %s = %d, want %s", what,
                    bad_ev ? "bad events" : "a descriptor not open", rc,
                    bad_ev ? "-EINVAL" : "-EBADF");
        return;
    }
    if (!fz_expect(a, C_WAIT_FD, H_NONE, rc, true, FZ_ERRS(ETIMEDOUT, EBADF), what))
        return;
    if (rc == 0 || (rc > 0 && (rc & ~ev)))
        fz_fail(a, "np_wait_fd(%s) = %#x: not a subset of what was asked", what, rc);
    if (rc > 0 && a->ctx == CTX_NORUNTIME)
        fz_fail(a, "np_wait_fd(%s) = %d with no runtime running", what, rc);
    /* with a deadline already past, -ETIMEDOUT is plausible too (Go's rule
     * for calls that need not block; the poll backend does so) */
    if (ready_now && a->ctx != CTX_NORUNTIME && rc <= 0 &&
        !(rc == -ETIMEDOUT && (past || (d != 0 && d <= t1))))
        fz_fail(a, "np_wait_fd(%s) on a regular file or /dev/null = %d, want it ready at once",
                what, rc);
    if (rc == -ETIMEDOUT && !past && d && t1 < d)
        fz_fail(a, "np_wait_fd(%s): -ETIMEDOUT %" PRId64 " ns early", what, d - t1);
    (void)t0;
}

bool fz_fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

static void op_conn_from_fd(fz_actor *a)
{
    int k = (int)fz_below(a, 9), fds[2] = { -1, -1 }, ct = CT_FOREIGN;
    bool bad = false, file = false;
    switch (k) {
    case 0: case 1: /* a pipe, blocking on purpose: adoption makes it non-blocking */
        if (pipe2(fds, O_CLOEXEC) != 0)
            return;
        break;
    case 2:
        fds[0] = eventfd(0, EFD_CLOEXEC);
        break;
    case 3: case 4:
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
            return;
        ct = CT_STREAM;
        break;
    case 5:
        fds[0] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ct = CT_DGRAM_UNBOUND;
        break;
    case 6:
        fds[0] = open(fz_regular_file, O_RDONLY | O_CLOEXEC);
        file = true;
        break;
    default:
        fds[0] = fz_chance(a, 50) ? -1 : 4001;
        bad = true;
        break;
    }
    if (!bad && fds[0] < 0)
        return;
    bool null_out = fz_chance(a, 5);
    for (int i = 0; i < 2; i++) {
        if (i == 1 && fds[1] < 0)
            break;
        if (i == 1 && ct == CT_FOREIGN && fz_chance(a, 30)) { /* a pipe end left alone */
            close(fds[1]);
            break;
        }
        np_conn c = { 12345 };
        unsigned ri = fz_begin(a, C_CONN_FROM_FD, 0, fds[i]);
        int rc = np_conn_from_fd(null_out ? NULL : &c, fds[i]);
        fz_end(a, ri, C_CONN_FROM_FD, rc);
        bool adopted = rc == 0;
        if (bad) { /* -EINVAL for a negative number: plausible too */
            if (rc != -EBADF && !((fds[i] < 0 || null_out) && rc == -EINVAL) &&
                !(a->ctx == CTX_NORUNTIME && rc == -ESRCH))
                fz_fail(a, "np_conn_from_fd(%d), not open = %d, want -EBADF", fds[i], rc);
            return;
        }
        if (adopted && (null_out || file || a->ctx == CTX_NORUNTIME || c.id == 0)) {
            fz_fail(a, "np_conn_from_fd(%s) succeeded", null_out ? "NULL out" : file
                    ? "a regular file" : c.id == 0 ? "..., id 0" : "..., no runtime");
            if (!null_out && c.id)
                np_close(c);
            else
                close(fds[i]);
            continue;
        }
        if (!adopted) {
            bool ok = rc == -ENOMEM || (file && rc == -EINVAL) || (null_out && rc == -EINVAL) ||
                      (a->ctx == CTX_NORUNTIME && rc == -ESRCH);
            if (!ok)
                fz_fail(a, "np_conn_from_fd(%s, fd %d) = %d (%s)", null_out ? "NULL" : "&c",
                        fds[i], rc, np_strerror(rc));
            /* not adopted: still ours */
            if (!fz_fd_open(fds[i]))
                fz_fail(a, "np_conn_from_fd = %d, yet it closed the descriptor", rc);
            else
                close(fds[i]);
            continue;
        }
        int fl = fcntl(fds[i], F_GETFL);
        if (fl == -1 || !(fl & O_NONBLOCK))
            fz_fail(a, "np_conn_from_fd: the adopted descriptor is not non-blocking");
        int conn_fd = np_conn_fd(c);
        if (conn_fd != fds[i])
            fz_fail(a, "np_conn_fd of an adopted descriptor %d = %d", fds[i], conn_fd);
        fz_got_conn(a, c.id, ct, -1);
    }
}

/* ---- signals --------------------------------------------------------------- */

static void op_signal(fz_actor *a, int call)
{
    fz_beyond *b = a->run ? a->run->beyond : NULL;
    np_chan ch = { 0 };
    int kind = (int)fz_below(a, 10); /* 0-5 a signal channel, 6 nil, 7-8 forged, 9 another size */
    if (kind < 6 && b)
        ch = b->sig[kind % 2];
    else if (kind == 7 || kind == 8)
        ch.id = fz_chance(a, 50) ? UINT64_MAX : ((uint64_t)0xfff3 << 32) | 0xfffff0;
    else if (kind == 9 && a->run) {
        np_chan tmp;
        if (np_chan_make(&tmp, 8, 1) == 0) { /* the wrong size: -EINVAL */
            int rc = np_signal_notify(tmp, SIGUSR1);
            if (rc != -EINVAL)
                fz_fail(a, "np_signal_notify on a channel of 8-byte elements = %d, want -EINVAL",
                        rc);
            np_signal_stop(tmp);
            np_chan_free(tmp);
        }
        return;
    }
    bool dead = kind >= 6 || !b;
    if (call == C_SIGNAL_STOP) {
        unsigned ri = fz_begin(a, C_SIGNAL_STOP, ch.id, 0);
        int rc = np_signal_stop(ch);
        fz_end(a, ri, C_SIGNAL_STOP, rc);
        if (dead ? rc != -EBADF : rc != 0 && rc != -EBADF)
            fz_fail(a, "np_signal_stop(%s) = %d", dead ? "a bad channel" : "a channel", rc);
        return;
    }
    int s = (int[]){ SIGUSR1, SIGUSR2, SIGWINCH, SIGURG, 0 }[fz_below(a, 5)];
    if (s == 0)
        s = SIGRTMIN + 2;
    bool bad_sig = fz_chance(a, 15);
    if (bad_sig)
        s = (int[]){ 0, -1, SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, 65, 1000, INT_MIN,
                     INT_MAX }[fz_below(a, 12)];
    unsigned ri = fz_begin(a, C_SIGNAL_NOTIFY, ch.id, s);
    int rc = np_signal_notify(ch, s);
    fz_end(a, ri, C_SIGNAL_NOTIFY, rc);
    bool ok = bad_sig ? rc == -EINVAL || (dead && rc == -EBADF)
            : dead ? rc == -EBADF
                   : rc == 0 || rc == -EBADF || rc == -EPIPE; /* closed by the end's sweep */
    if (!ok)
        fz_fail(a, "np_signal_notify(%s, %d) = %d (%s)", dead ? "a bad channel" : "a channel", s,
                rc, np_strerror(rc));
    if (!b)
        return;
    if (fz_chance(a, 50)) /* safe to raise whoever watches */
        raise((int[]){ SIGUSR1, SIGUSR2, SIGWINCH, SIGURG }[fz_below(a, 4)]);
    if (fz_chance(a, 50)) {
        int v = -7;
        np_chan sc = b->sig[fz_below(a, 2)];
        rc = np_chan_recv(sc, &v, np_now() + (int64_t)fz_below(a, 5 * NP_MILLISECOND));
        if (rc == 0 && !good_signal(v))
            fz_fail(a, "a signal channel delivered %d, not a signal it watches", v);
        else if (rc != 0 && rc != -ETIMEDOUT && rc != -EPIPE)
            fz_fail(a, "np_chan_recv on a signal channel = %d", rc);
    }
}

/* np_lookup_host: names from /etc/hosts and numbers (names that need DNS
 * only with --dns); every deadline is near, so a silent resolver cannot
 * hold an actor. */
static void op_lookup_host(fz_actor *a)
{
    static const char *const hosts[] = { "localhost", "127.0.0.1", "::1", "0.0.0.0", "::",
                                         "fe80::1%lo", "1.2.3", "", "[::1]", "127.0.0.1:80" };
    np_addr *out = (np_addr *)(a->abuf + 1024);
    char *h = a->abuf;
    const char *host;
    int k = (int)fz_below(a, 14);
    if (!fz_names && (k == 0 || k == 8 || k == 9 || k >= 12)) /* these go to the resolver */
        k = 1;
    bool numeric = false;
    if (k < 10) {
        host = hosts[k];
        numeric = k >= 1 && k <= 6;
    } else if (k == 10) {
        host = NULL;
    } else if (k == 11 || (k == 12 && !fz_dns)) { /* over 253 bytes */
        memset(h, 'a', 254);
        h[254] = 0;
        host = h;
    } else {
        host = fz_dns ? "no-such-host.invalid" : "localhost";
    }
    int max = fz_chance(a, 8) ? (int)(int[]){ 0, -1, INT_MIN }[fz_below(a, 3)]
                              : 1 + (int)fz_below(a, 8);
    bool past;
    int64_t d = fz_deadline(a, true, &past);
    memset(out, 0xa5, sizeof *out * 9);
    unsigned ri = fz_begin(a, C_LOOKUP_HOST, 0, max);
    int rc = np_lookup_host(host, out, max, d);
    fz_end(a, ri, C_LOOKUP_HOST, rc);
    char what[96];
    snprintf(what, sizeof what, "\"%.40s\", max %d", host ? host : "(null)", max);
    bool bad = !host || !host[0] || strlen(host) > 253 || max < 1;
    if (bad) {
        if (rc != -EINVAL && !(a->ctx == CTX_NORUNTIME && rc == -ESRCH))
            fz_fail(a, "np_lookup_host(%s) = %d, want -EINVAL", what, rc);
        return;
    }
    if (!fz_expect(a, C_LOOKUP_HOST, H_NONE, rc, true,
                   FZ_ERRS(ETIMEDOUT, EAGAIN, EINVAL, -NP_ENOHOST), what) || rc <= 0)
        return;
    /* With no runtime the header says -ESRCH; "localhost" answered from
     * /etc/hosts without blocking is plausible too. */
    if (a->ctx == CTX_NORUNTIME && !numeric && strcmp(host, "localhost") != 0)
        fz_fail(a, "np_lookup_host(%s) = %d with no runtime", what, rc);
    if (rc > max) {
        fz_fail(a, "np_lookup_host(%s) = %d, more than max", what, rc);
        return;
    }
    if (!all_a5((const unsigned char *)&out[max < 8 ? max : 8], sizeof *out) && max < 8)
        fz_fail(a, "np_lookup_host(%s) wrote past out[max]", what);
    for (int i = 0; i < rc; i++) {
        char t[128];
        int f = np_addr_format(&out[i], t, sizeof t);
        if (f != 0 || strlen(t) < 3 || strcmp(t + strlen(t) - 2, ":0") != 0)
            fz_fail(a, "np_lookup_host(%s): address %d formats as %d \"%s\", want port 0",
                    what, i, f, f ? "" : t);
    }
}

void fz_beyond_op(fz_actor *a, int call)
{
    switch (call) {
    case C_LOOKUP_HOST: op_lookup_host(a); break;
    case C_ADDR_PARSE: op_addr_parse(a); break;
    case C_ADDR_FORMAT: op_addr_format(a); break;
    case C_LISTEN_PACKET: op_listen_packet(a); break;
    case C_READ_FROM: op_read_from(a); break;
    case C_WRITE_TO: op_write_to(a); break;
    case C_WAIT_FD: op_wait_fd(a); break;
    case C_CONN_FROM_FD: op_conn_from_fd(a); break;
    default: op_signal(a, call); break;
    }
}

/* ---- no runtime ------------------------------------------------------------ */

/* A signal is delivered with no runtime too. */
static void noruntime_signals(fz_actor *a)
{
    np_chan ch;
    int rc = np_chan_make(&ch, sizeof(int), 2);
    if (rc != 0) {
        fz_fail(a, "no runtime: np_chan_make = %d", rc);
        return;
    }
    rc = np_signal_notify(ch, SIGUSR1);
    if (rc != 0)
        fz_fail(a, "no runtime: np_signal_notify = %d", rc);
    raise(SIGUSR1);
    for (int i = 0; i < 200 && np_chan_len(ch) < 1; i++) {
        struct timespec ts = { 0, 5 * 1000000 };
        nanosleep(&ts, NULL);
    }
    int v = 0;
    rc = np_chan_recv(ch, &v, 0);
    if (rc != 0 || v != SIGUSR1)
        fz_fail(a, "no runtime: a raised SIGUSR1 watched by a channel: recv = %d, value %d", rc, v);
    long before = atomic_load(&usr_count);
    if ((rc = np_signal_stop(ch)) != 0)
        fz_fail(a, "no runtime: np_signal_stop = %d", rc);
    raise(SIGUSR1);
    if (atomic_load(&usr_count) != before + 1 || np_chan_len(ch) != 0)
        fz_fail(a, "no runtime: after np_signal_stop, SIGUSR1 did not reach the program's "
                   "handler (or still reached the channel)");
    np_chan_free(ch);
    fz_check_dispositions(a, "no runtime, after np_signal_stop");
}

void fz_beyond_noruntime(fz_actor *a)
{
    if (!fz_skip[C_SIGNAL_NOTIFY] && !fz_skip[C_SIGNAL_STOP])
        noruntime_signals(a);
    /* handles need a runtime; addresses do not */
    np_conn c;
    int rc;
    int p[2];
    if (pipe2(p, O_CLOEXEC) == 0) {
        rc = np_conn_from_fd(&c, p[0]);
        if (rc != -ESRCH)
            fz_fail(a, "no runtime: np_conn_from_fd = %d, want -ESRCH", rc);
        if (rc == 0)
            np_close(c);
        else if (!fz_fd_open(p[0]))
            fz_fail(a, "no runtime: np_conn_from_fd closed the descriptor it refused");
        else
            close(p[0]);
        rc = np_wait_fd(p[1], NP_WRITABLE, 0);
        if (rc != -ESRCH)
            fz_fail(a, "no runtime: np_wait_fd = %d, want -ESRCH", rc);
        close(p[1]);
    }
    rc = np_listen_packet(&c, "udp", "127.0.0.1:0");
    if (rc != -ESRCH) {
        fz_fail(a, "no runtime: np_listen_packet = %d, want -ESRCH", rc);
        if (rc == 0)
            np_close(c);
    }
    np_addr ad;
    char t[64];
    if (np_addr_parse(&ad, "udp", "127.0.0.1:53") != 0 || np_addr_format(&ad, t, sizeof t) != 0 ||
        strcmp(t, "127.0.0.1:53") != 0)
        fz_fail(a, "no runtime: np_addr_parse/np_addr_format of 127.0.0.1:53 failed");
    for (int i = 0; i < 4; i++)
        fz_beyond_op(a, (int[]){ C_ADDR_PARSE, C_ADDR_FORMAT, C_READ_FROM, C_WRITE_TO }[i]);
}
