/* fanout_dial — dials many addresses at once and says how each one went.
 *
 *   fanout_dial [-t TIMEOUT_MS] [-w WORKERS] ADDRESS...
 *   fanout_dial --self-test
 *
 * An ADDRESS is "host:port" (TCP; "[::1]:80" for IPv6; host names resolve)
 * or "unix:PATH" (a Unix socket; "unix:@name" for a Linux abstract one).
 * Every dial starts at once, in its own task, and has TIMEOUT_MS (default
 * 2000; 0 = no limit) to connect. The output is one line per address, in the order given,
 * and a summary:
 *
 *   $ chat_server 127.0.0.1:7000 &
 *   $ fanout_dial 127.0.0.1:7000 127.0.0.1:1 example.com:80 10.255.255.1:80
 *   127.0.0.1:7000    connected in 0.2 ms
 *   127.0.0.1:1       error after 0.1 ms: Connection refused
 *   example.com:80    connected in 31.7 ms
 *   10.255.255.1:80   error after 2000.3 ms: Connection timed out
 *   4 addresses in 2000.9 ms: 2 connected, 2 failed
 *
 * The total is about the slowest dial, not the sum: they all wait at the
 * same time. (`nc -l 7000` in another terminal makes a target too.) The
 * connections are closed at once; this is a reachability check. Exit status:
 * 0 if every address connected, 1 if any failed, 2 for bad usage.
 *
 * --self-test needs no network: it listens on loopback TCP and Unix
 * sockets, makes a port that refuses and an address that cannot parse,
 * dials them all at once and checks each outcome (exit 0 if all are right).
 *
 * The netpoll idioms shown here, the same as in Go:
 *  - Fan-out, fan-in with a wait group (Go's sync.WaitGroup): add the count
 *    before starting the tasks, each task calls done, the first task waits.
 *  - Each task writes only its own slot of a results array sized up front,
 *    so the tasks share no mutable state and need no lock; the wait group's
 *    wait makes their writes visible to the waiter.
 *  - A deadline per dial, absolute like every netpoll deadline: computed
 *    once (np_now() + timeout) and handed to np_dial.
 */
#include <netpoll.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct dial_result {
    const char *arg;     /* the address as given */
    const char *network; /* "tcp" or "unix" */
    const char *address; /* what np_dial gets */
    int rc;              /* 0 or a negative error */
    int64_t took;        /* nanoseconds */
} dial_result;

typedef struct fanout {
    dial_result *results;
    size_t n;
    int64_t timeout;
    np_waitgroup wg;
    int64_t took; /* the whole fan-out */
} fanout;

typedef struct dial_job {
    fanout *f;
    dial_result *r;
} dial_job;

static int64_t timeout_ns = 2 * NP_SECOND;
static int exit_code;

/* "unix:PATH" is a Unix socket; anything else is TCP. */
static void parse_target(dial_result *r, const char *arg)
{
    r->arg = arg;
    if (strncmp(arg, "unix:", 5) == 0) {
        r->network = "unix";
        r->address = arg + 5;
    } else {
        r->network = "tcp";
        r->address = arg;
    }
}

/* One dial, in its own task. It writes only *r, then says it is done. */
static void dial_one(void *arg)
{
    dial_job *job = arg;
    dial_result *r = job->r;
    int64_t start = np_now();
    np_conn c;
    int64_t deadline = job->f->timeout > 0 ? start + job->f->timeout : 0; /* 0: none */
    r->rc = np_dial(&c, r->network, r->address, deadline);
    r->took = np_now() - start;
    if (r->rc == 0)
        np_close(c);
    np_waitgroup_done(&job->f->wg);
}

/* Dials every results[i] at once and returns when all have finished. */
static void fan_out(fanout *f)
{
    dial_job *jobs = calloc(f->n ? f->n : 1, sizeof *jobs);
    int64_t start = np_now();
    /* Add the whole count first: a done that came before its add could
     * take the count to 0 while dials are still to start. */
    np_waitgroup_add(&f->wg, (int64_t)f->n);
    for (size_t i = 0; i < f->n; i++) {
        int rc = jobs ? 0 : -ENOMEM;
        if (rc == 0) {
            jobs[i] = (dial_job){ .f = f, .r = &f->results[i] };
            rc = np_go(dial_one, &jobs[i]);
        }
        if (rc < 0) { /* the task never ran: record why, count it done */
            f->results[i].rc = rc;
            np_waitgroup_done(&f->wg);
        }
    }
    np_waitgroup_wait(&f->wg, 0); /* no deadline: every dial has its own */
    f->took = np_now() - start;
    free(jobs); /* only now: the tasks used their job until done */
}

static int report(const fanout *f)
{
    int width = 0, failed = 0;
    for (size_t i = 0; i < f->n; i++) {
        int w = (int)strlen(f->results[i].arg);
        width = w > width ? w : width;
    }
    for (size_t i = 0; i < f->n; i++) {
        const dial_result *r = &f->results[i];
        double ms = (double)r->took / (double)NP_MILLISECOND;
        if (r->rc == 0) {
            printf("%-*s  connected in %.1f ms\n", width, r->arg, ms);
        } else {
            printf("%-*s  error after %.1f ms: %s\n", width, r->arg, ms, np_strerror(r->rc));
            failed++;
        }
    }
    printf("%zu addresses in %.1f ms: %zu connected, %d failed\n", f->n,
           (double)f->took / (double)NP_MILLISECOND, f->n - (size_t)failed, failed);
    return failed;
}

