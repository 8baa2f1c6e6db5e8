/* The offload pool. See offload.h and np_offload in netpoll.h.
 *
 * A job lives on the parked task's stack (the task cannot return before the
 * job is done, so the stack stays). The pool is a mutex, a condition
 * variable and a FIFO of jobs: a thread picks the oldest job, runs it, and
 * fires the job's one-shot event, which readies the task. A job queued when
 * no thread is idle starts a new thread, up to the maximum; a thread idle
 * for IDLE_RETIRE_NS retires. Retired threads are joined by the next thread
 * start or by np__offload_stop, so none outlives np_run.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "base/thread.h"
#include "base/np_assert.h"
#include "netpoll.h"
#include "pd/sema.h"
#include "runtime/offload.h"
#include "runtime/scheduler.h"

#define IDLE_RETIRE_NS (5 * NP_SECOND)

typedef struct job {
    void (*fn)(void *);
    void *arg;
    np__oneshot done;
    bool async;               /* heap job: nobody waits; freed once run */
    struct job *next;
} job;

typedef struct zombie {
    pthread_t th;
    struct zombie *next;
} zombie;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work;     /* a job was queued, or stop */
    pthread_cond_t gone;     /* a thread retired (stop waits for all) */
    job *head, *tail;
    int max, nthreads, nidle;
    bool stopping;
    zombie *zombies;         /* retired threads, to be joined */
} P = { .lock = PTHREAD_MUTEX_INITIALIZER,
        .work = PTHREAD_COND_INITIALIZER,
        .gone = PTHREAD_COND_INITIALIZER };

/* Under P.lock: hands back the retired threads, to be joined unlocked. */
static zombie *take_zombies(void)
{
    zombie *z = P.zombies;
    P.zombies = NULL;
    return z;
}

static void join_zombies(zombie *z)
{
    while (z) {
        zombie *next = z->next;
        pthread_join(z->th, NULL);
        free(z);
        z = next;
    }
}

static void *pool_thread(void *arg)
{
    zombie *self = arg; /* its own record, for whoever joins it */
    pthread_mutex_lock(&P.lock);
    self->th = pthread_self();
    for (;;) {
        while (!P.head && !P.stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += IDLE_RETIRE_NS / NP_SECOND;
            P.nidle++;
            int rc = pthread_cond_timedwait(&P.work, &P.lock, &ts);
            P.nidle--;
            if (rc == ETIMEDOUT && !P.head)
                goto retire;
        }
        if (!P.head)
            goto retire; /* stopping, nothing left */
        job *j = P.head;
        P.head = j->next;
        if (!P.head)
            P.tail = NULL;
        pthread_mutex_unlock(&P.lock);
        j->fn(j->arg);
        if (j->async)
            free(j);
        else
            np__oneshot_fire(&j->done); /* j may be gone after this */
        pthread_mutex_lock(&P.lock);
    }
retire:
    P.nthreads--;
    self->next = P.zombies;
    P.zombies = self;
    pthread_cond_broadcast(&P.gone);
    pthread_mutex_unlock(&P.lock);
    return NULL;
}

void np__offload_start(int max_threads)
{
    pthread_mutex_lock(&P.lock);
    np__assert(P.nthreads == 0 && !P.head);
    P.max = max_threads;
    P.stopping = false;
    pthread_mutex_unlock(&P.lock);
}

void np__offload_stop(void)
{
    pthread_mutex_lock(&P.lock);
    /* Every task has finished; async jobs (a lookup whose caller walked
     * away) may still be queued: the threads run them before they go. */
    P.stopping = true;
    pthread_cond_broadcast(&P.work);
    while (P.nthreads > 0)
        pthread_cond_wait(&P.gone, &P.lock);
    zombie *z = take_zombies();
    pthread_mutex_unlock(&P.lock);
    join_zombies(z);
}

int np__offload_threads(void)
{
    pthread_mutex_lock(&P.lock);
    int n = P.nthreads;
    pthread_mutex_unlock(&P.lock);
    return n;
}

/* Queues j and starts a thread for it if none is idle. 0, or -ENOMEM if
 * no thread exists and none could be started (j is not queued then). */
static int submit(job *j)
{
    zombie *start = NULL;
    pthread_mutex_lock(&P.lock);
    if (P.nidle == 0 && P.nthreads < P.max) {
        start = malloc(sizeof *start);
        if (start)
            P.nthreads++;
    }
    if (!start && P.nthreads == 0) {
        pthread_mutex_unlock(&P.lock);
        return -ENOMEM;
    }
    j->next = NULL;
    if (P.tail)
        P.tail->next = j;
    else
        P.head = j;
    P.tail = j;
    if (!start)
        pthread_cond_signal(&P.work);
    zombie *z = take_zombies();
    pthread_mutex_unlock(&P.lock);
    join_zombies(z);
    pthread_t th;
    if (start && np__thread_create(&th, pool_thread, start) != 0) {
        free(start);
        pthread_mutex_lock(&P.lock);
        P.nthreads--;
        bool alone = P.nthreads == 0;
        if (alone) { /* nobody will run it: take the job back */
            job **pp = &P.head;
            while (*pp != j)
                pp = &(*pp)->next;
            *pp = j->next;
            P.tail = NULL;
            for (job *k = P.head; k; k = k->next)
                P.tail = k;
        }
        pthread_mutex_unlock(&P.lock);
        if (alone)
            return -ENOMEM;
    }
    return 0;
}

int np__offload_async(void (*fn)(void *), void *arg)
{
    if (!np__runtime_running())
        return -ESRCH;
    job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    *j = (job){ .fn = fn, .arg = arg, .async = true };
    int rc = submit(j);
    if (rc < 0)
        free(j);
    return rc;
}

int np_offload(void (*fn)(void *), void *arg)
{
    if (!fn)
        return -EINVAL;
    if (!np__sched_current_task()) {
        if (!np__runtime_running())
            return -ESRCH;
        fn(arg); /* a plain thread may block: it blocks nobody else */
        return 0;
    }
    job j = { .fn = fn, .arg = arg };
    np__oneshot_arm(&j.done);
    int rc = submit(&j);
    if (rc < 0)
        return rc;
    static const np__park_site site = { "np_offload", "job", NP__ON_FUNC };
    np__oneshot_wait(&j.done, &site, (const void *)fn);
    return 0;
}
