/* api_fuzz: random calls of the runtime and stream-socket functions on the
 * shared pool of handles (fuzz_pool.c), each result checked against the
 * call's allow-list; the dispatcher that picks the next call of an actor.
 * See fuzz.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "fuzz.h"

typedef fz_pick pick;

/* ---- arguments ------------------------------------------------------------- */

enum { B_OK, B_NULL, B_GUARD, B_HUGE };

typedef struct bufarg {
    void *p;
    size_t len;
    int kind;
} bufarg;

static bufarg pick_buf(fz_actor *a, bool for_read)
{
    static const size_t sizes[] = { 1, 2, 7, 64, 512, 1460, 4096, 16384, 65536, FZ_BUF };
    switch (fz_below(a, 16)) {
    case 0: return (bufarg){ NULL, 0, B_OK };
    case 1: return (bufarg){ a->buf, 0, B_OK };
    case 2: return (bufarg){ NULL, 1 + fz_below(a, 1 << 20), B_NULL };
    case 3: return (bufarg){ a->guard, FZ_GUARD + 1 + fz_below(a, 1 << 20), B_GUARD };
    case 4: { /* longer than SSIZE_MAX: write -EINVAL, read as SSIZE_MAX */
        static const size_t huge[] = { (size_t)SSIZE_MAX + 1, SIZE_MAX, SIZE_MAX - 1 };
        size_t len = fz_chance(a, 50) ? huge[fz_below(a, 3)]
                                      : ((size_t)SSIZE_MAX + 1) | (size_t)fz_rand(a);
        void *p = fz_chance(a, 40) ? NULL : a->guard;
        if (!for_read && fz_chance(a, 30))
            p = a->buf;
        return (bufarg){ p, len, B_HUGE };
    }
    case 5: return (bufarg){ a->guard, (size_t)SSIZE_MAX, B_GUARD };
    case 6: return (bufarg){ a->guard, 1 + fz_below(a, FZ_GUARD), B_OK };
    default: {
        size_t s = sizes[fz_below(a, sizeof sizes / sizeof sizes[0])];
        return (bufarg){ a->buf, 1 + fz_below(a, s), B_OK };
    }
    }
}

/* Addresses: (network, address) pairs for np_listen and np_dial. */
/* ---- the calls ------------------------------------------------------------- */

