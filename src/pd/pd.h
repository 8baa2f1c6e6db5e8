/* Poll descriptors: the seed's pollDesc in C.
 *
 * A pd is what a waiter parks on while its fd is not ready: one binary
 * semaphore per direction, the read and write deadlines with their timers,
 * and a summary word readable without the lock. Pds live in type-stable
 * memory (a cache that never returns it), because a poller may still hold a
 * pointer to one after it was closed.
 *
 * Usage, per I/O call (the fd layer does this):
 *     rc = np__pd_reset(pd, mode);           before trying the syscall
 *     loop: syscall; if EAGAIN: rc = np__pd_wait(pd, mode); retry if 0
 * and to close: np__pd_unblock(pd) (wakes both waiters with -ECANCELED),
 * then, once no call is inside a syscall or wait on it, np__pd_close(pd).
 */
#ifndef NP_PD_H
#define NP_PD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "poller/pollreg.h"
#include "pd/timer.h"
#include "pd/waiter.h"

enum { NP__PD_READ = 1, NP__PD_WRITE = 2, NP__PD_BOTH = 3 };

/* Summary bits (info). */
enum {
    NP__PD_CLOSING = 1u << 0,
    NP__PD_EVENT_ERR = 1u << 1,
    NP__PD_READ_EXPIRED = 1u << 2,
    NP__PD_WRITE_EXPIRED = 1u << 3,
    NP__PD_READ_HUP = 1u << 4, /* sticky: the read side ended or has urgent
                                * data (the event's hup): reads may stop short
                                * without emptying the socket */
};

typedef struct np__pd {
    np__pollreg reg;         /* first: the backend's registration (fd, tag) */
    _Atomic uint32_t info;   /* summary bits, see above */
    _Atomic uintptr_t rg;    /* read semaphore: NIL, READY, WAIT or waiter */
    _Atomic uintptr_t wg;    /* write semaphore */

    pthread_mutex_t lock;    /* guards everything below */
    bool closing;
    bool rt_armed, wt_armed; /* rt / wt in use (set, maybe fired already);
                              * when rd == wd > 0, rt serves both */
    uintptr_t rseq, wseq;    /* bumped to invalidate pending rt / wt */
    int64_t rd, wd;          /* deadlines: 0 none, -1 expired, else when */
    /* rd and wd as set (0 none, else the absolute time), readable without
     * the lock: a call that need not block compares them with the clock,
     * since the timer that marks a deadline expired may not have run yet
     * (its worker busy). */
    _Atomic int64_t rd_at, wd_at;
    np__timer rt, wt;

    /* Set for a pd that has no waiters of its own (np_wait_fd's): the
     * poller's reports go to notify(notify_arg, mode, err) instead of the
     * semaphores. Written before the fd is registered, read by the poller. */
    void (*_Atomic notify)(void *arg, int mode, bool err);
    void *_Atomic notify_arg;

    struct np__pd *next_free; /* in the cache */
} np__pd;

/* Allocates a pd for fd and registers fd with the poller. 0 or -errno.
 * fd < 0 makes a pd the poller never watches: deadlines, close and
 * np__pd_ready work as usual (tests use it to go past the fd limit). */
int np__pd_open(int fd, np__pd **out);

/* As np__pd_open, with the poller's reports handed to notify instead of
 * the semaphores (mode: NP__POLL_READ / WRITE / HUP bits). notify runs on
 * the polling thread; np__pd_close returns only once it cannot run any more
 * for this pd. */
int np__pd_open_notify(int fd, void (*notify)(void *arg, int mode, bool err), void *arg,
                       np__pd **out);

/* Marks pd closing and wakes both waiters (they get -ECANCELED); stops its
 * timers. Once only. */
void np__pd_unblock(np__pd *pd);

/* Unregisters and frees pd. It must have been unblocked, and nothing may be
 * waiting on it. Returns only when no event for it can still be delivered. */
void np__pd_close(np__pd *pd);

/* Prepares a wait in mode (READ or WRITE): 0, or the error the next wait
 * would return at once (-ECANCELED, -ETIMEDOUT, -EIO). A deadline that has
 * passed gives -ETIMEDOUT here even if its timer has not fired yet: after
 * the deadline, I/O fails instead of proceeding (Go's rule). */
int np__pd_reset(np__pd *pd, int mode);

/* As np__pd_reset, but keeps a readiness the poller delivered since the
 * last wait: for a call that waits before it tries the syscall (np_read
 * after a short read), to which that readiness is news, not stale. */
int np__pd_check(np__pd *pd, int mode);

/* Whether the poller has reported the end of the read side (end of stream,
 * hang-up, error) or urgent data: a read may then stop short without
 * emptying the socket, and no further event may come. */
bool np__pd_read_ended(np__pd *pd);

/* Waits until pd is ready in mode. 0 (ready: retry the syscall),
 * -ECANCELED (closing), -ETIMEDOUT (the mode's deadline passed) or -EIO (the
 * poller reported an error that makes the fd unpollable; read mode only).
 * One waiter per mode at a time. */
int np__pd_wait(np__pd *pd, int mode);

/* np__pd_wait for a call np_dump names: site (waiter.h) is one of the
 * caller's static descriptors, its `on` NP__ON_PD_READ or _WRITE. */
int np__pd_wait_in(np__pd *pd, int mode, const np__park_site *site);

/* Sets the deadline for mode (READ, WRITE or BOTH): absolute monotonic ns;
 * 0 clears; any other value at or before now is already expired (pending and
 * later waits fail with -ETIMEDOUT until the deadline is moved). Applies to a
 * waiter already parked. No-op once pd is closing. */
void np__pd_set_deadline(np__pd *pd, int64_t deadline, int mode);

/* The poller says pd is ready in mode (NP__POLL_READ/WRITE bits); err: the
 * fd cannot be polled any more. Readies the waiters. */
void np__pd_ready(np__pd *pd, int mode, bool err); /* mode may carry NP__POLL_HUP */

/* Waiters currently parked on any pd (Go's netpollWaiters): a scheduler with
 * nothing else to do blocks in the poller only if this or a timer says an
 * event can come. */
uint32_t np__pd_waiters(void);

#endif
