/* Poller backend: kqueue (macOS, the BSDs; libkqueue on Linux).
 *
 * Each descriptor gets two knotes, EVFILT_READ and EVFILT_WRITE, added once
 * at open with EV_CLEAR (edge-triggered: reported when the state changes,
 * then not again until it changes again), so arm has nothing to do. Both
 * carry the registration's tag (pollreg.h) in udata: an event that outlives
 * its registration is recognised and dropped.
 *
 * udata is a pointer (void *, or intptr_t on NetBSD < 10), and the tag is 64
 * bits: index and sequence number. Where a pointer is narrower there is no
 * room for both, and an index alone would give up the protection against
 * stale events that the sequence number exists for; so 32-bit kqueue
 * platforms are not supported (the static assertion below, and CMake does
 * not offer the backend there). They take the poll(2) backend.
 *
 * The wake-up is the kqwake unit (kqwake.h: an EVFILT_USER event, or a pipe
 * where there is none), registered with the tag NP__POLLREG_NO_TAG. As in the
 * epoll backend, wake() fires it only when no wake is pending; a blocking
 * poll that reports it consumes the wake and clears the pending flag, a
 * non-blocking one leaves the wake pending for the next poll.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

#include "base/sys.h"
#include "base/clock.h"
#include "poller/kqwake.h"
#include "netpoll.h"
#include "base/np_assert.h"
#include "poller/poller.h"

_Static_assert(sizeof(((struct kevent *)0)->udata) >= sizeof(uint64_t),
               "the kqueue backend keeps a 64-bit registration tag in udata; "
               "32-bit kqueue platforms must use the poll backend");

/* Go's batch size. A struct kevent is 32 bytes (Darwin) to 64 (FreeBSD), so
 * the array costs at most 4 KiB of stack. */
#define MAX_BATCH 64

/* Darwin fails kevent() with EINVAL when tv_sec exceeds 10^8. Longer waits
 * are cut to 10^6 s (11.5 days), as Go does; the caller takes the early empty
 * return like any other and recomputes its delay. */
#define MAX_WAIT_NS (1000000 * NP_SECOND)

static int kq = -1;
static _Atomic int wake_pending; /* 1 while a wake is outstanding */

const char *np_poller_name(void)
{
    return NP_POLLER_NAME;
}

/* Fills a change for one filter. udata's type differs between systems
 * (void * or intptr_t); converting through uintptr_t suits both. */
static void change(struct kevent *ch, int fd, int filter, unsigned flags, uint64_t tag)
{
    memset(ch, 0, sizeof *ch);
    ch->ident = (uintptr_t)fd;
    ch->filter = filter;
    ch->flags = flags;
    ch->udata = (__typeof__(ch->udata))(uintptr_t)tag;
}

/* Applies changes without taking events. With no event list the kernel
 * applies them in order and stops at the first that fails, returning -1 with
 * its errno. Not EV_RECEIPT: receipts need an event list, and an event list
 * is where kevent() also puts pending events, which belong to the polling
 * thread (libkqueue fills the slots the receipts leave; without EV_RECEIPT
 * every kernel does); and older NetBSD and DragonFly have no EV_RECEIPT.
 * EINTR: applying the changes again is harmless. 0 or -errno. */
static int apply(struct kevent *ch, int n)
{
    for (;;) {
        int rc = NP__SYS(kevent(kq, ch, n, NULL, 0, NULL));
        if (rc != -EINTR)
            return rc < 0 ? rc : 0;
    }
}

int np__poller_init(void)
{
    np__assert(kq < 0);
    int fd = NP__SYS(kqueue());
    if (fd < 0)
        return fd;
    /* Close-on-exec, as every descriptor the library owns; kqueue() takes no
     * flags, and kqueue1/kqueuex are not everywhere. init runs alone. */
    int rc = NP__SYS(fcntl(fd, F_SETFD, FD_CLOEXEC));
    if (rc < 0) {
        close(fd);
        return rc;
    }
    kq = fd;
    atomic_store(&wake_pending, 0);
    rc = np__kqwake_open(kq);
    if (rc < 0) {
        close(kq);
        kq = -1;
        return rc;
    }
    return 0;
}

