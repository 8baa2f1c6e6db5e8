/* api_fuzz: the pool of handles every actor shares (live ones in slots,
 * closed ones in the graveyard, forged and wrong-kind ones made up), the
 * address book of listeners, the (network, address) pairs given to np_listen
 * and np_dial, and the helper tasks (acceptors, echo servers, short-lived
 * spawned tasks). See fuzz.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

/* ---- the pool -------------------------------------------------------------- */

static int close_kind(int kind, uint64_t id)
{
    return kind == K_LISTENER ? np_listener_close((np_listener){ id }) : np_close((np_conn){ id });
}

/* After a close that returned 0: its Unix socket file must be gone. A file
 * at that path with another identity was bound since, by another listener
 * given the address from the book (CI's ucontext job saw one once). */
void fz_check_unlinked(fz_actor *a, fz_run *r, int path)
{
    if (!r || path < 0 || (unsigned)path >= atomic_load(&r->paths_n))
        return;
    struct stat st;
    if (lstat(r->paths[path], &st) == 0 && r->path_ino[path] != 0 &&
        (uint64_t)st.st_ino == r->path_ino[path] && (uint64_t)st.st_dev == r->path_dev[path])
        fz_fail(a, "a close returned 0 but the Unix socket file %s is still there",
                r->paths[path]);
}

int fz_pool_put(fz_actor *a, int kind, uint64_t id, int path, int ctype)
{
    fz_run *r = a->run;
    if (!atomic_load(&r->stop) || r->leave_open) {
        unsigned start = (unsigned)fz_below(a, FZ_SLOTS);
        for (unsigned k = 0; k < FZ_SLOTS; k++) {
            fz_slot *s = &r->slots[(start + k) % FZ_SLOTS];
            int f = SLOT_FREE;
            if (!atomic_compare_exchange_strong(&s->state, &f, SLOT_CLAIM))
                continue;
            atomic_fetch_add(&s->seq, 1); /* odd: being filled */
            atomic_store(&s->kind, kind);
            atomic_store(&s->ctype, ctype);
            atomic_store(&s->id, id);
            atomic_store(&s->path, path);
            atomic_fetch_add(&s->seq, 1);
            atomic_store(&s->state, SLOT_LIVE);
            return (int)((start + k) % FZ_SLOTS);
        }
    }
    unsigned ri = fz_begin(a, kind == K_LISTENER ? C_LISTENER_CLOSE : C_CLOSE, id, 0);
    int rc = close_kind(kind, id);
    fz_end(a, ri, kind == K_LISTENER ? C_LISTENER_CLOSE : C_CLOSE, rc);
    if (rc != 0)
        fz_fail(a, "closing a handle nobody else knows of (%#" PRIx64 "): %d (%s)", id, rc,
                np_strerror(rc));
    else
        fz_check_unlinked(a, r, path);
    fz_grave_push(id);
    return -1;
}

void fz_pool_mark_closed(fz_run *r, int slot, uint64_t id)
{
    fz_grave_push(id);
    if (slot < 0)
        return;
    fz_slot *s = &r->slots[slot];
    /* only the caller whose close returned 0 gets here, once per id */
    if (atomic_load(&s->id) == id && atomic_load(&s->state) == SLOT_LIVE) {
        atomic_store(&s->path, -1);
        atomic_store(&s->state, SLOT_FREE);
    }
}

