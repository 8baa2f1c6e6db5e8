/* echo_server — the smallest useful netpoll server: it sends back whatever
 * each client sends.
 *
 *   echo_server [-w WORKERS] [-t IDLE_SECONDS] [-m STALL_MS|off] [ADDRESS]
 *
 * ADDRESS defaults to 127.0.0.1:7777; port 0 picks a free port. Once the
 * server accepts connections it prints exactly one line to stdout,
 * "listening on ADDRESS" (with the real port), which scripts wait for.
 * WORKERS is the number of worker threads (default 0: one per CPU). With -t,
 * a connection that sends nothing for IDLE_SECONDS is closed. -m sets
 * np_config.stall_ns ("off": no stall monitor; bench/stall compares). SIGINT or
 * SIGTERM stops the server cleanly: it stops accepting, closes the open
 * connections and exits 0; a second signal exits at once.
 *
 * The netpoll idioms shown here, the same as in Go:
 *  - One task per connection, written as plain blocking code. A task that
 *    waits for the network is a parked coroutine, not a blocked thread, so
 *    thousands of connections cost thousands of small stacks, nothing more.
 *  - Calls report errors as negative errno values (-ECONNRESET, -ETIMEDOUT);
 *    np_strerror() turns one into text. errno is never needed.
 *  - Deadlines are absolute times, np_now() + timeout, set before the calls
 *    they limit; a call still blocked when the deadline passes returns
 *    -ETIMEDOUT.
 *  - np_close and np_listener_close work from any task or thread, and wake a
 *    call blocked on the handle (-ECANCELED). Any later use of a closed
 *    handle is a harmless -EBADF, never a crash or someone else's socket.
 *  - Shared state is guarded by an np_mutex, which parks a task that has to
 *    wait (a pthread mutex would block its whole worker thread).
 *  - Signals arrive on a channel (np_signal_notify), as Go's signal.Notify:
 *    a task waits for one like for any other message.
 */
#include <netpoll.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *listen_addr = "127.0.0.1:7777";
static int64_t idle_timeout; /* nanoseconds; 0 = none */
static int exit_code;

/* Open connections, so that shutdown can close them. A client lives in its
 * connection task's memory and is unlinked by that task before it ends. */
typedef struct client {
    np_conn conn;
    struct client *prev, *next;
} client;

static np_mutex lock = NP_MUTEX_INIT; /* guards the list */
static client clients = {.prev = &clients, .next = &clients}; /* list head */
static np_chan signals; /* SIGINT and SIGTERM, as ints */

/* One connection: read what arrives, write it back, until the client closes
 * its side (read returns 0) or something fails. */
static void serve(void *arg)
{
    client *cl = arg;
    char buf[16 * 1024];

    for (;;) {
        /* The idle timeout is a deadline pushed forward before each read;
         * it also bounds the write, against clients that never read. */
        if (idle_timeout > 0)
            np_set_deadline(cl->conn, np_now() + idle_timeout);
        ssize_t n = np_read(cl->conn, buf, sizeof buf);
        if (n <= 0)
            break; /* 0: end of stream; < 0: reset, timeout, shutdown... */
        if (np_write(cl->conn, buf, (size_t)n) != n)
            break; /* np_write writes everything or reports why not */
    }

    np_mutex_lock(&lock);
    cl->prev->next = cl->next;
    cl->next->prev = cl->prev;
    np_mutex_unlock(&lock);
    np_close(cl->conn); /* -EBADF, harmless, if shutdown closed it first */
    free(cl);
}

/* Waits for SIGINT or SIGTERM, then closes the listener. It stops watching
 * then, so a second signal takes the default action and ends the process at
 * once. */
static void close_on_signal(void *arg)
{
    np_listener l = *(np_listener *)arg;
    int signo;
    if (np_chan_recv(signals, &signo, 0) == 0)
        fprintf(stderr, "echo_server: %s, shutting down\n", strsignal(signo));
    np_signal_stop(signals);
    np_listener_close(l);
}

