/* Hand-written edge-triggered epoll echo server: the baseline of bench/echo.
 *
 * One thread, one epoll set. Every socket is registered once, with
 * EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET (as Go's poller does), so the steady
 * state makes no epoll_ctl calls at all. On readiness a connection is read
 * until EAGAIN and each chunk is written straight back; what the kernel does
 * not take is kept in a per-connection buffer and flushed on the next
 * EPOLLOUT edge (reading pauses while that buffer is over PEND_MAX).
 * Accepted sockets get TCP_NODELAY, as netpoll and Go set it.
 *
 * Usage: epoll_echo [-s] ADDRESS      (ADDRESS: host:port, [v6]:port, :port)
 *   -s  stop reading after a short read instead of reading until EAGAIN
 *       (one read(2) fewer per message; not the default, see run.sh)
 * Prints "listening on <host:port>" once ready.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RBUF     65536
#define PEND_MAX (1u << 20)
#define MAXEV    256

struct conn {
    int    fd;
    bool   rd_paused; /* stopped reading while pend is over PEND_MAX */
    size_t off, len, cap; /* pend[off, off+len): accepted, not yet written */
    char  *pend;
};

static char rbuf[RBUF];
static bool short_read_stops;
static int  listener_tag; /* epoll data.ptr of the listener */

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void conn_close(struct conn *c)
{
    close(c->fd); /* also drops it from the epoll set */
    free(c->pend);
    free(c);
}

static bool pend_append(struct conn *c, const char *p, size_t n)
{
    if (c->off && c->off + c->len + n > c->cap) {
        memmove(c->pend, c->pend + c->off, c->len);
        c->off = 0;
    }
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + n) cap *= 2;
        char *np = realloc(c->pend, cap);
        if (!np) return false;
        c->pend = np;
        c->cap = cap;
    }
    memcpy(c->pend + c->off + c->len, p, n);
    c->len += n;
    return true;
}

/* Writes out the pending buffer; false on a fatal error. */
static bool flush(struct conn *c)
{
    while (c->len) {
        ssize_t w = write(c->fd, c->pend + c->off, c->len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN;
        }
        c->off += (size_t)w;
        c->len -= (size_t)w;
    }
    c->off = 0;
    return true;
}

/* Reads until EAGAIN, echoing each chunk; false: close the connection. */
static bool on_readable(struct conn *c, bool rdhup)
{
    for (;;) {
        if (c->len > PEND_MAX) {
            c->rd_paused = true; /* resumed from on_writable */
            return true;
        }
        ssize_t n = read(c->fd, rbuf, sizeof rbuf);
        if (n > 0) {
            size_t done = 0;
            if (c->len == 0) {
                ssize_t w;
                do w = write(c->fd, rbuf, (size_t)n);
                while (w < 0 && errno == EINTR);
                if (w < 0 && errno != EAGAIN) return false;
                done = w < 0 ? 0 : (size_t)w;
            }
            if (done < (size_t)n && !pend_append(c, rbuf + done, (size_t)n - done))
                return false;
            if (short_read_stops && (size_t)n < sizeof rbuf && !rdhup) return true;
            continue;
        }
        if (n == 0) return false; /* EOF: the client is done */
        if (errno == EAGAIN) return true;
        if (errno != EINTR) return false;
    }
}

static bool on_writable(struct conn *c)
{
    if (!flush(c)) return false;
    if (c->rd_paused && c->len <= PEND_MAX) {
        c->rd_paused = false;
        return on_readable(c, false);
    }
    return true;
}

static void accept_all(int lfd, int ep)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN) return;
            if (errno == EINTR || errno == ECONNABORTED) continue;
            /* EMFILE/ENFILE/ENOBUFS/ENOMEM: the pending connection stays
             * queued; with EPOLLET we would not hear of it again until the
             * next one arrives, which is acceptable for this benchmark. */
            perror("accept4");
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            perror("epoll_ctl");
            conn_close(c);
        }
    }
}

/* "host:port", "[v6]:port" or ":port" -> bound, listening socket. */
static int listen_on(const char *address)
{
    char host[256];
    const char *colon = strrchr(address, ':');
    if (!colon || (size_t)(colon - address) >= sizeof host) {
        fprintf(stderr, "bad address %s (want host:port)\n", address);
        exit(2);
    }
    size_t hl = (size_t)(colon - address);
    memcpy(host, address, hl);
    host[hl] = 0;
    char *h = host;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = 0;
        h = host + 1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res;
    int rc = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &res);
    if (rc) {
        fprintf(stderr, "%s: %s\n", address, gai_strerror(rc));
        exit(2);
    }
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) die("bind");
    if (listen(fd, 4096) < 0) die("listen");
    freeaddrinfo(res);
    return fd;
}

static void print_addr(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ip[INET6_ADDRSTRLEN];
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) die("getsockname");
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        printf("listening on [%s]:%u\n", ip, ntohs(a->sin6_port));
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        printf("listening on %s:%u\n", ip, ntohs(a->sin_port));
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "s")) != -1) {
        if (opt == 's') short_read_stops = true;
        else goto usage;
    }
    if (optind != argc - 1) {
    usage:
        fprintf(stderr, "usage: %s [-s] ADDRESS\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = listen_on(argv[optind]);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN | EPOLLET, .data.ptr = &listener_tag};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) die("epoll_ctl");
    print_addr(lfd);

    struct epoll_event evs[MAXEV];
    for (;;) {
        int n = epoll_wait(ep, evs, MAXEV, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &listener_tag) {
                accept_all(lfd, ep);
                continue;
            }
            struct conn *c = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            bool ok = true;
            if ((e & EPOLLOUT) && (c->len || c->rd_paused)) ok = on_writable(c);
            if (ok && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                ok = on_readable(c, (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
            if (!ok) conn_close(c);
        }
    }
}
