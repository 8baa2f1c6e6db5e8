/* Poller registrations and their tags.
 *
 * A registration is what the backend knows of one descriptor: its fd and a
 * sequence number. The backend hands the kernel a 64-bit tag
 *
 *     63            32 31             0
 *    +----------------+----------------+
 *    |  table index   |   seq at open  |
 *    +----------------+----------------+
 *
 * and, when an event comes back, resolves the tag to the registration only if
 * the registration's seq still equals the tagged one. Closing a registration
 * retires it (seq++), so an event the kernel queued, or a poll thread
 * harvested, before the close is dropped instead of reaching the descriptor's
 * next owner.
 *
 * Resolving a tag reads the registration through a table of pointers, so
 * registrations must be type-stable: once given to np__pollreg_init they are
 * never freed while the process lives (the descriptor cache carves them from
 * memory it never returns). The table index is assigned once and kept.
 */
#ifndef NP_POLLREG_H
#define NP_POLLREG_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct np__pollreg {
    _Atomic uint32_t seq; /* generation; tags carrying another value are stale */
    uint32_t index;       /* permanent slot in the registration table */
    int fd;               /* registered descriptor; constant while open */
} np__pollreg;

/* Tag value no registration ever has (index UINT32_MAX is never issued);
 * backends use it for their own wake-up descriptor. */
#define NP__POLLREG_NO_TAG UINT64_MAX

/* Gives reg a permanent table slot. reg must never be freed afterwards.
 * Returns 0, or -ENOMEM when the table (2^24 registrations) is full. */
int np__pollreg_init(np__pollreg *reg);

/* The tag for reg's current generation. */
static inline uint64_t np__pollreg_tag(np__pollreg *reg)
{
    uint32_t seq = atomic_load_explicit(&reg->seq, memory_order_relaxed);
    return ((uint64_t)reg->index << 32) | seq;
}

/* reg if tag names its current generation, else NULL. */
np__pollreg *np__pollreg_resolve(uint64_t tag);

/* Invalidates every tag issued so far for reg. Sequentially consistent, not
 * merely release: np__pollreg_quiesce's argument needs this increment and
 * its own epoch load in the single total order that also holds the poller's
 * batch_begin and its seq load in np__pollreg_resolve (a store-load
 * pattern, which release/acquire does not order). */
static inline void np__pollreg_retire(np__pollreg *reg)
{
    atomic_fetch_add_explicit(&reg->seq, 1, memory_order_seq_cst);
}

/* Resolve epochs.
 *
 * Resolving a tag and handing the registration on (readying its waiters) are
 * two steps; a registration retired and reused between them would receive
 * its previous owner's event. So a poller resolves a batch of tags inside an
 * epoch: the backend opens it (np__pollreg_batch_begin, after the kernel
 * wait returned and before the first resolve) and the caller of
 * np__poller_poll closes it (np__pollreg_batch_end) once every event is
 * handed on. Whoever retires a registration and wants to reuse it calls
 * np__pollreg_quiesce, which returns once no batch that could have resolved
 * the old tag is still open. Only one batch is open at a time (one thread
 * polls at a time). */
extern _Atomic uint64_t np__pollreg_epoch; /* odd while a batch is open */

static inline void np__pollreg_batch_begin(void)
{
    uint64_t e = atomic_fetch_add(&np__pollreg_epoch, 1);
    (void)e;
}

static inline void np__pollreg_batch_end(void)
{
    atomic_fetch_add(&np__pollreg_epoch, 1);
}

void np__pollreg_quiesce(void);

#endif
