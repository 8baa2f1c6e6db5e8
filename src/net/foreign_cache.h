/* np_wait_fd's cache of registrations (foreign_cache.c), used by the wait
 * itself (foreign_wait.c).
 *
 * One entry per descriptor number the program waits on: a duplicate of the
 * descriptor (ours alone, so removing its registration never removes
 * another's, and the caller's descriptor and flags are left alone), the
 * duplicate's registration with the poller (edge-triggered where the
 * poller has it), the open file's identity, and the waits queued on it.
 *
 * Lifetime. An entry is found by number while it is current (in the
 * table). It leaves the table when retired (fd was found closed, or naming
 * another file), or when no wait has used it for a while (housekeeping:
 * NP__FW_LINGER_NS / 2 to NP__FW_LINGER_NS after its last wait ended). The
 * last reference to a retired entry closes the duplicate. The end of
 * np_run closes every entry (its hook: foreign_cache.c).
 *
 * Housekeeping: one timer for the whole cache, pending while a wait is
 * parked or an entry idles. While waits are parked it checks, for each
 * entry with waits, that its number still names its file, and retires the
 * ones that do not (their waits end with -EBADF): first 10 ms after a wait
 * parks on a quiet cache, then at intervals doubling to 1 s. Every
 * NP__FW_LINGER_NS / 2 while the table holds entries, it closes those no
 * wait has used since its last sweep. Its pending time is also what
 * tells the scheduler that a parked task may still get an event (a parked
 * np_wait_fd is no pd semaphore waiter).
 */
#ifndef NP_FOREIGN_CACHE_H
#define NP_FOREIGN_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "pd/pd.h"
#include "sync/wait.h"

/* include/netpoll.h states these figures. */
#define NP__FW_LINGER_NS (100 * NP_MILLISECOND) /* an idle entry is kept
                                                 * LINGER/2 to LINGER */
#define NP__FW_CHECK_FIRST_NS (10 * NP_MILLISECOND)
#define NP__FW_CHECK_MAX_NS NP_SECOND

/* Results a waker writes into a queued wait besides readiness bits. */
#define NP__FW_RETIRED (-EBADF) /* fd no longer names the entry's file */
#define NP__FW_STOPPED (-ESRCH) /* np_run ended */

typedef struct np__fw_ent {
    _Atomic int lock;       /* guards got, waiters, dead */
    int got;                /* NP_ bits reported and not yet seen low */
    np__wqueue waiters;     /* queued waits; node->index: the bits wanted */
    bool dead;              /* retired or stopped: no new waits */

    /* Fixed once the entry is in the table. */
    int fd;                 /* the caller's number */
    int dup;                /* ours */
    np__pd *pd;             /* dup's registration; NULL: the poller cannot
                             * watch it (a regular file): ready at once */
    dev_t dev;              /* the file's identity where kcmp is missing */
    ino_t ino;
    mode_t type;
    int modes;              /* a FIFO's: what its open file can report (its
                             * access mode), as NP_ bits */
    _Atomic bool closed;    /* dup and pd released (np_run ended) */

    /* Guarded by the table lock. */
    int refs;               /* waits (and housekeeping) using the entry */
    bool in_table;          /* current; else freed by the last put */
    bool used;              /* a wait ended since the last sweep */
    struct np__fw_ent *prev, *next; /* every entry not yet freed */
    struct np__fw_ent *work;        /* housekeeping's private lists */
} np__fw_ent;

/* fd's current entry with a reference, made now if there is none (*fresh:
 * made from fd by this call, so it names fd's file). 0 or -errno (-EBADF:
 * fd is not open). Inside the runtime (np__runtime_enter). */
int np__fw_acquire(int fd, np__fw_ent **out, bool *fresh);

/* Drops a reference. may_close: inside the runtime, so the poller still
 * exists; a plain thread back after np_run's end passes false (np_run
 * closed the entry already). */
void np__fw_put(np__fw_ent *e, bool may_close);

/* fd was found closed or naming another file: takes e out of the table
 * and ends its queued waits with NP__FW_RETIRED. */
void np__fw_retire(np__fw_ent *e);

/* Takes self (if not NULL) off e's queue, adds bits to e->got and hands
 * them to the queued waits that want them, in one go. Returns whether self
 * was still queued (else a waker has claimed it). */
bool np__fw_deliver(np__fw_ent *e, int bits, np__wnode *self);

/* Whether fd names e's file, for a wait on want (0: exactly, whatever is
 * waited for). Exactly: the same open file description (kcmp), or where
 * kcmp is missing the same st_dev, st_ino and type (fstat). For sockets,
 * and pipes whose open file reports every direction in want, fstat's
 * answer, which is as good there (foreign_cache.c). */
bool np__fw_names_file(int fd, np__fw_ent *e, int want);

/* A wait is about to park: makes sure housekeeping watches. Call after
 * queueing the wait. Cheap when it already does. */
void np__fw_watch(void);

#endif