typedef struct cli_args {
    char **targets;
    size_t n;
} cli_args;

static void dial_all(void *arg)
{
    cli_args *a = arg;
    fanout f = { .n = a->n, .timeout = timeout_ns, .wg = NP_WAITGROUP_INIT };
    f.results = calloc(a->n, sizeof *f.results);
    if (f.results == NULL) {
        fprintf(stderr, "fanout_dial: out of memory\n");
        exit_code = 1;
        return;
    }
    for (size_t i = 0; i < a->n; i++)
        parse_target(&f.results[i], a->targets[i]);
    fan_out(&f);
    exit_code = report(&f) > 0 ? 1 : 0;
    free(f.results);
}

/* The self-test ------------------------------------------------------------*/

static void self_test(void *arg)
{
    (void)arg;
    enum { N = 6 };
    char addr[N][160];
    int expect[N];
    np_listener live[3] = {{0}};
    int rc, k = 0;

    /* Two TCP listeners and a Unix one: nobody accepts, but a dial
     * completes once the kernel has queued the connection (the backlog). */
    for (int i = 0; i < 2; i++) {
        if ((rc = np_listen(&live[i], "tcp", "127.0.0.1:0")) < 0)
            goto setup_failed;
        np_listener_addr(live[i], addr[k], sizeof addr[k]);
        expect[k++] = 0;
    }
    snprintf(addr[k], sizeof addr[k], "@fanout_dial-self-test-%ld", (long)getpid());
    if ((rc = np_listen(&live[2], "unix", addr[k])) < 0)
        goto setup_failed;
    memmove(addr[k] + 5, addr[k], strlen(addr[k]) + 1);
    memcpy(addr[k], "unix:", 5);
    expect[k++] = 0;

    /* A port that refuses: listen, note the port, close. (Another program
     * could take that port in between; on loopback that is unlikely.) */
    np_listener gone;
    if ((rc = np_listen(&gone, "tcp", "127.0.0.1:0")) < 0)
        goto setup_failed;
    np_listener_addr(gone, addr[k], sizeof addr[k]);
    np_listener_close(gone);
    expect[k++] = -ECONNREFUSED;

    /* Addresses that do not parse: no port; a port out of range. */
    snprintf(addr[k], sizeof addr[k], "127.0.0.1");
    expect[k++] = -EINVAL;
    snprintf(addr[k], sizeof addr[k], "127.0.0.1:70000");
    expect[k++] = -EINVAL;

    fanout f = { .n = N, .timeout = timeout_ns, .wg = NP_WAITGROUP_INIT };
    dial_result results[N];
    memset(results, 0, sizeof results);
    f.results = results;
    for (int i = 0; i < N; i++)
        parse_target(&results[i], addr[i]);
    fan_out(&f);
    report(&f);

    int wrong = 0;
    for (int i = 0; i < N; i++) {
        if (results[i].rc != expect[i]) {
            printf("self-test: %s: expected %s, got %s\n", results[i].arg,
                   expect[i] ? np_strerror(expect[i]) : "a connection",
                   results[i].rc ? np_strerror(results[i].rc) : "a connection");
            wrong++;
        }
    }
    printf("self-test: %s\n", wrong ? "FAILED" : "ok");
    exit_code = wrong ? 1 : 0;
    for (int i = 0; i < 3; i++)
        np_listener_close(live[i]);
    return;

setup_failed:
    fprintf(stderr, "fanout_dial: self-test: listen: %s\n", np_strerror(rc));
    for (int i = 0; i < 3; i++)
        np_listener_close(live[i]); /* id 0 or closed: -EBADF, harmless */
    exit_code = 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: fanout_dial [-t TIMEOUT_MS] [-w WORKERS] ADDRESS...\n"
                    "       fanout_dial --self-test\n");
    exit(2);
}

static long number(const char *s, const char *what, long max)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > max) {
        fprintf(stderr, "fanout_dial: bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    np_config cfg = {0};
    if (argc == 2 && strcmp(argv[1], "--self-test") == 0) {
        int rc = np_run(&cfg, self_test, NULL);
        if (rc < 0) {
            fprintf(stderr, "fanout_dial: %s\n", np_strerror(rc));
            return 1;
        }
        return exit_code;
    }

    int opt;
    while ((opt = getopt(argc, argv, "t:w:h")) != -1) {
        switch (opt) {
        case 't': timeout_ns = number(optarg, "timeout", 86400000) * NP_MILLISECOND; break;
        case 'w': cfg.workers = (int)number(optarg, "worker count", 1024); break;
        default: usage();
        }
    }
    if (optind >= argc)
        usage();
    cli_args a = { .targets = argv + optind, .n = (size_t)(argc - optind) };
    int rc = np_run(&cfg, dial_all, &a);
    if (rc < 0) {
        fprintf(stderr, "fanout_dial: %s\n", np_strerror(rc));
        return 1;
    }
    return exit_code;
}
