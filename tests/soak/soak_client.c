/* A client process: `slots` connections held open at once, each a sequence
 * of sessions until the traffic phase ends. A session is one connection
 * with two tasks on it:
 *
 *   writer  writes frames (whole, in random chunks, or in tiny ones), with
 *           pauses, then ends the session as planned:
 *             HALF_CLOSE    np_close_write; the reader must get every echo,
 *                           then EOF, then EOF again
 *             CLIENT_RESET  a partial frame, SO_LINGER {1,0}, np_close: the
 *                           reader (blocked, or about to read) must get
 *                           -ECANCELED or -EBADF; the server a reset or EOF
 *             SERVER_RESET  a frame flagged FLAG_RESET_ME: the server cuts
 *                           its echo inside it and resets; the reader must
 *                           get -ECONNRESET or EOF, never that frame whole
 *             CANCEL        waits until every echo is in and the reader is
 *                           blocked in np_read on the quiet connection, then
 *                           np_close: that read must return -ECANCELED
 *   reader  reads the echoes and verifies every byte against the frames
 *           regenerated from (conn id, seq).
 * When the traffic phase ends, sessions still running end with HALF_CLOSE.
 *
 * Whichever of the two tasks finishes last closes the handle if it is still
 * open, checks that the old handle now gives -EBADF everywhere, and goes on
 * as the slot's next writer: no task ever waits for the other to exit.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>

#include "soak.h"

enum ending { END_NONE, END_HALF_CLOSE, END_CLIENT_RESET, END_SERVER_RESET, END_CANCEL, END_ABORT };

/* A CANCEL close waits this long after the reader announced it is about to
 * block: long enough that the read has certainly started (so -EBADF, "not
 * started yet", is a rare scheduling race, counted apart), short enough to
 * cost nothing. */
#define CANCEL_SETTLE (50 * NP_MILLISECOND)

typedef struct slot {
    int idx;
    uint64_t rng;
    np_conn prev; /* the handle of this slot's previous session, closed */
    int64_t start_at;
} slot;

typedef struct sess {
    slot *sl;
    np_conn c;
    uint32_t conn_id;
    bool unix_;
    enum ending plan;
    uint32_t nframes;           /* UINT32_MAX: until the traffic phase ends */
    uint64_t written;           /* writer's own count of stream bytes */
    uint64_t wrng, rrng;        /* one PRNG per task */
    _Atomic int ending;         /* set by the writer before it acts on it */
    _Atomic uint32_t reset_seq; /* the frame flagged FLAG_RESET_ME */
    _Atomic uint64_t final_len; /* stream length once known (before its last bytes go out) */
    _Atomic int parked;         /* CANCEL: the reader is entering its last read */
    _Atomic int closed;         /* np_close has been called (by whom: the CAS winner) */
    _Atomic int refs;           /* 2: writer and reader; the last one out finishes */
    /* What the reader is doing, for a stalled writer's report. */
    _Atomic int rstate;         /* enum rstate */
    _Atomic int64_t rstate_at;
    _Atomic uint64_t rbytes;
} sess;

enum rstate { R_START, R_WAIT_READABLE, R_READ, R_BUSY, R_DONE };

static void rstate_set(sess *ss, enum rstate st)
{
    atomic_store_explicit(&ss->rstate, st, memory_order_relaxed);
    atomic_store_explicit(&ss->rstate_at, np_now(), memory_order_relaxed);
}

/* A stalled writer's report: where its reader is (the echoes it does not
 * take back are what fills the connection). */
