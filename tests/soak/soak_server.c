/* The server process: a TCP and a Unix-socket listener, one task per
 * connection that verifies every frame it reads (it regenerates them as the
 * client does) and echoes the bytes back in random pieces.
 *
 * A frame flagged FLAG_RESET_ME is echoed only up to a random point inside
 * it, and then the connection is reset (SO_LINGER {1,0} + np_close): the
 * client must see -ECONNRESET or EOF, never that frame whole.
 *
 * The server stops when the parent says every client has exited: it closes
 * both listeners while their accept loops are blocked (they must get
 * -ECANCELED or, between calls, -EBADF), and np_run returns once the last
 * connection task has ended (each ends at the client's EOF or reset).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "soak.h"

typedef struct acceptor {
    np_listener l;
    bool unix_;
    uint64_t rng;
} acceptor;

typedef struct srv_conn {
    np_conn c;
    bool unix_;
    uint64_t rng;
} srv_conn;

static acceptor g_acc[2];

static void gauge_open(bool unix_)
{
    STAT_INC(conns);
    if (unix_)
        STAT_INC(conns_unix);
    uint64_t a = atomic_fetch_add(&g_proc.st->active, 1) + 1;
    uint64_t p = atomic_load(&g_proc.st->active_peak);
    while (a > p && !atomic_compare_exchange_weak(&g_proc.st->active_peak, &p, a)) {
    }
}

/* Echoes n bytes: mostly in one np_write, sometimes split in random pieces
 * (tiny ones included) so the client reads odd boundaries too. */
static long long echo(np_conn c, const uint8_t *p, size_t n, uint64_t *rng, uint32_t conn_id)
{
    size_t off = 0, done;
    while (off < n) {
        size_t m = n - off;
        if (chance(rng, 300)) {
            m = 1 + rnd_below(rng, chance(rng, 200) ? 3 : m);
            if (m > n - off)
                m = n - off;
        }
        long long r = write_all(c, p + off, m, rng, conn_id, &done, false);
        off += done;
        if (r < 0)
            return r;
    }
    return (long long)n;
}

static size_t read_size(uint64_t *rng, size_t cap)
{
    unsigned r = (unsigned)rnd_below(rng, 100);
    if (r < 70)
        return cap;
    if (r < 90)
        return 1 + rnd_below(rng, cap);
    return 1 + rnd_below(rng, 16);
}