void fz_pool_sweep(fz_actor *a, bool final)
{
    fz_run *r = a->run;
    for (int i = 0; i < FZ_SLOTS; i++) {
        fz_slot *s = &r->slots[i];
        if (atomic_load(&s->state) != SLOT_LIVE)
            continue;
        uint64_t id = atomic_load(&s->id);
        int kind = atomic_load(&s->kind);
        if (r->leave_open) {
            /* Wake whoever is blocked, with a past deadline; np_run closes
             * the handles when the last task ends. */
            int64_t past = np_now() - 1;
            int rc = kind == K_LISTENER ? np_listener_set_deadline((np_listener){ id }, past)
                                        : np_set_deadline((np_conn){ id }, past);
            if (rc != 0 && rc != -EBADF)
                fz_fail(a, "setting a past deadline on %#" PRIx64 " at the end: %d (%s)", id, rc,
                        np_strerror(rc));
            continue;
        }
        int path = atomic_load(&s->path);
        unsigned ri = fz_begin(a, kind == K_LISTENER ? C_LISTENER_CLOSE : C_CLOSE, id, 1);
        int rc = close_kind(kind, id);
        fz_end(a, ri, kind == K_LISTENER ? C_LISTENER_CLOSE : C_CLOSE, rc);
        if (rc == 0) {
            fz_check_unlinked(a, r, path);
            fz_pool_mark_closed(r, i, id);
        } else if (rc != -EBADF || final) {
            /* At the final sweep every actor has finished: a live slot's
             * handle can only be open. */
            fz_fail(a, "closing %s %#" PRIx64 " at the end: %d (%s)",
                    kind == K_LISTENER ? "listener" : "connection", id, rc, np_strerror(rc));
        }
    }
}

void fz_book_add(fz_run *r, const char *network, const char *address)
{
    unsigned i = atomic_fetch_add(&r->book_n, 1);
    if (i >= FZ_BOOK) {
        atomic_fetch_sub(&r->book_n, 1);
        return;
    }
    /* written once; readers look only at entries marked ready */
    snprintf(r->book[i].network, sizeof r->book[i].network, "%s", network);
    snprintf(r->book[i].address, sizeof r->book[i].address, "%s", address);
    atomic_thread_fence(memory_order_release);
    atomic_store(&r->book[i].ready, 1);
}

static bool book_pick(fz_actor *a, char *net, char *addr)
{
    fz_run *r = a->run;
    unsigned n = atomic_load(&r->book_n);
    if (n == 0)
        return false;
    unsigned i = (unsigned)fz_below(a, n < FZ_BOOK ? n : FZ_BOOK);
    if (!atomic_load_explicit(&r->book[i].ready, memory_order_acquire))
        return false;
    memcpy(net, r->book[i].network, sizeof r->book[i].network);
    memcpy(addr, r->book[i].address, sizeof r->book[i].address);
    return true;
}

int fz_path_add(fz_run *r, const char *path)
{
    unsigned i = atomic_fetch_add(&r->paths_n, 1);
    if (i >= FZ_PATHS) {
        atomic_fetch_sub(&r->paths_n, 1);
        return -1;
    }
    snprintf(r->paths[i], sizeof r->paths[i], "%s", path);
    struct stat st; /* just bound: its listener is not yet known to others */
    bool known = lstat(path, &st) == 0;
    r->path_dev[i] = known ? (uint64_t)st.st_dev : 0;
    r->path_ino[i] = known ? (uint64_t)st.st_ino : 0;
    return (int)i;
}

void fz_unix_path(fz_run *r, char *out, size_t cap, const char *tag)
{
    static _Atomic unsigned counter;
    unsigned c = atomic_fetch_add(&counter, 1);
    if (tag[0] == '@')
        snprintf(out, cap, "@npf-%d-%" PRIu64 "-%d-%s%u", fz_pid, r ? r->seed : 0,
                 r ? r->index : 0, tag + 1, c);
    else
        snprintf(out, cap, "/tmp/npf-%d-%" PRIu64 "-%d-%s%u.sock", fz_pid, r ? r->seed : 0,
                 r ? r->index : 0, tag, c);
}

/* ---- handles --------------------------------------------------------------- */

typedef fz_pick pick;

static pick pick_live(fz_actor *a, int kind)
{
    fz_run *r = a->run;
    if (r) {
        unsigned start = (unsigned)fz_below(a, FZ_SLOTS);
        for (unsigned k = 0; k < FZ_SLOTS; k++) {
            int i = (int)((start + k) % FZ_SLOTS);
            fz_slot *s = &r->slots[i];
            unsigned q = atomic_load(&s->seq);
            if ((q & 1) || atomic_load(&s->state) != SLOT_LIVE || atomic_load(&s->kind) != kind)
                continue;
            pick p = { atomic_load(&s->id), H_LIVE, i, atomic_load(&s->path),
                       atomic_load(&s->ctype) };
            if (atomic_load(&s->seq) != q)
                continue; /* refilled meanwhile */
            return p;
        }
    }
    return (pick){ 0, H_NONE, -1, -1, CT_STREAM };
}

