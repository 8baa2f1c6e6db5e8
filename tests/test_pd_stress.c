/* Poll descriptor stress: threads waiting on real socketpairs, the poll
 * thread delivering readiness and running deadline timers, other threads
 * closing descriptors and moving deadlines at random. Registered once per
 * poller backend (pd_stress_<backend>).
 *
 * What is checked, for every wait (np__pd_reset + np__pd_wait) that returns:
 *
 *   0            read: the socket has data or EOF right now (MSG_PEEK). Data
 *                is only ever consumed by the waiter itself, after which its
 *                generation ends, so a read wake-up without data can only be
 *                a stale event (the previous owner's) or a spurious one.
 *                (Readiness may legitimately win over a concurrent close, see
 *                tests/model/pollsem.pml, but it is still readiness: the data
 *                is still there.) Write: not checked strictly; an EPOLLOUT
 *                edge from before the reset may arrive after it, which is a
 *                legitimate spurious wake-up for a writer.
 *   -ECANCELED   this generation was unblocked (np__pd_unblock) by the test.
 *   -ETIMEDOUT   a deadline set on THIS generation of the pd explains it: see
 *                timeout_explained(). A generation without any deadline never
 *                times out (it would be the previous owner's timer), a
 *                timeout never comes before the deadline, and never from a
 *                deadline that had already been cleared or moved later before
 *                the wait began.
 *   anything else fails (-EIO included: unix sockets never report a bare
 *                error).
 *
 * No lost wake-up: for a waiter between its reset and its return the test
 * knows the earliest event that obliges the pd to wake it (obligation():
 * data sent, the peer drained after the writer found its buffer full, the
 * unblock, the deadline in force passing). A monitor thread fails the case if
 * a waiter is still waiting WATCHDOG after that, or if no wait returned at
 * all for that long. In a busy generation a lost wake-up would soon be masked
 * (the next unblock wakes the waiter anyway), so part of the generations are
 * "quiet" (quiet_skip()): actors leave them alone while a reason to wake is
 * due, and a lost wake-up leaves the waiter parked for good. When the run
 * ends, the actors stop and every waiter must settle, within WATCHDOG, parked
 * with nothing due (all_quiescent()): a lost wake-up from any point of the
 * run is caught however short the run. Only then is every descriptor
 * unblocked, and every thread must be joined. The summary gives the wake-up
 * latency (cause to return) seen in quiet generations.
 *
 * No double wake-up: the thread waiter aborts by itself on a second ready for
 * one park; at its end every waiting thread checks parks == readies, and
 * np__pd_waiters() must be back to 0.
 *
 * Reuse: every generation opens a fresh socketpair and pd, so freed pds come
 * back (from the closing thread's magazine, or, through a reaper thread that
 * closes other threads' pds, from the global list). Pds are tracked by
 * address; the summary counts reuses, cross-thread reuses, and reuses of a pd
 * whose previous owner closed it "dirty" (deadline timers armed or about to
 * fire, unread data, an event in flight). The checks above then prove the new
 * owner never saw the old owner's events or timers.
 *
 * Cases (each ~NP_STRESS_SECONDS, default 3 s, of wall time plus teardown;
 * bounded by generations too):
 *   t_mixed           readers; actors write, shut down, unblock and move
 *                     read/write/both deadlines at random.
 *   t_deadline_storm  a reader and a writer per pd; actors mostly move
 *                     deadlines (READ, WRITE, BOTH, READ+WRITE to the same
 *                     time so the combined timer is used, clears, past and
 *                     far values) while the waiters are parked.
 *   t_reuse           short generations, half of them without any deadline,
 *                     closed dirty, half of the closes done by a reaper
 *                     thread: the next owner of the same pd must not see a
 *                     stale read event or a stale timeout.
 *
 * NP_STRESS_SEED=<n> fixes the random seed (scheduling still varies);
 * NP_STRESS_SECONDS=<s> changes the run time per case.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"
#include "pd/netpoll_driver.h"
#include "np_test.h"
#include "pd/pd.h"
#include "pd/waiter.h"

enum { R = 0, W = 1 }; /* direction index: read, write */

#define MAX_CONNS 16
#define MAX_ACTORS 4
#define LOG_CAP 64
#define MAX_GENS 1000000L
#define WATCHDOG (10 * NP_SECOND)
#define LATE (100 * NP_MILLISECOND)
#define US NP_MICROSECOND
#define MS NP_MILLISECOND

/* ---- configuration ------------------------------------------------------ */

enum { PROFILE_MIXED, PROFILE_STORM, PROFILE_REUSE };

typedef struct cfg {
    const char *name;
    int nconns;
    bool writers;           /* a write waiter per connection too */
    int nactors;
    int profile;            /* how deadlines are picked */
    /* actor action weights */
    int w_deadline, w_pair, w_write, w_eof, w_unblock, w_drain;
    int64_t life_min, life_max; /* an actor unblocks a generation this old (0: never) */
    int timeout_end_pct;    /* on ETIMEDOUT: end the generation, else extend */
    int no_deadline_pct;    /* generations nobody sets a deadline on */
    int own_deadline_pct;   /* the reader sets a deadline itself at the start */
    int dirty_close_pct;    /* leave armed timers / pending data at close */
    int reaper_pct;         /* closes handed to the reaper thread */
    int actor_sleep_us;     /* max pause between actions */
    int quiet_pct;          /* "quiet" generations, see quiet_skip() */
} cfg;

/* ---- shared state ------------------------------------------------------- */

/* One set_deadline call, as the test made it: `d` the value passed, `before`
 * and `after` np_now() around the call (all under the connection mutex, so
 * the calls for one pd are totally ordered). */
typedef struct dl_entry {
    int64_t before, after, d;
} dl_entry;

