/* api_fuzz: the bookkeeping. Every call goes into a ring of recent calls
 * and a registry of what each actor is inside now, both printed with a
 * failure, a hang (the watchdog) or a crash (sanitizer death callback or
 * signal handler); results are counted per call for the summary; fz_expect
 * holds the allow-lists' logic. See fuzz.h. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"

const char *const fz_call_name[C_COUNT + 1] = {
    "np_now", "np_strerror", "np_poller_name", "np_run", "np_go", "np_yield", "np_sleep",
    "np_sleep_until", "np_listen", "np_listen_reuseport", "np_listener_addr", "np_accept",
    "np_listener_set_deadline", "np_listener_close", "np_dial", "np_read", "np_write",
    "np_wait_readable", "np_set_deadline", "np_set_read_deadline", "np_set_write_deadline",
    "np_close", "np_close_write", "np_local_addr", "np_remote_addr", "np_conn_fd",
    "np_offload", "np_mutex_lock", "np_mutex_lock_until", "np_mutex_trylock", "np_mutex_unlock",
    "np_cond_wait", "np_cond_signal", "np_cond_broadcast", "np_waitgroup_add",
    "np_waitgroup_done", "np_waitgroup_wait", "np_chan_make", "np_chan_send", "np_chan_recv",
    "np_chan_close", "np_chan_free", "np_chan_len", "np_chan_cap", "np_select",
    "np_addr_parse", "np_addr_format", "np_listen_packet", "np_read_from", "np_write_to",
    "np_wait_fd", "np_conn_from_fd", "np_signal_notify", "np_signal_stop", "np_lookup_host",
    "np_stats_get", "np_dump", "usleep (blocks the thread)",
    "scenario",
};

_Atomic uint64_t fz_cur_seed;
_Atomic long fz_failures;
bool fz_verbose;
bool fz_dns;
bool fz_names = true;
bool fz_skip[C_COUNT + 1];
int fz_pid;
const char *fz_poller;
bool fz_ipv6;
char fz_regular_file[64];
_Atomic uint64_t fz_grave[FZ_GRAVE];
_Atomic unsigned fz_grave_n;

static int opt_watchdog = 20;
static _Atomic long seed_failures;
static _Atomic int sigpipes;

/* ---- the ring of recent calls, and what each actor is doing now ---------- */

#define RING 2048
typedef struct ring_entry {
    _Atomic unsigned seq;
    _Atomic int actor, call, done;
    _Atomic char kind;
    _Atomic uint64_t handle;
    _Atomic int64_t arg, t;
    _Atomic long long rc;
} ring_entry;
static ring_entry ring[RING];
static _Atomic unsigned ring_pos;

#define REG 256
typedef struct reg_entry {
    _Atomic int used, id, call;
    _Atomic char kind;
    _Atomic uint64_t handle;
    _Atomic int64_t since;
} reg_entry;
static reg_entry reg[REG];

static _Atomic unsigned long stats[C_COUNT + 1][140];
static _Atomic int64_t seed_t0;
static _Atomic int64_t watchdog_deadline; /* 0: disarmed */
static const char *_Atomic phase = "start";
static _Atomic int dumped;

int64_t fz_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void fz_actor_init(fz_actor *a, fz_run *run, char kind, int ctx, uint64_t salt)
{
    memset(a, 0, sizeof *a);
    a->run = run;
    a->kind = kind;
    a->ctx = ctx;
    a->id = run ? atomic_fetch_add(&run->actor_seq, 1) : 0;
    a->rng = atomic_load(&fz_cur_seed) * 0x100000001b3ull ^ salt ^ ((uint64_t)a->id << 40) ^
             ((uint64_t)(run ? run->index : 7) << 56);
    fz_splitmix(&a->rng);
    a->buf = malloc(FZ_BUF);
    a->abuf = malloc(FZ_ABUF);
    /* 64 bytes followed by an inaccessible page: calls given a longer
     * length than the buffer fault in the kernel, not in our memory */
    long ps = sysconf(_SC_PAGESIZE);
    unsigned char *g = mmap(NULL, (size_t)ps * 2, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!a->buf || !a->abuf || g == MAP_FAILED)
        abort();
    mprotect(g + ps, (size_t)ps, PROT_NONE);
    a->guard = g + ps - FZ_GUARD;
    memset(a->buf, 0x5a, FZ_BUF);
    /* a registry entry, so the watchdog can say what everyone is in */
    int r = -1;
    for (int i = 0; i < REG; i++) {
        int z = 0;
        if (atomic_compare_exchange_strong(&reg[i].used, &z, 1)) {
            r = i;
            break;
        }
    }
    a->acc_slot = -1;
    if (r >= 0) {
        atomic_store(&reg[r].id, a->id);
        atomic_store(&reg[r].kind, kind);
        atomic_store(&reg[r].call, -1);
    }
    a->reg = r;
}

