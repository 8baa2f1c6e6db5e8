/* Coordination, review cases: one case per defect found in a review of
 * src/sync/ (each failed before its fix). Tasks and plain threads on both
 * sides; deadlines never early (strict lower bounds), generous upper
 * bounds. White-box where the state to wait for is internal (a waiter
 * queued on a channel): the test spins on it instead of sleeping.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"
#include "np_test.h"
#include "base/sanitizer.h"
#include "sync/chan.h"

#if defined(NP_TSAN) || defined(NP_ASAN)
#define SAN 1
#define SLACK (6 * NP_SECOND)
#define SCALE 4
#else
#define SAN 0
#define SLACK (2 * NP_SECOND)
#define SCALE 1
#endif
#define MS NP_MILLISECOND

/* Whether someone is queued on ch (receivers if recv, else senders). */
static bool chan_has_waiter(np_chan ch, bool recv)
{
    np__chan *c = np__chan_lookup(ch.id);
    NP_CHECK(c != NULL);
    np__spin_lock(&c->lock);
    bool any = (recv ? c->recvq.head : c->sendq.head) != NULL;
    np__spin_unlock(&c->lock);
    return any;
}

static void await_waiter(np_chan ch, bool recv)
{
    int64_t until = np_now() + 10 * SLACK;
    while (!chan_has_waiter(ch, recv)) {
        NP_CHECK_LT(np_now(), until);
        sched_yield();
    }
}

/* White-box: the queue head of a cond or a wait group (at head_at in its
 * storage), read under its queue spinlock (at lock_at). */
static bool peek_locked(void *obj, size_t lock_at, size_t head_at)
{
    _Atomic int *lock = (_Atomic int *)((char *)obj + lock_at);
    np__spin_lock(lock);
    bool any = *(void **)((char *)obj + head_at) != NULL;
    np__spin_unlock(lock);
    return any;
}

/* Joins th, failing (not hanging) if it has not ended by `until`. */
static void join_by(pthread_t th, int64_t until)
{
    while (pthread_tryjoin_np(th, NULL) != 0) {
        NP_CHECK_MSG(np_now() < until, "thread still blocked %lld ms past its bound",
                     (long long)((np_now() - until) / MS));
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL); /* polling a join: no event to wait on */
    }
}

/* ---- mutex: trylock barging into a slow lock ------------------------------
 *
 * lock_slow took the queue lock, saw the mutex free, and set LOCKED with an
 * unconditional fetch_or; a trylock that got in between (it does not look
 * at the queue lock) also returned 0: two owners. */

static np_mutex ex_m;
static _Atomic int ex_inside, ex_bad;
static long ex_count;
static np_waitgroup ex_wg;
#define EX_ITERS (SAN ? 4000 : 200000)

static void ex_critical(void)
{
    if (atomic_fetch_add(&ex_inside, 1) != 0)
        atomic_fetch_add(&ex_bad, 1);
    ex_count++;
    atomic_fetch_sub(&ex_inside, 1);
}

/* Lockers (even) take the slow path whenever the mutex is held; trylockers
 * (odd) spin on trylock. A signal storm on the lockers stretches the window
 * inside lock_slow from a few instructions to the handler's run time. */
static _Atomic int ex_stop;
static void ex_on_signal(int signo)
{
    (void)signo;
    int64_t until = np_now() + 20 * NP_MICROSECOND;
    while (np_now() < until)
        ;
}

static void *ex_thread(void *arg)
{
    bool try = (uintptr_t)arg & 1;
    for (int i = 0; i < EX_ITERS; i++) {
        if (try) {
            while (np_mutex_trylock(&ex_m) != 0)
                if (SAN)
                    sched_yield(); /* 2 cores, instrumented: let the owner run */
        } else {
            NP_CHECK_OK(np_mutex_lock(&ex_m));
        }
        ex_critical();
        NP_CHECK_OK(np_mutex_unlock(&ex_m));
    }
    NP_CHECK_OK(np_waitgroup_done(&ex_wg));
    return NULL;
}

