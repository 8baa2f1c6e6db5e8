/* api_fuzz: checked scenarios of the coordination calls, with exact
 * results: a channel stream in order and intact (task or thread at either
 * end), a buffered channel through close and drain, blocked calls woken by
 * close and free, select's fairness, the mutex's FIFO hand-over, and wait
 * groups. See fuzz.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define SAFETY (10 * NP_SECOND)
#define EMAX FZ_EMAX
#define elem_fill fz_elem_fill
#define all fz_all
#define chan_grave_push fz_chan_grave_push

/* ---- checked scenarios ---------------------------------------------------- */

typedef struct ssc {
    fz_actor *a;
    np_chan ch;
    size_t esize;
    int n;
    _Atomic int peers, stage, order_n;
    int order[8];
    np_mutex m;
    np_waitgroup wg;
    _Atomic int done_flags;
    _Atomic long long rc;
} ssc;

static bool wait_peers(ssc *x, int64_t ns)
{
    int64_t end = np_now() + ns;
    while (atomic_load(&x->peers) > 0) {
        if (np_now() > end)
            return false;
        np_sleep(200 * NP_MICROSECOND);
    }
    return true;
}

static bool wait_stage(ssc *x, int want, int64_t ns)
{
    int64_t end = np_now() + ns;
    while (atomic_load(&x->stage) < want) {
        if (np_now() > end)
            return false;
        np_sleep(100 * NP_MICROSECOND);
    }
    return true;
}

/* A peer: a task, or a plain thread (the calls block it). */
typedef struct peer_arg {
    ssc *x;
    int idx;
    void (*fn)(ssc *, int, fz_actor *);
    bool thread;
} peer_arg;

static void peer_body(peer_arg *pa)
{
    ssc *x = pa->x;
    fz_run *r = x->a->run;
    fz_actor me;
    fz_actor_init(&me, r, pa->thread ? 'Q' : 'C', pa->thread ? CTX_THREAD : CTX_TASK,
                  (uint64_t)pa->idx * 1337);
    pa->fn(x, pa->idx, &me);
    fz_actor_fini(&me);
    free(pa);
    atomic_fetch_sub(&x->peers, 1);
    atomic_fetch_sub(&r->live, 1);
}

static void peer_task(void *p)
{
    peer_body(p);
}

static void *peer_thread(void *p)
{
    peer_body(p);
    return NULL;
}

static void start_peer(ssc *x, int idx, void (*fn)(ssc *, int, fz_actor *), bool thread)
{
    peer_arg *pa = calloc(1, sizeof *pa);
    pa->x = x;
    pa->idx = idx;
    pa->fn = fn;
    pa->thread = thread;
    atomic_fetch_add(&x->peers, 1);
    atomic_fetch_add(&x->a->run->live, 1);
    pthread_t th;
    if (thread && pthread_create(&th, NULL, peer_thread, pa) == 0) {
        pthread_detach(th); /* counted in peers and run->live: waited for */
        return;
    }
    pa->thread = false;
    if (np_go(peer_task, pa) != 0) {
        fz_fail(x->a, "sync scenario: np_go failed");
        atomic_fetch_sub(&x->peers, 1);
        atomic_fetch_sub(&x->a->run->live, 1);
        free(pa);
    }
}

#define SCHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fz_fail(a, __VA_ARGS__);                                         \
            goto out;                                                        \
        }                                                                    \
    } while (0)

/* One sender, one receiver (either a task or a thread): every element, in
 * order, intact. */
static void stream_sender(ssc *x, int idx, fz_actor *me)
{
    (void)idx;
    unsigned char *e = me->buf;
    for (int i = 0; i < x->n; i++) {
        elem_fill(e, x->esize, (uint64_t)i * 2 + 1);
        int rc = np_chan_send(x->ch, e, np_now() + SAFETY);
        if (rc != 0) {
            fz_fail(me, "sync scenario: np_chan_send #%d = %d (%s)", i, rc, np_strerror(rc));
            return;
        }
    }
    int rc = np_chan_close(x->ch);
    if (rc != 0)
        fz_fail(me, "sync scenario: np_chan_close = %d", rc);
}

