/* api_fuzz: the coordination calls (mutex, cond, waitgroup, channels,
 * select) and np_offload, from tasks and plain threads at once, on shared
 * objects; and checked scenarios with exact results. See fuzz.h.
 *
 * Nothing here can block forever on a correct library: a mutex is held
 * only for a short critical section; cond waiters loop until the end's
 * sweep hands out tickets and broadcasts; waitgroup adds are paired with a
 * done a moment later; a channel call without a deadline is woken by the
 * sweep's close; the nil channel and a select with nothing that can proceed
 * get a near deadline. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz.h"

#define elem_fill fz_elem_fill
#define elem_ok fz_elem_ok
#define all fz_all
#define chan_grave_push fz_chan_grave_push

#define FZ_CHANS 16
#define EMAX FZ_EMAX
#define SAFETY (10 * NP_SECOND)

typedef struct fz_cslot {
    _Atomic int state;
    _Atomic uint64_t id;
    _Atomic size_t esize, ecap;
} fz_cslot;

typedef struct fz_sync {
    np_mutex m;      /* contended: guards owner and counter */
    int owner;       /* plain ints: a mutex that does not exclude is a data race (TSan) */
    long counter;
    np_mutex m_free; /* never locked: unlock gives -EPERM */
    np_mutex mc;     /* guards tickets */
    np_cond cv;
    long tickets;
    np_cond cv_spare;
    np_waitgroup wg;
    fz_cslot chans[FZ_CHANS];
} fz_sync;

static _Atomic uint64_t chan_grave[64];
static _Atomic unsigned chan_grave_n;

struct fz_sync *fz_sync_new(void)
{
    return calloc(1, sizeof(fz_sync));
}

void fz_sync_free(struct fz_sync *s)
{
    free(s);
}

/* ---- elements: self-checking contents ------------------------------------ */

static unsigned char epat(size_t i, uint64_t k)
{
    return (unsigned char)(((uint32_t)i * 0x9E3779B1u + (uint32_t)k) >> 24);
}

void fz_elem_fill(unsigned char *p, size_t n, uint64_t key)
{
    key |= 1;
    if (n < 8) {
        memset(p, (int)(key % 255) + 1, n);
        return;
    }
    memcpy(p, &key, 8);
    for (size_t i = 8; i < n; i++)
        p[i] = epat(i, key);
}

bool fz_elem_ok(const unsigned char *p, size_t n)
{
    if (n == 0)
        return true;
    if (n < 8) {
        for (size_t i = 0; i < n; i++)
            if (p[i] != p[0] || !p[0])
                return false;
        return true;
    }
    uint64_t key;
    memcpy(&key, p, 8);
    if (!(key & 1))
        return false;
    for (size_t i = 8; i < n; i++)
        if (p[i] != epat(i, key))
            return false;
    return true;
}

bool fz_all(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return false;
    return true;
}

/* ---- channel handles ------------------------------------------------------- */

typedef struct cpick {
    uint64_t id;
    int hclass;
    int slot;
    size_t esize, ecap;
} cpick;

/* allow_any: a connection's id may be given (it may name one of our
 * channels, private ones included: only for calls that change nothing). */
static cpick pick_chan(fz_actor *a, bool allow_nil, bool allow_any)
{
    fz_sync *S = a->run ? a->run->sync : NULL;
    int r = (int)fz_below(a, 100);
    if (r < 68 && S) {
        unsigned start = (unsigned)fz_below(a, FZ_CHANS);
        for (unsigned k = 0; k < FZ_CHANS; k++) {
            int i = (int)((start + k) % FZ_CHANS);
            fz_cslot *c = &S->chans[i];
            if (atomic_load(&c->state) == SLOT_LIVE)
                return (cpick){ atomic_load(&c->id), H_LIVE, i, atomic_load(&c->esize),
                                atomic_load(&c->ecap) };
        }
    }
    if (r < 78 && allow_nil)
        return (cpick){ 0, H_NIL, -1, 0, 0 };
    unsigned n = atomic_load(&chan_grave_n);
    if (r < 88 && n)
        return (cpick){ atomic_load(&chan_grave[(n - 1 - fz_below(a, n < 64 ? n : 64)) % 64]),
                        H_DEAD, -1, 0, 0 };
    if (r < 94 && allow_any) { /* another table's id: maybe one of ours by chance */
        uint64_t g = fz_grave_pick(a);
        if (g)
            return (cpick){ g, H_ANY, -1, 0, 0 };
    }
    uint64_t f = ((uint64_t)5 << 32) | 3;
    if (S)
        for (int i = 0; i < FZ_CHANS; i++)
            if (atomic_load(&S->chans[i].state) == SLOT_LIVE)
                f = atomic_load(&S->chans[i].id);
    switch (fz_below(a, 4)) {
    case 0: f = UINT64_MAX; break;
    case 1: f ^= (uint64_t)1 << 63; break; /* a generation 2^31 frees away */
    case 2: f ^= (uint64_t)1 << 32; break; /* even: never issued */
    default: f = (f & ~(uint64_t)0xffffffff) | 0xfffffff0u; break;
    }
    return (cpick){ f ? f : UINT64_MAX, H_DEAD, -1, 0, 0 };
}

