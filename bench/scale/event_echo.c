/* libevent echo server, the libevent column of bench/scale and bench/idle
 * (bench/echo, owned elsewhere, has no libevent column).
 *
 * One event_base, one persistent EV_READ event per connection. Reads go
 * into one static 64 KiB buffer (callbacks run one at a time on the loop
 * thread, so one buffer serves every connection: an idle connection holds
 * no buffer, as with libuv) and each chunk is written straight back; what
 * the kernel does not take is kept in a per-connection buffer and flushed on
 * EV_WRITE (reading pauses meanwhile). Accepted sockets get TCP_NODELAY.
 *
 *   event_echo ADDRESS        (host:port; port 0 = a free port)
 *
 * Prints "listening on <host:port>" once ready.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
    int fd;
    struct event *ev;  /* EV_READ|EV_PERSIST, or EV_WRITE|EV_PERSIST while pending */
    char *pend;
    size_t off, len;
};

static struct event_base *base;
static char rbuf[65536];

static void conn_free(struct conn *c)
{
    event_free(c->ev);
    close(c->fd);
    free(c->pend);
    free(c);
}

static void on_io(evutil_socket_t fd, short what, void *arg);

static void rearm(struct conn *c, short what)
{
    event_del(c->ev);
    event_assign(c->ev, base, c->fd, what | EV_PERSIST, on_io, c);
    event_add(c->ev, NULL);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (what & EV_WRITE) {
        while (c->len > 0) {
            ssize_t w = write(fd, c->pend + c->off, c->len);
            if (w < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) return;
                conn_free(c);
                return;
            }
            c->off += (size_t)w;
            c->len -= (size_t)w;
        }
        rearm(c, EV_READ);
        return;
    }
    ssize_t n = read(fd, rbuf, sizeof rbuf);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        conn_free(c);
        return;
    }
    size_t done = 0;
    while (done < (size_t)n) {
        ssize_t w = write(fd, rbuf + done, (size_t)n - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) {
                conn_free(c);
                return;
            }
            c->pend = realloc(c->pend, (size_t)n - done);
            if (!c->pend) abort();
            memcpy(c->pend, rbuf + done, (size_t)n - done);
            c->off = 0;
            c->len = (size_t)n - done;
            rearm(c, EV_WRITE);
            return;
        }
        done += (size_t)w;
    }
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    (void)arg;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return; /* EAGAIN, or EMFILE and the like: try on the next event */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) abort();
        c->fd = fd;
        c->ev = event_new(base, fd, EV_READ | EV_PERSIST, on_io, c);
        event_add(c->ev, NULL);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: event_echo HOST:PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    char host0[256];
    const char *colon = strrchr(argv[1], ':');
    if (!colon || (size_t)(colon - argv[1]) >= sizeof host0) {
        fprintf(stderr, "event_echo: bad address %s\n", argv[1]);
        return 2;
    }
    memcpy(host0, argv[1], (size_t)(colon - argv[1]));
    host0[colon - argv[1]] = 0;
    char *h = host0;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') { /* [v6]:port */
        h[hl - 1] = 0;
        h++;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE}, *ai;
    int rc = getaddrinfo(*h ? h : "127.0.0.1", colon + 1, &hints, &ai);
    if (rc) {
        fprintf(stderr, "event_echo: %s: %s\n", argv[1], gai_strerror(rc));
        return 2;
    }
    struct sockaddr_storage ss;
    int lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (lfd >= 0)
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(lfd, 4096) < 0) {
        fprintf(stderr, "event_echo: listen %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    freeaddrinfo(ai);
    socklen_t len = sizeof ss;
    getsockname(lfd, (struct sockaddr *)&ss, &len);
    char host[INET6_ADDRSTRLEN];
    int port;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        port = ntohs(s6->sin6_port);
        printf("listening on [%s]:%d\n", host, port);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        port = ntohs(s4->sin_port);
        printf("listening on %s:%d\n", host, port);
    }
    fflush(stdout);
    base = event_base_new();
    if (!base) return 1;
    struct event *lev = event_new(base, lfd, EV_READ | EV_PERSIST, on_accept, NULL);
    event_add(lev, NULL);
    event_base_dispatch(base);
    return 0;
}