static void sc_stream(fz_actor *a, ssc *x)
{
    static const size_t sizes[] = { 0, 1, 8, 24, 1000, EMAX };
    x->esize = sizes[fz_below(a, 6)];
    size_t cap = (size_t[]){ 0, 0, 1, 3, 16 }[fz_below(a, 5)];
    x->n = 1 + (int)fz_below(a, 300);
    unsigned char *e = a->buf, *want = a->buf + FZ_BUF / 2;
    int rc = np_chan_make(&x->ch, x->esize, cap);
    SCHECK(rc == 0, "sync scenario: np_chan_make(%zu, %zu) = %d", x->esize, cap, rc);
    start_peer(x, 0, stream_sender, fz_chance(a, 40));
    for (int i = 0; i < x->n; i++) {
        memset(e, 0xee, x->esize + 16);
        if (fz_chance(a, 20)) {
            np_select_case c[2] = { { x->ch, NP_RECV, e, 9 }, { { 0 }, NP_RECV, e + EMAX, 9 } };
            rc = np_select(c, 2, np_now() + SAFETY);
            SCHECK(rc == 0 && c[0].result == 0, "sync scenario: np_select recv #%d = %d (%d)", i,
                   rc, c[0].result);
        } else {
            rc = np_chan_recv(x->ch, e, np_now() + SAFETY);
            SCHECK(rc == 0, "sync scenario: np_chan_recv #%d of %d = %d (%s)", i, x->n, rc,
                   np_strerror(rc));
        }
        elem_fill(want, x->esize, (uint64_t)i * 2 + 1);
        SCHECK(!memcmp(e, want, x->esize) && all(e + x->esize, 16, 0xee),
               "sync scenario: element #%d (size %zu, cap %zu) arrived wrong or out of order", i,
               x->esize, cap);
    }
    memset(e, 0xee, x->esize + 16);
    rc = np_chan_recv(x->ch, e, np_now() + SAFETY);
    SCHECK(rc == -EPIPE && all(e, x->esize, 0) && all(e + x->esize, 16, 0xee),
           "sync scenario: np_chan_recv after close and drain = %d (want -EPIPE, element zeroed)",
           rc);
    SCHECK(np_chan_len(x->ch) == 0 && np_chan_cap(x->ch) == (int)cap,
           "sync scenario: len/cap after the stream: %d/%d", np_chan_len(x->ch),
           np_chan_cap(x->ch));
out:
    wait_peers(x, SAFETY + NP_SECOND);
    if (x->ch.id) {
        rc = np_chan_free(x->ch);
        if (rc != 0)
            fz_fail(a, "sync scenario: np_chan_free = %d", rc);
        long long r2[3] = { np_chan_send(x->ch, e, 0), np_chan_len(x->ch), np_chan_close(x->ch) };
        if (r2[0] != -EBADF || r2[1] != -EBADF || r2[2] != -EBADF)
            fz_fail(a, "sync scenario: calls on a freed channel: %lld %lld %lld, want -EBADF",
                    r2[0], r2[1], r2[2]);
        chan_grave_push(x->ch.id);
    }
}

