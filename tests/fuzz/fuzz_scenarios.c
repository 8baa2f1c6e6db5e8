/* api_fuzz: checked scenarios. Each runs in a fuzzing task on connections
 * of its own (no other actor knows their handles), so results are exact:
 * content, end of stream, -ECANCELED for a close racing a blocked call,
 * -ETIMEDOUT no earlier than the deadline, -EADDRINUSE, -ECONNREFUSED, ...
 * Every blocking call has a deadline (10 s) or a closer, so a library that
 * misses a wake-up fails a check instead of hanging the run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"
#include "fuzz_net_sc.h"

unsigned char nsc_pat(size_t i, unsigned k)
{
    return (unsigned char)(((uint32_t)(i + k) * 0x9E3779B1u) >> 24);
}

const char *nsc_fam_name(int f)
{
    return (const char *[]){ "tcp4", "tcp6", "unix", "unix-abstract", "tcp" }[f];
}

/* ---- pairs ------------------------------------------------------------------ */

/* 0: made; 1: skip (a family this host lacks, or out of descriptors while
 * the EMFILE scenario runs); -1: failed (reported). */
int nsc_mkpair(fz_actor *a, pair *p, int fam)
{
    memset(p, 0, sizeof *p);
    if (fam == 1 && !fz_ipv6)
        fam = 0;
    p->fam = fam;
    const char *addr;
    switch (fam) {
    case 0: p->net = "tcp4"; addr = "127.0.0.1:0"; break;
    case 1: p->net = "tcp6"; addr = "[::1]:0"; break;
    case 4: p->net = "tcp"; addr = "127.0.0.1:0"; break;
    default:
        p->net = "unix";
        fz_unix_path(a->run, p->path, sizeof p->path, fam == 2 ? "P" : "@P");
        addr = p->path;
        break;
    }
    int rc = np_listen(&p->l, p->net, addr);
    if (rc == -EMFILE || rc == -ENFILE)
        return 1;
    if (rc != 0) {
        fz_fail(a, "scenario: np_listen(%s, %s) = %d (%s)", p->net, addr, rc, np_strerror(rc));
        return -1;
    }
    if (fam == 2)
        fz_path_add(a->run, p->path);
    rc = np_listener_addr(p->l, p->laddr, sizeof p->laddr);
    if (rc != 0) {
        fz_fail(a, "scenario: np_listener_addr = %d (%s)", rc, np_strerror(rc));
        goto fail_l;
    }
    if (fam == 2 || fam == 3 ? strcmp(p->laddr, p->path) != 0
                 : strncmp(p->laddr, fam == 1 ? "[::1]:" : "127.0.0.1:", fam == 1 ? 6 : 10) ||
                       atoi(strrchr(p->laddr, ':') + 1) <= 0) {
        fz_fail(a, "scenario: %s listener on %s has address \"%s\"", p->net, addr, p->laddr);
        goto fail_l;
    }
    rc = np_dial(&p->c, p->net, p->laddr, np_now() + SAFETY);
    if (rc == -EMFILE || rc == -ENFILE) {
        np_listener_close(p->l);
        return 1;
    }
    if (rc != 0) {
        fz_fail(a, "scenario: np_dial(%s, %s) to our listener = %d (%s)", p->net, p->laddr, rc,
                np_strerror(rc));
        goto fail_l;
    }
    np_listener_set_deadline(p->l, np_now() + SAFETY);
    rc = np_accept(p->l, &p->s);
    if (rc == -EMFILE || rc == -ENFILE) {
        np_close(p->c);
        np_listener_close(p->l);
        return 1;
    }
    if (rc != 0) {
        fz_fail(a, "scenario: np_accept after a dial = %d (%s)", rc, np_strerror(rc));
        np_close(p->c);
        goto fail_l;
    }
    np_listener_set_deadline(p->l, 0);
    np_set_deadline(p->c, np_now() + SAFETY);
    np_set_deadline(p->s, np_now() + SAFETY);
    /* The four addresses agree. */
    char cl[128], cr[128], sl[128], sr[128];
    if (np_local_addr(p->c, cl, sizeof cl) || np_remote_addr(p->c, cr, sizeof cr) ||
        np_local_addr(p->s, sl, sizeof sl) || np_remote_addr(p->s, sr, sizeof sr)) {
        fz_fail(a, "scenario: an address call failed on a fresh %s pair", p->net);
    } else if (fam == 2 || fam == 3 ? strcmp(cr, p->laddr) || strcmp(sl, p->laddr) || cl[0] || sr[0]
                        : strcmp(cr, p->laddr) || strcmp(sl, p->laddr) || strcmp(cl, sr)) {
        fz_fail(a, "scenario: %s pair addresses disagree: listener %s, client %s -> %s, "
                   "server %s <- %s", p->net, p->laddr, cl, cr, sl, sr);
    }
    return 0;
fail_l:
    np_listener_close(p->l);
    return -1;
}

