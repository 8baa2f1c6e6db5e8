/* A million tasks (stack.h): stacks carved many to a mapping, their guard
 * regions made by madvise(MADV_GUARD_INSTALL), so that the kernel's
 * vm.max_map_count no longer caps the tasks parked at once: 200,000 tasks
 * parked at once; and the fallback layout (a PROT_NONE guard mapping per
 * stack, NP_STACK_GUARD=mapping), which keeps its budget.
 *
 * Every case that names a layout runs in it (stack_test.h, use_layout):
 * "_mapping" cases set NP_STACK_GUARD=mapping in their own process (each
 * case is a fresh fork of the harness) before the runtime first maps a
 * stack; the others take the process default (CARVED where the kernel has
 * MADV_GUARD_INSTALL; under qemu-user, which ignores the advice, MAPPED).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/idle_stack.h"
#include "runtime/idle_copy.h"
#include "runtime/scheduler.h"
#include "runtime/task.h"
#include "netpoll.h"
#include "np_test.h"
#include "stack_test.h"

/* 200,000 tasks parked at once: with 16 KiB stacks under AddressSanitizer
 * (see t_200k_parked_at_once). ThreadSanitizer makes a fiber, a thread to
 * it, for every stack: about 300 µs and 1 MiB each, and it allows 8,128
 * threads (the library holds at most NP__TSAN_STACKS_MAX stacks at once
 * there): 2,000 tasks. */
#ifdef NP_TSAN
#define PARKED_TASKS 2000
#else
#define PARKED_TASKS 200000
#endif

/* ---- 200,000 tasks parked at once ------------------------------------------ */

static long ntasks;
static _Atomic long parked, finished;
static _Atomic int go;
static int64_t first_wake;
static struct {
    long rss_before, rss_parked, rss_after, pte_parked, maps, chunks, dirty, started;
    long max_started;
    int64_t spawn_ns;
} seen;

static void sleeper(void *arg)
{
    (void)arg;
    atomic_fetch_add(&parked, 1);
    np_sleep_until(first_wake);
    while (!atomic_load(&go))
        np_sleep(50 * NP_MILLISECOND);
    atomic_fetch_add(&finished, 1);
}

static void park_all_main(void *arg)
{
    (void)arg;
    seen.rss_before = status_kib("VmRSS");
    int64_t t0 = np_now();
    /* Later than the spawn should take, so the count reaches ntasks with
     * every task parked; they wait on (50 ms naps) until `go` if not. */
    first_wake = t0 + (emulated() ? 30 : 3) * NP_SECOND;
    for (long i = 0; i < ntasks; i++)
        NP_CHECK_OK(np_go(sleeper, NULL));
    int64_t limit = t0 + 120 * NP_SECOND;
    while (atomic_load(&parked) < ntasks) {
        NP_CHECK_MSG(np_now() < limit, "only %ld of %ld tasks parked after 120 s",
                     atomic_load(&parked), ntasks);
        np_sleep(NP_MILLISECOND);
    }
    seen.spawn_ns = np_now() - t0;
    np__sched_stats st;
    np__sched_get_stats(&st);
    seen.started = st.started;
    seen.rss_parked = status_kib("VmRSS");
    seen.pte_parked = status_kib("VmPTE");
    seen.maps = count_maps();
    np__stack_chunk_counts(&seen.chunks, &seen.dirty);
    NP_CHECK_EQ(atomic_load(&finished), 0); /* every one still parked */
    atomic_store(&go, 1);
    while (atomic_load(&finished) < ntasks) {
        NP_CHECK_MSG(np_now() < limit, "only %ld of %ld tasks finished after 120 s",
                     atomic_load(&finished), ntasks);
        np_sleep(NP_MILLISECOND);
    }
}

