/* What tests/test_million.c, test_stack.c and test_stack_arena.c share:
 * the stack layout a case runs with, readings of the process's memory and
 * mappings, and checks of guards and chunks. */
#ifndef NP_STACK_TEST_H
#define NP_STACK_TEST_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>
#include <unistd.h>

#include "base/sanitizer.h"
#include "runtime/stack_layout.h"
#include "np_test.h"

#ifdef NP_ASAN
/* The runtime's switch, read by every instrumented function as it starts. */
extern int __asan_option_detect_stack_use_after_return;
#endif

/* For the cases that hold more tasks than vm.max_map_count allows
 * mappings: AddressSanitizer's detect_stack_use_after_return (CI sets it)
 * gives every task that has run a fake stack, a mapping of its own, held
 * while the task is parked; that alone would cap the tasks at about
 * 65,000. It is turned off for these cases (each runs in a process of its
 * own). */
static inline void no_fake_stacks(void)
{
#ifdef NP_ASAN
    __asan_option_detect_stack_use_after_return = 0;
#endif
}

static inline bool emulated(void)
{
    return getenv("NP_TEST_EMULATED") != NULL;
}

static inline long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    NP_CHECK(f != NULL);
    char line[256];
    long v = -1;
    size_t k = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':')
            v = atol(line + k + 1);
    fclose(f);
    return v;
}

static inline long count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    NP_CHECK(f != NULL);
    long n = 0;
    int c;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static inline long max_map_count(void)
{
    long v = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = 65530;
        fclose(f);
    }
    return v;
}

static inline const char *layout_name(int l)
{
    return l == NP__STACK_CARVED ? "carved (MADV_GUARD_INSTALL)" : "mapped (PROT_NONE guard mapping)";
}

/* This case's layout: the fallback if `mapping`, else the default. Must
 * come before the case's first np_run. */
static inline int use_layout(bool mapping)
{
    if (mapping)
        NP_CHECK_OK(setenv("NP_STACK_GUARD", "mapping", 1));
    int l = np__stack_layout();
    if (mapping && l != NP__STACK_MAPPED)
        NP_SKIP("the layout was chosen earlier in this process (NP_TEST_FORK=0?)");
    printf("  layout: %s\n", layout_name(l));
    return l;
}

/* valgrind keeps a table of the mappings, of a fixed size (VG_N_SEGMENTS),
 * which 20,000 stacks in the fallback layout overflow. */
static inline bool under_valgrind(void)
{
#ifdef NP_VALGRIND
    return RUNNING_ON_VALGRIND;
#else
    return false;
#endif
}

/* Whether the whole guard region of s faults, asked without touching it:
 * populating a guard page fails with EFAULT (MADV_GUARD_INSTALL), a
 * PROT_NONE one with ENOMEM or EFAULT; and the stack's bottom page is
 * ordinary memory. */
static inline bool guard_intact(const np__stack *s)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    for (char *p = s->map; p < (char *)s->info.bottom; p += ps)
        if (madvise(p, ps, MADV_POPULATE_READ) == 0)
            return false;
    return madvise((char *)s->info.bottom, ps, MADV_POPULATE_READ) == 0;
}

/* Every stack is back: the chunks are empty. Empty chunks wait to be
 * released in batches (at most 32 of them; np_run's end flushes them):
 * after the flush none is left, nor any dirty slot. */
static inline void expect_no_chunks_after_flush(void)
{
    long chunks, dirty;
    np__stack_chunk_counts(&chunks, &dirty);
    NP_CHECK_LE(chunks, 32);
    NP_CHECK_EQ(dirty, 0);
    np__stack_retired_flush();
    np__stack_chunk_counts(&chunks, &dirty);
    NP_CHECK_EQ(chunks, 0);
    NP_CHECK_EQ(dirty, 0);
    /* And with every chunk back, no arena is left mapped. */
    np__stack_arena_stats as;
    np__stack_arena_stats_get(&as);
    NP_CHECK_EQ(as.arenas, 0);
}

#endif