/* A buffered channel filled, a past deadline, close, drain, free. */
static void sc_buffered(fz_actor *a, ssc *x)
{
    size_t cap = 1 + fz_below(a, 8);
    int rc = np_chan_make(&x->ch, 8, cap);
    SCHECK(rc == 0, "sync scenario: np_chan_make = %d", rc);
    unsigned char e[8];
    for (size_t i = 0; i < cap; i++) {
        elem_fill(e, 8, i * 2 + 1);
        rc = np_chan_send(x->ch, e, fz_chance(a, 50) ? 0 : np_now() - 1); /* room: need not block */
        SCHECK(rc == 0, "sync scenario: np_chan_send #%zu into room = %d", i, rc);
        SCHECK(np_chan_len(x->ch) == (int)i + 1, "sync scenario: np_chan_len = %d, want %zu",
               np_chan_len(x->ch), i + 1);
    }
    int64_t d = fz_chance(a, 50) ? np_now() - 1 : np_now() + (int64_t)fz_below(a, 5 * NP_MILLISECOND);
    rc = np_chan_send(x->ch, e, d);
    int64_t t = np_now();
    SCHECK(rc == -ETIMEDOUT, "sync scenario: np_chan_send into a full channel = %d, want "
                             "-ETIMEDOUT", rc);
    SCHECK(t >= d, "sync scenario: np_chan_send: -ETIMEDOUT %" PRId64 " ns before the deadline",
           d - t);
    rc = np_chan_close(x->ch);
    SCHECK(rc == 0, "sync scenario: np_chan_close = %d", rc);
    SCHECK(np_chan_close(x->ch) == -EPIPE, "sync scenario: second np_chan_close, want -EPIPE");
    SCHECK(np_chan_send(x->ch, e, 0) == -EPIPE, "sync scenario: send after close, want -EPIPE");
    for (size_t i = 0; i < cap; i++) {
        rc = np_chan_recv(x->ch, e, np_now() - 1);
        unsigned char w[8];
        elem_fill(w, 8, i * 2 + 1);
        SCHECK(rc == 0 && !memcmp(e, w, 8), "sync scenario: buffered element %zu after close: "
                                            "rc %d", i, rc);
    }
    rc = np_chan_recv(x->ch, e, 0);
    SCHECK(rc == -EPIPE && all(e, 8, 0), "sync scenario: recv from a closed drained channel "
                                         "= %d, want -EPIPE and a zeroed element", rc);
out:
    if (x->ch.id) {
        np_chan_free(x->ch);
        chan_grave_push(x->ch.id);
    }
}

/* A blocked receive (or send) woken by close (-EPIPE) or free (-ECANCELED),
 * from a task or a thread. */
static void blocked_op(ssc *x, int idx, fz_actor *me)
{
    (void)idx;
    atomic_store(&x->stage, 1);
    long long rc = x->n ? np_chan_send(x->ch, me->buf, np_now() + SAFETY)
                        : np_chan_recv(x->ch, me->buf, np_now() + SAFETY);
    atomic_store(&x->rc, rc);
}

static void sc_wake(fz_actor *a, ssc *x)
{
    x->n = fz_chance(a, 50); /* 1: a sender on a full channel */
    bool by_free = fz_chance(a, 50);
    int rc = np_chan_make(&x->ch, 0, x->n);
    SCHECK(rc == 0, "sync scenario: np_chan_make = %d", rc);
    if (x->n)
        SCHECK(np_chan_send(x->ch, NULL, 0) == 0, "sync scenario: send into room");
    start_peer(x, 0, blocked_op, fz_chance(a, 40));
    SCHECK(wait_stage(x, 1, SAFETY), "sync scenario: blocker never started");
    np_sleep(2 * NP_MILLISECOND);
    rc = by_free ? np_chan_free(x->ch) : np_chan_close(x->ch);
    SCHECK(rc == 0, "sync scenario: %s = %d", by_free ? "np_chan_free" : "np_chan_close", rc);
    SCHECK(wait_peers(x, SAFETY + NP_SECOND), "sync scenario: a blocked %s not woken by %s",
           x->n ? "send" : "receive", by_free ? "free" : "close");
    long long r = atomic_load(&x->rc);
    SCHECK(by_free ? r == -ECANCELED || r == -EBADF : r == -EPIPE,
           "sync scenario: a blocked %s woken by %s = %lld, want %s", x->n ? "send" : "receive",
           by_free ? "np_chan_free" : "np_chan_close", r, by_free ? "-ECANCELED" : "-EPIPE");
out:
    wait_peers(x, SAFETY + NP_SECOND);
    if (x->ch.id) {
        if (!by_free)
            np_chan_free(x->ch);
        chan_grave_push(x->ch.id);
    }
}

