/* Sharded 4-ary timer heaps. See timer.h for the contract. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "netpoll.h"
#include "base/np_assert.h"
#include "pd/timer.h"

typedef struct shard {
    pthread_mutex_t lock;
    np__timer **heap;          /* 4-ary min-heap on key */
    uint32_t len;              /* entries in heap */
    uint32_t cap;              /* room in heap */
    uint32_t bound;            /* timers bound to this shard (<= cap) */
    _Atomic int64_t pending;   /* set and not yet fired or stopped (written
                                * under lock; read by np__timers_pending) */
} __attribute__((aligned(64))) shard;

static shard *shards;
static uint32_t nshards;

/* Each shard's earliest key (INT64_MAX when empty), side by side rather
 * than in the shards: the scheduler reads every one of them on each pass
 * for work (np__timers_next), and a worker that has just woken from sleep
 * finds eight shard lines gone cold where it would find one of these. */
static _Atomic int64_t *shard_next;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void (*_Atomic kick_hook)(int64_t when);

/* Shards are created once per process and never freed: timers bound to them
 * live in type-stable memory (poll descriptors) that outlives any runtime. */
static void create_shards(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t n = 8;
    while (n < 4 * (uint32_t)(cpus > 0 ? cpus : 1) && n < 256)
        n *= 2;
    shards = calloc(n, sizeof *shards);
    shard_next = aligned_alloc(64, (n * sizeof *shard_next + 63) / 64 * 64);
    if (!shards || !shard_next)
        NP__PANIC("timers: out of memory for %u shards", n);
    for (uint32_t i = 0; i < n; i++) {
        pthread_mutex_init(&shards[i].lock, NULL);
        atomic_init(&shard_next[i], INT64_MAX);
    }
    nshards = n;
}

uint32_t np__timers_shards(void)
{
    pthread_once(&once, create_shards);
    return nshards;
}

void np__timers_set_kick(void (*kick)(int64_t when))
{
    atomic_store(&kick_hook, kick);
}

/* ---- heap, under the shard lock ------------------------------------------ */

