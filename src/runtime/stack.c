/* Task stacks: slots, guard regions, the two layouts. See stack.h. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
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
#include "runtime/stack.h"

size_t np__page_size(void)
{
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

/* ---- stack layouts ------------------------------------------------------ */

/* Debian 12's headers predate them (Linux 6.13). */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_REMOVE 103
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef PIDFD_SELF_THREAD
#define PIDFD_SELF_THREAD (-10000) /* Linux 6.15: "this process" for pidfd calls */
#endif

#define GUARD_FRAME ((size_t)64 * 1024) /* a frame this large cannot jump the guard */
#define CHUNK_SLOTS 64                  /* most stacks per mapping (bits of a word) */
#define CHUNK_BYTES ((size_t)64 << 20)  /* and at most this much address space */
#define DIRTY_SLOTS 64                  /* free slots keeping memory, all chunks */

size_t np__stack_guard_size(void)
{
    size_t ps = np__page_size();
    return round_up(GUARD_FRAME, ps) + ps;
}

/* Whether madvise(MADV_GUARD_INSTALL) makes a real guard here. Some
 * emulators (qemu-user) accept any advice and ignore it, so the marker is
 * tested, without touching it: populating a guarded page fails (EFAULT);
 * populating a plain one succeeds. */
static bool guard_install_works(void)
{
#ifndef __linux__
    return false; /* Linux's guard markers only: elsewhere MAPPED */
#endif
    size_t ps = np__page_size();
    char *m = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (m == MAP_FAILED)
        return false;
    bool ok = madvise(m, ps, MADV_GUARD_INSTALL) == 0 &&
              NP__SYS(madvise(m, ps, MADV_POPULATE_READ)) == -EFAULT &&
              madvise(m + ps, ps, MADV_POPULATE_READ) == 0;
    munmap(m, 2 * ps);
    return ok;
}

static _Atomic int layout_chosen;

int np__stack_layout(void)
{
    int l = atomic_load_explicit(&layout_chosen, memory_order_acquire);
    if (l)
        return l;
    /* Threads racing here reach the same answer. */
    const char *e = getenv("NP_STACK_GUARD");
    if (e && strcmp(e, "mapping") == 0)
        l = NP__STACK_MAPPED;
    else
        l = guard_install_works() ? NP__STACK_CARVED : NP__STACK_MAPPED;
    atomic_store_explicit(&layout_chosen, l, memory_order_release);
    return l;
}

static size_t header_size(void)
{
    return round_up(sizeof(np__stack), 64);
}

/* Guard region, stack and header. */
static size_t slot_size(size_t stack_size)
{
    return np__stack_guard_size() + round_up(stack_size + header_size(), np__page_size());
}

unsigned np__stacks_per_mapping(size_t stack_size)
{
    if (np__stack_layout() != NP__STACK_CARVED)
        return 1;
    size_t n = CHUNK_BYTES / slot_size(stack_size);
    return n < 1 ? 1 : n > CHUNK_SLOTS ? CHUNK_SLOTS : (unsigned)n;
}

/* Fills in the header of a slot whose memory is readable and writable. */
static np__stack *slot_init(char *slot, size_t size, struct np__stack_chunk *c)
{
    size_t head = header_size();
    np__stack *s = (np__stack *)(slot + size - head);
#ifdef NP_ASAN
    __asan_unpoison_memory_region(s, head);
#endif
    memset(s, 0, sizeof *s);
    s->map = slot;
    s->map_size = size;
    s->chunk = c;
    s->info.bottom = slot + np__stack_guard_size();
    s->info.size = (size_t)((char *)s - (char *)s->info.bottom);
#ifdef NP_VALGRIND
    s->valgrind_id = VALGRIND_STACK_REGISTER(s->info.bottom, (char *)s);
#endif
#ifdef NP_TSAN
    /* One ThreadSanitizer fiber per stack, reused by each task that runs on
     * it (a fiber is a whole thread state to ThreadSanitizer: far too dear
     * per task). Reuse is sound because a task ends with its fiber's shadow
     * call stack empty: the frames that never return (the task's entry and
     * its last switch) are not instrumented. */
    np__sig_hold h;
    np__sig_hold_signals(&h);
    s->info.tsan_fiber = __tsan_create_fiber(0);
    np__tsan_make_signal_state(s->info.tsan_fiber);
    np__sig_release_signals(&h);
#endif
    return s;
}

