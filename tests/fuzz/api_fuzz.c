/* api_fuzz: random sequences of every public netpoll call, from several
 * tasks, from plain threads while the runtime runs, and with no runtime; on
 * live, closed, forged and wrong-kind handles, with extreme deadlines, bad
 * addresses and bad buffers, beside real loopback traffic. Every result must
 * be a success or an error plausible for that call; a watchdog catches
 * hangs; after each np_run the process must hold the descriptors it held
 * before.
 *
 *   api_fuzz [options] SEED...       api_fuzz [options] --seeds 1-200
 *
 *   --ms N        fuzzing time per run, in ms (default 250)
 *   --watchdog S  a seed that has not finished after S seconds is a hang
 *                 (default 20): the recent calls are printed, exit 124
 *   --dns         also use host names that need a DNS query
 *   --dns-local   the same, with NP_DNS_SERVERS=127.0.0.1:9 (a closed port:
 *                 where the library resolves with c-ares, no query leaves
 *                 the host and each is refused at once)
 *   --no-names    not even "localhost": no name lookups at all
 *   --skip LIST   leave these calls out (comma-separated names, e.g.
 *                 np_signal_notify,np_signal_stop): to get past a known
 *                 defect while it is being fixed
 *   -v            one line per seed
 *
 * Exit status: 0 when every check held, 1 otherwise. A failure line names
 * the seed, the actor and the call; rerun that seed to reproduce (the
 * interleaving of tasks and threads differs from run to run, the sequence
 * each actor draws does not).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"

static int64_t opt_ms = 250;
static int opt_watchdog = 20;

/* ---- one run: np_run with the fuzzing main task --------------------------- */

typedef struct thread_arg {
    fz_run *run;
    pthread_t th;
    uint64_t salt;
} thread_arg;

static void *thread_actor(void *p)
{
    thread_arg *ta = p;
    fz_actor a;
    fz_actor_init(&a, ta->run, 'P', CTX_THREAD, ta->salt);
    fz_actor_loop(&a);
    fz_actor_fini(&a);
    atomic_fetch_sub(&ta->run->live, 1);
    return NULL;
}

static void task_actor(void *p)
{
    fz_actor *a = p;
    fz_actor_loop(a);
    fz_run *r = a->run;
    fz_actor_fini(a);
    free(a);
    atomic_fetch_sub(&r->live, 1);
}

static void initial_listener(fz_actor *a)
{
    static const char *const tcp[][2] = {
        { "tcp4", "127.0.0.1:0" }, { "tcp", "127.0.0.1:0" }, { "tcp", ":0" },
        { "tcp6", "[::1]:0" }, { "tcp", "localhost:0" },
    };
    char addr[108];
    const char *net, *ad;
    int k = (int)fz_below(a, 7);
    if (k == 4 && !fz_names)
        k = 0;
    if (k < 5) {
        net = tcp[k][0];
        ad = tcp[k][1];
        if (k == 3 && !fz_ipv6)
            ad = "127.0.0.1:0", net = "tcp4";
    } else {
        fz_unix_path(a->run, addr, sizeof addr, k == 5 ? "L" : "@L");
        net = "unix";
        ad = addr;
    }
    np_listener l;
    unsigned ri = fz_begin(a, C_LISTEN, 0, 0);
    int rc = np_listen(&l, net, ad);
    fz_end(a, ri, C_LISTEN, rc);
    if (rc != 0) {
        fz_fail(a, "np_listen(\"%s\", \"%s\") for the run's first listeners: %d (%s)", net, ad,
                rc, np_strerror(rc));
        return;
    }
    int path = net[0] == 'u' && ad[0] != '@' ? fz_path_add(a->run, ad) : -1;
    char text[128];
    if (np_listener_addr(l, text, sizeof text) == 0)
        fz_book_add(a->run, net, text);
    int slot = fz_pool_put(a, K_LISTENER, l.id, path, CT_STREAM);
    if (slot >= 0)
        fz_start_acceptor(a, slot);
}

