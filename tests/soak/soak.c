/* np_soak: the parent process. It forks the server, waits for its
 * addresses, forks the clients, watches them (progress, a watchdog at
 * duration + slack, killing everyone if a child dies), tells the server to
 * stop once every client has exited, and prints one line per process and a
 * summary line. Exit status 0 only if every check passed.
 *
 *   np_soak [-c conns] [-d seconds] [-p client processes] [-w workers]
 *           [-g guard s] [-u unix permille] [-P pause ms] [-t test permille]
 *           [-b probe permille] [-f max frames] [-W watchdog slack s]
 *           [-r ramp ms] [-s seed] [-v]
 *
 * The parent never starts the runtime; each child starts its own after the
 * fork, as a runtime must not be forked.
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "soak.h"

/* RSS may grow this much between warm-up and the end before it counts as a
 * leak: allocator arenas, stacks touched deeper by rare paths and socket
 * buffers settle over minutes.
 *
 * Under a sanitizer RSS is shown but not judged: ASan keeps freed memory in
 * a quarantine (256 MiB per process) and shadow for every stack it has
 * seen, TSan its own shadow and history, and both grow for a long while by
 * design. There, LeakSanitizer (ASan) checks leaks at each process's exit. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SOAK_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SOAK_SANITIZED 1
#endif
#ifdef SOAK_SANITIZED
#define RSS_JUDGED false
#else
#define RSS_JUDGED true
#endif
#define RSS_SLACK_KB (64 * 1024)

static soak_shared *sh;
static pid_t pids[1 + SOAK_MAX_PROCS];
static int status_of[1 + SOAK_MAX_PROCS];
static bool exited[1 + SOAK_MAX_PROCS];
static volatile sig_atomic_t interrupted;

static void usage(void)
{
    fprintf(stderr,
            "usage: np_soak [-c conns] [-d seconds] [-p client procs] [-w workers] [-g guard s]\n"
            "               [-u unix permille] [-P max pause ms] [-t test-deadline permille]\n"
            "               [-b probe permille] [-f max frames/session] [-W watchdog slack s]\n"
            "               [-r ramp ms] [-s seed] [-v]\n");
    exit(2);
}

static int int_arg(const char *s, int lo, int hi, char opt)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "np_soak: -%c wants an integer in [%d, %d]\n", opt, lo, hi);
        exit(2);
    }
    return (int)v;
}

static void parse(int argc, char **argv, soak_cfg *c)
{
    *c = (soak_cfg){ .conns = 1000, .seconds = 10, .procs = 2, .workers = 2, .guard_s = 10,
                     .unix_permille = 125, .pause_ms = 20, .test_permille = 30,
                     .probe_permille = 20, .max_frames = 256, .slack_s = 60, .ramp_ms = -1,
                     .seed = (uint64_t)time(NULL) };
    int o;
    while ((o = getopt(argc, argv, "c:d:p:w:g:u:P:t:b:f:W:r:s:vh")) != -1) {
        switch (o) {
        case 'c': c->conns = int_arg(optarg, 1, 1000000, 'c'); break;
        case 'd': c->seconds = int_arg(optarg, 1, 86400, 'd'); break;
        case 'p': c->procs = int_arg(optarg, 1, SOAK_MAX_PROCS, 'p'); break;
        case 'w': c->workers = int_arg(optarg, 0, 1024, 'w'); break;
        case 'g': c->guard_s = int_arg(optarg, 1, 3600, 'g'); break;
        case 'u': c->unix_permille = int_arg(optarg, 0, 1000, 'u'); break;
        case 'P': c->pause_ms = int_arg(optarg, 0, 10000, 'P'); break;
        case 't': c->test_permille = int_arg(optarg, 0, 1000, 't'); break;
        case 'b': c->probe_permille = int_arg(optarg, 0, 1000, 'b'); break;
        case 'f': c->max_frames = int_arg(optarg, 1, 1 << 30, 'f'); break;
        case 'W': c->slack_s = int_arg(optarg, 1, 86400, 'W'); break;
        case 'r': c->ramp_ms = int_arg(optarg, 0, 86400000, 'r'); break;
        case 's': c->seed = strtoull(optarg, NULL, 0); break;
        case 'v': c->verbose = 1; break;
        default: usage();
        }
    }
    if (optind != argc || c->test_permille + c->probe_permille > 1000)
        usage();
    if (c->conns < c->procs)
        c->procs = c->conns;
    /* Default ramp: a quarter of the run, at most 2 s. */
    if (c->ramp_ms < 0)
        c->ramp_ms = c->seconds * 250 < 2000 ? c->seconds * 250 : 2000;
    if (c->ramp_ms > c->seconds * 1000 / 2) {
        fprintf(stderr, "np_soak: -r must be at most half the run (-d)\n");
        exit(2);
    }
    if ((int64_t)c->pause_ms * NP_MILLISECOND >= (int64_t)c->guard_s * NP_SECOND / 2) {
        fprintf(stderr, "np_soak: -P must stay well below the guard (-g)\n");
        exit(2);
    }
    /* Each process must stay below its descriptor limit: the server holds
     * every connection, a client its share (plus the runtime's few). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        long per_client = (c->conns + c->procs - 1) / c->procs;
        if (c->conns + 256 > (long)rl.rlim_cur || per_client + 64 > (long)rl.rlim_cur) {
            fprintf(stderr,
                    "np_soak: %d connections need more than the %ld descriptors a process may"
                    " open (ulimit -n); lower -c\n",
                    c->conns, (long)rl.rlim_cur);
            exit(2);
        }
    }
}

static void kill_all(int sig)
{
    for (int i = 0; i <= sh->cfg.procs; i++)
        if (pids[i] > 0 && !exited[i])
            kill(pids[i], sig);
}

static void on_signal(int sig)
{
    interrupted = sig;
}

static void msleep(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Forks child `index` (0 = server); the child never returns. */
static pid_t spawn(int index)
{
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        perror("np_soak: fork");
        kill_all(SIGKILL);
        exit(1);
    }
    if (pid > 0)
        return pid;
    /* Child: die with the parent, whatever kills it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    g_proc.sh = sh;
    g_proc.st = &sh->st[index];
    g_proc.cfg = &sh->cfg;
    g_proc.index = index;
    g_proc.guard = (int64_t)sh->cfg.guard_s * NP_SECOND;
    if (index == 0)
        snprintf(g_proc.name, sizeof g_proc.name, "server");
    else
        snprintf(g_proc.name, sizeof g_proc.name, "client %d", index);
    atomic_store(&g_proc.st->pid, (int)getpid());
    int rc = index == 0 ? soak_server_main() : soak_client_main();
    atomic_store(&g_proc.st->done, 1);
    exit(rc); /* exit, not _exit: the sanitizers' leak check runs at exit */
}

