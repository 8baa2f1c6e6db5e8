/* The CARVED layout's arenas (src/runtime/stack_arena.c): an empty chunk
 * goes back to its arena keeping its guards, and is taken from there
 * again; a burst that leaves a stack in each arena does not leave the
 * arenas' page tables behind; mlockall after growth does not make every
 * later stack fill in and lock an arena the size of those in use. The
 * chunks under concurrent use and the layouts' guards are test_stack.c's.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime/stack_layout.h"
#include "runtime/task.h"
#include "netpoll.h"
#include "np_test.h"
#include "stack_test.h"

/* An empty chunk goes back to its arena with its memory released and its
 * guard markers kept, while the arena holds a chunk still in use; the
 * next chunk wanted is taken from there: its guards fault without being
 * installed again, and its stacks read as zero, not as the last tasks'
 * bytes. */
static void t_reused_chunks_keep_guards(void)
{
    int l = use_layout(false);
    if (l != NP__STACK_CARVED)
        NP_SKIP("no arenas in the fallback layout");
    if (emulated())
        NP_SKIP("qemu-user ignores MADV_POPULATE_READ: no way to probe a guard without a fault");
    unsigned per = np__stacks_per_mapping(32 * 1024);
    /* Arenas grow with the chunks in use (1, 1, 2, 4 ...): 8 chunks' worth
     * end in an arena of 4, whose last stack is kept. */
    enum { MOST = 8 * 64 };
    static np__stack *st[MOST];
    unsigned n = 8 * per;
    NP_CHECK_LE(n, MOST);
    for (unsigned i = 0; i < n; i++) {
        st[i] = np__stack_map(32 * 1024);
        NP_CHECK(st[i] != NULL);
        memset((void *)st[i]->info.bottom, 0xa5, st[i]->info.size);
    }
    np__stack_arena_stats a0, a1;
    np__stack_arena_stats_get(&a0);
    for (unsigned i = 0; i + 1 < n; i++)
        np__stack_unmap(st[i]);
    np__stack_retired_flush();
    np__stack_arena_stats_get(&a1);
    NP_CHECK_EQ(a1.arenas, 1); /* the kept stack's */
    static np__stack *again[MOST];
    for (unsigned i = 0; i < 2 * per; i++) {
        again[i] = np__stack_map(32 * 1024);
        NP_CHECK(again[i] != NULL);
        NP_CHECK_MSG(guard_intact(again[i]), "stack %u: the guard region does not fault", i);
        /* The kept stack's chunk hands out its free slots first, warm
         * (their memory kept on purpose); the others' was released. */
        const unsigned char *b = again[i]->info.bottom;
        if (again[i]->chunk != st[n - 1]->chunk)
            NP_CHECK_MSG(b[0] == 0 && b[again[i]->info.size / 2] == 0, "stack %u kept old bytes", i);
    }
    np__stack_arena_stats_get(&a1);
    printf("  %u stacks, %ld arenas while all were held; %ld chunks taken back from an arena\n", n,
           a0.arenas, a1.chunks_reused - a0.chunks_reused);
    NP_CHECK_GE(a1.chunks_reused - a0.chunks_reused, 1);
    for (unsigned i = 0; i < 2 * per; i++)
        np__stack_unmap(again[i]);
    np__stack_unmap(st[n - 1]);
    expect_no_chunks_after_flush();
}

#if !defined(NP_ASAN) && !defined(NP_TSAN)
/* Maps n stacks of size, marking in keep the first of each arena (arenas
 * fill one after another: a stack in another arena than the one before it
 * is its arena's first); how many arenas. */
static long map_keeping_one_per_arena(np__stack **st, bool *keep, unsigned n, size_t size)
{
    long kept = 0;
    for (unsigned i = 0; i < n; i++) {
        st[i] = np__stack_map(size);
        NP_CHECK(st[i] != NULL);
        keep[i] = i == 0 || st[i]->chunk->arena != st[i - 1]->chunk->arena;
        kept += keep[i];
    }
    return kept;
}

/* Gives back every stack not kept, and flushes the chunks waiting. */
static void unmap_all_but_kept(np__stack **st, const bool *keep, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (!keep[i])
            np__stack_unmap(st[i]);
    np__stack_retired_flush();
}
#endif

/* Whether this kernel frees a page table left empty by MADV_DONTNEED
 * (CONFIG_PT_RECLAIM, Linux 6.14): 64 MiB touched a page per 2 MiB (32
 * page tables, 128 KiB), one guard marker installed and removed, then
 * released. */