void np__poller_fini(void)
{
    np__assert(kq >= 0);
    np__kqwake_close();
    close(kq);
    kq = -1;
}

int np__poller_open(np__pollreg *reg)
{
    int fd = reg->fd;
    if (fd < 0)
        return -EBADF;
    uint64_t tag = np__pollreg_tag(reg);
    struct kevent ch[2];
    change(&ch[0], fd, EVFILT_READ, EV_ADD | EV_CLEAR, tag);
    change(&ch[1], fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, tag);
    int rc = apply(ch, 2);
    if (rc < 0) {
        /* The read filter may be in while the write filter failed (a
         * descriptor open for reading only, on some systems). Take out
         * whatever got in, one filter at a time since a failing change stops
         * the rest; "not found" is expected here. */
        change(&ch[0], fd, EVFILT_READ, EV_DELETE, 0);
        change(&ch[1], fd, EVFILT_WRITE, EV_DELETE, 0);
        (void)apply(&ch[0], 1);
        (void)apply(&ch[1], 1);
        return rc;
    }
    return 0;
}

int np__poller_close(np__pollreg *reg)
{
    /* Retire first: an event already harvested by a concurrent poll then
     * fails the tag check and is dropped. */
    np__pollreg_retire(reg);
    int fd = reg->fd;
    if (fd < 0)
        return -EBADF;
    /* The kernel drops a descriptor's knotes when it is closed, which the
     * caller does next, so Go skips this. We do not: libkqueue (Linux) never
     * learns of the close and would keep the knotes under that fd number,
     * deaf to the next descriptor that gets it; and the delete reports a
     * registration that was never opened (-ENOENT, -EBADF), as the other
     * backends do. One syscall, as epoll's EPOLL_CTL_DEL. */
    struct kevent ch[2];
    change(&ch[0], fd, EVFILT_READ, EV_DELETE, 0);
    change(&ch[1], fd, EVFILT_WRITE, EV_DELETE, 0);
    return apply(ch, 2);
}

int np__poller_arm(np__pollreg *reg, int mode)
{
    (void)reg;
    (void)mode;
    return 0; /* edge-triggered (EV_CLEAR): armed once, at open */
}

/* The directions one event readies, 0 for none.
 *
 * EV_EOF on either filter (peer closed or reset, a pipe's other end gone)
 * wakes both directions: the next syscall reports what happened. Go only
 * adds the writers on a read EOF (some systems report a pipe's vanished
 * reader there and nothing on the write filter); a write EOF that also wakes
 * the readers costs at most one read that says EAGAIN (a socket shut down
 * for writing, still readable), and keeps "a hang-up ends the waits in both
 * directions" true on every system, as the other backends have it.
 *
 * EV_ERROR (data holds the errno) is the only report of an error and nothing
 * else, so it alone sets err. kqueue has no error-only readiness report: a
 * socket error comes as readiness (or EV_EOF, with the error in fflags) on
 * each filter, and leaves err false as the contract wants; a pipe whose
 * reader is gone comes as a write EOF, which cannot be told from a socket
 * shut down for writing, so it leaves err false too, and the writer learns
 * EPIPE from its next write. */
static uint8_t mode_of(const struct kevent *ev, bool *err)
{
    *err = false;
    if (ev->flags & EV_ERROR) {
        *err = true;
        return NP__POLL_READ | NP__POLL_WRITE;
    }
    uint8_t mode;
    if (ev->filter == EVFILT_READ)
        mode = NP__POLL_READ;
    else if (ev->filter == EVFILT_WRITE)
        mode = NP__POLL_WRITE;
    else
        return 0;
    if (ev->flags & EV_EOF)
        mode = NP__POLL_READ | NP__POLL_WRITE;
    return mode;
}

