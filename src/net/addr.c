/* Addresses. See addr.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "net/addr.h"
#include "net/resolve.h"
#include "netpoll.h"

/* Splits "host:port" or "[host]:port". */
static int split_host_port(const char *address, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon;
    const char *h = address;
    size_t hlen;
    if (address[0] == '[') {
        const char *close = strchr(address, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        h = address + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(address, ':');
        if (!colon)
            return -EINVAL;
        hlen = (size_t)(colon - address);
        if (memchr(address, ':', hlen)) /* a bare IPv6 literal needs brackets */
            return -EINVAL;
    }
    const char *p = colon + 1;
    size_t plen = strlen(p);
    if (hlen >= hcap || plen == 0 || plen >= pcap)
        return -EINVAL;
    for (size_t i = 0; i < plen; i++)
        if (p[i] < '0' || p[i] > '9')
            return -EINVAL;
    if (atol(p) > 65535)
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = 0;
    memcpy(port, p, plen + 1);
    return 0;
}

static int gai_to_errno(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case EAI_NONAME:
    case EAI_NODATA:
        return NP_ENOHOST;
    case EAI_FAMILY:
    case EAI_ADDRFAMILY:
        return -EAFNOSUPPORT;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_AGAIN:
        return -EAGAIN;
    default:
        return -EINVAL;
    }
}

/* Copies up to NP__MAX_ADDRS results and frees the list. */
static int take_addrinfo(struct addrinfo *res, np__addrs *out)
{
    out->n = 0;
    for (struct addrinfo *ai = res; ai && out->n < NP__MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof out->sa[0])
            continue;
        memcpy(&out->sa[out->n], ai->ai_addr, ai->ai_addrlen);
        out->len[out->n] = ai->ai_addrlen;
        out->n++;
    }
    freeaddrinfo(res);
    return out->n ? 0 : NP_ENOHOST;
}

/* Numeric hosts and Unix paths, parsed; a name is copied to host for a
 * lookup. host must hold 256 bytes and port 8; family is set for a lookup. */
static int parse(const char *network, const char *address, bool passive, np__addrs *out,
                 char *host, char *port, int *family)
{
    out->n = 0;
    if (!network || !address)
        return -EINVAL;
    if (strcmp(network, "unix") == 0 || strcmp(network, "unixgram") == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&out->sa[0];
        size_t len = strlen(address);
        if (len == 0 || len >= sizeof un->sun_path)
            return -EINVAL;
        memset(un, 0, sizeof *un);
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, address, len);
        if (address[0] == '@') /* Linux abstract namespace */
            un->sun_path[0] = 0;
        out->len[0] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                                  (address[0] == '@' ? 0 : 1));
        out->n = 1;
        return 0;
    }
    if (strcmp(network, "tcp") == 0 || strcmp(network, "udp") == 0)
        *family = AF_UNSPEC;
    else if (strcmp(network, "tcp4") == 0 || strcmp(network, "udp4") == 0)
        *family = AF_INET;
    else if (strcmp(network, "tcp6") == 0 || strcmp(network, "udp6") == 0)
        *family = AF_INET6;
    else
        return -EINVAL;
    int rc = split_host_port(address, host, 256, port, 8);
    if (rc < 0)
        return rc;
    /* "tcp" with no host listens on every interface, IPv6 and IPv4 both
     * (a dual-stack socket) where IPv6 exists. */
    if (passive && !host[0] && *family == AF_UNSPEC)
        *family = AF_INET6;
    struct addrinfo hints = { .ai_family = *family, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) };
    struct addrinfo *res = NULL;
    rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc == EAI_NONAME && host[0]) {
        /* A name has no ':'; a bad IPv6 literal (an unknown scope, say) is
         * malformed, never something to ask a resolver about. */
        return strchr(host, ':') ? -EINVAL : NP__ADDR_NEEDS_LOOKUP;
    }
    if (rc != 0 && passive && !host[0] && *family == AF_INET6 && strlen(network) == 3) {
        /* No IPv6 here: all IPv4 interfaces instead. */
        hints.ai_family = AF_INET;
        rc = getaddrinfo(NULL, port, &hints, &res);
    }
    if (rc != 0)
        return gai_to_errno(rc);
    return take_addrinfo(res, out);
}

int np__addr_parse(const char *network, const char *address, bool passive, np__addrs *out)
{
    char host[256], port[8];
    int family;
    return parse(network, address, passive, out, host, port, &family);
}

int np__resolve(const char *network, const char *address, bool passive, int64_t deadline,
                np__addrs *out)
{
    char host[256], port[8];
    int family = AF_UNSPEC;
    int rc = parse(network, address, passive, out, host, port, &family);
    if (rc != NP__ADDR_NEEDS_LOOKUP)
        return rc;
    return np__lookup(host, (uint16_t)atoi(port), family, deadline, out);
}

int np_lookup_host(const char *host, np_addr *out, int max, int64_t deadline)
{
    if (!host || !out || max <= 0)
        return -EINVAL;
    size_t len = strlen(host);
    if (len == 0 || len > 253)
        return -EINVAL; /* no DNS name is empty or longer */
    np__addrs addrs;
    /* A numeric address is its own answer. */
    char text[300];
    snprintf(text, sizeof text, strchr(host, ':') ? "[%s]:0" : "%s:0", host);
    int rc = np__addr_parse("tcp", text, false, &addrs);
    if (rc == NP__ADDR_NEEDS_LOOKUP)
        rc = np__lookup(host, 0, AF_UNSPEC, deadline, &addrs);
    if (rc < 0)
        return rc == -EAFNOSUPPORT ? -EINVAL : rc;
    int n = 0;
    for (; n < addrs.n && n < max; n++)
        np__addr_store(&out[n], (struct sockaddr *)&addrs.sa[n], addrs.len[n]);
    return n;
}

