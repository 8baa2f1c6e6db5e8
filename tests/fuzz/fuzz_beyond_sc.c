/* api_fuzz: checked scenarios of datagrams (contents, boundaries, senders,
 * the size limit), np_wait_fd (deadline, readiness, a close while waiting),
 * adopted pipes (-EPIPE, end of stream) and signals (counts, watching twice,
 * the disposition put back). See fuzz.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

#define SAFETY (10 * NP_SECOND)

static _Atomic int rt_busy;

/* ---- checked scenarios ------------------------------------------------------ */

#define BCHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fz_fail(a, __VA_ARGS__);                                         \
            goto out;                                                        \
        }                                                                    \
    } while (0)

/* Datagrams between two bound sockets and a connected one: contents,
 * boundaries, senders' addresses, the size limit, -EISCONN, -EINVAL. */
static void sc_datagrams(fz_actor *a)
{
    int fam = (int)fz_below(a, 3);
    if (fam == 1 && !fz_ipv6)
        fam = 0;
    const char *net = (const char *[]){ "udp4", "udp6", "unixgram" }[fam];
    char pa[108], pb[108];
    const char *aa = "127.0.0.1:0", *ab = "127.0.0.1:0";
    if (fam == 1)
        aa = ab = "[::1]:0";
    if (fam == 2) {
        fz_unix_path(a->run, pa, sizeof pa, fz_chance(a, 50) ? "DA" : "@DA");
        fz_unix_path(a->run, pb, sizeof pb, "@DB");
        aa = pa;
        ab = pb;
    }
    np_conn A = { 0 }, B = { 0 }, C = { 0 };
    int pathA = -1;
    int rc = np_listen_packet(&A, net, aa);
    if (rc == -EMFILE || rc == -ENFILE)
        return;
    BCHECK(rc == 0, "datagram scenario: np_listen_packet(%s, %s) = %d (%s)", net, aa, rc,
           np_strerror(rc));
    if (fam == 2 && aa[0] == '/')
        pathA = fz_path_add(a->run, aa);
    rc = np_listen_packet(&B, net, ab);
    BCHECK(rc == 0, "datagram scenario: second np_listen_packet = %d", rc);
    char ta[128], tb[128], t[128];
    BCHECK(np_local_addr(A, ta, sizeof ta) == 0 && np_local_addr(B, tb, sizeof tb) == 0,
           "datagram scenario: np_local_addr failed");
    np_addr to, from;
    rc = np_addr_parse(&to, net, ta);
    BCHECK(rc == 0, "datagram scenario: np_addr_parse(%s, %s) = %d", net, ta, rc);
    np_set_deadline(A, np_now() + SAFETY);
    np_set_deadline(B, np_now() + SAFETY);
    int n = 1 + (int)fz_below(a, 8);
    for (int i = 0; i < n; i++) {
        size_t len = (size_t[]){ 0, 1, 17, 512, 1400, 8000 }[fz_below(a, 6)];
        for (size_t j = 0; j < len; j++)
            a->buf[j] = (unsigned char)(i * 31 + (int)j);
        ssize_t w = np_write_to(B, a->buf, len, &to);
        BCHECK(w == (ssize_t)len, "datagram scenario: np_write_to(%zu bytes, %s) = %zd (%s)", len,
               ta, w, w < 0 ? np_strerror((int)w) : "");
        bool shorter = len > 1 && fz_chance(a, 25); /* the rest of the datagram is dropped */
        size_t want = shorter ? len / 2 : len + 100;
        memset(a->buf + 65536, 0, len + 100);
        ssize_t r = np_read_from(A, a->buf + 65536, want, &from);
        BCHECK(r == (ssize_t)(shorter ? len / 2 : len),
               "datagram scenario: np_read_from(%zu) of a %zu-byte datagram = %zd (%s)", want, len,
               r, r < 0 ? np_strerror((int)r) : "");
        BCHECK(!memcmp(a->buf, a->buf + 65536, (size_t)r), "datagram scenario: contents differ");
        BCHECK(np_addr_format(&from, t, sizeof t) == 0 && !strcmp(t, tb),
               "datagram scenario: sender shown as \"%s\", it is \"%s\"", t, tb);
        w = np_write_to(A, "back", 4, &from); /* reply to whoever it was */
        BCHECK(w == 4, "datagram scenario: np_write_to(the sender) = %zd", w);
        r = np_read(B, t, sizeof t);
        BCHECK(r == 4 && !memcmp(t, "back", 4), "datagram scenario: the reply: np_read = %zd", r);
    }
    /* a connected one */
    rc = np_dial(&C, net, ta, np_now() + SAFETY);
    BCHECK(rc == 0, "datagram scenario: np_dial(%s, %s) = %d", net, ta, rc);
    np_set_deadline(C, np_now() + SAFETY);
    ssize_t w = np_write(C, "conn", 4);
    BCHECK(w == 4, "datagram scenario: np_write on a connected datagram socket = %zd", w);
    ssize_t r = np_read_from(A, t, sizeof t, &from);
    BCHECK(r == 4 && !memcmp(t, "conn", 4), "datagram scenario: np_read_from = %zd", r);
    if (fam != 2) { /* a dialled unixgram socket has no name to answer to */
        w = np_write_to(A, "repl", 4, &from);
        r = np_read(C, t, sizeof t);
        BCHECK(w == 4 && r == 4 && !memcmp(t, "repl", 4), "datagram scenario: reply to the "
                                                          "connected socket: %zd, %zd", w, r);
    }
    w = np_write_to(C, "x", 1, &to);
    BCHECK(w == -EISCONN || w == 1, "datagram scenario: np_write_to on a connected socket = %zd "
                                    "(%s)", w, w < 0 ? np_strerror((int)w) : "");
    if (w == 1)
        np_read(A, t, sizeof t);
    if (fam != 2) {
        w = np_write(C, a->buf, 70000);
        BCHECK(w == -EMSGSIZE, "datagram scenario: a 70000-byte UDP datagram = %zd, want "
                               "-EMSGSIZE", w);
    }
    rc = np_close(A);
    A.id = 0;
    BCHECK(rc == 0, "datagram scenario: np_close = %d", rc);
    BCHECK(pathA < 0 || access(pa, F_OK) != 0,
           "datagram scenario: the unixgram file %s remains after np_close", pa);
out:
    if (A.id)
        np_close(A);
    if (B.id)
        np_close(B);
    if (C.id)
        np_close(C);
}

