/* Client for bench/idle: opens CONNS TCP connections to ADDRESS, one after
 * the other; on each, sends a SIZE-byte message and reads its echo back (so
 * every connection has carried traffic and every server has touched its
 * per-connection state, buffers included), then leaves all of them open and
 * idle. Prints "ready CONNS" once the last echo is back, then sleeps until
 * killed (SIGTERM).
 *
 *   idle_client [-c CONNS] [-s SIZE] HOST:PORT
 *
 * Exit status 1 on any connect, write or read failure (with a message).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int conns = 10000, size = 64, opt;
    while ((opt = getopt(argc, argv, "c:s:")) != -1) {
        switch (opt) {
        case 'c': conns = atoi(optarg); break;
        case 's': size = atoi(optarg); break;
        default: goto usage;
        }
    }
    if (optind != argc - 1 || conns < 1 || size < 1 || size > 65536) {
    usage:
        fprintf(stderr, "usage: idle_client [-c CONNS] [-s SIZE] HOST:PORT\n");
        return 2;
    }
    char host[256];
    const char *addr = argv[optind], *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host) {
        fprintf(stderr, "idle_client: bad address %s\n", addr);
        return 2;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
    int rc = getaddrinfo(*host ? host : "127.0.0.1", colon + 1, &hints, &ai);
    if (rc) {
        fprintf(stderr, "idle_client: %s: %s\n", addr, gai_strerror(rc));
        return 1;
    }
    char *tx = malloc((size_t)size), *rx = malloc((size_t)size);
    if (!tx || !rx)
        return 1;
    for (int i = 0; i < size; i++)
        tx[i] = (char)('a' + i % 26);
    for (int i = 0; i < conns; i++) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            fprintf(stderr, "idle_client: socket (connection %d): %s\n", i, strerror(errno));
            return 1;
        }
        while (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "idle_client: connect (connection %d): %s\n", i, strerror(errno));
            return 1;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (write(fd, tx, (size_t)size) != size) {
            fprintf(stderr, "idle_client: write (connection %d): %s\n", i, strerror(errno));
            return 1;
        }
        for (int got = 0; got < size;) {
            ssize_t n = read(fd, rx + got, (size_t)(size - got));
            if (n <= 0) {
                fprintf(stderr, "idle_client: read (connection %d): %s\n", i,
                        n == 0 ? "closed by the server" : strerror(errno));
                return 1;
            }
            got += (int)n;
        }
        if (memcmp(tx, rx, (size_t)size) != 0) {
            fprintf(stderr, "idle_client: connection %d: wrong echo\n", i);
            return 1;
        }
    }
    printf("ready %d\n", conns);
    fflush(stdout);
    for (;;)
        pause(); /* until killed */
}
