/* proxy — a TCP forwarder with idle timeouts.
 *
 *   proxy [-w WORKERS] [-i IDLE_SECONDS] LISTEN_ADDR TARGET_ADDR
 *
 * Accepts connections on LISTEN_ADDR (prints "listening on ADDRESS") and
 * connects each to TARGET_ADDR, then copies bytes both ways. A connection
 * with no traffic in either direction for IDLE_SECONDS (default 60; 0 =
 * never) is closed. Addresses are "host:port", or a path (or "@name") for a
 * Unix socket.
 *
 * Per client connection:
 *  - A task dials the target with a deadline, so an unreachable target
 *    costs at most DIAL_TIMEOUT.
 *  - Two tasks then pump one direction each, with plain blocking reads and
 *    writes. The idle timeout is a read deadline pushed forward before each
 *    read, and a write deadline before each write.
 *  - End of stream is passed on: when the client finishes sending, the
 *    target gets a half-close (np_close_write, i.e. shutdown(SHUT_WR)) and
 *    may still answer, and the other way round. The connection is over when
 *    both directions are.
 *  - An error (reset, timeout) in either direction closes both connections.
 *    np_close wakes the other pump if it is blocked: its call returns
 *    -ECANCELED, and later calls on the closed handles -EBADF. Closing a
 *    handle twice is harmless, so neither pump needs to know which one
 *    closed first.
 */
#include <netpoll.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define DIAL_TIMEOUT (5 * NP_SECOND)

static const char *target;
static int64_t idle = 60 * NP_SECOND;

typedef struct session session;

/* One direction of a session. */
typedef struct pump {
    session *s;
    np_conn *from, *to;
} pump;

/* A proxied connection: the client, the target, and a pump each way. */
struct session {
    np_conn client, target;
    pump dir[2];                 /* client -> target, target -> client */
    _Atomic int64_t last_active; /* np_now() when a byte last moved either way */
    _Atomic int pumps_running;   /* the last pump to stop frees the session */
};

/* "tcp", or "unix" for a path or an abstract socket name. */
static const char *network_of(const char *address)
{
    return address[0] == '/' || address[0] == '@' || address[0] == '.' ? "unix" : "tcp";
}

static void run_pump(void *arg)
{
    pump *p = arg;
    session *s = p->s;
    char buf[32 * 1024];
    ssize_t n;

    for (;;) {
        if (idle > 0)
            np_set_read_deadline(*p->from, np_now() + idle);
        n = np_read(*p->from, buf, sizeof buf);
        /* Our side was quiet for `idle`, but the session is idle only if the
         * other direction was quiet too: if not, keep waiting. */
        if (n == -ETIMEDOUT && np_now() - atomic_load(&s->last_active) < idle)
            continue;
        if (n <= 0)
            break;
        atomic_store(&s->last_active, np_now());
        if (idle > 0)
            np_set_write_deadline(*p->to, np_now() + idle);
        if (np_write(*p->to, buf, (size_t)n) != n) {
            n = -1;
            break;
        }
    }
    if (n == 0) {
        /* End of stream: pass it on; the other direction carries on. */
        np_close_write(*p->to);
    } else {
        /* Error or idle timeout: end the session, waking the other pump. */
        np_close(s->client);
        np_close(s->target);
    }
    if (atomic_fetch_sub(&s->pumps_running, 1) == 1) {
        np_close(s->client); /* both directions are done */
        np_close(s->target);
        free(s);
    }
}

static void serve(void *arg)
{
    session *s = arg;
    int rc = np_dial(&s->target, network_of(target), target, np_now() + DIAL_TIMEOUT);
    if (rc < 0) {
        fprintf(stderr, "proxy: dial %s: %s\n", target, np_strerror(rc));
        np_close(s->client);
        free(s);
        return;
    }
    s->dir[0] = (pump){s, &s->client, &s->target};
    s->dir[1] = (pump){s, &s->target, &s->client};
    atomic_store(&s->last_active, np_now());
    atomic_store(&s->pumps_running, 2);
    if (np_go(run_pump, &s->dir[1]) < 0) {
        np_close(s->client);
        np_close(s->target);
        free(s);
        return;
    }
    run_pump(&s->dir[0]); /* this task pumps client -> target itself */
}

static int exit_code;

static void accept_loop(void *arg)
{
    const char *address = arg;
    np_listener l;
    int rc = np_listen(&l, network_of(address), address);
    if (rc < 0) {
        fprintf(stderr, "proxy: listen %s: %s\n", address, np_strerror(rc));
        exit_code = 1;
        return;
    }
    char name[256];
    np_listener_addr(l, name, sizeof name);
    printf("listening on %s\n", name);
    fflush(stdout);

    for (;;) {
        np_conn c;
        rc = np_accept(l, &c);
        if (rc < 0) {
            /* Typically -EMFILE: out of descriptors. The listener stays
             * usable, but retrying at once would fail again: back off. */
            fprintf(stderr, "proxy: accept: %s\n", np_strerror(rc));
            np_sleep(100 * NP_MILLISECOND);
            continue;
        }
        session *s = calloc(1, sizeof *s);
        if (s == NULL) {
            np_close(c);
            continue;
        }
        s->client = c;
        if (np_go(serve, s) < 0) {
            np_close(c);
            free(s);
        }
    }
}

static long number(const char *s, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > 1000000) {
        fprintf(stderr, "proxy: bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *usage = "usage: proxy [-w WORKERS] [-i IDLE_SECONDS] LISTEN_ADDR TARGET_ADDR\n";
    np_config cfg = {0};
    int opt;
    while ((opt = getopt(argc, argv, "w:i:h")) != -1) {
        switch (opt) {
        case 'w': cfg.workers = (int)number(optarg, "worker count"); break;
        case 'i': idle = number(optarg, "idle timeout") * NP_SECOND; break;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (argc - optind != 2) {
        fputs(usage, stderr);
        return 2;
    }
    target = argv[optind + 1];

    /* Runs until killed: the accept loop never ends by itself. */
    int rc = np_run(&cfg, accept_loop, argv[optind]);
    if (rc < 0) {
        fprintf(stderr, "proxy: %s\n", np_strerror(rc));
        return 1;
    }
    return exit_code;
}