typedef struct dir_state {
    dl_entry log[LOG_CAP]; /* deadline calls that may still explain a timeout */
    int nlog;
    bool waiting;          /* inside reset/wait (for the monitor) */
    int64_t t_start;       /* np_now() just before the reset */
    int64_t t_park;        /* writer: np_now() after its send hit EAGAIN */
} dir_state;

typedef struct conn {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int idx;
    pthread_t rthread, wthread;
    /* everything below under mu */
    bool live;             /* pd open: actors may act on it */
    bool r_exited;         /* the reader thread is gone (writer exits too) */
    uint64_t gen;
    np__pd *pd;
    int sv[2];             /* pd is on sv[0]; actors write/drain sv[1] */
    int64_t born, life;
    bool no_deadlines;
    bool quiet;
    int64_t cur_d[2];      /* deadline last set per direction (0: none) */
    bool unblocked;
    int64_t unblock_at;
    bool wrote, eof;       /* data (or EOF) sent towards sv[0] */
    int64_t write_at;
    int64_t drain_at;      /* last time sv[1] was drained */
    bool w_done;           /* the writer finished this generation */
    bool reused, reused_dirty;
    dir_state dir[2];
} conn;

typedef struct stats {
    _Atomic long gens, waits, parks, dl_sets, dl_noops, writes, eofs, drains, unblocks;
    _Atomic long data, eof_seen, dirty_closes, reaped;
    _Atomic long ready[2], canceled[2], timedout[2];
    _Atomic long reuse, reuse_cross, reuse_dirty;
    _Atomic long quiet_wakes, late_wakes; /* late: > LATE after its cause */
    _Atomic int64_t max_late;
} stats;

static const cfg *G;
static conn conns[MAX_CONNS];
static stats S;
static _Atomic bool stop_flag, actors_stop, monitor_stop;
static _Atomic int64_t last_progress;
static uint64_t seed;

static _Thread_local uint64_t rng;
static _Thread_local int my_id;

/* ---- helpers ------------------------------------------------------------ */

static void rnd_seed(uint64_t s)
{
    rng = s * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    if (!rng)
        rng = 1;
}

static uint64_t rnd(void)
{
    uint64_t x = rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [lo, hi). */
static int64_t rnd_range(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo));
}