void fz_chan_grave_push(uint64_t id)
{
    unsigned i = atomic_fetch_add(&chan_grave_n, 1);
    atomic_store(&chan_grave[i % 64], id);
}

static int chan_put(fz_actor *a, uint64_t id, size_t esize, size_t ecap)
{
    fz_sync *S = a->run->sync;
    if (!atomic_load(&a->run->stop)) {
        for (int i = 0; i < FZ_CHANS; i++) {
            fz_cslot *c = &S->chans[i];
            int f = SLOT_FREE;
            if (!atomic_compare_exchange_strong(&c->state, &f, SLOT_CLAIM))
                continue;
            atomic_store(&c->id, id);
            atomic_store(&c->esize, esize);
            atomic_store(&c->ecap, ecap);
            atomic_store(&c->state, SLOT_LIVE);
            return i;
        }
    }
    int rc = np_chan_free((np_chan){ id });
    if (rc != 0)
        fz_fail(a, "np_chan_free of a channel nobody else knows = %d", rc);
    chan_grave_push(id);
    return -1;
}

/* ---- shared objects: random calls ---------------------------------------- */

/* The critical section: nobody else may be in it. */
static void critical(fz_actor *a, fz_sync *S, const char *how)
{
    if (S->owner != 0)
        fz_fail(a, "%s: the mutex is held by actor %d too", how, S->owner - 1);
    S->owner = a->id + 1;
    S->counter++;
    int k = (int)fz_below(a, 10);
    if (k == 0)
        np_yield();
    else if (k == 1)
        np_sleep((int64_t)fz_below(a, 300 * NP_MICROSECOND));
    if (S->owner != a->id + 1)
        fz_fail(a, "%s: another actor (%d) entered the critical section meanwhile", how,
                S->owner - 1);
    S->owner = 0;
}

static void unlock_held(fz_actor *a, np_mutex *m)
{
    unsigned ri = fz_begin(a, C_MUTEX_UNLOCK, 0, 0);
    int rc = np_mutex_unlock(m);
    fz_end(a, ri, C_MUTEX_UNLOCK, rc);
    if (rc != 0)
        fz_fail(a, "np_mutex_unlock of a mutex we hold = %d (%s)", rc, np_strerror(rc));
}