static void accept_loop(void *arg)
{
    (void)arg;
    np_listener l;
    int rc = np_listen(&l, "tcp", listen_addr);
    if (rc < 0) {
        fprintf(stderr, "echo_server: listen %s: %s\n", listen_addr, np_strerror(rc));
        exit_code = 1;
        return;
    }
    char addr[128];
    np_listener_addr(l, addr, sizeof addr);
    printf("listening on %s\n", addr);
    fflush(stdout);

    /* `go func() { <-signals; l.Close() }()`: the first signal closes the
     * listener, which ends the loop below. */
    static np_listener to_close;
    to_close = l;
    if (np_go(close_on_signal, &to_close) < 0)
        np_listener_close(l);

    for (;;) {
        np_conn c;
        rc = np_accept(l, &c);
        if (rc == -ECANCELED || rc == -EBADF)
            break; /* the listener was closed: we are shutting down */
        if (rc < 0) {
            /* Typically -EMFILE: out of descriptors. The listener stays
             * usable, but retrying at once would fail again: back off. */
            fprintf(stderr, "echo_server: accept: %s\n", np_strerror(rc));
            np_sleep(100 * NP_MILLISECOND);
            continue;
        }
        client *cl = malloc(sizeof *cl);
        if (cl == NULL) {
            np_close(c);
            continue;
        }
        cl->conn = c;
        np_mutex_lock(&lock);
        cl->next = clients.next;
        cl->prev = &clients;
        clients.next->prev = cl;
        clients.next = cl;
        np_mutex_unlock(&lock);
        /* The Go statement: `go serve(cl)`. */
        if (np_go(serve, cl) < 0) {
            np_mutex_lock(&lock);
            cl->prev->next = cl->next;
            cl->next->prev = cl->prev;
            np_mutex_unlock(&lock);
            np_close(c);
            free(cl);
        }
    }

    /* Shutdown: close every open connection. A task blocked reading its
     * connection wakes with -ECANCELED and finishes; np_run returns once the
     * last task has. */
    np_mutex_lock(&lock);
    for (client *cl = clients.next; cl != &clients; cl = cl->next)
        np_close(cl->conn);
    np_mutex_unlock(&lock);
    np_listener_close(l); /* -EBADF if the signal closed it already */
}

static long number(const char *s, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > 1000000) {
        fprintf(stderr, "echo_server: bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    np_config cfg = {0};
    int opt;
    while ((opt = getopt(argc, argv, "w:t:m:h")) != -1) {
        switch (opt) {
        case 'w': cfg.workers = (int)number(optarg, "worker count"); break;
        case 't': idle_timeout = number(optarg, "idle timeout") * NP_SECOND; break;
        case 'm': /* the stall monitor: -m off (bench/stall's control), or
                   * -m MILLISECONDS */
            cfg.stall_ns = strcmp(optarg, "off") == 0 ? -1 : number(optarg, "stall ms") * NP_MILLISECOND;
            break;
        default:
            fprintf(stderr, "usage: echo_server [-w WORKERS] [-t IDLE_SECONDS] [-m STALL_MS|off] [ADDRESS]\n");
            return 2;
        }
    }
    if (optind < argc)
        listen_addr = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "usage: echo_server [-w WORKERS] [-t IDLE_SECONDS] [-m STALL_MS|off] [ADDRESS]\n");
        return 2;
    }

    /* Watched from here on: a signal that comes before the task that
     * waits for it runs waits in the channel. */
    int rc;
    if ((rc = np_chan_make(&signals, sizeof(int), 2)) < 0 ||
        (rc = np_signal_notify(signals, SIGINT)) < 0 ||
        (rc = np_signal_notify(signals, SIGTERM)) < 0) {
        fprintf(stderr, "echo_server: signals: %s\n", np_strerror(rc));
        return 1;
    }

    /* Run accept_loop as the first task; np_run returns when it and every
     * connection task have finished. */
    rc = np_run(&cfg, accept_loop, NULL);
    np_signal_stop(signals);
    np_chan_free(signals);
    if (rc < 0) {
        fprintf(stderr, "echo_server: %s\n", np_strerror(rc));
        return 1;
    }
    return exit_code;
}