static void fuzz_main(void *p)
{
    fz_run *r = p;
    fz_actor m;
    fz_actor_init(&m, r, 'M', CTX_TASK, 0x4d);
    fz_phase("fuzzing");
    r->beyond = fz_beyond_new(&m);
    r->end_ns = np_now() + opt_ms * NP_MILLISECOND;
    int nl = 1 + (int)fz_below(&m, 3);
    for (int i = 0; i < nl; i++)
        initial_listener(&m);
    int nt = 1 + (int)fz_below(&m, 4);
    for (int i = 0; i < nt; i++) {
        fz_actor *a = malloc(sizeof *a);
        fz_actor_init(a, r, 'T', CTX_TASK, 0x100 + (uint64_t)i);
        atomic_fetch_add(&r->live, 1);
        int rc = np_go(task_actor, a);
        if (rc != 0) {
            fz_fail(&m, "np_go for a fuzzing task: %d (%s)", rc, np_strerror(rc));
            atomic_fetch_sub(&r->live, 1);
            fz_actor_fini(a);
            free(a);
        }
    }
    int nth = (int)fz_below(&m, FZ_MAX_THREADS);
    /* on the heap: with idle_stack_ns, a blocked task's stack is elsewhere */
    thread_arg *ta = calloc(FZ_MAX_THREADS, sizeof *ta);
    int started = 0;
    for (int i = 0; i < nth; i++) {
        ta[i].run = r;
        ta[i].salt = 0x200 + (uint64_t)i;
        atomic_fetch_add(&r->live, 1);
        if (pthread_create(&ta[i].th, NULL, thread_actor, &ta[i]) != 0) {
            atomic_fetch_sub(&r->live, 1);
            break;
        }
        started++;
    }
    bool emfile = fz_chance(&m, 8);
    while (np_now() < r->end_ns) {
        np_sleep(2 * NP_MILLISECOND);
        if (emfile && np_now() > r->end_ns - opt_ms * NP_MILLISECOND / 2) {
            emfile = false;
            fz_scenario_emfile(&m);
        }
    }
    atomic_store(&r->stop, true);
    fz_phase("ending (closing the pool, waiting for the actors)");
    while (atomic_load(&r->live) > 0) {
        fz_pool_sweep(&m, false);
        fz_sync_sweep(&m, false);
        fz_beyond_sweep(&m);
        np_sleep(NP_MILLISECOND);
    }
    fz_pool_sweep(&m, true);
    fz_sync_sweep(&m, true);
    fz_beyond_end(&m, r->beyond);
    for (int i = 0; i < started; i++)
        pthread_join(ta[i].th, NULL);
    free(ta);
    fz_phase("ending (main task returns)");
    fz_actor_fini(&m);
}

/* A thread that spans the run's start and end: np_go must either be
 * refused (-ESRCH) or run the task before np_run returns. */
typedef struct stray {
    pthread_t th;
    _Atomic bool stop;
    _Atomic long accepted, ran;
    uint64_t salt;
} stray;

static void stray_task(void *p)
{
    stray *s = p;
    atomic_fetch_add(&s->ran, 1);
    np_yield();
}

static void *stray_thread(void *p)
{
    stray *s = p;
    fz_actor a;
    fz_actor_init(&a, NULL, 'X', CTX_ANY, s->salt);
    while (!atomic_load(&s->stop)) {
        unsigned ri = fz_begin(&a, C_GO, 0, 0);
        int rc = np_go(stray_task, s);
        fz_end(&a, ri, C_GO, rc);
        if (rc == 0)
            atomic_fetch_add(&s->accepted, 1);
        else if (rc != -ESRCH && rc != -ENOMEM)
            fz_fail(&a, "np_go from a thread spanning np_run: %d (%s)", rc, np_strerror(rc));
        fz_stray_op(&a);
        struct timespec ts = { 0, (long)fz_below(&a, 200000) };
        nanosleep(&ts, NULL);
    }
    fz_actor_fini(&a);
    return NULL;
}

static void trivial(void *p)
{
    (void)p;
}

static void bad_configs(fz_actor *a)
{
    np_config c;
    for (int i = 0; i < 3; i++) {
        memset(&c, 0, sizeof c);
        switch (fz_below(a, 7)) {
        case 0: c.workers = -1 - (int)fz_below(a, 5); break;
        case 1: c.workers = INT_MIN; break;
        case 2: c.idle_stack_ns = -1 - (int64_t)fz_below(a, 5); break;
        case 3: c.idle_stack_ns = INT64_MIN; break;
        case 4: c.offload_threads = fz_chance(a, 50) ? -1 : 4097; break;
        case 5: c.dump_signal = (int[]){ -1, SIGKILL, SIGSTOP, SIGSEGV, 100000 }[fz_below(a, 5)]; break;
        default: c.stack_size = 1 + fz_below(a, 4096); break;
        }
        unsigned ri = fz_begin(a, C_RUN, 0, c.workers);
        int rc = np_run(&c, trivial, NULL);
        fz_end(a, ri, C_RUN, rc);
        if (rc != -EINVAL)
            fz_fail(a, "np_run(workers=%d stack=%zu idle=%" PRId64 " offload=%d) = %d, want -EINVAL",
                    c.workers, c.stack_size, c.idle_stack_ns, c.offload_threads, rc);
    }
    unsigned ri = fz_begin(a, C_RUN, 0, 0);
    int rc = np_run(NULL, NULL, NULL);
    fz_end(a, ri, C_RUN, rc);
    if (rc != -EINVAL)
        fz_fail(a, "np_run(NULL, NULL) = %d, want -EINVAL", rc);
    memset(&c, 0, sizeof c);
    c.stack_size = (size_t)1 << 31; /* over 1 GiB */
    rc = np_run(&c, trivial, NULL);
    if (rc != -EINVAL && rc != 0)
        fz_fail(a, "np_run(stack_size=2 GiB) = %d, want -EINVAL (or 0, clamped)", rc);
}