static bool chance(int pct)
{
    return (int)(rnd() % 100) < pct;
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = { .tv_sec = ns / NP_SECOND, .tv_nsec = ns % NP_SECOND };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    NP_CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void progress(void)
{
    atomic_store(&last_progress, np_now());
}

/* ---- pd address tracking (reuse) ------------------------------------------ */

#define PSET_BITS 14
#define PSET_CAP (1u << PSET_BITS)

typedef struct pset_ent {
    np__pd *pd;
    int closer;  /* my_id of the thread that last closed it */
    bool dirty;  /* closed with a deadline set (armed, firing or expired), data
                  * unread or an event in flight */
} pset_ent;

static pset_ent pset[PSET_CAP];
static unsigned pset_n;
static pthread_mutex_t pset_mu = PTHREAD_MUTEX_INITIALIZER;

/* Under pset_mu. */
static pset_ent *pset_get(np__pd *pd)
{
    uint64_t h = ((uint64_t)(uintptr_t)pd * 0x9E3779B97F4A7C15ull) >> (64 - PSET_BITS);
    for (unsigned i = 0;; i++) {
        pset_ent *e = &pset[(h + i) & (PSET_CAP - 1)];
        if (e->pd == pd)
            return e;
        if (!e->pd) {
            NP_CHECK_LT(pset_n, PSET_CAP / 2);
            pset_n++;
            e->pd = pd;
            e->closer = -1;
            return e;
        }
    }
}

/* A pd just came out of np__pd_open: was it somebody's before? */
static void note_open(np__pd *pd, bool *reused, bool *dirty)
{
    pthread_mutex_lock(&pset_mu);
    pset_ent *e = pset_get(pd);
    *reused = e->closer >= 0;
    *dirty = *reused && e->dirty;
    if (*reused) {
        atomic_fetch_add(&S.reuse, 1);
        if (e->closer != my_id)
            atomic_fetch_add(&S.reuse_cross, 1);
        if (e->dirty)
            atomic_fetch_add(&S.reuse_dirty, 1);
    }
    e->closer = -1;
    pthread_mutex_unlock(&pset_mu);
}

/* Before np__pd_close: once it returns, pd may be reopened by anyone. */
static void note_close(np__pd *pd, bool dirty)
{
    pthread_mutex_lock(&pset_mu);
    pset_ent *e = pset_get(pd);
    e->closer = my_id;
    e->dirty = dirty;
    pthread_mutex_unlock(&pset_mu);
}

static void close_all(np__pd *pd, const int sv[2], bool dirty)
{
    note_close(pd, dirty);
    np__pd_close(pd);
    close(sv[0]);
    close(sv[1]);
}

/* ---- the reaper: closes pds other threads opened ------------------------ */

#define RQ_CAP 32

typedef struct reap_item {
    np__pd *pd;
    int sv[2];
    bool dirty;
} reap_item;

static reap_item rq[RQ_CAP];
static int rq_head, rq_n;
static bool rq_stop;
static pthread_mutex_t rq_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rq_cv = PTHREAD_COND_INITIALIZER;

static bool reaper_push(np__pd *pd, const int sv[2], bool dirty)
{
    pthread_mutex_lock(&rq_mu);
    bool ok = rq_n < RQ_CAP;
    if (ok) {
        rq[(rq_head + rq_n) % RQ_CAP] = (reap_item){ pd, { sv[0], sv[1] }, dirty };
        rq_n++;
        pthread_cond_signal(&rq_cv);
    }
    pthread_mutex_unlock(&rq_mu);
    return ok;
}

static void *reaper_main(void *arg)
{
    (void)arg;
    my_id = 1000;
    for (;;) {
        pthread_mutex_lock(&rq_mu);
        while (rq_n == 0 && !rq_stop)
            pthread_cond_wait(&rq_cv, &rq_mu);
        if (rq_n == 0) {
            pthread_mutex_unlock(&rq_mu);
            break;
        }
        reap_item it = rq[rq_head];
        rq_head = (rq_head + 1) % RQ_CAP;
        rq_n--;
        pthread_mutex_unlock(&rq_mu);
        close_all(it.pd, it.sv, it.dirty);
        atomic_fetch_add(&S.reaped, 1);
    }
    return NULL;
}

/* ---- deadlines ------------------------------------------------------------ */

static const char *const dir_name[2] = { "read", "write" };

static int64_t obligation(const conn *c, int dir);

/* Whether a -ETIMEDOUT returned by a wait in direction d that began (before
 * its reset) at t_start and returned at t_ret can be explained by the
 * deadline calls logged for this generation.
 *
 * The expired bit a wait observes at time t (t_start <= t <= t_ret) was
 * published by the last deadline call j whose publish came before t: either
 * by the call itself (its value d_j was <= now inside the call) or by its
 * timer firing (at a time >= d_j; a timer of an earlier call is stale, its
 * seq was bumped). Hence: d_j != 0, d_j <= t_ret, call j began before t_ret,
 * and call j+1 (if any) had not yet completed at t_start. A later call that
 * left the deadline unchanged carries the same value and is itself a witness.
 * Calls are serialized by the connection mutex, and t_start is taken under
 * it, so calls that completed before t_start are exactly the ones logged at
 * that point; all but the last of them are pruned then (prune()). */
static bool timeout_explained(const dir_state *d, int64_t t_start, int64_t t_ret)
{
    for (int j = 0; j < d->nlog; j++) {
        const dl_entry *e = &d->log[j];
        if (e->d == 0 || e->d > t_ret || e->before > t_ret)
            continue;
        if (j + 1 < d->nlog && d->log[j + 1].after < t_start)
            continue;
        return true;
    }
    return false;
}

/* Under mu, before a wait: keep only the call in force. */
static void prune(dir_state *d)
{
    if (d->nlog > 1) {
        d->log[0] = d->log[d->nlog - 1];
        d->nlog = 1;
    }
}

/* Under mu: set a deadline and log it for the directions that have waiters
 * to check. Returns false if it was not set (log full). */
static bool set_dl(conn *c, int64_t d, int mode)
{
    if (c->unblocked) {
        /* Documented no-op once closing; nothing to log. */
        np__pd_set_deadline(c->pd, d, mode);
        atomic_fetch_add(&S.dl_noops, 1);
        return true;
    }
    bool log_r = mode & NP__PD_READ;
    bool log_w = (mode & NP__PD_WRITE) && G->writers;
    if ((log_r && c->dir[R].nlog == LOG_CAP) || (log_w && c->dir[W].nlog == LOG_CAP))
        return false;
    int64_t before = np_now();
    np__pd_set_deadline(c->pd, d, mode);
    int64_t after = np_now();
    dl_entry e = { before, after, d };
    if (log_r)
        c->dir[R].log[c->dir[R].nlog++] = e;
    if (log_w)
        c->dir[W].log[c->dir[W].nlog++] = e;
    if (mode & NP__PD_READ)
        c->cur_d[R] = d;
    if (mode & NP__PD_WRITE)
        c->cur_d[W] = d;
    atomic_fetch_add(&S.dl_sets, 1);
    return true;
}

static int64_t pick_deadline(void)
{
    int64_t now = np_now();
    unsigned r = (unsigned)(rnd() % 100);
    switch (G->profile) {
    case PROFILE_MIXED:
        if (r < 15)
            return 0;                                   /* clear */
        if (r < 25)
            return now - rnd_range(0, 2 * MS);          /* past */
        if (r < 28)
            return -1 - rnd_range(0, 1000);             /* negative: past */
        if (r < 70)
            return now + rnd_range(0, 3 * MS);          /* soon */
        if (r < 88)
            return now + rnd_range(3 * MS, 20 * MS);
        return now + 3600 * NP_SECOND;                  /* far */
    case PROFILE_STORM:
        if (r < 12)
            return 0;
        if (r < 20)
            return now + 3600 * NP_SECOND;
        if (r < 25)
            return now;                                 /* exactly now: past */
        return now + rnd_range(-300 * US, 1500 * US);
    default: /* PROFILE_REUSE */
        if (r < 10)
            return now - rnd_range(0, MS);
        return now + rnd_range(0, 1500 * US);
    }
}

static int pick_mode(void)
{
    unsigned r = (unsigned)(rnd() % 100);
    if (G->profile == PROFILE_STORM)
        return r < 35 ? NP__PD_READ : r < 60 ? NP__PD_WRITE : NP__PD_BOTH;
    return r < 60 ? NP__PD_READ : r < 75 ? NP__PD_WRITE : NP__PD_BOTH;
}

/* Under mu, after a timeout in direction dir: move that deadline away from
 * "expired" (clear, later, much later), as a caller extending it would. */
static void extend(conn *c, int dir)
{
    int64_t now = np_now();
    unsigned r = (unsigned)(rnd() % 100);
    int64_t d = r < 30 ? 0 : r < 45 ? now + 3600 * NP_SECOND : now + rnd_range(100 * US, 3 * MS);
    int mode = dir == R ? NP__PD_READ : NP__PD_WRITE;
    if (G->profile == PROFILE_STORM && chance(30))
        mode = NP__PD_BOTH;
    set_dl(c, d, mode);
}

/* ---- actions (under mu, on a live generation) ----------------------------- */

static void do_unblock(conn *c)
{
    if (c->unblocked)
        return;
    c->unblocked = true;
    np__pd_unblock(c->pd);
    c->unblock_at = np_now();
    atomic_fetch_add(&S.unblocks, 1);
}

static void do_write(conn *c)
{
    if (c->eof)
        return;
    ssize_t n = send(c->sv[1], "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    NP_CHECK_MSG(n == 1, "send to peer: %zd (%s)", n, strerror(errno));
    if (!c->wrote) {
        c->wrote = true;
        c->write_at = np_now();
    }
    atomic_fetch_add(&S.writes, 1);
}

static void do_eof(conn *c)
{
    if (c->eof)
        return;
    NP_CHECK_SYS(shutdown(c->sv[1], chance(50) ? SHUT_WR : SHUT_RDWR));
    c->eof = true;
    if (!c->wrote) {
        c->wrote = true;
        c->write_at = np_now();
    }
    atomic_fetch_add(&S.eofs, 1);
}

static void do_drain(conn *c)
{
    char buf[4096];
    for (int i = 0; i < 256; i++) {
        ssize_t n = recv(c->sv[1], buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0)
            continue;
        NP_CHECK_MSG(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK),
                     "drain: %zd (%s)", n, strerror(errno));
        break;
    }
    c->drain_at = np_now();
    atomic_fetch_add(&S.drains, 1);
}

/* A quiet generation gets at most one reason to wake at a time: actors leave
 * it alone while a waiter has a reason to wake that is already due (data,
 * unblock, a deadline that has passed), and while no waiter is there at all
 * (so that reasons cannot pile up between two waits). A lost wake-up is then
 * never masked by a later action: the waiter stays parked, and the monitor
 * or the final quiescence check (run()) catches it. Noisy generations are
 * the opposite: actions keep landing on parked waiters. */
static bool quiet_skip(const conn *c)
{
    if (!c->quiet)
        return false;
    int64_t now = np_now();
    if (!c->dir[R].waiting || obligation(c, R) <= now)
        return true;
    if (G->writers && !c->w_done && (!c->dir[W].waiting || obligation(c, W) <= now))
        return true;
    return false;
}

static void act(conn *c)
{
    if (quiet_skip(c))
        return;
    if (!c->unblocked && c->life && np_now() - c->born > c->life) {
        do_unblock(c);
        return;
    }
    int total = G->w_deadline + G->w_pair + G->w_write + G->w_eof + G->w_unblock + G->w_drain;
    int r = (int)(rnd() % (uint64_t)total);
    if ((r -= G->w_deadline) < 0) {
        if (!c->no_deadlines)
            set_dl(c, pick_deadline(), pick_mode());
    } else if ((r -= G->w_pair) < 0) {
        /* READ then WRITE to one time: the second call makes rd == wd, so
         * one timer serves both directions (the combined path). */
        if (!c->no_deadlines) {
            int64_t d = pick_deadline();
            if (set_dl(c, d, NP__PD_READ))
                set_dl(c, d, NP__PD_WRITE);
        }
    } else if ((r -= G->w_write) < 0) {
        do_write(c);
    } else if ((r -= G->w_eof) < 0) {
        do_eof(c);
    } else if ((r -= G->w_unblock) < 0) {
        do_unblock(c);
    } else {
        do_drain(c);
    }
}

static void *actor_main(void *arg)
{
    my_id = 500 + (int)(intptr_t)arg;
    rnd_seed(seed ^ (uint64_t)my_id << 32);
    while (!atomic_load(&actors_stop)) {
        conn *c = &conns[rnd() % (uint64_t)G->nconns];
        pthread_mutex_lock(&c->mu);
        if (c->live)
            act(c);
        pthread_mutex_unlock(&c->mu);
        sleep_ns(rnd_range(0, G->actor_sleep_us * US + 1));
    }
    return NULL;
}

/* ---- result checks ---------------------------------------------------------- */

static void fail_timeout(const conn *c, int dir, int64_t t_start, int64_t t_ret)
{
    const dir_state *d = &c->dir[dir];
    char buf[4096];
    int n = snprintf(buf, sizeof buf,
                     "conn %d gen %" PRIu64 " (pd %p%s%s): %s wait returned -ETIMEDOUT after "
                     "%" PRId64 " us, but no deadline set on this generation explains it; "
                     "%d call(s) logged (times relative to the wait's start, us):",
                     c->idx, c->gen, (void *)c->pd, c->reused ? ", reused" : "",
                     c->reused_dirty ? " after a dirty close" : "", dir_name[dir],
                     (t_ret - t_start) / US, d->nlog);
    for (int j = 0; j < d->nlog && n > 0 && (size_t)n < sizeof buf; j++) {
        const dl_entry *e = &d->log[j];
        n += snprintf(buf + n, sizeof buf - (size_t)n,
                      " [d=%s%" PRId64 " call %" PRId64 "..%" PRId64 "]", e->d ? "" : "none:",
                      e->d ? (e->d - t_start) / US : 0, (e->before - t_start) / US,
                      (e->after - t_start) / US);
    }
    np_test_fail(__FILE__, __LINE__, "%s", buf);
}

/* Under mu: judge the result of one reset/wait in direction dir. */
static void classify(conn *c, int dir, int rc, int64_t t_start, int64_t t_ret)
{
    switch (rc) {
    case 0:
        atomic_fetch_add(&S.ready[dir], 1);
        if (dir == R) {
            char b;
            ssize_t n = recv(c->sv[0], &b, 1, MSG_PEEK | MSG_DONTWAIT);
            NP_CHECK_MSG(n >= 0,
                         "conn %d gen %" PRIu64 " (pd %p%s%s): read wait returned ready but there "
                         "is nothing to read (%s; data %s): a stale or spurious read event",
                         c->idx, c->gen, (void *)c->pd, c->reused ? ", reused" : "",
                         c->reused_dirty ? " after a dirty close" : "", strerror(errno),
                         c->wrote ? "was sent" : "was never sent");
            NP_CHECK(c->wrote);
        }
        break;
    case -ECANCELED:
        atomic_fetch_add(&S.canceled[dir], 1);
        NP_CHECK_MSG(c->unblocked,
                     "conn %d gen %" PRIu64 " (pd %p%s): %s wait returned -ECANCELED but this "
                     "generation was never unblocked",
                     c->idx, c->gen, (void *)c->pd, c->reused ? ", reused" : "", dir_name[dir]);
        break;
    case -ETIMEDOUT:
        atomic_fetch_add(&S.timedout[dir], 1);
        if (!timeout_explained(&c->dir[dir], t_start, t_ret))
            fail_timeout(c, dir, t_start, t_ret);
        break;
    default:
        np_test_fail(__FILE__, __LINE__, "conn %d gen %" PRIu64 ": %s wait returned %d (%s)",
                     c->idx, c->gen, dir_name[dir], rc, np_strerror(rc));
    }
}

/* ---- the monitor: lost wake-ups ------------------------------------------ */

/* Under mu: the earliest time by which the waiter in dir must have been woken
 * (INT64_MAX if nothing obliges the pd to wake it). */
static int64_t obligation(const conn *c, int dir)
{
    const dir_state *d = &c->dir[dir];
    int64_t o = INT64_MAX;
    if (c->unblocked)
        o = max64(c->unblock_at, d->t_start);
    /* Data stays until the reader takes it: sent at any time, it must end
     * the wait (found by the recv, or its edge comes after the reset). */
    if (dir == R && c->wrote && max64(c->write_at, d->t_start) < o)
        o = max64(c->write_at, d->t_start);
    /* The buffer was full at t_park; a drain after that makes it writable
     * after the writer's reset: an edge the writer must get. */
    if (dir == W && d->t_park && c->drain_at > d->t_park && c->drain_at < o)
        o = c->drain_at;
    /* The deadline in force (the last call) must expire the wait. */
    if (d->nlog > 0) {
        const dl_entry *e = &d->log[d->nlog - 1];
        if (e->d != 0) {
            int64_t t = max64(max64(e->d, e->after), d->t_start);
            if (t < o)
                o = t;
        }
    }
    return o;
}

static void *monitor_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&monitor_stop)) {
        sleep_ns(20 * MS);
        int64_t now = np_now();
        for (int i = 0; i < G->nconns; i++) {
            conn *c = &conns[i];
            pthread_mutex_lock(&c->mu);
            for (int dir = R; dir <= W; dir++) {
                if (!c->dir[dir].waiting)
                    continue;
                int64_t o = obligation(c, dir);
                NP_CHECK_MSG(o == INT64_MAX || now - o < WATCHDOG,
                             "lost wake-up: conn %d gen %" PRIu64 " (pd %p): the %s waiter has "
                             "been waiting %" PRId64 " ms, %" PRId64 " ms after it should have "
                             "been woken (unblocked=%d wrote=%d drained=%d deadlines=%d)",
                             c->idx, c->gen, (void *)c->pd, dir_name[dir],
                             (now - c->dir[dir].t_start) / MS, (now - o) / MS, c->unblocked,
                             c->wrote, c->drain_at > c->dir[dir].t_park, c->dir[dir].nlog);
            }
            pthread_mutex_unlock(&c->mu);
        }
        /* Once stopping, waiters may all be parked with nothing to wake
         * them: the final quiescence check takes over. */
        int64_t lp = atomic_load(&last_progress);
        NP_CHECK_MSG(atomic_load(&stop_flag) || now - lp < WATCHDOG,
                     "no wait returned for %" PRId64 " ms", (now - lp) / MS);
    }
    return NULL;
}