static void t_200k_parked_at_once(void)
{
    int l = use_layout(false);
    if (l != NP__STACK_CARVED)
        NP_SKIP("no MADV_GUARD_INSTALL here: the fallback's budget (t_200k_mapping) applies");
    ntasks = PARKED_TASKS;
    no_fake_stacks();
    np_config c = { .workers = 2 };
#if defined(NP_ASAN) || defined(NP_TSAN)
    /* The smallest: AddressSanitizer clears a stack's shadow (an eighth of
     * it) as each task starts on it. */
    c.stack_size = 16 * 1024;
#endif
    NP_CHECK_OK(np_run(&c, park_all_main, NULL));
    NP_CHECK_EQ(atomic_load(&finished), ntasks);
    long per = (long)np__stacks_per_mapping(c.stack_size ? c.stack_size : 256 * 1024);
    printf("  %ld tasks parked in %.2f s holding %ld stacks: RSS +%ld KiB (%.2f KiB each),"
           " page tables %ld KiB, %ld mappings, %ld chunks of %ld\n",
           ntasks, (double)seen.spawn_ns / 1e9, seen.started, seen.rss_parked - seen.rss_before,
           (double)(seen.rss_parked - seen.rss_before) / (double)ntasks, seen.pte_parked, seen.maps,
           seen.chunks, per);
    /* All at once, each on its own stack (the old budget was ~30,000). */
    NP_CHECK_EQ(seen.started, ntasks + 1);
    NP_CHECK_LE(seen.chunks, (ntasks + 1 + per - 1) / per + 2 * 32);
    /* Many stacks to a mapping: far from the kernel's limit (the
     * sanitizers add mappings of their own, a few per fiber). */
#if !defined(NP_ASAN) && !defined(NP_TSAN)
    NP_CHECK_LT(seen.maps, (ntasks + 1) / per + 4096);
#endif
    NP_CHECK_LT(seen.maps, max_map_count() / 2);
#if !defined(NP_ASAN) && !defined(NP_TSAN)
    /* Every stack resident, a page each at least; and little more than
     * that and the task struct: 4.45 KiB measured. */
    NP_CHECK_GE(seen.rss_parked - seen.rss_before, ntasks * 4);
    NP_CHECK_LE(seen.rss_parked - seen.rss_before, ntasks * 8);
#endif
    /* When np_run returns every chunk is gone, with its arena, and no
     * slab of idle stacks' copies holds memory. */
    expect_no_chunks_after_flush();
    NP_CHECK_EQ(np__idle_copy_slabs(), 0);
}

/* ---- the fallback keeps its budget --------------------------------------------- */

static void brief_sleeper(void *arg)
{
    (void)arg;
    atomic_fetch_add(&parked, 1);
    np_sleep(10 * NP_MILLISECOND);
    atomic_fetch_add(&finished, 1);
}

static void budget_main(void *arg)
{
    (void)arg;
    for (long i = 0; i < ntasks; i++)
        NP_CHECK_OK(np_go(brief_sleeper, NULL));
    int64_t limit = np_now() + 120 * NP_SECOND;
    while (atomic_load(&finished) < ntasks) {
        NP_CHECK_MSG(np_now() < limit, "only %ld of %ld tasks finished after 120 s",
                     atomic_load(&finished), ntasks);
        np__sched_stats st;
        np__sched_get_stats(&st);
        if (st.started > seen.max_started)
            seen.max_started = st.started;
        np_sleep(NP_MILLISECOND);
    }
}

/* PARKED_TASKS tasks, each parked 10 ms, when at most `budget` may hold a
 * stack at once: all run, never more than that at once (as sampled), and
 * the budget is used, not a small part of it. */
static void run_over_budget(long budget)
{
    ntasks = PARKED_TASKS;
    no_fake_stacks();
    np_config c = { .workers = 2 };
#if defined(NP_ASAN) || defined(NP_TSAN)
    c.stack_size = 16 * 1024;
#endif
    NP_CHECK_OK(np_run(&c, budget_main, NULL));
    NP_CHECK_EQ(atomic_load(&finished), ntasks);
    printf("  %ld tasks, at most %ld held a stack at once (budget %ld)\n", ntasks,
           seen.max_started, budget);
    NP_CHECK_LE(seen.max_started, budget);
    if (!emulated())
        NP_CHECK_GT(seen.max_started, (budget < ntasks ? budget : ntasks) / 4);
    np__sched_stats st;
    np__sched_get_stats(&st);
    NP_CHECK_EQ(st.stacks_mapped, st.stacks_unmapped);
}

static void t_200k_mapping(void)
{
    use_layout(true);
    long budget = max_map_count() / 2 - 2048;
    if (budget < 256)
        budget = 256;
#ifdef NP_TSAN
    if (budget > NP__TSAN_STACKS_MAX)
        budget = NP__TSAN_STACKS_MAX;
#endif
    run_over_budget(budget);
}

NP_TEST_LIST(
    NP_CASE(t_200k_parked_at_once),
    NP_CASE(t_200k_mapping))