void fz_actor_fini(fz_actor *a)
{
    if (a->reg >= 0)
        atomic_store(&reg[a->reg].used, 0);
    long ps = sysconf(_SC_PAGESIZE);
    munmap(a->guard + FZ_GUARD - ps, (size_t)ps * 2);
    free(a->buf);
    free(a->abuf);
    a->buf = NULL;
    a->abuf = NULL;
}

unsigned fz_begin(fz_actor *a, int call, uint64_t handle, int64_t arg)
{
    unsigned i = atomic_fetch_add(&ring_pos, 1);
    ring_entry *e = &ring[i % RING];
    atomic_store(&e->seq, i);
    atomic_store(&e->actor, a->id);
    atomic_store(&e->kind, a->kind);
    atomic_store(&e->call, call);
    atomic_store(&e->handle, handle);
    atomic_store(&e->arg, arg);
    atomic_store(&e->t, fz_mono_ns());
    atomic_store(&e->done, 0);
    int r = a->reg;
    if (r >= 0) {
        atomic_store(&reg[r].call, call);
        atomic_store(&reg[r].handle, handle);
        atomic_store(&reg[r].since, fz_mono_ns());
    }
    return i;
}

void fz_end(fz_actor *a, unsigned idx, int call, long long rc)
{
    ring_entry *e = &ring[idx % RING];
    if (atomic_load(&e->seq) == idx) {
        atomic_store(&e->rc, rc);
        atomic_store(&e->done, 1);
    }
    if (a->reg >= 0)
        atomic_store(&reg[a->reg].call, -1);
    int b = rc >= 0 ? 0 : (-rc < 138 ? (int)-rc : rc == NP_ENOHOST ? 138 : 139);
    atomic_fetch_add_explicit(&stats[call][b], 1, memory_order_relaxed);
}

