/* Channels: internal interface shared by chan.c and select.c.
 *
 * A channel lives in a slot of a table whose chunks are never freed, so a
 * stale or forged handle always lands on a valid struct whose generation
 * says "not yours" (as np_conn's do). The generation is odd while the slot
 * is in use. Everything below `lock` is guarded by it, and every operation
 * re-checks the generation once it holds the lock: a free (which takes the
 * lock) cannot pull the buffer from under it.
 *
 * Blocked senders and receivers wait in sendq / recvq (wait.h's nodes). A
 * send that finds a receiver waiting copies its element straight into the
 * receiver's memory and readies it (Go's direct send); a receive that finds
 * a sender waiting takes its element (unbuffered), or the buffer's head and
 * refills the tail from the sender (buffered, full).
 */
#ifndef NP_SYNC_CHAN_H
#define NP_SYNC_CHAN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sync/wait.h"

typedef struct np__chan {
    _Atomic int lock;
    _Atomic uint32_t gen;     /* odd while in use */
    uint32_t index;           /* slot number */
    bool closed;
    size_t elem_size, cap;
    char *buf;                /* cap * elem_size bytes (NULL if either is 0) */
    size_t head, count;       /* ring buffer */
    np__wqueue recvq, sendq;
    struct np__chan *next_free;
} np__chan;

/* The slot a handle names, if its generation matches (unlocked look: the
 * caller locks and checks again with np__chan_live). NULL: -EBADF. */
np__chan *np__chan_lookup(uint64_t id);

/* Under c's lock: whether c is still the channel id names. */
bool np__chan_live(const np__chan *c, uint64_t id);

/* Under c's lock, without blocking: performs a send (recv) if one can
 * proceed now. Returns 1 if done (*result: 0 or -EPIPE), 0 if it would
 * block. A waiter it completed is returned in *wake (ready it after
 * unlocking), else *wake is NULL. */
int np__chan_try_send(np__chan *c, const void *elem, int *result, np__wrec **wake);
int np__chan_try_recv(np__chan *c, void *elem, int *result, np__wrec **wake);

#endif
