/* Task stacks: what stack.c (the layouts' common part and the MAPPED
 * fallback) and stack_carved.c (the CARVED layout) share. Private to the
 * two; the rest of the runtime uses stack.h. */
#ifndef NP_STACK_LAYOUT_H
#define NP_STACK_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/stack.h"

/* Memory that free slots (stack_carved.c) and the last slots of empty
 * chunks waiting to be released (stack_arena.c) may each hold. */
#define NP__STACK_DIRTY_BYTES ((size_t)16 << 20)

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
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef PIDFD_SELF_THREAD
#define PIDFD_SELF_THREAD (-10000) /* Linux 6.15: "this process" for pidfd calls */
#endif

/* Guard region, stack and header: a slot's bytes for a stack of
 * stack_size (stack.c). */
size_t np__stack_slot_size(size_t stack_size);
/* Fills in the header of a slot whose memory is readable and writable
 * (stack.c); c is its chunk, NULL for a mapping of its own. */
np__stack *np__stack_slot_init(char *slot, size_t size, struct np__stack_chunk *c);
/* A stack in a mapping of its own, its guard PROT_NONE (stack.c): the
 * fallback, and a chunk's when the kernel refuses guard markers. */
np__stack *np__stack_mapped_map(size_t stack_size);

/* The CARVED layout (stack_carved.c). */
np__stack *np__stack_carved_map(size_t stack_size);
void np__stack_carved_unmap(np__stack *s);
/* madvise over n ranges, one process_madvise call where the kernel has
 * it: 0, or -1 if some range failed. */
struct iovec;
int np__madvise_many(const struct iovec *iov, int n, int advice);

/* A chunk: nslots slots of slot_size carved from an arena. Its free slots
 * are the bits of `free`; `dirty` marks those of them whose memory may
 * still be resident (returned by a task, not released since). Chunks with
 * a free slot are on the `partial` list; chunks with a dirty slot on the
 * `dirty` list (stack_carved.c). A chunk back in its arena is on the
 * arena's free list through `next` (stack_arena.c). */
struct np__stack_arena;
struct np__stack_chunk {
    char *base;
    size_t slot_size, map_size;
    unsigned nslots;
    uint64_t all, free, dirty;    /* bit i: slot i */
    bool on_partial, on_dirty;    /* free != 0, dirty != 0 */
    bool releasing;               /* in a release batch: not to be retired */
    bool guarded;                 /* guard markers installed (they outlive the chunk's use) */
    struct np__stack_arena *arena;
    struct np__stack_chunk *prev, *next;   /* partial list; arena's free list */
    struct np__stack_chunk *dprev, *dnext; /* dirty list */
};

/* Where chunks come from (stack_arena.c). A chunk of nslots slots of
 * slot_size, every slot free and guarded, or NULL (no memory, or the
 * kernel refused the guards). */
struct np__stack_chunk *np__chunk_take(size_t slot_size, unsigned nslots);
/* An empty chunk goes back, its last slots holding up to `held` bytes
 * of memory; in batches. */
void np__chunk_retire(struct np__stack_chunk *c, size_t held);
/* Empty chunks waiting for a batch. */
long np__chunks_retiring(void);

#endif
