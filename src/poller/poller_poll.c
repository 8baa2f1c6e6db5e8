/* Poller backend: poll(2). Level-triggered and armed per wait, as Go does on
 * AIX and Solaris; portable to any POSIX system.
 *
 * The interest set is a table indexed by fd: the registration's tag and the
 * directions currently armed. np__poller_arm adds directions; reporting a
 * direction disarms it (one-shot), so a socket that stays writable is not
 * reported on every call and the poll loop never spins on it.
 *
 * The polling thread works on its own snapshot (pollfd array plus the tag of
 * each entry), rebuilt when the table changed. Changing the table while a poll
 * is blocked interrupts it through the wake descriptor so it picks up the
 * change; that internal wake-up makes the poll loop again, not return. Events
 * are checked against the live table under the lock, so an entry closed (or
 * whose fd number was reused) after the snapshot was taken is dropped.
 *
 * User wakes: wake() sets `wake_pending` (0 -> 1 signals the descriptor). A
 * blocking poll consumes it: at entry, or when the descriptor fires. A
 * non-blocking poll may drain the descriptor but leaves the flag, so the next
 * blocking poll returns at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/sys.h"
#include "base/clock.h"
#include "netpoll.h"
#include "base/np_assert.h"
#include "poller/poller.h"
#include "poller/wakefd.h"

typedef struct slot {
    uint64_t tag;  /* registration's tag, NP__POLLREG_NO_TAG when free */
    short armed;   /* POLLIN / POLLOUT currently watched */
    int active_at; /* position in `active`, -1 when not armed */
} slot;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Under lock: */
static slot *slots;      /* indexed by fd */
static int nslots;
static int *active;      /* fds with armed != 0, dense */
static int nactive, active_cap;
static bool changed;     /* the snapshot is out of date */
static bool polling;     /* a poll() is (about to be) blocked on the snapshot */

/* Owned by the polling thread: */
static struct pollfd *snap;
static uint64_t *snap_tags;
static int nsnap, snap_cap;

static np__wakefd wakefd = { -1, -1 };
static _Atomic int wake_pending;
static bool inited;

const char *np_poller_name(void)
{
    return NP_POLLER_NAME;
}

int np__poller_init(void)
{
    np__assert(!inited);
    int rc = np__wakefd_open(&wakefd);
    if (rc < 0)
        return rc;
    atomic_store(&wake_pending, 0);
    changed = true;
    inited = true;
    return 0;
}

void np__poller_fini(void)
{
    np__assert(inited);
    np__assert(nactive == 0);
    np__wakefd_close(&wakefd);
    free(slots);
    free(active);
    free(snap);
    free(snap_tags);
    slots = NULL;
    active = NULL;
    snap = NULL;
    snap_tags = NULL;
    nslots = nactive = active_cap = nsnap = snap_cap = 0;
    inited = false;
}

/* Grows the table to hold fd. Under lock. */
static int ensure_slot(int fd)
{
    if (fd < nslots)
        return 0;
    int n = nslots ? nslots : 64;
    while (n <= fd)
        n *= 2;
    slot *s = realloc(slots, (size_t)n * sizeof *s);
    if (!s)
        return -ENOMEM;
    for (int i = nslots; i < n; i++)
        s[i] = (slot){ .tag = NP__POLLREG_NO_TAG, .armed = 0, .active_at = -1 };
    slots = s;
    nslots = n;
    return 0;
}

/* Under lock. */
static int activate(int fd)
{
    if (slots[fd].active_at >= 0)
        return 0;
    if (nactive == active_cap) {
        int n = active_cap ? active_cap * 2 : 64;
        int *a = realloc(active, (size_t)n * sizeof *a);
        if (!a)
            return -ENOMEM;
        active = a;
        active_cap = n;
    }
    slots[fd].active_at = nactive;
    active[nactive++] = fd;
    return 0;
}

/* Under lock. */
static void deactivate(int fd)
{
    int at = slots[fd].active_at;
    if (at < 0)
        return;
    int last = active[--nactive];
    active[at] = last;
    slots[last].active_at = at;
    slots[fd].active_at = -1;
}