static void note_reader(sess *ss)
{
    static const char *names[] = { "not started", "in np_wait_readable", "in np_read",
                                   "between reads", "finished" };
    int st = atomic_load(&ss->rstate);
    uint64_t rb = atomic_load(&ss->rbytes);
    int64_t at = atomic_load(&ss->rstate_at);
    int fd = np_conn_fd(ss->c), inq = -1, inq2 = -1;
    /* Writable now, by the kernel's own test (a Unix socket is writable
     * again only once its peer has taken 3/4 of what it holds)? Then the
     * writer was not told: a lost wake-up. Not writable: flow control. */
    struct pollfd pf = { .fd = fd, .events = POLLOUT };
    bool writable = fd >= 0 && poll(&pf, 1, 0) == 1 && (pf.revents & POLLOUT);
    if (fd >= 0)
        ioctl(fd, FIONREAD, &inq);
    /* A second look: a reader that is merely slow has moved on by then. */
    np_sleep(500 * NP_MILLISECOND);
    if (fd >= 0)
        ioctl(fd, FIONREAD, &inq2);
    bool moved = atomic_load(&ss->rbytes) != rb || atomic_load(&ss->rstate_at) != at;
    soak_note("conn %#x: the writer stalled (the socket %s); its reader is %s for %.1f s, "
              "%llu bytes read, %d queued; 0.5 s later: %s, %d queued",
              ss->conn_id, writable ? "IS WRITABLE" : "is not writable", names[st],
              (double)(np_now() - at) / 1e9 - 0.5, (unsigned long long)rb, inq,
              moved ? "it moved on" : "NOT MOVED", inq2);
}

static struct {
    slot *slots;
    int nslots;
    _Atomic uint32_t next_id;
    int64_t t_end;
} g_cl;

static void slot_loop(slot *sl);

/* ---- closing ------------------------------------------------------------------------------- */

/* Closes once, whoever asks first; with linger0 the close sends a reset. */
static bool sess_close(sess *ss, bool linger0)
{
    int zero = 0;
    if (!atomic_compare_exchange_strong(&ss->closed, &zero, 1))
        return false;
    int rc;
    if (linger0 && (rc = set_linger0(ss->c)) != 0)
        soak_fail(&g_proc.st->unexpected, "SO_LINGER conn %#x: %s", ss->conn_id, np_strerror(rc));
    if ((rc = np_close(ss->c)) != 0)
        soak_fail(&g_proc.st->unexpected, "np_close conn %#x: %s", ss->conn_id, np_strerror(rc));
    return true;
}

/* After a failure: stop both tasks (a blocked call of the other one returns
 * -ECANCELED, which ABORT makes acceptable). */
static void sess_abort(sess *ss)
{
    atomic_store(&ss->ending, END_ABORT);
    sess_close(ss, false);
}

static bool aborted(sess *ss) { return atomic_load(&ss->ending) == END_ABORT; }

/* ---- writer -------------------------------------------------------------------------------- */

/* The writer's measure of its connection's progress: echo bytes taken. */
static uint64_t echo_progress(void *p)
{
    return atomic_load_explicit(&((sess *)p)->rbytes, memory_order_relaxed);
}

/* Writes bytes [from, to) of frame g (g is at `from`), in pieces chosen by
 * `mode`; returns 0 or the error that stopped it. */
static long long write_range(sess *ss, frame_gen *g, uint32_t to, unsigned mode, uint8_t *buf,
                             size_t cap)
{
    uint64_t *rng = &ss->wrng;
    uint32_t tiny_end = g->off + 1 + (uint32_t)rnd_below(rng, 600);
    if (mode == 0) {
        /* Whole: one np_write of the frame (up to 64 KiB + 24): the library
         * loops over partial sends inside. */
        size_t n = to - g->off, done;
        uint8_t *f = malloc(n);
        if (!f) {
            soak_fail(&g_proc.st->unexpected, "client: out of memory");
            return -ENOMEM;
        }
        fg_fill(g, f, n);
        long long r = write_all_ex(ss->c, f, n, rng, ss->conn_id, &done, false, echo_progress, ss);
        ss->written += done;
        free(f);
        return r < 0 ? r : 0;
    }
    while (g->off < to) {
        size_t m;
        if (mode == 3 || (mode == 2 && g->off < tiny_end))
            m = 1 + rnd_below(rng, mode == 3 ? 1 : 3); /* tiny: 1..3 bytes a call */
        else
            m = 1 + rnd_below(rng, (uint64_t)1 << rnd_below(rng, 14)); /* 1 .. 8 KiB */
        if (m > cap)
            m = cap;
        if (m > to - g->off)
            m = to - g->off;
        fg_fill(g, buf, m);
        size_t done;
        long long r = write_all_ex(ss->c, buf, m, rng, ss->conn_id, &done, false, echo_progress,
                                   ss);
        ss->written += done;
        if (r < 0)
            return r;
    }
    return 0;
}

