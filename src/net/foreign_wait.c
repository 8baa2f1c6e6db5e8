/* np_wait_fd: waiting on a descriptor that stays the caller's.
 *
 * The poller watches a duplicate of the descriptor, kept with its
 * registration in a cache between waits (foreign_cache.h): a task waiting
 * on one descriptor again and again pays for them once.
 *
 * One wait is one or more rounds, each:
 *   1. find fd's entry, or make one (dup, fstat, register);
 *   2. queue the wait on it, and take the bits of its `got` it wants;
 *   3. if it took some (or after a wake-up, or for a file the poller cannot
 *      watch): poll(fd, 0) on the caller's own descriptor. Ready: that is
 *      the answer, and it is the readiness of the file fd names now, never
 *      another's. Not ready: the edge behind `got` is spent, and any later
 *      one finds the wait queued;
 *   4. before parking, check that fd still names the entry's file. If not,
 *      the entry is retired; a wait that had not begun on it (the number
 *      was reused before the call) goes on with a new entry, one that had
 *      gets -EBADF;
 *   5. park until the poller's report, the deadline, or housekeeping
 *      finding fd closed or reused (its waits get -EBADF).
 * Nothing is lost between 2 and 5: got is cleared while the wait is
 * queued, so an edge harvested after that either wakes it or is in got for
 * the next round; and a level seen high in 3 goes back into got and to the
 * entry's other waits, which may have found got empty meanwhile.
 *
 * Plain threads wait here too, and np_run may end while one is parked: a
 * round (which uses the entry's dup and pd) runs between np__runtime_enter
 * and np__runtime_leave, so np_run's end, which closes every entry, waits
 * for it, and ends the parked waits with -ESRCH.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>

#include "base/clock.h"
#include "base/sys.h"
#include "net/fd.h"
#include "net/foreign_cache.h"
#include "netpoll.h"
#include "poller/poller.h"
#include "runtime/scheduler.h"
#include "sync/wait.h"

#define BOTH (NP_READABLE | NP_WRITABLE)
#define AGAIN 0 /* a round's "no answer yet" */

typedef np__fw_ent ent;

/* ---- checks on the caller's descriptor ------------------------------------------- */

/* poll(2) on fd now: the bits of want that are ready (an error or hang-up
 * counts as all of them), 0, or -EBADF if fd is not open. */
static int level(int fd, int want)
{
    struct pollfd p = { .fd = fd,
                        .events = (short)(((want & NP_READABLE) ? POLLIN : 0) |
                                          ((want & NP_WRITABLE) ? POLLOUT : 0)) };
    int n;
    while ((n = NP__SYS(poll(&p, 1, 0))) == -EINTR) {
    }
    if (n <= 0)
        return n;
    if (p.revents & POLLNVAL)
        return -EBADF;
    if (p.revents & (POLLERR | POLLHUP))
        return want;
    return (((p.revents & POLLIN) ? NP_READABLE : 0) | ((p.revents & POLLOUT) ? NP_WRITABLE : 0)) &
           want;
}

/* ---- one wait -------------------------------------------------------------------- */

typedef struct call {
    int fd, want;
    int64_t deadline;
    ent *e;
    bool inside;       /* between np__runtime_enter and leave */
    bool began;        /* fd was seen naming e's file: losing it is -EBADF */
    bool need_id;      /* check fd against e before parking */
    bool look;         /* poll fd even if got has nothing new */
    bool drop;         /* e was retired while we were parked */
} call;

/* Takes n off e before the wait parks. If a waker claimed it meanwhile,
 * waits for it to finish with n (its claim is dropped: the caller has its
 * answer). bits: a readiness seen, for got and e's other waits. */
static void cancel(ent *e, np__wnode *n, np__wrec *r, int bits)
{
    if (!np__fw_deliver(e, bits > 0 ? bits : 0, n))
        np__wait_park(r, NULL, NULL, NULL, NULL); /* not OPEN: returns once the waker is done */
}

/* Lets go of a retired e (inside the runtime). Before the wait began on
 * it, fd's number was reused (or closed) before the call: look again (a
 * new entry, or -EBADF from the dup). After: -EBADF. */
static int drop(call *c)
{
    np__fw_put(c->e, true);
    c->e = NULL;
    c->drop = false;
    return c->began ? -EBADF : AGAIN;
}