/* Under lock: the snapshot is stale; a blocked poll must see the change. */
static void mark_changed(void)
{
    changed = true;
    if (polling)
        np__wakefd_signal(&wakefd);
}

int np__poller_open(np__pollreg *reg)
{
    int fd = reg->fd;
    if (fd < 0 || fcntl(fd, F_GETFD) < 0)
        return -EBADF;
    pthread_mutex_lock(&lock);
    int rc = ensure_slot(fd);
    if (rc == 0) {
        /* A slot whose registration was retired without np__poller_close
         * (its fd was closed behind our back and the number reused) is
         * free: nothing can resolve its tag any more. */
        uint64_t old = slots[fd].tag;
        if (old != NP__POLLREG_NO_TAG && np__pollreg_resolve(old)) {
            rc = -EEXIST;
        } else {
            deactivate(fd);
            slots[fd] = (slot){ .tag = np__pollreg_tag(reg), .armed = 0, .active_at = -1 };
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

int np__poller_close(np__pollreg *reg)
{
    int fd = reg->fd;
    int rc = 0;
    pthread_mutex_lock(&lock);
    uint64_t tag = np__pollreg_tag(reg);
    np__pollreg_retire(reg);
    if (fd < 0 || fd >= nslots || slots[fd].tag != tag) {
        rc = -EBADF;
        goto out;
    }
    if (slots[fd].armed) {
        deactivate(fd);
        /* A blocked poll must stop watching fd before its number is reused. */
        mark_changed();
    }
    slots[fd] = (slot){ .tag = NP__POLLREG_NO_TAG, .armed = 0, .active_at = -1 };
out:
    pthread_mutex_unlock(&lock);
    return rc;
}

int np__poller_arm(np__pollreg *reg, int mode)
{
    short want = (short)(((mode & NP__POLL_READ) ? POLLIN : 0) |
                         ((mode & NP__POLL_WRITE) ? POLLOUT : 0));
    int fd = reg->fd;
    int rc = 0;
    pthread_mutex_lock(&lock);
    if (fd < 0 || fd >= nslots || slots[fd].tag != np__pollreg_tag(reg)) {
        rc = -EBADF;
        goto out;
    }
    if ((slots[fd].armed | want) == slots[fd].armed)
        goto out;
    rc = activate(fd);
    if (rc < 0)
        goto out;
    slots[fd].armed |= want;
    mark_changed();
out:
    pthread_mutex_unlock(&lock);
    return rc;
}

/* Polling thread, under lock: copy the armed set into the snapshot. Entry 0
 * is always the wake descriptor. */
static void rebuild_snapshot(void)
{
    int need = nactive + 1;
    if (need > snap_cap) {
        int n = snap_cap ? snap_cap : 64;
        while (n < need)
            n *= 2;
        struct pollfd *p = realloc(snap, (size_t)n * sizeof *p);
        if (p)
            snap = p;
        uint64_t *t = realloc(snap_tags, (size_t)n * sizeof *t);
        if (t)
            snap_tags = t;
        if (!p || !t)
            NP__PANIC("poll backend: out of memory for %d descriptors", need);
        snap_cap = n;
    }
    snap[0] = (struct pollfd){ .fd = wakefd.rfd, .events = POLLIN };
    snap_tags[0] = NP__POLLREG_NO_TAG;
    for (int i = 0; i < nactive; i++) {
        int fd = active[i];
        snap[i + 1] = (struct pollfd){ .fd = fd, .events = slots[fd].armed };
        snap_tags[i + 1] = slots[fd].tag;
    }
    nsnap = need;
    changed = false;
}

/* Polling thread, under lock: turn the snapshot's results into events,
 * disarming what is reported. */
/* Where the next collect starts looking (under lock). A poll that finds
 * more ready descriptors than the caller takes reports the first `cap` it
 * comes to; starting from index 1 every time, a descriptor late in the set
 * was never reported while enough earlier ones stayed ready (a reader
 * starved for good behind 1,000 busy ping-pong connections: tests/
 * test_fairness.c). So the scan goes round, starting after the last one
 * reported; the rest stay ready (level-triggered) for the next round. */
static int scan_from = 1;

static int collect(np__pollev *out, int cap)
{
    int k = 0;
    int i = scan_from >= 1 && scan_from < nsnap ? scan_from : 1;
    for (int seen = 1; seen < nsnap && k < cap; seen++, i = i + 1 < nsnap ? i + 1 : 1) {
        short re = snap[i].revents;
        if (!re)
            continue;
        int fd = snap[i].fd;
        if (fd >= nslots || slots[fd].tag != snap_tags[i])
            continue; /* closed, maybe reopened, since the snapshot */
        uint8_t mode = 0;
        if (re & (POLLIN | POLLHUP | POLLERR))
            mode |= NP__POLL_READ;
        if (re & (POLLOUT | POLLHUP | POLLERR))
            mode |= NP__POLL_WRITE;
        if (re & POLLNVAL)
            mode = NP__POLL_READ | NP__POLL_WRITE; /* fd closed under us */
        if (!mode)
            continue;
        np__pollreg *reg = np__pollreg_resolve(snap_tags[i]);
        if (!reg)
            continue;
        short fired = (short)(((mode & NP__POLL_READ) ? POLLIN : 0) |
                              ((mode & NP__POLL_WRITE) ? POLLOUT : 0));
        slots[fd].armed &= (short)~fired;
        if (!slots[fd].armed)
            deactivate(fd);
        changed = true;
        out[k].reg = reg;
        out[k].mode = mode;
        out[k].err = (re & (POLLERR | POLLIN | POLLOUT | POLLHUP)) == POLLERR;
        out[k].hup = (re & (POLLHUP | POLLERR | POLLNVAL)) != 0;
        k++;
    }
    scan_from = i; /* after the last one looked at */
    return k;
}

static bool take_wake(void)
{
    int one = 1;
    return atomic_load(&wake_pending) &&
           atomic_compare_exchange_strong(&wake_pending, &one, 0);
}

int np__poller_poll(int64_t delay_ns, np__pollev *out, int cap)
{
    np__assert(cap > 0);
    if (delay_ns != 0 && take_wake()) {
        np__pollreg_batch_begin();
        return 0;
    }
    int64_t until = delay_ns > 0 ? np__add_sat(np_now(), delay_ns) : 0;
    for (;;) {
        int ms = 0;
        if (delay_ns < 0) {
            ms = -1;
        } else if (delay_ns > 0) {
            int64_t left = until - np_now();
            if (left <= 0) {
                np__pollreg_batch_begin();
                return 0;
            }
            int64_t m = left / NP_MILLISECOND + (left % NP_MILLISECOND != 0);
            ms = m > INT_MAX ? INT_MAX : (int)m;
        }
        pthread_mutex_lock(&lock);
        if (changed)
            rebuild_snapshot();
        polling = ms != 0;
        pthread_mutex_unlock(&lock);

        int n = NP__SYS(poll(snap, (nfds_t)nsnap, ms));

        np__pollreg_batch_begin(); /* before any resolve; the caller ends it */
        pthread_mutex_lock(&lock);
        polling = false;
        int k = 0;
        if (n > 0) {
            if (snap[0].revents)
                np__wakefd_drain(&wakefd);
            k = collect(out, cap);
        }
        pthread_mutex_unlock(&lock);

        if (n < 0) {
            if (n == -EINTR)
                return 0;
            NP__PANIC("poll: %s", np_strerror(n));
        }
        if (delay_ns != 0 && take_wake())
            return k;
        if (k > 0 || delay_ns == 0)
            return k;
        /* Only an internal wake-up (the set changed) or a stale event: poll
         * again for the rest of the delay. */
        np__pollreg_batch_end();
    }
}

void np__poller_wake(void)
{
    if (atomic_exchange(&wake_pending, 1) == 0)
        np__wakefd_signal(&wakefd);
}

const bool np__poller_short_read_waits = true;

bool np__poller_is_poll_descriptor(int fd)
{
    return inited && np__wakefd_owns(&wakefd, fd);
}
