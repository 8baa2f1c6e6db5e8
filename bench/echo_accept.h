/* The accept loop of the netpoll bench servers (bench/idle/np_idle_echo.c,
 * bench/churn/np_echo_deadline.c): listen, print the one line the scripts
 * wait for ("listening on ADDRESS", with the real port), then one task per
 * accepted connection. The task's argument is the connection's id, passed
 * by value (np_conn is one 64-bit id): no allocation per connection, so
 * the servers' memory figures hold only what netpoll itself keeps.
 */
#ifndef NP_BENCH_ECHO_ACCEPT_H
#define NP_BENCH_ECHO_ACCEPT_H

#include <netpoll.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct bench_server {
    const char *prog;      /* for messages */
    const char *addr;      /* to listen on */
    void (*serve)(void *); /* a connection's task; see bench_conn */
} bench_server;

/* The connection a serve task was started with. */
static inline np_conn bench_conn(void *arg)
{
    return (np_conn){(uint64_t)(uintptr_t)arg};
}

static void bench_accept_loop(void *arg)
{
    const bench_server *s = arg;
    np_listener l;
    int rc = np_listen(&l, "tcp", s->addr);
    if (rc < 0) {
        fprintf(stderr, "%s: listen %s: %s\n", s->prog, s->addr, np_strerror(rc));
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
            /* Typically -EMFILE: retrying at once would fail again. */
            fprintf(stderr, "%s: accept: %s\n", s->prog, np_strerror(rc));
            np_sleep(100 * NP_MILLISECOND);
            continue;
        }
        if (np_go(s->serve, (void *)(uintptr_t)c.id) < 0)
            np_close(c);
    }
}

/* Runs the server until the process is killed; main's exit status if
 * np_run itself fails. */
static inline int bench_server_run(const bench_server *s, const np_config *cfg)
{
    int rc = np_run(cfg, bench_accept_loop, (void *)s);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", s->prog, np_strerror(rc));
        return 1;
    }
    return 0;
}

#endif
