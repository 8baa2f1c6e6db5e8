/* Timers: deadlines now, sleeping tasks later.
 *
 * Timers live in shards, each a 4-ary min-heap under its own lock; a timer is
 * bound to one shard for life (np__timer_init), so threads working on
 * different descriptors rarely share a lock. Each shard reserves heap room
 * for every timer bound to it, so set, reset and stop never allocate.
 *
 * Moving a timer later (a deadline pushed forward before every read, the
 * common case) does not touch the heap: the timer keeps its old heap key and
 * only `when` changes; when the key comes due the timer is re-filed at its
 * real time. Moving it earlier sifts it up, O(log n). Stop is lazy too: the
 * entry is dropped when it surfaces. A timer therefore never fires early;
 * it may cost the poller one early wake-up.
 *
 * Callbacks run with no timer lock held, so a callback may take other locks
 * (a descriptor's) that are held around np__timer_set — the lock order is
 * always "descriptor, then shard", never the reverse (Go issue 35532). A
 * callback can race with a reset of its timer; callers that care carry a
 * sequence number (seq) and check it under their own lock, as the poll
 * descriptor does.
 *
 * When a set makes a shard's earliest timer earlier, the kick hook runs with
 * the new time, so a poller blocked past it can be woken.
 */
#ifndef NP_TIMER_H
#define NP_TIMER_H

#include <stdbool.h>
#include <stdint.h>

typedef void (*np__timer_fn)(void *arg, uintptr_t seq);

typedef struct np__timer {
    /* All fields below `shard` are guarded by the shard's lock. */
    uint32_t shard;   /* fixed at init */
    uint32_t heap_at; /* index in the shard's heap, NP__TIMER_NOWHERE if out */
    int64_t when;     /* when to fire; 0 when stopped or fired */
    int64_t key;      /* heap position; key <= when whenever both are set */
    np__timer_fn fn;
    void *arg;
    uintptr_t seq;    /* handed to fn as it was when the timer was set */
} np__timer;

#define NP__TIMER_NOWHERE UINT32_MAX

/* Binds t to a shard (hint spreads timers; any value is fine) and reserves
 * its heap slot. 0 or -ENOMEM. */
int np__timer_init(np__timer *t, uint32_t hint);

/* Releases the reservation. t must not be pending and no callback for it
 * may be running. */
void np__timer_destroy(np__timer *t);

/* Arms (or re-arms) t to call fn(arg, seq) once the clock reaches `when`
 * (> 0). Never allocates. */
void np__timer_set(np__timer *t, int64_t when, np__timer_fn fn, void *arg, uintptr_t seq);

/* Disarms t. Returns whether it was pending. A callback already running is
 * not stopped. */
bool np__timer_stop(np__timer *t);

/* Runs the callbacks of every timer due at `now`, and returns the earliest
 * time any pending timer may come due (INT64_MAX if none). If fired is not
 * NULL it gets the number of callbacks run. Any thread; shards are processed
 * under their own locks. */
int64_t np__timers_run(int64_t now, int *fired);

/* np__timers_run(np_now(), fired), but with no clock read at all when no
 * timer is pending (the clock costs more than the rest here). */
int64_t np__timers_run_due(int *fired);

/* The earliest time any pending timer may come due, without running any:
 * lock-free, a lower bound (never later than the real next deadline). */
int64_t np__timers_next(void);

/* Timers set and not yet fired or stopped, all shards (np_stats). */
int64_t np__timers_pending(void);

/* The hook run after a set moves a shard's earliest time earlier. */
void np__timers_set_kick(void (*kick)(int64_t when));

/* Number of shards (fixed for the life of the process). */
uint32_t np__timers_shards(void);

#endif
