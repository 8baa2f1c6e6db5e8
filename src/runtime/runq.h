/* A worker's local run queue: a bounded ring with one producer (the owning
 * worker) and many consumers (the owner, and thieves taking half), as Go's
 * runq. head is advanced by CAS by any consumer; tail is written only by the
 * owner. Slots are atomics because a thief may read a slot the owner is
 * about to reuse; the thief's CAS on head then fails and it retries.
 */
#ifndef NP_RUNQ_H
#define NP_RUNQ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime/task.h"

#define NP__RUNQ_SIZE 256u

typedef struct np__runq {
    _Atomic uint32_t head;
    _Atomic uint32_t tail;
    np__task *_Atomic slot[NP__RUNQ_SIZE];
} np__runq;

static inline uint32_t np__runq_len(np__runq *q)
{
    uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
    return t - h;
}

/* Owner only. False when full. */
static inline bool np__runq_put(np__runq *q, np__task *t)
{
    uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    uint32_t tl = atomic_load_explicit(&q->tail, memory_order_relaxed);
    if (tl - h >= NP__RUNQ_SIZE)
        return false;
    atomic_store_explicit(&q->slot[tl % NP__RUNQ_SIZE], t, memory_order_relaxed);
    atomic_store_explicit(&q->tail, tl + 1, memory_order_release);
    return true;
}

/* Owner only: the task i places behind the head, or NULL, as a hint for
 * prefetching: a thief may take it meanwhile. Task structs stay allocated
 * while the runtime runs, so a stale answer is still a task. */
static inline np__task *np__runq_peek(np__runq *q, uint32_t i)
{
    uint32_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    uint32_t tl = atomic_load_explicit(&q->tail, memory_order_relaxed);
    if (tl - h <= i)
        return NULL;
    return atomic_load_explicit(&q->slot[(h + i) % NP__RUNQ_SIZE], memory_order_relaxed);
}

/* Owner only. */
static inline np__task *np__runq_get(np__runq *q)
{
    for (;;) {
        uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
        uint32_t tl = atomic_load_explicit(&q->tail, memory_order_relaxed);
        if (tl == h)
            return NULL;
        np__task *t = atomic_load_explicit(&q->slot[h % NP__RUNQ_SIZE], memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&q->head, &h, h + 1, memory_order_release,
                                                  memory_order_relaxed))
            return t;
    }
}

/* A thief (not the owner): moves half of victim's queue into the thief's
 * own (empty) queue. Returns how many it took. */
static inline uint32_t np__runq_steal(np__runq *victim, np__runq *mine)
{
    for (;;) {
        uint32_t h = atomic_load_explicit(&victim->head, memory_order_acquire);
        uint32_t tl = atomic_load_explicit(&victim->tail, memory_order_acquire);
        uint32_t n = tl - h;
        n -= n / 2;
        if (n == 0)
            return 0;
        if (n > NP__RUNQ_SIZE / 2)
            continue; /* inconsistent snapshot: the owner moved on */
        uint32_t mt = atomic_load_explicit(&mine->tail, memory_order_relaxed);
        for (uint32_t i = 0; i < n; i++) {
            np__task *t = atomic_load_explicit(&victim->slot[(h + i) % NP__RUNQ_SIZE],
                                               memory_order_relaxed);
            atomic_store_explicit(&mine->slot[(mt + i) % NP__RUNQ_SIZE], t, memory_order_relaxed);
        }
        if (atomic_compare_exchange_weak_explicit(&victim->head, &h, h + n, memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            atomic_store_explicit(&mine->tail, mt + n, memory_order_release);
            return n;
        }
    }
}

#endif