static void conn_task(void *arg)
{
    srv_conn sc = *(srv_conn *)arg;
    free(arg);
    np_conn c = sc.c;
    uint64_t *rng = &sc.rng;
    verifier v;
    verifier_init(&v, true, 0);
    uint8_t buf[8192];
    uint64_t reset_at = 0; /* stream offset at which to reset; 0 = none */
    bool closed = false;
    maybe_small_buffers(c, rng);
    for (;;) {
        dl x;
        enum dl_kind probe = DL_GUARD;
        if (chance(rng, 125)) {
            /* Wait without a buffer first, as an idle server would. */
            if (dl_arm(&x, c, DIR_READ, rng, false) < 0)
                break;
            int w = np_wait_readable(c);
            if (dl_book(&x, w, "server np_wait_readable", v.conn_id)) {
                if (x.kind == DL_GUARD)
                    break;
                continue;
            }
            if (w != 0) {
                soak_fail(&g_proc.st->unexpected, "server np_wait_readable conn %#x: %s", v.conn_id,
                          np_strerror(w));
                break;
            }
            /* Data (or EOF, or an error) is waiting: a past deadline must
             * still fail the read that would not block. */
            if (chance(rng, 250))
                probe = chance(rng, 500) ? DL_PAST : DL_ELAPSED;
        }
        int rc = probe != DL_GUARD ? dl_arm_kind(&x, c, DIR_READ, rng, probe)
                                   : dl_arm(&x, c, chance(rng, 500) ? DIR_BOTH : DIR_READ, rng, false);
        if (rc < 0) {
            soak_fail(&g_proc.st->unexpected, "server: setting a deadline on conn %#x: %s", v.conn_id,
                      np_strerror(rc));
            break;
        }
        ssize_t n = np_read(c, buf, read_size(rng, sizeof buf));
        if (dl_book(&x, n, "server np_read", v.conn_id)) {
            if (x.kind == DL_GUARD)
                break;
            continue;
        }
        if (n > 0) {
            uint64_t at = v.offset;
            verifier_feed(&v, buf, (size_t)n, "server");
            if (v.reset_hdr_end && !reset_at) {
                /* Cut strictly inside the frame, anywhere after its header. */
                uint32_t rest = soak_frame_len(v.g.conn_id, v.g.seq) + FRAME_TRL;
                reset_at = v.reset_hdr_end + rnd_below(rng, rest);
            }
            size_t m = (size_t)n;
            if (reset_at && at + m > reset_at)
                m = (size_t)(reset_at - at);
            long long w = echo(c, buf, m, rng, v.conn_id);
            if (w == -EPIPE || w == -ECONNRESET) {
                STAT_INC(resets_seen); /* the client reset mid-frame */
                break;
            }
            if (w < 0) {
                if (w != -ETIMEDOUT) /* a stall is booked already */
                    soak_fail(&g_proc.st->unexpected, "server np_write conn %#x: %s", v.conn_id,
                              np_strerror((int)w));
                break;
            }
            STAT_ADD(bytes, m);
            if (reset_at && at + m == reset_at) {
                if ((rc = set_linger0(c)) != 0)
                    soak_fail(&g_proc.st->unexpected, "server: SO_LINGER on conn %#x: %s", v.conn_id,
                              np_strerror(rc));
                if ((rc = np_close(c)) != 0)
                    soak_fail(&g_proc.st->unexpected, "server: np_close (reset) conn %#x: %s",
                              v.conn_id, np_strerror(rc));
                closed = true;
                STAT_INC(resets_sent);
                break;
            }
            continue;
        }
        if (n == 0) {
            if (!verifier_at_boundary(&v)) {
                /* EOF inside a frame: a Unix socket closed by a client that
                 * reset (no RST there), or a TCP reset whose error a write
                 * took first. Either way the partial frame was not taken. */
                STAT_INC(resets_seen);
                break;
            }
            /* The client half-closed (or closed) between frames: every echo
             * was written; EOF must repeat on the next read. */
            dl_arm(&x, c, DIR_READ, rng, true);
            ssize_t again = np_read(c, buf, sizeof buf);
            if (again != 0)
                soak_fail(&g_proc.st->unexpected, "server conn %#x: read after EOF returned %zd (%s)",
                          v.conn_id, again, again < 0 ? np_strerror((int)again) : "data");
            else
                STAT_INC(half_closes);
            break;
        }
        if (n == -ECONNRESET) {
            STAT_INC(resets_seen);
            break;
        }
        soak_fail(&g_proc.st->unexpected, "server np_read conn %#x: %s", v.conn_id,
                  np_strerror((int)n));
        break;
    }
    if (!closed) {
        int rc = np_close(c);
        if (rc != 0)
            soak_fail(&g_proc.st->unexpected, "server np_close conn %#x: %s", v.conn_id,
                      np_strerror(rc));
    }
    stale_check(c, true, "server: closed");
    atomic_fetch_sub(&g_proc.st->active, 1);
}

