/* Network addresses: parsing "host:port" / "[v6]:port" / Unix paths,
 * resolving host names off the worker threads, and formatting. */
#ifndef NP_ADDR_H
#define NP_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NP__MAX_ADDRS 8

typedef struct np__addrs {
    int n;
    struct sockaddr_storage sa[NP__MAX_ADDRS];
    socklen_t len[NP__MAX_ADDRS];
} np__addrs;

/* network: "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix" or
 * "unixgram". For listening (passive), an
 * empty host means every interface. Host names are looked up by np__lookup
 * (resolve.h), by `deadline`. 0 or -EINVAL, -EAFNOSUPPORT, NP_ENOHOST,
 * -ETIMEDOUT, -EAGAIN, -ENOMEM. */
int np__resolve(const char *network, const char *address, bool passive, int64_t deadline,
                np__addrs *out);

/* The parser alone: never looks a name up. 0 with out filled (a Unix path,
 * a numeric host, an empty host), a negative errno for a malformed address,
 * or NP__ADDR_NEEDS_LOOKUP when the host is a name. */
#define NP__ADDR_NEEDS_LOOKUP 1
int np__addr_parse(const char *network, const char *address, bool passive, np__addrs *out);

/* SOCK_STREAM or SOCK_DGRAM for a network name, or -EINVAL. */
int np__sotype(const char *network);

/* np_addr to and from a socket address. -EINVAL (too long, corrupt),
 * -EAFNOSUPPORT (a family we do not speak). */
struct np_addr;
int np__addr_store(struct np_addr *a, const struct sockaddr *sa, socklen_t len);
int np__addr_load(const struct np_addr *a, struct sockaddr_storage *ss, socklen_t *len);

/* Formats an address as "1.2.3.4:80", "[::1]:80" or the Unix path.
 * 0 or -ENOSPC. */
int np__format_addr(const struct sockaddr *sa, socklen_t len, char *buf, size_t cap);

#endif