static void op_mutex(fz_actor *a, int call)
{
    fz_sync *S = a->run->sync;
    unsigned ri;
    int rc;
    if (fz_chance(a, 4)) { /* NULL */
        ri = fz_begin(a, call, 0, -1);
        rc = call == C_MUTEX_LOCK         ? np_mutex_lock(NULL)
           : call == C_MUTEX_LOCK_UNTIL   ? np_mutex_lock_until(NULL, np_now())
           : call == C_MUTEX_TRYLOCK      ? np_mutex_trylock(NULL)
                                          : np_mutex_unlock(NULL);
        fz_end(a, ri, call, rc);
        if (rc != -EINVAL)
            fz_fail(a, "%s(NULL) = %d, want -EINVAL", fz_call_name[call], rc);
        return;
    }
    switch (call) {
    case C_MUTEX_LOCK:
        ri = fz_begin(a, call, 0, 0);
        rc = np_mutex_lock(&S->m);
        fz_end(a, ri, call, rc);
        if (rc != 0) {
            fz_fail(a, "np_mutex_lock = %d (%s)", rc, np_strerror(rc));
            return;
        }
        critical(a, S, "np_mutex_lock");
        unlock_held(a, &S->m);
        break;
    case C_MUTEX_LOCK_UNTIL: {
        bool past;
        int64_t d = fz_deadline(a, true, &past);
        int64_t t0 = np_now();
        ri = fz_begin(a, call, 0, d);
        rc = np_mutex_lock_until(&S->m, d);
        fz_end(a, ri, call, rc);
        int64_t t1 = np_now();
        if (rc == 0) {
            critical(a, S, "np_mutex_lock_until");
            unlock_held(a, &S->m);
        } else if (rc != -ETIMEDOUT) {
            fz_fail(a, "np_mutex_lock_until(%" PRId64 ") = %d (%s)", d, rc, np_strerror(rc));
        } else if (!past && d != 0 && t1 < d) {
            fz_fail(a, "np_mutex_lock_until: -ETIMEDOUT %" PRId64 " ns before the deadline",
                    d - t1);
        }
        (void)t0;
        break;
    }
    case C_MUTEX_TRYLOCK:
        ri = fz_begin(a, call, 0, 0);
        rc = np_mutex_trylock(&S->m);
        fz_end(a, ri, call, rc);
        if (rc == 0) {
            critical(a, S, "np_mutex_trylock");
            unlock_held(a, &S->m);
        } else if (rc != -EBUSY) {
            fz_fail(a, "np_mutex_trylock = %d (%s)", rc, np_strerror(rc));
        }
        break;
    default: /* a mutex nobody locks */
        ri = fz_begin(a, call, 0, 1);
        rc = np_mutex_unlock(&S->m_free);
        fz_end(a, ri, call, rc);
        if (rc != -EPERM)
            fz_fail(a, "np_mutex_unlock of a mutex never locked = %d, want -EPERM", rc);
        break;
    }
}

static void op_cond(fz_actor *a, int call)
{
    fz_sync *S = a->run->sync;
    fz_run *r = a->run;
    unsigned ri;
    int rc;
    if (fz_chance(a, 5)) { /* bad arguments */
        int k = (int)fz_below(a, 4);
        ri = fz_begin(a, call, 0, -1 - k);
        rc = k == 0 ? np_cond_wait(NULL, &S->mc, np_now())
           : k == 1 ? np_cond_wait(&S->cv_spare, NULL, np_now())
           : k == 2 ? (call == C_COND_BROADCAST ? np_cond_broadcast(NULL) : np_cond_signal(NULL))
                    : np_cond_wait(&S->cv_spare, &S->m_free, np_now() + NP_MILLISECOND);
        fz_end(a, ri, k == 3 || k < 2 ? C_COND_WAIT : call, rc);
        if (rc != (k == 3 ? -EPERM : -EINVAL))
            fz_fail(a, "np_cond_%s with %s = %d, want %s", k == 2 ? "signal/broadcast" : "wait",
                    k == 3 ? "a mutex not locked" : "NULL", rc, k == 3 ? "-EPERM" : "-EINVAL");
        return;
    }
    if (call == C_COND_WAIT) {
        if (np_mutex_lock(&S->mc) != 0) {
            fz_fail(a, "np_mutex_lock(mc) failed");
            return;
        }
        for (int tries = 0; S->tickets == 0 && !atomic_load(&r->stop) && tries < 3; tries++) {
            bool past;
            int64_t d = fz_chance(a, 20) ? 0 : fz_deadline(a, true, &past);
            ri = fz_begin(a, C_COND_WAIT, 0, d);
            rc = np_cond_wait(&S->cv, &S->mc, d);
            fz_end(a, ri, C_COND_WAIT, rc);
            int t = np_mutex_trylock(&S->mc); /* we hold it again: -EBUSY */
            if (t != -EBUSY) {
                fz_fail(a, "np_cond_wait returned %d without the mutex held (trylock = %d)", rc,
                        t);
                if (t == 0)
                    np_mutex_unlock(&S->mc);
                return;
            }
            if (rc != 0 && rc != -ETIMEDOUT)
                fz_fail(a, "np_cond_wait(%" PRId64 ") = %d (%s)", d, rc, np_strerror(rc));
            if (rc != 0)
                break;
        }
        if (S->tickets > 0)
            S->tickets--;
        unlock_held(a, &S->mc);
        return;
    }
    bool held = fz_chance(a, 50);
    np_mutex_lock(&S->mc);
    S->tickets += 1 + (long)fz_below(a, 2);
    if (!held)
        np_mutex_unlock(&S->mc);
    ri = fz_begin(a, call, 0, held);
    rc = call == C_COND_SIGNAL ? np_cond_signal(&S->cv) : np_cond_broadcast(&S->cv);
    fz_end(a, ri, call, rc);
    if (held)
        np_mutex_unlock(&S->mc);
    if (rc != 0)
        fz_fail(a, "%s = %d", fz_call_name[call], rc);
}

