/* The M:N scheduler's public calls (np_run, np_go, np_yield's test hook,
 * np_sleep), the shared state, and the accessors and statistics the other
 * layers read. The scheduler's parts, one job each:
 *   sched_internal.h  the shared state: np__sched, the worker struct
 *   sched_queue.c     processors and queues: the global queue, stealing
 *   sched_idle.c      the idle protocol: spinning, the idle list, wakep
 *   sched_switch.c    switching and finding work; np_yield
 *   stack_cache.c     task structs and stacks, the stack budget
 *   stack_sweep.c     the idle-stack sweep
 *   segv_guard.c      the SIGSEGV handler for stack overflows
 *
 * The end. np_run returns when the live-task count drops to zero: the last
 * task's exit sets `done` and wakes every worker. np_go from outside
 * increments the count only while it is not zero, so no task can be started
 * into a runtime that is ending.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/thread.h"
#include "base/clock.h"
#include "base/np_assert.h"
#include "pd/netpoll_driver.h"
#include "pd/timer.h"
#include "poller/poller.h"
#include "os/os.h"
#include "runtime/dump.h"
#include "runtime/offload.h"
#include "runtime/sched_internal.h"

#define DEFAULT_STACK_SIZE (256 * 1024)
#define MIN_STACK_SIZE (16 * 1024)
#define MAX_STACK_SIZE ((size_t)1 << 30)
#define MAX_WORKERS 1024
#define DEFAULT_OFFLOAD_THREADS 64
#define MAX_OFFLOAD_THREADS 4096
#define DEFAULT_STALL_NS (10 * NP_MILLISECOND)
#define MIN_STALL_NS (1 * NP_MILLISECOND)

struct np__sched_state np__sched = { .lock = PTHREAD_MUTEX_INITIALIZER };

_Thread_local sched_thread *np__tls_thread;

np__task *np__sched_current_task(void)
{
    sched_thread *m = me();
    return m ? m->current : NULL;
}

int np__sched_worker_id(void)
{
    sched_thread *m = me();
    return m && m->p ? m->p->id : -1;
}

int np__sched_workers(void)
{
    return atomic_load(&np__sched.running) ? np__sched.nworkers : 0;
}

bool np__sched_may_spin(void)
{
    int n = atomic_load_explicit(&np__sched.spin_workers, memory_order_relaxed);
    if (n < 2 || atomic_load_explicit(&np__sched.nidle, memory_order_relaxed) >= n - 1)
        return false;
    /* A task spins only with nothing else runnable on its worker: the
     * holder may be queued there, unable to run until we let go of the
     * thread (Go's canSpin checks the same). */
    sched_thread *m = me();
    worker *w = m ? m->p : NULL;
    return !w || (np__runq_len(&w->runq) == 0 &&
                  atomic_load_explicit(&w->runnext, memory_order_relaxed) == NULL);
}

void np__sched_get_stats(np__sched_stats *o)
{
    o->steals = atomic_load(&np__sched.steals);
    o->polls = atomic_load(&np__sched.polls);
    o->sleeps = atomic_load(&np__sched.sleeps);
    o->stacks_mapped = atomic_load(&np__sched.mapped);
    o->stacks_unmapped = atomic_load(&np__sched.unmapped);
    o->global_queue = atomic_load(&np__sched.gq_len);
    o->local_queues = 0;
    for (int i = 0; i < (atomic_load(&np__sched.running) ? np__sched.nworkers : 0); i++)
        o->local_queues += np__runq_len(&np__sched.workers[i].runq);
    o->idle = atomic_load(&np__sched.nidle);
    o->polling = atomic_load(&np__sched.polling);
    o->started = (long)atomic_load(&np__sched.started);
}

