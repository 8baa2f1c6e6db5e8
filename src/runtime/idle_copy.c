/* Memory for idle stacks' copies (idle_stack.c): slabs of one size class
 * each, carved from large reservations of address space.
 *
 * Why not malloc: a million parked tasks' copies are a gigabyte, and
 * glibc grows its heaps 128 KiB at a time, each growth an mprotect or brk
 * that takes the process's mmap lock for writing. Against the read side
 * (the stacks' guard installs and prefaults, page faults that fall back
 * to it) that lock convoyed: bench/million's spawn took 4-4.7 s instead
 * of 1.7 s in about one run in five, 23% of the time in mprotect. Here a
 * reservation is mapped once per REGION_BYTES and nothing else takes the
 * lock for writing: an empty slab's memory goes back with MADV_DONTNEED,
 * in batches, and its address space is kept for the next slab.
 *
 * A copy is [header: its slab][bytes]; a copy too large for the classes
 * comes from malloc, with a NULL slab in its header.
 *
 * A slab's states, all under `lock`:
 *   CARVED    taken from a region or from `released`: its objects are free
 *             and never touched (bump allocation from `next_unused`)
 *   PARTIAL   on its class's list: some objects free
 *   FULL      on no list: no object free
 *   SPARE     empty, its memory kept: its class's `spare` (one per class),
 *             taken before any other slab for that class
 *   RETIRING  empty, in `batch`, its memory about to be released; the
 *             batch is taken whole (under release_lock, then `lock`) and
 *             released outside `lock`, then its slabs are RELEASED. If
 *             `batch` is full meanwhile (a release in progress), an empty
 *             slab stays PARTIAL, memory kept, reused first; a batch
 *             that a busy release could not take waits for the next
 *             empty slab, or np_run's end (at most BATCH_ROOM slabs)
 *   RELEASED  on `released`, no memory: reused for any class
 * Transitions: CARVED/RELEASED -> PARTIAL on its first allocation; PARTIAL
 * <-> FULL; PARTIAL -> empty -> SPARE if its class has none, else
 * RETIRING; SPARE -> PARTIAL when taken. A slab's memory is only released
 * while it is in a batch taken off `batch`, so never while an object of
 * it is out. */
#include <pthread.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "base/np_assert.h"
#include "base/sanitizer.h"
#include "runtime/idle_copy.h"
#include "runtime/stack_layout.h"

#define SLAB_BYTES ((size_t)64 << 10)
#define REGION_BYTES ((size_t)256 << 20)
#define GRAIN 128                     /* class sizes: multiples of this, */
#define CLASSES 32                    /* up to 4 KiB, header included */
#define HEADER 16                     /* keeps the copy 16-byte aligned */
#define BATCH 32                      /* empty slabs released at once, */
#define BATCH_ROOM 64                 /* and room for more meanwhile */

typedef struct slab {
    char *base;
    unsigned cls, obj_size, nobj, nfree, next_unused;
    void *free;                       /* free objects, linked through their first word */
    struct slab *prev, *next;
} slab;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static slab *partial[CLASSES], *spare[CLASSES];
static slab *released;                /* through next */
static slab *batch[BATCH_ROOM];
static int nbatch;
/* One release at a time, which owns these: this runs on a task's stack
 * (a switch's pick resuming a moved task), which has no room for them. */
static pthread_mutex_t release_lock = PTHREAD_MUTEX_INITIALIZER;
static slab *rel[BATCH_ROOM + CLASSES];
static struct iovec rel_iov[BATCH_ROOM + CLASSES];
static char *region_next, *region_end;
static long slabs_with_memory;        /* for tests: CARVED..RETIRING */

static void partial_add(slab *s)
{
    s->prev = NULL;
    s->next = partial[s->cls];
    if (s->next)
        s->next->prev = s;
    partial[s->cls] = s;
}

static void partial_remove(slab *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        partial[s->cls] = s->next;
    if (s->next)
        s->next->prev = s->prev;
}

