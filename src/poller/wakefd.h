/* A descriptor that can be made readable from any thread: how a poller
 * blocked in epoll_wait or poll(2) is woken. Two variants implement these
 * functions, one per file, chosen at build time:
 *
 *   wakefd_eventfd.c  Linux eventfd: one descriptor, an 8-byte counter.
 *   wakefd_pipe.c     a non-blocking pipe: portable to any POSIX system.
 *
 * The coalescing (at most one signal outstanding) is the caller's job; these
 * functions only move bytes. Both descriptors are non-blocking and
 * close-on-exec.
 */
#ifndef NP_WAKEFD_H
#define NP_WAKEFD_H

#include <stdbool.h>

typedef struct np__wakefd {
    int rfd; /* watch this one for readability */
    int wfd; /* signal through this one (== rfd for eventfd) */
} np__wakefd;

int  np__wakefd_open(np__wakefd *w);   /* 0 or -errno */
void np__wakefd_close(np__wakefd *w);
void np__wakefd_signal(np__wakefd *w); /* makes rfd readable; idempotent */
void np__wakefd_drain(np__wakefd *w);  /* makes rfd not readable */
bool np__wakefd_owns(const np__wakefd *w, int fd);

/* True if every signal raises a new readiness edge and the descriptor can
 * never fill up: then a poller may watch it edge-triggered and never drain
 * it, saving a syscall per wake-up. The eventfd's counter: each write wakes
 * its watchers, and it saturates only after 2^64 - 2 signals. A pipe fills
 * after 64 KiB, so it is drained. */
extern const bool np__wakefd_undrained_ok;

#endif