void np__sched_fill_stats(np_stats *o)
{
    /* The caller holds the runtime (np__runtime_enter): np__sched.workers
     * stays. */
    int64_t queued = (int64_t)atomic_load(&np__sched.gq_len) + atomic_load(&np__sched.nstackwait);
    for (int i = 0; i < np__sched.nworkers; i++)
        queued += np__runq_len(&np__sched.workers[i].runq) + (atomic_load(&np__sched.workers[i].runnext) != NULL);
    int idle = atomic_load(&np__sched.nidle), polling = atomic_load(&np__sched.polling);
    int64_t busy = np__sched.nworkers - idle - polling; /* running a task, or about to */
    o->tasks = atomic_load(&np__sched.ntasks);
    o->tasks_runnable = queued;
    o->tasks_parked = o->tasks - queued - (busy > 0 ? busy : 0);
    if (o->tasks_parked < 0)
        o->tasks_parked = 0; /* counted at different moments */
    o->tasks_started = atomic_load(&np__sched.spawned); /* after tasks: see np_go */
    o->workers = np__sched.nworkers;
    o->workers_idle = idle + polling;
    o->threads = atomic_load(&np__sched.nthreads) + atomic_load(&np__sched.monitor_running) + np__offload_threads();
    o->polls = (int64_t)atomic_load(&np__sched.polls);
    o->steals = (int64_t)atomic_load(&np__sched.steals);
    o->handoffs = atomic_load(&np__sched.handoffs);
    o->stalls = atomic_load(&np__sched.stalls);
    int64_t stacks = (int64_t)atomic_load(&np__sched.mapped) - (int64_t)atomic_load(&np__sched.unmapped);
    size_t per = np__sched.stack_size + np__stack_guard_size();
    o->stack_bytes_mapped = stacks * (int64_t)per;
    /* Stacks in the cold pool gave their memory back; the rest may hold
     * it, up to their whole size (an upper bound: untouched pages are not
     * resident, and idle stacks moved out are counted in full). */
    pthread_mutex_lock(&np__sched.lock);
    int64_t warm = stacks - np__sched.ncold;
    pthread_mutex_unlock(&np__sched.lock);
    o->stack_bytes_resident = (warm > 0 ? warm : 0) * (int64_t)np__sched.stack_size;
}

__attribute__((noinline)) np__waiter *np__waiter_current(void)
{
    np__task *t = np__sched_current_task();
    return t ? &t->waiter : np__thread_waiter_self();
}

/* A plain thread parked (np__thread_park_hook): what it waits for — an
 * event, a deadline — needs a worker watching the poller and the timers,
 * and every worker may be asleep. Wake one, as np_go does for new work. */
static void plain_thread_parked(void)
{
    foreign_enter();
    if (atomic_load(&np__sched.ntasks) > 0)
        np__wakep();
    foreign_leave();
}

bool np__runtime_enter(void)
{
    if (me())
        return true;
    /* foreign first, then ntasks: np_run stores ntasks = 0 before it reads
     * foreign, so either it waits for us or we see the 0 (seq_cst). */
    atomic_fetch_add(&np__sched.foreign, 1);
    if (atomic_load(&np__sched.ntasks) > 0)
        return true;
    atomic_fetch_sub(&np__sched.foreign, 1);
    return false;
}

void np__runtime_leave(void)
{
    if (!me())
        atomic_fetch_sub(&np__sched.foreign, 1);
}

bool np__runtime_running(void)
{
    return atomic_load(&np__sched.ntasks) > 0;
}

#define MAX_STOP_HOOKS 4
static void (*_Atomic stop_hooks[MAX_STOP_HOOKS])(void);

void np__sched_on_stop(void (*fn)(void))
{
    for (int i = 0; i < MAX_STOP_HOOKS; i++) {
        void (*cur)(void) = NULL;
        if (atomic_compare_exchange_strong(&stop_hooks[i], &cur, fn) || cur == fn)
            return;
    }
    NP__PANIC("more than %d stop hooks", MAX_STOP_HOOKS);
}

/* The last task's exit ends the runtime. */
void np__task_done(void)
{
    if (atomic_fetch_sub(&np__sched.ntasks, 1) != 1)
        return;
    atomic_store(&np__sched.done, 1);
    pthread_mutex_lock(&np__sched.lock);
    while (np__sched.idle) {
        worker *w = np__sched.idle;
        np__idle_unlink_locked(w);
        np__wake_worker(w);
    }
    np__spares_release_locked();
    pthread_mutex_unlock(&np__sched.lock);
    np__poller_wake();
}