static unsigned pick_mode(uint64_t *rng)
{
    unsigned r = (unsigned)rnd_below(rng, 1000);
    if (r < 350)
        return 0; /* whole */
    if (r < 850)
        return 1; /* random chunks */
    if (r < 999)
        return 2; /* tiny chunks for a prefix, then random */
    return 3;     /* 1 byte per call, the whole frame */
}

/* CANCEL: wait for the reader to park on the quiet connection, then close.
 * The wait polls with a backoff (1 ms doubling to 32 ms): the last echoes
 * can take seconds under load, and thousands of sessions polling every
 * millisecond would be a load of their own. */
static void cancel_close(sess *ss)
{
    int64_t t0 = np_now(), step = NP_MILLISECOND;
    uint64_t seen = echo_progress(ss);
    while (!atomic_load(&ss->parked)) {
        if (aborted(ss))
            return;
        if (echo_progress(ss) != seen) { /* still moving: a guard from here */
            seen = echo_progress(ss);
            t0 = np_now();
        }
        if (np_now() - t0 > g_proc.guard) {
            soak_fail(&g_proc.st->stalls, "conn %#x: cancel: the reader got no echo for %.1f s",
                      ss->conn_id, (double)(np_now() - t0) / 1e9);
            sess_abort(ss);
            return;
        }
        soak_sleep(step);
        if (step < 32 * NP_MILLISECOND)
            step *= 2;
    }
    soak_sleep(CANCEL_SETTLE);
    sess_close(ss, false);
}

static void writer_run(sess *ss)
{
    uint8_t buf[8192];
    uint64_t *rng = &ss->wrng;
    enum ending end = END_HALF_CLOSE;
    for (uint32_t seq = 0;; seq++) {
        if (np_now() >= g_cl.t_end)
            break; /* the traffic phase is over: end politely */
        bool last = ss->nframes != UINT32_MAX && seq + 1 >= ss->nframes;
        uint32_t flags = 0;
        frame_gen g;
        if (last && ss->plan == END_CLIENT_RESET) {
            /* Stop anywhere inside the frame, its header included. */
            fg_start(&g, ss->conn_id, seq, 0);
            uint32_t cut = 1 + (uint32_t)rnd_below(rng, g.total - 1);
            atomic_store(&ss->ending, END_CLIENT_RESET);
            long long r = write_range(ss, &g, cut, pick_mode(rng), buf, sizeof buf);
            if (r < 0 && !aborted(ss) && r != -ETIMEDOUT)
                soak_fail(&g_proc.st->unexpected, "np_write conn %#x: %s", ss->conn_id,
                          np_strerror((int)r));
            if (sess_close(ss, true))
                STAT_INC(resets_sent);
            return;
        }
        if (last && ss->plan == END_CANCEL) {
            /* Published before the frame goes out, so the reader knows it
             * has everything the moment the last echo byte arrives. */
            atomic_store(&ss->final_len, ss->written + soak_frame_total(ss->conn_id, seq));
            atomic_store(&ss->ending, END_CANCEL);
        }
        if (last && ss->plan == END_SERVER_RESET) {
            atomic_store(&ss->reset_seq, seq);
            atomic_store(&ss->ending, END_SERVER_RESET);
            flags = FLAG_RESET_ME;
        }
        fg_start(&g, ss->conn_id, seq, flags);
        long long r = write_range(ss, &g, g.total, pick_mode(rng), buf, sizeof buf);
        if (r < 0) {
            int e = atomic_load(&ss->ending);
            if (e == END_SERVER_RESET && (r == -EPIPE || r == -ECONNRESET))
                return; /* the reset this session asked for */
            if (e != END_ABORT) {
                if (r != -ETIMEDOUT) /* a stall is booked already */
                    soak_fail(&g_proc.st->unexpected, "np_write conn %#x: %s", ss->conn_id,
                              np_strerror((int)r));
                else
                    note_reader(ss);
                sess_abort(ss);
            }
            return;
        }
        if (last) {
            end = ss->plan;
            break;
        }
        if (g_proc.cfg->pause_ms > 0 && chance(rng, 500))
            soak_sleep((int64_t)rnd_below(rng, (uint64_t)g_proc.cfg->pause_ms * 1000 + 1) *
                       NP_MICROSECOND);
    }
    if (end == END_SERVER_RESET)
        return; /* the reader takes it from here */
    if (end == END_CANCEL) {
        cancel_close(ss);
        return;
    }
    atomic_store(&ss->final_len, ss->written);
    atomic_store(&ss->ending, END_HALF_CLOSE);
    int rc = np_close_write(ss->c);
    if (rc != 0) {
        soak_fail(&g_proc.st->unexpected, "np_close_write conn %#x: %s", ss->conn_id, np_strerror(rc));
        sess_abort(ss);
        return;
    }
    if (chance(rng, 250)) {
        /* Writing after the half-close: the kernel says EPIPE, no signal. */
        dl x;
        dl_arm(&x, ss->c, DIR_WRITE, rng, true);
        ssize_t w = np_write(ss->c, "x", 1);
        if (w != -EPIPE)
            soak_fail(&g_proc.st->unexpected, "np_write after np_close_write conn %#x: %zd (%s)",
                      ss->conn_id, w, w < 0 ? np_strerror((int)w) : "written");
    }
}