/* np_select among several ready channels: each chosen often enough. */
static void sc_fair(fz_actor *a, ssc *x)
{
    np_chan c[3];
    int k = 2 + (int)fz_below(a, 2), made = 0, hits[3] = { 0 };
    const int rounds = 300;
    for (; made < k; made++)
        if (np_chan_make(&c[made], 0, rounds) != 0)
            break;
    SCHECK(made == k, "sync scenario: np_chan_make failed");
    for (int i = 0; i < k; i++)
        for (int j = 0; j < rounds; j++)
            SCHECK(np_chan_send(c[i], NULL, 0) == 0, "sync scenario: send into room");
    np_select_case cs[4];
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < k; i++)
            cs[i] = (np_select_case){ c[i], NP_RECV, NULL, 5 };
        cs[k] = (np_select_case){ { 0 }, NP_RECV, NULL, 5 }; /* nil: never */
        int rc = np_select(cs, k + 1, r % 2 ? 0 : np_now() - 1);
        SCHECK(rc >= 0 && rc < k && cs[rc].result == 0, "sync scenario: np_select among ready "
                                                        "channels = %d", rc);
        hits[rc]++;
    }
    for (int i = 0; i < k; i++) /* uniform would give rounds/k; this is 6 sigma out */
        SCHECK(hits[i] > rounds / k / 2, "sync scenario: np_select chose case %d %d times in %d "
                                         "among %d always-ready cases", i, hits[i], rounds, k);
out:
    for (int i = 0; i < made; i++) {
        np_chan_free(c[i]);
        chan_grave_push(c[i].id);
    }
    (void)x;
}

/* A held mutex: waiters (tasks and threads) get it in arrival order. */
static void fifo_waiter(ssc *x, int idx, fz_actor *me)
{
    atomic_store(&x->stage, idx + 1);
    int rc = np_mutex_lock(&x->m);
    if (rc != 0) {
        fz_fail(me, "sync scenario: np_mutex_lock = %d", rc);
        return;
    }
    int pos = atomic_fetch_add(&x->order_n, 1);
    if (pos < 8)
        x->order[pos] = idx;
    np_mutex_unlock(&x->m);
}

static void sc_fifo(fz_actor *a, ssc *x)
{
    int n = 2 + (int)fz_below(a, 3);
    int rc = np_mutex_lock(&x->m);
    SCHECK(rc == 0, "sync scenario: np_mutex_lock = %d", rc);
    for (int i = 0; i < n; i++) {
        start_peer(x, i, fifo_waiter, fz_chance(a, 40));
        SCHECK(wait_stage(x, i + 1, SAFETY), "sync scenario: waiter %d never started", i);
        np_sleep(15 * NP_MILLISECOND); /* queued by now */
    }
    int64_t d = np_now() + 1 + (int64_t)fz_below(a, 5 * NP_MILLISECOND);
    rc = np_mutex_lock_until(&x->m, d);
    int64_t t = np_now();
    SCHECK(rc == -ETIMEDOUT && t >= d, "sync scenario: np_mutex_lock_until on a held mutex = %d "
                                       "(%" PRId64 " ns after the deadline)", rc, t - d);
    rc = np_mutex_unlock(&x->m);
    SCHECK(rc == 0, "sync scenario: np_mutex_unlock = %d", rc);
    SCHECK(wait_peers(x, SAFETY), "sync scenario: mutex waiters stuck");
    for (int i = 0; i < n; i++)
        SCHECK(x->order[i] == i, "sync scenario: mutex handed over out of order: position %d "
                                 "went to waiter %d (queued %d-th, 15 ms apart)", i, x->order[i], i);
out:
    wait_peers(x, SAFETY + NP_SECOND);
}