static uint64_t forged(fz_actor *a)
{
    pick p = pick_live(a, fz_chance(a, 50) ? K_CONN : K_LISTENER);
    uint64_t live = p.id ? p.id : ((uint64_t)3 << 32) | 1;
    switch (fz_below(a, 8)) {
    case 0: return 0;
    case 1: return UINT64_MAX;
    case 2: return live ^ ((uint64_t)1 << 63); /* a generation 2^31 reuses away */
    case 3: return live ^ ((uint64_t)1 << 32); /* an even generation: never issued */
    case 4: return (live & ~(uint64_t)0xffffffff) | 0xfffffff0u; /* no such slot */
    case 5: return live & ~(uint64_t)0xffffffff; /* index 0 */
    case 6: return live & 0xffffffff;              /* generation 0 */
    default: return fz_rand(a) | ((uint64_t)1 << 31); /* a slot far beyond any table */
    }
}

/* A handle argument: usually a live one of the kind, else dead. */
static pick pick_handle(fz_actor *a, int kind)
{
    int r = (int)fz_below(a, 100);
    if (r < 62 && a->run) {
        pick p = pick_live(a, kind);
        if (p.hclass == H_LIVE)
            return p;
    }
    if (r < 75) {
        uint64_t g = fz_grave_pick(a);
        if (g)
            return (pick){ g, H_DEAD, -1, -1, CT_STREAM };
    }
    if (r >= 88 && a->run) { /* the other kind */
        pick p = pick_live(a, kind == K_CONN ? K_LISTENER : K_CONN);
        if (p.hclass == H_LIVE)
            return (pick){ p.id, H_DEAD, -1, -1, CT_STREAM };
    }
    return (pick){ forged(a), H_DEAD, -1, -1, CT_STREAM };
}

const char *fz_ctype_name(fz_pick h)
{
    if (h.hclass != H_LIVE)
        return h.hclass == H_DEAD ? "a dead handle" : "no handle";
    return (const char *[]){ "a stream socket", "a connected datagram socket",
                             "an unconnected datagram socket", "an adopted pipe or eventfd" }
        [h.ctype & 3];
}

fz_pick fz_pick_handle(fz_actor *a, int kind)
{
    return pick_handle(a, kind);
}


static const struct bad_addr {
    const char *net, *addr;
    int flags; /* A_BLACKHOLE: a dial may wait for its deadline; 32: needs DNS */
} bad_addrs[] = {
    { NULL, "127.0.0.1:0", 0 }, { "tcp", NULL, 0 }, { NULL, NULL, 0 }, { "", ":0", 0 },
    { "udp", ":0", 0 }, { "TCP", "127.0.0.1:0", 0 }, { "tcp7", ":0", 0 },
    { "unixgram", "/nonexistent-npf/x", 0 }, { "unixpacket", "@npf-x", 0 }, { "ip", "127.0.0.1", 0 },
    { "tcp ", "127.0.0.1:0", 0 }, { "tcp4", "[::1]:0", 0 }, { "tcp6", "127.0.0.1:0", 0 },
    { "tcp", "[::1", 0 }, { "tcp", "[::1]", 0 }, { "tcp", "[::1]:", 0 }, { "tcp", "::1:0", 0 },
    { "tcp", ":99999", 0 }, { "tcp", ":-1", 0 }, { "tcp", ":65536", 0 }, { "tcp", "127.0.0.1", 0 },
    { "tcp", "127.0.0.1:", 0 }, { "tcp", "", 0 }, { "tcp", ":", 0 }, { "tcp", "::", 0 },
    { "tcp", "[]:0", 0 }, { "tcp", "[::1]:0x50", 0 }, { "tcp", "127.0.0.1:+80", 0 },
    { "tcp", "127.0.0.1: 80", 0 }, { "tcp", ":00000000080", 0 }, { "tcp", ":4294967296", 0 },
    { "tcp", "[::1]]:0", 0 }, { "tcp", "[[::1]:0", 32 }, { "tcp", "[127.0.0.1]:0", 0 },
    { "tcp", "[fe80::1%lo]:0", A_BLACKHOLE }, { "tcp", "[fe80::1%999]:0", A_BLACKHOLE },
    { "tcp6", "[::ffff:127.0.0.1]:0", 0 }, { "tcp", "192.0.2.1:0", A_BLACKHOLE },
    { "tcp", "1.2.3:9", A_BLACKHOLE }, { "tcp", "0x7f.1:0", 0 }, { "tcp4", "0:0", 0 },
    { "tcp", "[fe80::1%nosuchif]:0", 32 }, { "tcp", "no-such-host.invalid:80", 32 },
    { "tcp", "1.2.3.4.5:0", 32 }, { "tcp", " 127.0.0.1:0", 32 }, { "tcp", "256.0.0.1:0", 32 },
    { "unix", "", 0 }, { "unix", "/nonexistent-npf/dir/s.sock", 0 }, { "unix", "/tmp", 0 },
    { "unix", "@", 0 }, { "unix", "/", 0 }, { "unix", "/tmp/", 0 },
};

