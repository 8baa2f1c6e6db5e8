/* api_fuzz: checked deadline scenarios on a private connected pair: a
 * blocked call fails at its deadline and not before; a passed deadline fails
 * calls that would not block; a deadline moved while a call is blocked
 * (to the past: it wakes; cleared: it does not fire); a write stopped by its
 * deadline; INT64_MAX and other far deadlines are not taken as past. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "fuzz_net_sc.h"

/* ---- deadlines ----------------------------------------------------------------- */

static void deadline_peer(void *p)
{
    sc *x = p;
    fz_actor *pa = nsc_peer_actor(x);
    atomic_store(&x->stage, 1);
    long long rc = x->variant == 0 ? np_read(x->p.c, pa->buf, 64) : np_wait_readable(x->p.c);
    atomic_store(&x->t_peer_ret, np_now());
    atomic_store(&x->peer_rc, rc);
    nsc_peer_end(x, pa);
}

static int64_t past_deadline(fz_actor *a)
{
    int64_t now = np_now();
    return (int64_t[]){ 1, -1, INT64_MIN, now - 1, now, now - NP_SECOND }[fz_below(a, 6)];
}

void nsc_deadline(sc *x)
{
    fz_actor *a = x->a;
    pair *p = &x->p;
    np_set_deadline(p->c, 0);
    int v = (int)fz_below(a, 7);
    switch (v) {
    case 0: case 1: { /* a blocked read / wait fails at its deadline, not before */
        int64_t d = np_now() + 1 + (int64_t)fz_below(a, 30 * NP_MILLISECOND);
        np_set_read_deadline(p->c, d);
        int64_t t0 = np_now();
        long long rc = v == 0 ? np_read(p->c, a->buf, 10) : np_wait_readable(p->c);
        int64_t t1 = np_now();
        CHECK(a, rc == -ETIMEDOUT, "scenario: %s with a deadline %.3f ms ahead = %lld, want "
                                   "-ETIMEDOUT", v ? "np_wait_readable" : "np_read",
              (double)(d - t0) / 1e6, rc);
        CHECK(a, t1 >= d, "scenario: -ETIMEDOUT %" PRId64 " ns before the deadline", d - t1);
        CHECK(a, t1 - d < LATE, "scenario: -ETIMEDOUT %.3f s after the deadline",
              (double)(t1 - d) / 1e9);
        rc = np_read(p->c, a->buf, 10); /* still past */
        CHECK(a, rc == -ETIMEDOUT, "scenario: np_read after the deadline passed = %lld", rc);
        np_set_read_deadline(p->c, fz_chance(a, 50) ? 0 : np_now() + SAFETY);
        rc = np_write(p->s, "hello", 5);
        CHECK(a, rc == 5, "scenario: np_write = %lld", rc);
        rc = np_read(p->c, a->buf, 10);
        CHECK(a, rc == 5 && !memcmp(a->buf, "hello", 5),
              "scenario: np_read after the deadline was moved = %lld, want 5", rc);
        break;
    }
    case 2: { /* a passed deadline fails calls that would not block */
        long long rc = np_write(p->s, "0123456789", 10);
        CHECK(a, rc == 10, "scenario: np_write = %lld", rc);
        np_set_read_deadline(p->c, np_now() + SAFETY);
        rc = np_wait_readable(p->c);
        CHECK(a, rc == 0, "scenario: np_wait_readable with data sent = %lld", rc);
        int64_t pd = past_deadline(a);
        if (fz_chance(a, 50))
            np_set_read_deadline(p->c, pd);
        else
            np_set_deadline(p->c, pd);
        rc = np_read(p->c, a->buf, 10);
        CHECK(a, rc == -ETIMEDOUT, "scenario: np_read with data waiting and the read deadline "
                                   "past (%" PRId64 ") = %lld, want -ETIMEDOUT", pd, rc);
        rc = np_wait_readable(p->c);
        CHECK(a, rc == -ETIMEDOUT, "scenario: np_wait_readable with data waiting and the "
                                   "deadline past (%" PRId64 ") = %lld, want -ETIMEDOUT", pd, rc);
        np_set_write_deadline(p->c, pd);
        rc = np_write(p->c, "x", 1);
        CHECK(a, rc == -ETIMEDOUT, "scenario: np_write with buffer room and the write deadline "
                                   "past (%" PRId64 ") = %lld, want -ETIMEDOUT", pd, rc);
        np_set_deadline(p->c, 0);
        rc = np_read(p->c, a->buf, 64);
        CHECK(a, rc == 10 && !memcmp(a->buf, "0123456789", 10),
              "scenario: np_read after clearing the deadline = %lld, want the 10 bytes", rc);
        rc = np_write(p->c, "x", 1);
        CHECK(a, rc == 1, "scenario: np_write after clearing the deadline = %lld", rc);
        break;
    }
    case 3: { /* an accept: deadline ahead, then past with a connection waiting */
        int64_t d = np_now() + 1 + (int64_t)fz_below(a, 20 * NP_MILLISECOND);
        np_listener_set_deadline(p->l, d);
        np_conn c2;
        int rc = np_accept(p->l, &c2);
        int64_t t1 = np_now();
        CHECK(a, rc == -ETIMEDOUT && t1 >= d, "scenario: np_accept with a deadline ahead = %d "
                                              "(%" PRId64 " ns after it)", rc, t1 - d);
        np_conn d2;
        rc = np_dial(&d2, p->net, p->laddr, np_now() + SAFETY);
        CHECK(a, rc == 0, "scenario: second np_dial = %d", rc);
        np_listener_set_deadline(p->l, past_deadline(a));
        rc = np_accept(p->l, &c2);
        if (rc == 0)
            np_close(c2);
        if (rc != -ETIMEDOUT) {
            np_close(d2);
            CHECK(a, false, "scenario: np_accept with a connection waiting and the deadline "
                            "past = %d, want -ETIMEDOUT", rc);
        }
        np_listener_set_deadline(p->l, np_now() + SAFETY);
        rc = np_accept(p->l, &c2);
        np_close(d2);
        CHECK(a, rc == 0, "scenario: np_accept after the deadline was moved = %d", rc);
        np_close(c2);
        break;
    }
    case 4: case 5: { /* moved while blocked: past wakes it; cleared does not fire */
        bool clear = v == 5;
        x->variant = (int)fz_below(a, 2);
        if (clear) {
            x->deadline = np_now() + 300 * NP_MILLISECOND;
            np_set_read_deadline(p->c, x->deadline);
        }
        nsc_go_peer(x, deadline_peer);
        CHECK(a, nsc_wait_for(&x->stage, 1, SAFETY), "scenario: reader never started");
        np_sleep(2 * NP_MILLISECOND);
        int64_t tc = np_now();
        atomic_store(&x->t_cause, tc);
        if (clear) {
            np_set_read_deadline(p->c, fz_chance(a, 50) ? 0 : INT64_MAX);
            np_sleep(x->deadline - np_now() + 50 * NP_MILLISECOND);
            long long rc = np_write(p->s, "abc", 3);
            CHECK(a, rc == 3, "scenario: np_write = %lld", rc);
        } else {
            np_set_read_deadline(p->c, fz_chance(a, 50) ? past_deadline(a)
                                                        : np_now() + NP_MILLISECOND);
        }
        CHECK(a, nsc_wait_peers(x, SAFETY + NP_SECOND), "scenario: reader stuck");
        long long rc = atomic_load(&x->peer_rc);
        if (clear && tc < x->deadline - 100 * NP_MILLISECOND) /* cleared well before it */
            CHECK(a, x->variant == 0 ? rc == 3 : rc == 0,
                  "scenario: a blocked %s whose deadline was cleared = %lld",
                  x->variant ? "np_wait_readable" : "np_read", rc);
        if (!clear) {
            CHECK(a, rc == -ETIMEDOUT, "scenario: a blocked %s whose deadline was moved to the "
                                       "past = %lld, want -ETIMEDOUT",
                  x->variant ? "np_wait_readable" : "np_read", rc);
            CHECK(a, atomic_load(&x->t_peer_ret) - tc < LATE,
                  "scenario: woken %.3f s after its deadline was moved",
                  (double)(atomic_load(&x->t_peer_ret) - tc) / 1e9);
        }
        break;
    }
    default: { /* a write stops at its deadline; the next fails at once */
        int small = 4096;
        setsockopt(np_conn_fd(p->c), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        setsockopt(np_conn_fd(p->s), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        int64_t d = np_now() + 1 + (int64_t)fz_below(a, 20 * NP_MILLISECOND);
        if (fz_chance(a, 50))
            np_set_write_deadline(p->c, d);
        else
            np_set_deadline(p->c, d);
        long long rc = FZ_BUF;
        int i;
        for (i = 0; i < 400 && rc == FZ_BUF; i++)
            rc = np_write(p->c, a->buf, FZ_BUF);
        int64_t t1 = np_now();
        if (i == 400)
            break; /* the kernel took 50 MB: nothing to say */
        CHECK(a, rc == -ETIMEDOUT || (rc > 0 && rc < FZ_BUF),
              "scenario: np_write past its deadline = %lld, want -ETIMEDOUT or a short count", rc);
        CHECK(a, t1 >= d, "scenario: np_write stopped %" PRId64 " ns before its deadline", d - t1);
        rc = np_write(p->c, a->buf, 1);
        CHECK(a, rc == -ETIMEDOUT, "scenario: np_write after its deadline = %lld", rc);
        break;
    }
    }
out:
    nsc_wait_peers(x, SAFETY + NP_SECOND);
}

/* ---- INT64_MAX and other far deadlines are not past ------------------------ */

static void far_writer(void *p)
{
    sc *x = p;
    fz_actor *pa = nsc_peer_actor(x);
    atomic_store(&x->stage, 1);
    np_sleep(3 * NP_MILLISECOND);
    ssize_t w = np_write(x->p.s, "far", 3);
    if (w != 3)
        fz_fail(pa, "scenario: np_write = %zd", w);
    nsc_peer_end(x, pa);
}

void nsc_far_deadline(sc *x)
{
    fz_actor *a = x->a;
    pair *p = &x->p;
    int64_t d = (int64_t[]){ INT64_MAX, INT64_MAX - 1, np_now() + INT64_MAX / 2,
                             np_now() + 3600 * NP_SECOND }[fz_below(a, 4)];
    np_set_read_deadline(p->c, d);
    np_set_write_deadline(p->c, d);
    np_listener_set_deadline(p->l, d);
    nsc_go_peer(x, far_writer);
    ssize_t r = np_read(p->c, a->buf, 16);
    CHECK(a, r == 3, "scenario: np_read with the read deadline at %" PRId64 " = %zd, want 3", d, r);
    ssize_t w = np_write(p->c, "ok", 2);
    CHECK(a, w == 2, "scenario: np_write with the write deadline at %" PRId64 " = %zd", d, w);
out:
    nsc_wait_peers(x, SAFETY + NP_SECOND);
}