/* Under mu, as a wait returns: how long after its (single, in a quiet
 * generation) cause. Fails past WATCHDOG, counts what took over LATE. */
static void note_latency(const conn *c, int dir, int rc, int64_t t_ret)
{
    int64_t o = obligation(c, dir);
    if (!c->quiet || o == INT64_MAX || (rc == 0 && dir == W))
        return;
    int64_t late = t_ret - o;
    NP_CHECK_MSG(late < WATCHDOG, "conn %d gen %" PRIu64 ": %s wait returned %" PRId64
                 " ms after it should have been woken", c->idx, c->gen, dir_name[dir], late / MS);
    atomic_fetch_add(&S.quiet_wakes, 1);
    if (late > LATE)
        atomic_fetch_add(&S.late_wakes, 1);
    int64_t m = atomic_load(&S.max_late);
    while (late > m && !atomic_compare_exchange_weak(&S.max_late, &m, late)) {
    }
}

/* Whether every waiter is parked with nothing left to wake it before
 * WATCHDOG (or its reader has finished): once the actors have stopped, that
 * is where every waiter must end up, unless a wake-up was lost. */
static bool all_quiescent(char *why, size_t len)
{
    for (int i = 0; i < G->nconns; i++) {
        conn *c = &conns[i];
        bool ok = true;
        pthread_mutex_lock(&c->mu);
        for (int dir = R; dir <= W && ok; dir++) {
            if (!c->live || (dir == W && (!G->writers || c->w_done)))
                continue;
            const dir_state *d = &c->dir[dir];
            int64_t now = np_now();
            if (!d->waiting || obligation(c, dir) <= now + WATCHDOG) {
                ok = false;
                snprintf(why, len, "conn %d gen %" PRIu64 ": %s waiter %s (unblocked=%d wrote=%d "
                         "deadlines=%d, for %" PRId64 " ms)", c->idx, c->gen, dir_name[dir],
                         !d->waiting ? "between waits"
                         : obligation(c, dir) <= now ? "still waiting for a due wake-up"
                                                     : "waiting for a deadline",
                         c->unblocked, c->wrote, d->nlog, (np_now() - d->t_start) / MS);
            }
        }
        pthread_mutex_unlock(&c->mu);
        if (!ok)
            return false;
    }
    return true;
}

