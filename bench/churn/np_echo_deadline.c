/* netpoll echo server for bench/churn (deadline churn): one task per
 * connection reading into a 4 KiB buffer and writing each chunk back, with
 * or without a read deadline set before every read and a write deadline set
 * before every write (each now + 30 s, so none ever fires: what is measured
 * is the cost of setting, moving and clearing deadlines at the rate of the
 * I/O itself, the pattern of a server with per-request timeouts).
 *
 *   np_echo_deadline [-d] [-w WORKERS] [ADDRESS]
 *
 *   -d  set the deadlines (without it: none, otherwise the same program)
 *
 * ADDRESS defaults to 127.0.0.1:0; once listening it prints
 * "listening on ADDRESS". bench/churn/go_echo_deadline.go is the Go twin.
 */
#include <netpoll.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define BUF 4096
#define TIMEOUT (30 * NP_SECOND)

static const char *addr = "127.0.0.1:0";
static int deadlines;

static void serve(void *arg)
{
    np_conn c = {(uint64_t)(uintptr_t)arg};
    char buf[BUF];
    for (;;) {
        if (deadlines)
            np_set_read_deadline(c, np_now() + TIMEOUT);
        ssize_t n = np_read(c, buf, sizeof buf);
        if (n <= 0)
            break;
        if (deadlines)
            np_set_write_deadline(c, np_now() + TIMEOUT);
        if (np_write(c, buf, (size_t)n) != n)
            break;
    }
    np_close(c);
}

static void accept_loop(void *arg)
{
    (void)arg;
    np_listener l;
    int rc = np_listen(&l, "tcp", addr);
    if (rc < 0) {
        fprintf(stderr, "np_echo_deadline: listen %s: %s\n", addr, np_strerror(rc));
        exit(1);
    }
    char name[128];
    np_listener_addr(l, name, sizeof name);
    printf("listening on %s\n", name);
    fflush(stdout);
    for (;;) {
        np_conn c;
        rc = np_accept(l, &c);
        if (rc < 0) {
            fprintf(stderr, "np_echo_deadline: accept: %s\n", np_strerror(rc));
            np_sleep(100 * NP_MILLISECOND);
            continue;
        }
        if (np_go(serve, (void *)(uintptr_t)c.id) < 0)
            np_close(c);
    }
}

int main(int argc, char **argv)
{
    np_config cfg = {0};
    int opt;
    while ((opt = getopt(argc, argv, "dw:")) != -1) {
        switch (opt) {
        case 'd': deadlines = 1; break;
        case 'w': cfg.workers = atoi(optarg); break;
        default: goto usage;
        }
    }
    if (optind < argc)
        addr = argv[optind++];
    if (optind < argc) {
    usage:
        fprintf(stderr, "usage: np_echo_deadline [-d] [-w WORKERS] [ADDRESS]\n");
        return 2;
    }
    int rc = np_run(&cfg, accept_loop, NULL);
    if (rc < 0) {
        fprintf(stderr, "np_echo_deadline: %s\n", np_strerror(rc));
        return 1;
    }
    return 0;
}