static void accept_task(void *arg)
{
    acceptor *a = arg;
    for (;;) {
        /* A one-second deadline per accept: a timeout here is an idle
         * listener, not a stall; it is still checked never to be early. */
        int64_t d = np_now() + NP_SECOND;
        int rc = np_listener_set_deadline(a->l, d);
        np_conn c;
        if (rc == 0)
            rc = np_accept(a->l, &c);
        if (rc == 0) {
            gauge_open(a->unix_);
            srv_conn *sc = malloc(sizeof *sc);
            if (!sc) {
                soak_fail(&g_proc.st->unexpected, "server: out of memory");
                np_close(c);
                continue;
            }
            *sc = (srv_conn){ c, a->unix_, rnd(&a->rng) };
            if ((rc = np_go(conn_task, sc)) != 0) {
                soak_fail(&g_proc.st->unexpected, "server: np_go: %s", np_strerror(rc));
                free(sc);
                np_close(c);
                atomic_fetch_sub(&g_proc.st->active, 1);
            }
            continue;
        }
        if (rc == -ETIMEDOUT) {
            if (np_now() < d)
                soak_fail(&g_proc.st->early, "np_accept: -ETIMEDOUT %" PRId64 " ns early",
                          d - np_now());
            continue;
        }
        if ((rc == -ECANCELED || rc == -EBADF) && atomic_load(&g_proc.sh->stop))
            break; /* the listener was closed: the end */
        if (rc == -EMFILE || rc == -ENFILE || rc == -ECONNABORTED || rc == -ENOBUFS ||
            rc == -ENOMEM) {
            STAT_INC(accept_retries);
            soak_sleep(10 * NP_MILLISECOND);
            continue;
        }
        soak_fail(&g_proc.st->unexpected, "np_accept (%s): %s", a->unix_ ? "unix" : "tcp",
                  np_strerror(rc));
        if (rc == -ECANCELED || rc == -EBADF)
            break;
        soak_sleep(10 * NP_MILLISECOND);
    }
}

static void server_main_task(void *arg)
{
    (void)arg;
    soak_shared *sh = g_proc.sh;
    uint64_t rng = sh->cfg.seed ^ 0x5E4E4E4552ull;
    char ux[sizeof sh->unix_addr];
    /* An abstract Unix name: nothing to clean up if the run is killed. */
    snprintf(ux, sizeof ux, "@np-soak-%d-%" PRIx64, (int)getpid(), rnd(&rng) & 0xFFFFFF);
    int rc = np_listen(&g_acc[0].l, "tcp", "127.0.0.1:0");
    if (rc == 0 && (rc = np_listen(&g_acc[1].l, "unix", ux)) != 0)
        np_listener_close(g_acc[0].l);
    if (rc == 0 && (rc = np_listener_addr(g_acc[0].l, sh->tcp_addr, sizeof sh->tcp_addr)) != 0) {
        np_listener_close(g_acc[0].l);
        np_listener_close(g_acc[1].l);
    }
    if (rc != 0) {
        soak_fail(&g_proc.st->unexpected, "server: listen: %s", np_strerror(rc));
        atomic_store(&sh->server_ready, -1);
        return;
    }
    memcpy(sh->unix_addr, ux, sizeof ux);
    for (int i = 0; i < 2; i++) {
        g_acc[i].unix_ = i == 1;
        g_acc[i].rng = rnd(&rng);
        if ((rc = np_go(accept_task, &g_acc[i])) != 0)
            soak_fail(&g_proc.st->unexpected, "server: np_go: %s", np_strerror(rc));
    }
    if ((rc = np_go(soak_monitor_task, NULL)) != 0)
        soak_fail(&g_proc.st->unexpected, "server: np_go: %s", np_strerror(rc));
    atomic_store(&sh->server_ready, 1);

    while (!atomic_load(&sh->stop))
        soak_sleep(20 * NP_MILLISECOND);
    for (int i = 0; i < 2; i++) {
        if ((rc = np_listener_close(g_acc[i].l)) != 0)
            soak_fail(&g_proc.st->unexpected, "server: np_listener_close: %s", np_strerror(rc));
        stale_listener_check(g_acc[i].l);
    }
    forged_check(&rng);
}

int soak_server_main(void)
{
    soak_run_runtime(server_main_task, NULL);
    if (atomic_load(&g_proc.sh->server_ready) != 1)
        atomic_store(&g_proc.sh->server_ready, -1);
    return 0;
}