/* Closes what is left; each close must be 0 (want & 1: c, 2: s, 4: l) or
 * -EBADF for what the scenario closed itself. */
void nsc_unpair(fz_actor *a, pair *p)
{
    int r1 = np_close(p->c), r2 = np_close(p->s), r3 = np_listener_close(p->l);
    if ((r1 && r1 != -EBADF) || (r2 && r2 != -EBADF) || (r3 && r3 != -EBADF))
        fz_fail(a, "scenario: closing the pair: %d %d %d", r1, r2, r3);
    if (p->fam == 2 && access(p->path, F_OK) == 0)
        fz_fail(a, "scenario: Unix listener file %s remains after its close", p->path);
}

/* Every call on a closed connection: -EBADF. */
void nsc_check_dead_conn(fz_actor *a, np_conn c, const char *why)
{
    char b[64];
    long long r[9] = {
        np_read(c, b, sizeof b), np_write(c, "x", 1), np_wait_readable(c), np_close(c),
        np_close_write(c), np_set_deadline(c, 0), np_set_read_deadline(c, 1),
        np_local_addr(c, b, sizeof b), np_conn_fd(c),
    };
    for (int i = 0; i < 9; i++)
        if (r[i] != -EBADF) {
            fz_fail(a, "scenario: call %d of 9 on a connection %s = %lld, want -EBADF", i, why,
                    r[i]);
            return;
        }
}

void nsc_check_dead_listener(fz_actor *a, np_listener l)
{
    char b[64];
    np_conn c;
    long long r[4] = { np_accept(l, &c), np_listener_close(l), np_listener_set_deadline(l, 0),
                       np_listener_addr(l, b, sizeof b) };
    for (int i = 0; i < 4; i++)
        if (r[i] != -EBADF) {
            fz_fail(a, "scenario: call %d of 4 on a closed listener = %lld, want -EBADF", i, r[i]);
            return;
        }
}

/* Waits (parked) for a flag, up to `ns`. */
bool nsc_wait_for(_Atomic int *f, int want, int64_t ns)
{
    int64_t end = np_now() + ns;
    while (atomic_load(f) < want) {
        if (np_now() > end)
            return false;
        np_sleep(200 * NP_MICROSECOND);
    }
    return true;
}

/* Peer tasks: their own actor (for the ring), counted as live. */
bool nsc_go_peer(sc *x, void (*fn)(void *))
{
    atomic_fetch_add(&x->a->run->live, 1);
    atomic_fetch_add(&x->peers, 1);
    int rc = np_go(fn, x);
    if (rc != 0) {
        atomic_fetch_sub(&x->peers, 1);
        atomic_fetch_sub(&x->a->run->live, 1);
        fz_fail(x->a, "scenario: np_go = %d", rc);
        return false;
    }
    return true;
}

void nsc_peer_end(sc *x, fz_actor *pa)
{
    fz_run *r = x->a->run;
    fz_actor_fini(pa);
    free(pa);
    atomic_fetch_sub(&x->peers, 1); /* x may be freed from here on */
    atomic_fetch_sub(&r->live, 1);
}

fz_actor *nsc_peer_actor(sc *x)
{
    fz_actor *pa = malloc(sizeof *pa);
    fz_actor_init(pa, x->a->run, 'C', CTX_TASK,
                  (uint64_t)x->variant * 77 + x->n + 1000 * atomic_fetch_add(&x->salt, 1));
    return pa;
}