/* ---- waiters ---------------------------------------------------------------- */

static void check_waiter_counts(void)
{
    unsigned long parks, readies;
    np__thread_waiter_counts(&parks, &readies);
    NP_CHECK_MSG(parks == readies, "thread %d: %lu parks but %lu readies", my_id, parks, readies);
    atomic_fetch_add(&S.parks, (long)parks);
}

/* The reader ends its generation: leave it dirty maybe, unblock it, wait for
 * the writer, hand the pd to the reaper or close it. */
static void end_gen(conn *c, bool consumed)
{
    pthread_mutex_lock(&c->mu);
    bool dirty = false;
    if (!c->unblocked && chance(G->dirty_close_pct)) {
        /* Timers armed to fire right now, an event in flight: all of it must
         * stay with this generation.
         * Logged like any other call: the writer may still be waiting. */
        set_dl(c, np_now() + rnd_range(-50 * US, 100 * US), pick_mode());
        if (chance(50))
            set_dl(c, np_now() + rnd_range(0, 200 * US), NP__PD_BOTH);
        if (chance(60))
            do_write(c);
        dirty = true;
        atomic_fetch_add(&S.dirty_closes, 1);
    }
    dirty |= c->cur_d[R] != 0 || c->cur_d[W] != 0 || (c->wrote && !consumed);
    do_unblock(c);
    while (G->writers && !c->w_done)
        pthread_cond_wait(&c->cv, &c->mu);
    c->live = false;
    np__pd *pd = c->pd;
    int sv[2] = { c->sv[0], c->sv[1] };
    pthread_mutex_unlock(&c->mu);
    if (!(G->reaper_pct && chance(G->reaper_pct) && reaper_push(pd, sv, dirty)))
        close_all(pd, sv, dirty);
}