int np_run(const np_config *cfg, void (*main_task)(void *), void *arg)
{
    int nworkers = cfg ? cfg->workers : 0;
    size_t stack = cfg ? cfg->stack_size : 0;
    int64_t idle_stack_ns = cfg ? cfg->idle_stack_ns : 0;
    int offload_threads = cfg ? cfg->offload_threads : 0;
    int dump_signal = cfg ? cfg->dump_signal : 0;
    int64_t stall_ns = cfg ? cfg->stall_ns : 0;
    if (!main_task || nworkers < 0 || nworkers > MAX_WORKERS || idle_stack_ns < 0 ||
        offload_threads < 0 || offload_threads > MAX_OFFLOAD_THREADS ||
        !np__dump_signal_valid(dump_signal))
        return -EINVAL;
    if (offload_threads == 0)
        offload_threads = DEFAULT_OFFLOAD_THREADS;
    if (stall_ns == 0)
        stall_ns = DEFAULT_STALL_NS;
    else if (stall_ns > 0 && stall_ns < MIN_STALL_NS)
        stall_ns = MIN_STALL_NS;
    if (stack == 0)
        stack = DEFAULT_STACK_SIZE;
    if (stack < MIN_STACK_SIZE || stack > MAX_STACK_SIZE)
        return -EINVAL;
    size_t ps = np__page_size();
    stack = (stack + ps - 1) / ps * ps;
    if (nworkers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nworkers = n > 0 ? (n > MAX_WORKERS ? MAX_WORKERS : (int)n) : 1;
    }
    if (me())
        return -EBUSY; /* np_run inside a task */
    int zero = 0;
    if (!atomic_compare_exchange_strong(&np__sched.running, &zero, 1))
        return -EBUSY;

    int rc = np__netpoll_init();
    if (rc < 0)
        goto out_running;
    np__sched.workers = aligned_alloc(64, sizeof(worker) * (size_t)nworkers);
    if (!np__sched.workers) {
        rc = -ENOMEM;
        goto out_netpoll;
    }
    memset(np__sched.workers, 0, sizeof(worker) * (size_t)nworkers);
    int max_threads = nworkers + NP_HANDOFF_THREADS;
    np__sched.threads = aligned_alloc(64, sizeof(sched_thread) * (size_t)max_threads);
    if (!np__sched.threads) {
        rc = -ENOMEM;
        goto out_workers;
    }
    memset(np__sched.threads, 0, sizeof(sched_thread) * (size_t)max_threads);
    /* Thread i starts out holding worker i. */
    for (int i = 0; i < nworkers; i++) {
        np__sched.workers[i].id = i;
        np__sched.workers[i].rand = (uint32_t)i * 2654435761u + 1;
        atomic_store(&np__sched.workers[i].own, np__own_held(i, 0));
        np__sched.threads[i].idx = i;
        np__sched.threads[i].p = &np__sched.workers[i];
    }
    np__sched.max_threads = max_threads;
    np__sched.spare = NULL;
    np__sched.nspare = 0;
    np__sched.stall_ns = stall_ns;
    atomic_store(&np__sched.stalls, 0);
    atomic_store(&np__sched.handoffs, 0);
    np__sched.nworkers = nworkers;
    np__sched.stack_size = stack;
    np__sched.stack_budget = np__stack_budget();
    np__sched.idle_stack_ns = NP__CTX_KNOWS_SP ? idle_stack_ns : 0;
    np__sweep_start();
    atomic_store(&np__sched.started, 0);
    atomic_store(&np__sched.done, 0);
    atomic_store(&np__sched.nidle, 0);
    atomic_store(&np__sched.nspinning, 0);
    atomic_store(&np__sched.polling, 0);

    np__task *t = np__task_new(NULL, main_task, arg);
    if (!t) {
        rc = -ENOMEM;
        goto out_workers;
    }
    atomic_store(&np__sched.ntasks, 1);
    atomic_store(&np__sched.spawned, 1);
    t->id = 1;
    np__global_put(t);
    np__segv_install();
    np__dump_signal_install(dump_signal);
    np__offload_start(offload_threads);
    atomic_store(&np__thread_park_hook, plain_thread_parked);

    /* This thread's set-up before any other starts: the main task may run
     * on another thread at once, and the stack bounds of a process's main
     * thread come from glibc reading /proc/self/maps, a descriptor the
     * main task could see (test_wait_fd_process under qemu: after the task
     * closed stdin, the read took fd 0 from its open). */
    np__thread_init(&np__sched.threads[0]);
    /* Its ThreadSanitizer signal state, as np__thread_create makes it for
     * the threads it starts (base/sanitizer.h). */
    np__sig_hold_signals(&np__sched.threads[0].sig_hold);
    np__tsan_make_signal_state(NULL);
    np__sig_release_signals(&np__sched.threads[0].sig_hold);
    /* Counted before they start: the main task may already run on the
     * first of them and read np_stats (api_fuzz saw 0 threads under qemu). */
    atomic_store(&np__sched.nthreads, nworkers);
    int started = 1;
    for (; started < nworkers; started++) {
        sched_thread *m = &np__sched.threads[started];
        if (np__thread_create(&m->thread, np__worker_thread, m) != 0)
            break;
        m->joinable = true;
    }
    if (started < nworkers) {
        np__sched.nworkers = started; /* run with what we got */
        atomic_store(&np__sched.nthreads, started);
    }
    atomic_store(&np__sched.spin_workers, np__os_usable_cpus() > 1 ? np__sched.nworkers : 0);
    (void)np__monitor_start(); /* if it fails: without, a stuck task holds up its worker */
    np__thread_run(&np__sched.threads[0]);
    np__thread_fini(&np__sched.threads[0]);
    /* The monitor first: it may start threads until it stops. */
    np__monitor_stop();
    for (int i = 1; i < atomic_load(&np__sched.nthreads); i++)
        if (np__sched.threads[i].joinable)
            pthread_join(np__sched.threads[i].thread, NULL);

    /* Every task has finished; plain threads may still be leaving np_go. */
    atomic_store(&np__thread_park_hook, NULL);
    while (atomic_load(&np__sched.foreign))
        sched_yield();
    for (int i = 0; i < MAX_STOP_HOOKS; i++) {
        void (*hook)(void) = atomic_load(&stop_hooks[i]);
        if (hook)
            hook(); /* what the net layer left open: closed while the poller exists */
    }
    np__offload_stop();
    np__segv_remove();
    np__dump_signal_remove();
    np__task_registry_clear(); /* no task, no np_dump inside: the structs go below */
    np__stack_cache_fini(nworkers);
    np__assert(np__sched.gq_head == NULL && np__sched.stackwait == NULL);
    np__sweep_start(); /* forgets the structs just freed */
    np__sched.idle_stack_ns = 0;
    rc = 0;
out_workers:
    atomic_store(&np__sched.spin_workers, 0);
    free(np__sched.threads);
    np__sched.threads = NULL;
    atomic_store(&np__sched.nthreads, 0);
    free(np__sched.workers);
    np__sched.workers = NULL;
    np__sched.nworkers = 0;
out_netpoll:
    np__netpoll_fini();
out_running:
    atomic_store(&np__sched.running, 0);
    return rc;
}

