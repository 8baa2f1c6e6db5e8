/* The registration table: index -> registration, for resolving event tags.
 *
 * Two levels: a fixed array of chunk pointers, each chunk an array of
 * registration pointers. Chunks are allocated on demand and never freed, so a
 * lookup needs no lock: an index below the published count always finds its
 * chunk and its (type-stable) registration. Adding a registration takes a
 * mutex, but that happens once per registration for the life of the process,
 * when the descriptor cache carves new memory, never per open/close.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "base/np_assert.h"
#include "poller/pollreg.h"

#define CHUNK_SHIFT 12
#define CHUNK_SIZE (1u << CHUNK_SHIFT)
#define NUM_CHUNKS 4096u /* 4096 * 4096 = 16M registrations */

typedef np__pollreg *_Atomic chunk_t[CHUNK_SIZE];

static chunk_t *_Atomic chunks[NUM_CHUNKS];
static uint32_t count; /* under lock */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

int np__pollreg_init(np__pollreg *reg)
{
    int rc = 0;
    pthread_mutex_lock(&lock);
    if (count >= NUM_CHUNKS * CHUNK_SIZE) {
        rc = -ENOMEM;
        goto out;
    }
    uint32_t idx = count;
    chunk_t *chunk = atomic_load_explicit(&chunks[idx >> CHUNK_SHIFT], memory_order_relaxed);
    if (!chunk) {
        chunk = calloc(1, sizeof *chunk);
        if (!chunk) {
            rc = -ENOMEM;
            goto out;
        }
        atomic_store_explicit(&chunks[idx >> CHUNK_SHIFT], chunk, memory_order_release);
    }
    reg->index = idx;
    reg->fd = -1;
    /* Publishing the pointer last makes the registration's fields visible to
     * any thread that resolves a tag naming it. */
    atomic_store_explicit(&(*chunk)[idx & (CHUNK_SIZE - 1)], reg, memory_order_release);
    count++;
out:
    pthread_mutex_unlock(&lock);
    return rc;
}

np__pollreg *np__pollreg_resolve(uint64_t tag)
{
    uint32_t idx = (uint32_t)(tag >> 32);
    uint32_t seq = (uint32_t)tag;
    if (idx >= NUM_CHUNKS * CHUNK_SIZE)
        return NULL;
    chunk_t *chunk = atomic_load_explicit(&chunks[idx >> CHUNK_SHIFT], memory_order_acquire);
    np__assert(chunk != NULL); /* a tag is only ever made from a registered reg */
    np__pollreg *reg = atomic_load_explicit(&(*chunk)[idx & (CHUNK_SIZE - 1)], memory_order_acquire);
    np__assert(reg != NULL);
    /* seq_cst: ordered against the batch_begin before it and the retire +
     * quiesce of a closing thread (see np__pollreg_quiesce). */
    if (atomic_load(&reg->seq) != seq)
        return NULL;
    return reg;
}

_Atomic uint64_t np__pollreg_epoch;

/* Called after np__pollreg_retire. If the resolve of a batch read the old
 * seq, it came before the retire, and the batch_begin before it; so this load
 * sees that batch open (odd) or a later epoch, and we wait for it to move on.
 * Batches are short (no blocking while one is open), so a yielding spin. */
void np__pollreg_quiesce(void)
{
    uint64_t e = atomic_load(&np__pollreg_epoch);
    if (!(e & 1))
        return;
    while (atomic_load(&np__pollreg_epoch) == e)
        sched_yield();
}