/* Waits (parked) until every peer task has finished, up to `ns`. */
bool nsc_wait_peers(sc *x, int64_t ns)
{
    int64_t end = np_now() + ns;
    while (atomic_load(&x->peers) > 0) {
        if (np_now() > end)
            return false;
        np_sleep(200 * NP_MICROSECOND);
    }
    return true;
}

bool nsc_write_all(fz_actor *a, np_conn c, size_t n, unsigned k, unsigned char *buf)
{
    size_t off = 0;
    while (off < n) {
        size_t chunk = 1 + fz_below(a, fz_chance(a, 50) ? 100 : FZ_BUF);
        if (chunk > n - off)
            chunk = n - off;
        for (size_t i = 0; i < chunk; i++)
            buf[i] = nsc_pat(off + i, k);
        unsigned ri = fz_begin(a, C_WRITE, c.id, (int64_t)chunk);
        ssize_t w = np_write(c, buf, chunk);
        fz_end(a, ri, C_WRITE, w);
        if (w != (ssize_t)chunk) {
            fz_fail(a, "scenario: np_write(%zu) at offset %zu of %zu = %zd (%s)", chunk, off, n,
                    w, w < 0 ? np_strerror((int)w) : "short");
            return false;
        }
        off += chunk;
    }
    return true;
}

bool nsc_read_all(fz_actor *a, np_conn c, size_t n, unsigned k, unsigned char *buf)
{
    size_t off = 0;
    while (off < n) {
        size_t want = 1 + fz_below(a, fz_chance(a, 50) ? 100 : FZ_BUF);
        if (fz_chance(a, 10)) {
            int rc = np_wait_readable(c);
            if (rc != 0) {
                fz_fail(a, "scenario: np_wait_readable at %zu of %zu = %d (%s)", off, n, rc,
                        np_strerror(rc));
                return false;
            }
        }
        unsigned ri = fz_begin(a, C_READ, c.id, (int64_t)want);
        ssize_t r = np_read(c, buf, want);
        fz_end(a, ri, C_READ, r);
        if (r <= 0 || (size_t)r > want) {
            fz_fail(a, "scenario: np_read(%zu) at offset %zu of %zu = %zd (%s)", want, off, n, r,
                    r < 0 ? np_strerror((int)r) : r == 0 ? "end of stream" : "too much");
            return false;
        }
        if ((size_t)r > n - off) {
            fz_fail(a, "scenario: read %zd bytes at offset %zu: more than the %zu sent", r, off, n);
            return false;
        }
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != nsc_pat(off + (size_t)i, k)) {
                fz_fail(a, "scenario: byte %zu of %zu differs (%#x, want %#x)", off + (size_t)i,
                        n, buf[i], nsc_pat(off + (size_t)i, k));
                return false;
            }
        off += (size_t)r;
    }
    return true;
}

bool nsc_expect_eof(fz_actor *a, np_conn c, const char *who)
{
    char b[16];
    for (int i = 0; i < 2; i++) {
        ssize_t r = np_read(c, b, sizeof b);
        if (r != 0) {
            fz_fail(a, "scenario: %s: read %d after the peer's close_write = %zd, want 0", who,
                    i + 1, r);
            return false;
        }
    }
    int rc = np_wait_readable(c);
    if (rc != 0) {
        fz_fail(a, "scenario: %s: np_wait_readable at end of stream = %d", who, rc);
        return false;
    }
    return true;
}

/* ---- echo: content, end of stream, addresses, wrong kinds, dead handles ---- */

static void echo_peer(void *p)
{
    sc *x = p;
    fz_actor *pa = nsc_peer_actor(x);
    if (nsc_read_all(pa, x->p.s, x->n, x->pat, pa->buf) && nsc_write_all(pa, x->p.s, x->n, x->pat + 1, pa->buf)) {
        int rc = np_close_write(x->p.s);
        if (rc != 0)
            fz_fail(pa, "scenario: np_close_write = %d", rc);
        else
            nsc_expect_eof(pa, x->p.s, "server");
    }
    nsc_peer_end(x, pa);
}

