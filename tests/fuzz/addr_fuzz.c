/* addr_fuzz: a libFuzzer target for the address parser (np__addr_parse) and
 * formatter (np__format_addr) in src/net/addr.c.
 *
 * Input: the first byte's low 3 bits pick the network ('0' tcp, '1' tcp4,
 * '2' tcp6, '3' unix, '4' udp, '5' NULL, '6' empty, '7' the text up to the
 * first newline: udp6, unixgram, or anything), the rest is the address, up to its first NUL (a one-byte
 * input passes a NULL address). Its top 2 bits pick what is fuzzed:
 *   0 ('0'..'7'): the internal parser, np__addr_parse, passive and active;
 *   1 ('@'..'G'): the public np_addr_parse, then np_addr_format: a text
 *      parses to 0 or -EINVAL (-EAFNOSUPPORT for the other family), never
 *      looks a name up (names are -EINVAL), agrees with np__addr_parse, and
 *      round-trips (format, parse, format: the same text);
 *   2 (0x80..0xbf): the rest of the input, as raw bytes, is an np_addr
 *      (corrupt, mostly): np_addr_format must not read or write out of
 *      bounds, returns 0, -ENOSPC, -EINVAL or -EAFNOSUPPORT, and what it
 *      formats parses back to an address that formats the same.
 * Properties of mode 0:
 *   - the result is 0, NP__ADDR_NEEDS_LOOKUP or a plausible -errno;
 *   - on 0: 1..NP__MAX_ADDRS entries, each of a family the network allows,
 *     with a length that fits; the text's port is every entry's port;
 *   - NEEDS_LOOKUP only for an IP network and a host that could be a name
 *     (not empty, no ':' -- an IPv6 literal is never looked up);
 *   - round trip: each entry formats (np__format_addr) into text that parses
 *     back to the same family, port and address bytes (Unix: same path,
 *     same length; IPv6 scope ids are not printed, so not compared);
 *   - formatting into every shorter buffer gives -ENOSPC and writes nothing
 *     past the buffer (each is allocated to its exact size, so ASan sees
 *     an overflow), and into a long enough one gives the same text.
 * A property that fails aborts with a message (a crash to libFuzzer).
 * ADDR_FUZZ_LENIENT_LOOKUP=1 in the environment leaves out the IPv6-literal
 * lookup property (to look past it while it is being fixed).
 *
 * Built with clang -fsanitize=fuzzer,address,undefined as addr_fuzz, and
 * with any compiler beside addr_replay.c (a plain main that runs the files
 * of a corpus) as addr_fuzz_replay: the ctest addr_fuzz_corpus. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "net/addr.h"
#include "netpoll.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *cur_network, *cur_address;
static bool cur_passive;

__attribute__((noreturn, format(printf, 1, 2))) static void bad(const char *fmt, ...);
static void bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "addr_fuzz: network %s%s%s, address %s%.300s%s, %s: ",
            cur_network ? "\"" : "", cur_network ? cur_network : "NULL", cur_network ? "\"" : "",
            cur_address ? "\"" : "", cur_address ? cur_address : "NULL", cur_address ? "\"" : "",
            cur_passive ? "passive" : "active");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

static bool plausible_error(int rc)
{
    switch (-rc) {
    case EINVAL: case EAFNOSUPPORT: case ENOENT: case ENOMEM: case ENAMETOOLONG:
    case EADDRNOTAVAIL: case EAGAIN:
        return true;
    default:
        return false;
    }
}

static int port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return -1;
}

/* Same family, port and address bytes (Unix: length and path bytes). */
static bool same_addr(const struct sockaddr_storage *a, socklen_t al,
                      const struct sockaddr_storage *b, socklen_t bl)
{
    if (a->ss_family != b->ss_family)
        return false;
    switch (a->ss_family) {
    case AF_INET: {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr);
    }
    case AF_UNIX:
        return al == bl && !memcmp(a, b, al);
    default:
        return false;
    }
}

