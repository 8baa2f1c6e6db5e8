/* Waiters: what parks on a poll descriptor's semaphore or a timer.
 *
 * The poll descriptor layer knows one operation on other waiters, ready(w):
 * "the thing you parked for happened (or was cancelled); run again". Parking
 * is done by the waiter itself, through its own park(), which takes a commit
 * callback. The commit decides, atomically with the semaphore, whether to
 * really sleep; it runs once the waiter can safely be readied (for a thread:
 * before it sleeps on its futex; for a task: after it has switched away, so
 * that a ready on another thread cannot run it on two stacks at once).
 *
 * Kinds:
 *   thread  a plain thread parked on a futex (waiter_thread.c)
 *   task    a task parked in the scheduler (with the scheduler)
 *
 * A waiter's pointer value is at least 4-byte aligned, so it never collides
 * with the semaphore's NIL/READY/WAIT values (0, 1, 2).
 */
#ifndef NP_WAITER_H
#define NP_WAITER_H

#include <stdbool.h>

typedef struct np__waiter np__waiter;

/* Runs once the waiter is safely parkable; returns false to abandon the park
 * (the waiter then returns from park at once). */
typedef bool (*np__commit_fn)(np__waiter *self, void *arg);

/* Park flags. STACK_FREE: for as long as the waiter is parked, nothing
 * refers into its stack (the wait's state lives in heap objects such as the
 * poll descriptor or the task struct), so a task's stack may be copied out
 * and its memory released while it waits (runtime/stack_sweep.c). */
#define NP__PARK_STACK_FREE 1u

/* What a park waits in, for np_dump and the gdb script (runtime/dump.c,
 * tools/gdb/netpoll.py): one static descriptor per blocking call, handed to
 * the park with the object waited on. A task keeps both while parked (two
 * stores); a thread waiter ignores them. `on` says what the object is, and
 * so where the dump finds the wait's details (fd, deadline, whether the
 * task is still parked or has been readied). */
enum {
    NP__ON_NONE = 0,    /* obj unused (a select's channels are several) */
    NP__ON_PD_READ,     /* obj: np__pd; deadline rd_at; parked while rg == waiter */
    NP__ON_PD_WRITE,    /* obj: np__pd; deadline wd_at; parked while wg == waiter */
    NP__ON_WREC,        /* obj: the sync object; deadline and state in t->wrec */
    NP__ON_SLEEP,       /* obj unused; the task's sleep timer */
    NP__ON_FD_WREC,     /* obj: a descriptor number; details in t->wrec */
    NP__ON_FUNC,        /* obj: a function, named in the dump */
    NP__ON_OTHER,       /* obj: printed as an address */
};
typedef struct np__park_site {
    const char *call;   /* the public call that parks: "np_read", ... */
    const char *what;   /* what obj is: "conn", "chan", "mutex", ... */
    unsigned char on;   /* NP__ON_* */
} np__park_site;

typedef struct np__waiter_ops {
    void (*ready)(np__waiter *w);
    void (*park)(np__waiter *w, np__commit_fn commit, void *arg, unsigned flags,
                 const np__park_site *site, const void *obj);
} np__waiter_ops;

struct np__waiter {
    const np__waiter_ops *ops;
};

/* The waiter for the code running now: the current task's, or else the
 * calling thread's own. Not inlined: tasks migrate between threads, and a
 * cached thread-local address would name the wrong thread's waiter.
 * Declared here, defined by the runtime (scheduler.c), which alone knows
 * whether a task is running: this layer never includes the runtime's
 * headers. */
np__waiter *np__waiter_current(void);

/* The calling thread's own waiter (waiter_thread.c). Not inlined, as above. */
np__waiter *np__thread_waiter_self(void);

static inline void np__waiter_ready(np__waiter *w)
{
    w->ops->ready(w);
}

static inline void np__waiter_park_in(np__waiter *w, np__commit_fn commit, void *arg,
                                      unsigned flags, const np__park_site *site,
                                      const void *obj)
{
    w->ops->park(w, commit, arg, flags, site, obj);
}

/* A park with no descriptor (tests, benchmarks): np_dump says "parked". */
static inline void np__waiter_park(np__waiter *w, np__commit_fn commit, void *arg,
                                   unsigned flags)
{
    w->ops->park(w, commit, arg, flags, NULL, NULL);
}

/* Run by a plain thread once it has committed to a park, before it sleeps:
 * the runtime sets it so that a worker looks at timers and the network for
 * the thread (a task's own worker does that when it goes idle; a plain
 * thread has none). NULL when no runtime runs. */
extern void (*_Atomic np__thread_park_hook)(void);

/* Thread waiters: statistics for tests. Parks that committed and readies
 * received by the calling thread's waiter since it was created. */
void np__thread_waiter_counts(unsigned long *parks, unsigned long *readies);

#endif
