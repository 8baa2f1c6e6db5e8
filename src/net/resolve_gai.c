/* Name lookup with getaddrinfo on the offload pool, where c-ares is not
 * built in. See resolve.h.
 *
 * getaddrinfo cannot be cancelled, so the caller does not wait for it past
 * its deadline: the lookup is a heap object shared by the caller and the
 * pool job, with two references. Whoever finishes second frees it; the
 * caller's wait goes through the coordination layer's claim protocol
 * (sync/wait.h), so the job's completion and the deadline race cleanly. A
 * lookup abandoned this way still runs to its end on its pool thread, and
 * np_run does not return before it has.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/resolve.h"
#include "netpoll.h"
#include "runtime/offload.h"
#include "runtime/scheduler.h"
#include "sync/wait.h"

typedef struct lookup {
    _Atomic int lock;   /* guards everything below */
    int refs;           /* the caller's and the job's */
    bool finished;
    np__wnode *node;    /* the caller, parked; NULL once it has gone */
    char host[256];
    int family;
    uint16_t port;
    int rc;
    struct addrinfo *res;
} lookup;

const char *np__resolver_name(void)
{
    return "getaddrinfo";
}

static void release(lookup *l)
{
    /* Under l->lock; unlocks. The last reference frees. */
    bool last = --l->refs == 0;
    np__spin_unlock(&l->lock);
    if (last) {
        if (l->res)
            freeaddrinfo(l->res);
        free(l);
    }
}

static void run_lookup(void *arg)
{
    lookup *l = arg;
    struct addrinfo hints = { .ai_family = l->family, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(l->host, NULL, &hints, &res);
    np__spin_lock(&l->lock);
    l->rc = rc;
    l->res = res;
    l->finished = true;
    bool parked = false;
    np__wrec *r = NULL;
    if (l->node && np__wnode_claim(l->node, &parked)) {
        r = np__wnode_done(l->node, 0);
        l->node = NULL;
    }
    release(l);
    if (r && parked)
        np__wait_ready(r);
}

static int gai_to_np_error(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
        return NP_ENOHOST;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_FAMILY:
        return -EINVAL;
    default: /* EAI_AGAIN, EAI_FAIL, EAI_SYSTEM */
        return -EAGAIN;
    }
}

int np__lookup(const char *host, uint16_t port, int family, int64_t deadline, np__addrs *out)
{
    if (np__deadline_past(deadline))
        return -ETIMEDOUT;
    lookup *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    snprintf(l->host, sizeof l->host, "%s", host);
    l->family = family;
    l->port = port;
    l->refs = 2;
    np__wrec *r;
    int rc = np__wait_begin(&r);
    if (rc == 0)
        rc = np__offload_async(run_lookup, l);
    if (rc < 0) {
        free(l);
        return rc;
    }
    np__wnode n = { .rec = r, .seq = np__wait_seq(r) };
    np__spin_lock(&l->lock);
    if (!l->finished) {
        l->node = &n;
        np__wait_arm(r, deadline);
        static const np__park_site site = { "np_dial (resolving the name)", "", NP__ON_WREC };
        unsigned st = np__wait_park(r, np__spin_unlock_cb, &l->lock, &site, NULL);
        np__spin_lock(&l->lock);
        if (st != NP__W_DONE) {
            l->node = NULL; /* the job will not look for us */
            if (!l->finished) {
                release(l);
                return -ETIMEDOUT;
            }
        }
    }
    rc = gai_to_np_error(l->rc);
    out->n = 0;
    for (struct addrinfo *ai = l->res; rc == 0 && ai && out->n < NP__MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof out->sa[0] || (ai->ai_family != AF_INET && ai->ai_family != AF_INET6))
            continue;
        memcpy(&out->sa[out->n], ai->ai_addr, ai->ai_addrlen);
        out->len[out->n] = ai->ai_addrlen;
        if (ai->ai_family == AF_INET)
            ((struct sockaddr_in *)&out->sa[out->n])->sin_port = htons(port);
        else
            ((struct sockaddr_in6 *)&out->sa[out->n])->sin6_port = htons(port);
        out->n++;
    }
    if (rc == 0 && out->n == 0)
        rc = NP_ENOHOST;
    release(l);
    return rc;
}