/* Fills *net and *addr (addr may point into a->abuf); flags says what it
 * is. packet: for np_listen_packet (datagram networks). */
int fz_pick_addr(fz_actor *a, bool listen, bool packet, const char **net, const char **addr,
                 char *netbuf)
{
    char *ab = a->abuf;
    int r = (int)fz_below(a, 100);
    if (r < (listen ? 35 : 12)) { /* fresh, valid */
        static const char *const fresh[][2] = {
            { "tcp4", "127.0.0.1:0" }, { "tcp", "127.0.0.1:0" }, { "tcp", ":0" },
            { "tcp", "0.0.0.0:0" }, { "tcp6", "[::1]:0" }, { "tcp6", "[::]:0" },
            { "tcp", "[::]:0" }, { "tcp", "localhost:0" },
        };
        static const char *const fresh_packet[][2] = {
            { "udp4", "127.0.0.1:0" }, { "udp", "127.0.0.1:0" }, { "udp", ":0" },
            { "udp4", "0.0.0.0:0" }, { "udp6", "[::1]:0" }, { "udp6", "[::]:0" },
            { "udp", "[::]:0" }, { "udp", "localhost:0" },
        };
        int k = (int)fz_below(a, 10);
        const char *const(*f)[2] = packet ? fresh_packet : fresh;
        if (k == 7 && !fz_names)
            k = 0;
        if (k < 8 && (fz_ipv6 || !strchr(f[k][1], '['))) {
            *net = f[k][0];
            *addr = f[k][1];
            return A_FRESH;
        }
        fz_unix_path(a->run, ab, 108, k == 8 ? "F" : "@F");
        *net = packet ? "unixgram" : "unix";
        *addr = ab;
        return A_FRESH | (k == 8 ? A_UNIXFILE : 0);
    }
    if (r < (listen ? 50 : 62) && a->run && book_pick(a, netbuf, ab)) {
        *net = netbuf;
        *addr = ab;
        if (!listen && fz_chance(a, 15)) /* the wrong network for it */
            *net = (const char *[]){ "tcp4", "tcp6", "unix", "tcp", "udp", "unixgram" }
                [fz_below(a, 6)];
        if (listen && packet != (netbuf[0] == 'u' && netbuf[1] == 'd')) /* the other kind */
            return A_BAD;
        return A_BOOK | (!strncmp(*net, "unix", 4) && ab[0] != '@' ? A_UNIXFILE : 0);
    }
    if (!listen && r < 72) { /* refused, or not a listener */
        *net = "tcp";
        switch (fz_below(a, 9)) {
        case 0: *addr = "127.0.0.1:1"; break;
        case 1: *addr = fz_ipv6 ? "[::1]:1" : "127.0.0.1:2"; break;
        case 2: *addr = fz_names ? "localhost:1" : "127.0.0.1:3"; break;
        case 3: *net = "unix"; *addr = fz_regular_file; break;
        case 4: *net = "unix"; *addr = "@npf-nobody-listens"; break;
        case 5: *net = "udp"; *addr = "127.0.0.1:1"; break;
        case 6: *net = "unixgram"; *addr = fz_chance(a, 50) ? fz_regular_file : "@npf-nobody"; break;
        case 7: *net = "udp6"; *addr = fz_ipv6 ? "[::1]:9" : "127.0.0.1:9"; break;
        default: *net = "tcp4"; *addr = "127.0.0.1:0"; break;
        }
        return A_BAD;
    }
    if (!listen && r < 76) { /* packets into nowhere: only with a near deadline */
        static const char *const bh[] = { "192.0.2.1:9", "10.255.255.1:9", "198.51.100.7:80" };
        *net = "tcp4";
        *addr = bh[fz_below(a, 3)];
        return A_BAD | A_BLACKHOLE;
    }
    int k = (int)fz_below(a, 8);
    if (k < 5) {
        const struct bad_addr *b;
        do
            b = &bad_addrs[fz_below(a, sizeof bad_addrs / sizeof bad_addrs[0])];
        while ((b->flags & 32) && !fz_dns);
        *net = b->net;
        *addr = b->addr;
        return A_BAD | (b->flags & A_BLACKHOLE);
    }
    *net = (const char *[]){ "tcp", "tcp4", "tcp6", "unix", "udp", "unixgram" }[fz_below(a, 6)];
    *addr = ab;
    size_t n;
    switch (k) {
    case 5: /* long: hosts over 255 bytes, paths over 108, 4 KiB of text */
        n = (size_t[]){ 106, 107, 108, 109, 200, 256, 300, 4096 }[fz_below(a, 8)];
        if (!strncmp(*net, "unix", 4)) {
            bool abstract = fz_chance(a, 30);
            snprintf(ab, 64, abstract ? "@npf-%d-long-" : "/tmp/npf-%d-long-", fz_pid);
            size_t l = strlen(ab);
            memset(ab + l, 'x', n > l ? n - l : 0);
            ab[n > l ? n : l] = 0;
            /* a path of 107 bytes or less is valid: a file to clean up */
            return A_BAD | (!abstract && n < 108 ? A_UNIXFILE : 0);
        }
        memset(ab, fz_dns ? 'a' : ':', n); /* ':' in a host fails before any lookup */
        memcpy(ab + n, ":80", 4);
        return A_BAD;
    case 6: /* a datagram network where a stream one is wanted, or the reverse */
        *net = listen == packet ? (packet ? "tcp" : "udp") : (packet ? "udp" : "tcp");
        *net = (const char *[]){ *net, "unixgram", "unix", "udp4", "tcp6" }[fz_below(a, 5)];
        *addr = !strncmp(*net, "unix", 4) ? "@npf-kind" : "127.0.0.1:0";
        return A_BAD;
    default: /* random bytes; a non-digit port unless names may be looked up */
        n = 1 + fz_below(a, 48);
        for (size_t i = 0; i < n; i++)
            ab[i] = (char)(1 + fz_below(a, 255));
        ab[n] = 0;
        if (!strncmp(*net, "unix", 4)) {
            memmove(ab + 18, ab, n + 1);
            memcpy(ab, "/nonexistent-npf/", 17);
            ab[17] = fz_chance(a, 50) ? '/' : 'x';
            if (fz_chance(a, 20))
                ab[0] = '@'; /* an abstract name: listening works */
        } else if (!fz_dns) {
            memcpy(ab + n, ":x", 3);
        }
        return A_BAD;
    }
}

