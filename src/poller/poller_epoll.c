/* Poller backend: Linux epoll.
 *
 * Each descriptor is registered once, edge-triggered, for input, output and
 * peer hang-up; its event data is the registration's tag (pollreg.h), so an
 * event that outlives its registration is recognised and dropped.
 *
 * The wake-up descriptor (wakefd.h) is registered level-triggered with a tag
 * no registration has. wake() signals it only when no wake is pending; a
 * blocking poll drains it and clears the pending flag, a non-blocking poll
 * leaves both alone, so the wake survives until a poll that would block.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/sanitizer.h"
#include "base/sys.h"
#include "base/clock.h"
#include "netpoll.h"
#include "base/np_assert.h"
#include "poller/poller.h"
#include "poller/wakefd.h"

#define MAX_BATCH 128

static int epfd = -1;
static np__wakefd wakefd = { -1, -1 };
static _Atomic int wake_pending; /* 1 while a signal is outstanding */

/* epoll_pwait2 (Linux 5.11) takes a timespec, so sub-millisecond delays are
 * honoured exactly. Older kernels say ENOSYS once; then we round up to
 * milliseconds for epoll_wait. NP_EPOLL_NO_PWAIT2 builds the fallback alone,
 * so the tests cover it on any kernel. */
/* Not under ThreadSanitizer: a raw system call, where a signal's handler
 * waits until the sleep ends (base/sanitizer.h); epoll_wait is a call it
 * intercepts, and runs handlers in. */
#if defined(SYS_epoll_pwait2) && !defined(NP_EPOLL_NO_PWAIT2) && !defined(NP_TSAN)
#define USE_PWAIT2 1
#else
#define USE_PWAIT2 0
#endif
#if USE_PWAIT2
static _Atomic int no_pwait2;
#endif

const char *np_poller_name(void)
{
    return NP_POLLER_NAME;
}

int np__poller_init(void)
{
    np__assert(epfd < 0);
    int rc = 0;
    epfd = NP__SYS(epoll_create1(EPOLL_CLOEXEC));
    if (epfd < 0)
        return epfd;
    rc = np__wakefd_open(&wakefd);
    if (rc < 0)
        goto fail_epoll;
    /* Edge-triggered and never drained where the descriptor allows it (see
     * wakefd.h): a woken poller then goes straight back to work. */
    struct epoll_event ev = { .events = EPOLLIN | (np__wakefd_undrained_ok ? EPOLLET : 0),
                              .data.u64 = NP__POLLREG_NO_TAG };
    rc = NP__SYS(epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd.rfd, &ev));
    if (rc < 0)
        goto fail_wake;
    atomic_store(&wake_pending, 0);
    return 0;
fail_wake:
    np__wakefd_close(&wakefd);
fail_epoll:
    close(epfd);
    epfd = -1;
    return rc;
}

void np__poller_fini(void)
{
    np__assert(epfd >= 0);
    np__wakefd_close(&wakefd);
    close(epfd);
    epfd = -1;
}

int np__poller_open(np__pollreg *reg)
{
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET,
        .data.u64 = np__pollreg_tag(reg),
    };
    return NP__SYS(epoll_ctl(epfd, EPOLL_CTL_ADD, reg->fd, &ev));
}

int np__poller_close(np__pollreg *reg)
{
    /* Retire first: an event already harvested by a concurrent poll then
     * fails the tag check and is dropped. */
    np__pollreg_retire(reg);
    return NP__SYS(epoll_ctl(epfd, EPOLL_CTL_DEL, reg->fd, NULL));
}

int np__poller_arm(np__pollreg *reg, int mode)
{
    (void)reg;
    (void)mode;
    return 0; /* edge-triggered: armed once, at open */
}

/* The number of events, or -errno. */
static int wait_events(struct epoll_event *evs, int n, int64_t delay_ns)
{
    if (delay_ns <= 0)
        return NP__SYS(epoll_wait(epfd, evs, n, delay_ns < 0 ? -1 : 0));
#if USE_PWAIT2
    if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        struct timespec ts = np__ns_to_timespec(delay_ns);
        int r = (int)NP__SYS(syscall(SYS_epoll_pwait2, epfd, evs, n, &ts, NULL, 0));
        if (r != -ENOSYS)
            return r;
        atomic_store_explicit(&no_pwait2, 1, memory_order_relaxed);
    }
#endif
    int64_t ms = delay_ns / NP_MILLISECOND + (delay_ns % NP_MILLISECOND != 0);
    return NP__SYS(epoll_wait(epfd, evs, n, ms > INT_MAX ? INT_MAX : (int)ms));
}

static uint8_t mode_of(uint32_t events)
{
    uint8_t mode = 0;
    /* A hang-up or an error ends waits in both directions: the next syscall
     * reports what happened. */
    if (events & (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        mode |= NP__POLL_READ;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        mode |= NP__POLL_WRITE;
    return mode;
}

int np__poller_poll(int64_t delay_ns, np__pollev *out, int cap)
{
    struct epoll_event evs[MAX_BATCH];
    np__assert(cap > 0);
    int n = wait_events(evs, cap < MAX_BATCH ? cap : MAX_BATCH, delay_ns);
    np__pollreg_batch_begin(); /* before any resolve; the caller ends it */
    if (n < 0) {
        int err = -n;
        if (err == EINTR)
            return 0; /* the caller recomputes its delay */
        NP__PANIC("epoll_wait on fd %d: %s", epfd, np_strerror(err));
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        uint64_t tag = evs[i].data.u64;
        if (tag == NP__POLLREG_NO_TAG) {
            if (delay_ns != 0) {
                if (!np__wakefd_undrained_ok)
                    np__wakefd_drain(&wakefd);
                atomic_store(&wake_pending, 0);
            } else if (np__wakefd_undrained_ok) {
                /* A poll that does not block must leave the wake for the
                 * next one that does (Go 42515), but it has taken the
                 * edge: raise another. Rare: wakes are meant for pollers
                 * that block. */
                np__wakefd_signal(&wakefd);
            }
            continue;
        }
        np__pollreg *reg = np__pollreg_resolve(tag);
        if (!reg)
            continue; /* closed since the kernel queued this */
        uint8_t mode = mode_of(evs[i].events);
        if (!mode)
            continue;
        out[k].reg = reg;
        out[k].mode = mode;
        out[k].err = evs[i].events == EPOLLERR;
        out[k].hup = (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI)) != 0;
        k++;
    }
    return k;
}

void np__poller_wake(void)
{
    /* A full-barrier exchange, as Go's CAS: whatever the caller published
     * before waking (a queued task, an earlier timer) is ordered before the
     * flag, and the poller clears the flag before it looks for work. Only the
     * 0 -> 1 transition costs a syscall. */
    if (atomic_exchange(&wake_pending, 1) == 0)
        np__wakefd_signal(&wakefd);
}

const bool np__poller_short_read_waits = true;

bool np__poller_is_poll_descriptor(int fd)
{
    return fd >= 0 && (fd == epfd || np__wakefd_owns(&wakefd, fd));
}