/* A slab for class cls, empty, with no list; NULL if out of memory. */
static slab *slab_get_locked(unsigned cls)
{
    slab *s = spare[cls];
    if (s) {
        spare[cls] = NULL;
        return s;
    }
    s = released;
    if (s) {
        released = s->next;
    } else {
        if (region_next == region_end) {
            char *r = mmap(NULL, REGION_BYTES, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (r == MAP_FAILED)
                return NULL;
            region_next = r;
            region_end = r + REGION_BYTES;
        }
        s = calloc(1, sizeof *s);
        if (!s)
            return NULL;
        s->base = region_next;
        region_next += SLAB_BYTES;
    }
    s->cls = cls;
    s->obj_size = (cls + 1) * GRAIN;
    s->nobj = (unsigned)(SLAB_BYTES / s->obj_size);
    s->nfree = s->nobj;
    s->next_unused = 0;
    s->free = NULL;
    slabs_with_memory++;
#ifdef NP_ASAN
    __asan_poison_memory_region(s->base, SLAB_BYTES);
#endif
    return s;
}

/* Under release_lock and `lock`: `batch` (and the spares, if asked)
 * move to rel; how many. */
static int batch_take_locked(bool spares)
{
    int n = nbatch;
    memcpy(rel, batch, sizeof(slab *) * (size_t)n);
    nbatch = 0;
    for (unsigned c = 0; spares && c < CLASSES; c++) {
        if (spare[c])
            rel[n++] = spare[c];
        spare[c] = NULL;
    }
    return n;
}

/* Under release_lock, without `lock`: releases rel's n slabs' memory. */
static void rel_release(int n)
{
    if (n == 0)
        return;
    for (int i = 0; i < n; i++)
        rel_iov[i] = (struct iovec){ .iov_base = rel[i]->base, .iov_len = SLAB_BYTES };
    (void)np__madvise_many(rel_iov, n, MADV_DONTNEED);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n; i++) {
        rel[i]->next = released;
        released = rel[i];
        slabs_with_memory--;
    }
    pthread_mutex_unlock(&lock);
}

void *np__idle_copy_alloc(size_t len)
{
    size_t total = len + HEADER;
    if (total > (size_t)GRAIN * CLASSES) {
        slab **h = malloc(total);
        if (!h)
            return NULL;
        *h = NULL;
        return (char *)h + HEADER;
    }
    unsigned cls = (unsigned)((total + GRAIN - 1) / GRAIN - 1);
    pthread_mutex_lock(&lock);
    slab *s = partial[cls];
    if (!s) {
        s = slab_get_locked(cls);
        if (!s) {
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        partial_add(s);
    }
    char *obj;
    if (s->free) {
        obj = s->free;
#ifdef NP_ASAN
        __asan_unpoison_memory_region(obj, sizeof(void *));
#endif
        s->free = *(void **)obj;
    } else {
        obj = s->base + (size_t)s->next_unused++ * s->obj_size;
    }
    if (--s->nfree == 0)
        partial_remove(s);
    pthread_mutex_unlock(&lock);
#ifdef NP_ASAN
    __asan_unpoison_memory_region(obj, total);
#endif
    *(slab **)obj = s;
    return obj + HEADER;
}

void np__idle_copy_free(void *p)
{
    if (!p)
        return;
    char *obj = (char *)p - HEADER;
    slab *s = *(slab **)obj;
    if (!s) {
        free(obj);
        return;
    }
#ifdef NP_ASAN
    __asan_poison_memory_region(obj, s->obj_size);
    __asan_unpoison_memory_region(obj, sizeof(void *));
#endif
    bool release = false;
    pthread_mutex_lock(&lock);
    np__assert(s->nfree < s->nobj);
    *(void **)obj = s->free;
    s->free = obj;
#ifdef NP_ASAN
    __asan_poison_memory_region(obj, sizeof(void *));
#endif
    if (++s->nfree == 1)
        partial_add(s);
    if (s->nfree == s->nobj) {
        if (!spare[s->cls]) {
            partial_remove(s);
            spare[s->cls] = s;
        } else if (nbatch < BATCH_ROOM) {
            partial_remove(s);
            batch[nbatch++] = s;
            release = nbatch >= BATCH;
        }
        /* else it stays on its list, memory kept: see RETIRING above. */
    }
    pthread_mutex_unlock(&lock);
    if (release && pthread_mutex_trylock(&release_lock) == 0) {
        pthread_mutex_lock(&lock);
        int n = batch_take_locked(false);
        pthread_mutex_unlock(&lock);
        rel_release(n);
        pthread_mutex_unlock(&release_lock);
    }
}

void np__idle_copy_flush(void)
{
    pthread_mutex_lock(&release_lock);
    pthread_mutex_lock(&lock);
    int n = batch_take_locked(true);
    pthread_mutex_unlock(&lock);
    rel_release(n);
    pthread_mutex_unlock(&release_lock);
}

long np__idle_copy_slabs(void)
{
    pthread_mutex_lock(&lock);
    long n = slabs_with_memory;
    pthread_mutex_unlock(&lock);
    return n;
}
