/* Task stacks, the CARVED layout: the slots of chunks (up to 64 slots
 * each, guard regions by MADV_GUARD_INSTALL); freed slots that keep their
 * memory (dirty), released in batches. Chunks come from arenas and empty
 * ones go back to them (stack_arena.c). The layouts' common part and the
 * MAPPED fallback are stack.c's. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

#include "base/np_assert.h"
#include "base/sys.h"
#include "os/os.h"
#include "base/sanitizer.h"
#include "runtime/stack_layout.h"

#define DIRTY_SLOTS 512 /* free slots keeping memory, all chunks (and NP__STACK_DIRTY_BYTES) */

/* CARVED: chunks of slots, guard regions by MADV_GUARD_INSTALL -------------
 *
 * A chunk is nslots slots of an arena (stack_arena.c). Its free slots are the bits of
 * `free`; `dirty` marks those of them whose memory may still be resident
 * (returned by a task, not released since). Chunks with a free slot are on
 * the `partial` list; chunks with a dirty slot on the `dirty` list. A slot is
 * taken from the first partial chunk, a dirty one first (its pages are
 * warm). All under one lock, taken only when a worker's own pool of stacks
 * (stack_cache.c) is empty or full.
 *
 * A chunk is on the partial list exactly while `free` is not 0, and on the
 * dirty list exactly while `dirty` is not 0. A release batch claims the
 * dirty slots of the chunks it takes off the dirty list (clears their free
 * bits) and marks them `releasing`: such a chunk is never retired by
 * another thread meanwhile, as the batch comes back to it after dropping
 * the lock. (A chunk left on the dirty list with no dirty slot, once taken
 * by a batch, was unmapped under it and unmapped again later, by then
 * maybe another chunk's memory: two tasks ran on one stack.) */

/* madvise over n ranges. One process_madvise call where the kernel takes
 * it for the calling process with any advice (Linux 6.13; PIDFD_SELF 6.15),
 * which also flushes the TLBs once for the lot (6.16), instead of once per
 * range on every CPU running a worker; else one madvise per range. 0, or -1
 * if some range failed. */
#if defined(SYS_process_madvise)
static _Atomic int batch_broken;
#endif

int np__madvise_many(const struct iovec *iov, int n, int advice)
{
    if (n == 0)
        return 0;
#if defined(SYS_process_madvise)
    bool try_batch = n > 1 && !atomic_load_explicit(&batch_broken, memory_order_relaxed);
#ifdef NP_VALGRIND
    if (RUNNING_ON_VALGRIND)
        try_batch = false; /* it may not know the call */
#endif
    bool batch_failed = false;
    if (try_batch) {
        size_t total = 0;
        for (int i = 0; i < n; i++)
            total += iov[i].iov_len;
        long r = syscall(SYS_process_madvise, PIDFD_SELF_THREAD, iov, (size_t)n, advice, 0u);
        if (r == (long)total)
            return 0;
        /* Some ranges may have been done: doing them again does no harm. */
        batch_failed = r < 0;
    }
#endif
    int rc = 0;
    for (int i = 0; i < n; i++)
        if (madvise(iov[i].iov_base, iov[i].iov_len, advice) != 0)
            rc = -1;
#if defined(SYS_process_madvise)
    /* The ranges were fine but the call was not: this kernel lacks it. */
    if (batch_failed && rc == 0)
        atomic_store_explicit(&batch_broken, 1, memory_order_relaxed);
#endif
    return rc;
}

typedef struct np__stack_chunk chunk;

static struct {
    pthread_mutex_t lock;
    chunk *partial;
    chunk *dirty;
    long ndirty;                  /* dirty slots in all chunks */
    size_t dirty_bytes;           /* their stacks' sizes, guards left out */
    long nchunks;
} C = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void partial_add(chunk *c)
{
    c->on_partial = true;
    c->prev = NULL;
    c->next = C.partial;
    if (C.partial)
        C.partial->prev = c;
    C.partial = c;
}