/* ---- reader -------------------------------------------------------------------------------- */

static size_t read_size(uint64_t *rng, size_t cap)
{
    unsigned r = (unsigned)rnd_below(rng, 100);
    if (r < 70)
        return cap;
    if (r < 90)
        return 1 + rnd_below(rng, cap);
    return 1 + rnd_below(rng, 16);
}

/* The read ended the stream (EOF or an error): was that the plan? */
static void reader_end(sess *ss, verifier *v, ssize_t n, uint8_t *buf, size_t cap)
{
    int e = atomic_load(&ss->ending);
    uint64_t *rng = &ss->rrng;
    if (e == END_ABORT)
        return;
    if (n == 0 && e == END_HALF_CLOSE) {
        uint64_t want = atomic_load(&ss->final_len);
        if (v->offset != want || !verifier_at_boundary(v)) {
            soak_fail(&g_proc.st->unexpected,
                      "conn %#x: EOF after %" PRIu64 " of %" PRIu64 " echoed bytes", ss->conn_id,
                      v->offset, want);
            return;
        }
        dl x;
        dl_arm(&x, ss->c, DIR_READ, rng, true);
        ssize_t again = np_read(ss->c, buf, cap);
        if (again != 0)
            soak_fail(&g_proc.st->unexpected, "conn %#x: read after EOF returned %zd (%s)",
                      ss->conn_id, again, again < 0 ? np_strerror((int)again) : "data");
        else
            STAT_INC(half_closes);
        return;
    }
    if ((n == 0 || n == -ECONNRESET) && e == END_SERVER_RESET) {
        STAT_INC(resets_seen);
        return;
    }
    if ((n == -ECANCELED || n == -EBADF) && e == END_CLIENT_RESET)
        return; /* our own writer reset the connection under us */
    soak_fail(&g_proc.st->unexpected, "conn %#x (%s): read returned %zd (%s) after %" PRIu64
              " bytes, ending %d",
              ss->conn_id, ss->unix_ ? "unix" : "tcp", n, n < 0 ? np_strerror((int)n) : "EOF",
              v->offset, e);
    sess_abort(ss);
}