static void sc_echo(sc *x)
{
    fz_actor *a = x->a;
    pair *p = &x->p;
    /* wrong kinds: -EBADF, and the connection is untouched */
    long long w1 = np_listener_close((np_listener){ p->c.id });
    long long w2 = np_read((np_conn){ p->l.id }, a->buf, 1);
    long long w3 = np_listener_set_deadline((np_listener){ p->s.id }, 1);
    CHECK(a, w1 == -EBADF && w2 == -EBADF && w3 == -EBADF,
          "scenario: calls with a handle of the other kind: %lld %lld %lld, want -EBADF",
          w1, w2, w3);
    x->n = 1 + fz_below(a, fz_chance(a, 50) ? 2000 : 300000);
    x->pat = (unsigned)fz_rand(a);
    nsc_go_peer(x, echo_peer);
    if (nsc_write_all(a, p->c, x->n, x->pat, a->buf) && nsc_read_all(a, p->c, x->n, x->pat + 1, a->buf) &&
        nsc_expect_eof(a, p->c, "client")) {
        int rc = np_close_write(p->c);
        CHECK(a, rc == 0, "scenario: np_close_write(client) = %d", rc);
    }
    CHECK(a, nsc_wait_peers(x, SAFETY + NP_SECOND), "scenario: echo peer stuck");
    int64_t cl = np_close(p->c);
    CHECK(a, cl == 0, "scenario: np_close = %" PRId64, cl);
    nsc_check_dead_conn(a, p->c, "closed by np_close");
    int lc = np_listener_close(p->l);
    CHECK(a, lc == 0, "scenario: np_listener_close = %d", lc);
    CHECK(a, p->fam != 2 || access(p->path, F_OK) != 0,
          "scenario: Unix listener file %s remains after np_listener_close returned", p->path);
    nsc_check_dead_listener(a, p->l);
out:
    nsc_wait_peers(x, SAFETY + NP_SECOND);
}

/* ---- a close racing a blocked call ------------------------------------------ */

static void blocker(void *p)
{
    sc *x = p;
    fz_actor *pa = nsc_peer_actor(x);
    long long rc;
    atomic_store(&x->stage, 1);
    switch (x->variant) {
    case 0:
        rc = np_read(x->p.c, pa->buf, 100);
        break;
    case 1:
        rc = np_wait_readable(x->p.c);
        break;
    case 2: { /* writes until one stops: the peer never reads */
        rc = FZ_BUF;
        for (int i = 0; i < 400 && rc == FZ_BUF; i++)
            rc = np_write(x->p.c, pa->buf, FZ_BUF);
        break;
    }
    default: {
        np_conn c;
        rc = np_accept(x->p.l, &c);
        if (rc == 0)
            np_close(c);
        break;
    }
    }
    atomic_store(&x->t_peer_ret, np_now());
    atomic_store(&x->peer_rc, rc);
    nsc_peer_end(x, pa);
}

static void *closer_thread(void *p)
{
    sc *x = p;
    struct timespec ts = { 0, 2000000 + (long)(x->n % 4000000) };
    nanosleep(&ts, NULL);
    atomic_store(&x->t_cause, np_now());
    long long rc = x->variant == 3 ? np_listener_close(x->p.l) : np_close(x->p.c);
    atomic_store(&x->got, (size_t)(rc == 0));
    atomic_store(&x->stage, 2);
    return NULL;
}