static void ex_task(void *arg)
{
    (void)arg;
    for (int i = 0; i < EX_ITERS; i++) {
        NP_CHECK_OK(np_mutex_lock(&ex_m));
        ex_critical();
        NP_CHECK_OK(np_mutex_unlock(&ex_m));
        if ((i & 63) == 0)
            np_yield();
    }
    NP_CHECK_OK(np_waitgroup_done(&ex_wg));
}

#define EX_THREADS 6
#define EX_TASKS 2
static pthread_t ex_th[EX_THREADS];

static void *ex_signaller(void *arg)
{
    (void)arg;
    /* Under a sanitizer a handler waits for the thread's next
     * instrumented point: the storm only slows everything down. */
    while (!SAN && !atomic_load(&ex_stop)) {
        for (int i = 0; i < EX_THREADS; i += 2)
            pthread_kill(ex_th[i], SIGUSR1);
        struct timespec ts = { 0, 50000 };
        nanosleep(&ts, NULL); /* the storm's pace, not a synchronisation */
    }
    return NULL;
}

static void body_ex(void)
{
    NP_CHECK_OK(np_waitgroup_add(&ex_wg, EX_THREADS + EX_TASKS));
    for (int i = 0; i < EX_THREADS; i++)
        NP_CHECK_OK(pthread_create(&ex_th[i], NULL, ex_thread, (void *)(uintptr_t)i));
    pthread_t sig;
    NP_CHECK_OK(pthread_create(&sig, NULL, ex_signaller, NULL));
    for (int i = 0; i < EX_TASKS; i++)
        NP_CHECK_OK(np_go(ex_task, NULL));
    NP_CHECK_OK(np_waitgroup_wait(&ex_wg, 0));
    atomic_store(&ex_stop, 1);
    NP_CHECK_OK(pthread_join(sig, NULL));
}

static void t_mutex_trylock_never_shares_with_slow_lock(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ex_on_signal;
    sa.sa_flags = SA_RESTART;
    NP_CHECK_OK(sigaction(SIGUSR1, &sa, NULL));
    np_test_run(2, body_ex);
    for (int i = 0; i < EX_THREADS; i++)
        NP_CHECK_OK(pthread_join(ex_th[i], NULL));
    NP_CHECK_EQ(atomic_load(&ex_bad), 0);
    NP_CHECK_EQ(ex_count, (long)EX_ITERS * (EX_THREADS + EX_TASKS));
}

/* ---- a plain thread's deadline when the runtime ends ----------------------
 *
 * A plain thread blocked with a deadline relied on a worker to run its
 * timer: when the runtime ended meanwhile (its last task returned), nothing
 * ever fired it and the thread stayed blocked forever. */

static np_chan rt_ch;
static np_mutex rt_m;
static np_waitgroup rt_wg;
static int64_t rt_deadline;
static _Atomic int rt_rc = 1;

static void *rt_recv_thread(void *arg)
{
    (void)arg;
    int v;
    atomic_store(&rt_rc, np_chan_recv(rt_ch, &v, rt_deadline));
    NP_CHECK_GE(np_now(), rt_deadline);
    return NULL;
}

static pthread_t rt_th;
static void *rt_lock_thread(void *arg)
{
    (void)arg;
    atomic_store(&rt_rc, np_mutex_lock_until(&rt_m, rt_deadline));
    NP_CHECK_GE(np_now(), rt_deadline);
    return NULL;
}

static void *rt_wg_thread(void *arg)
{
    (void)arg;
    atomic_store(&rt_rc, np_waitgroup_wait(&rt_wg, rt_deadline));
    NP_CHECK_GE(np_now(), rt_deadline);
    return NULL;
}

static void *rt_select_thread(void *arg)
{
    (void)arg;
    int v;
    np_select_case c[1] = { { rt_ch, NP_RECV, &v, 0 } };
    atomic_store(&rt_rc, np_select(c, 1, rt_deadline));
    NP_CHECK_GE(np_now(), rt_deadline);
    return NULL;
}

