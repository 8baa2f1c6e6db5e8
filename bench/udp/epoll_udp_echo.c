/* Hand-written epoll UDP echo server: the baseline of bench/udp.
 *
 * One thread, one non-blocking UDP socket registered once with
 * EPOLLIN|EPOLLET (as Go's poller and netpoll register theirs), so the
 * steady state makes no epoll_ctl calls. On each edge it reads datagrams
 * with recvfrom(2) until EAGAIN and sends each straight back with
 * sendto(2): per wake-up one epoll_wait, one recvfrom + sendto per datagram
 * and one recvfrom that finds nothing, which is what a task looping on
 * np_read_from / np_write_to and a goroutine looping on ReadFrom / WriteTo
 * do too. No recvmmsg/sendmmsg batching: neither of the others batches.
 * A reply the kernel refuses for want of buffer space (EAGAIN, ENOBUFS) is
 * dropped, as UDP may drop it anyway (the load generator resends after
 * 200 ms and counts it lost); on loopback with a bounded number in flight
 * it does not happen.
 *
 * Usage: epoll_udp_echo ADDRESS      (host:port, [v6]:port, :port)
 * Prints "listening on <host:port>" once ready.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[65536];

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* "host:port", "[v6]:port" or ":port" -> bound UDP socket. */
static int bind_on(const char *address)
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
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res;
    int rc = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &res);
    if (rc) {
        fprintf(stderr, "%s: %s\n", address, gai_strerror(rc));
        exit(2);
    }
    int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) die("bind");
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
    if (argc != 2) {
        fprintf(stderr, "usage: %s ADDRESS\n", argv[0]);
        return 2;
    }
    int fd = bind_on(argv[1]);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    print_addr(fd);

    for (;;) {
        struct epoll_event out;
        int n = epoll_wait(ep, &out, 1, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (;;) { /* edge-triggered: drain the socket */
            struct sockaddr_storage from;
            socklen_t fl = sizeof from;
            ssize_t r = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
            if (r < 0) {
                if (errno == EAGAIN) break;
                if (errno == EINTR || errno == ECONNREFUSED) continue;
                die("recvfrom");
            }
            ssize_t w;
            do w = sendto(fd, buf, (size_t)r, 0, (struct sockaddr *)&from, fl);
            while (w < 0 && errno == EINTR);
            if (w < 0 && errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED)
                die("sendto");
        }
    }
}