static void check_paths(fz_actor *a, fz_run *r)
{
    unsigned n = atomic_load(&r->paths_n);
    for (unsigned i = 0; i < n && i < FZ_PATHS; i++) {
        if (access(r->paths[i], F_OK) == 0) {
            fz_fail(a, "the Unix listener file %s is still there after np_run returned",
                    r->paths[i]);
            unlink(r->paths[i]);
        }
    }
}

static void run_seed(uint64_t seed)
{
    fz_seed_begin(seed);
    fz_phase("no runtime, before");
    fz_actor n;
    fz_actor_init(&n, NULL, 'N', CTX_NORUNTIME, 0x4e);
    int fds0 = fz_count_fds();
    fz_noruntime_ops(&n, 20 + (int)fz_below(&n, 40));
    fz_sync_noruntime(&n);
    fz_beyond_noruntime(&n);
    bad_configs(&n);
    if (fz_count_fds() != fds0) {
        fz_fail(&n, "with no runtime running, the calls changed the open descriptors %d -> %d",
                fds0, fz_count_fds());
        fz_list_fds();
    }
    int nruns = fz_chance(&n, 30) ? 2 : 1;
    for (int ri = 0; ri < nruns; ri++) {
        fz_run *r = calloc(1, sizeof *r);
        r->seed = seed;
        r->index = ri;
        r->leave_open = fz_chance(&n, 25);
        r->sync = fz_sync_new();
        for (int i = 0; i < FZ_SLOTS; i++)
            atomic_store(&r->slots[i].path, -1);
        np_config cfg = { 0 };
        cfg.workers = (int)fz_below(&n, 5); /* 0: one per CPU */
        static const size_t stacks[] = { 0, 16384, 20000, 65536, 262144 };
        cfg.stack_size = stacks[fz_below(&n, 5)];
        static const int64_t idle[] = { 0, 0, 1000000, 20000000 };
        cfg.idle_stack_ns = idle[fz_below(&n, 4)];
        cfg.offload_threads = (int[]){ 0, 1, 2, 4 }[fz_below(&n, 4)];
        /* the monitor: default, off, or eager (hand-offs all the time) */
        cfg.stall_ns = (int64_t[]){ 0, 0, -1, 1000000, 2000000 }[fz_below(&n, 5)];
        int fdsb = fz_count_fds(), thb = fz_count_threads();
        stray *s = NULL;
        if (fz_chance(&n, 40)) {
            s = calloc(1, sizeof *s);
            s->salt = 0x300 + (uint64_t)ri;
            if (pthread_create(&s->th, NULL, stray_thread, s) != 0) {
                free(s);
                s = NULL;
            }
        }
        fz_phase("np_run");
        if (fz_verbose)
            fprintf(stderr, "seed %" PRIu64 " run %d: workers=%d stack=%zu idle_stack_ns=%" PRId64
                "%s%s\n", seed, ri, cfg.workers, cfg.stack_size, cfg.idle_stack_ns,
                r->leave_open ? " leave-open" : "", s ? " stray-thread" : "");
        unsigned rix = fz_begin(&n, C_RUN, 0, cfg.workers);
        int rc = np_run(&cfg, fuzz_main, r);
        fz_end(&n, rix, C_RUN, rc);
        fz_phase("after np_run");
        if (rc != 0)
            fz_fail(&n, "np_run(workers=%d, stack=%zu, idle=%" PRId64 ") = %d (%s)", cfg.workers,
                    cfg.stack_size, cfg.idle_stack_ns, rc, np_strerror(rc));
        if (s) {
            atomic_store(&s->stop, true);
            pthread_join(s->th, NULL);
            if (atomic_load(&s->accepted) != atomic_load(&s->ran))
                fz_fail(&n, "np_go from a thread spanning np_run: %ld tasks accepted, %ld ran",
                        atomic_load(&s->accepted), atomic_load(&s->ran));
            free(s);
        }
        int fdsa = fz_count_fds();
        if (fdsa != fdsb) {
            fz_fail(&n, "open descriptors: %d before np_run, %d after it returned%s", fdsb, fdsa,
                    r->leave_open ? " (handles were left for np_run to close)" : "");
            fz_list_fds();
        }
        check_paths(&n, r);
        /* np_run joins what it started (workers, offload threads): give
         * exiting threads (a name lookup's, detached) a moment. Fewer than
         * before is no leak: a detached thread counted before np_run may
         * end during it, and under qemu-user a joined thread lingers in
         * /proc a moment after its join returned (CI's AArch64 job saw
         * 4 before, 3 after). */
        int tha = fz_count_threads();
        for (int i = 0; i < 200 && tha > thb; i++) {
            struct timespec ts = { 0, 10 * 1000000 };
            nanosleep(&ts, NULL);
            tha = fz_count_threads();
        }
        if (tha > thb)
            fz_fail(&n, "threads: %d before np_run, %d two seconds after it returned", thb, tha);
        fz_sync_free(r->sync);
        for (int i = 0; i < FZ_SLOTS; i++) /* whatever was left: dead now */
            if (atomic_load(&r->slots[i].state) == SLOT_LIVE)
                fz_grave_push(atomic_load(&r->slots[i].id));
        free(r);
    }
    fz_phase("no runtime, after");
    fz_noruntime_ops(&n, 20 + (int)fz_below(&n, 40));
    fz_sync_noruntime(&n);
    fz_beyond_noruntime(&n);
    int fds1 = fz_count_fds();
    if (fds1 != fds0) {
        fz_fail(&n, "open descriptors: %d before the seed, %d after", fds0, fds1);
        fz_list_fds();
    }
    int pipes = fz_take_sigpipes();
    if (pipes)
        fz_fail(&n, "SIGPIPE was raised (%d times): writes must never raise it", pipes);
    fz_actor_fini(&n);
    double ms;
    long failed = fz_seed_end(&ms);
    if (fz_verbose)
        fprintf(stderr, "seed %" PRIu64 ": %s (%.0f ms)\n", seed, failed ? "FAILED" : "ok", ms);
}