static void op_wg(fz_actor *a, int call)
{
    fz_sync *S = a->run->sync;
    unsigned ri;
    int rc;
    if (fz_chance(a, 5)) {
        ri = fz_begin(a, call, 0, -1);
        rc = call == C_WG_ADD ? np_waitgroup_add(NULL, 1)
           : call == C_WG_DONE ? np_waitgroup_done(NULL)
                               : np_waitgroup_wait(NULL, np_now());
        fz_end(a, ri, call, rc);
        if (rc != -EINVAL)
            fz_fail(a, "%s(NULL) = %d, want -EINVAL", fz_call_name[call], rc);
        return;
    }
    if (call == C_WG_WAIT) {
        bool past;
        int64_t d = fz_chance(a, 20) ? 0 : fz_deadline(a, true, &past);
        ri = fz_begin(a, call, 0, d);
        rc = np_waitgroup_wait(&S->wg, d);
        fz_end(a, ri, call, rc);
        if (rc != 0 && rc != -ETIMEDOUT)
            fz_fail(a, "np_waitgroup_wait(%" PRId64 ") = %d (%s)", d, rc, np_strerror(rc));
        return;
    }
    /* add, a short pause, done: the shared count always comes back */
    int64_t k = 1 + (int64_t)fz_below(a, 3);
    ri = fz_begin(a, C_WG_ADD, 0, k);
    rc = np_waitgroup_add(&S->wg, k);
    fz_end(a, ri, C_WG_ADD, rc);
    if (rc != 0) {
        fz_fail(a, "np_waitgroup_add(%" PRId64 ") = %d", k, rc);
        return;
    }
    if (fz_chance(a, 30))
        np_sleep((int64_t)fz_below(a, NP_MILLISECOND));
    for (int64_t i = 0; i < k; i++) {
        bool by_add = call == C_WG_ADD && fz_chance(a, 50);
        ri = fz_begin(a, by_add ? C_WG_ADD : C_WG_DONE, 0, -1);
        rc = by_add ? np_waitgroup_add(&S->wg, -1) : np_waitgroup_done(&S->wg);
        fz_end(a, ri, by_add ? C_WG_ADD : C_WG_DONE, rc);
        if (rc != 0)
            fz_fail(a, "%s after our add = %d", by_add ? "np_waitgroup_add(-1)" : "np_waitgroup_done",
                    rc);
    }
}

static int64_t chan_deadline(fz_actor *a, int hclass, bool *past)
{
    /* the nil channel and dead-or-unknown ones: a near deadline, in case
     * the call blocks (the nil channel blocks until it) */
    if (hclass != H_LIVE || fz_chance(a, 60))
        return fz_deadline(a, true, past);
    *past = false;
    return 0; /* woken by a partner, or by the end's close */
}