/* Under s->lock: a timer armed (+1) or disarmed (-1). */
static inline void count_pending(shard *s, int64_t d)
{
    atomic_store_explicit(&s->pending, atomic_load_explicit(&s->pending, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

static inline void place(shard *s, uint32_t i, np__timer *t)
{
    s->heap[i] = t;
    t->heap_at = i;
}

static void sift_up(shard *s, uint32_t i)
{
    np__timer *t = s->heap[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 4;
        if (s->heap[p]->key <= t->key)
            break;
        place(s, i, s->heap[p]);
        i = p;
    }
    place(s, i, t);
}

static void sift_down(shard *s, uint32_t i)
{
    np__timer *t = s->heap[i];
    for (;;) {
        uint32_t c = 4 * i + 1;
        if (c >= s->len)
            break;
        uint32_t best = c;
        uint32_t end = c + 4 < s->len ? c + 4 : s->len;
        for (uint32_t j = c + 1; j < end; j++)
            if (s->heap[j]->key < s->heap[best]->key)
                best = j;
        if (t->key <= s->heap[best]->key)
            break;
        place(s, i, s->heap[best]);
        i = best;
    }
    place(s, i, t);
}

static void heap_remove(shard *s, np__timer *t)
{
    uint32_t i = t->heap_at;
    np__assert(i < s->len && s->heap[i] == t);
    t->heap_at = NP__TIMER_NOWHERE;
    np__timer *last = s->heap[--s->len];
    if (i == s->len)
        return;
    place(s, i, last);
    if (i > 0 && s->heap[(i - 1) / 4]->key > last->key)
        sift_up(s, i);
    else
        sift_down(s, i);
}

static inline _Atomic int64_t *next_of(const shard *s)
{
    return &shard_next[s - shards];
}

/* Only a change is stored: the line is shared by all shards and read by
 * every worker, and most heap operations leave the top where it was. The
 * Dekker handshake with a blocking poller (netpoll_driver.c) does not need
 * the store either: a poller that read the old value already blocks until
 * that same time. */
static void publish_next(shard *s)
{
    int64_t next = s->len ? s->heap[0]->key : INT64_MAX;
    if (atomic_load_explicit(next_of(s), memory_order_relaxed) != next)
        atomic_store(next_of(s), next);
}

/* ---- timers --------------------------------------------------------------- */

int np__timer_init(np__timer *t, uint32_t hint)
{
    pthread_once(&once, create_shards);
    *t = (np__timer){ .shard = hint % nshards, .heap_at = NP__TIMER_NOWHERE };
    shard *s = &shards[t->shard];
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (s->bound == s->cap) {
        uint32_t ncap = s->cap ? s->cap * 2 : 64;
        np__timer **h = realloc(s->heap, (size_t)ncap * sizeof *h);
        if (!h) {
            rc = -ENOMEM;
            goto out;
        }
        s->heap = h;
        s->cap = ncap;
    }
    s->bound++;
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void np__timer_destroy(np__timer *t)
{
    shard *s = &shards[t->shard];
    pthread_mutex_lock(&s->lock);
    /* A stopped timer may still sit in the heap (lazy stop): take it out. */
    if (t->heap_at != NP__TIMER_NOWHERE) {
        np__assert(t->when == 0);
        heap_remove(s, t);
        publish_next(s);
    }
    np__assert(s->bound > 0);
    s->bound--;
    pthread_mutex_unlock(&s->lock);
}

void np__timer_set(np__timer *t, int64_t when, np__timer_fn fn, void *arg, uintptr_t seq)
{
    np__assert(when > 0);
    shard *s = &shards[t->shard];
    bool earliest = false;
    pthread_mutex_lock(&s->lock);
    if (t->when == 0)
        count_pending(s, 1);
    t->fn = fn;
    t->arg = arg;
    t->seq = seq;
    t->when = when;
    if (t->heap_at == NP__TIMER_NOWHERE) {
        np__assert(s->len < s->cap); /* reserved at init */
        t->key = when;
        place(s, s->len++, t);
        sift_up(s, t->heap_at);
        earliest = t->heap_at == 0;
    } else if (when < t->key) {
        t->key = when;
        sift_up(s, t->heap_at);
        earliest = t->heap_at == 0;
    }
    /* else: moved later; the old key stays and is corrected when it surfaces. */
    if (earliest)
        publish_next(s);
    pthread_mutex_unlock(&s->lock);
    if (earliest) {
        void (*kick)(int64_t) = atomic_load(&kick_hook);
        if (kick)
            kick(when);
    }
}

bool np__timer_stop(np__timer *t)
{
    shard *s = &shards[t->shard];
    pthread_mutex_lock(&s->lock);
    bool pending = t->when != 0;
    if (pending)
        count_pending(s, -1);
    t->when = 0;
    /* Leave it in the heap unless it is on top, where it would cost the
     * poller a pointless wake-up. */
    if (t->heap_at == 0) {
        heap_remove(s, t);
        publish_next(s);
    }
    pthread_mutex_unlock(&s->lock);
    return pending;
}

static int64_t run_shard(shard *s, int64_t now, int *fired)
{
    int64_t next = atomic_load_explicit(next_of(s), memory_order_relaxed);
    if (next > now)
        return next;
    pthread_mutex_lock(&s->lock);
    while (s->len && s->heap[0]->key <= now) {
        np__timer *t = s->heap[0];
        if (t->when == 0) { /* stopped */
            heap_remove(s, t);
            continue;
        }
        if (t->when > now) { /* moved later: re-file at its real time */
            t->key = t->when;
            sift_down(s, 0);
            continue;
        }
        heap_remove(s, t);
        np__timer_fn fn = t->fn;
        void *arg = t->arg;
        uintptr_t seq = t->seq;
        t->when = 0;
        count_pending(s, -1);
        publish_next(s);
        pthread_mutex_unlock(&s->lock);
        fn(arg, seq); /* no lock held: it may take the descriptor's */
        (*fired)++;
        pthread_mutex_lock(&s->lock);
    }
    publish_next(s);
    next = s->len ? s->heap[0]->key : INT64_MAX;
    pthread_mutex_unlock(&s->lock);
    return next;
}

int64_t np__timers_run(int64_t now, int *fired)
{
    pthread_once(&once, create_shards);
    int64_t next = INT64_MAX;
    int count = 0;
    for (uint32_t i = 0; i < nshards; i++) {
        int64_t n = run_shard(&shards[i], now, &count);
        if (n < next)
            next = n;
    }
    if (fired)
        *fired = count;
    return next;
}

int64_t np__timers_run_due(int *fired)
{
    if (fired)
        *fired = 0;
    if (np__timers_next() == INT64_MAX)
        return INT64_MAX;
    return np__timers_run(np_now(), fired);
}

int64_t np__timers_pending(void)
{
    pthread_once(&once, create_shards);
    int64_t n = 0;
    for (uint32_t i = 0; i < nshards; i++)
        n += atomic_load_explicit(&shards[i].pending, memory_order_relaxed);
    return n;
}

int64_t np__timers_next(void)
{
    pthread_once(&once, create_shards);
    int64_t next = INT64_MAX;
    for (uint32_t i = 0; i < nshards; i++) {
        int64_t n = atomic_load(&shard_next[i]);
        if (n < next)
            next = n;
    }
    return next;
}
