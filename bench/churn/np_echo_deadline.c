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

#include "../echo_accept.h"

#define BUF 4096
#define TIMEOUT (30 * NP_SECOND)

static const char *addr = "127.0.0.1:0";
static int deadlines;

static void serve(void *arg)
{
    np_conn c = bench_conn(arg);
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
    bench_server srv = {"np_echo_deadline", addr, serve};
    return bench_server_run(&srv, &cfg);
}