static void check_format(const struct sockaddr_storage *ss, socklen_t len, bool tcp_net)
{
    char full[512];
    int rc = np__format_addr((const struct sockaddr *)ss, len, full, sizeof full);
    if (rc != 0)
        bad("np__format_addr of a parsed address = %d", rc);
    size_t tl = strlen(full);
    /* every shorter buffer: -ENOSPC, nothing written past it */
    for (size_t cap = 0; cap <= tl + 1; cap++) {
        char *b = malloc(cap ? cap : 1);
        if (!b)
            abort();
        int r = np__format_addr((const struct sockaddr *)ss, len, b, cap);
        if (cap <= tl && r != -ENOSPC)
            bad("np__format_addr into %zu bytes (text \"%s\" needs %zu) = %d, want -ENOSPC", cap,
                full, tl + 1, r);
        if (cap == tl + 1 && (r != 0 || strcmp(b, full) != 0))
            bad("np__format_addr into exactly %zu bytes = %d, \"%.*s\"", cap, r, (int)cap, b);
        free(b);
    }
    if (np__format_addr((const struct sockaddr *)ss, len, NULL, 0) != -ENOSPC &&
        np__format_addr((const struct sockaddr *)ss, len, NULL, 0) != -EINVAL)
        bad("np__format_addr(NULL, 0) is neither -ENOSPC nor -EINVAL");
    /* round trip */
    static const char *const tcp_nets[] = { "tcp", "tcp4", "tcp6" };
    for (int i = 0; i < (tcp_net ? 3 : 1); i++) {
        const char *net = tcp_net ? tcp_nets[i] : "unix";
        if (tcp_net && ((i == 1 && ss->ss_family != AF_INET) ||
                        (i == 2 && ss->ss_family != AF_INET6)))
            continue;
        for (int passive = 0; passive < 2; passive++) {
            np__addrs *back = malloc(sizeof *back);
            if (!back)
                abort();
            int r = np__addr_parse(net, full, passive, back);
            if (r != 0)
                bad("the formatted text \"%s\" does not parse back with \"%s\" (%s): %d", full,
                    net, passive ? "passive" : "active", r);
            bool found = false;
            for (int k = 0; k < back->n && !found; k++)
                found = same_addr(ss, len, &back->sa[k], back->len[k]);
            if (!found || back->n != 1)
                bad("\"%s\" parses back with \"%s\" to %d entries, %s the original", full, net,
                    back->n, found ? "among them" : "none of them");
            free(back);
        }
    }
}

