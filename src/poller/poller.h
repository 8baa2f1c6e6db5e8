/* The poller backend contract.
 *
 * One backend per file, each implementing exactly these functions with its
 * state private to the file; CMake links exactly one into the library
 * (-DNP_POLLER=epoll|poll|kqueue, -DNP_WAKE=eventfd|pipe) and builds every
 * other one available on the platform for the contract tests.
 *
 *   poller_epoll.c  Linux epoll, edge-triggered, registered once per fd.
 *                   Woken through wakefd_eventfd.c or wakefd_pipe.c.
 *   poller_poll.c   poll(2), level-triggered and armed per wait (one-shot),
 *                   as Go does on AIX and Solaris. Any POSIX system.
 *   poller_kqueue.c macOS and the BSDs (and Linux with libkqueue), EV_CLEAR,
 *                   registered once. Woken through kqwake_user.c
 *                   (EVFILT_USER) or kqwake_pipe.c (OpenBSD, NetBSD < 10).
 *
 * The poller is a process-wide singleton, like Go's.
 *
 * Concurrency. np__poller_poll is called by one thread at a time (the thread
 * that "owns" the poller for that call). Every other function may be called
 * from any thread at any time between init and fini, including while another
 * thread is blocked in np__poller_poll: open, arm and close take effect for
 * the blocked poll (a closed registration's events are never returned), and
 * wake makes it return. init and fini must not run concurrently with anything.
 */
#ifndef NP_POLLER_H
#define NP_POLLER_H

#include <stdbool.h>
#include <stdint.h>

#include "poller/pollreg.h"

enum {
    NP__POLL_READ = 1,  /* wake readers */
    NP__POLL_WRITE = 2, /* wake writers */
    NP__POLL_HUP = 4,   /* np__pd_ready only: the event's hup (below) */
};

/* One ready descriptor, as handed back by np__poller_poll. */
typedef struct np__pollev {
    np__pollreg *reg; /* a registration that is open and current */
    uint8_t mode;     /* NP__POLL_READ, NP__POLL_WRITE or both; never 0 */
    bool err;         /* an error and nothing else was reported (EPOLLERR
                       * alone, POLLERR without POLLIN/POLLOUT/POLLHUP): the
                       * descriptor cannot usefully be waited on any more. An
                       * error that comes with readiness or hang-up (a reset
                       * socket, an ICMP error on UDP) leaves err false: the
                       * next syscall reports it more precisely. As in Go.
                       * kqueue only has EV_ERROR (a failed registration) to
                       * report: its reader-less pipe looks like a half-closed
                       * socket (EV_EOF), which must stay readable. */
    bool hup;         /* the read side has ended or stops short: end of
                       * stream, hang-up, error or TCP urgent data
                       * (EPOLLRDHUP/EPOLLHUP/EPOLLERR/EPOLLPRI, kqueue EV_EOF
                       * on the read filter or EV_ERROR, POLLHUP/POLLERR/
                       * POLLNVAL). A read may then stop short without
                       * emptying the socket, and no new event need come. */
} np__pollev;

/* Creates the poller and its wake-up mechanism. 0 or -errno. */
int np__poller_init(void);

/* Releases everything init created. No registration may still be open. */
void np__poller_fini(void);

/* Registers reg->fd (set by the caller; reg is type-stable, see pollreg.h)
 * for read and write notification for the rest of its life: edge-triggered
 * where the kernel has it. 0 or -errno (-EPERM: fd cannot be polled, e.g. a
 * regular file under epoll). */
int np__poller_open(np__pollreg *reg);

/* Unregisters reg and retires its tag before the caller closes reg->fd: no
 * event for this registration is returned after close returns, not even one
 * already harvested by a poll running concurrently. 0 or -errno. */
int np__poller_close(np__pollreg *reg);

/* Declares that a waiter is about to wait for mode on reg. Level-triggered
 * backends watch a direction only while it is armed, and disarm it once they
 * report it; edge-triggered backends do nothing. Call it before every wait.
 * 0 or -EBADF if reg is not open. */
int np__poller_arm(np__pollreg *reg, int mode);

/* Waits for readiness:
 *   delay_ns <  0  block until something is ready or a wake;
 *   delay_ns == 0  do not block;
 *   delay_ns >  0  block for at most that many nanoseconds. It never returns
 *                  early for want of timer precision (a delay below the
 *                  kernel's granularity rounds up, never down to 0), and
 *                  never busy-waits.
 * Writes up to cap events to out and returns how many (>= 0). It may return
 * 0 before the delay ends: after a wake, or when a signal interrupted the wait
 * (EINTR), so that the caller recomputes its delay. A descriptor with more
 * events than cap allows keeps the rest for the next call.
 *
 * Every call returns with a resolve batch open (pollreg.h): the caller hands
 * the events on, then calls np__pollreg_batch_end().
 *
 * Wakes: a wake consumed by a blocking poll (delay != 0) is gone; a wake seen
 * by a non-blocking poll stays pending, so the next blocking poll returns at
 * once (Go issue 42515: a non-blocking poll must not swallow it). */
int np__poller_poll(int64_t delay_ns, np__pollev *out, int cap);

/* Makes a blocked np__poller_poll return, or the next blocking one return at
 * once. Any thread. Coalesced: while one wake is pending, further wakes cost
 * one atomic load and no syscall. */
void np__poller_wake(void);

/* Whether fd is one of the poller's own descriptors (epoll fd, wake fds). */
bool np__poller_is_poll_descriptor(int fd);

/* True if, after a read that stopped short, new data, the end of the
 * stream, an error or TCP urgent data (at whose mark a read stops without
 * emptying the socket) is sure to be reported, or marked `hup`, so that
 * the next read may wait for the poller first (net.c). epoll (with EPOLLPRI
 * watched) and poll(2) (which looks at the level) are; kqueue is not
 * relied on for urgent data. */
extern const bool np__poller_short_read_waits;

#endif
