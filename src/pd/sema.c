/* Semaphores and one-shot events on top of waiters. See sema.h. */
#include <stddef.h>

#include "pd/sema.h"

#include "base/cpu_relax.h"
#include "base/np_assert.h"

struct np__sema_node {
    np__waiter *w;
    np__sema_node *next;
    _Atomic int granted;
};

static void spin_lock(_Atomic int *l)
{
    for (;;) {
        if (!atomic_exchange_explicit(l, 1, memory_order_acquire))
            return;
        while (atomic_load_explicit(l, memory_order_relaxed))
            np__cpu_relax();
    }
}

static void spin_unlock(_Atomic int *l)
{
    atomic_store_explicit(l, 0, memory_order_release);
}

void np__sema_init(np__sema *s)
{
    atomic_init(&s->lock, 0);
    s->count = 0;
    s->head = s->tail = NULL;
}

/* Runs once the waiter is parkable: only then may a release find it. */
static bool sema_commit(np__waiter *self, void *arg)
{
    (void)self;
    np__sema *s = arg;
    spin_unlock(&s->lock);
    return true;
}

void np__sema_acquire(np__sema *s, const np__park_site *site, const void *obj)
{
    spin_lock(&s->lock);
    if (s->count > 0) {
        s->count--;
        spin_unlock(&s->lock);
        return;
    }
    np__sema_node n = { .w = np__waiter_current() };
    if (s->tail)
        s->tail->next = &n;
    else
        s->head = &n;
    s->tail = &n;
    /* The lock is dropped by the commit, after the switch: a release can
     * then find us queued and ready us exactly once. */
    np__waiter_park_in(n.w, sema_commit, s, 0, site, obj);
    np__assert(atomic_load(&n.granted));
}

void np__sema_release(np__sema *s)
{
    spin_lock(&s->lock);
    np__sema_node *n = s->head;
    if (!n) {
        s->count++;
        spin_unlock(&s->lock);
        return;
    }
    s->head = n->next;
    if (!s->head)
        s->tail = NULL;
    np__waiter *w = n->w;
    atomic_store(&n->granted, 1);
    spin_unlock(&s->lock);
    np__waiter_ready(w); /* n may be gone after this: it lived on w's stack */
}

#define OS_IDLE ((uintptr_t)0)
#define OS_FIRED ((uintptr_t)1)
#define OS_ARMED ((uintptr_t)2)

void np__oneshot_arm(np__oneshot *o)
{
    atomic_store(&o->state, OS_ARMED);
}

static bool oneshot_commit(np__waiter *self, void *arg)
{
    np__oneshot *o = arg;
    uintptr_t expected = OS_ARMED;
    return atomic_compare_exchange_strong(&o->state, &expected, (uintptr_t)self);
}

void np__oneshot_wait(np__oneshot *o, const np__park_site *site, const void *obj)
{
    if (atomic_load(&o->state) != OS_FIRED)
        np__waiter_park_in(np__waiter_current(), oneshot_commit, o, 0, site, obj);
    np__assert(atomic_load(&o->state) == OS_FIRED);
    atomic_store(&o->state, OS_IDLE);
}

void np__oneshot_fire(np__oneshot *o)
{
    uintptr_t old = atomic_exchange(&o->state, OS_FIRED);
    if (old > OS_ARMED)
        np__waiter_ready((np__waiter *)old);
}