#if !defined(NP_ASAN) && !defined(NP_TSAN)
static bool empty_page_tables_reclaimed(void)
{
    size_t len = (size_t)64 << 20, step = (size_t)2 << 20;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    NP_CHECK(m != MAP_FAILED);
    for (size_t o = 0; o < len; o += step)
        m[o] = 1;
    (void)madvise(m, (size_t)sysconf(_SC_PAGESIZE), MADV_GUARD_INSTALL);
    (void)madvise(m, len, MADV_GUARD_REMOVE);
    long before = status_kib("VmPTE");
    NP_CHECK_EQ(madvise(m, len, MADV_DONTNEED), 0);
    long after = status_kib("VmPTE");
    munmap(m, len);
    return before - after >= 64;
}
#endif

/* A burst that leaves one long-lived stack in each arena does not leave
 * the arenas' page tables behind: free chunks keep their guard markers
 * (and so their page tables) only up to 2 GiB of address space in all;
 * the rest are given back without them, their page tables left empty for
 * the kernel to free. 128 chunks of 1 MiB stacks (8 GiB of address space,
 * 16 MiB of page tables); one stack kept per arena. */
static void t_pinned_arenas_let_page_tables_go(void)
{
#if defined(NP_ASAN) || defined(NP_TSAN)
    NP_SKIP("8 GiB of address space beside the sanitizers' shadow");
#else
    int l = use_layout(false);
    if (l != NP__STACK_CARVED)
        NP_SKIP("no arenas in the fallback layout");
    if (under_valgrind())
        NP_SKIP("valgrind's table of mappings");
    enum { SIZE = 1 << 20 };
    unsigned per = np__stacks_per_mapping(SIZE);
    unsigned n = 128 * per;
    np__stack **st = calloc(n, sizeof *st);
    bool *keep = calloc(n, sizeof *keep);
    NP_CHECK(st && keep);
    long pte0 = status_kib("VmPTE");
    long kept = map_keeping_one_per_arena(st, keep, n, SIZE);
    long pte_peak = status_kib("VmPTE");
    np__stack_arena_stats a0, a1;
    np__stack_arena_stats_get(&a0);
    unmap_all_but_kept(st, keep, n);
    np__stack_arena_stats_get(&a1);
    long pte_after = status_kib("VmPTE");
    printf("  %u stacks of 1 MiB, one kept in each of %ld arenas; page tables %ld KiB at the start,"
           " %ld at the peak, %ld after; %ld chunks given back without guards\n",
           n, kept, pte0, pte_peak, pte_after, a1.chunks_unguarded - a0.chunks_unguarded);
    NP_CHECK_EQ(a1.arenas, kept);
    NP_CHECK_GE(a1.chunks_unguarded - a0.chunks_unguarded, 1);
    /* At the peak: 8 GiB of stacks, 16 MiB of page tables; after: at most
     * 2 GiB's worth kept (4 MiB) and the kept stacks' chunks. */
    if (empty_page_tables_reclaimed())
        NP_CHECK_LE(pte_after - pte0, (pte_peak - pte0) / 2);
    else
        printf("  (this kernel keeps empty page tables: not checked)\n");
    /* The chunks given back without guards get them back when taken again. */
    for (unsigned i = 0; i < n; i++) {
        if (keep[i])
            continue;
        st[i] = np__stack_map(SIZE);
        NP_CHECK(st[i] != NULL);
        if (i % 97 == 0 && !emulated())
            NP_CHECK_MSG(guard_intact(st[i]), "stack %u: the guard region does not fault", i);
    }
    for (unsigned i = 0; i < n; i++)
        np__stack_unmap(st[i]);
    free(st);
    free(keep);
    expect_no_chunks_after_flush();
#endif
}

#if !defined(NP_ASAN) && !defined(NP_TSAN)
/* The mlockall cases: arenas to lock, and no valgrind in the way. */
static void skip_unless_lockable_arenas(void)
{
    if (use_layout(false) != NP__STACK_CARVED)
        NP_SKIP("no MADV_GUARD_INSTALL here");
    if (under_valgrind())
        NP_SKIP("valgrind and locked memory");
}
#endif

/* mlockall(MCL_FUTURE) once many chunks are in use: the kernel fills in
 * and locks each new mapping, and locked memory refuses guard markers. The
 * first refusal costs an arena sized by the chunks in use; after it, new
 * arenas hold one chunk (as chunks were mapped before arenas), not as
 * many again as are in use, each filled in and locked for nothing. */