static void slot_fini(np__stack *s)
{
#ifdef NP_TSAN
    np__sig_hold h;
    np__sig_hold_signals(&h);
    __tsan_destroy_fiber(s->info.tsan_fiber);
    np__sig_release_signals(&h);
#endif
#ifdef NP_VALGRIND
    VALGRIND_STACK_DEREGISTER(s->valgrind_id);
#endif
    (void)s;
}

/* ---- MAPPED: a mapping per stack, its guard region PROT_NONE ---------------- */

static np__stack *mapped_map(size_t stack_size)
{
    size_t size = slot_size(stack_size);
    char *map = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | NP__OS_MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    if (mprotect(map, np__stack_guard_size(), PROT_NONE) != 0) {
        munmap(map, size);
        return NULL;
    }
    return slot_init(map, size, NULL);
}

/* ---- CARVED: chunks of slots, guard regions by MADV_GUARD_INSTALL -------------
 *
 * A chunk is one mapping of nslots slots. Its free slots are the bits of
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
 * bits) and marks them `releasing`: such a chunk is never unmapped by
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

static int madvise_many(const struct iovec *iov, int n, int advice)
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

struct np__stack_chunk {
    char *base;
    size_t slot_size, map_size;
    unsigned nslots;
    uint64_t all, free, dirty;    /* bit i: slot i */
    bool on_partial, on_dirty;    /* free != 0, dirty != 0 */
    bool releasing;               /* in a release batch: not to be unmapped */
    struct np__stack_chunk *prev, *next;   /* partial list */
    struct np__stack_chunk *dprev, *dnext; /* dirty list */
};
typedef struct np__stack_chunk chunk;

static struct {
    pthread_mutex_t lock;
    chunk *partial;
    chunk *dirty;
    long ndirty;                  /* dirty slots in all chunks */
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
        C.ndirty--;
        if (!c->dirty)
            dirty_remove(c);
    }
    if (!c->free)
        partial_remove(c);
    return slot_at(c, i);
}

static chunk *chunk_new(size_t size, unsigned n)
{
    chunk *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->slot_size = size;
    c->map_size = size * n;
    c->nslots = n;
    c->all = n == 64 ? ~(uint64_t)0 : ((uint64_t)1 << n) - 1;
    c->free = c->all;
    c->base = mmap(NULL, c->map_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | NP__OS_MAP_STACK, -1, 0);
    if (c->base == MAP_FAILED) {
        free(c);
        return NULL;
    }
    /* MAP_STACK implies it since Linux 6.7; a 2 MiB page would span many
     * stacks' untouched pages. Advice only: failure changes nothing. */
    np__os_no_huge_pages(c->base, c->map_size);
    /* Few at a time: this may run on a task's stack (a switch's pick). */
    size_t guard = np__stack_guard_size();
    struct iovec iov[16];
    for (unsigned i = 0; i < n; i += 16) {
        int k = 0;
        for (; k < 16 && i + (unsigned)k < n; k++)
            iov[k] = (struct iovec){ .iov_base = slot_at(c, i + (unsigned)k), .iov_len = guard };
        if (madvise_many(iov, k, MADV_GUARD_INSTALL) != 0) {
            munmap(c->base, c->map_size);
            free(c);
            return NULL;
        }
    }
    return c;
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
        C.ndirty -= __builtin_popcountll(c->dirty);
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
                (void)madvise_many(rel_iov, niov, MADV_DONTNEED);
                niov = 0;
            }
            rel_iov[niov++] = (struct iovec){ .iov_base = from, .iov_len = (size_t)(to - from) };
            b &= hi == 63 ? 0 : ~(uint64_t)0 << (hi + 1);
        }
    }
    (void)madvise_many(rel_iov, niov, MADV_DONTNEED);
    pthread_mutex_lock(&C.lock);
    for (int k = 0; k < n; k++) {
        chunk *c = rel_chunks[k];
        c->releasing = false;
        c->free |= rel_bits[k];
        if (c->free == c->all) {
            /* Every other slot came back meanwhile. */
            if (c->on_partial)
                partial_remove(c);
            if (c->on_dirty) {
                dirty_remove(c);
                C.ndirty -= __builtin_popcountll(c->dirty);
            }
            C.nchunks--;
            pthread_mutex_unlock(&C.lock);
            munmap(c->base, c->map_size);
            free(c);
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
    while (C.ndirty > DIRTY_SLOTS && C.dirty);
    pthread_mutex_unlock(&release_lock);
}

static np__stack *carved_map(size_t stack_size)
{
    size_t size = slot_size(stack_size);
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
        c = chunk_new(size, np__stacks_per_mapping(stack_size));
        if (!c) /* the advice refused here (mlockall'ed memory, say): the old way */
            return mapped_map(stack_size);
        pthread_mutex_lock(&C.lock);
        C.nchunks++;
        partial_add(c);
        slot = take_slot(c);
        pthread_mutex_unlock(&C.lock);
    }
    return slot_init(slot, size, c);
}