/* One generation of a connection: returns false (and opens nothing) once
 * the test is stopping. */
static bool run_gen(conn *c)
{
    int sv[2];
    NP_CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv));
    if (G->writers) {
        int sz = 4096; /* a small send buffer fills in a few sends */
        NP_CHECK_SYS(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz));
    }
    np__pd *pd;
    NP_CHECK_OK(np__pd_open(sv[0], &pd));
    bool reused, reused_dirty;
    note_open(pd, &reused, &reused_dirty);

    pthread_mutex_lock(&c->mu);
    if (atomic_load(&stop_flag) || atomic_load(&S.gens) >= MAX_GENS) {
        pthread_mutex_unlock(&c->mu);
        np__pd_unblock(pd);
        close_all(pd, sv, false);
        return false;
    }
    c->gen++;
    c->live = true;
    c->pd = pd;
    c->sv[0] = sv[0];
    c->sv[1] = sv[1];
    c->born = np_now();
    c->life = G->life_max ? rnd_range(G->life_min, G->life_max) : 0;
    c->no_deadlines = chance(G->no_deadline_pct);
    c->quiet = chance(G->quiet_pct);
    c->cur_d[R] = c->cur_d[W] = 0;
    c->unblocked = false;
    c->wrote = c->eof = false;
    c->write_at = c->drain_at = 0;
    c->w_done = false;
    c->reused = reused;
    c->reused_dirty = reused_dirty;
    memset(c->dir, 0, sizeof c->dir);
    if (!c->no_deadlines && chance(G->own_deadline_pct))
        set_dl(c, np_now() + rnd_range(0, 1500 * US), chance(70) ? NP__PD_READ : NP__PD_BOTH);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    atomic_fetch_add(&S.gens, 1);

    dir_state *d = &c->dir[R];
    bool consumed = false;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        prune(d);
        int64_t t_start = d->t_start = np_now();
        d->waiting = true;
        pthread_mutex_unlock(&c->mu);

        int rc = np__pd_reset(pd, NP__PD_READ);
        if (rc == 0) {
            char b;
            ssize_t n = recv(sv[0], &b, 1, MSG_DONTWAIT);
            if (n >= 0) {
                atomic_fetch_add(n ? &S.data : &S.eof_seen, 1);
                pthread_mutex_lock(&c->mu);
                d->waiting = false;
                pthread_mutex_unlock(&c->mu);
                consumed = true;
                break;
            }
            NP_CHECK_MSG(errno == EAGAIN || errno == EWOULDBLOCK, "recv: %s", strerror(errno));
            rc = np__pd_wait(pd, NP__PD_READ);
            atomic_fetch_add(&S.waits, 1);
        }
        int64_t t_ret = np_now();
        progress();

        pthread_mutex_lock(&c->mu);
        d->waiting = false;
        note_latency(c, R, rc, t_ret);
        classify(c, R, rc, t_start, t_ret);
        bool done = rc == -ECANCELED;
        if (rc == -ETIMEDOUT) {
            if (chance(G->timeout_end_pct))
                done = true;
            else
                extend(c, R);
        }
        pthread_mutex_unlock(&c->mu);
        if (done)
            break;
    }
    end_gen(c, consumed);
    progress();
    return true;
}

