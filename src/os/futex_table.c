/* The fallback wait-on-address (os.h's futex calls) for a platform without
 * one, or where its native call may not be used (macOS builds that must not
 * name the private __ulock_* calls): cmake -DNP_FUTEX_TABLE=ON.
 *
 * A fixed table of buckets, each a mutex and a condition variable; a word
 * hashes to one bucket. The waiter checks the word under the bucket's lock
 * and sleeps on its condition variable, which releases the lock; the waker
 * has changed the word before it calls wake, and takes the same lock to
 * broadcast. So a wake cannot fall between the waiter's check and its sleep.
 * Words sharing a bucket wake each other: a spurious wake, which every
 * caller tolerates (it looks at its word again).
 *
 * Slower than a futex (a lock and a broadcast per wake, even with nobody
 * asleep) but correct anywhere POSIX threads are. Condition variables time
 * out on CLOCK_REALTIME (macOS has no pthread_condattr_setclock): a monotonic
 * deadline is converted when the wait starts, so a wall-clock step makes the
 * wait end early or late; callers then look again, or wait once more. */
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "os/os.h"

#define BUCKETS 64 /* a power of two */

static struct bucket {
    pthread_mutex_t lock;
    pthread_cond_t cond;
} buckets[BUCKETS] = {
    [0 ... BUCKETS - 1] = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER },
};

static struct bucket *bucket_of(_Atomic uint32_t *word)
{
    uintptr_t a = (uintptr_t)word;
    return &buckets[((a >> 2) ^ (a >> 9)) & (BUCKETS - 1)];
}

/* Sleeps while *word == val, until rt (CLOCK_REALTIME; NULL: no limit). */
static void wait_rt(_Atomic uint32_t *word, uint32_t val, const struct timespec *rt)
{
    struct bucket *b = bucket_of(word);
    pthread_mutex_lock(&b->lock);
    if (atomic_load_explicit(word, memory_order_acquire) == val) {
        if (rt)
            pthread_cond_timedwait(&b->cond, &b->lock, rt);
        else
            pthread_cond_wait(&b->cond, &b->lock);
    }
    pthread_mutex_unlock(&b->lock);
}

void np__os_futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t ns)
{
    if (ns <= 0) {
        if (ns < 0)
            wait_rt(word, val, NULL);
        return;
    }
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    int64_t at = (int64_t)rt.tv_sec * NP_SECOND + rt.tv_nsec;
    at = ns > INT64_MAX - at ? INT64_MAX : at + ns;
    rt.tv_sec = (time_t)(at / NP_SECOND);
    rt.tv_nsec = (long)(at % NP_SECOND);
    wait_rt(word, val, &rt);
}

void np__os_futex_wait_until(_Atomic uint32_t *word, uint32_t val, int64_t deadline)
{
    np__os_futex_wait(word, val, np__os_ns_until(deadline));
}

void np__os_futex_wake(_Atomic uint32_t *word)
{
    struct bucket *b = bucket_of(word);
    pthread_mutex_lock(&b->lock);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}