static void one(const char *network, const char *address, bool passive)
{
    cur_network = network;
    cur_address = address;
    cur_passive = passive;
    np__addrs *out = malloc(sizeof *out);
    if (!out)
        abort();
    memset(out, 0xa5, sizeof *out);
    int rc = np__addr_parse(network, address, passive, out);
    /* "tcp*" and "udp*" parse alike; "unix" and "unixgram" too */
    bool tcp_net = network && (!strcmp(network, "tcp") || !strcmp(network, "tcp4") ||
                               !strcmp(network, "tcp6") || !strcmp(network, "udp") ||
                               !strcmp(network, "udp4") || !strcmp(network, "udp6"));
    bool unix_net = network && (!strcmp(network, "unix") || !strcmp(network, "unixgram"));
    bool v4_only = tcp_net && network[3] == '4', v6_only = tcp_net && network[3] == '6';
    if (rc == NP__ADDR_NEEDS_LOOKUP) {
        if (!tcp_net)
            bad("a name lookup asked for a Unix network");
        /* the host part: what precedes the last ':' (inside brackets if any) */
        const char *h = address, *e;
        if (address[0] == '[') {
            h = address + 1;
            e = strchr(h, ']');
        } else {
            e = strrchr(address, ':');
        }
        if (!e || e == h)
            bad("a name lookup asked for an empty or missing host");
        static int lenient = -1; /* ADDR_FUZZ_LENIENT_LOOKUP=1: this property off */
        if (lenient < 0)
            lenient = getenv("ADDR_FUZZ_LENIENT_LOOKUP") != NULL;
        if (!lenient && memchr(h, ':', (size_t)(e - h)))
            bad("a name lookup asked for \"%.*s\", an IPv6 literal (names have no ':')",
                (int)(e - h), h);
        free(out);
        return;
    }
    if (rc < 0) {
        if (!plausible_error(rc))
            bad("returned %d (%s)", rc, strerror(-rc));
        free(out);
        return;
    }
    if (rc != 0)
        bad("returned %d", rc);
    if (!tcp_net && !unix_net)
        bad("parsed an address for an unknown network");
    if (out->n < 1 || out->n > NP__MAX_ADDRS)
        bad("0 with %d entries", out->n);
    const char *colon = unix_net ? NULL : strrchr(address, ':');
    int want_port = colon ? atoi(colon + 1) : -1;
    for (int i = 0; i < out->n; i++) {
        const struct sockaddr_storage *ss = &out->sa[i];
        socklen_t len = out->len[i];
        if (len == 0 || len > sizeof *ss)
            bad("entry %d has length %u", i, (unsigned)len);
        int fam = ss->ss_family;
        bool ok = unix_net ? fam == AF_UNIX
                : v4_only ? fam == AF_INET
                : v6_only ? fam == AF_INET6
                : fam == AF_INET || fam == AF_INET6;
        if (!ok)
            bad("entry %d has family %d", i, fam);
        if (fam == AF_INET && len != sizeof(struct sockaddr_in))
            bad("AF_INET entry of length %u", (unsigned)len);
        if (fam == AF_INET6 && len != sizeof(struct sockaddr_in6))
            bad("AF_INET6 entry of length %u", (unsigned)len);
        if (fam == AF_UNIX) {
            size_t al = strlen(address);
            if (al == 0)
                bad("parsed an empty Unix path");
            if (len < offsetof(struct sockaddr_un, sun_path) + al ||
                len > sizeof(struct sockaddr_un))
                bad("Unix entry of length %u for a %zu-byte path", (unsigned)len, al);
            const struct sockaddr_un *un = (const void *)ss;
            if (memcmp(un->sun_path + 1, address + 1, al - 1) ||
                (un->sun_path[0] != (address[0] == '@' ? 0 : address[0])))
                bad("Unix entry holds another path");
        }
        if (!unix_net && port_of(ss) != want_port)
            bad("entry %d has port %d, the text says %d", i, port_of(ss), want_port);
        check_format(ss, len, tcp_net);
    }
    free(out);
}

static const char *net_of(int fam)
{
    return fam == AF_INET ? "udp4" : fam == AF_INET6 ? "udp6" : "unixgram";
}

/* Formats a into exactly-sized buffers: -ENOSPC below the text's size, the
 * text at it. Returns the rc of the long format, the text in out. */
static int format_all(const np_addr *a, char *out, size_t cap)
{
    int rc = np_addr_format(a, out, cap);
    if (rc != 0 && rc != -ENOSPC && rc != -EINVAL && rc != -EAFNOSUPPORT)
        bad("np_addr_format = %d", rc);
    if (rc == -ENOSPC)
        bad("np_addr_format into %zu bytes = -ENOSPC", cap);
    if (rc != 0)
        return rc;
    /* the size it needs: the first that works (an abstract name may hold
     * NUL bytes, so not always strlen + 1); every smaller one: -ENOSPC */
    size_t need = 0;
    for (size_t c = 0; c <= cap; c++) {
        char *b = malloc(c ? c : 1);
        int r = np_addr_format(a, b, c);
        if (r == 0 && !need) {
            need = c;
            if (memcmp(b, out, c) != 0)
                bad("np_addr_format into %zu bytes gave other text than into %zu", c, cap);
        }
        if (need ? r != 0 : r != -ENOSPC)
            bad("np_addr_format into %zu bytes = %d (it needs %zu)", c, r, need);
        free(b);
        if (need && c > need + 2)
            break;
    }
    if (need == 0 || out[need - 1] != 0)
        bad("np_addr_format: no terminating NUL at the end of the text");
    if (strlen(out) + 1 != need)
        return -EILSEQ; /* NUL bytes inside: not text that can parse back */
    return 0;
}