/* ---- helper tasks ---------------------------------------------------------- */

static void acceptor_task(void *p)
{
    fz_actor *a = p;
    fz_run *r = a->run;
    np_listener l = { a->acc_id };
    while (!atomic_load(&r->stop)) {
        if (fz_chance(a, 50))
            np_listener_set_deadline(l, np_now() + 5 * NP_MILLISECOND +
                                            (int64_t)fz_below(a, 40 * NP_MILLISECOND));
        np_conn c;
        unsigned ri = fz_begin(a, C_ACCEPT, l.id, 0);
        int rc = np_accept(l, &c);
        fz_end(a, ri, C_ACCEPT, rc);
        if (rc == 0) {
            fz_got_conn(a, c.id, CT_STREAM, -1);
            continue;
        }
        fz_expect(a, C_ACCEPT, H_LIVE, rc, true,
                  FZ_ERRS(EBADF, ECANCELED, ETIMEDOUT, EMFILE, ENFILE, ENOMEM, ENOBUFS, EPROTO),
                  "acceptor");
        if (rc == -EBADF || rc == -ECANCELED)
            break;
        if (rc != -ETIMEDOUT)
            np_sleep(NP_MILLISECOND);
    }
    fz_actor_fini(a);
    free(a);
    atomic_fetch_sub(&r->live, 1);
}