static void *(*rt_fn)(void *);
static void body_rt(void)
{
    rt_deadline = np_now() + 300 * MS;
    NP_CHECK_OK(pthread_create(&rt_th, NULL, rt_fn, NULL));
    /* White-box: the mutex's waiter bit (set once the thread has its wait
     * record), the wait group's queue head (its waiter bit comes before the
     * record), say the thread is queued. */
    int64_t until = np_now() + 10 * SLACK;
    if (rt_fn == rt_lock_thread) {
        while (!(__atomic_load_n((uint32_t *)&rt_m, __ATOMIC_ACQUIRE) & 2u)) {
            NP_CHECK_LT(np_now(), until);
            np_yield();
        }
    } else if (rt_fn == rt_wg_thread) {
        while (!peek_locked(&rt_wg, 8, 16)) {
            NP_CHECK_LT(np_now(), until);
            np_yield();
        }
    } else {
        await_waiter(rt_ch, true);
    }
    /* Returning ends the runtime with the thread still blocked. */
}

static void check_rt(void *(*fn)(void *))
{
    rt_fn = fn;
    atomic_store(&rt_rc, 1);
    np_test_run(2, body_rt);
    join_by(rt_th, rt_deadline + SLACK);
    NP_CHECK_EQ(atomic_load(&rt_rc), -ETIMEDOUT);
}

static void t_thread_deadline_fires_after_runtime_ends_recv(void)
{
    NP_CHECK_OK(np_chan_make(&rt_ch, sizeof(int), 0));
    check_rt(rt_recv_thread);
}

static void t_thread_deadline_fires_after_runtime_ends_select(void)
{
    NP_CHECK_OK(np_chan_make(&rt_ch, sizeof(int), 0));
    check_rt(rt_select_thread);
}

static void t_thread_deadline_fires_after_runtime_ends_mutex(void)
{
    NP_CHECK_OK(np_mutex_lock(&rt_m)); /* held for good */
    check_rt(rt_lock_thread);
}

static void t_thread_deadline_fires_after_runtime_ends_wg(void)
{
    NP_CHECK_OK(np_waitgroup_add(&rt_wg, 1)); /* never done */
    check_rt(rt_wg_thread);
}

/* ---- np_cond_wait's relock after the runtime ended -------------------------
 *
 * np_cond_wait takes the mutex back with np_mutex_lock, which on a plain
 * thread with no runtime gives -ESRCH when it would block: the wait then
 * returned without the mutex ("m is held again on return, whatever the
 * result"), while another thread held it. */

static np_mutex cr_m;
static np_cond cr_c;
static _Atomic int cr_b_locked, cr_a_returned, cr_a_rc = 1, cr_b_saw_early;
static int64_t cr_deadline;
static pthread_t cr_a, cr_b;

static void *cr_thread_a(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_mutex_lock(&cr_m));
    int rc = np_cond_wait(&cr_c, &cr_m, cr_deadline);
    NP_CHECK_GE(np_now(), cr_deadline);
    atomic_store(&cr_a_rc, rc);
    atomic_store(&cr_a_returned, 1);
    NP_CHECK_EQ(np_mutex_trylock(&cr_m), -EBUSY);
    NP_CHECK_OK(np_mutex_unlock(&cr_m)); /* ours */
    return NULL;
}

static void *cr_thread_b(void *arg)
{
    (void)arg;
    int64_t until = np_now() + 10 * SLACK;
    while (np_mutex_trylock(&cr_m) != 0) { /* A lets go inside its wait */
        NP_CHECK_LT(np_now(), until);
        sched_yield();
    }
    atomic_store(&cr_b_locked, 1);
    /* Hold it until A queues for it (white-box: the mutex's waiter bit), or
     * returns without it (the defect). */
    while (!(__atomic_load_n((uint32_t *)&cr_m, __ATOMIC_ACQUIRE) & 2u)) {
        if (atomic_load(&cr_a_returned)) {
            atomic_store(&cr_b_saw_early, 1);
            break;
        }
        NP_CHECK_LT(np_now(), until);
        sched_yield();
    }
    NP_CHECK_OK(np_mutex_unlock(&cr_m));
    return NULL;
}