static void op_chan(fz_actor *a, int call)
{
    fz_run *r = a->run;
    unsigned char *buf = a->buf;
    unsigned ri;
    int rc;
    if (call == C_CHAN_MAKE) {
        static const size_t sizes[] = { 0, 1, 3, 8, 16, 100, EMAX };
        static const size_t caps[] = { 0, 0, 1, 2, 8, 64 };
        size_t es = sizes[fz_below(a, 7)], cp = caps[fz_below(a, 6)];
        bool bad = fz_chance(a, 10), null_out = fz_chance(a, 3);
        if (bad) {
            static const size_t bs[][2] = { { SIZE_MAX, 2 }, { 2, SIZE_MAX / 2 + 1 },
                                            { (1u << 30) + 1, 1 }, { 1, ((size_t)1 << 30) + 1 },
                                            { SIZE_MAX, 0 }, { 4096, (1u << 18) + 1 } };
            int k = (int)fz_below(a, 6);
            es = bs[k][0];
            cp = bs[k][1];
        }
        np_chan c = { 77 };
        ri = fz_begin(a, call, 0, (int64_t)cp);
        rc = np_chan_make(null_out ? NULL : &c, es, cp);
        fz_end(a, ri, call, rc);
        if (null_out || bad) {
            /* {SIZE_MAX, 0}: a product of 0 but an absurd element */
            if (rc == 0) {
                fz_fail(a, "np_chan_make(%s, %zu, %zu) = 0, want -EINVAL",
                        null_out ? "NULL" : "&c", es, cp);
                if (!null_out)
                    np_chan_free(c);
            } else if (rc != -EINVAL && rc != -ENOMEM) {
                fz_fail(a, "np_chan_make(%zu, %zu) = %d, want -EINVAL", es, cp, rc);
            }
            return;
        }
        if (rc != 0) {
            fz_expect(a, call, H_NONE, rc, false, FZ_ERRS(ENOMEM), "make");
            return;
        }
        if (c.id == 0) {
            fz_fail(a, "np_chan_make gave id 0 (the nil channel)");
            return;
        }
        int cap = np_chan_cap(c), len = np_chan_len(c);
        if (cap != (int)cp || len != 0)
            fz_fail(a, "a new channel of capacity %zu: np_chan_cap = %d, np_chan_len = %d", cp, cap,
                    len);
        chan_put(a, c.id, es, cp);
        return;
    }
    cpick h = pick_chan(a, call == C_CHAN_SEND || call == C_CHAN_RECV,
                        call == C_CHAN_LEN || call == C_CHAN_CAP);
    np_chan ch = { h.id };
    char what[64];
    snprintf(what, sizeof what, "esize %zu, cap %zu", h.esize, h.ecap);
    switch (call) {
    case C_CHAN_SEND: case C_CHAN_RECV: {
        bool past;
        int64_t d = chan_deadline(a, h.hclass, &past);
        bool send = call == C_CHAN_SEND;
        size_t es = h.hclass == H_LIVE ? h.esize : EMAX;
        if (send)
            elem_fill(buf, es, fz_rand(a));
        else
            memset(buf, 0xee, EMAX + 16);
        bool null_elem = h.hclass == H_LIVE && h.esize == 0 && fz_chance(a, 50);
        ri = fz_begin(a, call, h.id, d);
        rc = send ? np_chan_send(ch, null_elem ? NULL : buf, d)
                  : np_chan_recv(ch, null_elem ? NULL : buf, d);
        fz_end(a, ri, call, rc);
        if (h.hclass == H_NIL) {
            if (rc != -EBADF && rc != -ETIMEDOUT)
                fz_fail(a, "%s on the nil channel = %d, want -ETIMEDOUT (or -EBADF)",
                        fz_call_name[call], rc);
            return;
        }
        fz_expect(a, call, h.hclass == H_ANY ? H_LIVE : h.hclass, rc, true,
                  FZ_ERRS(EBADF, EPIPE, ETIMEDOUT, ECANCELED), what);
        if (!send && h.hclass == H_LIVE && !null_elem) {
            if (rc == 0 && (!elem_ok(buf, h.esize) || !all(buf + h.esize, 16, 0xee)))
                fz_fail(a, "np_chan_recv (%s) delivered a torn or oversized element", what);
            if (rc == -EPIPE && (!all(buf, h.esize, 0) || !all(buf + h.esize, 16, 0xee)))
                fz_fail(a, "np_chan_recv on a closed, drained channel (%s) did not zero the "
                           "element (exactly)", what);
        }
        break;
    }
    case C_CHAN_CLOSE:
        ri = fz_begin(a, call, h.id, 0);
        rc = np_chan_close(ch);
        fz_end(a, ri, call, rc);
        if (h.hclass == H_NIL)
            break;
        fz_expect(a, call, h.hclass == H_ANY ? H_LIVE : h.hclass, rc, false,
                  FZ_ERRS(EBADF, EPIPE), what);
        break;
    case C_CHAN_FREE:
        if (h.hclass == H_ANY)
            break; /* it might be someone's */
        ri = fz_begin(a, call, h.id, 0);
        rc = np_chan_free(ch);
        fz_end(a, ri, call, rc);
        fz_expect(a, call, h.hclass, rc, false, FZ_ERRS(EBADF), what);
        if (rc == 0 && h.hclass == H_LIVE) {
            fz_sync *S = r->sync;
            chan_grave_push(h.id);
            if (atomic_load(&S->chans[h.slot].id) == h.id)
                atomic_store(&S->chans[h.slot].state, SLOT_FREE);
        }
        break;
    default: { /* len, cap */
        ri = fz_begin(a, call, h.id, 0);
        rc = call == C_CHAN_LEN ? np_chan_len(ch) : np_chan_cap(ch);
        fz_end(a, ri, call, rc);
        fz_expect(a, call, h.hclass == H_ANY ? H_LIVE : h.hclass, rc, false, FZ_ERRS(EBADF), what);
        if (h.hclass == H_LIVE && rc >= 0 &&
            (call == C_CHAN_LEN ? (size_t)rc > h.ecap : (size_t)rc != h.ecap))
            fz_fail(a, "%s = %d on a channel of capacity %zu", fz_call_name[call], rc, h.ecap);
        break;
    }
    }
}