/* ---- main ------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: api_fuzz [--ms N] [--watchdog S] [--dns | --dns-local] [--no-names] "
                    "[--skip CALL,...] [-v] (--seeds A-B | SEED...)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    uint64_t *seeds = NULL;
    size_t nseeds = 0, cap = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--ms") && i + 1 < argc) {
            opt_ms = atoll(argv[++i]);
        } else if (!strcmp(s, "--watchdog") && i + 1 < argc) {
            opt_watchdog = atoi(argv[++i]);
        } else if (!strcmp(s, "--dns")) {
            fz_dns = true;
        } else if (!strcmp(s, "--dns-local")) {
            fz_dns = true;
            setenv("NP_DNS_SERVERS", "127.0.0.1:9", 1);
        } else if (!strcmp(s, "--no-names")) {
            fz_names = false;
        } else if (!strcmp(s, "--skip") && i + 1 < argc) {
            char *list = strdup(argv[++i]), *save = NULL;
            for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                int c = 0;
                while (c < C_COUNT && strcmp(fz_call_name[c], t) != 0)
                    c++;
                if (c == C_COUNT) {
                    fprintf(stderr, "api_fuzz: --skip: no call named %s\n", t);
                    exit(2);
                }
                fz_skip[c] = true;
            }
            free(list);
        } else if (!strcmp(s, "-v")) {
            fz_verbose = true;
        } else if (!strcmp(s, "--seeds") && i + 1 < argc) {
            unsigned long long a, b;
            if (sscanf(argv[++i], "%llu-%llu", &a, &b) != 2 || b < a || b - a > 10000000)
                usage();
            for (unsigned long long v = a; v <= b; v++) {
                if (nseeds == cap)
                    seeds = realloc(seeds, (cap = cap * 2 + 64) * sizeof *seeds);
                seeds[nseeds++] = v;
            }
        } else if (s[0] >= '0' && s[0] <= '9') {
            if (nseeds == cap)
                seeds = realloc(seeds, (cap = cap * 2 + 64) * sizeof *seeds);
            seeds[nseeds++] = strtoull(s, NULL, 0);
        } else {
            usage();
        }
    }
    if (!nseeds || opt_ms < 0 || opt_watchdog <= 0)
        usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    fz_pid = (int)getpid();
    fz_poller = np_poller_name();

    fz_beyond_init();

    /* ::1 here? Some CI containers have no IPv6. */
    int s6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s6 >= 0) {
        struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        fz_ipv6 = bind(s6, (struct sockaddr *)&a6, sizeof a6) == 0;
        close(s6);
    }
    snprintf(fz_regular_file, sizeof fz_regular_file, "/tmp/npf-%d-file", fz_pid);
    int f = open(fz_regular_file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    if (f >= 0)
        close(f);

    fz_report_start(opt_watchdog);
    int64_t t0 = fz_mono_ns();
    for (size_t i = 0; i < nseeds; i++)
        run_seed(seeds[i]);
    unlink(fz_regular_file);
    fz_summary((unsigned long)nseeds, (double)(fz_mono_ns() - t0) / 1e9);
    free(seeds);
    return atomic_load(&fz_failures) ? 1 : 0;
}