/* Printing from a dying process: plain write(2) of snprintf'd lines. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line)
        n = sizeof line - 1;
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

static void dump_ring(int last)
{
    unsigned end = atomic_load(&ring_pos);
    unsigned start = end > (unsigned)last ? end - (unsigned)last : 0;
    int64_t t0 = atomic_load(&seed_t0);
    say("  last %u calls (actor, call, handle, arg -> result; ms since the seed began):\n",
        end - start);
    for (unsigned i = start; i != end; i++) {
        ring_entry *e = &ring[i % RING];
        if (atomic_load(&e->seq) != i)
            continue;
        int c = atomic_load(&e->call);
        long long rc = atomic_load(&e->rc);
        char res[96];
        if (!atomic_load(&e->done))
            snprintf(res, sizeof res, "(not returned)");
        else if (rc < 0 && rc > -4096)
            snprintf(res, sizeof res, "%lld %s", rc, np_strerror((int)rc));
        else
            snprintf(res, sizeof res, "%lld", rc);
        say("    %8.3f %c%-3d %-24s h=%#" PRIx64 " arg=%" PRId64 " -> %s\n",
            (double)(atomic_load(&e->t) - t0) / 1e6, atomic_load(&e->kind), atomic_load(&e->actor),
            c >= 0 && c <= C_COUNT ? fz_call_name[c] : "?", atomic_load(&e->handle),
            atomic_load(&e->arg), res);
    }
}

static void dump_actors(void)
{
    int64_t now = fz_mono_ns();
    say("  actors inside a call now:\n");
    for (int i = 0; i < REG; i++) {
        if (!atomic_load(&reg[i].used))
            continue;
        int c = atomic_load(&reg[i].call);
        if (c < 0)
            continue;
        say("    %c%-3d in %s(h=%#" PRIx64 ") for %.1f ms\n", atomic_load(&reg[i].kind),
            atomic_load(&reg[i].id), c <= C_COUNT ? fz_call_name[c] : "?",
            atomic_load(&reg[i].handle), (double)(now - atomic_load(&reg[i].since)) / 1e6);
    }
}

void fz_fail(fz_actor *a, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    atomic_fetch_add(&fz_failures, 1);
    long n = atomic_fetch_add(&seed_failures, 1);
    if (n >= 8) {
        if (n == 8)
            say("FAIL seed=%" PRIu64 ": more failures in this seed not shown\n",
                atomic_load(&fz_cur_seed));
        return;
    }
    say("FAIL seed=%" PRIu64 " run=%d actor=%c%d: %s\n", atomic_load(&fz_cur_seed),
        a && a->run ? a->run->index : -1, a ? a->kind : '-', a ? a->id : -1, msg);
    if (n == 0)
        dump_ring(24);
}

bool fz_expect(fz_actor *a, int call, int hclass, long long rc, bool blocking,
               const int *allowed, const char *what)
{
    (void)blocking;
    if (rc >= 0) {
        if (hclass == H_DEAD) {
            fz_fail(a, "%s(%s) on a dead handle returned %lld, not -EBADF", fz_call_name[call],
                    what, rc);
            return false;
        }
        return true;
    }
    int e = (int)-rc;
    if (rc < -4095) {
        fz_fail(a, "%s(%s) returned %lld, not an errno", fz_call_name[call], what, rc);
        return false;
    }
    bool ok = false;
    if (hclass == H_DEAD) {
        ok = e == EBADF;
        for (const int *p = allowed; *p && !ok; p++)
            ok = *p == e && e == EINVAL; /* bad arguments may be found first */
    } else {
        for (const int *p = allowed; *p && !ok; p++)
            ok = *p == e;
    }
    if (!ok) {
        /* A plain thread while a runtime runs: as a task (the calls that
         * block block the thread). No runtime: -ESRCH. */
        if (a->ctx == CTX_NORUNTIME || a->ctx == CTX_ANY)
            ok = e == ESRCH;
    }
    if (!ok) {
        const char *where = a->ctx == CTX_TASK ? "a task" : a->ctx == CTX_THREAD ? "a plain thread"
                          : a->ctx == CTX_NORUNTIME ? "no runtime" : "a thread spanning np_run";
        fz_fail(a, "%s(%s) from %s on a %s handle: %lld (%s) is not a plausible result",
                fz_call_name[call], what, where,
                hclass == H_DEAD ? "dead" : hclass == H_LIVE ? "live" : "(no)", rc,
                np_strerror((int)rc));
    }
    return ok;
}

void fz_grave_push(uint64_t id)
{
    unsigned i = atomic_fetch_add(&fz_grave_n, 1);
    atomic_store(&fz_grave[i % FZ_GRAVE], id);
}

uint64_t fz_grave_pick(fz_actor *a)
{
    unsigned n = atomic_load(&fz_grave_n);
    if (n == 0)
        return 0;
    unsigned k = n < FZ_GRAVE ? n : FZ_GRAVE;
    return atomic_load(&fz_grave[(n - 1 - (unsigned)fz_below(a, k)) % FZ_GRAVE]);
}

int64_t fz_deadline(fz_actor *a, bool bounded, bool *past)
{
    int64_t now = np_now();
    int64_t d;
    bool p = true;
    switch (fz_below(a, bounded ? 9 : 14)) {
    case 0: d = 1; break;
    case 1: d = -1; break;
    case 2: d = INT64_MIN; break;
    case 3: d = now - 1; break;
    case 4: d = now - (int64_t)fz_below(a, 1000000000); break;
    case 5: d = now; p = false; break; /* at or just before the call */
    case 6: d = now + (int64_t)fz_below(a, 2000000); p = false; break;
    case 7: d = now + (int64_t)fz_below(a, 30000000); p = false; break;
    case 8: d = now + 30000000 + (int64_t)fz_below(a, 30000000); p = false; break;
    case 9: d = 0; p = false; break;
    case 10: d = INT64_MAX; p = false; break;
    case 11: d = INT64_MAX - (int64_t)fz_below(a, 1000); p = false; break;
    case 12: d = (int64_t)fz_rand(a); p = d != 0 && d <= now; break;
    default: d = now + NP_SECOND; p = false; break;
    }
    if (past)
        *past = p;
    return d;
}

void fz_sleep_ms(fz_actor *a, int ms)
{
    if (a->ctx == CTX_TASK) {
        np_sleep((int64_t)ms * NP_MILLISECOND);
        return;
    }
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

int fz_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own */
}

int fz_count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

