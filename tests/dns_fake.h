/* A fake DNS server for tests, on 127.0.0.1 (never the network): a plain
 * thread answering every query on a UDP socket, and a resolv.conf naming
 * it (NP_RESOLV_CONF) and NP_DNS_SERVERS naming its port.
 *
 *   DNS_NXDOMAIN  every name does not exist (RCODE 3)
 *   DNS_SILENT    never answers (an unresponsive resolver)
 *   DNS_A         every A query gets 127.0.0.1; other types, no data
 */
#ifndef NP_DNS_FAKE_H
#define NP_DNS_FAKE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { DNS_NXDOMAIN, DNS_SILENT, DNS_A };

typedef struct dns_fake {
    int fd, mode;
    pthread_t th;
    atomic_int queries;
    char conf[64], servers[32];
} dns_fake;

static void *dns_fake_loop(void *arg)
{
    dns_fake *d = arg;
    unsigned char q[512];
    for (;;) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(d->fd, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
        if (n <= 0)
            return NULL; /* closed */
        if (n < 12)
            continue;
        atomic_fetch_add(&d->queries, 1);
        if (d->mode == DNS_SILENT)
            continue;
        unsigned char r[600];
        memcpy(r, q, (size_t)n);
        r[2] = 0x81; /* response, recursion desired */
        r[3] = 0x80; /* recursion available, RCODE 0 */
        /* The question's end: the name, then type and class. */
        size_t i = 12;
        while (i < (size_t)n && q[i])
            i += (size_t)q[i] + 1;
        size_t qend = i + 5;
        if (qend > (size_t)n)
            continue;
        unsigned type = (unsigned)(q[i + 1] << 8 | q[i + 2]);
        size_t len = qend;
        r[6] = r[7] = r[8] = r[9] = r[10] = r[11] = 0; /* no answers... */
        if (d->mode == DNS_NXDOMAIN) {
            r[3] = 0x83;
        } else if (type == 1) { /* ...but one A record: 127.0.0.1 */
            r[7] = 1;
            unsigned char a[] = { 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1 };
            memcpy(r + len, a, sizeof a);
            len += sizeof a;
        }
        sendto(d->fd, r, len, 0, (struct sockaddr *)&from, fl);
    }
}

/* Starts the server and writes its resolv.conf; sets NP_RESOLV_CONF. */
static int dns_fake_start(dns_fake *d, int mode)
{
    memset(d, 0, sizeof *d);
    d->mode = mode;
    d->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    if (d->fd < 0 || bind(d->fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(d->fd, (struct sockaddr *)&a, &al) < 0)
        return -1;
    snprintf(d->conf, sizeof d->conf, "/tmp/np_resolv_%d_%d.conf", (int)getpid(), ntohs(a.sin_port));
    FILE *f = fopen(d->conf, "w");
    if (!f)
        return -1;
    fprintf(f, "nameserver 127.0.0.1:%d\noptions timeout:1 attempts:1\n", ntohs(a.sin_port));
    fclose(f);
    setenv("NP_RESOLV_CONF", d->conf, 1);
    snprintf(d->servers, sizeof d->servers, "127.0.0.1:%d", ntohs(a.sin_port));
    setenv("NP_DNS_SERVERS", d->servers, 1);
    return pthread_create(&d->th, NULL, dns_fake_loop, d) == 0 ? 0 : -1;
}

static void dns_fake_stop(dns_fake *d)
{
    shutdown(d->fd, SHUT_RDWR);
    pthread_join(d->th, NULL);
    close(d->fd);
    unlink(d->conf);
    unsetenv("NP_RESOLV_CONF");
    unsetenv("NP_DNS_SERVERS");
}

#endif
