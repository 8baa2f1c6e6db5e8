/* The program tests/gdb/check.sh debugs: tasks parked in np_read, np_sleep
 * and np_chan_recv, then a call to gdbtarget_stop (the breakpoint) from the
 * main task, once np_dump says they are all parked. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netpoll.h"

#if defined(__clang__)
#define NOINLINE __attribute__((noinline, optnone)) /* clang has no noipa */
#else
#define NOINLINE __attribute__((noinline, noipa))
#endif

void gdbtarget_reader(void *arg);
void gdbtarget_sleeper(void *arg);
void gdbtarget_receiver(void *arg);
void gdbtarget_stop(void);

static np_conn conn;
static np_chan chan;

NOINLINE void gdbtarget_reader(void *arg)
{
    (void)arg;
    char b;
    np_read(conn, &b, 1);
}

NOINLINE void gdbtarget_sleeper(void *arg)
{
    (void)arg;
    np_sleep(60 * NP_SECOND);
}

NOINLINE void gdbtarget_receiver(void *arg)
{
    (void)arg;
    int v;
    np_chan_recv(chan, &v, 0);
}

/* The breakpoint. */
NOINLINE void gdbtarget_stop(void)
{
    __asm__ volatile("" ::: "memory");
}

static void die(const char *what)
{
    fprintf(stderr, "gdb_target: %s\n", what);
    exit(2);
}

static bool all_parked(void)
{
    static char buf[1 << 16];
    int fd = memfd_create("dump", 0);
    if (fd < 0 || np_dump(fd) != 0)
        die("np_dump");
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    if (n < 0)
        die("pread");
    buf[n] = 0;
    return strstr(buf, "parked in np_read") && strstr(buf, "parked in np_sleep") &&
           strstr(buf, "parked in np_chan_recv");
}

static void main_task(void *arg)
{
    (void)arg;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || np_conn_from_fd(&conn, sv[0]) != 0 ||
        np_chan_make(&chan, sizeof(int), 0) != 0)
        die("setup");
    np_go(gdbtarget_reader, NULL);
    np_go(gdbtarget_sleeper, NULL);
    np_go(gdbtarget_receiver, NULL);
    int64_t until = np_now() + 20 * NP_SECOND;
    while (!all_parked()) {
        if (np_now() > until)
            die("tasks never parked");
        np_sleep(NP_MILLISECOND);
    }
    gdbtarget_stop();
    _exit(0); /* the others wait on */
}

int main(void)
{
    np_config cfg = { .workers = 2 };
    return np_run(&cfg, main_task, NULL);
}
