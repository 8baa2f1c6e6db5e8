/* netpoll echo server for bench/idle (resident memory per idle connection),
 * in the two forms a netpoll server can take:
 *
 *   -m buf   (default) each connection's task reads into a 4 KiB buffer on
 *            its own stack and is blocked in np_read while idle, as Go's
 *            goroutine is blocked in conn.Read with its 4 KiB buffer;
 *   -m wait  each task waits with np_wait_readable, holding no buffer, and
 *            only then reads into a 4 KiB buffer taken for the moment
 *            (malloc, freed before it waits again).
 *
 * Every chunk read is written straight back (an echo server), so the client
 * can check each connection works before leaving it idle.
 *
 *   np_idle_echo [-m buf|wait] [-i MS] [-w WORKERS] [ADDRESS]
 *
 * -i MS sets np_config.idle_stack_ns: a task blocked that long has its
 * stack's memory given back (the used part copied to the heap meanwhile).
 *
 * ADDRESS defaults to 127.0.0.1:0 (a free port); once listening it prints
 * "listening on ADDRESS". Tasks use the default stack size (256 KiB of
 * address space each, committed only as touched).
 */
#include <netpoll.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../echo_accept.h"

#define BUF 4096

static const char *addr = "127.0.0.1:0";
static int wait_mode;

static void serve_buf(void *arg)
{
    np_conn c = bench_conn(arg);
    char buf[BUF];
    for (;;) {
        ssize_t n = np_read(c, buf, sizeof buf);
        if (n <= 0 || np_write(c, buf, (size_t)n) != n)
            break;
    }
    np_close(c);
}

static void serve_wait(void *arg)
{
    np_conn c = bench_conn(arg);
    for (;;) {
        if (np_wait_readable(c) < 0)
            break;
        char *buf = malloc(BUF); /* held only while there is data */
        if (buf == NULL)
            break;
        ssize_t n = np_read(c, buf, BUF);
        int ok = n > 0 && np_write(c, buf, (size_t)n) == n;
        free(buf);
        if (!ok)
            break;
    }
    np_close(c);
}

int main(int argc, char **argv)
{
    np_config cfg = {0};
    int opt;
    while ((opt = getopt(argc, argv, "m:i:w:")) != -1) {
        switch (opt) {
        case 'm':
            if (strcmp(optarg, "wait") == 0)
                wait_mode = 1;
            else if (strcmp(optarg, "buf") != 0)
                goto usage;
            break;
        case 'i': cfg.idle_stack_ns = atoll(optarg) * NP_MILLISECOND; break;
        case 'w': cfg.workers = atoi(optarg); break;
        default: goto usage;
        }
    }
    if (optind < argc)
        addr = argv[optind++];
    if (optind < argc) {
    usage:
        fprintf(stderr, "usage: np_idle_echo [-m buf|wait] [-i MS] [-w WORKERS] [ADDRESS]\n");
        return 2;
    }
    bench_server srv = {"np_idle_echo", addr, wait_mode ? serve_wait : serve_buf};
    return bench_server_run(&srv, &cfg);
}
