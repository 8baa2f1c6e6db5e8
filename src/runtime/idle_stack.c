/* Idle stacks: moving a parked task's stack out and back. See idle_stack.h
 * for the states; the policy (which tasks, when) is the scheduler's. */
#include <sched.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <string.h>

#include "runtime/context.h"
#include "base/cpu_relax.h"
#include "runtime/idle_copy.h"
#include "runtime/idle_stack.h"
#include "base/np_assert.h"
#include "os/os.h"
#include "base/sanitizer.h"

/* Below the saved stack pointer, the x86-64 ABI lets a function keep data
 * (the red zone); keep it with the rest. */
#define BELOW_SP 128

static _Atomic int64_t moved_bytes;
static _Atomic unsigned long moves;
static _Atomic unsigned long prefaulted; /* ranges, for tests */

/* A parked stack carries AddressSanitizer's poisoned red zones between its
 * frames, and the instrumented memcpy would report reading them: copy word by
 * word, uninstrumented, in that build. Both ends are 8-byte aligned. */
#ifdef NP_ASAN
__attribute__((no_sanitize_address)) static void copy_words(void *dst, const void *src, size_t n)
{
    volatile uint64_t *d = dst;
    const volatile uint64_t *s = src;
    for (size_t i = 0; i < n / 8; i++)
        d[i] = s[i];
}
#else
static void copy_words(void *dst, const void *src, size_t n)
{
    memcpy(dst, src, n);
}
#endif

bool np__idle_stack_copy_out(np__task *t, uint64_t seen, char **release_from, size_t *release_len)
{
    if (NP__IDLE_STATE(seen) != NP__IDLE_PARKED)
        return false;
    uint64_t moving = (seen & ~(uint64_t)3) | NP__IDLE_MOVING;
    if (!atomic_compare_exchange_strong_explicit(&t->idle, &seen, moving, memory_order_acquire,
                                                 memory_order_relaxed))
        return false; /* resumed since it was queued */
    /* Only now, after the acquire that pairs with the parker's release, are
     * the saved stack pointer and the stack of this park visible. */
    np__stack *st = t->stk;
    char *sp = np__ctx_sp(&t->ctx);
    if (!st || !sp) {
        atomic_store_explicit(&t->idle, seen, memory_order_release);
        return false;
    }
    /* From the saved stack pointer (less the red zone) to the end of the
     * mapping: the frames, and the stack's own header at the top. */
    char *lo = sp - BELOW_SP;
    if (lo < (char *)st->info.bottom)
        lo = (char *)st->info.bottom;
    char *hi = (char *)st->map + st->map_size;
    size_t len = (size_t)(hi - lo);
    void *copy = np__idle_copy_alloc(len);
    if (!copy) {
        atomic_store_explicit(&t->idle, seen, memory_order_release);
        return false;
    }
    copy_words(copy, lo, len);
    t->moved = copy;
    /* Atomic: np__idle_stack_prefault may read them from another worker. */
    __atomic_store_n(&t->moved_at, lo, __ATOMIC_RELAXED);
    __atomic_store_n(&t->moved_len, len, __ATOMIC_RELAXED);
    char *first = (char *)((uintptr_t)lo & ~(uintptr_t)(np__page_size() - 1));
    *release_from = first;
    *release_len = (size_t)(hi - first);
    atomic_fetch_add_explicit(&moved_bytes, (int64_t)len, memory_order_relaxed);
    atomic_fetch_add_explicit(&moves, 1, memory_order_relaxed);
    return true;
}

void np__idle_stack_moved(np__task *t)
{
    uint64_t w = atomic_load_explicit(&t->idle, memory_order_relaxed);
    np__assert(NP__IDLE_STATE(w) == NP__IDLE_MOVING);
    atomic_store_explicit(&t->idle, (w & ~(uint64_t)3) | NP__IDLE_MOVED, memory_order_release);
}

void np__idle_stack_resume_slow(np__task *t)
{
    uint64_t w = atomic_load_explicit(&t->idle, memory_order_acquire);
    for (unsigned spins = 0;; spins++) {
        switch (NP__IDLE_STATE(w)) {
        case NP__IDLE_RUN:
            return;
        case NP__IDLE_PARKED:
            if (atomic_compare_exchange_weak_explicit(&t->idle, &w, w & ~(uint64_t)3, memory_order_acquire,
                                                      memory_order_acquire))
                return;
            continue;
        case NP__IDLE_MOVING:
            /* A copy takes microseconds, unless the sweeper's thread lost
             * its CPU: then give ours up rather than spin through a slice. */
            if (spins >= 1000)
                sched_yield();
            else
                np__cpu_relax();
            w = atomic_load_explicit(&t->idle, memory_order_acquire);
            continue;
        case NP__IDLE_MOVED:
            /* Only this thread may leave MOVED: plain stores suffice. */
            copy_words(t->moved_at, t->moved, t->moved_len);
            np__idle_copy_free(t->moved);
            atomic_fetch_sub_explicit(&moved_bytes, (int64_t)t->moved_len, memory_order_relaxed);
            t->moved = NULL;
            __atomic_store_n(&t->moved_at, NULL, __ATOMIC_RELAXED);
            __atomic_store_n(&t->moved_len, 0, __ATOMIC_RELAXED);
            atomic_store_explicit(&t->idle, w & ~(uint64_t)3, memory_order_release);
            return;
        }
    }
}

void np__idle_stack_prefault(np__task *const *v, int n)
{
    struct iovec iov[NP__PREFAULT_MAX];
    uintptr_t ps = (uintptr_t)np__page_size();
    int k = 0;
    for (int i = 0; i < n && k < NP__PREFAULT_MAX; i++) {
        np__task *x = v[i];
        uint64_t w = atomic_load_explicit(&x->idle, memory_order_acquire);
        if (NP__IDLE_STATE(w) != NP__IDLE_MOVED)
            continue;
        /* A thief may resume the task meanwhile. The word (its park count
         * included) still the same after the reads says the pair is of
         * this move. Best effort all the same: by the time of the call the
         * task may have run and finished, and its stack be free (the call
         * faults in a free slot's page) or gone (it fails on that range: a
         * guard, a hole), and in a window of a few instructions the program
         * may even have mapped something else there, whose pages the call
         * then faults in for writing. It never changes a byte. */
        uintptr_t at = (uintptr_t)__atomic_load_n(&x->moved_at, __ATOMIC_ACQUIRE);
        size_t len = __atomic_load_n(&x->moved_len, __ATOMIC_ACQUIRE);
        if (!at || !len || atomic_load_explicit(&x->idle, memory_order_acquire) != w)
            continue;
        uintptr_t lo = at & ~(ps - 1), hi = (at + len + ps - 1) & ~(ps - 1);
        iov[k++] = (struct iovec){ .iov_base = (void *)lo, .iov_len = hi - lo };
    }
    if (np__stack_populate_ranges(iov, k) == 0)
        atomic_fetch_add_explicit(&prefaulted, (unsigned long)k, memory_order_relaxed);
}

unsigned long np__idle_stack_prefaulted(void)
{
    return atomic_load_explicit(&prefaulted, memory_order_relaxed);
}

void np__idle_stack_counts(int64_t *bytes, unsigned long *n)
{
    *bytes = atomic_load_explicit(&moved_bytes, memory_order_relaxed);
    *n = atomic_load_explicit(&moves, memory_order_relaxed);
}
