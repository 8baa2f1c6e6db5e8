/* File descriptors and handles. See fd.h for the state word. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <unistd.h>

#include "net/fd.h"
#include "base/np_assert.h"
#include "poller/poller.h"
#include "runtime/scheduler.h"

#define CLOSED ((uint64_t)1 << 0)
#define RLOCK ((uint64_t)1 << 1)
#define WLOCK ((uint64_t)1 << 2)
#define REF ((uint64_t)1 << 3)
#define REF_MASK ((((uint64_t)1 << 20) - 1) << 3)
#define RWAIT ((uint64_t)1 << 23)
#define RWAIT_MASK ((((uint64_t)1 << 20) - 1) << 23)
#define WWAIT ((uint64_t)1 << 43)
#define WWAIT_MASK ((((uint64_t)1 << 20) - 1) << 43)

/* ---- the state word -------------------------------------------------------- */

static bool incref(np__fd *fd)
{
    uint64_t old = atomic_load(&fd->state);
    for (;;) {
        if (old & CLOSED)
            return false;
        if ((old & REF_MASK) == REF_MASK)
            NP__PANIC("fd %d: too many concurrent calls", fd->sysfd);
        if (atomic_compare_exchange_weak(&fd->state, &old, old + REF))
            return true;
    }
}

/* Drops a reference; true if it was the last one of a closed fd. */
static bool decref_is_last(np__fd *fd)
{
    uint64_t old = atomic_load(&fd->state);
    for (;;) {
        if ((old & REF_MASK) == 0)
            NP__PANIC("fd %d: reference count underflow", fd->sysfd);
        uint64_t next = old - REF;
        if (atomic_compare_exchange_weak(&fd->state, &old, next))
            return (next & (REF_MASK | CLOSED)) == CLOSED;
    }
}

/* The state bits and semaphore of one direction's lock. */
typedef struct direction {
    uint64_t bit;  /* RLOCK or WLOCK */
    uint64_t wait; /* one waiter: RWAIT or WWAIT */
    uint64_t mask; /* all waiters: RWAIT_MASK or WWAIT_MASK */
    np__sema *sema;
} direction;

static direction direction_of(np__fd *fd, bool read)
{
    return read ? (direction){ RLOCK, RWAIT, RWAIT_MASK, &fd->rsema }
                : (direction){ WLOCK, WWAIT, WWAIT_MASK, &fd->wsema };
}

bool np__fd_lock(np__fd *fd, bool read)
{
    direction d = direction_of(fd, read);
    uint64_t bit = d.bit, wait = d.wait, mask = d.mask;
    uint64_t old = atomic_load(&fd->state);
    for (;;) {
        if (old & CLOSED)
            return false;
        uint64_t next;
        if (!(old & bit)) {
            next = (old | bit) + REF; /* lock free: take it, and a reference */
            if ((old & REF_MASK) == REF_MASK)
                NP__PANIC("fd %d: too many concurrent calls", fd->sysfd);
        } else {
            next = old + wait; /* queue behind the holder */
            if ((old & mask) == mask)
                NP__PANIC("fd %d: too many waiters", fd->sysfd);
        }
        if (!atomic_compare_exchange_weak(&fd->state, &old, next))
            continue;
        if (!(old & bit))
            return true;
        /* The holder hands over by clearing the bit and releasing one
         * waiter; close releases all of them. Then try again. */
        static const np__park_site site_rturn = { "np_read (behind another read)", "conn",
                                                   NP__ON_OTHER };
        static const np__park_site site_wturn = { "np_write (behind another write)", "conn",
                                                   NP__ON_OTHER };
        np__sema_acquire(d.sema, read ? &site_rturn : &site_wturn, fd);
        old = atomic_load(&fd->state);
    }
}

static void destroy(np__fd *fd);
static int fd_new(int sysfd, int kind, int family, int sotype, char *unlink_path, np__fd **out,
                  uint64_t *id);

void np__fd_unlock(np__fd *fd, bool read)
{
    direction d = direction_of(fd, read);
    uint64_t bit = d.bit, wait = d.wait, mask = d.mask;
    uint64_t old = atomic_load(&fd->state);
    for (;;) {
        if (!(old & bit) || (old & REF_MASK) == 0)
            NP__PANIC("fd %d: unlock of a lock not held", fd->sysfd);
        uint64_t next = (old & ~bit) - REF;
        if (old & mask)
            next -= wait; /* we will wake one waiter */
        if (!atomic_compare_exchange_weak(&fd->state, &old, next))
            continue;
        if (old & mask)
            np__sema_release(d.sema);
        if ((next & (REF_MASK | CLOSED)) == CLOSED)
            destroy(fd);
        return;
    }
}