static void body_cr(void)
{
    cr_deadline = np_now() + 300 * MS;
    NP_CHECK_OK(pthread_create(&cr_a, NULL, cr_thread_a, NULL));
    /* White-box: A is queued on the cond before B can take the mutex. */
    int64_t until = np_now() + 10 * SLACK;
    while (!peek_locked(&cr_c, 0, 8)) {
        NP_CHECK_LT(np_now(), until);
        np_yield();
    }
    NP_CHECK_OK(pthread_create(&cr_b, NULL, cr_thread_b, NULL));
    while (!atomic_load(&cr_b_locked)) {
        NP_CHECK_LT(np_now(), until);
        np_yield();
    }
    /* Returning ends the runtime: A's relock finds the mutex held by B. */
}

static void t_cond_relock_after_runtime_ends(void)
{
    np_test_run(2, body_cr);
    join_by(cr_a, cr_deadline + SLACK);
    join_by(cr_b, cr_deadline + SLACK);
    NP_CHECK_EQ(atomic_load(&cr_b_saw_early), 0);
    NP_CHECK_EQ(atomic_load(&cr_a_rc), -ETIMEDOUT);
}

/* ---- a plain thread's record after its key's destructor --------------------
 *
 * A thread's wait record goes back to the pool in a pthread key destructor;
 * the thread-local pointer to it stayed set, so a wait in a later key's
 * destructor (a C++ thread_local's, say) used a record that another thread
 * could take from the pool at the same time: the two waits shared one claim
 * word, and the first one's wake-up was lost. */

static np_chan tl_x, tl_y, tl_w;
static pthread_key_t tl_key;
static _Atomic int tl_a_rc = 1, tl_c_rc = 1;
static pthread_t tl_a, tl_c;

static void tl_destructor(void *p)
{
    (void)p;
    int v;
    atomic_store(&tl_a_rc, np_chan_recv(tl_x, &v, np_now() + 3 * SLACK));
}

static void *tl_thread_a(void *arg)
{
    (void)arg;
    int v;
    /* A wait, so that the thread has a record (and the library its key). */
    NP_CHECK_EQ(np_chan_recv(tl_w, &v, np_now() + MS), -ETIMEDOUT);
    NP_CHECK_OK(pthread_key_create(&tl_key, tl_destructor)); /* after the library's */
    NP_CHECK_OK(pthread_setspecific(tl_key, &tl_key));
    return NULL; /* the library's destructor, then ours: a wait on tl_x */
}

static void *tl_thread_c(void *arg)
{
    (void)arg;
    int v;
    atomic_store(&tl_c_rc, np_chan_recv(tl_y, &v, np_now() + 3 * SLACK));
    return NULL;
}

static void body_tl(void)
{
    NP_CHECK_OK(np_chan_make(&tl_x, sizeof(int), 0));
    NP_CHECK_OK(np_chan_make(&tl_y, sizeof(int), 0));
    NP_CHECK_OK(np_chan_make(&tl_w, sizeof(int), 0));
    NP_CHECK_OK(pthread_create(&tl_a, NULL, tl_thread_a, NULL));
    await_waiter(tl_x, true); /* A, in its destructor */
    NP_CHECK_OK(pthread_create(&tl_c, NULL, tl_thread_c, NULL));
    await_waiter(tl_y, true);
    int v = 7;
    NP_CHECK_OK(np_chan_send(tl_x, &v, np_now() + SLACK)); /* A takes it */
    NP_CHECK_OK(np_chan_send(tl_y, &v, np_now() + SLACK));
    NP_CHECK_OK(pthread_join(tl_a, NULL));
    NP_CHECK_OK(pthread_join(tl_c, NULL));
    NP_CHECK_EQ(atomic_load(&tl_a_rc), 0);
    NP_CHECK_EQ(atomic_load(&tl_c_rc), 0);
}

static void t_thread_record_not_reused_after_key_destructor(void)
{
    np_test_run(2, body_tl);
}

NP_TEST_LIST(NP_CASE(t_mutex_trylock_never_shares_with_slow_lock),
             NP_CASE(t_thread_deadline_fires_after_runtime_ends_recv),
             NP_CASE(t_thread_deadline_fires_after_runtime_ends_select),
             NP_CASE(t_thread_deadline_fires_after_runtime_ends_mutex),
             NP_CASE(t_thread_deadline_fires_after_runtime_ends_wg),
             NP_CASE(t_cond_relock_after_runtime_ends),
             NP_CASE(t_thread_record_not_reused_after_key_destructor))