static void op_select(fz_actor *a)
{
    np_select_case cs[8];
    cpick hp[8];
    int n = (int)fz_below(a, 6);
    bool bad_n = fz_chance(a, 4), bad_op = false, any_dead = false, any_live = false;
    if (bad_n)
        n = (int[]){ -1, INT_MIN, 65, 1000 }[fz_below(a, 4)];
    int m = n > 0 && n <= 8 ? n : 0;
    for (int i = 0; i < m; i++) {
        hp[i] = pick_chan(a, true, false);
        cs[i].chan.id = hp[i].id;
        cs[i].op = fz_chance(a, 50) ? NP_SEND : NP_RECV;
        if (fz_chance(a, 3)) {
            cs[i].op = (int[]){ 0, 3, -1 }[fz_below(a, 3)];
            bad_op = true;
        }
        cs[i].elem = a->buf + (size_t)i * (EMAX + 64);
        cs[i].result = 12345;
        size_t es = hp[i].hclass == H_LIVE ? hp[i].esize : EMAX;
        if (cs[i].op == NP_SEND)
            elem_fill(cs[i].elem, es, fz_rand(a));
        else
            memset(cs[i].elem, 0xee, EMAX + 16);
        any_dead |= hp[i].hclass == H_DEAD;
        any_live |= hp[i].hclass == H_LIVE;
    }
    bool null_cases = m > 0 && fz_chance(a, 3);
    bool past = false;
    /* nothing but nil channels, or none: only a near deadline ends it */
    int64_t d = any_live && fz_chance(a, 50) ? 0 : fz_deadline(a, true, &past);
    unsigned ri = fz_begin(a, C_SELECT, (uint64_t)(unsigned)n, d);
    int rc = np_select(null_cases ? NULL : cs, n, d);
    fz_end(a, ri, C_SELECT, rc);
    bool invalid = bad_n || bad_op || null_cases;
    bool any_chan = false; /* a bad op beside a channel: which is found first is open */
    for (int i = 0; i < m; i++)
        any_chan |= hp[i].hclass != H_NIL;
    if (invalid) {
        if (rc != -EINVAL && !(bad_op && !bad_n && !null_cases && any_chan && rc == -EBADF))
            fz_fail(a, "np_select(%s, %d) with %s = %d, want -EINVAL", null_cases ? "NULL" : "cases",
                    n, bad_n ? "a bad n" : bad_op ? "a bad op" : "NULL cases", rc);
        return;
    }
    if (rc < 0) {
        bool ok = rc == -ETIMEDOUT || rc == -EBADF || rc == -ECANCELED;
        if (any_dead && rc != -EBADF)
            ok = false;
        if (!ok)
            fz_fail(a, "np_select(%d cases%s, %" PRId64 ") = %d (%s)", n,
                    any_dead ? ", one of them freed or forged" : "", d, rc, np_strerror(rc));
        return;
    }
    if (rc >= n || any_dead) {
        fz_fail(a, "np_select(%d cases%s) returned index %d", n,
                any_dead ? ", one of them freed or forged (want -EBADF)" : "", rc);
        return;
    }
    if (cs[rc].chan.id == 0)
        fz_fail(a, "np_select chose case %d, the nil channel", rc);
    if (cs[rc].result != 0 && cs[rc].result != -EPIPE)
        fz_fail(a, "np_select's chosen case %d has result %d", rc, cs[rc].result);
    if (cs[rc].op == NP_RECV && hp[rc].hclass == H_LIVE) {
        const unsigned char *e = cs[rc].elem;
        size_t es = hp[rc].esize;
        if (cs[rc].result == 0 && (!elem_ok(e, es) || !all(e + es, 16, 0xee)))
            fz_fail(a, "np_select received a torn or oversized element (esize %zu)", es);
        if (cs[rc].result == -EPIPE && (!all(e, es, 0) || !all(e + es, 16, 0xee)))
            fz_fail(a, "np_select: a receive from a closed channel did not zero the element");
    }
}