static void sc_close_race(sc *x)
{
    fz_actor *a = x->a;
    pair *p = &x->p;
    x->variant = (int)fz_below(a, 4);
    bool by_thread = fz_chance(a, 40);
    x->n = fz_below(a, 1000000);
    if (x->variant == 2) { /* small buffers, so a write blocks soon */
        int small = 4096;
        setsockopt(np_conn_fd(p->c), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        setsockopt(np_conn_fd(p->s), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    }
    static const char *const what[] = { "np_read", "np_wait_readable", "np_write", "np_accept" };
    nsc_go_peer(x, blocker);
    CHECK(a, nsc_wait_for(&x->stage, 1, SAFETY), "scenario: blocker never started");
    pthread_t th;
    if (by_thread && pthread_create(&th, NULL, closer_thread, x) == 0) {
        CHECK(a, nsc_wait_for(&x->stage, 2, SAFETY), "scenario: closer thread stuck");
        pthread_join(th, NULL);
        CHECK(a, atomic_load(&x->got) == 1, "scenario: close from a thread failed");
    } else {
        by_thread = false;
        np_sleep(2 * NP_MILLISECOND + (int64_t)(x->n % 4000000));
        atomic_store(&x->t_cause, np_now());
        int rc = x->variant == 3 ? np_listener_close(p->l) : np_close(p->c);
        CHECK(a, rc == 0, "scenario: close during a blocked %s = %d", what[x->variant], rc);
    }
    /* the Unix file goes with the close itself, blocked accept or not */
    CHECK(a, x->variant != 3 || p->fam != 2 || access(p->path, F_OK) != 0,
          "scenario: Unix listener file %s remains after np_listener_close returned "
          "while an accept was blocked", p->path);
    CHECK(a, nsc_wait_peers(x, SAFETY + NP_SECOND),
          "scenario: %s still blocked %lld s after its handle was closed (from a %s)",
          what[x->variant], (long long)((SAFETY + NP_SECOND) / NP_SECOND),
          by_thread ? "thread" : "task");
    long long rc = atomic_load(&x->peer_rc);
    int64_t late = atomic_load(&x->t_peer_ret) - atomic_load(&x->t_cause);
    bool ok = rc == -ECANCELED || rc == -EBADF || (x->variant == 2 && rc > 0 && rc < FZ_BUF);
    CHECK(a, ok, "scenario: %s blocked while another %s closed the handle = %lld (%s), want "
                 "-ECANCELED%s", what[x->variant], by_thread ? "thread" : "task", rc,
          rc < 0 ? np_strerror((int)rc) : "", x->variant == 2 ? " or a short count" : "");
    CHECK(a, late < LATE, "scenario: %s returned %.3f s after its handle was closed",
          what[x->variant], (double)late / 1e9);
    if (x->variant == 3)
        nsc_check_dead_listener(a, p->l);
    else
        nsc_check_dead_conn(a, p->c, "closed while a call was blocked");
out:
    nsc_wait_peers(x, SAFETY + NP_SECOND);
}

/* ---- resets, broken pipes ---------------------------------------------------- */

static void sc_reset(sc *x)
{
    fz_actor *a = x->a;
    pair *p = &x->p;
    bool tcp = p->fam < 2 || p->fam == 4;
    if (tcp) {
        struct linger lg = { 1, 0 }; /* close sends a reset */
        setsockopt(np_conn_fd(p->s), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    int rc = np_close(p->s);
    CHECK(a, rc == 0, "scenario: np_close = %d", rc);
    ssize_t r = np_read(p->c, a->buf, 10);
    CHECK(a, tcp ? r == -ECONNRESET || r == 0 : r == 0,
          "scenario: np_read after the peer's %s = %zd (%s)", tcp ? "reset" : "close", r,
          r < 0 ? np_strerror((int)r) : "");
    for (int i = 0; i < 3; i++) {
        ssize_t w = np_write(p->c, a->buf, 1 + fz_below(a, 10000));
        CHECK(a, w > 0 || w == -EPIPE || w == -ECONNRESET,
              "scenario: np_write to a peer that is gone = %zd (%s)", w,
              w < 0 ? np_strerror((int)w) : "");
    }
out:
    return;
}

/* ---- listen conflicts and refused dials -------------------------------------- */

static void sc_conflict(sc *x)
{
    fz_actor *a = x->a;
    pair *p = &x->p;
    np_listener l2 = { 0 }, l3 = { 0 };
    int rc = np_listen(&l2, p->net, p->laddr);
    CHECK(a, rc == -EADDRINUSE, "scenario: np_listen(%s, %s) on a listening address = %d, "
                                "want -EADDRINUSE", p->net, p->laddr, rc);
    if (p->fam == 2 || p->fam == 3) {
        int lc = np_listener_close(p->l);
        CHECK(a, lc == 0, "scenario: np_listener_close = %d", lc);
        rc = np_listen(&l2, p->net, p->laddr); /* the file went with the close */
        CHECK(a, rc == 0, "scenario: np_listen(%s) again after np_listener_close = %d (%s)",
              p->laddr, rc, np_strerror(rc));
        np_listener_close(l2);
        CHECK(a, p->fam != 2 || access(p->path, F_OK) != 0, "scenario: %s remains", p->path);
        goto out;
    }
    /* SO_REUSEPORT: two listeners share a port, a plain one cannot join */
    rc = np_listen_reuseport(&l2, p->net, p->fam == 1 ? "[::1]:0" : "127.0.0.1:0", 1);
    CHECK(a, rc == 0, "scenario: np_listen_reuseport = %d", rc);
    char ad[128];
    rc = np_listener_addr(l2, ad, sizeof ad);
    if (rc == 0) {
        rc = np_listen_reuseport(&l3, p->net, ad, 1);
        if (rc != 0)
            fz_fail(a, "scenario: a second np_listen_reuseport(%s) = %d (%s)", ad, rc,
                    np_strerror(rc));
        else
            np_listener_close(l3);
        rc = np_listen_reuseport(&l3, p->net, ad, 0);
        if (rc != -EADDRINUSE)
            fz_fail(a, "scenario: np_listen_reuseport(%s, 0) beside SO_REUSEPORT listeners = "
                       "%d, want -EADDRINUSE", ad, rc);
        if (rc == 0)
            np_listener_close(l3);
    }
    np_listener_close(l2);
out:
    return;
}

static void sc_refused(sc *x)
{
    fz_actor *a = x->a;
    pair *p = &x->p;
    int rc = np_listener_close(p->l);
    CHECK(a, rc == 0, "scenario: np_listener_close = %d", rc);
    np_conn c;
    rc = np_dial(&c, p->net, p->laddr, np_now() + SAFETY);
    if (rc == 0) { /* someone took the port meanwhile (tcp only) */
        np_close(c);
        CHECK(a, p->fam < 2 || p->fam == 4, "scenario: np_dial(%s) after its listener closed = 0",
              p->laddr);
        goto out;
    }
    CHECK(a, rc == -ECONNREFUSED || (p->fam == 2 && rc == -ENOENT),
          "scenario: np_dial(%s, %s) after its listener closed = %d (%s), want -ECONNREFUSED%s",
          p->net, p->laddr, rc, np_strerror(rc), p->fam == 2 ? " or -ENOENT" : "");
out:
    return;
}

/* ---- concurrent readers, concurrent writers ----------------------------------- */

static void reader_peer(void *p)
{
    sc *x = p;
    fz_actor *pa = nsc_peer_actor(x);
    for (;;) {
        ssize_t r = np_read(x->p.s, pa->buf, 1 + fz_below(pa, 3000));
        if (r <= 0) {
            if (r != 0)
                fz_fail(pa, "scenario: concurrent np_read = %zd (%s)", r, np_strerror((int)r));
            break;
        }
        unsigned long s = 0;
        for (ssize_t i = 0; i < r; i++)
            s += pa->buf[i];
        atomic_fetch_add(&x->sum, s);
        atomic_fetch_add(&x->got, (size_t)r);
    }
    nsc_peer_end(x, pa);
}

static void writer_peer(void *p)
{
    sc *x = p;
    fz_actor *pa = nsc_peer_actor(x);
    unsigned char tag = (unsigned char)('A' + atomic_fetch_add(&x->stage, 1));
    memset(pa->buf, tag, x->n);
    for (int i = 0; i < 40; i++) {
        ssize_t w = np_write(x->p.c, pa->buf, x->n);
        if (w != (ssize_t)x->n) {
            fz_fail(pa, "scenario: concurrent np_write(%zu) = %zd", x->n, w);
            break;
        }
    }
    nsc_peer_end(x, pa);
}

static void sc_concurrent(sc *x)
{
    fz_actor *a = x->a;
    pair *p = &x->p;
    if (fz_chance(a, 50)) { /* two readers share what one writer sends */
        size_t n = 1 + fz_below(a, 200000);
        unsigned long sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += nsc_pat(i, 7);
        bool two = nsc_go_peer(x, reader_peer) && nsc_go_peer(x, reader_peer);
        bool wrote = nsc_write_all(a, p->c, n, 7, a->buf);
        np_close_write(p->c);
        CHECK(a, nsc_wait_peers(x, SAFETY + NP_SECOND), "scenario: concurrent readers stuck");
        size_t got = atomic_load(&x->got);
        unsigned long s = atomic_load(&x->sum);
        CHECK(a, !two || !wrote || (got == n && s == sum),
              "scenario: two concurrent readers got %zu bytes (sum %lu) of %zu (sum %lu)", got, s,
              n, sum);
    } else { /* two writers: each np_write's bytes stay together */
        x->n = 1 + fz_below(a, 20000);
        int writers = nsc_go_peer(x, writer_peer) + nsc_go_peer(x, writer_peer);
        size_t total = x->n * 40 * (size_t)writers;
        size_t off = 0;
        unsigned char cur = 0;
        while (off < total) {
            ssize_t r = np_read(p->s, a->buf, FZ_BUF);
            CHECK(a, r > 0, "scenario: np_read beside two writers = %zd", r);
            for (ssize_t i = 0; i < r; i++, off++) {
                if (off % x->n == 0)
                    cur = a->buf[i];
                CHECK(a, a->buf[i] == cur && (cur == 'A' || cur == 'B'),
                      "scenario: two concurrent np_write(%zu) calls interleaved: byte %zu is "
                      "'%c' in a block of '%c'", x->n, off, a->buf[i], cur);
            }
        }
    }
out:
    nsc_wait_peers(x, SAFETY + NP_SECOND);
}

/* ---- dispatch ---------------------------------------------------------------- */

void fz_scenario(fz_actor *a)
{
    fz_run *r = a->run;
    if (atomic_load(&r->scenarios_running) >= 3)
        return;
    atomic_fetch_add(&r->scenarios_running, 1);
    sc *x = calloc(1, sizeof *x);
    x->a = a;
    int kind = (int)fz_below(a, 9);
    int fam = (int)fz_below(a, 5);
    unsigned ri = fz_begin(a, C_SCENARIO, (uint64_t)fam, kind);
    int m = nsc_mkpair(a, &x->p, fam);
    if (m == 0) {
        switch (kind) {
        case 0: sc_echo(x); break;
        case 1: case 2: sc_close_race(x); break;
        case 3: case 4: nsc_deadline(x); break;
        case 5: nsc_far_deadline(x); break;
        case 6: sc_reset(x); break;
        case 7: fz_chance(a, 50) ? sc_conflict(x) : sc_refused(x); break;
        default: sc_concurrent(x); break;
        }
        nsc_unpair(a, &x->p);
    }
    fz_end(a, ri, C_SCENARIO, m);
    (void)nsc_fam_name;
    /* peers may still hold x: a stuck one has been reported (and the run
     * cannot end: the watchdog will say so); then x is left allocated */
    if (nsc_wait_peers(x, 2 * SAFETY))
        free(x);
    atomic_fetch_sub(&r->scenarios_running, 1);
}

/* Out of descriptors: np_accept gives -EMFILE and the listener stays usable. */
void fz_scenario_emfile(fz_actor *a)
{
    if (atomic_exchange(&a->run->emfile_done, 1))
        return;
    pair p;
    if (nsc_mkpair(a, &p, 0) != 0)
        return;
    np_conn d2, c2;
    int rc = np_dial(&d2, p.net, p.laddr, np_now() + SAFETY);
    if (rc != 0) {
        fz_fail(a, "emfile: np_dial = %d", rc);
        nsc_unpair(a, &p);
        return;
    }
    struct rlimit old;
    getrlimit(RLIMIT_NOFILE, &old);
    int lowest = open("/dev/null", O_RDONLY | O_CLOEXEC); /* the lowest free number */
    if (lowest < 0) {
        np_close(d2);
        nsc_unpair(a, &p);
        return;
    }
    close(lowest);
    struct rlimit low = { (rlim_t)lowest, old.rlim_max };
    setrlimit(RLIMIT_NOFILE, &low);
    rc = np_accept(p.l, &c2);
    setrlimit(RLIMIT_NOFILE, &old);
    if (rc == 0) {
        np_close(c2); /* another actor freed a descriptor meanwhile */
    } else if (rc != -EMFILE && rc != -ENFILE) {
        fz_fail(a, "emfile: np_accept out of descriptors = %d (%s), want -EMFILE", rc,
                np_strerror(rc));
    } else {
        np_listener_set_deadline(p.l, np_now() + SAFETY);
        rc = np_accept(p.l, &c2);
        if (rc != 0)
            fz_fail(a, "emfile: np_accept after -EMFILE, descriptors back = %d (%s)", rc,
                    np_strerror(rc));
        else
            np_close(c2);
    }
    np_close(d2);
    nsc_unpair(a, &p);
}
