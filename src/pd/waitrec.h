/* A waiter's record for coordination waits (src/sync/wait.h has the
 * protocol): the claim word that decides who ends a wait, and the deadline
 * timer. One per task (in its struct) and one per plain thread (from a
 * type-stable pool): it outlives every wait, so a timer that fires late
 * only ever touches a live record, whose sequence number turns it away.
 * Defined here, beside the waiters, so the runtime can embed it in the task
 * struct without knowing the sync layer. */
#ifndef NP_WAITREC_H
#define NP_WAITREC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "pd/timer.h"
#include "pd/waiter.h"

typedef struct np__wrec {
    _Atomic uint64_t claim;   /* seq << 3 | state (sync/wait.h) */
    np__waiter *waiter;       /* who to ready; set by each wait's begin */
    int winner;               /* the select case that won, set by the waker */
    bool timer_ready;         /* timer initialised (np__timer_init) */
    bool timer_armed;         /* armed by this wait: stop it after */
    np__timer timer;          /* the deadline, armed with the wait's seq */
    int64_t deadline;         /* of the wait in progress, 0 none (np_dump) */
    struct np__wrec *next_free; /* thread records: the pool */
} np__wrec;

/* For np_dump: the claim word of a wait still waiting (OPEN or PARKED in
 * sync/wait.h's encoding, which checks that it agrees). */
#define NP__WREC_WAITING(claim) (((claim) & 7u) <= 1u)

#endif
