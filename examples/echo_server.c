/* echo_server — the smallest useful netpoll server: it sends back whatever
 * each client sends.
 *
 *   echo_server [-w WORKERS] [-t IDLE_SECONDS] [ADDRESS]
 *
 * ADDRESS defaults to 127.0.0.1:7777; port 0 picks a free port. Once the
 * server accepts connections it prints exactly one line to stdout,
 * "listening on ADDRESS" (with the real port), which scripts wait for.
 * WORKERS is the number of worker threads (default 0: one per CPU). With -t,
 * a connection that sends nothing for IDLE_SECONDS is closed. SIGINT or
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
 */
#include <netpoll.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
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

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* guards all below */
static client clients = {.prev = &clients, .next = &clients}; /* list head */
static np_listener listener;                                  /* id 0: none */
static int stopping;

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

    pthread_mutex_lock(&lock);
    cl->prev->next = cl->next;
    cl->next->prev = cl->prev;
    pthread_mutex_unlock(&lock);
    np_close(cl->conn); /* -EBADF, harmless, if shutdown closed it first */
    free(cl);
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

    pthread_mutex_lock(&lock);
    listener = l; /* from now on a signal closes it */
    int stop = stopping;
    pthread_mutex_unlock(&lock);
    if (stop)
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
        pthread_mutex_lock(&lock);
        cl->next = clients.next;
        cl->prev = &clients;
        clients.next->prev = cl;
        clients.next = cl;
        pthread_mutex_unlock(&lock);
        /* The Go statement: `go serve(cl)`. */
        if (np_go(serve, cl) < 0) {
            pthread_mutex_lock(&lock);
            cl->prev->next = cl->next;
            cl->next->prev = cl->prev;
            pthread_mutex_unlock(&lock);
            np_close(c);
            free(cl);
        }
    }

    /* Shutdown: close every open connection. A task blocked reading its
     * connection wakes with -ECANCELED and finishes; np_run returns once the
     * last task has. */
    pthread_mutex_lock(&lock);
    listener = (np_listener){0};
    for (client *cl = clients.next; cl != &clients; cl = cl->next)
        np_close(cl->conn);
    pthread_mutex_unlock(&lock);
    np_listener_close(l); /* -EBADF if the signal thread closed it already */
}

/* A plain thread, not a task: it waits for SIGINT/SIGTERM (blocked in every
 * other thread) and closes the listener, which ends the accept loop. */
static void *signal_thread(void *arg)
{
    const sigset_t *set = arg;
    int sig;
    sigwait(set, &sig);
    pthread_mutex_lock(&lock);
    stopping = 1;
    if (listener.id != 0)
        np_listener_close(listener); /* callable from any thread */
    pthread_mutex_unlock(&lock);
    sigwait(set, &sig);
    fprintf(stderr, "echo_server: second signal, exiting at once\n");
    _exit(1);
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
    while ((opt = getopt(argc, argv, "w:t:h")) != -1) {
        switch (opt) {
        case 'w': cfg.workers = (int)number(optarg, "worker count"); break;
        case 't': idle_timeout = number(optarg, "idle timeout") * NP_SECOND; break;
        default:
            fprintf(stderr, "usage: echo_server [-w WORKERS] [-t IDLE_SECONDS] [ADDRESS]\n");
            return 2;
        }
    }
    if (optind < argc)
        listen_addr = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "usage: echo_server [-w WORKERS] [-t IDLE_SECONDS] [ADDRESS]\n");
        return 2;
    }

    /* Block the signals before np_run starts the workers, so that every
     * thread inherits the mask and only signal_thread receives them. */
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, signal_thread, &set) != 0) {
        fprintf(stderr, "echo_server: cannot start the signal thread\n");
        return 1;
    }
    pthread_detach(t);

    /* Run accept_loop as the first task; np_run returns when it and every
     * connection task have finished. */
    int rc = np_run(&cfg, accept_loop, NULL);
    if (rc < 0) {
        fprintf(stderr, "echo_server: %s\n", np_strerror(rc));
        return 1;
    }
    return exit_code;
}
