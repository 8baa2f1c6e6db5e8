/* The global queue under several workers: batches taken from it into a
 * worker's run queue while other workers steal from that run queue and
 * finish what they stole at once.
 *
 * A batch used to publish a task into the run queue and only then read
 * the task's link to the next one in the global queue: a thief could steal
 * the task, run it to its end and recycle its struct (whose link then
 * serves the free list) in between. ThreadSanitizer saw it in the API
 * fuzzer (seed 63); a wrong link would lose tasks or run a free one. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "netpoll.h"
#include "np_test.h"

enum { ROUNDS = 20, PER_ROUND = 2000 };

static _Atomic long ran;
static _Atomic bool spawner_done;

static void tiny(void *arg)
{
    (void)arg;
    atomic_fetch_add(&ran, 1);
}

static void yields_once(void *arg)
{
    np_yield();
    tiny(arg);
}

/* A plain thread's np_go queues on the global queue: a burst of them. */
static void *spawner(void *arg)
{
    (void)arg;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < PER_ROUND; i++)
            NP_CHECK_OK(np_go(i % 4 ? tiny : yields_once, NULL));
        while (atomic_load(&ran) < (long)(r + 1) * PER_ROUND)
            sched_yield();
    }
    atomic_store(&spawner_done, true);
    return NULL;
}

static void main_task(void *arg)
{
    (void)arg;
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, spawner, NULL));
    /* Keep every worker hungry: short tasks that steal and finish. */
    while (!atomic_load(&spawner_done))
        np_sleep(NP_MILLISECOND);
    NP_CHECK_OK(pthread_join(th, NULL));
}

static void t_batches_from_the_global_queue_with_thieves(void)
{
    for (int workers = 2; workers <= 4; workers += 2) {
        atomic_store(&ran, 0);
        atomic_store(&spawner_done, false);
        np_config cfg = { .workers = workers };
        NP_CHECK_OK(np_run(&cfg, main_task, NULL));
        NP_CHECK_EQ(atomic_load(&ran), (long)ROUNDS * PER_ROUND);
    }
}

NP_TEST_LIST(NP_CASE(t_batches_from_the_global_queue_with_thieves))