static void *reader_main(void *arg)
{
    conn *c = arg;
    my_id = 1 + c->idx;
    rnd_seed(seed ^ (uint64_t)my_id);
    while (run_gen(c)) {
    }
    check_waiter_counts();
    pthread_mutex_lock(&c->mu);
    c->r_exited = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Sends until the buffer is full. */
static void fill(int fd)
{
    static const char buf[2048];
    for (int i = 0; i < 4096; i++) {
        ssize_t n = send(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0)
            continue;
        NP_CHECK_MSG(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "send: %zd (%s)", n,
                     strerror(errno));
        return;
    }
    NP_CHECK_MSG(false, "send never filled the buffer");
}

/* The writer's part of one generation: until it is cancelled. */
static void write_gen(conn *c, np__pd *pd, int fd)
{
    dir_state *d = &c->dir[W];
    for (;;) {
        pthread_mutex_lock(&c->mu);
        prune(d);
        int64_t t_start = d->t_start = np_now();
        d->t_park = 0;
        d->waiting = true;
        pthread_mutex_unlock(&c->mu);

        int rc = np__pd_reset(pd, NP__PD_WRITE);
        if (rc == 0) {
            fill(fd);
            pthread_mutex_lock(&c->mu);
            d->t_park = np_now();
            pthread_mutex_unlock(&c->mu);
            rc = np__pd_wait(pd, NP__PD_WRITE);
            atomic_fetch_add(&S.waits, 1);
        }
        int64_t t_ret = np_now();
        progress();

        pthread_mutex_lock(&c->mu);
        d->waiting = false;
        note_latency(c, W, rc, t_ret);
        classify(c, W, rc, t_start, t_ret);
        if (rc == -ECANCELED) {
            c->w_done = true;
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
            return;
        }
        if (rc == -ETIMEDOUT)
            extend(c, W);
        pthread_mutex_unlock(&c->mu);
    }
}

static void *writer_main(void *arg)
{
    conn *c = arg;
    my_id = 100 + c->idx;
    rnd_seed(seed ^ (uint64_t)my_id);
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        while (!(c->live && c->gen != seen) && !c->r_exited)
            pthread_cond_wait(&c->cv, &c->mu);
        if (!(c->live && c->gen != seen)) {
            pthread_mutex_unlock(&c->mu);
            break;
        }
        seen = c->gen;
        np__pd *pd = c->pd;
        int fd = c->sv[0];
        pthread_mutex_unlock(&c->mu);
        write_gen(c, pd, fd);
    }
    check_waiter_counts();
    return NULL;
}

/* ---- the driver ---------------------------------------------------------- */

static double stress_seconds(void)
{
    const char *s = getenv("NP_STRESS_SECONDS");
    double v = s ? strtod(s, NULL) : 0;
    return v > 0 ? v : 3.0;
}