int np_go(void (*fn)(void *), void *arg)
{
    if (!fn)
        return -EINVAL;
    sched_thread *m = me();
    bool was_lent = m && m->lent;
    worker *w = m ? p_hold(m) : NULL; /* NULL: a plain thread, or the worker was taken */
    if (!m)
        foreign_enter();
    int rc = 0;
    /* The id first, then the place among the live: np_stats_get reads the
     * live count and then this one, so it never sees more tasks alive than
     * started (it did: 8 against 7, with an np_go between the two). An
     * np_go that fails below has used its id and is counted. */
    int64_t id = atomic_fetch_add(&np__sched.spawned, 1) + 1;
    int64_t n = atomic_load(&np__sched.ntasks);
    do {
        if (n == 0) { /* no runtime, or one that is ending */
            rc = -ESRCH;
            goto out;
        }
    } while (!atomic_compare_exchange_weak(&np__sched.ntasks, &n, n + 1));
    np__task *t = np__task_new(w, fn, arg);
    if (!t) {
        np__task_done();
        rc = -ENOMEM;
        goto out;
    }
    t->id = id;
    if (w)
        runq_put(w, t, false);
    else
        np__global_put(t);
    np__wakep();
out:
    if (was_lent && w)
        p_lend_same(m);
    if (!m)
        foreign_leave();
    return rc;
}