/* Reaps what has exited; a child that did not end cleanly takes the
 * others down (its counters are already in shared memory). */
static bool reap(bool *failed)
{
    bool any = false;
    int st;
    pid_t p;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
        for (int i = 0; i <= sh->cfg.procs; i++) {
            if (pids[i] != p)
                continue;
            exited[i] = true;
            status_of[i] = st;
            any = true;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                char name[24];
                snprintf(name, sizeof name, i ? "client %d" : "server", i);
                if (WIFSIGNALED(st))
                    fprintf(stderr, "np_soak: %s (pid %d) killed by signal %d (%s)\n", name, (int)p,
                            WTERMSIG(st), strsignal(WTERMSIG(st)));
                else
                    fprintf(stderr, "np_soak: %s (pid %d) exited with %d\n", name, (int)p,
                            WEXITSTATUS(st));
                if (!*failed)
                    fprintf(stderr, "np_soak: stopping the other processes\n");
                *failed = true;
                kill_all(SIGKILL);
            }
        }
    }
    return any;
}

static uint64_t sum(size_t off, int from, int to)
{
    uint64_t s = 0;
    for (int i = from; i <= to; i++)
        s += atomic_load((_Atomic uint64_t *)((char *)&sh->st[i] + off));
    return s;
}
#define SUM(field, from, to) sum(offsetof(soak_stats, field), from, to)

static void progress(int64_t t_start)
{
    int n = sh->cfg.procs;
    fprintf(stderr,
            "np_soak: %4.0f s: open %" PRIu64 "/%" PRIu64 ", sessions %" PRIu64 ", frames %" PRIu64
            ", %.1f MiB echoed, stalls %" PRIu64 ", unexpected %" PRIu64 "\n",
            (double)(np_now() - t_start) / 1e9, SUM(active, 1, n), SUM(active, 0, 0),
            SUM(conns, 1, n), SUM(frames, 1, n), (double)SUM(bytes, 1, n) / 1048576.0,
            SUM(stalls, 0, n), SUM(unexpected, 0, n));
}

