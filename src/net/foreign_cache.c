/* np_wait_fd's cache of registrations: entries, the table, housekeeping
 * and np_run's end. See foreign_cache.h.
 *
 * Locks: the table lock (T.lock) guards the table, the list of entries,
 * their refs and the housekeeping state; each entry's lock guards what its
 * waits share. Order: the table lock, then an entry's lock. Neither is
 * held across a syscall. Entries are closed (np__pd_close, close) by
 * whoever holds their last reference, with no lock held, never on the
 * polling thread (np__pd_close waits for the poller's batch).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/sys.h"
#include "net/fd.h"
#include "net/foreign_cache.h"
#include "netpoll.h"
#include "os/os.h"
#include "pd/timer.h"
#include "poller/poller.h"
#include "runtime/scheduler.h"

typedef np__fw_ent ent;

static struct {
    _Atomic int lock;
    ent **by_fd;              /* current entries, by the caller's number */
    int cap;
    ent *all;                 /* every entry not yet freed */
    /* Housekeeping: one timer at min(watch_at, sweep_at). */
    bool timer_ok;            /* np__timer_init worked (else -ENOMEM) */
    np__timer timer;
    int64_t armed_at;         /* INT64_MAX: not pending */
    _Atomic bool watching;    /* a check of waited-on entries is due at
                               * watch_at (atomic: read without the lock) */
    int64_t watch_at, watch_iv;
    int64_t sweep_at;         /* the next sweep; INT64_MAX: no entries */
    bool busy;                /* a pass runs (the timer may fire again) */
} T = { .armed_at = INT64_MAX, .sweep_at = INT64_MAX };

static _Atomic bool no_kcmp; /* kcmp said ENOSYS or EPERM once: fstat */
#define DUP_MIN 3             /* our duplicates stay off the standard streams */

/* ---- waits on an entry ---------------------------------------------------------- */

bool np__fw_deliver(ent *e, int bits, np__wnode *self)
{
    np__wake_list wl = { NULL };
    np__spin_lock(&e->lock);
    bool mine = self && self->linked;
    if (mine)
        np__wq_unlink(&e->waiters, self);
    e->got |= bits;
    for (np__wnode *n = bits ? e->waiters.head : NULL, *next; n; n = next) {
        next = n->next;
        if (!(n->index & bits))
            continue;
        np__wq_unlink(&e->waiters, n);
        bool parked;
        if (np__wnode_claim(n, &parked)) {
            n->result = n->index & bits;
            np__wake_list_push(&wl, n);
        }
    }
    np__spin_unlock(&e->lock);
    np__wake_all(&wl);
    return mine;
}

/* The poller's report for e's duplicate (on the polling thread). */
static void ent_notify(void *arg, int mode, bool err)
{
    int ev = 0;
    if (mode & (NP__POLL_READ | NP__POLL_HUP))
        ev |= NP_READABLE;
    if (mode & NP__POLL_WRITE)
        ev |= NP_WRITABLE;
    if (err)
        ev = NP_READABLE | NP_WRITABLE; /* the next syscall says what */
    (void)np__fw_deliver(arg, ev, NULL);
}

/* Ends every queued wait with result; no new ones. */
static void end_waits(ent *e, int result)
{
    np__wake_list wl = { NULL };
    np__spin_lock(&e->lock);
    e->dead = true;
    np__wnode *n;
    bool parked;
    while ((n = np__wq_claim_first(&e->waiters, &parked)) != NULL) {
        n->result = result;
        np__wake_list_push(&wl, n);
    }
    np__spin_unlock(&e->lock);
    np__wake_all(&wl);
}

/* ---- closing ------------------------------------------------------------------------ */

/* Releases dup and pd, once: by the last reference, or by np_run's end
 * (which holds one). */
static void ent_close(ent *e)
{
    if (atomic_load_explicit(&e->closed, memory_order_acquire))
        return;
    if (e->pd) {
        np__pd_unblock(e->pd);
        np__pd_close(e->pd); /* after this, ent_notify cannot run for e */
    }
    close(e->dup);
    atomic_store_explicit(&e->closed, true, memory_order_release);
}