/* ---- the handle table --------------------------------------------------------
 *
 * Slots are carved in chunks that are never freed, so a stale handle always
 * points at a valid np__fd whose generation says "not yours". The handle id
 * is (generation << 32) | (index + 1); generations are odd while a slot is
 * in use and even while it is free, so id 0 is never issued and an id from
 * a previous use of the slot never matches again (until 2^31 reuses).
 */

#define CHUNK_SHIFT 10
#define CHUNK_SIZE (1u << CHUNK_SHIFT)
#define NUM_CHUNKS 1024u /* 1M handles */

static np__fd *_Atomic chunks[NUM_CHUNKS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static np__fd *free_list;  /* under table_lock */
static uint32_t nslots;    /* under table_lock */
static _Atomic long live;  /* fds made and not yet destroyed */
static _Atomic long open_conns, open_listeners; /* made and not yet closed (np_stats) */

static np__fd *slot_at(uint32_t index)
{
    if (index >= NUM_CHUNKS * CHUNK_SIZE)
        return NULL;
    np__fd *chunk = atomic_load_explicit(&chunks[index >> CHUNK_SHIFT], memory_order_acquire);
    return chunk ? &chunk[index & (CHUNK_SIZE - 1)] : NULL;
}

static np__fd *slot_alloc(void)
{
    np__fd *fd = NULL;
    pthread_mutex_lock(&table_lock);
    if (free_list) {
        fd = free_list;
        free_list = fd->next_free;
        goto out;
    }
    if (nslots == NUM_CHUNKS * CHUNK_SIZE)
        goto out;
    uint32_t c = nslots >> CHUNK_SHIFT;
    np__fd *chunk = atomic_load_explicit(&chunks[c], memory_order_relaxed);
    if (!chunk) {
        chunk = calloc(CHUNK_SIZE, sizeof *chunk);
        if (!chunk)
            goto out;
        for (uint32_t i = 0; i < CHUNK_SIZE; i++) {
            chunk[i].index = c * CHUNK_SIZE + i;
            np__sema_init(&chunk[i].rsema);
            np__sema_init(&chunk[i].wsema);
        }
        atomic_store_explicit(&chunks[c], chunk, memory_order_release);
    }
    fd = &chunk[nslots & (CHUNK_SIZE - 1)];
    nslots++;
out:
    pthread_mutex_unlock(&table_lock);
    return fd;
}

static void slot_free(np__fd *fd)
{
    /* Even: free. Stale handles no longer match. */
    uint32_t g = atomic_fetch_add(&fd->gen, 1) + 1;
    np__assert((g & 1) == 0);
    pthread_mutex_lock(&table_lock);
    fd->next_free = free_list;
    free_list = fd;
    pthread_mutex_unlock(&table_lock);
}

int np__fd_new(int sysfd, int kind, int family, np__fd **out, uint64_t *id)
{
    return np__fd_new_full(sysfd, kind, family, SOCK_STREAM, NULL, out, id);
}

int np__fd_new_full(int sysfd, int kind, int family, int sotype, char *unlink_path, np__fd **out,
                    uint64_t *id)
{
    /* A handle lives in the running runtime's poller; np_run, when it ends,
     * closes those still open (np__fd_close_all), and must not miss one
     * made by a plain thread meanwhile. */
    if (!np__runtime_enter()) {
        free(unlink_path);
        return -ESRCH;
    }
    int rc = fd_new(sysfd, kind, family, sotype, unlink_path, out, id);
    np__runtime_leave();
    return rc;
}

static int fd_new(int sysfd, int kind, int family, int sotype, char *unlink_path, np__fd **out,
                  uint64_t *id)
{
    np__fd *fd = slot_alloc();
    if (!fd) {
        free(unlink_path);
        return -ENOMEM;
    }
    fd->sysfd = sysfd;
    fd->kind = kind;
    fd->family = family;
    fd->sotype = sotype;
    fd->connected = false;
    fd->pending_err = 0;
    fd->dual_stack = false;
    fd->read_drained = false;
    fd->unlink_path = NULL;
    atomic_store(&fd->unlinking, false);
    int rc = np__pd_open(sysfd, &fd->pd);
    if (rc < 0) {
        uint32_t g = atomic_fetch_add(&fd->gen, 2); /* stays even: never issued */
        (void)g;
        pthread_mutex_lock(&table_lock);
        fd->next_free = free_list;
        free_list = fd;
        pthread_mutex_unlock(&table_lock);
        free(unlink_path);
        return rc;
    }
    fd->unlink_path = unlink_path; /* before the handle exists */
    atomic_store(&fd->unlinking, unlink_path != NULL);
    static _Atomic int hooked;
    if (!atomic_load_explicit(&hooked, memory_order_relaxed) && !atomic_exchange(&hooked, 1))
        np__sched_on_stop(np__fd_close_all);
    atomic_fetch_add(&live, 1);
    atomic_fetch_add_explicit(kind == NP__FD_LISTENER ? &open_listeners : &open_conns, 1,
                              memory_order_relaxed);
    /* One reference for the caller; the state is clean (the slot was free). */
    atomic_store(&fd->state, REF);
    uint32_t g = atomic_fetch_add(&fd->gen, 1) + 1; /* odd: in use */
    np__assert(g & 1);
    *out = fd;
    *id = ((uint64_t)g << 32) | ((uint64_t)fd->index + 1);
    return 0;
}

np__fd *np__fd_get(uint64_t id, int kind)
{
    uint32_t gen = (uint32_t)(id >> 32);
    uint32_t idx = (uint32_t)id;
    if (idx == 0 || !(gen & 1))
        return NULL;
    np__fd *fd = slot_at(idx - 1);
    if (!fd || atomic_load(&fd->gen) != gen)
        return NULL;
    if (!incref(fd))
        return NULL;
    /* The slot may have been freed and reused between the check and the
     * reference: check again, and let go of a stranger's fd. */
    if (atomic_load(&fd->gen) != gen || fd->kind != kind) {
        np__fd_decref(fd);
        return NULL;
    }
    return fd;
}

void np__fd_decref(np__fd *fd)
{
    if (decref_is_last(fd))
        destroy(fd);
}

int np__fd_close(np__fd *fd)
{
    uint64_t old = atomic_load(&fd->state);
    for (;;) {
        if (old & CLOSED) {
            while (atomic_load_explicit(&fd->unlinking, memory_order_acquire))
                sched_yield(); /* see np__fd_close_wait */
            np__fd_decref(fd);
            return -EBADF;
        }
        /* Closed, and every lock waiter counted out: they all get woken. */
        uint64_t next = (old | CLOSED) & ~(RWAIT_MASK | WWAIT_MASK);
        if (atomic_compare_exchange_weak(&fd->state, &old, next))
            break;
    }
    atomic_fetch_sub_explicit(fd->kind == NP__FD_LISTENER ? &open_listeners : &open_conns, 1,
                              memory_order_relaxed);
    /* A Unix listener's file goes now, as in Go, not with the last
     * reference: a task still blocked in accept must not keep the path
     * taken, and a late unlink would remove a newer listener's file. */
    if (fd->unlink_path) {
        unlink(fd->unlink_path);
        free(fd->unlink_path);
        fd->unlink_path = NULL;
        atomic_store_explicit(&fd->unlinking, false, memory_order_release);
    }
    for (uint64_t n = (old & RWAIT_MASK) / RWAIT; n > 0; n--)
        np__sema_release(&fd->rsema);
    for (uint64_t n = (old & WWAIT_MASK) / WWAIT; n > 0; n--)
        np__sema_release(&fd->wsema);
    np__pd_unblock(fd->pd); /* parked readers and writers: -ECANCELED */
    np__fd_decref(fd);
    return 0;
}

void np__fd_close_wait(uint64_t id)
{
    uint32_t gen = (uint32_t)(id >> 32);
    uint32_t idx = (uint32_t)id;
    if (idx == 0 || !(gen & 1))
        return;
    np__fd *fd = slot_at(idx - 1);
    if (!fd)
        return;
    /* Only for a closed fd (the get may have failed for the handle's kind:
     * a live listener passed to np_close must not be waited on). unlinking
     * and CLOSED first, then the generation: a slot freed and reused since
     * has a new generation (slot_free bumps it before a new owner can set
     * either), so what was seen under the old one was this fd's. */
    while (atomic_load(&fd->unlinking) && (atomic_load(&fd->state) & CLOSED) &&
           atomic_load(&fd->gen) == gen)
        sched_yield();
}

/* The last reference of a closed fd: nothing is inside a syscall on it. */
static void destroy(np__fd *fd)
{
    np__pd_close(fd->pd);
    fd->pd = NULL;
    close(fd->sysfd);
    fd->sysfd = -1;
    slot_free(fd);
    atomic_fetch_sub(&live, 1);
}

void np__fd_open_counts(int64_t *conns, int64_t *listeners)
{
    *conns = atomic_load_explicit(&open_conns, memory_order_relaxed);
    *listeners = atomic_load_explicit(&open_listeners, memory_order_relaxed);
}

void np__fd_close_all(void)
{
    pthread_mutex_lock(&table_lock);
    uint32_t n = nslots;
    pthread_mutex_unlock(&table_lock);
    for (uint32_t i = 0; i < n; i++) {
        np__fd *fd = slot_at(i);
        uint32_t g = atomic_load(&fd->gen);
        if (!(g & 1))
            continue;
        np__fd *held = np__fd_get(((uint64_t)g << 32) | (i + 1), fd->kind);
        if (held)
            np__fd_close(held);
    }
    /* A plain thread inside np_close or a deadline setter may hold the last
     * reference for a moment; no call can block here any more (no task
     * runs, and a plain thread's blocked call was woken by the close). */
    while (atomic_load(&live) > 0)
        sched_yield();
}
