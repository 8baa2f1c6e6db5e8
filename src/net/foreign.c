/* Foreign descriptors: np_wait_fd (wait on a descriptor that stays the
 * caller's) and np_conn_from_fd (adopt one as a connection).
 *
 * np_wait_fd registers a duplicate of the descriptor, not the descriptor
 * itself, for the length of the wait:
 *   - the duplicate's number is ours alone, so removing the registration
 *     can never remove another's (epoll names registrations by number, and
 *     the caller may close and reuse its number at any time);
 *   - several waits on one descriptor are several duplicates, each with its
 *     own registration (epoll would refuse a second one of the same
 *     number, and so do netpoll's own connections);
 *   - the caller's descriptor is never closed, and its flags (O_NONBLOCK)
 *     are left alone: they belong to the open file, which we do not change.
 * The cost is a dup, a registration and its removal per wait: see
 * bench/waitfd for what that costs beside raw epoll.
 *
 * The duplicate keeps the file open, so the caller closing its descriptor
 * does not end the wait by itself. The wait therefore looks, at growing
 * intervals (10 ms to 1 s), whether the caller's descriptor still names
 * the same file; once it does not (closed, or reused for another file) the
 * wait ends with -EBADF. Readiness is reported only after the same check
 * (one fstat). So it never hangs forever on a closed descriptor, and never
 * reports another file's readiness.
 *
 * The pd of the duplicate has no waiters of its own: the poller's reports go
 * to fdwait_notify, which completes the wait through the coordination
 * layer's claim protocol (sync/wait.h), racing the deadline timer cleanly.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/sys.h"
#include "net/fd.h"
#include "netpoll.h"
#include "pd/pd.h"
#include "poller/poller.h"
#include "runtime/scheduler.h"
#include "sync/wait.h"

#define CHECK_FIRST_NS (10 * NP_MILLISECOND)
#define CHECK_MAX_NS NP_SECOND

typedef struct fdwait {
    _Atomic int lock; /* guards got and node */
    int want;         /* NP_READABLE | NP_WRITABLE */
    int got;          /* what the poller has reported, as NP_ bits */
    np__wnode *node;  /* the parked wait, or NULL */
} fdwait;

/* The poller's report for the duplicate (on the polling thread). */
static void fdwait_notify(void *arg, int mode, bool err)
{
    fdwait *w = arg;
    int ev = 0;
    if (mode & (NP__POLL_READ | NP__POLL_HUP))
        ev |= NP_READABLE;
    if (mode & NP__POLL_WRITE)
        ev |= NP_WRITABLE;
    if (err)
        ev |= NP_READABLE | NP_WRITABLE; /* the next syscall says what */
    np__wrec *ready = NULL;
    bool parked = false;
    np__spin_lock(&w->lock);
    w->got |= ev;
    if (w->node && (w->got & w->want) && np__wnode_claim(w->node, &parked)) {
        ready = np__wnode_done(w->node, 0);
        w->node = NULL;
    }
    np__spin_unlock(&w->lock);
    if (ready && parked)
        np__wait_ready(ready);
}

/* Whether fd still names the file whose identity is in `was`. */
static bool same_file(int fd, const struct stat *was)
{
    struct stat now;
    return NP__SYS(fstat(fd, &now)) == 0 && now.st_dev == was->st_dev &&
           now.st_ino == was->st_ino;
}

/* Parks until the poller reports what w wants, the deadline, or the
 * caller's descriptor stops naming the file. */
static int wait_reported(fdwait *w, int fd, const struct stat *file, int64_t deadline)
{
    int64_t interval = CHECK_FIRST_NS;
    for (;;) {
        np__wrec *r;
        int rc = np__wait_begin(&r);
        if (rc < 0)
            return rc;
        np__wnode n = { .rec = r, .seq = np__wait_seq(r) };
        np__spin_lock(&w->lock);
        if (w->got & w->want) {
            np__spin_unlock(&w->lock);
            return w->got & w->want;
        }
        if (deadline != 0 && deadline <= np_now()) {
            np__spin_unlock(&w->lock);
            return -ETIMEDOUT;
        }
        w->node = &n;
        int64_t check = np__add_sat(np_now(), interval);
        np__wait_arm(r, deadline != 0 && deadline < check ? deadline : check);
        if (np__wait_park(r, np__spin_unlock_cb, &w->lock) == NP__W_DONE) {
            np__spin_lock(&w->lock);
            int got = w->got & w->want;
            np__spin_unlock(&w->lock);
            return got;
        }
        np__spin_lock(&w->lock);
        if (w->node == &n)
            w->node = NULL;
        np__spin_unlock(&w->lock);
        if (!same_file(fd, file))
            return -EBADF; /* closed by its owner, or the number reused */
        interval = interval * 2 > CHECK_MAX_NS ? CHECK_MAX_NS : interval * 2;
    }
}

