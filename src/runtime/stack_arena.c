/* Task stacks, the CARVED layout: where chunks come from and where empty
 * ones go. Chunks are carved from arenas, large mappings of one slot size,
 * and an empty chunk goes back to its arena with its memory released and
 * its guard markers kept; an arena whose every chunk is back is unmapped.
 * (stack_carved.c hands out the slots of the chunks.)
 *
 * Why arenas: a mapping made or unmapped takes the process's mmap lock
 * for writing, and a new chunk mapped next to the last is merged into its
 * mapping, which waits for every page fault in progress there. A chunk a
 * mapping made each a million tasks' spawn 15,625 such waits, and
 * unmapping them as the tasks finished as many again, against the page
 * faults, guard installs and prefaults of the other workers (a profile of
 * bench/million: a quarter of the spawn's workers' time asleep on that
 * lock). An arena holds up to 64 chunks and up to 1 GiB of address space,
 * as many chunks as are in use when it is made (so a small program's
 * arena is one chunk, as before), and a chunk taken from one costs no
 * mapping call: a new chunk needs its guard markers (read lock only), a
 * reused one already has them (MADV_DONTNEED keeps them).
 *
 * What an arena costs while part of it is in use: the page tables of its
 * free chunks, which hold their guard markers (1/512 of their address
 * space, about 11 KiB a chunk of 16 KiB stacks). Free chunks keep them
 * only up to KEPT_BYTES of address space in all; beyond that a chunk
 * given back has its markers removed with its memory (MADV_GUARD_REMOVE,
 * then MADV_DONTNEED), which leaves its page tables empty, and a kernel
 * that reclaims empty page tables (CONFIG_PT_RECLAIM: Linux 6.14, x86-64)
 * frees them; it gets its guards again when next taken. So a burst of a
 * million tasks that leaves a few long-lived ones behind does not leave
 * their arenas' page tables behind too. (Not a fresh mapping over the
 * range: under mlockall(MCL_FUTURE) that would be filled in and locked.)
 *
 * mlockall: locked memory refuses guard markers, so a chunk cannot be
 * made and the stack is mapped on its own (stack.c). After such a refusal
 * new arenas hold one chunk, as chunks were mapped before arenas, rather
 * than a large range the kernel would fill in and lock. mlockall
 * (MCL_CURRENT) also locks the arenas' room not yet carved: up to as much
 * again as the chunks in use.
 *
 * Locking: arena_lock guards the arena list and every arena's counts and
 * free list; chunk structs on a free list are the arena's. Memory calls
 * (mmap, munmap, madvise) run outside it. retire_lock guards the empty
 * chunks waiting; run_lock lets one batch of them be retired at a time,
 * and owns the static arrays that takes: this runs on a task's stack (a
 * switch's recycling of the last task), which has no room for them. A
 * worker that finds a batch being retired leaves its chunk waiting rather
 * than sleep through another's munmap. Order: run_lock, retire_lock,
 * arena_lock. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "base/np_assert.h"
#include "os/os.h"
#include "runtime/stack_layout.h"

#define ARENA_CHUNKS 64               /* most chunks in an arena */
#define ARENA_BYTES ((size_t)1 << 30) /* and at most this much address space */
#define KEPT_BYTES ((size_t)2 << 30)  /* free chunks' address space keeping page tables */

struct np__stack_arena {
    char *base;
    size_t chunk_bytes, slot_size;
    unsigned nslots;              /* slots per chunk */
    unsigned cap, carved, nfree;  /* chunks: room for, carved so far, back */
    struct np__stack_chunk *free; /* back: memory released (guards kept if guarded) */
    struct np__stack_arena *prev, *next;
};
typedef struct np__stack_arena arena;
typedef struct np__stack_chunk chunk;

static pthread_mutex_t arena_lock = PTHREAD_MUTEX_INITIALIZER;
static arena *arenas;
static long narenas;
static long chunks_out; /* carved and not back: sizes the next arena */
static size_t kept;     /* free chunks' bytes with guards (and page tables) */
static bool guards_refused; /* the last guard install failed (mlockall) */
static long reuses, unguarded; /* chunks taken back from an arena; given back unguarded (tests) */
static size_t bytes_mapped;  /* by arenas, in all (tests) */

static void arena_link(arena *a)
{
    bytes_mapped += a->chunk_bytes * a->cap;
    a->prev = NULL;
    a->next = arenas;
    if (arenas)
        arenas->prev = a;
    arenas = a;
    narenas++;
}

static void arena_unlink(arena *a)
{
    if (a->prev)
        a->prev->next = a->next;
    else
        arenas = a->next;
    if (a->next)
        a->next->prev = a->prev;
    narenas--;
}

