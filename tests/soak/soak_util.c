/* The soak's shared pieces: logging, deadline bookkeeping and the watch on
 * sleeps, the write loop, stale-handle checks, socket helpers, /proc and
 * the monitor task. Frames and their verifier are in soak_frame.c. */
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "soak.h"

soak_proc g_proc;

/* At most this many failure lines per process: the counters tell the rest. */
#define MAX_MSGS 12

/* ---- logging --------------------------------------------------------------------------------- */

__attribute__((format(printf, 1, 0))) static void vlog(const char *fmt, va_list ap)
{
    /* One write(2) per line, so lines of the processes do not interleave. */
    char line[512];
    int k = snprintf(line, sizeof line, "soak[%s]: ", g_proc.name);
    if (k < 0 || (size_t)k >= sizeof line)
        return;
    int m = vsnprintf(line + k, sizeof line - (size_t)k - 1, fmt, ap);
    if (m < 0)
        return;
    size_t len = (size_t)k + (size_t)m;
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void soak_note(const char *fmt, ...)
{
    if (atomic_fetch_add_explicit(&g_proc.msgs, 1, memory_order_relaxed) >= MAX_MSGS)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

void soak_fail(_Atomic uint64_t *counter, const char *fmt, ...)
{
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
    if (atomic_fetch_add_explicit(&g_proc.msgs, 1, memory_order_relaxed) >= MAX_MSGS)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

/* ---- deadlines ------------------------------------------------------------------------------- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void sleep_checked(int64_t ns, int64_t until);

static int set_dl(np_conn c, enum dl_dir dir, int64_t d)
{
    switch (dir) {
    case DIR_READ: return np_set_read_deadline(c, d);
    case DIR_WRITE: return np_set_write_deadline(c, d);
    default: return np_set_deadline(c, d);
    }
}

int dl_arm_kind(dl *x, np_conn c, enum dl_dir dir, uint64_t *rng, enum dl_kind kind)
{
    int64_t now = np_now();
    x->kind = kind;
    switch (kind) {
    case DL_TEST:
        x->d = now + (int64_t)rnd_below(rng, 2 * NP_MILLISECOND + 1);
        break;
    case DL_PAST:
        /* Every form of "at or before now" the header names. */
        switch (rnd_below(rng, 5)) {
        case 0: x->d = now - 1 - (int64_t)rnd_below(rng, NP_SECOND); break;
        case 1: x->d = -1; break;
        case 2: x->d = INT64_MIN; break;
        case 3: x->d = 1; break;
        default: x->d = now; break;
        }
        break;
    case DL_ELAPSED:
        x->d = now + NP_MICROSECOND + (int64_t)rnd_below(rng, 200 * NP_MICROSECOND);
        break;
    default:
        x->d = now + g_proc.guard;
        break;
    }
    x->t_set = now;
    x->c = c;
    int rc = set_dl(c, dir, x->d);
    if (rc < 0)
        return rc;
    if (kind == DL_ELAPSED) {
        /* Let the deadline pass without the connection doing anything:
         * spinning (this worker runs nothing else meanwhile), yielding
         * (other tasks run) or sleeping (the timer machinery runs). */
        unsigned how = (unsigned)rnd_below(rng, 3);
        if (how == 2)
            sleep_checked(0, x->d);
        while (np_now() < x->d) {
            if (how == 1)
                np_yield();
            else
                cpu_relax();
        }
    }
    if (kind == DL_PAST || kind == DL_ELAPSED)
        STAT_INC(probes);
    x->t_before = np_now();
    return 0;
}

int dl_arm(dl *x, np_conn c, enum dl_dir dir, uint64_t *rng, bool guard_only)
{
    enum dl_kind kind = DL_GUARD;
    if (!guard_only) {
        unsigned r = (unsigned)rnd_below(rng, 1000);
        unsigned t = (unsigned)g_proc.cfg->test_permille, b = (unsigned)g_proc.cfg->probe_permille;
        if (r < t)
            kind = DL_TEST;
        else if (r < t + b / 2)
            kind = DL_PAST;
        else if (r < t + b)
            kind = DL_ELAPSED;
    }
    return dl_arm_kind(x, c, dir, rng, kind);
}

static const char *kind_name(enum dl_kind k)
{
    static const char *n[] = { "guard", "test", "past", "elapsed" };
    return n[k];
}

bool dl_book(const dl *x, long long result, const char *what, uint32_t conn_id)
{
    int64_t t = np_now();
    if (result == -ETIMEDOUT) {
        if (t < x->d)
            soak_fail(&g_proc.st->early,
                      "%s conn %#x: -ETIMEDOUT %" PRId64 " ns before its %s deadline (%" PRId64
                      " ns after the call began)",
                      what, conn_id, x->d - t, kind_name(x->kind), t - x->t_before);
        if (x->kind == DL_GUARD) {
            char diag[256];
            sock_diag(x->c, diag, sizeof diag);
            soak_fail(&g_proc.st->stalls, "%s conn %#x: stall: no progress for %.1f s (guard); %s",
                      what, conn_id, (double)(t - x->t_before) / 1e9, diag);
        } else {
            STAT_INC(test_timeouts);
        }
    } else if (result >= 0 && x->t_before >= x->d) {
        /* The deadline was past when the call began: it had to fail. */
        bool at_set = x->d <= x->t_set;
        soak_fail(at_set ? &g_proc.st->ignored_past : &g_proc.st->ignored_elapsed,
                  "%s conn %#x: returned %lld with its %s deadline %" PRId64 " ns past when the call"
                  " began (%s when set)",
                  what, conn_id, result, kind_name(x->kind),
                  x->d == INT64_MIN ? INT64_MAX : x->t_before - x->d,
                  at_set ? "already past" : "still ahead");
    }
    /* A short deadline stands in for the guard on its call: if it let the
     * call go on a guard's length past it, that is a stall as well. */
    int64_t from = x->d > x->t_before ? x->d : x->t_before;
    if (x->kind != DL_GUARD && t - from > g_proc.guard)
        soak_fail(&g_proc.st->stalls, "%s conn %#x: returned %lld %.1f s after its %s deadline",
                  what, conn_id, result, (double)(t - from) / 1e9, kind_name(x->kind));
    return result == -ETIMEDOUT;
}

/* Sleeps have no deadline to guard them, so they are watched instead: each
 * registers its due time in a table (keyed by an address on the sleeping
 * task's stack, unique while it sleeps), and the monitor task reports any
 * entry still there a guard past its due time: a sleep that was not woken.
 * A full neighbourhood in the table just leaves a sleep unwatched. */
#define SLEEP_SLOTS 65536
#define SLEEP_PROBE 8
static struct {
    _Atomic int64_t due; /* 0 = free */
    _Atomic int64_t start;
    _Atomic int reported;
} g_sleeps[SLEEP_SLOTS];

static int sleep_register(const void *key, int64_t start, int64_t due)
{
    uint64_t h = soak_mix64((uint64_t)(uintptr_t)key);
    for (int k = 0; k < SLEEP_PROBE; k++) {
        int i = (int)((h + (uint64_t)k) % SLEEP_SLOTS);
        int64_t zero = 0;
        if (atomic_compare_exchange_strong(&g_sleeps[i].due, &zero, due)) {
            atomic_store(&g_sleeps[i].start, start);
            return i;
        }
    }
    return -1;
}

/* Returns whether the monitor reported this sleep as overdue. */
static bool sleep_unregister(int i)
{
    if (i < 0)
        return false;
    bool reported = atomic_exchange(&g_sleeps[i].reported, 0);
    atomic_store(&g_sleeps[i].due, 0);
    return reported;
}

static void sleeps_check(void)
{
    int64_t now = np_now();
    for (int i = 0; i < SLEEP_SLOTS; i++) {
        int64_t due = atomic_load_explicit(&g_sleeps[i].due, memory_order_relaxed);
        if (due && now - due > g_proc.guard && !atomic_exchange(&g_sleeps[i].reported, 1))
            soak_fail(&g_proc.st->stalls,
                      "a sleep of %.3f s due %.1f s ago has not returned",
                      (double)(due - atomic_load(&g_sleeps[i].start)) / 1e9,
                      (double)(now - due) / 1e9);
    }
}

/* np_sleep(ns) if `until` is 0, else np_sleep_until(until). */
static void sleep_checked(int64_t ns, int64_t until)
{
    int64_t t0 = np_now(), due = until ? until : t0 + ns;
    int slot = sleep_register(&t0, t0, due > 0 ? due : 1);
    int rc = until ? np_sleep_until(until) : np_sleep(ns);
    int64_t t1 = np_now();
    if (sleep_unregister(slot))
        soak_note("the overdue sleep of %.3f s returned %.1f s late", (double)(due - t0) / 1e9,
                 (double)(t1 - due) / 1e9);
    if (rc != 0)
        soak_fail(&g_proc.st->unexpected, "%s: %s", until ? "np_sleep_until" : "np_sleep",
                  np_strerror(rc));
    else if (t1 < due)
        soak_fail(&g_proc.st->early, "%s(%" PRId64 " ns) returned %" PRId64 " ns early",
                  until ? "np_sleep_until" : "np_sleep", due - t0, due - t1);
}

void soak_sleep(int64_t ns)
{
    sleep_checked(ns, 0);
}

/* ---- I/O helpers ----------------------------------------------------------------------------- */

long long write_all(np_conn c, const uint8_t *p, size_t n, uint64_t *rng, uint32_t conn_id,
                    size_t *done, bool guard_only)
{
    return write_all_ex(c, p, n, rng, conn_id, done, guard_only, NULL, NULL);
}

long long write_all_ex(np_conn c, const uint8_t *p, size_t n, uint64_t *rng, uint32_t conn_id,
                       size_t *done, bool guard_only, uint64_t (*progress)(void *), void *ctx)
{
    size_t off = 0;
    long long r = 0;
    while (off < n) {
        dl x;
        int rc = dl_arm(&x, c, DIR_WRITE, rng, guard_only);
        if (rc < 0) {
            r = rc;
            break;
        }
        uint64_t mark = progress ? progress(ctx) : 0;
        r = np_write(c, p + off, n - off);
        if (r == -ETIMEDOUT && x.kind == DL_GUARD && progress && progress(ctx) != mark &&
            np_now() >= x.d) {
            STAT_INC(flow_waits); /* see write_all_ex in soak.h */
            continue;
        }
        if (r > 0) {
            dl_book(&x, r, "np_write", conn_id);
            off += (size_t)r;
            if (off == n)
                break;
            /* Short: a deadline, a close or an error stopped it. The next
             * call, under the same deadline, reports which. */
            STAT_INC(short_writes);
            x.t_before = np_now();
            r = np_write(c, p + off, n - off);
            if (r == -ETIMEDOUT && x.kind == DL_GUARD && progress && np_now() >= x.d) {
                /* The guard passed during a write that moved bytes: slow,
                 * not stalled (see write_all_ex). */
                STAT_INC(flow_waits);
                continue;
            }
            if (r > 0) {
                if (x.t_before < x.d)
                    soak_fail(&g_proc.st->unexpected,
                              "np_write conn %#x: a short count, then the next call wrote %lld",
                              conn_id, r);
                dl_book(&x, r, "np_write (after a short count)", conn_id);
                off += (size_t)r;
                continue;
            }
        }
        if (r == 0) {
            soak_fail(&g_proc.st->unexpected, "np_write conn %#x of %zu bytes returned 0", conn_id,
                      n - off);
            r = -EIO;
            break;
        }
        if (dl_book(&x, r, "np_write", conn_id)) {
            if (x.kind == DL_GUARD)
                break;
            continue;
        }
        break;
    }
    *done = off;
    return off == n ? (long long)n : r;
}

#define EXPECT_EBADF(what, c, expr)                                                              \
    do {                                                                                         \
        long long r_ = (long long)(expr);                                                        \
        STAT_INC(stale_checks);                                                                  \
        if (r_ != -EBADF)                                                                        \
            soak_fail(&g_proc.st->stale_bad, "%s handle %#" PRIx64 ": %s returned %lld (%s)",    \
                      what, (c).id, #expr, r_, r_ < 0 ? np_strerror((int)r_) : "success");       \
    } while (0)

void stale_check(np_conn c, bool full, const char *what)
{
    char buf[128];
    EXPECT_EBADF(what, c, np_local_addr(c, buf, sizeof buf));
    EXPECT_EBADF(what, c, np_remote_addr(c, buf, sizeof buf));
    EXPECT_EBADF(what, c, np_conn_fd(c));
    if (!full)
        return;
    EXPECT_EBADF(what, c, np_set_deadline(c, 1));
    EXPECT_EBADF(what, c, np_set_read_deadline(c, 0));
    EXPECT_EBADF(what, c, np_set_write_deadline(c, np_now() + NP_SECOND));
    EXPECT_EBADF(what, c, np_read(c, buf, 1));
    EXPECT_EBADF(what, c, np_read(c, buf, 0));
    EXPECT_EBADF(what, c, np_write(c, "x", 1));
    EXPECT_EBADF(what, c, np_wait_readable(c));
    EXPECT_EBADF(what, c, np_close_write(c));
    EXPECT_EBADF(what, c, np_close(c));
}

void stale_listener_check(np_listener l)
{
    char buf[128];
    np_conn c;
    EXPECT_EBADF("listener", l, np_listener_addr(l, buf, sizeof buf));
    EXPECT_EBADF("listener", l, np_listener_set_deadline(l, 1));
    EXPECT_EBADF("listener", l, np_accept(l, &c));
    EXPECT_EBADF("listener", l, np_listener_close(l));
}

void forged_check(uint64_t *rng)
{
    /* id 0 is never issued: everything on it is -EBADF. */
    stale_check((np_conn){ 0 }, true, "forged id 0");
    stale_listener_check((np_listener){ 0 });
    /* A random id is almost surely not live, but could be: only harmless
     * calls, and a success is noted, not failed. */
    char buf[128];
    for (int i = 0; i < 2; i++) {
        np_conn f = { rnd(rng) | (i ? 0 : (uint64_t)1 << 63) };
        int r1 = np_local_addr(f, buf, sizeof buf), r2 = np_conn_fd(f);
        STAT_ADD(stale_checks, 2);
        if (r1 == 0 || r2 >= 0)
            STAT_INC(forged_live);
        else if (r1 != -EBADF || r2 != -EBADF)
            soak_fail(&g_proc.st->stale_bad, "forged handle %#" PRIx64 ": np_local_addr %d, np_conn_fd %d",
                      f.id, r1, r2);
    }
}

void sock_diag(np_conn c, char *buf, size_t len)
{
    char la[64] = "?", ra[64] = "?";
    np_local_addr(c, la, sizeof la);
    np_remote_addr(c, ra, sizeof ra);
    int fd = np_conn_fd(c), inq = -1, outq = -1;
    if (fd < 0) {
        snprintf(buf, len, "%s -> %s, no fd (%s)", la, ra, np_strerror(fd));
        return;
    }
    ioctl(fd, FIONREAD, &inq);
    ioctl(fd, TIOCOUTQ, &outq);
    struct tcp_info ti;
    socklen_t tl = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0)
        snprintf(buf, len,
                 "%s -> %s: inq %d outq %d tcp state %u probes %u backoff %u rto %u us"
                 " snd_mss %u rcv_space %u unacked %u",
                 la, ra, inq, outq, ti.tcpi_state, ti.tcpi_probes, ti.tcpi_backoff, ti.tcpi_rto,
                 ti.tcpi_snd_mss, ti.tcpi_rcv_space, ti.tcpi_unacked);
    else
        snprintf(buf, len, "%s -> %s: inq %d outq %d", la, ra, inq, outq);
}

int set_linger0(np_conn c)
{
    int fd = np_conn_fd(c);
    if (fd < 0)
        return fd;
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) < 0)
        return -errno;
    return 0;
}