static fz_actor *helper(fz_actor *parent, char kind)
{
    fz_actor *a = malloc(sizeof *a);
    fz_actor_init(a, parent->run, kind, CTX_TASK, fz_rand(parent));
    a->depth = parent->depth + 1;
    return a;
}

static void go_helper(fz_actor *parent, fz_actor *a, void (*fn)(void *))
{
    fz_run *r = parent->run;
    atomic_fetch_add(&r->live, 1);
    atomic_fetch_add(&r->spawned, 1);
    unsigned ri = fz_begin(parent, C_GO, 0, a->kind);
    int rc = np_go(fn, a);
    fz_end(parent, ri, C_GO, rc);
    if (rc != 0) {
        /* a task or a thread while a run is on: only -ENOMEM is plausible */
        fz_expect(parent, C_GO, H_NONE, rc, false, FZ_ERRS(ENOMEM), "fn");
        atomic_fetch_sub(&r->live, 1);
        fz_actor_fini(a);
        free(a);
    }
}

void fz_start_acceptor(fz_actor *parent, int slot)
{
    fz_actor *a = helper(parent, 'A');
    a->acc_slot = slot;
    a->acc_id = atomic_load(&parent->run->slots[slot].id);
    go_helper(parent, a, acceptor_task);
}

static void echo_task(void *p)
{
    fz_actor *a = p;
    fz_run *r = a->run;
    np_conn c = { a->echo_id };
    while (!atomic_load(&r->stop)) {
        size_t want = 1 + fz_below(a, fz_chance(a, 50) ? 512 : FZ_BUF);
        unsigned ri = fz_begin(a, C_READ, c.id, (int64_t)want);
        ssize_t n = np_read(c, a->buf, want);
        fz_end(a, ri, C_READ, n);
        if (n <= 0) {
            fz_expect(a, C_READ, H_LIVE, n, true,
                      FZ_ERRS(EBADF, ECANCELED, ETIMEDOUT, ECONNRESET), "echo");
            break;
        }
        if ((size_t)n > want) {
            fz_fail(a, "np_read(%zu) returned %zd", want, n);
            break;
        }
        ri = fz_begin(a, C_WRITE, c.id, n);
        ssize_t w = np_write(c, a->buf, (size_t)n);
        fz_end(a, ri, C_WRITE, w);
        if (w != n) {
            if (w > n || w == 0)
                fz_fail(a, "np_write(%zd) returned %zd", n, w);
            else if (w < 0)
                fz_expect(a, C_WRITE, H_LIVE, w, true,
                          FZ_ERRS(EBADF, ECANCELED, ETIMEDOUT, EPIPE, ECONNRESET, ENOBUFS), "echo");
            break;
        }
    }
    fz_actor_fini(a);
    free(a);
    atomic_fetch_sub(&r->live, 1);
}

void fz_start_echo(fz_actor *parent, uint64_t conn_id)
{
    if (parent->ctx == CTX_THREAD && fz_chance(parent, 50))
        return;
    fz_actor *a = helper(parent, 'E');
    a->echo_id = conn_id;
    go_helper(parent, a, echo_task);
}

static void mini_task(void *p)
{
    fz_actor *a = p;
    fz_run *r = a->run;
    for (int i = 0; i < a->nops && !atomic_load(&r->stop); i++)
        fz_random_op(a);
    fz_actor_fini(a);
    free(a);
    atomic_fetch_sub(&r->live, 1);
}

void fz_spawn_mini(fz_actor *parent)
{
    if (parent->depth >= 2)
        return;
    fz_actor *a = helper(parent, 'S');
    a->nops = 3 + (int)fz_below(parent, 30);
    go_helper(parent, a, mini_task);
}