/* Under the lock: a leaves the list, every chunk of it back; its free
 * chunks' guards stop counting. */
static void arena_drop_locked(arena *a)
{
    arena_unlink(a);
    for (chunk *c = a->free; c; c = c->next)
        if (c->guarded)
            kept -= a->chunk_bytes;
}

/* Unmaps an arena no longer on the list, every chunk of it back. */
static void arena_unmap(arena *a)
{
    munmap(a->base, a->chunk_bytes * a->cap);
    for (chunk *c = a->free, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}

/* Under the lock: a chunk of a (room or one back), or NULL. */
static chunk *arena_take_locked(arena *a)
{
    /* A guarded chunk first: it needs no advice, and one whose guards
     * were refused (mlockall) would be refused again. */
    chunk **at = &a->free;
    for (chunk **p = &a->free; *p; p = &(*p)->next) {
        if ((*p)->guarded) {
            at = p;
            break;
        }
    }
    chunk *c = *at;
    if (c) {
        *at = c->next;
        a->nfree--;
        reuses++;
        if (c->guarded)
            kept -= a->chunk_bytes;
    } else if (a->carved < a->cap) {
        c = calloc(1, sizeof *c);
        if (!c)
            return NULL;
        c->arena = a;
        c->base = a->base + (size_t)a->carved++ * a->chunk_bytes;
        c->slot_size = a->slot_size;
        c->map_size = a->chunk_bytes;
        c->nslots = a->nslots;
        c->all = a->nslots == 64 ? ~(uint64_t)0 : ((uint64_t)1 << a->nslots) - 1;
    } else {
        return NULL;
    }
    chunks_out++;
    return c;
}

static arena *arena_new(size_t slot_size, unsigned nslots, long in_use, bool refused)
{
    arena *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->slot_size = slot_size;
    a->nslots = nslots;
    a->chunk_bytes = slot_size * nslots;
    size_t most = ARENA_BYTES / a->chunk_bytes;
    size_t cap = in_use < 1 || refused ? 1 : (size_t)in_use;
    if (cap > most)
        cap = most;
    if (cap > ARENA_CHUNKS)
        cap = ARENA_CHUNKS;
    a->cap = cap < 1 ? 1 : (unsigned)cap;
    a->base = mmap(NULL, a->chunk_bytes * a->cap, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | NP__OS_MAP_STACK, -1, 0);
    if (a->base == MAP_FAILED) {
        free(a);
        return NULL;
    }
    /* MAP_STACK implies it since Linux 6.7; a 2 MiB page would span many
     * stacks' untouched pages. Advice only: failure changes nothing. */
    np__os_no_huge_pages(a->base, a->chunk_bytes * a->cap);
    return a;
}

/* Gives back chunks whose memory is released (or was never touched):
 * arenas left with every chunk back are unlinked and stored in gone
 * (room for n), for the caller to unmap; how many. */
static int arena_give_back(chunk **v, int n, arena **gone)
{
    int ngone = 0;
    pthread_mutex_lock(&arena_lock);
    for (int i = 0; i < n; i++) {
        arena *a = v[i]->arena;
        v[i]->next = a->free;
        a->free = v[i];
        a->nfree++;
        chunks_out--;
        if (v[i]->guarded)
            kept += a->chunk_bytes;
        if (a->nfree == a->carved) {
            arena_drop_locked(a);
            gone[ngone++] = a;
        }
    }
    pthread_mutex_unlock(&arena_lock);
    return ngone;
}

/* The ranges [off, off + len) of c's slots from slot i on, at most 16 (few
 * at a time: this may run on a task's stack); how many. */
static int slot_ranges(const chunk *c, unsigned i, size_t off, size_t len, struct iovec *iov)
{
    int k = 0;
    for (; k < 16 && i + (unsigned)k < c->nslots; k++)
        iov[k] = (struct iovec){ .iov_base = c->base + (size_t)(i + (unsigned)k) * c->slot_size + off,
                                 .iov_len = len };
    return k;
}

/* Guard regions for the slots of a new chunk; true if the kernel took them. */
static bool chunk_guard(chunk *c)
{
    struct iovec iov[16];
    for (unsigned i = 0; i < c->nslots; i += 16) {
        int k = slot_ranges(c, i, 0, np__stack_guard_size(), iov);
        if (np__madvise_many(iov, k, MADV_GUARD_INSTALL) != 0)
            return false;
    }
    return true;
}

/* Faults in the top page of every slot (the header's, where a task starts)
 * in a few calls, not a page fault each: a chunk is taken while stacks
 * are wanted faster than slots come back, so its slots are about to be
 * used. Best effort. */
static void chunk_populate_tops(chunk *c)
{
    size_t ps = np__page_size();
    struct iovec iov[16];
    for (unsigned i = 0; i < c->nslots; i += 16) {
        int k = slot_ranges(c, i, c->slot_size - ps, ps, iov);
        if (np__stack_populate_ranges(iov, k) != 0)
            return;
    }
}

chunk *np__chunk_take(size_t slot_size, unsigned nslots)
{
    chunk *c = NULL;
    pthread_mutex_lock(&arena_lock);
    for (arena *a = arenas; a && !c; a = a->next)
        if (a->slot_size == slot_size && a->nslots == nslots)
            c = arena_take_locked(a);
    long in_use = chunks_out - (c != NULL);
    bool refused = guards_refused;
    pthread_mutex_unlock(&arena_lock);
    if (!c) {
        arena *a = arena_new(slot_size, nslots, in_use, refused);
        if (!a)
            return NULL;
        pthread_mutex_lock(&arena_lock);
        arena_link(a);
        c = arena_take_locked(a);
        if (!c) /* calloc failed: nothing carved, nobody saw it */
            arena_unlink(a);
        pthread_mutex_unlock(&arena_lock);
        if (!c) {
            arena_unmap(a);
            return NULL;
        }
    }
    c->free = c->all;
    c->dirty = 0;
    c->on_partial = c->on_dirty = c->releasing = false;
    if (!c->guarded) {
        bool ok = chunk_guard(c);
        pthread_mutex_lock(&arena_lock);
        guards_refused = !ok;
        pthread_mutex_unlock(&arena_lock);
        if (!ok) {
            /* Locked memory (mlockall) refuses guard markers: back it goes,
             * and the caller maps that stack on its own. */
            arena *gone[1];
            if (arena_give_back(&c, 1, gone))
                arena_unmap(gone[0]);
            return NULL;
        }
        c->guarded = true;
    }
    /* Another chunk in use: a program growing, not one chunk's worth of
     * tasks coming and going. */
    if (in_use >= 1)
        chunk_populate_tops(c);
    return c;
}

/* ---- empty chunks ------------------------------------------------------------
 *
 * An empty chunk's memory goes back in a batch of up to RETIRE_BATCH
 * chunks, or once the memory their last slots may still hold (`held`:
 * those freed since the last release) passes NP__STACK_DIRTY_BYTES: each
 * call costs a TLB shootdown on every CPU running a worker. Chunks of an
 * arena that the batch empties are not released one by one: the arena is
 * unmapped, pages and page tables at once. The others' stacks are released
 * (MADV_DONTNEED, guard markers kept), adjacent chunks as one range, all in
 * one process_madvise call where the kernel has it, or, past KEPT_BYTES,
 * their markers too; then they go back to their arenas, for the next
 * chunk wanted. One batch at a time, under run_lock, in its static
 * arrays. */
#define RETIRE_BATCH 32                /* empty chunks released at once, */
#define RETIRE_ROOM (2 * RETIRE_BATCH) /* and waiting while a batch is retired */
static pthread_mutex_t retire_lock = PTHREAD_MUTEX_INITIALIZER;
static chunk *retired[RETIRE_ROOM];
static int nretired;
static size_t retired_held;
static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER;
static chunk *run[RETIRE_ROOM];
static arena *ret_gone[RETIRE_ROOM];
static bool ret_dies[RETIRE_ROOM], ret_unguard[RETIRE_ROOM];
static struct iovec ret_iov[RETIRE_ROOM], ret_bare[RETIRE_ROOM];

static int chunk_cmp(const void *a, const void *b)
{
    const char *x = (*(chunk *const *)a)->base, *y = (*(chunk *const *)b)->base;
    return x < y ? -1 : x > y;
}

static bool due_locked(void)
{
    return nretired >= RETIRE_BATCH || retired_held > NP__STACK_DIRTY_BYTES;
}

static bool still_due(void)
{
    pthread_mutex_lock(&retire_lock);
    bool due = due_locked();
    pthread_mutex_unlock(&retire_lock);
    return due;
}

/* Retires the waiting chunks, under run_lock. */
static void retire_run_locked(void)
{
    pthread_mutex_lock(&retire_lock);
    int n = nretired;
    memcpy(run, retired, sizeof(chunk *) * (size_t)n);
    nretired = 0;
    retired_held = 0;
    pthread_mutex_unlock(&retire_lock);
    chunk **v = run;
    if (n == 0)
        return;
    /* Arenas this batch empties: off the list now (nobody carves from
     * them), unmapped below. The counts cannot change meanwhile: their
     * other chunks are all back, and only a batch or a refused take gives
     * chunks back, both under arena_lock. The other chunks keep their
     * guards while KEPT_BYTES allows. */
    int ngone = 0;
    pthread_mutex_lock(&arena_lock);
    for (int i = 0; i < n; i++) {
        arena *a = v[i]->arena;
        unsigned mine = 0;
        for (int j = 0; j < n; j++)
            mine += v[j]->arena == a;
        ret_dies[i] = a->nfree + mine == a->carved;
        if (ret_dies[i]) {
            bool listed = false;
            for (int g = 0; g < ngone; g++)
                listed |= ret_gone[g] == a;
            if (!listed) {
                arena_drop_locked(a);
                ret_gone[ngone++] = a;
            }
        }
    }
    size_t room = kept < KEPT_BYTES ? KEPT_BYTES - kept : 0;
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (ret_dies[i]) {
            chunks_out--;
            free(v[i]); /* its arena goes whole */
        } else {
            v[m++] = v[i];
        }
    }
    pthread_mutex_unlock(&arena_lock);
    for (int g = 0; g < ngone; g++)
        arena_unmap(ret_gone[g]);
    if (m == 0)
        return;
    qsort(v, (size_t)m, sizeof *v, chunk_cmp);
    for (int i = 0; i < m; i++) {
        ret_unguard[i] = v[i]->map_size > room;
        if (!ret_unguard[i])
            room -= v[i]->map_size;
    }
    size_t guard = np__stack_guard_size();
    int niov = 0, nbare = 0;
    for (int i = 0; i < m;) {
        int j = i;
        while (j + 1 < m && ret_unguard[j + 1] == ret_unguard[i] && v[j]->base + v[j]->map_size == v[j + 1]->base)
            j++;
        size_t len = (size_t)(v[j]->base + v[j]->map_size - v[i]->base);
        if (ret_unguard[i]) {
            ret_bare[nbare++] = (struct iovec){ .iov_base = v[i]->base, .iov_len = len };
            for (int k = i; k <= j; k++)
                v[k]->guarded = false;
            unguarded += j - i + 1;
        } else {
            /* From the first slot's stack to the last one's top: the guard
             * markers in between survive MADV_DONTNEED. */
            ret_iov[niov++] = (struct iovec){ .iov_base = v[i]->base + guard, .iov_len = len - guard };
        }
        i = j + 1;
    }
    (void)np__madvise_many(ret_iov, niov, MADV_DONTNEED);
    /* Markers first: then the zap leaves the page tables empty. */
    (void)np__madvise_many(ret_bare, nbare, MADV_GUARD_REMOVE);
    (void)np__madvise_many(ret_bare, nbare, MADV_DONTNEED);
    ngone = arena_give_back(v, m, ret_gone);
    for (int g = 0; g < ngone; g++)
        arena_unmap(ret_gone[g]);
}

