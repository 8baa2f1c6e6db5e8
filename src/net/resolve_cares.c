/* Name lookup with c-ares, driven by np_wait_fd. See resolve.h.
 *
 * One c-ares channel per lookup: channels are not to be shared between
 * threads, a lookup is rare beside the I/O it leads to, and destroying the
 * channel is how a deadline cancels everything the lookup started (its
 * sockets included). The loop: ask c-ares which sockets it wants watched
 * and how long until its own next timeout; wait for the first of that
 * socket, that timeout and the caller's deadline; hand what happened to
 * ares_process_fd; until the callback has run.
 */
#include <ares.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/sys.h"
#include "net/resolve.h"
#include "netpoll.h"

/* Several sockets (several servers, UDP and TCP) are watched by waiting on
 * the first for at most this long and then looking at all of them. */
#define MULTI_SLICE_NS (5 * NP_MILLISECOND)

typedef struct query {
    bool done;
    int status;
    np__addrs *out;
    uint16_t port;
} query;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_status;

static void library_init(void)
{
    init_status = ares_library_init(ARES_LIB_INIT_ALL);
}

const char *np__resolver_name(void)
{
    return "c-ares";
}

static void on_result(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    query *q = arg;
    q->done = true;
    q->status = status;
    if (status != ARES_SUCCESS || !res)
        return;
    np__addrs *out = q->out;
    out->n = 0;
    for (struct ares_addrinfo_node *n = res->nodes; n && out->n < NP__MAX_ADDRS; n = n->ai_next) {
        if (n->ai_addrlen > sizeof out->sa[0] ||
            (n->ai_family != AF_INET && n->ai_family != AF_INET6))
            continue;
        memcpy(&out->sa[out->n], n->ai_addr, n->ai_addrlen);
        out->len[out->n] = n->ai_addrlen;
        if (n->ai_family == AF_INET)
            ((struct sockaddr_in *)&out->sa[out->n])->sin_port = htons(q->port);
        else
            ((struct sockaddr_in6 *)&out->sa[out->n])->sin6_port = htons(q->port);
        out->n++;
    }
    ares_freeaddrinfo(res);
    if (out->n == 0)
        q->status = ARES_ENODATA;
}

static int status_to_error(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return 0;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_ENONAME:
        return NP_ENOHOST;
    case ARES_EBADNAME:
    case ARES_EBADFLAGS:
    case ARES_EBADFAMILY:
    case ARES_EBADHINTS:
    case ARES_EBADSTR:
        return -EINVAL;
    case ARES_ENOMEM:
        return -ENOMEM;
    default: /* timeouts, refusals, server failures, bad responses */
        return -EAGAIN;
    }
}

/* Waits for c-ares's sockets, its next timeout or the deadline, and lets
 * c-ares handle what happened. 0, or -ETIMEDOUT at the deadline, or
 * another error of np_wait_fd. */
static int step(ares_channel ch, int64_t deadline)
{
    ares_socket_t socks[ARES_GETSOCK_MAXNUM];
    int bits = ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
    struct pollfd pf[ARES_GETSOCK_MAXNUM];
    int n = 0;
    for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
        /* As ARES_GETSOCK_READABLE / _WRITABLE, on an unsigned copy: the
         * macros shift a signed 1 into the sign bit for the last socket. */
        unsigned ub = (unsigned)bits;
        short ev = (short)((((ub >> i) & 1u) ? POLLIN : 0) |
                           (((ub >> (i + ARES_GETSOCK_MAXNUM)) & 1u) ? POLLOUT : 0));
        if (ev)
            pf[n++] = (struct pollfd){ .fd = socks[i], .events = ev };
    }
    struct timeval tv, *tvp = ares_timeout(ch, NULL, &tv);
    int64_t now = np_now();
    int64_t until = deadline;
    if (tvp) {
        int64_t t = now + (int64_t)tvp->tv_sec * NP_SECOND + (int64_t)tvp->tv_usec * NP_MICROSECOND;
        if (until == 0 || t < until)
            until = t;
    }
    if (n > 1 && (until == 0 || until > now + MULTI_SLICE_NS))
        until = now + MULTI_SLICE_NS;
    if (until != 0 && until <= now)
        until = -1; /* due: a look, no wait */
    int rc = 0;
    if (n > 0) {
        int ev = ((pf[0].events & POLLIN) ? NP_READABLE : 0) | ((pf[0].events & POLLOUT) ? NP_WRITABLE : 0);
        rc = np_wait_fd(pf[0].fd, ev, until);
    } else if (until != 0) {
        rc = np_sleep_until(until < 0 ? 0 : until);
    }
    if (rc < 0 && rc != -ETIMEDOUT)
        return rc;
    if (deadline != 0 && np_now() >= deadline)
        return -ETIMEDOUT;
    /* Which sockets are ready, all at once. */
    int ready = n > 0 ? NP__SYS(poll(pf, (nfds_t)n, 0)) : 0;
    bool any = false;
    for (int i = 0; ready > 0 && i < n; i++) {
        if (!pf[i].revents)
            continue;
        any = true;
        bool r = pf[i].revents & (POLLIN | POLLHUP | POLLERR);
        bool w = pf[i].revents & (POLLOUT | POLLHUP | POLLERR);
        ares_process_fd(ch, r ? pf[i].fd : ARES_SOCKET_BAD, w ? pf[i].fd : ARES_SOCKET_BAD);
    }
    if (!any)
        ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* its timeouts */
    return 0;
}

int np__lookup(const char *host, uint16_t port, int family, int64_t deadline, np__addrs *out)
{
    pthread_once(&init_once, library_init);
    if (init_status != ARES_SUCCESS)
        return -ENOMEM;
    struct ares_options opts;
    memset(&opts, 0, sizeof opts);
    int mask = 0;
    const char *conf = getenv("NP_RESOLV_CONF");
    if (conf && conf[0]) {
        opts.resolvconf_path = (char *)conf;
        mask |= ARES_OPT_RESOLVCONF;
    }
    ares_channel ch;
    int st = ares_init_options(&ch, &opts, mask);
    if (st != ARES_SUCCESS)
        return st == ARES_ENOMEM ? -ENOMEM : -EAGAIN;
    const char *servers = getenv("NP_DNS_SERVERS");
    if (servers && servers[0] && ares_set_servers_ports_csv(ch, servers) != ARES_SUCCESS) {
        ares_destroy(ch);
        return -EINVAL;
    }
    query q = { .out = out, .port = port };
    struct ares_addrinfo_hints hints = { .ai_family = family, .ai_socktype = SOCK_STREAM };
    ares_getaddrinfo(ch, host, NULL, &hints, on_result, &q);
    int rc = 0;
    while (!q.done && rc == 0)
        rc = step(ch, deadline);
    ares_destroy(ch); /* cancels what is left: the callback runs, if not yet */
    if (rc < 0)
        return rc;
    return status_to_error(q.status);
}