static void run(const cfg *cf)
{
    NP_CHECK_STR_EQ(np_poller_name(), NP_EXPECT_POLLER);
    NP_CHECK(cf->nconns <= MAX_CONNS && cf->nactors <= MAX_ACTORS);
    G = cf;
    memset(&S, 0, sizeof S);
    memset(pset, 0, sizeof pset);
    pset_n = 0;
    rq_head = rq_n = 0;
    rq_stop = false;
    atomic_store(&stop_flag, false);
    atomic_store(&actors_stop, false);
    atomic_store(&monitor_stop, false);
    const char *s = getenv("NP_STRESS_SEED");
    seed = s ? strtoull(s, NULL, 0) : (uint64_t)np_now() ^ ((uint64_t)getpid() << 32);
    my_id = 0;
    rnd_seed(seed);

    int fds0 = count_fds();
    NP_CHECK_OK(np__pollthread_start());
    for (int i = 0; i < cf->nconns; i++) {
        conn *c = &conns[i];
        memset(c, 0, sizeof *c);
        c->idx = i;
        NP_CHECK_OK(pthread_mutex_init(&c->mu, NULL));
        NP_CHECK_OK(pthread_cond_init(&c->cv, NULL));
    }
    int64_t t0 = np_now();
    int64_t t_end = t0 + (int64_t)(stress_seconds() * (double)NP_SECOND);
    progress();

    pthread_t monitor, reaper, actors[MAX_ACTORS];
    NP_CHECK_OK(pthread_create(&monitor, NULL, monitor_main, NULL));
    if (cf->reaper_pct)
        NP_CHECK_OK(pthread_create(&reaper, NULL, reaper_main, NULL));
    for (int i = 0; i < cf->nconns; i++) {
        NP_CHECK_OK(pthread_create(&conns[i].rthread, NULL, reader_main, &conns[i]));
        if (cf->writers)
            NP_CHECK_OK(pthread_create(&conns[i].wthread, NULL, writer_main, &conns[i]));
    }
    for (int i = 0; i < cf->nactors; i++)
        NP_CHECK_OK(pthread_create(&actors[i], NULL, actor_main, (void *)(intptr_t)i));

    while (np_now() < t_end && atomic_load(&S.gens) < MAX_GENS)
        sleep_ns(10 * MS);

    /* Stop: no new generations (a reader checks stop_flag under the mutex
     * before publishing one), then unblock every live one. */
    atomic_store(&stop_flag, true);
    atomic_store(&actors_stop, true);
    for (int i = 0; i < cf->nactors; i++)
        NP_CHECK_OK(pthread_join(actors[i], NULL));
    /* Nothing acts any more: every pending reason to wake (data, unblock,
     * due deadline, drain) must be served, and the waiters settle parked
     * with nothing due (a waiter that times out extends its deadline, and
     * sooner or later clears it or moves it far away). A lost wake-up leaves
     * a waiter parked with its reason pending: caught here even if the run
     * was shorter than WATCHDOG. */
    {
        char why[512] = "";
        int64_t until = np_now() + WATCHDOG;
        while (!all_quiescent(why, sizeof why)) {
            NP_CHECK_MSG(np_now() < until, "lost wake-up? not quiescent after the actors "
                         "stopped: %s", why);
            sleep_ns(5 * MS);
        }
    }
    for (int i = 0; i < cf->nconns; i++) {
        conn *c = &conns[i];
        pthread_mutex_lock(&c->mu);
        if (c->live)
            do_unblock(c);
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    /* Joins complete or the monitor fails the case (lost wake-up). */
    for (int i = 0; i < cf->nconns; i++) {
        NP_CHECK_OK(pthread_join(conns[i].rthread, NULL));
        if (cf->writers)
            NP_CHECK_OK(pthread_join(conns[i].wthread, NULL));
    }
    if (cf->reaper_pct) {
        pthread_mutex_lock(&rq_mu);
        rq_stop = true;
        pthread_cond_signal(&rq_cv);
        pthread_mutex_unlock(&rq_mu);
        NP_CHECK_OK(pthread_join(reaper, NULL));
    }
    atomic_store(&monitor_stop, true);
    NP_CHECK_OK(pthread_join(monitor, NULL));
    double secs = (double)(np_now() - t0) / (double)NP_SECOND;

    NP_CHECK_EQ(np__pd_waiters(), 0);
    for (int i = 0; i < cf->nconns; i++) {
        NP_CHECK(!conns[i].live);
        pthread_mutex_destroy(&conns[i].mu);
        pthread_cond_destroy(&conns[i].cv);
    }
    np__pollthread_stop();
    NP_CHECK_EQ(count_fds(), fds0);

    printf("  %s [%s] seed=%#" PRIx64 " %.1fs: gens=%ld waits=%ld parks=%ld data=%ld eof=%ld\n"
           "    read: ready=%ld canceled=%ld timedout=%ld"
           "   write: ready=%ld canceled=%ld timedout=%ld\n"
           "    deadline sets=%ld (no-op after unblock %ld) writes=%ld drains=%ld unblocks=%ld\n"
           "    pds=%u reuse=%ld cross-thread=%ld after-dirty-close=%ld"
           " (dirty closes %ld, reaped %ld)\n"
           "    quiet wakes=%ld: max latency %.2f ms, %ld over %d ms\n",
           cf->name, NP_EXPECT_POLLER, seed, secs, atomic_load(&S.gens), atomic_load(&S.waits),
           atomic_load(&S.parks), atomic_load(&S.data), atomic_load(&S.eof_seen),
           atomic_load(&S.ready[R]), atomic_load(&S.canceled[R]), atomic_load(&S.timedout[R]),
           atomic_load(&S.ready[W]), atomic_load(&S.canceled[W]), atomic_load(&S.timedout[W]),
           atomic_load(&S.dl_sets), atomic_load(&S.dl_noops), atomic_load(&S.writes),
           atomic_load(&S.drains), atomic_load(&S.unblocks), pset_n, atomic_load(&S.reuse),
           atomic_load(&S.reuse_cross), atomic_load(&S.reuse_dirty), atomic_load(&S.dirty_closes),
           atomic_load(&S.reaped), atomic_load(&S.quiet_wakes),
           (double)atomic_load(&S.max_late) / (double)MS, atomic_load(&S.late_wakes),
           (int)(LATE / MS));
    fflush(stdout);

    /* The run must have exercised what it claims to. */
    NP_CHECK_GE(atomic_load(&S.gens), 50);
    NP_CHECK_GT(atomic_load(&S.parks), 0);
    NP_CHECK_GT(atomic_load(&S.reuse), 0);
    NP_CHECK_GT(atomic_load(&S.canceled[R]), 0);
}

/* ---- cases ---------------------------------------------------------------- */

static void t_mixed(void)
{
    static const cfg cf = {
        .name = "mixed", .nconns = 12, .writers = false, .nactors = 2,
        .profile = PROFILE_MIXED,
        .w_deadline = 35, .w_pair = 5, .w_write = 20, .w_eof = 4, .w_unblock = 14, .w_drain = 0,
        .timeout_end_pct = 50, .no_deadline_pct = 20, .own_deadline_pct = 20,
        .dirty_close_pct = 30, .reaper_pct = 25, .actor_sleep_us = 300, .quiet_pct = 50,
    };
    run(&cf);
    NP_CHECK_GT(atomic_load(&S.ready[R]), 0);
    NP_CHECK_GT(atomic_load(&S.timedout[R]), 0);
    NP_CHECK_GT(atomic_load(&S.data), 0);
    NP_CHECK_GT(atomic_load(&S.eof_seen), 0);
}

static void t_deadline_storm(void)
{
    static const cfg cf = {
        .name = "deadline_storm", .nconns = 6, .writers = true, .nactors = 2,
        .profile = PROFILE_STORM,
        .w_deadline = 70, .w_pair = 10, .w_write = 2, .w_eof = 0, .w_unblock = 1, .w_drain = 15,
        .life_min = 5 * MS, .life_max = 40 * MS,
        .timeout_end_pct = 0, .no_deadline_pct = 0, .own_deadline_pct = 30,
        .dirty_close_pct = 20, .reaper_pct = 0, .actor_sleep_us = 150, .quiet_pct = 30,
    };
    run(&cf);
    NP_CHECK_GT(atomic_load(&S.timedout[R]), 0);
    NP_CHECK_GT(atomic_load(&S.timedout[W]), 0);
    NP_CHECK_GT(atomic_load(&S.canceled[W]), 0);
    NP_CHECK_GT(atomic_load(&S.ready[W]), 0);
}

static void t_reuse(void)
{
    static const cfg cf = {
        .name = "reuse", .nconns = 8, .writers = false, .nactors = 2,
        .profile = PROFILE_REUSE,
        .w_deadline = 15, .w_pair = 0, .w_write = 40, .w_eof = 5, .w_unblock = 35, .w_drain = 0,
        .timeout_end_pct = 100, .no_deadline_pct = 50, .own_deadline_pct = 50,
        .dirty_close_pct = 80, .reaper_pct = 50, .actor_sleep_us = 100, .quiet_pct = 50,
    };
    run(&cf);
    NP_CHECK_GT(atomic_load(&S.reuse_cross), 0);
    NP_CHECK_GT(atomic_load(&S.reuse_dirty), 0);
    NP_CHECK_GT(atomic_load(&S.ready[R]), 0);
}

NP_TEST_LIST(NP_CASE(t_mixed), NP_CASE(t_deadline_storm), NP_CASE(t_reuse))