int np__sotype(const char *network)
{
    if (!network)
        return -EINVAL;
    if (!strcmp(network, "tcp") || !strcmp(network, "tcp4") || !strcmp(network, "tcp6") ||
        !strcmp(network, "unix"))
        return SOCK_STREAM;
    if (!strcmp(network, "udp") || !strcmp(network, "udp4") || !strcmp(network, "udp6") ||
        !strcmp(network, "unixgram"))
        return SOCK_DGRAM;
    return -EINVAL;
}

/* np_addr: the socket address in the first NP__ADDR_MAX bytes, its length
 * in the last four (abstract Unix names need it). Copied with memcpy: the
 * public type has byte alignment. */
#define NP__ADDR_MAX (sizeof(np_addr) - sizeof(uint32_t))
_Static_assert(sizeof(struct sockaddr_un) <= NP__ADDR_MAX, "np_addr too small");
_Static_assert(sizeof(struct sockaddr_in6) <= NP__ADDR_MAX, "np_addr too small");

int np__addr_store(np_addr *a, const struct sockaddr *sa, socklen_t len)
{
    if (len > NP__ADDR_MAX || len < sizeof(sa_family_t))
        return -EINVAL;
    memset(a, 0, sizeof *a);
    memcpy(a->opaque, sa, len);
    uint32_t l = len;
    memcpy(a->opaque + NP__ADDR_MAX, &l, sizeof l);
    return 0;
}

int np__addr_load(const np_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
    uint32_t l;
    memcpy(&l, a->opaque + NP__ADDR_MAX, sizeof l);
    memset(ss, 0, sizeof *ss);
    if (l < sizeof(sa_family_t) || l > NP__ADDR_MAX)
        return -EINVAL;
    memcpy(ss, a->opaque, l);
    switch (ss->ss_family) {
    case AF_INET:
        if (l != sizeof(struct sockaddr_in))
            return -EINVAL;
        break;
    case AF_INET6:
        if (l != sizeof(struct sockaddr_in6))
            return -EINVAL;
        break;
    case AF_UNIX: /* just the family: an unnamed socket (formats as "") */
        if (l < offsetof(struct sockaddr_un, sun_path))
            return -EINVAL;
        break;
    default:
        return -EINVAL; /* not an address np_addr ever holds */
    }
    *len = l;
    return 0;
}

int np_addr_parse(np_addr *out, const char *network, const char *text)
{
    if (!out || !network || !text)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    if (np__sotype(network) < 0)
        return -EINVAL;
    np__addrs addrs;
    /* Passive: an empty host is the unspecified address, as Go's. */
    int rc = np__addr_parse(network, text, true, &addrs);
    if (rc == NP__ADDR_NEEDS_LOOKUP)
        return -EINVAL; /* a name: np_lookup_host resolves it */
    if (rc < 0)
        return -EINVAL; /* malformed, or of another family than network */
    return np__addr_store(out, (struct sockaddr *)&addrs.sa[0], addrs.len[0]);
}

int np_addr_format(const np_addr *a, char *buf, size_t len)
{
    if (!a || (!buf && len))
        return -EINVAL;
    struct sockaddr_storage ss;
    socklen_t sl;
    int rc = np__addr_load(a, &ss, &sl);
    if (rc < 0)
        return rc;
    return np__format_addr((struct sockaddr *)&ss, sl, buf, len);
}

int np__format_addr(const struct sockaddr *sa, socklen_t len, char *buf, size_t cap)
{
    char tmp[INET6_ADDRSTRLEN + 32];
    int n;
    if (!buf && cap)
        return -EINVAL;
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        n = snprintf(tmp, sizeof tmp, "%s:%u", ip, ntohs(in->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        char ip[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        if (in6->sin6_scope_id != 0) {
            /* The zone, kept as Go keeps it; as its index, which parses
             * back whatever the address (a name may not: glibc takes
             * interface names for link-local addresses only). */
            n = snprintf(tmp, sizeof tmp, "[%s%%%u]:%u", ip, (unsigned)in6->sin6_scope_id,
                         ntohs(in6->sin6_port));
            break;
        }
        n = snprintf(tmp, sizeof tmp, "[%s]:%u", ip, ntohs(in6->sin6_port));
        break;
    }
    case AF_UNIX: {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        size_t plen = len > offsetof(struct sockaddr_un, sun_path)
                          ? len - offsetof(struct sockaddr_un, sun_path)
                          : 0;
        if (plen > 0 && un->sun_path[0] == 0) { /* abstract: shown with '@' */
            if (plen + 1 > cap)
                return -ENOSPC;
            buf[0] = '@';
            memcpy(buf + 1, un->sun_path + 1, plen - 1);
            buf[plen] = 0;
            return 0;
        }
        size_t l = strnlen(un->sun_path, plen);
        if (l + 1 > cap)
            return -ENOSPC;
        memcpy(buf, un->sun_path, l);
        buf[l] = 0;
        return 0;
    }
    default:
        return -EAFNOSUPPORT;
    }
    if (n < 0 || (size_t)n + 1 > cap)
        return -ENOSPC;
    memcpy(buf, tmp, (size_t)n + 1);
    return 0;
}