static void reader_run(sess *ss)
{
    uint8_t buf[8192];
    uint64_t *rng = &ss->rrng;
    verifier v;
    verifier_init(&v, false, ss->conn_id);
    for (;;) {
        bool park = atomic_load(&ss->ending) == END_CANCEL && v.offset == atomic_load(&ss->final_len);
        dl x;
        enum dl_kind probe = DL_GUARD;
        if (!park && chance(rng, 125)) {
            if (dl_arm(&x, ss->c, DIR_READ, rng, false) < 0) {
                reader_end(ss, &v, -EBADF, buf, sizeof buf);
                return;
            }
            rstate_set(ss, R_WAIT_READABLE);
            int w = np_wait_readable(ss->c);
            rstate_set(ss, R_BUSY);
            if (dl_book(&x, w, "np_wait_readable", ss->conn_id)) {
                if (x.kind == DL_GUARD) {
                    sess_abort(ss);
                    return;
                }
                continue;
            }
            if (w != 0) {
                reader_end(ss, &v, w, buf, sizeof buf);
                return;
            }
            /* Data is there: the read below needs not block, and a past
             * deadline must fail it all the same. */
            if (chance(rng, 250))
                probe = chance(rng, 500) ? DL_PAST : DL_ELAPSED;
        }
        int rc = probe != DL_GUARD ? dl_arm_kind(&x, ss->c, DIR_READ, rng, probe)
                                   : dl_arm(&x, ss->c, DIR_READ, rng, park);
        if (rc < 0) {
            reader_end(ss, &v, rc, buf, sizeof buf);
            return;
        }
        if (park)
            atomic_store(&ss->parked, 1);
        rstate_set(ss, R_READ);
        ssize_t n = np_read(ss->c, buf, read_size(rng, sizeof buf));
        rstate_set(ss, R_BUSY);
        if (n > 0)
            atomic_fetch_add_explicit(&ss->rbytes, (uint64_t)n, memory_order_relaxed);
        if (park) {
            /* The writer closes this connection while we are blocked here. */
            if (n == -ECANCELED)
                STAT_INC(cancels_ok);
            else if (n == -EBADF)
                STAT_INC(cancels_late);
            else {
                dl_book(&x, n, "np_read (parked)", ss->conn_id);
                soak_fail(&g_proc.st->cancels_bad,
                          "conn %#x: np_close during a blocked np_read: the read returned %zd (%s)",
                          ss->conn_id, n, n < 0 ? np_strerror((int)n) : n ? "data" : "EOF");
            }
            return;
        }
        if (dl_book(&x, n, "np_read", ss->conn_id)) {
            if (x.kind == DL_GUARD) {
                sess_abort(ss);
                return;
            }
            continue;
        }
        if (n > 0) {
            /* Loaded after the read: the writer stores it before the frame
             * goes out, so before any of its echo can have come back. */
            v.reset_seq = atomic_load(&ss->reset_seq);
            verifier_feed(&v, buf, (size_t)n, "client");
            STAT_ADD(bytes, n);
            continue;
        }
        reader_end(ss, &v, n, buf, sizeof buf);
        return;
    }
}

/* ---- sessions ------------------------------------------------------------------------------ */

static sess *session_open(slot *sl)
{
    const soak_shared *sh = g_proc.sh;
    np_conn c;
    bool ux;
    for (;;) {
        if (np_now() >= g_cl.t_end)
            return NULL;
        ux = chance(&sl->rng, (unsigned)g_proc.cfg->unix_permille);
        dl x = { .kind = DL_GUARD };
        x.t_set = x.t_before = np_now();
        x.d = x.t_before + g_proc.guard;
        int rc = np_dial(&c, ux ? "unix" : "tcp", ux ? sh->unix_addr : sh->tcp_addr, x.d);
        if (rc == 0)
            break;
        if (dl_book(&x, rc, ux ? "np_dial unix" : "np_dial tcp", 0))
            return NULL;
        if (rc == -EADDRNOTAVAIL || rc == -EAGAIN) {
            /* Out of ephemeral ports, or the Unix backlog is full: the
             * machine, not the library. Back off. */
            STAT_INC(dial_retries);
            soak_sleep((int64_t)(10 + rnd_below(&sl->rng, 40)) * NP_MILLISECOND);
            continue;
        }
        soak_fail(&g_proc.st->unexpected, "np_dial %s: %s", ux ? "unix" : "tcp", np_strerror(rc));
        soak_sleep(100 * NP_MILLISECOND);
    }
    /* The new connection most likely took the old one's slot in the
     * library's table: the old handle must still be dead. */
    if (sl->prev.id)
        stale_check(sl->prev, true, "previous session");
    maybe_small_buffers(c, &sl->rng);

    sess *ss = calloc(1, sizeof *ss);
    if (!ss) {
        soak_fail(&g_proc.st->unexpected, "client: out of memory");
        np_close(c);
        return NULL;
    }
    ss->sl = sl;
    ss->c = c;
    ss->unix_ = ux;
    ss->conn_id = (uint32_t)g_proc.index << 24 | (atomic_fetch_add(&g_cl.next_id, 1) & 0xFFFFFF);
    ss->wrng = rnd(&sl->rng);
    ss->rrng = rnd(&sl->rng);
    /* Frames per session: log-uniform 1 .. max; one session in 12 lasts
     * until the traffic phase ends. */
    unsigned bits = 0;
    while (bits < 30 && (1u << (bits + 1)) <= (unsigned)g_proc.cfg->max_frames)
        bits++;
    ss->nframes = 1 + (uint32_t)rnd_below(&sl->rng, (uint64_t)1 << rnd_below(&sl->rng, bits + 1));
    if (chance(&sl->rng, 83))
        ss->nframes = UINT32_MAX;
    unsigned p = (unsigned)rnd_below(&sl->rng, 100);
    ss->plan = p < 50 ? END_HALF_CLOSE : p < 65 ? END_CLIENT_RESET : p < 80 ? END_SERVER_RESET : END_CANCEL;
    atomic_init(&ss->reset_seq, UINT32_MAX);
    atomic_init(&ss->final_len, UINT64_MAX);
    atomic_init(&ss->refs, 2);
    STAT_INC(conns);
    if (ux)
        STAT_INC(conns_unix);
    uint64_t a = atomic_fetch_add(&g_proc.st->active, 1) + 1, pk = atomic_load(&g_proc.st->active_peak);
    while (a > pk && !atomic_compare_exchange_weak(&g_proc.st->active_peak, &pk, a)) {
    }
    return ss;
}