/* The kernel wait. delay_ns: < 0 forever, 0 not at all, > 0 at most that. */
static int wait_events(struct kevent *evs, int n, int64_t delay_ns)
{
    struct timespec ts, *tsp = NULL;
    if (delay_ns >= 0) {
        if (delay_ns > MAX_WAIT_NS)
            delay_ns = MAX_WAIT_NS;
        /* Kernels that convert the timeout to microseconds truncate, and
         * would turn a sub-microsecond delay into a poll that does not
         * block: round up to whole microseconds. */
        delay_ns = (delay_ns + NP_MICROSECOND - 1) / NP_MICROSECOND * NP_MICROSECOND;
        ts = np__ns_to_timespec(delay_ns);
        tsp = &ts;
    }
    return NP__SYS(kevent(kq, NULL, 0, evs, n, tsp));
}

/* The entry of out[0..k) for reg, or -1. Linear: a batch is at most
 * MAX_BATCH events, so at most ~2000 comparisons, small beside the syscall
 * that fetched them. */
static int find(const np__pollev *out, int k, const np__pollreg *reg)
{
    for (int i = k - 1; i >= 0; i--) {
        if (out[i].reg == reg)
            return i;
    }
    return -1;
}

int np__poller_poll(int64_t delay_ns, np__pollev *out, int cap)
{
    struct kevent evs[MAX_BATCH];
    np__assert(cap > 0);
    int n = wait_events(evs, cap < MAX_BATCH ? cap : MAX_BATCH, delay_ns);
    np__pollreg_batch_begin(); /* before any resolve; the caller ends it */
    if (n < 0) {
        int err = -n;
        /* EINTR: the caller recomputes its delay. ETIMEDOUT: Darwin has been
         * seen to return it from a timed kevent() (Go issue 59679); it is
         * not documented, and treated as a timeout. */
        if (err == EINTR || err == ETIMEDOUT)
            return 0;
        NP__PANIC("kevent on kqueue %d: %s", kq, np_strerror(err));
    }
    bool saw_wake = false;
    int k = 0;
    for (int i = 0; i < n; i++) {
        uint64_t tag = (uint64_t)(uintptr_t)evs[i].udata;
        if (tag == NP__POLLREG_NO_TAG) {
            saw_wake = true;
            continue;
        }
        np__pollreg *reg = np__pollreg_resolve(tag);
        if (!reg)
            continue; /* closed since the kernel queued this */
        bool e;
        uint8_t mode = mode_of(&evs[i], &e);
        if (!mode)
            continue;
        /* The read and write filters of one descriptor are separate events;
         * hand them on as one, as the other backends do. Merging keeps
         * k <= n <= cap. */
        bool hup = e || (evs[i].filter == EVFILT_READ && (evs[i].flags & EV_EOF));
        int j = find(out, k, reg);
        if (j >= 0) {
            out[j].mode |= mode;
            out[j].err |= e;
            out[j].hup |= hup;
            continue;
        }
        out[k].reg = reg;
        out[k].mode = mode;
        out[k].err = e;
        out[k].hup = hup;
        k++;
    }
    if (saw_wake) {
        if (delay_ns != 0) {
            np__kqwake_drain(kq);
            atomic_store(&wake_pending, 0);
        } else {
            np__kqwake_keep(kq); /* the flag stays set: wakes stay coalesced */
        }
    }
    return k;
}

void np__poller_wake(void)
{
    /* A full-barrier exchange, as in the epoll backend: what the caller
     * published before waking is ordered before the flag, and only the
     * 0 -> 1 transition costs a syscall. */
    if (atomic_exchange(&wake_pending, 1) == 0)
        np__kqwake_signal(kq);
}

const bool np__poller_short_read_waits = false;

bool np__poller_is_poll_descriptor(int fd)
{
    return fd >= 0 && (fd == kq || np__kqwake_owns(fd));
}
