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
#include "runtime/stack_layout.h"

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

#define GUARD_FRAME ((size_t)64 * 1024) /* a frame this large cannot jump the guard */
#define CHUNK_SLOTS 64                  /* most stacks per mapping (bits of a word) */
#define CHUNK_BYTES ((size_t)64 << 20)  /* and at most this much address space */

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
size_t np__stack_slot_size(size_t stack_size)
{
    return np__stack_guard_size() + round_up(stack_size + header_size(), np__page_size());
}

unsigned np__stacks_per_mapping(size_t stack_size)
{
    if (np__stack_layout() != NP__STACK_CARVED)
        return 1;
    size_t n = CHUNK_BYTES / np__stack_slot_size(stack_size);
    return n < 1 ? 1 : n > CHUNK_SLOTS ? CHUNK_SLOTS : (unsigned)n;
}

/* Fills in the header of a slot whose memory is readable and writable. */
np__stack *np__stack_slot_init(char *slot, size_t size, struct np__stack_chunk *c)
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

np__stack *np__stack_mapped_map(size_t stack_size)
{
    size_t size = np__stack_slot_size(stack_size);
    char *map = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | NP__OS_MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    if (mprotect(map, np__stack_guard_size(), PROT_NONE) != 0) {
        munmap(map, size);
        return NULL;
    }
    return np__stack_slot_init(map, size, NULL);
}

/* ---- either ------------------------------------------------------------------ */

np__stack *np__stack_map(size_t stack_size)
{
    return np__stack_layout() == NP__STACK_CARVED ? np__stack_carved_map(stack_size) : np__stack_mapped_map(stack_size);
}

void np__stack_unmap(np__stack *s)
{
    slot_fini(s);
    if (s->chunk)
        np__stack_carved_unmap(s);
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
