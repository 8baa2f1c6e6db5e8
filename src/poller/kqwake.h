/* How the kqueue backend wakes a thread blocked in kevent(). Two variants
 * implement these functions, one per file, chosen at build time
 * (NP_KQUEUE_WAKE in cmake/NetpollOptions.cmake):
 *
 *   kqwake_user.c  an EVFILT_USER event, registered EV_CLEAR and fired with
 *                  NOTE_TRIGGER: no descriptor at all. macOS, FreeBSD,
 *                  DragonFly, NetBSD >= 10 (and libkqueue).
 *   kqwake_pipe.c  the read end of a non-blocking pipe (wakefd_pipe.c),
 *                  watched with EVFILT_READ, level-triggered: any kqueue,
 *                  in particular OpenBSD and NetBSD < 10. Built wherever
 *                  kqueue is, so its contract tests run there too.
 *
 * Either way the wake event carries the tag NP__POLLREG_NO_TAG in udata, so
 * the poll loop tells it from a registration without asking this unit.
 *
 * The two differ in what reporting the event does to it, hence two "after
 * the event was reported" calls: the EV_CLEAR user event is consumed by
 * being reported, the pipe stays readable until it is read. The coalescing
 * (at most one wake outstanding) is the caller's job.
 */
#ifndef NP_KQWAKE_H
#define NP_KQWAKE_H

#include <stdbool.h>

/* Creates what the variant needs and registers it with kq. 0 or -errno. */
int np__kqwake_open(int kq);

/* Releases what open created. Before kq itself is closed. */
void np__kqwake_close(void);

/* Makes the wake event pending: the next kevent() on kq reports it, or a
 * blocked one returns with it. Any thread; idempotent. */
void np__kqwake_signal(int kq);

/* A blocking poll reported the wake event and consumed the wake: make it not
 * pending any more. */
void np__kqwake_drain(int kq);

/* A non-blocking poll reported the wake event but must not consume it (Go
 * issue 42515): make sure it is still pending for the next poll. */
void np__kqwake_keep(int kq);

/* Whether fd is one of this unit's descriptors. */
bool np__kqwake_owns(int fd);

#endif