/* A waitgroup: wait returns when every worker is done, not before. */
static void wg_worker(ssc *x, int idx, fz_actor *me)
{
    np_sleep((int64_t)fz_below(me, 3 * NP_MILLISECOND));
    atomic_fetch_or(&x->done_flags, 1 << idx);
    int rc = np_waitgroup_done(&x->wg);
    if (rc != 0)
        fz_fail(me, "sync scenario: np_waitgroup_done = %d", rc);
}

static void sc_waitgroup(fz_actor *a, ssc *x)
{
    int n = 1 + (int)fz_below(a, 5);
    int rc = np_waitgroup_add(&x->wg, n);
    SCHECK(rc == 0, "sync scenario: np_waitgroup_add = %d", rc);
    for (int i = 0; i < n; i++)
        start_peer(x, i, wg_worker, fz_chance(a, 40));
    rc = np_waitgroup_wait(&x->wg, np_now() + SAFETY);
    int flags = atomic_load(&x->done_flags);
    SCHECK(rc == 0 && flags == (1 << n) - 1, "sync scenario: np_waitgroup_wait = %d with "
                                              "workers %#x of %#x done", rc, flags, (1 << n) - 1);
    rc = np_waitgroup_add(&x->wg, -1);
    SCHECK(rc == -EINVAL, "sync scenario: np_waitgroup_add(-1) at 0 = %d, want -EINVAL", rc);
    rc = np_waitgroup_done(&x->wg);
    SCHECK(rc == -EINVAL, "sync scenario: np_waitgroup_done at 0 = %d, want -EINVAL", rc);
    rc = np_waitgroup_add(&x->wg, INT64_MIN);
    SCHECK(rc == -EINVAL, "sync scenario: np_waitgroup_add(INT64_MIN) = %d, want -EINVAL", rc);
    rc = np_waitgroup_wait(&x->wg, np_now() - 1);
    SCHECK(rc == 0, "sync scenario: np_waitgroup_wait at 0 with a past deadline = %d, want 0", rc);
    rc = np_waitgroup_add(&x->wg, INT64_MAX); /* 0, or refused as too large */
    SCHECK(rc == 0 || rc == -EINVAL || rc == -EOVERFLOW,
           "sync scenario: np_waitgroup_add(INT64_MAX) = %d", rc);
    if (rc == 0) {
        rc = np_waitgroup_add(&x->wg, 1); /* would overflow */
        if (rc == 0) {
            fz_fail(a, "sync scenario: np_waitgroup_add(1) on a count of INT64_MAX = 0 "
                       "(overflow)");
            np_waitgroup_add(&x->wg, -1);
        }
        rc = np_waitgroup_add(&x->wg, -INT64_MAX);
        SCHECK(rc == 0, "sync scenario: np_waitgroup_add(-INT64_MAX) = %d", rc);
    }
    rc = np_waitgroup_wait(&x->wg, np_now() - 1);
    SCHECK(rc == 0, "sync scenario: np_waitgroup_wait back at 0 = %d", rc);
out:
    wait_peers(x, SAFETY + NP_SECOND);
}

void fz_sync_scenario(fz_actor *a)
{
    ssc *x = calloc(1, sizeof *x);
    x->a = a;
    int k = (int)fz_below(a, 7);
    unsigned ri = fz_begin(a, C_SCENARIO, 100 + (uint64_t)k, k);
    switch (k) {
    case 0: case 1: sc_stream(a, x); break;
    case 2: sc_buffered(a, x); break;
    case 3: sc_wake(a, x); break;
    case 4: sc_fair(a, x); break;
    case 5: sc_fifo(a, x); break;
    default: sc_waitgroup(a, x); break;
    }
    fz_end(a, ri, C_SCENARIO, 0);
    if (wait_peers(x, 2 * SAFETY))
        free(x);
}