void maybe_small_buffers(np_conn c, uint64_t *rng)
{
    if (!chance(rng, 250))
        return;
    int fd = np_conn_fd(c);
    if (fd < 0) {
        soak_fail(&g_proc.st->unexpected, "np_conn_fd on a live connection: %s", np_strerror(fd));
        return;
    }
    /* The send side only. Shrinking SO_RCVBUF after the handshake makes the
     * kernel drop segments inside the window it already advertised, and
     * loopback then waits out retransmission timeouts of seconds: a stall
     * of TCP, not of the library. */
    int snd = 4096 + (int)rnd_below(rng, 28 * 1024);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd) < 0)
        soak_fail(&g_proc.st->unexpected, "setsockopt SO_SNDBUF: %s", np_strerror(errno));
}

/* ---- /proc ----------------------------------------------------------------------------------- */

int64_t soak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    long long size = 0, res = 0;
    int n = fscanf(f, "%lld %lld", &size, &res);
    fclose(f);
    if (n != 2)
        return -1;
    return (int64_t)res * (sysconf(_SC_PAGESIZE) / 1024);
}

int soak_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0, self = dirfd(d);
    char own[16];
    snprintf(own, sizeof own, "%d", self);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && strcmp(e->d_name, own) != 0)
            n++;
    closedir(d);
    return n;
}