static void t_mlockall_after_growth(void)
{
#if defined(NP_ASAN) || defined(NP_TSAN)
    NP_SKIP("locking the sanitizers' shadow mappings is not an option");
#else
    skip_unless_lockable_arenas();
    enum { CHUNKS = 16, AFTER = 20, SIZE = 16 * 1024 };
    unsigned per = np__stacks_per_mapping(SIZE);
    size_t chunk_bytes = per * np__stack_slot_size(SIZE);
    unsigned n = CHUNKS * per;
    np__stack **st = calloc(n, sizeof *st);
    NP_CHECK(st != NULL);
    for (unsigned i = 0; i < n; i++) {
        st[i] = np__stack_map(SIZE);
        NP_CHECK(st[i] != NULL);
    }
    if (mlockall(MCL_FUTURE) != 0)
        NP_SKIP("mlockall is not permitted here");
    np__stack_arena_stats a0, a1;
    np__stack_arena_stats_get(&a0);
    np__stack *more[AFTER];
    for (int i = 0; i < AFTER; i++) {
        more[i] = np__stack_map(SIZE);
        NP_CHECK(more[i] != NULL);
        NP_CHECK(more[i]->chunk == NULL); /* a mapping of its own */
    }
    np__stack_arena_stats_get(&a1);
    munlockall();
    size_t chunks_mapped = (a1.bytes_mapped - a0.bytes_mapped) / chunk_bytes;
    printf("  %u chunks in use, then %d stacks under mlockall: arenas of %zu chunks mapped for them\n",
           CHUNKS, AFTER, chunks_mapped);
    NP_CHECK_LE(chunks_mapped, (size_t)CHUNKS + AFTER);
    for (int i = 0; i < AFTER; i++)
        np__stack_unmap(more[i]);
    for (unsigned i = 0; i < n; i++)
        np__stack_unmap(st[i]);
    free(st);
    expect_no_chunks_after_flush();
#endif
}

/* Chunks given back before mlockall(MCL_FUTURE), with their guards or
 * without (past what free chunks may keep), are taken again after it: the
 * arenas were mapped before, so nothing of them is locked, and the guards
 * go back in. Nothing is filled in and locked on the way (a fresh mapping
 * over a chunk's range, to let its page tables go, would be). */
static void t_chunks_reused_after_mlockall(void)
{
#if defined(NP_ASAN) || defined(NP_TSAN)
    NP_SKIP("8 GiB of address space beside the sanitizers' shadow");
#else
    skip_unless_lockable_arenas();
    enum { SIZE = 1 << 20 };
    unsigned n = 128 * np__stacks_per_mapping(SIZE);
    np__stack **st = calloc(n, sizeof *st);
    bool *keep = calloc(n, sizeof *keep);
    NP_CHECK(st && keep);
    map_keeping_one_per_arena(st, keep, n, SIZE);
    if (mlockall(MCL_FUTURE) != 0)
        NP_SKIP("mlockall is not permitted here");
    np__stack_arena_stats a0, a1;
    np__stack_arena_stats_get(&a0);
    unmap_all_but_kept(st, keep, n);
    long locked = status_kib("VmLck");
    unsigned own = 0;
    for (unsigned i = 0; i < n; i++) {
        if (keep[i])
            continue;
        st[i] = np__stack_map(SIZE);
        NP_CHECK(st[i] != NULL);
        own += st[i]->chunk == NULL;
    }
    np__stack_arena_stats_get(&a1);
    long locked_after = status_kib("VmLck");
    munlockall();
    printf("  %u stacks of 1 MiB; under mlockall %ld chunks given back without guards, %u stacks"
           " mapped on their own after; locked %ld KiB after the flush, %ld after\n",
           n, a1.chunks_unguarded - a0.chunks_unguarded, own, locked, locked_after);
    NP_CHECK_GE(a1.chunks_unguarded - a0.chunks_unguarded, 1);
    NP_CHECK_EQ(own, 0);
    NP_CHECK_LE(locked_after, 64 * 1024);
    for (unsigned i = 0; i < n; i++)
        np__stack_unmap(st[i]);
    free(st);
    free(keep);
    expect_no_chunks_after_flush();
#endif
}

NP_TEST_LIST(
    NP_CASE(t_reused_chunks_keep_guards),
    NP_CASE(t_pinned_arenas_let_page_tables_go),
    NP_CASE(t_mlockall_after_growth),
    NP_CASE(t_chunks_reused_after_mlockall))