void fz_list_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[300], t[256];
        snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(p, t, sizeof t - 1);
        t[n > 0 ? n : 0] = 0;
        say("    fd %s -> %s\n", e->d_name, t);
    }
    closedir(d);
}

/* ---- the watchdog and the death notes ------------------------------------ */

static void *watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec ts = { 0, 50 * 1000000 };
        nanosleep(&ts, NULL);
        int64_t d = atomic_load(&watchdog_deadline);
        if (d && fz_mono_ns() > d) {
            atomic_store(&dumped, 1);
            say("HANG seed=%" PRIu64 ": not finished after %d s (phase: %s)\n",
                atomic_load(&fz_cur_seed), opt_watchdog, atomic_load(&phase));
            dump_actors();
            dump_ring(60);
            say("api_fuzz: rerun with: api_fuzz %" PRIu64 "\n", atomic_load(&fz_cur_seed));
            _exit(124);
        }
    }
    return NULL;
}

static void death_note(void)
{
    int z = 0;
    if (!atomic_compare_exchange_strong(&dumped, &z, 1))
        return;
    say("api_fuzz: died during seed %" PRIu64 " (phase: %s)\n", atomic_load(&fz_cur_seed),
        atomic_load(&phase));
    dump_actors();
    dump_ring(40);
}

static void on_fatal_signal(int sig)
{
    death_note();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_sigpipe(int sig)
{
    (void)sig;
    atomic_fetch_add(&sigpipes, 1);
}

extern void __sanitizer_set_death_callback(void (*)(void)) __attribute__((weak));

/* ---- seeds, phases ---------------------------------------------------------- */

void fz_report_start(int watchdog_s)
{
    opt_watchdog = watchdog_s;
    struct sigaction sa = { 0 };
    sa.sa_handler = on_sigpipe;
    sigaction(SIGPIPE, &sa, NULL);
    if (__sanitizer_set_death_callback) {
        __sanitizer_set_death_callback(death_note);
    } else {
        int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE };
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            signal(sigs[i], on_fatal_signal);
    }
    signal(SIGABRT, on_fatal_signal);
    pthread_t wd;
    pthread_create(&wd, NULL, watchdog, NULL);
    pthread_detach(wd);
}

void fz_seed_begin(uint64_t seed)
{
    atomic_store(&fz_cur_seed, seed);
    atomic_store(&seed_failures, 0);
    atomic_store(&seed_t0, fz_mono_ns());
    atomic_store(&watchdog_deadline, fz_mono_ns() + (int64_t)opt_watchdog * 1000000000);
}

long fz_seed_end(double *ms)
{
    atomic_store(&watchdog_deadline, 0);
    *ms = (double)(fz_mono_ns() - atomic_load(&seed_t0)) / 1e6;
    return atomic_load(&seed_failures);
}

void fz_phase(const char *what)
{
    atomic_store(&phase, what);
}

int fz_take_sigpipes(void)
{
    return atomic_exchange(&sigpipes, 0);
}

void fz_summary(unsigned long nseeds, double secs)
{
    printf("api_fuzz: %lu seeds in %.1f s, poller %s, %ld failures\n", nseeds, secs, fz_poller,
           atomic_load(&fz_failures));
    printf("  %-26s %9s  results (count)\n", "call", "calls");
    int missing = 0;
    for (int c = 0; c < C_COUNT; c++) {
        unsigned long total = 0;
        char line[1024];
        size_t off = 0;
        line[0] = 0;
        for (int b = 0; b < 140; b++) {
            unsigned long v = atomic_load(&stats[c][b]);
            if (!v)
                continue;
            total += v;
            int w;
            if (b == 0)
                w = snprintf(line + off, sizeof line - off, " ok:%lu", v);
            else
                w = snprintf(line + off, sizeof line - off, " %s:%lu",
                             b == 139 ? "other" : b == 138 ? "NP_ENOHOST"
                             : strerrorname_np(b) ? strerrorname_np(b) : "?", v);
            if (w > 0 && (size_t)w < sizeof line - off)
                off += (size_t)w;
        }
        printf("  %-26s %9lu %s\n", fz_call_name[c], total, line);
        if (!total)
            missing++;
    }
    for (int c = 0; c < C_COUNT; c++)
        if (fz_skip[c])
            printf("api_fuzz: %s was skipped (--skip)\n", fz_call_name[c]);
    if (missing && nseeds >= 10)
        printf("api_fuzz: warning: %d calls never made\n", missing);
}
