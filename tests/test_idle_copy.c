/* The idle stacks' copy allocator (idle_copy.c): every size from 1 byte to
 * past the classes, alignment, contents kept, slabs reused and their
 * memory given back; and plain threads allocating and freeing at random
 * at once, each copy checked against its own pattern (ThreadSanitizer
 * runs it too), ending with no slab holding memory. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/idle_copy.h"
#include "np_test.h"

static void fill(unsigned char *p, size_t n, unsigned tag)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(tag * 31u + i);
}

static bool intact(const unsigned char *p, size_t n, unsigned tag)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(tag * 31u + i))
            return false;
    return true;
}

/* Sizes 1..6000 at once (classes up to 4 KiB, malloc beyond), each
 * aligned and kept intact while all the others are written. */
static void t_every_size(void)
{
    enum { N = 6000 };
    static unsigned char *p[N + 1];
    for (size_t n = 1; n <= N; n++) {
        p[n] = np__idle_copy_alloc(n);
        NP_CHECK(p[n] != NULL);
        NP_CHECK_EQ((uintptr_t)p[n] % 16, 0);
        fill(p[n], n, (unsigned)n);
    }
    for (size_t n = 1; n <= N; n++) {
        NP_CHECK_MSG(intact(p[n], n, (unsigned)n), "copy of %zu bytes changed", n);
        np__idle_copy_free(p[n]);
    }
    np__idle_copy_free(NULL);
    np__idle_copy_flush();
    NP_CHECK_EQ(np__idle_copy_slabs(), 0);
}

/* Many copies of one size fill many slabs; freed, all but one slab per
 * class go back in batches and the flush takes the rest; allocated again,
 * they come from the released slabs (the count stays bounded) and read
 * as written, not as the old contents. */
static void t_slabs_released_and_reused(void)
{
    enum { N = 20000, LEN = 900 };
    static unsigned char *p[N];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            p[i] = np__idle_copy_alloc(LEN);
            NP_CHECK(p[i] != NULL);
            fill(p[i], LEN, (unsigned)(i + round));
        }
        long held = np__idle_copy_slabs();
        /* 1 KiB objects, 64 to a 64 KiB slab. */
        NP_CHECK_GE(held, N / 64);
        NP_CHECK_LE(held, N / 64 + 2);
        for (int i = 0; i < N; i++) {
            NP_CHECK(intact(p[i], LEN, (unsigned)(i + round)));
            np__idle_copy_free(p[i]);
        }
        /* At most a spare and a batch of 32 wait. */
        NP_CHECK_LE(np__idle_copy_slabs(), 1 + 32);
        np__idle_copy_flush();
        NP_CHECK_EQ(np__idle_copy_slabs(), 0);
    }
}

enum { THREADS = 4, HELD = 256 };

static void *churn(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    unsigned char *held[HELD] = { 0 };
    size_t len[HELD] = { 0 };
    unsigned tag[HELD] = { 0 };
    for (int k = 0; k < 200000; k++) {
        int i = (int)(rand_r(&seed) % HELD);
        if (held[i]) {
            NP_CHECK(intact(held[i], len[i], tag[i]));
            np__idle_copy_free(held[i]);
            held[i] = NULL;
        } else {
            len[i] = 1 + (size_t)(rand_r(&seed) % 5000);
            tag[i] = (unsigned)rand_r(&seed);
            held[i] = np__idle_copy_alloc(len[i]);
            NP_CHECK(held[i] != NULL);
            fill(held[i], len[i], tag[i]);
        }
    }
    for (int i = 0; i < HELD; i++) {
        if (held[i]) {
            NP_CHECK(intact(held[i], len[i], tag[i]));
            np__idle_copy_free(held[i]);
        }
    }
    return NULL;
}

static void t_threads_at_once(void)
{
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        NP_CHECK_EQ(pthread_create(&th[i], NULL, churn, (void *)(uintptr_t)(i + 7)), 0);
    for (int i = 0; i < THREADS; i++)
        NP_CHECK_EQ(pthread_join(th[i], NULL), 0);
    np__idle_copy_flush();
    NP_CHECK_EQ(np__idle_copy_slabs(), 0);
}

NP_TEST_LIST(
    NP_CASE(t_every_size),
    NP_CASE(t_slabs_released_and_reused),
    NP_CASE(t_threads_at_once))