static void free_list(ent *e) /* linked through work */
{
    while (e) {
        ent *nx = e->work;
        ent_close(e);
        free(e);
        e = nx;
    }
}

/* Under the table lock: no new wait finds e. */
static void table_remove(ent *e)
{
    T.by_fd[e->fd] = NULL;
    e->in_table = false;
}

/* Under the table lock: e is about to be freed. */
static void list_remove(ent *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        T.all = e->next;
    if (e->next)
        e->next->prev = e->prev;
    e->prev = e->next = NULL;
}

void np__fw_retire(ent *e)
{
    np__spin_lock(&T.lock);
    if (e->in_table)
        table_remove(e);
    np__spin_unlock(&T.lock);
    end_waits(e, NP__FW_RETIRED);
}

/* ---- housekeeping ------------------------------------------------------------------- */

static void housekeeping(void *arg, uintptr_t seq);

/* Under the table lock: the timer at the earlier of what is due. */
static void rearm(void)
{
    int64_t at = T.sweep_at;
    if (atomic_load_explicit(&T.watching, memory_order_relaxed) && T.watch_at < at)
        at = T.watch_at;
    if (at == T.armed_at)
        return;
    if (at == INT64_MAX)
        np__timer_stop(&T.timer);
    else
        np__timer_set(&T.timer, at, housekeeping, NULL, 0);
    T.armed_at = at;
}

void np__fw_put(ent *e, bool may_close)
{
    bool last = false;
    np__spin_lock(&T.lock);
    if (--e->refs == 0) {
        if (e->in_table) {
            e->used = true; /* for the sweep; no clock read here */
        } else if (may_close || atomic_load_explicit(&e->closed, memory_order_acquire)) {
            list_remove(e);
            last = true;
        } /* else np_run is ending, and closes it */
    }
    np__spin_unlock(&T.lock);
    if (last) {
        e->work = NULL;
        free_list(e);
    }
}

void np__fw_watch(void)
{
    if (atomic_load(&T.watching))
        return;
    np__spin_lock(&T.lock);
    if (!atomic_load(&T.watching)) {
        T.watch_iv = NP__FW_CHECK_FIRST_NS;
        T.watch_at = np__add_sat(np_now(), T.watch_iv);
        atomic_store(&T.watching, true);
        rearm();
    }
    np__spin_unlock(&T.lock);
}

/* Under the table lock: takes out the current entries no wait has used
 * since the sweep before (all idle ones if force), and returns them
 * (linked through work). The sweep runs every LINGER/2 while the table
 * holds entries, so an entry goes between LINGER/2 and LINGER after its
 * last wait ended. */
static ent *take_idle(int64_t now, bool force)
{
    ent *out = NULL;
    bool left = false;
    for (ent *e = T.all, *nx; e; e = nx) {
        nx = e->next;
        if (!e->in_table)
            continue;
        if (e->refs == 0 && (force || !e->used)) {
            table_remove(e);
            list_remove(e);
            e->work = out;
            out = e;
            continue;
        }
        if (e->refs == 0)
            e->used = false;
        left = true;
    }
    T.sweep_at = left ? np__add_sat(now, NP__FW_LINGER_NS / 2) : INT64_MAX;
    return out;
}

/* Under the table lock: the current entries that have waits queued, each
 * with a reference (linked through work). Clears watching first: a wait
 * queued after we looked at its entry finds it clear and calls for a new
 * watch itself (np__fw_watch). */
static ent *take_watched(void)
{
    atomic_store(&T.watching, false);
    ent *out = NULL;
    for (ent *e = T.all; e; e = e->next) {
        if (!e->in_table)
            continue;
        np__spin_lock(&e->lock);
        bool waited = e->waiters.head != NULL;
        np__spin_unlock(&e->lock);
        if (waited) {
            e->refs++;
            e->work = out;
            out = e;
        }
    }
    return out;
}

