/* api_fuzz: what the stream-socket scenarios share (fuzz_scenarios.c,
 * fuzz_deadline_sc.c): a connected pair on a private listener, the state a
 * scenario shares with its peer tasks, and helpers. */
#ifndef NP_FUZZ_NET_SC_H
#define NP_FUZZ_NET_SC_H

#include "fuzz.h"

#define SAFETY (10 * NP_SECOND) /* deadline of every blocking call here */
#define LATE (3 * NP_SECOND)    /* a wake-up later than this after its cause fails */

typedef struct pair {
    int fam; /* 0 tcp4, 1 tcp6, 2 unix file, 3 unix abstract, 4 "tcp" on 127.0.0.1 */
    const char *net;
    np_listener l;
    np_conn c, s; /* client (dialled), server (accepted) */
    char path[108];
    char laddr[128];
} pair;

/* One scenario's shared state: on the heap (a parked task's stack may be
 * elsewhere with idle_stack_ns). */
typedef struct sc {
    fz_actor *a;
    pair p;
    int variant;
    _Atomic int stage;
    _Atomic int peers;     /* peer tasks not finished */
    _Atomic unsigned salt;
    _Atomic long long peer_rc;
    _Atomic int64_t t_cause, t_peer_ret;
    size_t n;
    unsigned pat;
    _Atomic unsigned long sum;
    _Atomic size_t got;
    int64_t deadline;
} sc;

#define CHECK(a, cond, ...)                                                   \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fz_fail(a, __VA_ARGS__);                                         \
            goto out;                                                        \
        }                                                                    \
    } while (0)

unsigned char nsc_pat(size_t i, unsigned k);
const char *nsc_fam_name(int f);
/* 0: made; 1: skip (a family this host lacks, or out of descriptors);
 * -1: failed (reported). */
int nsc_mkpair(fz_actor *a, pair *p, int fam);
void nsc_unpair(fz_actor *a, pair *p);
void nsc_check_dead_conn(fz_actor *a, np_conn c, const char *why);
void nsc_check_dead_listener(fz_actor *a, np_listener l);
bool nsc_wait_for(_Atomic int *f, int want, int64_t ns);
bool nsc_go_peer(sc *x, void (*fn)(void *));
void nsc_peer_end(sc *x, fz_actor *pa);
fz_actor *nsc_peer_actor(sc *x);
bool nsc_wait_peers(sc *x, int64_t ns);
bool nsc_write_all(fz_actor *a, np_conn c, size_t n, unsigned k, unsigned char *buf);
bool nsc_read_all(fz_actor *a, np_conn c, size_t n, unsigned k, unsigned char *buf);
bool nsc_expect_eof(fz_actor *a, np_conn c, const char *who);
void nsc_deadline(sc *x);
void nsc_far_deadline(sc *x);

#endif