static void public_parse(const char *network, const char *address)
{
    cur_network = network;
    cur_address = address;
    cur_passive = true;
    np_addr *a = malloc(sizeof *a);
    int rc = np_addr_parse(a, network, address);
    if (rc != 0 && rc != -EINVAL && rc != -EAFNOSUPPORT)
        bad("np_addr_parse = %d (%s)", rc, strerror(-rc));
    np__addrs *in = malloc(sizeof *in);
    int irc = network && address ? np__addr_parse(network, address, true, in) : -EINVAL;
    if (irc == NP__ADDR_NEEDS_LOOKUP && rc != -EINVAL)
        bad("np_addr_parse of a name = %d, want -EINVAL (no lookups)", rc);
    if (rc == 0) {
        char t1[256], t2[256];
        int fr = format_all(a, t1, sizeof t1);
        if (fr != 0)
            bad("np_addr_format of a parsed address = %d", fr);
        np_addr *b = malloc(sizeof *b);
        int r2 = np_addr_parse(b, network, t1);
        if (r2 != 0 || np_addr_format(b, t2, sizeof t2) != 0 || strcmp(t1, t2) != 0)
            bad("np_addr round trip: \"%s\" parses back as %d", t1, r2);
        free(b);
        if (irc != 0)
            bad("np_addr_parse = 0 where np__addr_parse = %d", irc);
    }
    free(in);
    free(a);
}

static void raw_format(const uint8_t *p, size_t n)
{
    cur_network = "(raw np_addr)";
    cur_address = NULL;
    np_addr *a = malloc(sizeof *a);
    memset(a, 0, sizeof *a);
    memcpy(a, p, n < sizeof *a ? n : sizeof *a);
    char t1[512], t2[512];
    if (format_all(a, t1, sizeof t1) == 0) {
        /* what formats parses back (Unix paths with bytes a path cannot
         * hold, like a NUL, are cut short: skip those) */
        uint16_t fam;
        memcpy(&fam, a->opaque, sizeof fam);
        np_addr *b = malloc(sizeof *b);
        int r2 = np_addr_parse(b, net_of(fam), t1);
        if (fam != AF_UNIX && (r2 != 0 || np_addr_format(b, t2, sizeof t2) != 0 ||
                               strcmp(t1, t2) != 0))
            bad("a raw np_addr formats as \"%s\", which parses back as %d", t1, r2);
        free(b);
    }
    free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && (data[0] >> 6) == 2) {
        raw_format(data + 1, size - 1);
        return 0;
    }
    if (size == 0 || size > 4096)
        return 0;
    static const char *const nets[] = { "tcp", "tcp4", "tcp6", "unix", "udp", NULL, "" };
    const char *text = (const char *)data + 1;
    size_t tl = size - 1;
    char *netbuf = NULL;
    const char *network;
    int sel = data[0] % 8;
    if (sel < 7) {
        network = nets[sel];
    } else {
        const char *nl = memchr(text, '\n', tl);
        size_t nlen = nl ? (size_t)(nl - text) : 0;
        netbuf = malloc(nlen + 1);
        memcpy(netbuf, text, nlen);
        netbuf[nlen] = 0;
        network = netbuf;
        if (nl) {
            text = nl + 1;
            tl -= nlen + 1;
        }
    }
    /* the address: an exact-size copy, so a read past its end is seen */
    char *address = NULL;
    if (size > 1) {
        size_t al = strnlen(text, tl);
        address = malloc(al + 1);
        memcpy(address, text, al);
        address[al] = 0;
    }
    if ((data[0] >> 6) == 1) {
        public_parse(network, address);
    } else {
        one(network, address, true);
        one(network, address, false);
    }
    free(address);
    free(netbuf);
    return 0;
}