/* np_offload: the job runs (on a pool thread, or directly on a plain
 * thread) and has finished when the call returns 0. */
typedef struct job {
    fz_run *run;
    _Atomic int done;
    int ops;
    uint64_t salt;
} job;

static void job_fn(void *p)
{
    job *j = p;
    if (j->ops > 0 && j->run) { /* a plain thread: the calls block it, as documented */
        fz_actor t;
        fz_actor_init(&t, j->run, 'O', CTX_THREAD, j->salt);
        for (int i = 0; i < j->ops && !atomic_load(&j->run->stop); i++)
            fz_random_op(&t);
        fz_actor_fini(&t);
    } else {
        struct timespec ts = { 0, (long)(j->salt % 2000000) };
        nanosleep(&ts, NULL);
    }
    atomic_store(&j->done, 1);
}

static void op_offload(fz_actor *a)
{
    bool null_fn = fz_chance(a, 8);
    job *j = calloc(1, sizeof *j);
    j->run = a->run;
    j->salt = fz_rand(a);
    j->ops = fz_chance(a, 30) ? 1 + (int)fz_below(a, 6) : 0;
    if (a->depth > 0 || a->ctx == CTX_NORUNTIME)
        j->ops = 0;
    unsigned ri = fz_begin(a, C_OFFLOAD, 0, j->ops);
    int rc = np_offload(null_fn ? NULL : job_fn, j);
    fz_end(a, ri, C_OFFLOAD, rc);
    if (null_fn) {
        if (rc != -EINVAL && !(a->ctx == CTX_NORUNTIME && rc == -ESRCH))
            fz_fail(a, "np_offload(NULL) = %d, want -EINVAL", rc);
    } else if (rc == 0) {
        if (!atomic_load(&j->done))
            fz_fail(a, "np_offload returned 0 before the job finished");
        if (a->ctx == CTX_NORUNTIME)
            fz_fail(a, "np_offload succeeded with no runtime running");
    } else {
        fz_expect(a, C_OFFLOAD, H_NONE, rc, true, FZ_ERRS(ENOMEM), "fn");
        if (atomic_load(&j->done))
            fz_fail(a, "np_offload = %d, yet the job ran", rc);
    }
    free(j);
}

void fz_sync_op(fz_actor *a, int call)
{
    if (!a->run) {
        if (call == C_OFFLOAD)
            op_offload(a);
        return;
    }
    switch (call) {
    case C_OFFLOAD: op_offload(a); break;
    case C_MUTEX_LOCK: case C_MUTEX_LOCK_UNTIL: case C_MUTEX_TRYLOCK: case C_MUTEX_UNLOCK:
        op_mutex(a, call);
        break;
    case C_COND_WAIT: case C_COND_SIGNAL: case C_COND_BROADCAST: op_cond(a, call); break;
    case C_WG_ADD: case C_WG_DONE: case C_WG_WAIT: op_wg(a, call); break;
    case C_SELECT: op_select(a); break;
    default: op_chan(a, call); break;
    }
}

