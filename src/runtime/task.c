/* Task structs and the annotated switch. See task.h. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/np_assert.h"
#include "os/os.h"
#include "base/sanitizer.h"
#include "runtime/task.h"

#if !defined(NP_CONTEXT_UCONTEXT) && UINTPTR_MAX == UINT64_MAX
/* The resume path's fields share the first line (see struct np__task). */
_Static_assert(offsetof(np__task, target_worker) + sizeof(int) <= 64,
               "np__task: the fields read to resume a task must fit its first cache line");
#endif

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

/* Task structs are carved from blocks of BLOCK_BYTES, each mapped once,
 * and all given back when the run ends (meanwhile a finished task's struct
 * is pooled, stack_cache.c, never freed). Why not malloc: one struct at a
 * time from a thread other than the main one grows glibc's heap a page at
 * a time, each an mprotect that takes the mmap lock for writing. A
 * million spawns made 123,000 of them, and against the stacks' guard
 * installs and prefaults (its read side) they convoyed: bench/million's
 * spawn took 4-4.4 s instead of 1.6-1.7 s in about one run in three (the
 * runs whose spawning task ran on the second worker's thread). */
#define BLOCK_BYTES ((size_t)2 << 20)

static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;
static void *blocks;               /* each block's first word: the next */
static char *block_next, *block_end;
static np__task *spare_structs;    /* carved, then not used (init failed) */

static np__task *struct_carve(void)
{
    size_t size = round_up(sizeof(np__task), 64);
    pthread_mutex_lock(&blocks_lock);
    np__task *t = spare_structs;
    if (t) {
        spare_structs = t->next;
    } else {
        if ((size_t)(block_end - block_next) < size) {
            char *b = mmap(NULL, BLOCK_BYTES, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (b == MAP_FAILED) {
                pthread_mutex_unlock(&blocks_lock);
                return NULL;
            }
            *(void **)b = blocks;
            blocks = b;
            block_next = b + 64;
            block_end = b + BLOCK_BYTES;
        }
        t = (np__task *)block_next;
        block_next += size;
    }
    pthread_mutex_unlock(&blocks_lock);
    return t;
}

static void struct_uncarve(np__task *t)
{
    pthread_mutex_lock(&blocks_lock);
    t->next = spare_structs;
    spare_structs = t;
    pthread_mutex_unlock(&blocks_lock);
}

void np__task_structs_release(void)
{
    pthread_mutex_lock(&blocks_lock);
    void *b = blocks;
    blocks = NULL;
    block_next = block_end = NULL;
    spare_structs = NULL;
    pthread_mutex_unlock(&blocks_lock);
    while (b) {
        void *next = *(void **)b;
        munmap(b, BLOCK_BYTES);
        b = next;
    }
}

np__task *np__task_new_struct(void)
{
    np__task *t = struct_carve();
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t);
    /* The timers' shard: the same for structs carved together (256 KiB
     * of a block: 682 of them). A shard's timers due at once run in turn
     * (np__timers_run takes one shard, then the next), so tasks spawned
     * together and woken together run together, and the chunks of their
     * stacks empty one after another (bench/million: a million wake-ups
     * 1.2-1.4 s; 1.4-1.8 s with neighbours in different shards, every
     * chunk emptying only at the end). */
    uint32_t hint = (uint32_t)((uintptr_t)t >> 18);
    if (np__timer_init(&t->sleep_timer, hint) != 0) {
        struct_uncarve(t);
        return NULL;
    }
    if (np__timer_init(&t->wrec.timer, hint + 1) != 0) {
        np__timer_destroy(&t->sleep_timer);
        struct_uncarve(t);
        return NULL;
    }
    t->wrec.timer_ready = true;
    t->target_worker = -1;
    return t;
}

/* The registry (task.h). np__all_tasks is also read by tools/gdb/netpoll.py. */
np__task *_Atomic np__all_tasks;

void np__task_register(np__task *t)
{
    np__task *head = atomic_load_explicit(&np__all_tasks, memory_order_relaxed);
    do
        t->all_next = head;
    while (!atomic_compare_exchange_weak_explicit(&np__all_tasks, &head, t, memory_order_release,
                                                  memory_order_relaxed));
}

np__task *np__task_registry_first(void)
{
    return atomic_load_explicit(&np__all_tasks, memory_order_acquire);
}

void np__task_registry_clear(void)
{
    atomic_store_explicit(&np__all_tasks, NULL, memory_order_relaxed);
}

void np__task_free_struct(np__task *t)
{
    np__timer_destroy(&t->sleep_timer);
    np__timer_destroy(&t->wrec.timer);
    /* Its memory goes with its block (np__task_structs_release). */
}

void np__task_start_on(np__task *t, np__stack *s, void (*entry)(void *))
{
    t->stk = s;
    t->stack.bottom = s->info.bottom;
    t->stack.size = s->info.size;
#ifdef NP_ASAN
    /* A task that ended deep in a call chain left its frames' redzones
     * poisoned; this stack starts afresh. */
    __asan_unpoison_memory_region(s->info.bottom, s->info.size);
#endif
    t->stack.tsan_fiber = s->info.tsan_fiber;
    np__ctx_make(&t->ctx, (void *)s->info.bottom, s->info.size, entry, t);
}

np__stack *np__task_finished(np__task *t)
{
    t->id = 0; /* np_dump: no longer live */
    t->park_site = NULL;
    np__stack *s = t->stk;
    t->stk = NULL;
    return s;
}

void np__stackinfo_of_thread(np__stackinfo *si)
{
    memset(si, 0, sizeof *si);
    void *addr;
    size_t size;
    if (np__os_thread_stack(&addr, &size) == 0) {
        si->bottom = addr;
        si->size = size;
    }
#ifdef NP_TSAN
    si->tsan_fiber = __tsan_get_current_fiber();
#endif
}

void np__task_switch(np__ctx *from, np__ctx *to, const np__stackinfo *to_stack, bool exiting)
{
#ifdef NP_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(exiting ? NULL : &fake, to_stack->bottom, to_stack->size);
#endif
#ifdef NP_TSAN
    __tsan_switch_to_fiber(to_stack->tsan_fiber, 0);
#endif
    (void)to_stack;
    (void)exiting;
    np__ctx_switch(from, to);
#ifdef NP_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

NP_NO_TSAN void np__task_exit_switch(np__ctx *from, np__ctx *to, const np__stackinfo *to_stack)
{
#ifdef NP_ASAN
    __sanitizer_start_switch_fiber(NULL, to_stack->bottom, to_stack->size);
#endif
#ifdef NP_TSAN
    __tsan_switch_to_fiber(to_stack->tsan_fiber, 0);
#endif
    (void)to_stack;
    np__ctx_switch(from, to);
    NP__PANIC("finished task resumed");
}

void np__task_started(void)
{
#ifdef NP_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
}
