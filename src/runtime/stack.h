/* Task stacks: their memory, their guard regions and how they are laid
 * out in mappings. The pools of free stacks are the scheduler's. Every
 * stack is a slot:
 *
 *   map                                                        map + map_size
 *   +-------------------+----------------------------------------+-------------+
 *   | guard region      |  stack (grows down)  <---------------- | np__stack   |
 *   | 64 KiB + a page   |  bottom ............... bottom + size  | (header)    |
 *   +-------------------+----------------------------------------+-------------+
 *
 * Running off the bottom of the stack faults in the guard region; the SIGSEGV
 * handler (on an alternate stack) recognises the address (np__task_in_guard)
 * and aborts with a message that says so. The region is 64 KiB and a page so
 * that one frame of up to 64 KiB (a local array, say) cannot jump over it
 * into memory below, whatever it touches first; for larger frames, code must
 * be built with -fstack-clash-protection (which touches every page of a big
 * frame in order). The slot's header shares the top page with the start of
 * the stack, so a shallow task touches one page.
 *
 * Two layouts, chosen once per process (np__stack_layout):
 *
 *  - CARVED (Linux >= 6.13): the guard region is made with
 *    madvise(MADV_GUARD_INSTALL), which puts fault markers in the page
 *    tables without changing the mapping: it costs no memory and does not
 *    split the mapping. So stacks are carved many to a chunk (up to 64
 *    slots, at most 64 MiB), and chunks many to an arena (up to 64
 *    chunks, at most 1 GiB, one mmap; stack_arena.c). The kernel's
 *    vm.max_map_count (65,530 by default), which bounds the heap's and the
 *    libraries' mappings too, then allows millions of stacks, not ~30,000:
 *    a million parked tasks take a few hundred mappings at most (fewer:
 *    the kernel merges adjacent arenas). The scheduler's stack_budget is
 *    raised to match. A slot returned to its chunk keeps its memory (warm
 *    for the next task) until more than DIRTY_SLOTS (512) free slots, or
 *    DIRTY_BYTES (16 MiB) of their stacks, are dirty (stack_carved.c):
 *    then they are all released at once, adjacent ones as one range, all
 *    ranges in one process_madvise call where the kernel has it (one TLB
 *    shootdown, not one per slot). A chunk whose every slot is free goes
 *    back to its arena in a batch of up to 32 such chunks (or 16 MiB their
 *    last slots may hold): its stacks' memory released, its guard markers
 *    kept for the next chunk taken there; an arena whose every chunk is
 *    back is unmapped, pages and page tables at once. np_run's end
 *    releases the batch left. A chunk taken while another is in use has
 *    the top page of each slot faulted in at once (a few calls, not a
 *    fault per task). If a chunk cannot be given its guards (locked
 *    memory refuses them), that stack is mapped on its own as below.
 *
 *  - MAPPED, the fallback where MADV_GUARD_INSTALL is missing or does
 *    nothing (older kernels: EINVAL; qemu-user accepts it and ignores it):
 *    one mapping per stack whose guard region is made PROT_NONE with
 *    mprotect, so two kernel mappings per stack; at most about
 *    vm.max_map_count / 2 stacks exist at once (the scheduler's
 *    stack_budget: tasks beyond it wait, unstarted).
 *
 * The environment variable NP_STACK_GUARD, read once, set to "mapping"
 * forces the fallback (for its tests, and for a kernel whose guard markers
 * misbehave); otherwise CARVED is used wherever a probe finds that the
 * advice works (np__stack_layout). In both layouts map and
 * map_size below describe the slot, guard included: for CARVED it is a part
 * of its chunk's mapping, not a mapping of its own.
 *
 */
#ifndef NP_STACK_H
#define NP_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The system's page size (cached). */
size_t np__page_size(void);

/* What the sanitizers need to know about a stack we switch to. */
typedef struct np__stackinfo {
    const void *bottom; /* lowest usable address */
    size_t size;
    void *tsan_fiber;   /* ThreadSanitizer's fiber for this context */
} np__stackinfo;

struct np__stack_chunk;

/* A stack slot; the header sits at its top. */
typedef struct np__stack {
    np__stackinfo info;       /* usable area, and its ThreadSanitizer fiber */
    void *map;                /* the whole slot, guard region included */
    size_t map_size;
    struct np__stack_chunk *chunk; /* CARVED: the mapping it is carved from */
    unsigned valgrind_id;     /* valgrind's stack registration */
    struct np__stack *next;   /* pool links */
} np__stack;

/* The stack layouts (see above). */
enum { NP__STACK_CARVED = 1, NP__STACK_MAPPED = 2 };

/* The layout of this process's stacks: decided on the first call (the
 * environment, then a probe of the kernel), the same ever after. */
int np__stack_layout(void);

/* Bytes of guard region below every stack: 64 KiB rounded to pages, and
 * a page. */
size_t np__stack_guard_size(void);

/* How many stacks of stack_size share one kernel mapping: up to 64 when
 * CARVED, 1 when MAPPED (whose stack then takes two mappings). */
unsigned np__stacks_per_mapping(size_t stack_size);

/* A stack of stack_size usable bytes (rounded to pages) with its guard
 * region: a free slot of a chunk (CARVED), or a new mapping (MAPPED). NULL
 * on failure. */
np__stack *np__stack_map(size_t stack_size);

/* Gives the stack back: to its chunk (CARVED; the chunk goes back to its
 * arena once all its slots are free), or unmaps it (MAPPED). */
void np__stack_unmap(np__stack *s);
/* Faults in the pages of n ranges (MADV_POPULATE_WRITE) in one call where
 * the kernel takes a batch of them, else does nothing (one call per range
 * is no cheaper than the faults): 0, or -1. */
struct iovec;
int np__stack_populate_ranges(const struct iovec *iov, int n);
/* Releases the empty chunks still waiting for a batch, and unmaps the
 * arenas that leaves empty (end of np_run). */
void np__stack_retired_flush(void);

/* Hands the memory of an idle stack back to the OS, keeping the mapping. */
void np__stack_release_memory(np__stack *s);

/* Hands back the memory of n ranges of stack pages, keeping the mappings
 * and the guard markers: one process_madvise call where the kernel has it,
 * so one TLB shootdown for the lot instead of one per range (the idle-stack
 * sweep's batches; n at most 1024). */
struct iovec;
void np__stack_release_ranges(const struct iovec *iov, int n);

/* How many stacks of stack_size may exist at once (the scheduler's
 * budget), from vm.max_map_count: about 30,000 in the MAPPED layout,
 * millions in the CARVED one; at most NP__TSAN_STACKS_MAX under
 * ThreadSanitizer (a fiber per stack, each a thread to it). */
#define NP__TSAN_STACKS_MAX 6144
int64_t np__stacks_max(size_t stack_size);

/* Chunks mapped now and their free slots whose memory may be resident
 * (tests and benchmarks). */
void np__stack_chunk_counts(long *chunks, long *dirty_slots);
/* The CARVED layout's arenas (tests). */
typedef struct np__stack_arena_stats {
    long arenas;           /* mapped now */
    long chunks_reused;    /* taken back from an arena, so far */
    long chunks_unguarded; /* given back without their guard markers (page tables let go) */
    size_t bytes_mapped;   /* address space of every arena mapped, so far */
} np__stack_arena_stats;
void np__stack_arena_stats_get(np__stack_arena_stats *out);

#endif
