/* udp_echo — a UDP echo server: every datagram that arrives goes back to
 * whoever sent it.
 *
 *   udp_echo [-w WORKERS] [ADDRESS]
 *
 * ADDRESS defaults to 127.0.0.1:7778; port 0 picks a free port. Once the
 * socket is bound the server prints exactly one line to stdout, "listening
 * on ADDRESS" (with the real port), which scripts wait for. WORKERS is the
 * number of worker threads (default 0: one per CPU; one is plenty, since a
 * single task does all the work). SIGINT or SIGTERM stops it cleanly: it
 * prints how many datagrams it echoed to stderr and exits 0; a second signal
 * exits at once.
 *
 * Try it:  udp_echo &  then  socat - UDP:127.0.0.1:7778  (or nc -u).
 *
 * How datagrams differ from streams, and what stays the same:
 *  - There are no connections to accept. np_listen_packet binds one socket
 *    and np_read_from returns one whole datagram per call together with its
 *    sender's address, which np_write_to sends the reply to. One task can
 *    therefore serve every client, as a Go server does with one goroutine
 *    looping on ReadFrom / WriteTo.
 *  - A datagram is never split or merged: one read, one datagram; one
 *    write, one datagram, all of it or an error. A datagram longer than the
 *    buffer is cut to the buffer, so the buffer here holds the largest one
 *    UDP can carry.
 *  - The task is written as plain blocking code, as for TCP: np_read_from
 *    parks the task (not the worker thread) until a datagram arrives.
 *  - Shutdown works as for streams: np_close from another task wakes the
 *    blocked np_read_from with -ECANCELED.
 */
#include <netpoll.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The largest UDP payload over IPv4 (65,535 minus the IP and UDP headers);
 * IPv6 jumbograms aside, nothing longer can arrive. */
#define MAX_DATAGRAM 65507

static const char *listen_addr = "127.0.0.1:7778";
static np_conn sock;   /* the bound socket, shared by the two tasks */
static np_chan signals; /* SIGINT and SIGTERM, as ints */
static int exit_code;

/* Waits for SIGINT or SIGTERM, then closes the socket, which wakes the echo
 * task. It stops watching first, so a second signal takes the default action
 * and ends the process at once. */
static void close_on_signal(void *arg)
{
    (void)arg;
    int signo;
    if (np_chan_recv(signals, &signo, 0) == 0)
        fprintf(stderr, "udp_echo: %s, shutting down\n", strsignal(signo));
    np_signal_stop(signals);
    np_close(sock);
}

static void echo_loop(void *arg)
{
    (void)arg;
    int rc = np_listen_packet(&sock, "udp", listen_addr);
    if (rc < 0) {
        fprintf(stderr, "udp_echo: listen %s: %s\n", listen_addr, np_strerror(rc));
        exit_code = 1;
        return;
    }
    char addr[128];
    np_local_addr(sock, addr, sizeof addr);
    printf("listening on %s\n", addr);
    fflush(stdout);

    /* `go func() { <-signals; conn.Close() }()` */
    if (np_go(close_on_signal, NULL) < 0) {
        np_close(sock);
        exit_code = 1;
        return;
    }

    /* Static, not on the task's stack: 64 KiB is a quarter of a default
     * stack, and only this one task uses it. */
    static char buf[MAX_DATAGRAM];
    unsigned long long echoed = 0;
    for (;;) {
        np_addr from; /* who sent it: where the reply goes */
        ssize_t n = np_read_from(sock, buf, sizeof buf, &from);
        if (n == -ECANCELED || n == -EBADF)
            break; /* closed by close_on_signal: we are shutting down */
        if (n < 0) {
            /* Not fatal for a datagram socket: typically -ECONNREFUSED, an
             * ICMP "port unreachable" for an earlier reply whose sender had
             * gone. The socket goes on serving everyone else. */
            fprintf(stderr, "udp_echo: read: %s\n", np_strerror((int)n));
            continue;
        }
        /* n may be 0: an empty datagram is a datagram, and echoed as one. */
        ssize_t w = np_write_to(sock, buf, (size_t)n, &from);
        if (w == -ECANCELED || w == -EBADF)
            break;
        if (w < 0) {
            /* One client's failure (-EMSGSIZE, an unreachable address)
             * must not stop the server: UDP makes no promise, so the reply
             * is dropped, as the network could have dropped it. */
            char who[128];
            if (np_addr_format(&from, who, sizeof who) < 0)
                strcpy(who, "?");
            fprintf(stderr, "udp_echo: reply to %s: %s\n", who, np_strerror((int)w));
            continue;
        }
        echoed++;
    }
    np_close(sock); /* -EBADF, harmless, if the signal task closed it */
    fprintf(stderr, "udp_echo: %llu datagrams echoed\n", echoed);
}

int main(int argc, char **argv)
{
    np_config cfg = {0};
    int opt;
    while ((opt = getopt(argc, argv, "w:h")) != -1) {
        switch (opt) {
        case 'w': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || v < 0 || v > 1024) {
                fprintf(stderr, "udp_echo: bad worker count '%s'\n", optarg);
                return 2;
            }
            cfg.workers = (int)v;
            break;
        }
        default:
            fprintf(stderr, "usage: udp_echo [-w WORKERS] [ADDRESS]\n");
            return 2;
        }
    }
    if (optind < argc)
        listen_addr = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "usage: udp_echo [-w WORKERS] [ADDRESS]\n");
        return 2;
    }

    /* Watched from here on: a signal that comes before the task that waits
     * for it runs waits in the channel. */
    int rc;
    if ((rc = np_chan_make(&signals, sizeof(int), 2)) < 0 ||
        (rc = np_signal_notify(signals, SIGINT)) < 0 ||
        (rc = np_signal_notify(signals, SIGTERM)) < 0) {
        fprintf(stderr, "udp_echo: signals: %s\n", np_strerror(rc));
        return 1;
    }

    rc = np_run(&cfg, echo_loop, NULL);
    np_signal_stop(signals);
    np_chan_free(signals);
    if (rc < 0) {
        fprintf(stderr, "udp_echo: %s\n", np_strerror(rc));
        return 1;
    }
    return exit_code;
}