static void carved_unmap(np__stack *s)
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
        if (c->on_dirty) {
            dirty_remove(c);
            C.ndirty -= __builtin_popcountll(c->dirty);
        }
        C.nchunks--;
        pthread_mutex_unlock(&C.lock);
        munmap(c->base, c->map_size);
        free(c);
        return;
    }
    c->dirty |= bit;
    C.ndirty++;
    if (!c->on_dirty)
        dirty_add(c);
    if (!c->on_partial)
        partial_add(c);
    if (C.ndirty > DIRTY_SLOTS)
        release_dirty_locked();
    pthread_mutex_unlock(&C.lock);
}

/* ---- either ------------------------------------------------------------------ */

np__stack *np__stack_map(size_t stack_size)
{
    return np__stack_layout() == NP__STACK_CARVED ? carved_map(stack_size) : mapped_map(stack_size);
}

void np__stack_unmap(np__stack *s)
{
    slot_fini(s);
    if (s->chunk)
        carved_unmap(s);
    else
        munmap(s->map, s->map_size);
}

void np__stack_release_memory(np__stack *s)
{
    /* Everything below the page holding the header. */
    size_t ps = np__page_size();
    char *lo = (char *)s->info.bottom;
    char *hi = (char *)((uintptr_t)s & ~(uintptr_t)(ps - 1));
    if (hi > lo)
        np__os_release_pages(lo, (size_t)(hi - lo));
}

void np__stack_release_ranges(const struct iovec *iov, int n)
{
    /* Cannot fail on private anonymous mappings of ours; if it did, the
     * pages would merely stay resident. */
#ifdef __linux__
    (void)madvise_many(iov, n, MADV_DONTNEED);
#else
    /* MADV_DONTNEED frees nothing on macOS: the platform's own way. */
    for (int i = 0; i < n; i++)
        np__os_release_pages(iov[i].iov_base, iov[i].iov_len);
#endif
}

void np__stack_chunk_counts(long *chunks, long *dirty_slots)
{
    pthread_mutex_lock(&C.lock);
    *chunks = C.nchunks;
    *dirty_slots = C.ndirty;
    pthread_mutex_unlock(&C.lock);
}

/* The kernel allows a process vm.max_map_count mappings, the heap's, the
 * libraries' and the sanitizers' included: leave 4,096 for them. A MAPPED
 * stack takes two (guard + stack): about 30,000 stacks by default. CARVED
 * stacks share a mapping with up to 63 others: millions, so many that
 * memory or address space runs out first, and then a task that cannot map
 * a stack waits like one over the budget (the scheduler's ensure_stack). */
int64_t np__stacks_max(size_t stack_size)
{
    int64_t maps = 65530;
#ifdef __linux__
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        long long v;
        if (fscanf(f, "%lld", &v) == 1 && v > 0)
            maps = v;
        fclose(f);
    }
#endif
    int64_t b = np__stack_layout() == NP__STACK_CARVED
                    ? (maps - 4096) * (int64_t)np__stacks_per_mapping(stack_size)
                    : maps / 2 - 2048;
#ifdef NP_TSAN
    /* Every stack has a ThreadSanitizer fiber, which is a thread to it:
     * gcc's runtime dies past 8,128 threads alive, and each costs about
     * 1 MiB of its memory and mappings of its own. */
    if (b > NP__TSAN_STACKS_MAX)
        b = NP__TSAN_STACKS_MAX;
#endif
    return b < 256 ? 256 : b;
}
