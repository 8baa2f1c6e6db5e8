/* np_mutex: the header's inline fast paths and the library's functions on
 * one mutex. A program gets the inline lock and unlock (a macro over a
 * static inline function), while (np_mutex_lock)(m), a function pointer, a
 * library built without them, or a program built with NP_NO_INLINE call
 * the exported functions; both must agree on the lock word. The stress
 * mixes every path from tasks on four workers and two plain threads (run
 * under ThreadSanitizer in CI): a lost update or a double owner shows in
 * the counter, and a lost wake-up as a hang.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "netpoll.h"
#include "np_test.h"

#if defined(NP_TSAN) || defined(NP_ASAN)
#define ROUNDS 3000
#else
#define ROUNDS 30000
#endif

#if !defined(np_mutex_lock) || !defined(np_mutex_unlock)
#error "netpoll.h did not provide the inline fast paths with this compiler"
#endif

/* The functions, through pointers the compiler cannot see through. */
static int (*volatile lock_fn)(np_mutex *) = np_mutex_lock;
static int (*volatile unlock_fn)(np_mutex *) = np_mutex_unlock;

/* Errors through the inline paths come from the library. */
static void t_inline_paths_give_the_library_errors(void)
{
    np_mutex m = NP_MUTEX_INIT;
    NP_CHECK_EQ(np_mutex_lock(NULL), -EINVAL);
    NP_CHECK_EQ(np_mutex_unlock(NULL), -EINVAL);
    NP_CHECK_EQ(np_mutex_unlock(&m), -EPERM);
    NP_CHECK_EQ((np_mutex_unlock)(&m), -EPERM);
    NP_CHECK_EQ(unlock_fn(&m), -EPERM);
    /* The failed unlocks left the word free. */
    NP_CHECK_OK(np_mutex_trylock(&m));
    NP_CHECK_OK(np_mutex_unlock(&m));
}

/* Each lock path is seen by every other: a mutex locked one way is busy to
 * the others and unlocks the other way. */
static void t_every_pair_of_paths_agrees(void)
{
    np_mutex m = NP_MUTEX_INIT;
    for (int lock = 0; lock < 4; lock++) {
        for (int unlock = 0; unlock < 3; unlock++) {
            switch (lock) {
            case 0: NP_CHECK_OK(np_mutex_lock(&m)); break;
            case 1: NP_CHECK_OK((np_mutex_lock)(&m)); break;
            case 2: NP_CHECK_OK(lock_fn(&m)); break;
            default: NP_CHECK_OK(np_mutex_trylock(&m)); break;
            }
            NP_CHECK_EQ(np_mutex_trylock(&m), -EBUSY);
            NP_CHECK_EQ(np_mutex_lock_until(&m, np_now() - 1), -ETIMEDOUT);
            switch (unlock) {
            case 0: NP_CHECK_OK(np_mutex_unlock(&m)); break;
            case 1: NP_CHECK_OK((np_mutex_unlock)(&m)); break;
            default: NP_CHECK_OK(unlock_fn(&m)); break;
            }
            NP_CHECK_EQ(np_mutex_unlock(&m), -EPERM);
        }
    }
}

/* An inline unlock with a waiter queued must take the library's hand-off:
 * the waiter returns owning the mutex. */
static np_mutex g_hand;
static atomic_int g_hand_stage;
static void hand_waiter(void *arg)
{
    (void)arg;
    atomic_store(&g_hand_stage, 1);
    NP_CHECK_OK(np_mutex_lock(&g_hand)); /* blocks: main holds it */
    atomic_store(&g_hand_stage, 2);
    NP_CHECK_EQ(np_mutex_trylock(&g_hand), -EBUSY); /* it owns it */
    NP_CHECK_OK(np_mutex_unlock(&g_hand));
    atomic_store(&g_hand_stage, 3);
}

static void hand_body(void)
{
    np_mutex fresh = NP_MUTEX_INIT;
    g_hand = fresh;
    atomic_store(&g_hand_stage, 0);
    NP_CHECK_OK(np_mutex_lock(&g_hand));
    NP_CHECK_OK(np_go(hand_waiter, NULL));
    while (atomic_load(&g_hand_stage) < 1)
        np_yield();
    /* White box: the lock word shows more than LOCKED (1) once the waiter
     * has queued, and that is what makes the inline unlock's CAS fail. */
    while (__atomic_load_n(&g_hand.u_.state_, __ATOMIC_ACQUIRE) == 1)
        np_yield();
    NP_CHECK_EQ(atomic_load(&g_hand_stage), 1);
    NP_CHECK_OK(np_mutex_unlock(&g_hand));
    while (atomic_load(&g_hand_stage) < 3)
        np_yield();
    NP_CHECK_OK(np_mutex_trylock(&g_hand));
    NP_CHECK_OK(np_mutex_unlock(&g_hand));
}

static void t_inline_unlock_hands_over_to_a_waiter(void)
{
    np_test_run(1, hand_body);
}

/* The stress: 8 tasks on 4 workers and 2 plain threads, each taking the
 * mutex ROUNDS times by a path chosen at random and bumping a plain
 * counter under it. */
static np_mutex g_mu = NP_MUTEX_INIT;
static long g_counter;
static np_waitgroup g_left;

static void bump(unsigned *seed)
{
    unsigned r = (unsigned)rand_r(seed);
    switch (r % 4) {
    case 0: NP_CHECK_OK(np_mutex_lock(&g_mu)); break;
    case 1: NP_CHECK_OK(lock_fn(&g_mu)); break;
    case 2: NP_CHECK_OK(np_mutex_lock_until(&g_mu, np_now() + 60 * NP_SECOND)); break;
    default: /* a spin would hold a CPU the holder needs (2 CPUs here) */
        if (np_mutex_trylock(&g_mu) != 0)
            NP_CHECK_OK(np_mutex_lock(&g_mu));
        break;
    }
    g_counter++;
    if ((r >> 8) % 2)
        NP_CHECK_OK(np_mutex_unlock(&g_mu));
    else
        NP_CHECK_OK(unlock_fn(&g_mu));
}

static void stress_task(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < ROUNDS; i++) {
        bump(&seed);
        if (i % 64 == 0)
            np_yield();
    }
    NP_CHECK_OK(np_waitgroup_done(&g_left));
}

static void *stress_thread(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < ROUNDS; i++)
        bump(&seed);
    return NULL;
}

static void stress_body(void)
{
    g_counter = 0;
    NP_CHECK_OK(np_waitgroup_add(&g_left, 8));
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        NP_CHECK_EQ(pthread_create(&th[i], NULL, stress_thread, (void *)(uintptr_t)(100 + i)), 0);
    for (int i = 0; i < 8; i++)
        NP_CHECK_OK(np_go(stress_task, (void *)(uintptr_t)(1 + i)));
    NP_CHECK_OK(np_waitgroup_wait(&g_left, 0));
    for (int i = 0; i < 2; i++)
        NP_CHECK_EQ(pthread_join(th[i], NULL), 0);
    NP_CHECK_OK(np_mutex_lock(&g_mu));
    NP_CHECK_EQ(g_counter, 10L * ROUNDS);
    NP_CHECK_OK(np_mutex_unlock(&g_mu));
}

static void t_all_paths_from_tasks_and_threads(void)
{
    np_test_run(4, stress_body);
}

NP_TEST_LIST(NP_CASE(t_inline_paths_give_the_library_errors), NP_CASE(t_every_pair_of_paths_agrees),
             NP_CASE(t_inline_unlock_hands_over_to_a_waiter),
             NP_CASE(t_all_paths_from_tasks_and_threads))