void fz_sync_sweep(fz_actor *a, bool final)
{
    fz_sync *S = a->run->sync;
    np_mutex_lock(&S->mc);
    S->tickets += 1000;
    np_mutex_unlock(&S->mc);
    np_cond_broadcast(&S->cv);
    for (int i = 0; i < FZ_CHANS; i++) {
        fz_cslot *c = &S->chans[i];
        if (atomic_load(&c->state) != SLOT_LIVE)
            continue;
        uint64_t id = atomic_load(&c->id);
        int rc = np_chan_close((np_chan){ id }); /* wakes every blocked call */
        if (rc != 0 && rc != -EPIPE && rc != -EBADF)
            fz_fail(a, "np_chan_close at the end = %d", rc);
        if (final) {
            rc = np_chan_free((np_chan){ id });
            if (rc != 0)
                fz_fail(a, "np_chan_free at the end = %d (%s)", rc, np_strerror(rc));
            chan_grave_push(id);
            atomic_store(&c->state, SLOT_FREE);
        }
    }
}

/* With no runtime: what need not block works, what would block is -ESRCH. */
void fz_sync_noruntime(fz_actor *a)
{
    np_mutex m = NP_MUTEX_INIT;
    np_cond c = NP_COND_INIT;
    np_waitgroup wg = NP_WAITGROUP_INIT;
    int r[12];
    r[0] = np_mutex_lock(&m);                              /* 0 */
    r[1] = np_mutex_trylock(&m);                           /* -EBUSY */
    r[2] = np_mutex_lock_until(&m, np_now() + NP_SECOND);  /* would block: -ESRCH */
    r[3] = np_cond_wait(&c, &m, np_now() + NP_SECOND);     /* would block: -ESRCH */
    r[4] = np_cond_signal(&c);                             /* 0 */
    r[5] = np_mutex_unlock(&m);                            /* 0 */
    r[6] = np_waitgroup_add(&wg, 1);                       /* 0 */
    r[7] = np_waitgroup_wait(&wg, np_now() + NP_SECOND);   /* would block: -ESRCH */
    r[8] = np_waitgroup_done(&wg);                         /* 0 */
    r[9] = np_waitgroup_wait(&wg, 0);                      /* count 0: 0 */
    r[10] = np_mutex_lock_until(&m, np_now() - 1);         /* free: 0 */
    r[11] = np_mutex_unlock(&m);
    static const int want[12] = { 0, -EBUSY, -ESRCH, -ESRCH, 0, 0, 0, -ESRCH, 0, 0, 0, 0 };
    static const char *const what[12] = {
        "np_mutex_lock", "np_mutex_trylock (held)", "np_mutex_lock_until (held)",
        "np_cond_wait", "np_cond_signal", "np_mutex_unlock", "np_waitgroup_add",
        "np_waitgroup_wait (count 1)", "np_waitgroup_done", "np_waitgroup_wait (count 0)",
        "np_mutex_lock_until (free, past deadline)", "np_mutex_unlock",
    };
    for (int i = 0; i < 12; i++)
        if (r[i] != want[i] && !(i == 3 && r[i] == -ETIMEDOUT)) {
            fz_fail(a, "no runtime: %s = %d (%s), want %d", what[i], r[i], np_strerror(r[i]),
                    want[i]);
            break;
        }
    /* a channel: buffered send and receive need not block */
    np_chan ch;
    int rc = np_chan_make(&ch, 8, 2);
    if (rc != 0) {
        if (rc != -ESRCH)
            fz_fail(a, "no runtime: np_chan_make = %d", rc);
        return;
    }
    unsigned char e[8];
    elem_fill(e, 8, 42);
    int s1 = np_chan_send(ch, e, 0), s2 = np_chan_send(ch, e, 0);
    int s3 = np_chan_send(ch, e, np_now() + NP_SECOND); /* full: -ESRCH */
    int r1 = np_chan_recv(ch, e, 0);
    np_select_case sc = { ch, NP_RECV, e, 0 };
    int r2 = np_select(&sc, 1, 0);
    int r3 = np_chan_recv(ch, e, 0); /* empty, no deadline: -ESRCH */
    int fr = np_chan_free(ch);
    if (s1 || s2 || s3 != -ESRCH || r1 || r2 != 0 || r3 != -ESRCH || fr)
        fz_fail(a, "no runtime: channel calls: send %d %d, full send %d (want -ESRCH), recv %d, "
                   "select %d, empty recv %d (want -ESRCH), free %d", s1, s2, s3, r1, r2, r3, fr);
    chan_grave_push(ch.id);
}
