/* Name lookup with a deadline: one interface, one file per mechanism.
 *
 *   resolve_cares.c  c-ares (Debian libc-ares-dev), its sockets driven by
 *                    np_wait_fd: a deadline ends the lookup at once and
 *                    nothing is left running (the channel is destroyed).
 *   resolve_gai.c    getaddrinfo on the offload pool, where c-ares is not
 *                    built in: the caller walks away at its deadline, and
 *                    the lookup finishes on its pool thread, which frees
 *                    what it made.
 *
 * In the environment (c-ares only): NP_RESOLV_CONF names a resolv.conf to
 * read instead of /etc/resolv.conf; NP_DNS_SERVERS ("127.0.0.1:5353,[::1]:53")
 * replaces its nameservers, ports included. For tests, and for programs
 * that keep their own resolvers.
 */
#ifndef NP_RESOLVE_H
#define NP_RESOLVE_H

#include <stdint.h>

#include "net/addr.h"

/* Looks host (a name, not a numeric address) up for family (AF_UNSPEC,
 * AF_INET, AF_INET6); out gets up to NP__MAX_ADDRS addresses with port.
 * 0, NP_ENOHOST, -ETIMEDOUT, -EAGAIN (temporary failure), -EINVAL (a name
 * that cannot be one), -ENOMEM, -ESRCH (a plain thread, no runtime). */
int np__lookup(const char *host, uint16_t port, int family, int64_t deadline, np__addrs *out);

/* The mechanism's name, for tests and reports: "c-ares" or "getaddrinfo". */
const char *np__resolver_name(void);

#endif