int np_wait_fd(int fd, int events, int64_t deadline)
{
    if (fd < 0)
        return -EBADF;
    if (events == 0 || (events & ~(NP_READABLE | NP_WRITABLE)))
        return -EINVAL;
    if (np__no_runtime())
        return -ESRCH;
    int dup = NP__SYS(fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (dup < 0)
        return dup == -EBADF ? -EBADF : dup;
    struct stat st;
    int rc = NP__SYS(fstat(dup, &st));
    if (rc == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode))) {
        close(dup);
        return events; /* never blocks: ready at once, as poll(2) says */
    }
    fdwait w = { .want = events };
    np__pd *pd = NULL;
    if (rc == 0)
        rc = np__pd_open_notify(dup, fdwait_notify, &w, &pd);
    if (rc < 0) {
        close(dup);
        return rc == -EPERM ? events : rc; /* EPERM: the poller cannot watch it */
    }
    /* Level-triggered backends watch what is armed; edge-triggered ones
     * report the current state at registration. */
    int modes = ((events & NP_READABLE) ? NP__POLL_READ : 0) |
                ((events & NP_WRITABLE) ? NP__POLL_WRITE : 0);
    rc = np__poller_arm(&pd->reg, modes);
    if (rc == 0)
        rc = wait_reported(&w, fd, &st, deadline);
    /* The readiness is the file's we watched; report it only if fd still
     * names that file (the caller may have closed it and reused the number
     * meanwhile): never another descriptor's readiness. */
    if (rc > 0 && !same_file(fd, &st))
        rc = -EBADF;
    np__pd_unblock(pd);
    np__pd_close(pd); /* after this, fdwait_notify cannot run for it */
    close(dup);
    return rc;
}

int np_conn_from_fd(np_conn *out, int fd)
{
    if (!out)
        return -EINVAL;
    out->id = 0;
    if (fd < 0)
        return -EBADF;
    if (np__no_runtime())
        return -ESRCH;
    int fl = NP__SYS(fcntl(fd, F_GETFL));
    if (fl < 0)
        return fl;
    struct stat st;
    int rc = NP__SYS(fstat(fd, &st));
    if (rc < 0)
        return rc;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode))
        return -EINVAL; /* always "ready": nothing to wait for */
    int sotype = 0, family = AF_UNSPEC;
    if (S_ISSOCK(st.st_mode)) {
        socklen_t l = sizeof sotype;
        if (NP__SYS(getsockopt(fd, SOL_SOCKET, SO_TYPE, &sotype, &l)) < 0)
            return -EINVAL;
        l = sizeof family;
        if (NP__SYS(getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &l)) < 0)
            return -EINVAL;
        if (sotype == SOCK_SEQPACKET)
            sotype = SOCK_DGRAM; /* message at a time, as a datagram */
        else if (sotype != SOCK_STREAM && sotype != SOCK_DGRAM)
            return -EINVAL;
    }
    if (!(fl & O_NONBLOCK) && (rc = NP__SYS(fcntl(fd, F_SETFL, fl | O_NONBLOCK))) < 0)
        return rc;
    np__fd *f;
    uint64_t id;
    rc = np__fd_new_full(fd, NP__FD_CONN, family, sotype, NULL, &f, &id);
    if (rc < 0) {
        if (!(fl & O_NONBLOCK))
            fcntl(fd, F_SETFL, fl); /* not ours after all: as it was */
        return rc == -EPERM ? -EINVAL : rc;
    }
    np__fd_decref(f);
    out->id = id;
    return 0;
}