int np__sched_yield_to(int id)
{
    np__task *t = np__sched_current_task();
    if (!t)
        return -EPERM;
    if (id < 0 || id >= np__sched.nworkers)
        return -EINVAL;
    t->target_worker = id;
    np_yield();
    return 0;
}

/* ---- sleeping ------------------------------------------------------------------ */

#define SLEEP_IDLE ((uintptr_t)0)
#define SLEEP_FIRED ((uintptr_t)1)
#define SLEEP_WAIT ((uintptr_t)2)

static bool sleep_commit(np__waiter *self, void *arg)
{
    np__task *t = arg;
    uintptr_t expected = SLEEP_WAIT;
    return atomic_compare_exchange_strong(&t->sleep_sem, &expected, (uintptr_t)self);
}

static void sleep_fired(void *arg, uintptr_t seq)
{
    np__task *t = arg;
    if (seq != atomic_load(&t->sleep_seq))
        return;
    uintptr_t old = atomic_exchange(&t->sleep_sem, SLEEP_FIRED);
    if (old > SLEEP_WAIT)
        np__waiter_ready((np__waiter *)old);
}

/* A plain thread sleeps in the kernel, to the same absolute monotonic
 * time: it holds up nobody. */
static int thread_sleep_until(int64_t deadline)
{
    np__os_sleep_until(deadline);
    return 0;
}

int np_sleep_until(int64_t deadline)
{
    np__task *t = np__sched_current_task();
    if (!t && !np__runtime_running())
        return -ESRCH;
    if (deadline <= np_now())
        return 0;
    if (!t)
        return thread_sleep_until(deadline);
    atomic_store(&t->sleep_sem, SLEEP_WAIT);
    uintptr_t seq = atomic_fetch_add(&t->sleep_seq, 1) + 1;
    np__timer_set(&t->sleep_timer, deadline, sleep_fired, t, seq);
    static const np__park_site site = { "np_sleep", "", NP__ON_SLEEP };
    np__waiter_park_in(&t->waiter, sleep_commit, t, NP__PARK_STACK_FREE, &site, NULL);
    np__assert(atomic_load(&t->sleep_sem) == SLEEP_FIRED);
    atomic_store(&t->sleep_sem, SLEEP_IDLE);
    return 0;
}

int np_sleep(int64_t ns)
{
    if (!np__sched_current_task() && !np__runtime_running())
        return -ESRCH;
    if (ns <= 0)
        return 0;
    return np_sleep_until(np__add_sat(np_now(), ns));
}

/* ---- np_dump's view of the workers ------------------------------------------ */

/* The task worker i runs now. Read with no synchronisation, like the rest
 * of a dump (dump.c): the answer may be stale by the time it is used. */
int np__sched_threads(void)
{
    return atomic_load(&np__sched.running) ? atomic_load(&np__sched.nthreads) : 0;
}

NP_NO_TSAN np__task *np__sched_running_on(int i, int *on)
{
    sched_thread *m = &np__sched.threads[i];
    worker *w = __atomic_load_n(&m->p, __ATOMIC_RELAXED);
    /* m->p stays set until m's next scheduling point: the worker may have
     * been handed to another thread already. */
    bool holds = w && np__own_thread(atomic_load_explicit(&w->own, memory_order_relaxed)) == m->idx;
    *on = holds ? w->id : -1;
    return __atomic_load_n(&m->current, __ATOMIC_RELAXED);
}
