/* Semaphores and one-shot events for tasks and threads, built on waiters.
 *
 * np__sema: a counting semaphore with a FIFO of parked waiters, for the rare
 * slow paths (a second reader queued behind the first on one connection).
 * np__oneshot: one event, one waiter: "arm, hand off work, wait", fired
 * from any thread (the resolver thread's answer).
 */
#ifndef NP_SEMA_H
#define NP_SEMA_H

#include <stdatomic.h>
#include <stdint.h>

#include "pd/waiter.h"

typedef struct np__sema_node np__sema_node;

typedef struct np__sema {
    /* A spinlock, not a mutex: it is released by the park commit, after
     * the switch, in another context of the same thread, which a mutex's
     * ownership rules (and ThreadSanitizer) do not allow. Held for a few
     * instructions, or across one switch. */
    _Atomic int lock;
    uint32_t count;
    np__sema_node *head, *tail;
} np__sema;

void np__sema_init(np__sema *s);
/* Parks the caller while count is 0 (site, obj: what for, see waiter.h). */
void np__sema_acquire(np__sema *s, const np__park_site *site, const void *obj);
void np__sema_release(np__sema *s); /* wakes the first waiter, or count++ */

typedef struct np__oneshot {
    _Atomic uintptr_t state; /* 0 idle, 1 fired, 2 armed, or the waiter */
} np__oneshot;

void np__oneshot_arm(np__oneshot *o);
void np__oneshot_wait(np__oneshot *o, const np__park_site *site, const void *obj); /* returns once fired */
void np__oneshot_fire(np__oneshot *o); /* any thread, once per arm */

#endif
