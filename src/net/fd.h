/* File descriptors: Go's fdMutex, the I/O loops' locking, and the handle
 * table that makes np_conn / np_listener safe values.
 *
 * The state word (one atomic uint64):
 *
 *   63        43 42        23 22             3   2      1       0
 *   +-----------+-----------+----------------+------+-------+--------+
 *   | write     | read      | references     | write| read  | closed |
 *   | waiters   | waiters   | (calls inside) | lock | lock  |        |
 *   +-----------+-----------+----------------+------+-------+--------+
 *
 * - A call takes a reference (incref) for as long as it uses the fd; reads
 *   and writes also take the read or write lock, so reads on one fd are
 *   serialised, and so are writes. Waiters for a lock sleep on a semaphore.
 * - close sets `closed` (then nothing new gets in), wakes every lock waiter
 *   (their calls fail) and the poll descriptor's waiters (-ECANCELED), and
 *   drops its own reference; whoever drops the last reference destroys the
 *   fd: unregisters it from the poller and close(2)s it exactly once. So the
 *   fd number is never closed while a call is inside a syscall on it.
 */
#ifndef NP_FD_H
#define NP_FD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "pd/pd.h"
#include "pd/sema.h"
#include "runtime/scheduler.h"

enum { NP__FD_CONN = 1, NP__FD_LISTENER = 2 };

typedef struct np__fd {
    _Atomic uint64_t state;   /* see above */
    _Atomic uint32_t gen;     /* handle generation: odd while in use */
    uint32_t index;           /* slot number in the table */
    np__sema rsema, wsema;    /* read / write lock waiters */
    int kind;                 /* NP__FD_CONN or NP__FD_LISTENER */
    int sysfd;
    int family;               /* AF_INET, AF_INET6, AF_UNIX; AF_UNSPEC if
                               * not a socket (an adopted pipe, tty, ...) */
    int sotype;               /* SOCK_STREAM, SOCK_DGRAM, or 0: not a
                               * socket (read/write, not recv/send) */
    np__pd *pd;
    bool read_drained;        /* under the read lock: the last read was short */
    int pending_err;          /* under the read lock: an error np_wait_readable
                               * took from the socket, for the next read */
    bool connected;           /* made by np_dial (a datagram socket: np_write_to
                               * is refused, as Go's WriteTo on a dialed conn) */
    bool dual_stack;          /* an IPv6 socket that also serves IPv4 */
    char *unlink_path;        /* listener's Unix socket file, removed by
                               * np__fd_close (the closer owns it then) */
    _Atomic bool unlinking;   /* unlink_path is set and not yet removed: a
                               * second closer waits for it (np__fd_close) */
    struct np__fd *next_free;
} np__fd;

/* Handles made and not yet closed, by kind (np_stats). */
void np__fd_open_counts(int64_t *conns, int64_t *listeners);

/* For a close that found the handle id already closed (-EBADF): returns
 * once the first closer has removed a Unix listener's file. As Go's second
 * Close waits on the first one's unlink, -EBADF from a close means the
 * handle is gone, file included. The wait is one unlink(2) by a running
 * thread: closing never parks between marking the fd and the unlink. */
void np__fd_close_wait(uint64_t id);

/* Allocates a table slot for sysfd (opens its poll descriptor) and returns
 * the handle id; *out gets the fd with one reference held by the caller,
 * released with np__fd_decref. -EMFILE-like errors from the pd layer. */
int np__fd_new(int sysfd, int kind, int family, np__fd **out, uint64_t *id);

/* As np__fd_new, with the socket type and the file to remove at close set
 * before the handle exists (it owns unlink_path then, even on failure):
 * np_run's end may close a handle the moment it exists. */
int np__fd_new_full(int sysfd, int kind, int family, int sotype, char *unlink_path, np__fd **out,
                    uint64_t *id);

/* Looks a handle up and takes a reference: NULL (-EBADF) if the id is zero,
 * stale, forged, of another kind, or closed. */
np__fd *np__fd_get(uint64_t id, int kind);

/* Drops a reference; the last one after close destroys the fd. */
void np__fd_decref(np__fd *fd);

/* Takes the read (or write) lock and a reference, waiting behind another
 * reader (writer). False if the fd is or gets closed. */
bool np__fd_lock(np__fd *fd, bool read);
void np__fd_unlock(np__fd *fd, bool read);

/* A blocking net call from a plain thread with no runtime running: -ESRCH,
 * as the contract says (nothing could wake it). Tasks always have one. */
static inline bool np__no_runtime(void)
{
    return !np__sched_current_task() && !np__runtime_running();
}

/* Marks the fd closed, wakes every waiter, and drops the caller's reference
 * (taken by np__fd_get). -EBADF if it was already closed. */
int np__fd_close(np__fd *fd);

/* At the end of np_run (the scheduler's stop hook): closes every handle
 * still open, and returns once every fd is destroyed, so none outlives the
 * poller it is registered with. Later calls on those handles get -EBADF. */
void np__fd_close_all(void);

#endif