void np__chunk_retire(chunk *c, size_t held)
{
    pthread_mutex_lock(&retire_lock);
    while (nretired == RETIRE_ROOM) {
        /* No room: wait for the batch being retired, then retire ours. */
        pthread_mutex_unlock(&retire_lock);
        pthread_mutex_lock(&run_lock);
        retire_run_locked();
        pthread_mutex_unlock(&run_lock);
        pthread_mutex_lock(&retire_lock);
    }
    retired[nretired++] = c;
    retired_held += held;
    bool due = due_locked();
    pthread_mutex_unlock(&retire_lock);
    /* A thread whose trylock fails leaves its chunk to the run in
     * progress, whose thread looks again after it lets go: the failed
     * trylock came after that chunk was added and before the let-go, so
     * the look sees it. */
    while (due && pthread_mutex_trylock(&run_lock) == 0) {
        do
            retire_run_locked();
        while (still_due());
        pthread_mutex_unlock(&run_lock);
        due = still_due();
    }
}

void np__stack_retired_flush(void)
{
    pthread_mutex_lock(&run_lock);
    retire_run_locked();
    pthread_mutex_unlock(&run_lock);
}

long np__chunks_retiring(void)
{
    pthread_mutex_lock(&retire_lock);
    long n = nretired;
    pthread_mutex_unlock(&retire_lock);
    return n;
}

void np__stack_arena_stats_get(np__stack_arena_stats *out)
{
    pthread_mutex_lock(&arena_lock);
    out->arenas = narenas;
    out->chunks_reused = reuses;
    out->bytes_mapped = bytes_mapped;
    pthread_mutex_unlock(&arena_lock);
    pthread_mutex_lock(&run_lock);
    out->chunks_unguarded = unguarded;
    pthread_mutex_unlock(&run_lock);
}