/* "1.2.3.4:80", "[::1]:80", a path, "@name" or "" (an unnamed Unix socket). */
static bool addr_text_ok(const char *s)
{
    if (s[0] == '/' || s[0] == '@' || s[0] == 0)
        return true;
    const char *c = strrchr(s, ':');
    if (!c || !c[1] || strlen(c + 1) > 5)
        return false;
    for (const char *p = c + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return atoi(c + 1) <= 65535;
}

/* The address calls: a canary after the length given catches overflow. */
static void op_addr(fz_actor *a, int call)
{
    int kind = call == C_LISTENER_ADDR ? K_LISTENER : K_CONN;
    pick h = fz_pick_handle(a, kind);
    static const size_t lens[] = { 0, 1, 2, 5, 8, 9, 15, 16, 22, 47, 64, 108, 128, 200 };
    size_t len = lens[fz_below(a, sizeof lens / sizeof lens[0])];
    char *buf = fz_chance(a, 8) ? NULL : (char *)a->buf;
    if (buf)
        memset(buf, 0xa5, len + 64);
    unsigned ri = fz_begin(a, call, h.id, (int64_t)len);
    int rc = call == C_LISTENER_ADDR ? np_listener_addr((np_listener){ h.id }, buf, len)
           : call == C_LOCAL_ADDR    ? np_local_addr((np_conn){ h.id }, buf, len)
                                     : np_remote_addr((np_conn){ h.id }, buf, len);
    fz_end(a, ri, call, rc);
    /* -EINVAL only for a NULL buffer; -ENOTCONN only for the peer's address */
    static const int e_remote[] = { EBADF, ENOSPC, ENOTCONN, 0, 0 };
    static const int e_local[] = { EBADF, ENOSPC, 0, 0 };
    static const int e_remote_null[] = { EBADF, ENOSPC, ENOTCONN, EINVAL, 0 };
    static const int e_local_null[] = { EBADF, ENOSPC, EINVAL, 0 };
    static const int e_foreign[] = { EBADF, ENOSPC, ENOTCONN, EINVAL, ENOTSOCK, EOPNOTSUPP, 0 };
    const int *allowed = h.ctype == CT_FOREIGN ? e_foreign
                       : call == C_REMOTE_ADDR ? (buf ? e_remote : e_remote_null)
                                               : (buf ? e_local : e_local_null);
    char what[48];
    snprintf(what, sizeof what, "%s, %zu", buf ? "buf" : "NULL", len);
    fz_expect(a, call, h.hclass, rc, false, allowed, what);
    if (!buf)
        return;
    for (size_t i = len; i < len + 64; i++)
        if ((unsigned char)buf[i] != 0xa5) {
            fz_fail(a, "%s(len %zu) wrote beyond the length, at byte %zu", fz_call_name[call],
                    len, i);
            break;
        }
    if (rc == 0) {
        if (len == 0 || strnlen(buf, len) >= len)
            fz_fail(a, "%s(len %zu) returned 0 without a terminated string", fz_call_name[call],
                    len);
        else if (!addr_text_ok(buf))
            fz_fail(a, "%s gave \"%s\"", fz_call_name[call], buf);
    }
}

static void op_deadline(fz_actor *a, int call)
{
    int kind = call == C_LISTENER_SET_DEADLINE ? K_LISTENER : K_CONN;
    pick h = fz_pick_handle(a, kind);
    int64_t d = fz_deadline(a, false, NULL);
    unsigned ri = fz_begin(a, call, h.id, d);
    int rc = call == C_LISTENER_SET_DEADLINE ? np_listener_set_deadline((np_listener){ h.id }, d)
           : call == C_SET_DEADLINE          ? np_set_deadline((np_conn){ h.id }, d)
           : call == C_SET_READ_DEADLINE     ? np_set_read_deadline((np_conn){ h.id }, d)
                                             : np_set_write_deadline((np_conn){ h.id }, d);
    fz_end(a, ri, call, rc);
    char what[32];
    snprintf(what, sizeof what, "%" PRId64, d);
    fz_expect(a, call, h.hclass, rc, false, FZ_ERRS(EBADF), what);
}

/* Before a blocking call on a pool handle, usually a near deadline, so the
 * actor moves on (another actor may change it: the end's sweep still wakes
 * every call). */
static void maybe_deadline(fz_actor *a, pick h, int kind, int mode)
{
    if (h.hclass != H_LIVE || fz_chance(a, 20))
        return;
    int64_t d = np_now() + (int64_t)fz_below(a, 20 * NP_MILLISECOND);
    if (fz_chance(a, 10))
        d = fz_deadline(a, true, NULL);
    if (kind == K_LISTENER)
        np_listener_set_deadline((np_listener){ h.id }, d);
    else if (mode == 0)
        np_set_read_deadline((np_conn){ h.id }, d);
    else
        np_set_write_deadline((np_conn){ h.id }, d);
}

static void op_close(fz_actor *a, int call)
{
    int kind = call == C_LISTENER_CLOSE ? K_LISTENER : K_CONN;
    pick h = fz_pick_handle(a, kind);
    unsigned ri = fz_begin(a, call, h.id, 0);
    int rc = call == C_LISTENER_CLOSE ? np_listener_close((np_listener){ h.id })
           : call == C_CLOSE          ? np_close((np_conn){ h.id })
                                      : np_close_write((np_conn){ h.id });
    fz_end(a, ri, call, rc);
    fz_expect(a, call, h.hclass, rc, false,
              call != C_CLOSE_WRITE ? FZ_ERRS(EBADF)
              : h.ctype == CT_FOREIGN ? FZ_ERRS(EBADF, ENOTCONN, ENOTSOCK, EINVAL, EOPNOTSUPP)
                                      : FZ_ERRS(EBADF, ENOTCONN), "");
    if (rc == 0 && call != C_CLOSE_WRITE && a->run) {
        fz_check_unlinked(a, a->run, h.path);
        fz_pool_mark_closed(a->run, h.slot, h.id);
    }
}

static void op_conn_fd(fz_actor *a)
{
    pick h = fz_pick_handle(a, K_CONN);
    unsigned ri = fz_begin(a, C_CONN_FD, h.id, 0);
    int rc = np_conn_fd((np_conn){ h.id });
    fz_end(a, ri, C_CONN_FD, rc);
    if (fz_expect(a, C_CONN_FD, h.hclass, rc, false, FZ_ERRS(EBADF), "") && rc >= 0 && rc < 3)
        fz_fail(a, "np_conn_fd gave %d, one of the standard descriptors", rc);
}

static void op_read(fz_actor *a)
{
    pick h = fz_pick_handle(a, K_CONN);
    bufarg b = pick_buf(a, true);
    maybe_deadline(a, h, K_CONN, 0);
    unsigned ri = fz_begin(a, C_READ, h.id, (int64_t)b.len);
    ssize_t rc = np_read((np_conn){ h.id }, b.p, b.len);
    fz_end(a, ri, C_READ, rc);
    /* datagrams: an ICMP error comes back as -ECONNREFUSED; adopted
     * descriptors: read(2)'s own (an eventfd wants 8 bytes: -EINVAL) */
    static const int e_ok[] = { EBADF, ECANCELED, ETIMEDOUT, ECONNRESET, 0, 0, 0, 0 };
    static const int e_bad[] = { EBADF, ECANCELED, ETIMEDOUT, ECONNRESET, EFAULT, EINVAL, 0, 0 };
    static const int e_dg_ok[] = { EBADF, ECANCELED, ETIMEDOUT, ECONNRESET, ECONNREFUSED, 0 };
    static const int e_dg_bad[] = { EBADF, ECANCELED, ETIMEDOUT, ECONNRESET, ECONNREFUSED,
                                    EFAULT, EINVAL, 0 };
    static const int e_fo[] = { EBADF, ECANCELED, ETIMEDOUT, ECONNRESET, EFAULT, EINVAL, EIO, 0 };
    const int *allowed = h.ctype == CT_FOREIGN ? e_fo
                       : h.ctype != CT_STREAM  ? (b.kind == B_OK ? e_dg_ok : e_dg_bad)
                                               : (b.kind == B_OK ? e_ok : e_bad);
    char what[64];
    snprintf(what, sizeof what, "%s, %zu; %s", b.p ? "buf" : "NULL", b.len, fz_ctype_name(h));
    if (!fz_expect(a, C_READ, h.hclass, rc, true, allowed, what) || rc < 0)
        return;
    size_t room = b.kind == B_OK ? b.len : b.kind == B_NULL || !b.p ? 0
                : b.p == a->guard ? FZ_GUARD : FZ_BUF;
    if ((size_t)rc > room || (b.len == 0 && rc != 0))
        fz_fail(a, "np_read(%s) returned %zd, more than the %zu bytes the buffer has", what, rc,
                room);
}

static void op_write(fz_actor *a)
{
    pick h = fz_pick_handle(a, K_CONN);
    bufarg b = pick_buf(a, false);
    maybe_deadline(a, h, K_CONN, 1);
    unsigned ri = fz_begin(a, C_WRITE, h.id, (int64_t)b.len);
    ssize_t rc = np_write((np_conn){ h.id }, b.p, b.len);
    fz_end(a, ri, C_WRITE, rc);
    char what[64];
    snprintf(what, sizeof what, "%s, %zu; %s", b.p ? "buf" : "NULL", b.len, fz_ctype_name(h));
    if (b.kind == B_HUGE) { /* -EINVAL, unless the handle's state is found wrong first */
        bool ok = rc == -EINVAL || rc == -EBADF ||
                  (h.hclass == H_LIVE && (rc == -ECANCELED || rc == -ETIMEDOUT)) ||
                  (a->ctx != CTX_TASK && rc == -EPERM) ||
                  ((a->ctx == CTX_NORUNTIME || a->ctx == CTX_ANY) && rc == -ESRCH);
        if (!ok)
            fz_fail(a, "np_write(%s) with a length over SSIZE_MAX = %zd (%s), want -EINVAL", what,
                    rc, rc < 0 ? np_strerror((int)rc) : "bytes");
        return;
    }
    static const int e_ok[] = { EBADF, ECANCELED, ETIMEDOUT, EPIPE, ECONNRESET, ENOBUFS, 0, 0, 0 };
    static const int e_bad[] = { EBADF, ECANCELED, ETIMEDOUT, EPIPE, ECONNRESET, ENOBUFS, EFAULT,
                                 EINVAL, 0 };
    /* datagrams: over the size limit, an ICMP error, no peer (unconnected) */
    static const int e_dg[] = { EBADF, ECANCELED, ETIMEDOUT, EPIPE, ECONNRESET, ENOBUFS, EFAULT,
                                EINVAL, EMSGSIZE, ECONNREFUSED, EDESTADDRREQ, ENOTCONN, 0 };
    static const int e_fo[] = { EBADF, ECANCELED, ETIMEDOUT, EPIPE, ECONNRESET, EFAULT, EINVAL,
                                ENOSPC, EIO, 0 };
    const int *allowed = h.ctype == CT_FOREIGN ? e_fo : h.ctype != CT_STREAM ? e_dg
                       : b.kind == B_OK ? e_ok : e_bad;
    if (!fz_expect(a, C_WRITE, h.hclass, rc, true, allowed, what) || rc < 0)
        return;
    size_t room = b.kind == B_OK ? b.len : b.kind == B_NULL ? 0 : FZ_GUARD;
    if ((size_t)rc > room || (size_t)rc > b.len || (rc == 0 && b.len != 0))
        fz_fail(a, "np_write(%s) returned %zd (the buffer has %zu bytes)", what, rc, room);
    else if ((h.ctype == CT_DGRAM || h.ctype == CT_DGRAM_UNBOUND) && (size_t)rc != b.len)
        fz_fail(a, "np_write(%s) on a datagram socket returned %zd: a datagram is never "
                   "partial", what, rc);
}

static void op_wait_readable(fz_actor *a)
{
    pick h = fz_pick_handle(a, K_CONN);
    maybe_deadline(a, h, K_CONN, 0);
    unsigned ri = fz_begin(a, C_WAIT_READABLE, h.id, 0);
    int rc = np_wait_readable((np_conn){ h.id });
    fz_end(a, ri, C_WAIT_READABLE, rc);
    fz_expect(a, C_WAIT_READABLE, h.hclass, rc, true, FZ_ERRS(EBADF, ECANCELED, ETIMEDOUT),
              fz_ctype_name(h));
    if (rc > 0)
        fz_fail(a, "np_wait_readable returned %d", rc);
}

const int fz_listen_errs[] = { EINVAL, EADDRINUSE, EACCES, EAFNOSUPPORT, EMFILE, ENFILE,
                                   ENOMEM, ENOBUFS, ENOENT, EADDRNOTAVAIL, ENAMETOOLONG, ENOTDIR,
                                   EAGAIN, EPROTONOSUPPORT, EROFS, ENODEV, -NP_ENOHOST, 0 };

static const int dial_errs[] = { EINVAL, ECONNREFUSED, ETIMEDOUT, ENETUNREACH, EHOSTUNREACH,
                                 EADDRNOTAVAIL, EAFNOSUPPORT, ENOENT, EACCES, EMFILE, ENFILE,
                                 ENOMEM, ENOBUFS, ECONNRESET, EAGAIN, ENOTDIR, ENAMETOOLONG,
                                 EPROTOTYPE, ENETDOWN, EPROTONOSUPPORT, ENODEV, -NP_ENOHOST, 0 };

static void op_listen(fz_actor *a, bool reuse)
{
    const char *net, *addr;
    char netbuf[8];
    int flags = fz_pick_addr(a, true, false, &net, &addr, netbuf);
    int rp = reuse ? (int)(fz_below(a, 3) == 2 ? fz_rand(a) : fz_below(a, 2)) : 0;
    np_listener l = { 12345 };
    bool null_out = fz_chance(a, 4);
    int call = reuse ? C_LISTEN_REUSEPORT : C_LISTEN;
    unsigned ri = fz_begin(a, call, 0, rp);
    int rc = reuse ? np_listen_reuseport(null_out ? NULL : &l, net, addr, rp)
                   : np_listen(null_out ? NULL : &l, net, addr);
    fz_end(a, ri, call, rc);
    char what[160];
    snprintf(what, sizeof what, "%s, \"%s\", \"%.80s\"%s", null_out ? "NULL" : "&l",
             net ? net : "(null)", addr ? addr : "(null)", reuse ? ", reuse" : "");
    fz_expect(a, call, H_NONE, rc, false, fz_listen_errs, what);
    if (rc != 0)
        return;
    if (null_out || a->ctx == CTX_NORUNTIME) {
        fz_fail(a, "%s(%s) succeeded%s", fz_call_name[call], what,
                null_out ? " with a NULL out" : " with no runtime running");
        return;
    }
    if (l.id == 0) {
        fz_fail(a, "%s(%s) succeeded with handle id 0", fz_call_name[call], what);
        return;
    }
    int path = -1;
    if (flags & A_UNIXFILE || (!strcmp(net, "unix") && addr[0] != '@'))
        path = fz_path_add(a->run, addr);
    char text[128];
    if (np_listener_addr(l, text, sizeof text) == 0 && a->run)
        fz_book_add(a->run, net, text);
    if (!a->run) { /* the stray thread: no pool */
        np_listener_close(l);
        return;
    }
    int slot = fz_pool_put(a, K_LISTENER, l.id, path, CT_STREAM);
    if (slot >= 0 && a->ctx == CTX_TASK && fz_chance(a, 40))
        fz_start_acceptor(a, slot);
}

void fz_got_conn(fz_actor *a, uint64_t id, int ctype, int path)
{
    int slot = fz_pool_put(a, K_CONN, id, path, ctype);
    if (slot >= 0 && fz_chance(a, 35) && a->ctx != CTX_NORUNTIME && ctype == CT_STREAM)
        fz_start_echo(a, id);
}

static void op_dial(fz_actor *a)
{
    const char *net, *addr;
    char netbuf[8];
    int flags = fz_pick_addr(a, false, false, &net, &addr, netbuf);
    bool past;
    int64_t d = fz_deadline(a, (flags & A_BLACKHOLE) != 0, &past);
    np_conn c = { 12345 };
    bool null_out = fz_chance(a, 3);
    unsigned ri = fz_begin(a, C_DIAL, 0, d);
    int rc = np_dial(null_out ? NULL : &c, net, addr, d);
    fz_end(a, ri, C_DIAL, rc);
    char what[160];
    snprintf(what, sizeof what, "%s, \"%s\", \"%.80s\", %" PRId64, null_out ? "NULL" : "&c",
             net ? net : "(null)", addr ? addr : "(null)", d);
    fz_expect(a, C_DIAL, H_NONE, rc, true, dial_errs, what);
    if (rc != 0)
        return;
    if (null_out || a->ctx == CTX_NORUNTIME || past || c.id == 0) {
        fz_fail(a, "np_dial(%s) succeeded%s", what,
                null_out ? " with a NULL out" : past ? " with a deadline already past"
                : c.id == 0 ? " with handle id 0" : " with no runtime running");
        if (c.id && !null_out)
            np_close(c);
        return;
    }
    bool dgram = net && (!strncmp(net, "udp", 3) || !strcmp(net, "unixgram"));
    fz_got_conn(a, c.id, dgram ? CT_DGRAM : CT_STREAM, -1);
}

static void op_accept(fz_actor *a)
{
    pick h = fz_pick_handle(a, K_LISTENER);
    maybe_deadline(a, h, K_LISTENER, 0);
    np_conn c = { 12345 };
    bool null_out = fz_chance(a, 4);
    unsigned ri = fz_begin(a, C_ACCEPT, h.id, 0);
    int rc = np_accept((np_listener){ h.id }, null_out ? NULL : &c);
    fz_end(a, ri, C_ACCEPT, rc);
    const int *allowed = null_out
        ? FZ_ERRS(EINVAL, EBADF, ECANCELED, ETIMEDOUT, EMFILE, ENFILE, ENOMEM, ENOBUFS, EPROTO)
        : FZ_ERRS(EBADF, ECANCELED, ETIMEDOUT, EMFILE, ENFILE, ENOMEM, ENOBUFS, EPROTO);
    fz_expect(a, C_ACCEPT, h.hclass, rc, true, allowed, null_out ? "NULL" : "&c");
    if (rc != 0)
        return;
    if (null_out || c.id == 0) {
        fz_fail(a, "np_accept succeeded with %s", null_out ? "a NULL out" : "handle id 0");
        return;
    }
    fz_got_conn(a, c.id, CT_STREAM, -1);
}

static void trivial_task(void *p)
{
    (void)p;
}

static void op_go(fz_actor *a)
{
    if (a->run && a->ctx != CTX_NORUNTIME && fz_chance(a, 70) &&
        atomic_load(&a->run->spawned) < 48 && !atomic_load(&a->run->stop)) {
        fz_spawn_mini(a);
        return;
    }
    bool null_fn = fz_chance(a, 50);
    unsigned ri = fz_begin(a, C_GO, 0, null_fn);
    int rc = np_go(null_fn ? NULL : trivial_task, NULL);
    fz_end(a, ri, C_GO, rc);
    fz_expect(a, C_GO, H_NONE, rc, false, null_fn ? FZ_ERRS(EINVAL) : FZ_ERRS(ENOMEM),
              null_fn ? "NULL" : "fn");
    if (rc == 0 && (null_fn || a->ctx == CTX_NORUNTIME))
        fz_fail(a, "np_go(%s) succeeded%s", null_fn ? "NULL" : "fn",
                a->ctx == CTX_NORUNTIME ? " with no runtime running" : "");
}

static void op_sleep(fz_actor *a, bool until)
{
    int64_t v;
    if (until) {
        v = fz_deadline(a, true, NULL);
    } else {
        static const int64_t fixed[] = { 0, -1, INT64_MIN, 1, 1000 };
        v = fz_chance(a, 50) ? fixed[fz_below(a, 5)] : (int64_t)fz_below(a, 3 * NP_MILLISECOND);
    }
    int64_t t0 = np_now();
    unsigned ri = fz_begin(a, until ? C_SLEEP_UNTIL : C_SLEEP, 0, v);
    int rc = until ? np_sleep_until(v) : np_sleep(v);
    fz_end(a, ri, until ? C_SLEEP_UNTIL : C_SLEEP, rc);
    int64_t t1 = np_now();
    char what[32];
    snprintf(what, sizeof what, "%" PRId64, v);
    fz_expect(a, until ? C_SLEEP_UNTIL : C_SLEEP, H_NONE, rc, true, FZ_ERRS(0), what);
    if (rc == 0 && a->ctx == CTX_NORUNTIME && (until ? v > t0 : v > 0))
        fz_fail(a, "%s(%s) = 0 with no runtime running, want -ESRCH",
                until ? "np_sleep_until" : "np_sleep", what);
    if (rc == 0 && (until ? t1 < v : (v > 0 && t1 - t0 < v)))
        fz_fail(a, "%s(%s) returned %" PRId64 " ns early", until ? "np_sleep_until" : "np_sleep",
                what, until ? v - t1 : v - (t1 - t0));
}

static void op_misc(fz_actor *a, int call)
{
    unsigned ri;
    switch (call) {
    case C_NOW: {
        ri = fz_begin(a, C_NOW, 0, 0);
        int64_t t = np_now();
        fz_end(a, ri, C_NOW, 0);
        if (t <= 0 || t < a->last_now)
            fz_fail(a, "np_now went from %" PRId64 " to %" PRId64, a->last_now, t);
        a->last_now = t;
        break;
    }
    case C_STRERROR: {
        static const int fixed[] = { 0, 1, -1, INT_MIN, INT_MAX, -INT_MAX, 4095, -4095, 4096,
                                     -EBADF, ETIMEDOUT, -ECANCELED, 133, -134, 1000000 };
        int e = fz_chance(a, 50) ? fixed[fz_below(a, sizeof fixed / sizeof fixed[0])]
                                 : (int)(uint32_t)fz_rand(a);
        ri = fz_begin(a, C_STRERROR, 0, e);
        const char *s = np_strerror(e);
        fz_end(a, ri, C_STRERROR, 0);
        if (!s || !s[0] || strlen(s) > 200)
            fz_fail(a, "np_strerror(%d) gave %s", e, s ? "an empty or overlong text" : "NULL");
        break;
    }
    case C_POLLER_NAME: {
        ri = fz_begin(a, C_POLLER_NAME, 0, 0);
        const char *s = np_poller_name();
        fz_end(a, ri, C_POLLER_NAME, 0);
        if (!s || strcmp(s, fz_poller) != 0)
            fz_fail(a, "np_poller_name changed: %s, was %s", s ? s : "NULL", fz_poller);
        break;
    }
    case C_YIELD:
        ri = fz_begin(a, C_YIELD, 0, 0);
        np_yield();
        fz_end(a, ri, C_YIELD, 0);
        break;
    case C_STATS: { /* from anywhere; the figures stay sane */
        np_stats st;
        bool null = fz_chance(a, 10);
        ri = fz_begin(a, C_STATS, 0, null);
        int rc = np_stats_get(null ? NULL : &st);
        fz_end(a, ri, C_STATS, rc);
        if (null) {
            if (rc != -EINVAL)
                fz_fail(a, "np_stats_get(NULL) = %d, want -EINVAL", rc);
        } else if (fz_expect(a, C_STATS, H_NONE, rc, false, FZ_ERRS(0), "&st") && rc == 0 &&
                   (st.tasks < 0 || st.workers < 1 || st.threads < st.workers || st.stalls < 0 ||
                    st.handoffs > st.stalls + st.workers || st.tasks_started < st.tasks)) {
            fz_fail(a, "np_stats_get: tasks %lld started %lld workers %d threads %d stalls %lld "
                    "handoffs %lld", (long long)st.tasks, (long long)st.tasks_started, st.workers,
                    st.threads, (long long)st.stalls, (long long)st.handoffs);
        }
        break;
    }
    case C_DUMP: { /* to /dev/null, or to a descriptor that is not open */
        int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        bool bad = fz_chance(a, 20) || devnull < 0;
        int fd = bad ? 100000 + (int)fz_below(a, 1000) : devnull;
        ri = fz_begin(a, C_DUMP, 0, fd);
        int rc = np_dump(fd);
        fz_end(a, ri, C_DUMP, rc);
        if (devnull >= 0)
            close(devnull);
        fz_expect(a, C_DUMP, H_NONE, rc, false, bad ? FZ_ERRS(EBADF) : FZ_ERRS(0), "fd");
        break;
    }
    case C_BLOCK: /* keeps the thread, as careless code does: the monitor's business */
        ri = fz_begin(a, C_BLOCK, 0, 0);
        usleep((useconds_t)fz_below(a, 12000));
        fz_end(a, ri, C_BLOCK, 0);
        break;
    case C_RUN: { /* while one runs: -EBUSY */
        np_config c = { .workers = (int)fz_below(a, 3) };
        ri = fz_begin(a, C_RUN, 0, c.workers);
        int rc = np_run(fz_chance(a, 50) ? &c : NULL, trivial_task, NULL);
        fz_end(a, ri, C_RUN, rc);
        if (a->ctx == CTX_NORUNTIME ? rc != 0 : rc != -EBUSY)
            fz_fail(a, "np_run %s = %d (%s)",
                    a->ctx == CTX_NORUNTIME ? "with none running" : "while one runs", rc,
                    np_strerror(rc));
        break;
    }
    }
}

void fz_random_op(fz_actor *a)
{
    /* weights: the handle calls most */
    static const unsigned char w[] = {
        [C_NOW] = 2, [C_STRERROR] = 2, [C_POLLER_NAME] = 1, [C_RUN] = 1, [C_GO] = 3,
        [C_YIELD] = 3, [C_SLEEP] = 2, [C_SLEEP_UNTIL] = 2, [C_LISTEN] = 4,
        [C_LISTEN_REUSEPORT] = 2, [C_LISTENER_ADDR] = 3, [C_ACCEPT] = 4,
        [C_LISTENER_SET_DEADLINE] = 3, [C_LISTENER_CLOSE] = 2, [C_DIAL] = 9, [C_READ] = 10,
        [C_WRITE] = 10, [C_WAIT_READABLE] = 4, [C_SET_DEADLINE] = 3, [C_SET_READ_DEADLINE] = 3,
        [C_SET_WRITE_DEADLINE] = 3, [C_CLOSE] = 3, [C_CLOSE_WRITE] = 2, [C_LOCAL_ADDR] = 2,
        [C_REMOTE_ADDR] = 2, [C_CONN_FD] = 2, [C_OFFLOAD] = 2, [C_MUTEX_LOCK] = 2,
        [C_MUTEX_LOCK_UNTIL] = 2, [C_MUTEX_TRYLOCK] = 2, [C_MUTEX_UNLOCK] = 1, [C_COND_WAIT] = 2,
        [C_COND_SIGNAL] = 1, [C_COND_BROADCAST] = 1, [C_WG_ADD] = 1, [C_WG_DONE] = 1,
        [C_WG_WAIT] = 1, [C_CHAN_MAKE] = 2, [C_CHAN_SEND] = 4, [C_CHAN_RECV] = 4,
        [C_CHAN_CLOSE] = 1, [C_CHAN_FREE] = 1, [C_CHAN_LEN] = 1, [C_CHAN_CAP] = 1, [C_SELECT] = 3,
        [C_ADDR_PARSE] = 2, [C_ADDR_FORMAT] = 2, [C_LISTEN_PACKET] = 2, [C_READ_FROM] = 3,
        [C_WRITE_TO] = 3, [C_WAIT_FD] = 3, [C_CONN_FROM_FD] = 2, [C_SIGNAL_NOTIFY] = 2,
        [C_SIGNAL_STOP] = 1, [C_LOOKUP_HOST] = 2, [C_STATS] = 1, [C_DUMP] = 1, [C_BLOCK] = 1,
        [C_SCENARIO] = 9,
    };
    unsigned total = 0;
    for (int i = 0; i <= C_SCENARIO; i++)
        total += w[i];
    int call;
    do {
        unsigned r = (unsigned)fz_below(a, total);
        call = 0;
        while (r >= w[call])
            r -= w[call++];
    } while (fz_skip[call]);
    switch (call) {
    case C_LISTENER_ADDR: case C_LOCAL_ADDR: case C_REMOTE_ADDR: op_addr(a, call); break;
    case C_LISTENER_SET_DEADLINE: case C_SET_DEADLINE: case C_SET_READ_DEADLINE:
    case C_SET_WRITE_DEADLINE: op_deadline(a, call); break;
    case C_LISTENER_CLOSE: case C_CLOSE: case C_CLOSE_WRITE: op_close(a, call); break;
    case C_CONN_FD: op_conn_fd(a); break;
    case C_READ: op_read(a); break;
    case C_WRITE: op_write(a); break;
    case C_WAIT_READABLE: op_wait_readable(a); break;
    case C_LISTEN: op_listen(a, false); break;
    case C_LISTEN_REUSEPORT: op_listen(a, true); break;
    case C_DIAL: op_dial(a); break;
    case C_ACCEPT: op_accept(a); break;
    case C_GO: op_go(a); break;
    case C_SLEEP: op_sleep(a, false); break;
    case C_SLEEP_UNTIL: op_sleep(a, true); break;
    case C_SCENARIO:
        if ((a->ctx == CTX_TASK || a->ctx == CTX_THREAD) && a->run && a->kind != 'O' &&
            !atomic_load(&a->run->stop)) {
            int k = (int)fz_below(a, 100);
            if (k < 45)
                fz_scenario(a);
            else if (k < 75)
                fz_sync_scenario(a);
            else
                fz_beyond_scenario(a);
        }
        break;
    case C_NOW: case C_STRERROR: case C_POLLER_NAME: case C_YIELD: case C_RUN:
    case C_STATS: case C_DUMP: case C_BLOCK:
        op_misc(a, call);
        break;
    case C_ADDR_PARSE: case C_ADDR_FORMAT: case C_LISTEN_PACKET: case C_READ_FROM:
    case C_WRITE_TO: case C_WAIT_FD: case C_CONN_FROM_FD: case C_SIGNAL_NOTIFY:
    case C_SIGNAL_STOP: case C_LOOKUP_HOST:
        fz_beyond_op(a, call);
        break;
    default: fz_sync_op(a, call); break;
    }
}

void fz_actor_loop(fz_actor *a)
{
    fz_run *r = a->run;
    for (int n = 0; n < 20000 && !atomic_load(&r->stop) && np_now() < r->end_ns; n++) {
        fz_random_op(a);
        if (a->ctx == CTX_THREAD) /* most of a thread's calls return at once: pace them */
            fz_sleep_ms(a, fz_chance(a, 70) ? 0 : 1);
    }
}

void fz_noruntime_ops(fz_actor *a, int n)
{
    for (int i = 0; i < n; i++)
        fz_random_op(a);
}

/* The thread spanning a run's start and end: calls whose results do not
 * depend on whether the runtime runs, and listen/close races with the end. */
void fz_stray_op(fz_actor *a)
{
    switch (fz_below(a, 8)) {
    case 0: op_misc(a, C_NOW); break;
    case 1: op_misc(a, C_STRERROR); break;
    case 2: op_close(a, fz_chance(a, 50) ? C_CLOSE : C_LISTENER_CLOSE); break;
    case 3: op_deadline(a, C_SET_READ_DEADLINE); break;
    case 4: op_addr(a, C_LOCAL_ADDR); break;
    case 5: op_read(a); break;
    case 6: { /* a handle made as the run starts or ends: closed by us or by np_run */
        np_listener l;
        char path[108];
        bool unix_path = fz_chance(a, 50);
        fz_unix_path(NULL, path, sizeof path, "X");
        unsigned ri = fz_begin(a, C_LISTEN, 0, 0);
        int rc = np_listen(&l, unix_path ? "unix" : "tcp4", unix_path ? path : "127.0.0.1:0");
        fz_end(a, ri, C_LISTEN, rc);
        if (rc == -ESRCH)
            break;
        if (rc != 0) {
            fz_fail(a, "np_listen from a thread spanning np_run: %d (%s)", rc, np_strerror(rc));
            break;
        }
        fz_sleep_ms(a, (int)fz_below(a, 3));
        ri = fz_begin(a, C_LISTENER_CLOSE, l.id, 0);
        rc = np_listener_close(l);
        fz_end(a, ri, C_LISTENER_CLOSE, rc);
        if (rc != 0 && rc != -EBADF) /* -EBADF: np_run closed it at its end */
            fz_fail(a, "np_listener_close from a thread spanning np_run: %d (%s)", rc,
                    np_strerror(rc));
        if (unix_path && access(path, F_OK) == 0) {
            fz_fail(a, "the Unix listener file %s is still there after %s", path,
                    rc == 0 ? "np_listener_close returned 0" : "np_run closed it");
            unlink(path);
        }
        break;
    }
    default: op_misc(a, C_POLLER_NAME); break;
    }
}