/* The last task out: close, check the dead handle, free. */
static bool session_release(sess *ss)
{
    if (atomic_fetch_sub(&ss->refs, 1) != 1)
        return false;
    sess_close(ss, false);
    stale_check(ss->c, true, "closed session");
    if (chance(&ss->sl->rng, 62))
        forged_check(&ss->sl->rng);
    ss->sl->prev = ss->c;
    atomic_fetch_sub(&g_proc.st->active, 1);
    free(ss);
    return true;
}

static void reader_task(void *arg)
{
    sess *ss = arg;
    slot *sl = ss->sl;
    reader_run(ss);
    if (session_release(ss))
        slot_loop(sl);
}

static void slot_loop(slot *sl)
{
    for (;;) {
        sess *ss = session_open(sl);
        if (!ss)
            return;
        int rc = np_go(reader_task, ss);
        if (rc != 0) {
            soak_fail(&g_proc.st->unexpected, "np_go: %s", np_strerror(rc));
            sess_abort(ss);
            session_release(ss);
            session_release(ss);
            return;
        }
        writer_run(ss);
        if (!session_release(ss))
            return; /* the reader goes on with this slot */
    }
}

static void slot_task(void *arg)
{
    slot *sl = arg;
    int64_t now = np_now();
    if (sl->start_at > now)
        soak_sleep(sl->start_at - now);
    slot_loop(sl);
}

static void client_main_task(void *arg)
{
    (void)arg;
    int rc = np_go(soak_monitor_task, NULL);
    if (rc != 0)
        soak_fail(&g_proc.st->unexpected, "np_go: %s", np_strerror(rc));
    for (int i = 0; i < g_cl.nslots; i++)
        if ((rc = np_go(slot_task, &g_cl.slots[i])) != 0)
            soak_fail(&g_proc.st->unexpected, "np_go: %s", np_strerror(rc));
}

int soak_client_main(void)
{
    const soak_cfg *cfg = g_proc.cfg;
    soak_shared *sh = g_proc.sh;
    int k = g_proc.index - 1;
    /* This process's share of the connections. */
    g_cl.nslots = cfg->conns / cfg->procs + (k < cfg->conns % cfg->procs);
    g_cl.slots = calloc((size_t)g_cl.nslots, sizeof *g_cl.slots);
    if (!g_cl.slots)
        return 1;
    g_cl.t_end = atomic_load(&sh->t_end);
    int64_t t0 = atomic_load(&sh->t0), ramp = (int64_t)cfg->ramp_ms * NP_MILLISECOND;
    uint64_t rng = cfg->seed ^ soak_mix64((uint64_t)g_proc.index);
    for (int i = 0; i < g_cl.nslots; i++) {
        g_cl.slots[i].idx = i;
        g_cl.slots[i].rng = rnd(&rng);
        /* Spread the first dials over the ramp (-r), so 15,000 SYNs do not
         * all land on the accept queue (4,096) at once, and the first tasks'
         * stacks (a fiber each under TSan, made one at a time) come in a
         * stream rather than a flood. */
        g_cl.slots[i].start_at = t0 + ramp * i / g_cl.nslots;
    }
    soak_run_runtime(client_main_task, NULL);
    free(g_cl.slots);
    return 0;
}