/* np_wait_fd: a deadline, readiness, and a close (with the number reused)
 * while a task or thread waits. */
typedef struct fdw {
    fz_run *run;
    int fd;
    _Atomic int started, done;
    _Atomic int rc;
    _Atomic int64_t t_ret;
} fdw;

static void fdw_body(fdw *w)
{
    atomic_store(&w->started, 1);
    int rc = np_wait_fd(w->fd, NP_READABLE, np_now() + SAFETY);
    atomic_store(&w->t_ret, np_now());
    atomic_store(&w->rc, rc);
    fz_run *r = w->run;
    atomic_store(&w->done, 1);
    atomic_fetch_sub(&r->live, 1);
}

static void fdw_task(void *p)
{
    fdw_body(p);
}

static void *fdw_thread(void *p)
{
    fdw_body(p);
    return NULL;
}

static bool wait_flag(_Atomic int *f, int64_t ns)
{
    int64_t end = np_now() + ns;
    while (!atomic_load(f)) {
        if (np_now() > end)
            return false;
        np_sleep(500 * NP_MICROSECOND);
    }
    return true;
}

static void sc_wait_fd(fz_actor *a)
{
    int p[2] = { -1, -1 }, q[2] = { -1, -1 };
    fdw *w = NULL;
    pthread_t th;
    bool thread = false;
    if (pipe2(p, O_CLOEXEC) != 0)
        return;
    int64_t d = np_now() + 1 + (int64_t)fz_below(a, 10 * NP_MILLISECOND);
    int rc = np_wait_fd(p[0], NP_READABLE, d);
    int64_t t = np_now();
    BCHECK(rc == -ETIMEDOUT && t >= d, "wait_fd scenario: an empty pipe = %d (%" PRId64 " ns "
                                       "after the deadline)", rc, t - d);
    rc = np_wait_fd(p[1], NP_READABLE | NP_WRITABLE, np_now() + SAFETY);
    BCHECK(rc == NP_WRITABLE, "wait_fd scenario: a pipe's write end = %d, want NP_WRITABLE", rc);
    BCHECK(write(p[1], "r", 1) == 1, "write");
    rc = np_wait_fd(p[0], NP_READABLE, np_now() + SAFETY);
    BCHECK(rc == NP_READABLE, "wait_fd scenario: a pipe with a byte = %d", rc);
    char c;
    BCHECK(read(p[0], &c, 1) == 1, "read");
    if (FZ_TSAN) /* see FZ_TSAN */
        goto out;
    /* close while waiting, then reuse the number for a readable pipe */
    w = calloc(1, sizeof *w);
    w->run = a->run;
    w->fd = p[0];
    atomic_fetch_add(&a->run->live, 1);
    thread = fz_chance(a, 40) && pthread_create(&th, NULL, fdw_thread, w) == 0;
    if (!thread && np_go(fdw_task, w) != 0) {
        atomic_fetch_sub(&a->run->live, 1);
        free(w);
        w = NULL;
        goto out;
    }
    BCHECK(wait_flag(&w->started, SAFETY), "wait_fd scenario: waiter never started");
    np_sleep(3 * NP_MILLISECOND);
    int64_t tc = np_now();
    close(p[0]);
    p[0] = -1;
    bool reuse = fz_chance(a, 60);
    if (reuse && pipe2(q, O_CLOEXEC) == 0) { /* likely the number just freed */
        if (write(q[1], "z", 1) != 1)
            fz_fail(a, "write");
    }
    BCHECK(wait_flag(&w->done, SAFETY + NP_SECOND), "wait_fd scenario: a wait on a closed "
                                                     "descriptor still blocked after 11 s");
    rc = atomic_load(&w->rc);
    int64_t late = atomic_load(&w->t_ret) - tc;
    BCHECK(rc == -EBADF, "wait_fd scenario: a wait whose descriptor was closed%s = %d, want "
                         "-EBADF (never another file's readiness)",
           q[0] == w->fd ? " and its number reused for a readable pipe" : "", rc);
    BCHECK(late < 2500 * NP_MILLISECOND, "wait_fd scenario: the closed descriptor's wait ended "
                                         "%.3f s after the close (at most ~1 s promised)",
           (double)late / 1e9);
out:
    if (w) {
        if (!atomic_load(&w->done) && p[0] >= 0) { /* unstick it before leaving */
            close(p[0]);
            p[0] = -1;
        }
        if (wait_flag(&w->done, 2 * SAFETY)) {
            if (thread)
                pthread_join(th, NULL);
            free(w);
        }
    }
    int fds[] = { p[0], p[1], q[0], q[1] };
    for (int i = 0; i < 4; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* An adopted pipe: bytes through, -EPIPE (no SIGPIPE) once the reader is
 * gone, end of stream once the writer is. */
static void sc_pipe(fz_actor *a)
{
    int p[2];
    np_conn r = { 0 }, w = { 0 };
    if (pipe2(p, O_CLOEXEC) != 0)
        return;
    int rc1 = np_conn_from_fd(&r, p[0]), rc2 = np_conn_from_fd(&w, p[1]);
    if (rc1 != 0 || rc2 != 0) {
        fz_fail(a, "pipe scenario: np_conn_from_fd = %d, %d", rc1, rc2);
        if (rc1)
            close(p[0]);
        if (rc2)
            close(p[1]);
        goto out;
    }
    np_set_deadline(r, np_now() + SAFETY);
    np_set_deadline(w, np_now() + SAFETY);
    size_t n = 1 + fz_below(a, 3000);
    for (size_t i = 0; i < n; i++)
        a->buf[i] = (unsigned char)(i * 7);
    ssize_t x = np_write(w, a->buf, n);
    BCHECK(x == (ssize_t)n, "pipe scenario: np_write = %zd", x);
    size_t got = 0;
    while (got < n) {
        ssize_t y = np_read(r, a->buf + 65536 + got, n - got);
        BCHECK(y > 0, "pipe scenario: np_read = %zd", y);
        got += (size_t)y;
    }
    BCHECK(!memcmp(a->buf, a->buf + 65536, n), "pipe scenario: contents differ");
    if (fz_chance(a, 50)) {
        BCHECK(np_close(r) == 0, "pipe scenario: np_close(reader)");
        r.id = 0;
        x = np_write(w, "x", 1);
        BCHECK(x == -EPIPE, "pipe scenario: np_write with no reader = %zd, want -EPIPE", x);
    } else {
        BCHECK(np_close(w) == 0, "pipe scenario: np_close(writer)");
        w.id = 0;
        x = np_read(r, a->buf, 10);
        BCHECK(x == 0, "pipe scenario: np_read with no writer = %zd, want 0", x);
    }
out:
    if (r.id)
        np_close(r);
    if (w.id)
        np_close(w);
}

/* Signals: two channels watch SIGRTMIN+3 (twice: the same as once); k
 * raises give each k elements, no more; stop puts the default back. */
static void sc_signals(fz_actor *a)
{
    if (fz_skip[C_SIGNAL_NOTIFY] || fz_skip[C_SIGNAL_STOP] || atomic_exchange(&rt_busy, 1))
        return;
    int rt = SIGRTMIN + 3;
    np_chan c1 = { 0 }, c2 = { 0 };
    int rc = np_chan_make(&c1, sizeof(int), 8);
    BCHECK(rc == 0 && np_chan_make(&c2, sizeof(int), 8) == 0, "signal scenario: np_chan_make");
    BCHECK(np_signal_notify(c1, rt) == 0 && np_signal_notify(c1, rt) == 0 &&
               np_signal_notify(c2, rt) == 0, "signal scenario: np_signal_notify failed");
    int k = 1 + (int)fz_below(a, 5);
    for (int i = 0; i < k; i++)
        raise(rt); /* queued, not merged: real-time */
    int64_t end = np_now() + SAFETY; /* for all of them */
    for (int ch = 0; ch < 2; ch++)
        for (int i = 0; i < k; i++) {
            int v = 0;
            rc = np_chan_recv(ch ? c2 : c1, &v, end);
            BCHECK(rc == 0 && v == rt, "signal scenario: channel %d, signal %d of %d: recv = %d, "
                                       "value %d (want %d)", ch, i, k, rc, v, rt);
        }
    int v = 0;
    rc = np_chan_recv(c1, &v, np_now() + 20 * NP_MILLISECOND);
    BCHECK(rc == -ETIMEDOUT, "signal scenario: %d raises, watched twice by one channel: an "
                             "extra element (recv = %d, value %d)", k, rc, v);
    BCHECK(np_signal_stop(c1) == 0 && np_signal_stop(c2) == 0, "signal scenario: np_signal_stop");
    struct sigaction old;
    sigaction(rt, NULL, &old);
    BCHECK(old.sa_handler == SIG_DFL, "signal scenario: SIGRTMIN+3 unwatched, but its "
                                      "disposition is not the default again");
out:
    if (c1.id) {
        np_signal_stop(c1);
        np_chan_free(c1);
    }
    if (c2.id) {
        np_signal_stop(c2);
        np_chan_free(c2);
    }
    atomic_store(&rt_busy, 0);
}

void fz_beyond_scenario(fz_actor *a)
{
    int k = (int)fz_below(a, 4);
    unsigned ri = fz_begin(a, C_SCENARIO, 200 + (uint64_t)k, k);
    switch (k) {
    case 0: sc_datagrams(a); break;
    case 1: sc_wait_fd(a); break;
    case 2: sc_pipe(a); break;
    default: sc_signals(a); break;
    }
    fz_end(a, ri, C_SCENARIO, 0);
}