static void peak(int64_t rss)
{
    int64_t p = atomic_load(&g_proc.st->rss_peak_kb);
    while (rss > p && !atomic_compare_exchange_weak(&g_proc.st->rss_peak_kb, &p, rss)) {
    }
}

void soak_monitor_task(void *arg)
{
    (void)arg;
    soak_shared *sh = g_proc.sh;
    bool warm = false;
    for (;;) {
        int64_t now = np_now(), rss = soak_rss_kb();
        int64_t t_warm = atomic_load(&sh->t_warm), t_end = atomic_load(&sh->t_end);
        peak(rss);
        if (!warm && t_warm && now >= t_warm) {
            atomic_store(&g_proc.st->rss_start_kb, rss);
            warm = true;
        }
        /* The end sample is the last one taken before t_end: once the
         * traffic phase is over, sessions drain and their task stacks are
         * released, which would hide growth. */
        if (warm && now < t_end)
            atomic_store(&g_proc.st->rss_end_kb, rss);
        sleeps_check();
        /* A client's monitor ends once its sessions have drained, the
         * server's at the parent's word (which may come early, if the
         * clients failed). */
        if (g_proc.index == 0 ? atomic_load(&sh->stop) != 0
                              : t_end && now >= t_end && atomic_load(&g_proc.st->active) == 0)
            break;
        soak_sleep(250 * NP_MILLISECOND);
    }
}

int soak_run_runtime(void (*main_task)(void *), void *arg)
{
    np_config c = { .workers = g_proc.cfg->workers };
    atomic_store(&g_proc.st->fds_before, soak_count_fds());
    int rc = np_run(&c, main_task, arg);
    atomic_store(&g_proc.st->fds_after, soak_count_fds());
    atomic_store(&g_proc.st->np_run_rc, rc);
    if (rc != 0)
        soak_fail(&g_proc.st->unexpected, "np_run: %s", np_strerror(rc));
    return rc;
}