/* The timer (a worker, no lock held). */
static void housekeeping(void *arg, uintptr_t seq)
{
    (void)arg;
    (void)seq;
    int64_t now = np_now();
    np__spin_lock(&T.lock);
    T.armed_at = INT64_MAX; /* it fired */
    if (T.busy) { /* set again and fired while a pass runs: that pass re-arms */
        np__spin_unlock(&T.lock);
        return;
    }
    T.busy = true; /* the work lists are ours */
    ent *idle = now >= T.sweep_at ? take_idle(now, false) : NULL;
    bool watch = atomic_load(&T.watching) && now >= T.watch_at;
    int64_t iv = T.watch_iv;
    ent *watched = watch ? take_watched() : NULL;
    np__spin_unlock(&T.lock);
    free_list(idle);
    bool still = false;
    for (ent *e = watched, *nx; e; e = nx) {
        nx = e->work;
        if (np__fw_names_file(e->fd, e, 0))
            still = true;
        else
            np__fw_retire(e); /* closed or reused: its waits get -EBADF */
        np__fw_put(e, true);
    }
    np__spin_lock(&T.lock);
    if (still && !atomic_load(&T.watching)) { /* waits go on: check less often */
        T.watch_iv = iv * 2 > NP__FW_CHECK_MAX_NS ? NP__FW_CHECK_MAX_NS : iv * 2;
        T.watch_at = np__add_sat(now, T.watch_iv);
        atomic_store(&T.watching, true);
    }
    T.busy = false;
    rearm();
    np__spin_unlock(&T.lock);
}

/* Out of descriptors: closes every idle entry now. */
static void reap_idle(void)
{
    np__spin_lock(&T.lock);
    ent *idle = take_idle(np_now(), true);
    rearm();
    np__spin_unlock(&T.lock);
    free_list(idle);
}

/* ---- np_run's end --------------------------------------------------------------------- */

/* Every task has finished and no plain thread is inside a wait's round:
 * closes every entry, and ends the waits of plain threads still parked
 * with -ESRCH. An entry a thread still holds is freed by its last put. */
static void cache_stop(void)
{
    np__spin_lock(&T.lock);
    ent *all = NULL;
    for (ent *e = T.all; e; e = e->next) {
        if (e->in_table)
            table_remove(e);
        e->refs++; /* ours, while we close it */
        e->work = all;
        all = e;
    }
    atomic_store(&T.watching, false);
    T.sweep_at = INT64_MAX;
    rearm();
    free(T.by_fd);
    T.by_fd = NULL;
    T.cap = 0;
    np__spin_unlock(&T.lock);
    for (ent *e = all, *nx; e; e = nx) {
        nx = e->work;
        end_waits(e, NP__FW_STOPPED);
        ent_close(e);
        np__fw_put(e, true);
    }
}

static void init_once(void)
{
    T.timer_ok = np__timer_init(&T.timer, 0x5eedu) == 0;
    np__sched_on_stop(cache_stop); /* at the end of every np_run */
}

/* ---- making entries ----------------------------------------------------------------- */

/* A new entry for fd: duplicate, identity, registration. */
static int ent_make(int fd, ent **out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_once);
    if (!T.timer_ok)
        return -ENOMEM; /* no housekeeping: a parked wait could hang */
    /* Never 0, 1 or 2: a program that closed its stdin or stdout expects
     * its next open() there, not our duplicate of a socket. */
    int d = NP__SYS(fcntl(fd, F_DUPFD_CLOEXEC, DUP_MIN));
    if (d == -EMFILE || d == -ENFILE) {
        reap_idle(); /* our idle duplicates may be what fills the table */
        d = NP__SYS(fcntl(fd, F_DUPFD_CLOEXEC, DUP_MIN));
    }
    if (d < 0)
        return d;
    struct stat st;
    int rc = NP__SYS(fstat(d, &st));
    ent *e = rc == 0 ? calloc(1, sizeof *e) : NULL;
    if (!e) {
        close(d);
        return rc < 0 ? rc : -ENOMEM;
    }
    e->fd = fd;
    e->dup = d;
    e->dev = st.st_dev;
    e->ino = st.st_ino;
    e->type = st.st_mode & S_IFMT;
    int fl = S_ISFIFO(st.st_mode) ? NP__SYS(fcntl(d, F_GETFL)) : 0;
    int acc = fl < 0 ? -1 : (fl & O_ACCMODE);
    e->modes = acc == O_RDONLY ? NP_READABLE
               : acc == O_WRONLY ? NP_WRITABLE
               : acc == O_RDWR   ? NP_READABLE | NP_WRITABLE
                                 : 0;
    /* What poll(2) calls always ready is not registered (epoll refuses
     * regular files; poll(2) would report them every round). */
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISBLK(st.st_mode)) {
        rc = np__pd_open_notify(d, ent_notify, e, &e->pd);
        if (rc < 0) {
            e->pd = NULL;
            if (rc != -EPERM) { /* EPERM: the poller cannot watch it */
                close(d);
                free(e);
                return rc;
            }
        }
    }
    *out = e;
    return 0;
}