static void partial_remove(chunk *c)
{
    c->on_partial = false;
    if (c->prev)
        c->prev->next = c->next;
    else
        C.partial = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static void dirty_add(chunk *c)
{
    c->on_dirty = true;
    c->dprev = NULL;
    c->dnext = C.dirty;
    if (C.dirty)
        C.dirty->dprev = c;
    C.dirty = c;
}

static void dirty_remove(chunk *c)
{
    c->on_dirty = false;
    if (c->dprev)
        c->dprev->dnext = c->dnext;
    else
        C.dirty = c->dnext;
    if (c->dnext)
        c->dnext->dprev = c->dprev;
}

/* The bytes of stack in one of c's slots: what a freed slot may keep. */
static size_t slot_stack_bytes(const chunk *c)
{
    return c->slot_size - np__stack_guard_size();
}

/* Dirty slots keep their memory for the next stack: up to DIRTY_SLOTS of
 * them, and NP__STACK_DIRTY_BYTES of stack (a few large stacks fill it sooner).
 * Under the lock. */
static void dirty_count(chunk *c, long slots)
{
    C.ndirty += slots;
    C.dirty_bytes += (size_t)slots * slot_stack_bytes(c);
}

static bool dirty_over(void)
{
    return C.ndirty > DIRTY_SLOTS || C.dirty_bytes > NP__STACK_DIRTY_BYTES;
}

/* c is going: takes it off the dirty list; returns the bytes of stack its
 * dirty slots may still hold. Under the lock. */
static size_t dirty_take_all(chunk *c)
{
    if (!c->on_dirty)
        return 0;
    long n = __builtin_popcountll(c->dirty);
    dirty_remove(c);
    dirty_count(c, -n);
    return (size_t)n * slot_stack_bytes(c);
}

static char *slot_at(const chunk *c, unsigned i)
{
    return c->base + (size_t)i * c->slot_size;
}

/* A slot of c, which has a free one, under the lock. */
static char *take_slot(chunk *c)
{
    uint64_t warm = c->free & c->dirty;
    unsigned i = (unsigned)__builtin_ctzll(warm ? warm : c->free);
    uint64_t bit = (uint64_t)1 << i;
    c->free &= ~bit;
    if (c->dirty & bit) {
        c->dirty &= ~bit;
        dirty_count(c, -1);
        if (!c->dirty)
            dirty_remove(c);
    }
    if (!c->free)
        partial_remove(c);
    return slot_at(c, i);
}

/* Releases the dirty slots: every one that is dirty when it starts, in one
 * process_madvise call where the kernel has it (each call costs a TLB
 * shootdown on every CPU running a worker, so the fewer the better).
 * Outside the chunk lock: the slots' free bits are cleared meanwhile, so
 * nobody takes them and their chunk is not unmapped under us. One release
 * at a time (release_lock), which owns the static arrays: this may run on
 * a task's stack (after a switch), which has no room for them. Called and
 * returns with the chunk lock and release_lock held. */
static pthread_mutex_t release_lock = PTHREAD_MUTEX_INITIALIZER;
static chunk *rel_chunks[DIRTY_SLOTS + 1];
static uint64_t rel_bits[DIRTY_SLOTS + 1];
static struct iovec rel_iov[DIRTY_SLOTS + 1];

static void release_batch(void)
{
    int n = 0;
    while (n < DIRTY_SLOTS + 1 && C.dirty) {
        chunk *c = C.dirty;
        if (!c->dirty)
            NP__PANIC("stack chunk %p on the dirty list without a dirty slot", (void *)c);
        dirty_remove(c);
        c->releasing = true;
        rel_chunks[n] = c;
        rel_bits[n] = c->dirty;
        dirty_count(c, -__builtin_popcountll(c->dirty));
        c->free &= ~c->dirty;
        c->dirty = 0;
        if (!c->free && c->on_partial)
            partial_remove(c);
        n++;
    }
    pthread_mutex_unlock(&C.lock);
    /* Each run of adjacent slots in one range: from the first one's stack to
     * the last one's top (guard markers survive MADV_DONTNEED). */
    size_t guard = np__stack_guard_size();
    int niov = 0;
    for (int k = 0; k < n; k++) {
        uint64_t b = rel_bits[k];
        while (b) {
            unsigned lo = (unsigned)__builtin_ctzll(b);
            unsigned hi = lo;
            while (hi + 1 < 64 && (b >> (hi + 1) & 1))
                hi++;
            char *from = slot_at(rel_chunks[k], lo) + guard;
            char *to = slot_at(rel_chunks[k], hi) + rel_chunks[k]->slot_size;
            if (niov == DIRTY_SLOTS + 1) {
                (void)np__madvise_many(rel_iov, niov, MADV_DONTNEED);
                niov = 0;
            }
            rel_iov[niov++] = (struct iovec){ .iov_base = from, .iov_len = (size_t)(to - from) };
            b &= hi == 63 ? 0 : ~(uint64_t)0 << (hi + 1);
        }
    }
    (void)np__madvise_many(rel_iov, niov, MADV_DONTNEED);
    pthread_mutex_lock(&C.lock);
    for (int k = 0; k < n; k++) {
        chunk *c = rel_chunks[k];
        c->releasing = false;
        c->free |= rel_bits[k];
        if (c->free == c->all) {
            /* Every other slot came back meanwhile. */
            if (c->on_partial)
                partial_remove(c);
            size_t held = dirty_take_all(c);
            C.nchunks--;
            pthread_mutex_unlock(&C.lock);
            np__chunk_retire(c, held);
            pthread_mutex_lock(&C.lock);
        } else if (!c->on_partial) {
            partial_add(c);
        }
    }
}

/* A thread that finds release_lock taken leaves its slot dirty for the
 * releaser, which looks again before it lets go: each such thread took the
 * chunk lock while the releaser had dropped it (its trylock would
 * otherwise have succeeded), so the releaser's last look, under the chunk
 * lock, comes after it. Without that look, dirty slots could stay dirty
 * for good once the tasks stop finishing. */
static void release_dirty_locked(void)
{
    if (pthread_mutex_trylock(&release_lock) != 0)
        return;
    do
        release_batch();
    while (dirty_over() && C.dirty);
    pthread_mutex_unlock(&release_lock);
}

np__stack *np__stack_carved_map(size_t stack_size)
{
    size_t size = np__stack_slot_size(stack_size);
    char *slot = NULL;
    chunk *c;
    pthread_mutex_lock(&C.lock);
    for (c = C.partial; c; c = c->next) {
        if (c->slot_size == size) {
            slot = take_slot(c);
            break;
        }
    }
    pthread_mutex_unlock(&C.lock);
    if (!slot) {
        c = np__chunk_take(size, np__stacks_per_mapping(stack_size));
        if (!c) /* the advice refused here (mlockall'ed memory, say): the old way */
            return np__stack_mapped_map(stack_size);
        pthread_mutex_lock(&C.lock);
        C.nchunks++;
        partial_add(c);
        slot = take_slot(c);
        pthread_mutex_unlock(&C.lock);
    }
    return np__stack_slot_init(slot, size, c);
}

void np__stack_carved_unmap(np__stack *s)
{
    chunk *c = s->chunk;
    unsigned i = (unsigned)(((char *)s->map - c->base) / c->slot_size);
    uint64_t bit = (uint64_t)1 << i;
    pthread_mutex_lock(&C.lock);
    c->free |= bit;
    if (c->free == c->all && !c->releasing) {
        /* The last slot: the chunk goes, memory and page tables at once. */
        if (c->on_partial)
            partial_remove(c);
        /* The slot freed now counts as dirty too: its memory is kept. */
        size_t held = dirty_take_all(c) + slot_stack_bytes(c);
        C.nchunks--;
        pthread_mutex_unlock(&C.lock);
        np__chunk_retire(c, held);
        return;
    }
    c->dirty |= bit;
    dirty_count(c, 1);
    if (!c->on_dirty)
        dirty_add(c);
    if (!c->on_partial)
        partial_add(c);
    if (dirty_over())
        release_dirty_locked();
    pthread_mutex_unlock(&C.lock);
}

/* ---- for the rest of the runtime ---- */

void np__stack_release_ranges(const struct iovec *iov, int n)
{
    /* Cannot fail on private anonymous mappings of ours; if it did, the
     * pages would merely stay resident. */
#ifdef __linux__
    (void)np__madvise_many(iov, n, MADV_DONTNEED);
#else
    /* MADV_DONTNEED frees nothing on macOS: the platform's own way. */
    for (int i = 0; i < n; i++)
        np__os_release_pages(iov[i].iov_base, iov[i].iov_len);
#endif
}

/* Whether process_madvise takes MADV_POPULATE_WRITE for the calling
 * process: asked once, of a scratch mapping (two ranges: a batch). A later
 * call's error says nothing about support: its ranges may have gone stale
 * (a PROT_NONE page gives EINVAL, a guard EFAULT, a hole ENOMEM). */
#if defined(SYS_process_madvise)
static bool populate_batch_works(void)
{
#ifdef NP_VALGRIND
    if (RUNNING_ON_VALGRIND)
        return false; /* it may not know the call */
#endif
    size_t ps = np__page_size();
    char *m = mmap(NULL, 3 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (m == MAP_FAILED)
        return false;
    struct iovec iov[2] = { { m, ps }, { m + 2 * ps, ps } };
    bool ok = syscall(SYS_process_madvise, PIDFD_SELF_THREAD, iov, (size_t)2, MADV_POPULATE_WRITE, 0u) ==
              (long)(2 * ps);
    munmap(m, 3 * ps);
    return ok;
}
#endif

int np__stack_populate_ranges(const struct iovec *iov, int n)
{
#if defined(SYS_process_madvise)
    static _Atomic int works; /* 0 not asked yet, 1 yes, 2 no */
    int w = atomic_load_explicit(&works, memory_order_relaxed);
    if (w == 0) {
        w = populate_batch_works() ? 1 : 2;
        atomic_store_explicit(&works, w, memory_order_relaxed);
    }
    if (w != 1 || n < 1)
        return -1;
    return NP__SYS(syscall(SYS_process_madvise, PIDFD_SELF_THREAD, iov, (size_t)n, MADV_POPULATE_WRITE, 0u)) < 0
               ? -1
               : 0;
#else
    (void)iov;
    (void)n;
    return -1;
#endif
}

void np__stack_chunk_counts(long *chunks, long *dirty_slots)
{
    pthread_mutex_lock(&C.lock);
    *chunks = C.nchunks;
    *dirty_slots = C.ndirty;
    pthread_mutex_unlock(&C.lock);
    *chunks += np__chunks_retiring(); /* empty, memory not yet released */
}