/* One line per process; returns the number of its failed checks. */
static int report_proc(int i, bool finished)
{
    soak_stats *s = &sh->st[i];
    int bad = 0;
    char name[24];
    snprintf(name, sizeof name, i ? "client %d" : "server", i);
    fprintf(stdout, "np_soak: %-9s pid %-7d", name, atomic_load(&s->pid));
#define SHOW(f, fail) fprintf(stdout, " %s=%" PRIu64, #f, atomic_load(&s->f));
    SOAK_COUNTERS(SHOW)
#undef SHOW
    int64_t r0 = atomic_load(&s->rss_start_kb), r1 = atomic_load(&s->rss_end_kb);
    int64_t f0 = atomic_load(&s->fds_before), f1 = atomic_load(&s->fds_after);
    fprintf(stdout, " rss_kb=%" PRId64 "->%" PRId64 " (peak %" PRId64 ") fds=%" PRId64 "->%" PRId64 "\n",
            r0, r1, atomic_load(&s->rss_peak_kb), f0, f1);
#define FAILS(f, fail)                                                                        \
    if ((fail) && atomic_load(&s->f)) {                                                       \
        fprintf(stdout, "np_soak: FAIL %s: %s = %" PRIu64 "\n", name, #f, atomic_load(&s->f)); \
        bad++;                                                                                \
    }
    SOAK_COUNTERS(FAILS)
#undef FAILS
    if (!finished)
        return bad;
    if (!atomic_load(&s->done) || !WIFEXITED(status_of[i]) || WEXITSTATUS(status_of[i]) != 0) {
        /* Killed or crashed: its descriptors and RSS say nothing. */
        fprintf(stdout, "np_soak: FAIL %s: did not finish cleanly\n", name);
        return bad + 1;
    }
    if (atomic_load(&s->np_run_rc) != 0) {
        fprintf(stdout, "np_soak: FAIL %s: np_run returned %d\n", name, atomic_load(&s->np_run_rc));
        bad++;
    }
    if (f0 < 0 || f1 != f0) {
        fprintf(stdout, "np_soak: FAIL %s: %" PRId64 " descriptors before np_run, %" PRId64 " after\n",
                name, f0, f1);
        bad++;
    }
    int64_t allowed = r0 / 2 > RSS_SLACK_KB ? r0 / 2 : RSS_SLACK_KB;
    if (r0 <= 0 || r1 <= 0) {
        fprintf(stdout, "np_soak: FAIL %s: RSS not sampled (warm-up %" PRId64 ", end %" PRId64 ")\n",
                name, r0, r1);
        bad++;
    } else if (RSS_JUDGED && r1 - r0 > allowed) {
        fprintf(stdout, "np_soak: FAIL %s: RSS grew %" PRId64 " kB after warm-up (allowed %" PRId64 ")\n",
                name, r1 - r0, allowed);
        bad++;
    }
    return bad;
}

int main(int argc, char **argv)
{
    soak_cfg cfg;
    parse(argc, argv, &cfg);
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("np_soak: mmap");
        return 1;
    }
    sh->cfg = cfg;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    snprintf(g_proc.name, sizeof g_proc.name, "parent");

    int n = cfg.procs;
    int64_t t_start = np_now();
    int64_t watchdog = t_start + (int64_t)(cfg.seconds + cfg.slack_s) * NP_SECOND;
    printf("np_soak: %d connections (%d client processes + 1 server, %d workers each), %d s,"
           " guard %d s, seed %#" PRIx64 ", poller %s%s\n",
           cfg.conns, n, cfg.workers, cfg.seconds, cfg.guard_s, cfg.seed, np_poller_name(),
           RSS_JUDGED ? "" : " (sanitizer: RSS shown, not judged)");
    bool failed = false, timed_out = false;

    pids[0] = spawn(0);
    while (atomic_load(&sh->server_ready) == 0) {
        reap(&failed);
        if (exited[0] || interrupted || np_now() > watchdog)
            break;
        msleep(5);
    }
    if (atomic_load(&sh->server_ready) != 1) {
        fprintf(stderr, "np_soak: the server did not start\n");
        kill_all(SIGKILL);
        while (wait(NULL) > 0) {
        }
        return 1;
    }
    /* The clock marks, before the clients exist (CLOCK_MONOTONIC is one
     * clock for every process). Warm-up: a second after the ramp, or a
     * quarter of the run if later, at most a minute (and within the run). */
    int64_t t0 = np_now() + 50 * NP_MILLISECOND, d = (int64_t)cfg.seconds * NP_SECOND;
    int64_t ramp = (int64_t)cfg.ramp_ms * NP_MILLISECOND;
    int64_t warm = d / 4 > ramp + NP_SECOND ? d / 4 : ramp + NP_SECOND;
    if (warm > 60 * NP_SECOND && ramp + NP_SECOND <= 60 * NP_SECOND)
        warm = 60 * NP_SECOND;
    if (warm > d)
        warm = d;
    atomic_store(&sh->t0, t0);
    atomic_store(&sh->t_warm, t0 + warm);
    atomic_store(&sh->t_end, t0 + d);
    for (int i = 1; i <= n; i++)
        pids[i] = spawn(i);

    int64_t next_progress = t_start + 10 * NP_SECOND;
    bool verbose = cfg.verbose || cfg.seconds >= 60;
    for (;;) {
        reap(&failed);
        bool clients_done = true;
        for (int i = 1; i <= n; i++)
            clients_done &= exited[i];
        if (clients_done && !atomic_load(&sh->stop))
            atomic_store(&sh->stop, 1);
        if (clients_done && exited[0])
            break;
        if (interrupted) {
            fprintf(stderr, "np_soak: interrupted (signal %d): stopping\n", (int)interrupted);
            kill_all(SIGKILL);
            failed = true;
            interrupted = 0;
        }
        int64_t now = np_now();
        if (now > watchdog && !timed_out) {
            fprintf(stderr,
                    "np_soak: WATCHDOG: still running %d s after the %d s run was due to end;"
                    " aborting every process\n",
                    cfg.slack_s, cfg.seconds);
            progress(t_start);
            timed_out = failed = true;
            kill_all(SIGABRT); /* a core or a sanitizer report, where enabled */
            msleep(2000);
            kill_all(SIGKILL);
        }
        if (verbose && now >= next_progress) {
            progress(t_start);
            next_progress += 10 * NP_SECOND;
        }
        msleep(20);
    }

    /* ---- the verdict -------------------------------------------------------------------------- */
    int bad = 0;
    for (int i = 0; i <= n; i++)
        bad += report_proc(i, true);
    uint64_t ign_p = SUM(ignored_past, 0, n), ign_e = SUM(ignored_elapsed, 0, n);
    uint64_t frames = SUM(frames, 1, n), sessions = SUM(conns, 1, n);
    uint64_t half = SUM(half_closes, 1, n), resets = SUM(resets_sent, 0, n);
    uint64_t cancels = SUM(cancels_ok, 1, n), stale = SUM(stale_checks, 0, n);
    if (!failed && (frames == 0 || half == 0 || resets == 0 || cancels == 0 || stale == 0)) {
        printf("np_soak: FAIL: too little was exercised (frames %" PRIu64 ", half-closes %" PRIu64
               ", resets %" PRIu64 ", cancels %" PRIu64 "): run longer\n",
               frames, half, resets, cancels);
        bad++;
    }
    int64_t r0 = 0, r1 = 0, fd_leak = 0;
    for (int i = 0; i <= n; i++) {
        r0 += atomic_load(&sh->st[i].rss_start_kb);
        r1 += atomic_load(&sh->st[i].rss_end_kb);
        int64_t l = atomic_load(&sh->st[i].fds_after) - atomic_load(&sh->st[i].fds_before);
        fd_leak += l > 0 ? l : -l;
    }
    bool pass = !failed && bad == 0;
    printf("np_soak: %s: conns=%d sessions=%" PRIu64 " (unix %" PRIu64 ") duration=%d s"
           " bytes_echoed=%" PRIu64 " frames=%" PRIu64 " corrupt=%" PRIu64 " bad_frames=%" PRIu64
           " stalls=%" PRIu64 " early=%" PRIu64 " ignored=%" PRIu64 " (past %" PRIu64
           ", elapsed %" PRIu64 "; of %" PRIu64 " probes)"
           " cancels_ok=%" PRIu64 " cancels_bad=%" PRIu64 " cancels_late=%" PRIu64
           " resets=%" PRIu64 " (seen %" PRIu64 ") half_closes=%" PRIu64
           " stale_checks=%" PRIu64 " stale_bad=%" PRIu64 " unexpected=%" PRIu64
           " rss_kb=%" PRId64 "->%" PRId64 " fd_leak=%" PRId64 "%s\n",
           pass ? "PASS" : "FAIL", cfg.conns, sessions, SUM(conns_unix, 1, n), cfg.seconds,
           SUM(bytes, 1, n), frames, SUM(corrupt, 0, n), SUM(bad_frames, 0, n), SUM(stalls, 0, n),
           SUM(early, 0, n), ign_p + ign_e, ign_p, ign_e, SUM(probes, 0, n), cancels,
           SUM(cancels_bad, 0, n), SUM(cancels_late, 0, n), resets, SUM(resets_seen, 0, n), half,
           stale, SUM(stale_bad, 0, n), SUM(unexpected, 0, n), r0, r1, fd_leak,
           timed_out ? " WATCHDOG" : "");
    return pass ? 0 : 1;
}