/* Parks on e (n queued, e->lock held, inside the runtime): the answer, or
 * AGAIN for another round. */
static int park(call *c, np__wnode *n, np__wrec *r)
{
    ent *e = c->e;
    c->inside = false;
    np__runtime_leave(); /* np_run's end may close e now: it wakes us first */
    static const np__park_site site = { "np_wait_fd", "fd", NP__ON_FD_WREC };
    if (np__wait_park(r, np__spin_unlock_cb, &e->lock, &site, (const void *)(intptr_t)c->fd) ==
        NP__W_DONE) {
        if (n->result == NP__FW_RETIRED) {
            c->drop = true;
            return c->began ? -EBADF : AGAIN;
        }
        if (n->result < 0)
            return n->result; /* NP__FW_STOPPED */
        c->look = c->need_id = true; /* confirm on fd itself */
        return AGAIN;
    }
    np__spin_lock(&e->lock); /* the deadline */
    np__wq_unlink(&e->waiters, n);
    np__spin_unlock(&e->lock);
    return -ETIMEDOUT;
}

/* One round, inside the runtime (see the top of the file): the answer, or
 * AGAIN. */
static int round_in(call *c)
{
    int rc;
    if (c->drop && (rc = drop(c)) != AGAIN)
        return rc;
    if (!c->e) {
        bool fresh;
        if ((rc = np__fw_acquire(c->fd, &c->e, &fresh)) < 0)
            return rc;
        c->need_id = !fresh;
        c->look |= fresh; /* its level is unknown: poll rather than park */
        c->began |= fresh;
    }
    ent *e = c->e;
    if (atomic_load_explicit(&e->closed, memory_order_acquire))
        return NP__FW_STOPPED; /* a plain thread across np_run's end */
    np__wrec *r;
    if ((rc = np__wait_begin(&r)) < 0)
        return rc;
    np__wnode n = { .rec = r, .seq = np__wait_seq(r), .index = c->want };
    np__spin_lock(&e->lock);
    if (e->dead) { /* retired under us */
        np__spin_unlock(&e->lock);
        return drop(c);
    }
    np__wq_push(&e->waiters, &n);
    int pending = e->got & c->want;
    e->got &= ~pending; /* we look now; a later edge puts them back */
    np__spin_unlock(&e->lock);

    if (pending || c->look || !e->pd) {
        c->look = false;
        int lv = level(c->fd, c->want);
        if (lv != 0) {
            cancel(e, &n, r, lv);
            if (lv == -EBADF)
                np__fw_retire(e); /* closed: its file is nobody's fd any more */
            return lv;
        }
    }
    if (c->need_id) {
        if (!np__fw_names_file(c->fd, e, c->want)) {
            cancel(e, &n, r, 0);
            np__fw_retire(e);
            return drop(c);
        }
        c->need_id = false;
        c->began = true;
    }
    if (!e->pd) { /* the same unwatchable file, somehow not ready: as before */
        cancel(e, &n, r, 0);
        return c->want;
    }
    if (np__deadline_past(c->deadline)) {
        cancel(e, &n, r, 0);
        return -ETIMEDOUT;
    }
    (void)np__poller_arm(&e->pd->reg, ((c->want & NP_READABLE) ? NP__POLL_READ : 0) |
                                          ((c->want & NP_WRITABLE) ? NP__POLL_WRITE : 0));
    np__fw_watch();
    np__wait_arm(r, c->deadline);
    np__spin_lock(&e->lock);
    return park(c, &n, r); /* leaves the runtime */
}

int np_wait_fd(int fd, int events, int64_t deadline)
{
    if (fd < 0)
        return -EBADF;
    if (events == 0 || (events & ~BOTH))
        return -EINVAL;
    if (np__no_runtime())
        return -ESRCH;
    call c = { .fd = fd, .want = events, .deadline = deadline };
    int rc;
    for (;;) {
        if (!(c.inside = np__runtime_enter())) {
            rc = -ESRCH; /* np_run ended while we were parked */
            break;
        }
        if ((rc = round_in(&c)) != AGAIN)
            break;
        if (c.inside)
            np__runtime_leave();
    }
    if (c.e) {
        if (!c.inside)
            c.inside = np__runtime_enter();
        np__fw_put(c.e, c.inside); /* outside: np_run ended, and closed it */
    }
    if (c.inside)
        np__runtime_leave();
    return rc;
}