/* Under the table lock: room for fd in by_fd. */
static bool table_fit(int fd)
{
    if (fd < T.cap)
        return true;
    int cap = T.cap ? T.cap : 64;
    while (cap <= fd)
        cap = cap > (1 << 29) ? fd + 1 : cap * 2;
    ent **p = realloc(T.by_fd, (size_t)cap * sizeof *p);
    if (!p)
        return false;
    memset(p + T.cap, 0, (size_t)(cap - T.cap) * sizeof *p);
    T.by_fd = p;
    T.cap = cap;
    return true;
}

int np__fw_acquire(int fd, ent **out, bool *fresh)
{
    *fresh = false;
    np__spin_lock(&T.lock);
    ent *e = fd < T.cap ? T.by_fd[fd] : NULL;
    if (e)
        e->refs++;
    np__spin_unlock(&T.lock);
    if (e) {
        *out = e;
        return 0;
    }
    ent *mine;
    int rc = ent_make(fd, &mine);
    if (rc < 0)
        return rc;
    np__spin_lock(&T.lock);
    e = fd < T.cap ? T.by_fd[fd] : NULL;
    if (e) { /* another wait made one meanwhile: use it (it is checked) */
        e->refs++;
    } else if (table_fit(fd)) {
        e = mine;
        e->refs = 1;
        e->in_table = true;
        T.by_fd[fd] = e;
        e->next = T.all;
        if (T.all)
            T.all->prev = e;
        T.all = e;
        *fresh = true;
        if (T.sweep_at == INT64_MAX) { /* the table was empty */
            T.sweep_at = np__add_sat(np_now(), NP__FW_LINGER_NS / 2);
            rearm();
        }
    }
    np__spin_unlock(&T.lock);
    if (e != mine) {
        mine->work = NULL;
        free_list(mine);
    }
    if (!e)
        return -ENOMEM;
    *out = e;
    return 0;
}

/* Exact: the same open file description. kcmp, or where it is missing
 * fstat's st_dev, st_ino and type. */
static bool same_open_file(int fd, ent *e)
{
    if (!atomic_load_explicit(&no_kcmp, memory_order_relaxed)) {
        int r = np__os_same_file(fd, e->dup);
        if (r >= 0 || r == -EBADF)
            return r == 1;
        if (r != -ENOSYS && r != -EPERM)
            return false;
        atomic_store_explicit(&no_kcmp, true, memory_order_relaxed);
    }
    struct stat st;
    return NP__SYS(fstat(fd, &st)) == 0 && st.st_dev == e->dev && st.st_ino == e->ino &&
           (st.st_mode & S_IFMT) == e->type;
}

bool np__fw_names_file(int fd, ent *e, int want)
{
    /* fstat costs half what kcmp does, and is enough where the inode
     * tells: a socket's inode is that one socket, whose one open file is
     * shared by every dup; a pipe's (or FIFO's) other open files (its other
     * end, a re-open) pass for ours, but reach us through the same wait
     * queue, so ours reports their readiness too, in every direction our
     * end can report (modes), and the answer is always poll(2)'s on fd.
     * Housekeeping (want 0) checks exactly. */
    if (want == 0 || !(S_ISSOCK(e->type) || (S_ISFIFO(e->type) && !(want & ~e->modes))))
        return same_open_file(fd, e);
    struct stat st;
    return NP__SYS(fstat(fd, &st)) == 0 && st.st_ino == e->ino && st.st_dev == e->dev &&
           (st.st_mode & S_IFMT) == e->type;
}
