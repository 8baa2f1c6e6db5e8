/* The monitor: a thread that retakes a worker from a thread stuck in one
 * task and hands it to a spare thread (the protocol: handoff.h), and the
 * spare threads themselves.
 *
 * Every stall_ns / 2 the monitor reads each worker's ownership word. A word
 * that is LENT and the same as the last look, for stall_ns or more, is a
 * stall: the worker's thread has run one task all that time without a
 * scheduling point. The monitor counts it, prints one line on stderr (at
 * most one a second: the task, the function it started with, how long),
 * and moves the worker to a spare thread, starting one if none waits and
 * the bound allows (NP_HANDOFF_THREADS beyond the workers).
 *
 * Spare threads wait on their own futex word. The monitor gives one a
 * worker (thread->p) before its CAS and wakes it after; the end of the run
 * wakes them all with none, and they exit.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/thread.h"
#include "os/os.h"
#include "base/clock.h"
#include "base/np_assert.h"
#include "pd/netpoll_driver.h"
#include "pd/timer.h"
#include "runtime/handoff.h"
#include "runtime/sched_internal.h"

#define REPORT_EVERY NP_SECOND /* one stall line a second, at most */

/* ---- spare threads ---------------------------------------------------------- */

/* Sleeps until woken with a worker (true: m now holds it) or woken at the
 * end of the run (false). The wake word is consumed before `given` is read,
 * and the monitor sets `given` before the word, so no hand-off is missed. */
static bool spare_sleep(sched_thread *m)
{
    for (;;) {
        while (atomic_exchange(&m->wake_word, 0) == 0)
            np__os_futex_wait(&m->wake_word, 0, -1);
        worker *w = atomic_exchange_explicit(&m->given, NULL, memory_order_acquire);
        if (w) {
            uint64_t own = atomic_load_explicit(&w->own, memory_order_acquire);
            np__assert((own & NP__OWN_LENT) == 0 && np__own_thread(own) == m->idx);
            m->p = w;
            return true;
        }
        if (atomic_load(&np__sched.done))
            return false;
    }
}

/* Puts m on the spare list, unless the run is ending: then wakes it to exit. */
static void spare_put(sched_thread *m)
{
    pthread_mutex_lock(&np__sched.lock);
    if (atomic_load(&np__sched.done)) {
        atomic_store(&m->wake_word, 1);
        np__os_futex_wake(&m->wake_word);
    } else {
        m->spare_next = np__sched.spare;
        np__sched.spare = m;
        np__sched.nspare++;
    }
    pthread_mutex_unlock(&np__sched.lock);
}

/* m lost its worker (or never had one): waits to be handed one (true), or
 * for the end of the run (false). */
bool np__spare_wait(sched_thread *m)
{
    spare_put(m);
    return spare_sleep(m);
}

/* The end of the run (under np__sched.lock, done set): every spare thread
 * wakes and exits. */
void np__spares_release_locked(void)
{
    while (np__sched.spare) {
        sched_thread *m = np__sched.spare;
        np__sched.spare = m->spare_next;
        np__sched.nspare--;
        atomic_store(&m->wake_word, 1);
        np__os_futex_wake(&m->wake_word);
    }
}

/* A thread started by the monitor: it starts out as a spare, already taken
 * off the list (by the monitor, which is about to hand it a worker). */
static void *spare_thread(void *arg)
{
    sched_thread *m = arg;
    np__thread_init(m);
    if (spare_sleep(m))
        np__thread_run(m);
    np__thread_fini(m);
    return NULL;
}

/* A spare thread for a hand-off, off the list: one waiting, or a new one
 * while the bound allows. NULL if none. */
static sched_thread *spare_get(void)
{
    sched_thread *m = NULL;
    pthread_mutex_lock(&np__sched.lock);
    if (np__sched.spare) {
        m = np__sched.spare;
        np__sched.spare = m->spare_next;
        np__sched.nspare--;
    }
    pthread_mutex_unlock(&np__sched.lock);
    if (m)
        return m;
    int n = atomic_load(&np__sched.nthreads);
    if (n >= np__sched.max_threads)
        return NULL;
    m = &np__sched.threads[n];
    memset(m, 0, sizeof *m);
    m->idx = n;
    if (np__thread_create(&m->thread, spare_thread, m) != 0)
        return NULL;
    m->joinable = true;
    atomic_store(&np__sched.nthreads, n + 1); /* only the monitor starts threads */
    return m;
}

/* ---- stall reports ------------------------------------------------------------ */

static int64_t last_report;  /* monitor thread only */
static long unreported;

static void report(int wid, int64_t id, void (*fn)(void *), int64_t held_ns, bool handed)
{
    int64_t now = np_now();
    if (last_report && now - last_report < REPORT_EVERY) {
        unreported++;
        return;
    }
    last_report = now;
    /* dladdr only: a name from the dynamic symbol table (the program
     * linked with -rdynamic, or a shared library's export), else the file
     * and offset, for addr2line. Not np_dump's .symtab reader: that opens
     * the file, and a descriptor opened by a background thread at any time
     * can take a number the program is about to get (its stdin's, once
     * closed: tests/beyond/test_wait_fd_process.c saw it under qemu). */
    char name[200] = "?";
    Dl_info di;
    if (fn && dladdr((void *)(uintptr_t)fn, &di)) {
        if (di.dli_sname)
            snprintf(name, sizeof name, "%s+0x%lx", di.dli_sname,
                     (unsigned long)((uintptr_t)fn - (uintptr_t)di.dli_saddr));
        else
            snprintf(name, sizeof name, "%s+0x%lx", di.dli_fname ? di.dli_fname : "?",
                     (unsigned long)((uintptr_t)fn - (uintptr_t)di.dli_fbase));
    } else if (fn) {
        snprintf(name, sizeof name, "%p", (void *)(uintptr_t)fn);
    }
    char line[400];
    int len = snprintf(line, sizeof line,
                       "netpoll: stall: task %lld (%s) has held worker %d's thread for %lld ms%s%s",
                       (long long)id, name, wid, (long long)(held_ns / NP_MILLISECOND),
                       handed ? "; its queue moved to another thread" : "; no thread to hand its queue to",
                       unreported ? "" : "\n");
    if (unreported && len > 0 && (size_t)len < sizeof line)
        len += snprintf(line + len, sizeof line - (size_t)len, " (%ld more stall%s in the last second)\n",
                        unreported, unreported == 1 ? "" : "s");
    unreported = 0;
    if (len > 0) {
        ssize_t rc = write(2, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
        (void)rc;
    }
}

/* ---- the monitor ------------------------------------------------------------------ */

/* The task thread m runs, read with no synchronisation (m may switch
 * tasks meanwhile; task structs are never freed while the runtime runs,
 * so the read is safe, and at worst names the task that came next). */
NP_NO_TSAN static np__task *running_task(sched_thread *m)
{
    return __atomic_load_n(&m->current, __ATOMIC_RELAXED);
}

/* The id and start function of t, for the report (read as running_task). */
NP_NO_TSAN static void (*task_start(np__task *t, int64_t *id))(void *)
{
    *id = __atomic_load_n(&t->id, __ATOMIC_RELAXED);
    return __atomic_load_n(&t->fn, __ATOMIC_RELAXED);
}

/* Notes a stall of old's (on worker w, since `since`, seen at `now`) for
 * confirm_stalls. */
static void stall_seen(sched_thread *old, worker *w, int64_t since, int64_t now, bool handed)
{
    old->mon_task = running_task(old);
    old->mon_wid = w->id;
    old->mon_since = since;
    old->mon_seen = now;
    old->mon_handed = handed;
}

/* How long after the retake a thread must still be in its task to be
 * reported: half a period, and no less than a preemption lasts on a busy
 * machine (a few milliseconds, whatever stall_ns is). */
#define CONFIRM_MIN_NS (5 * NP_MILLISECOND)

/* A stall is counted (and handed off) at once, but reported only once
 * confirmed: the thread is still in the same task at a later look, half a
 * period and at least CONFIRM_MIN_NS after the retake. A thread the OS
 * merely preempted, runnable but not running (as with more busy threads
 * than CPUs, two busy processes on two CPUs), comes
 * back within a few milliseconds, finds its worker gone and goes on as a
 * spare: no line for that. A task in sleep(3) or a long computation is
 * still there. Returns whether a stall still waits for confirmation. */
static bool confirm_stalls(int64_t now)
{
    bool waiting = false;
    int64_t confirm = np__sched.stall_ns / 2 > CONFIRM_MIN_NS ? np__sched.stall_ns / 2 : CONFIRM_MIN_NS;
    int n = atomic_load(&np__sched.nthreads);
    for (int i = 0; i < n; i++) {
        sched_thread *m = &np__sched.threads[i];
        if (!m->mon_task)
            continue;
        if (running_task(m) != m->mon_task) {
            m->mon_task = NULL; /* back already */
        } else if (now - m->mon_seen >= confirm) {
            int64_t id;
            void (*fn)(void *) = task_start(m->mon_task, &id);
            /* Read, then looked at again: the task may have ended (id 0)
             * and its struct gone to another in between. */
            if (id != 0 && running_task(m) == m->mon_task)
                report(m->mon_wid, id, fn, now - m->mon_since, m->mon_handed);
            m->mon_task = NULL;
        } else {
            waiting = true;
        }
    }
    return waiting;
}

/* Takes w, seen LENT with `word` for held_ns, from its thread; hands it to
 * a spare thread. False if no spare thread could be had (the caller tries
 * again at its next look); the stretch is counted (and reported) once. */
static bool retake(worker *w, uint64_t word, int64_t now, int64_t held_ns)
{
    sched_thread *old = &np__sched.threads[np__own_thread(word)];
    sched_thread *m = spare_get();
    if (!m) {
        if (!w->mon_counted) {
            w->mon_counted = true;
            atomic_fetch_add(&np__sched.stalls, 1);
            stall_seen(old, w, now - held_ns, now, false);
        }
        return false;
    }
    atomic_store_explicit(&m->given, w, memory_order_relaxed);
    uint64_t held = np__own_held(m->idx, word + NP__OWN_SEQ_ONE);
    if (!atomic_compare_exchange_strong_explicit(&w->own, &word, held, memory_order_acq_rel,
                                                 memory_order_relaxed)) {
        atomic_store_explicit(&m->given, NULL, memory_order_relaxed);
        spare_put(m); /* the task moved on meanwhile: no stall after all */
        return true;
    }
    if (!w->mon_counted)
        atomic_fetch_add(&np__sched.stalls, 1);
    atomic_fetch_add(&np__sched.handoffs, 1);
    atomic_store(&m->wake_word, 1); /* after `given` (release): see spare_sleep */
    np__os_futex_wake(&m->wake_word);
    stall_seen(old, w, now - held_ns, now, true);
    return true;
}

/* Looks at each worker: a lent one seen with the same word for stall_ns is
 * retaken. Returns whether some worker is lent (runs a task). */
static bool look_for_stalls(int64_t now)
{
    bool busy = false;
    for (int i = 0; i < np__sched.nworkers; i++) {
        worker *w = &np__sched.workers[i];
        uint64_t word = atomic_load_explicit(&w->own, memory_order_relaxed);
        if (!(word & NP__OWN_LENT)) {
            w->mon_word = 0;
            continue;
        }
        busy = true;
        if (np__sched.stall_ns < 0)
            continue;
        if (word != w->mon_word) {
            w->mon_word = word;
            w->mon_since = now;
            w->mon_counted = false;
            continue;
        }
        /* Lent with no switch since mon_since: the task started at least
         * that long ago (and at most a period more). */
        if (now - w->mon_since >= np__sched.stall_ns && retake(w, word, now, now - w->mon_since))
            w->mon_word = 0;
    }
    return busy;
}

/* Timers on time (issue 14): a worker runs due timers whenever it enters
 * its scheduler, but a busy one may go a long time without (its tasks
 * switching among themselves, SCHED_TICK picks between looks). While no
 * worker is blocked in the poller (which wakes for the next timer), the
 * monitor sleeps until the next timer at the latest and then tells every
 * busy worker to look at the timers at its next switch. Returns how long
 * to sleep, at most `period`. */
static int64_t timers_due(int64_t now, bool busy, int64_t period)
{
    /* A timer set from here on, earlier than this, wakes us (monitor_kick):
     * announced before the timers are read, so that the setter either sees
     * it or we see its timer (both seq_cst). */
    atomic_store(&np__sched.monitor_until, np__add_sat(now, period));
    int64_t next = np__timers_next();
    if (!busy || atomic_load(&np__sched.polling)) {
        /* The timers are some idle worker's: no kicks until we look again. */
        atomic_store(&np__sched.monitor_until, 0);
        return period;
    }
    if (next == INT64_MAX)
        return period;
    if (next > now)
        return next - now < period ? next - now : period;
    for (int i = 0; i < np__sched.nworkers; i++) {
        worker *w = &np__sched.workers[i];
        if (atomic_load_explicit(&w->own, memory_order_relaxed) & NP__OWN_LENT)
            atomic_store_explicit(&w->timers_due, 1, memory_order_relaxed);
    }
    return period;
}

/* A timer was set earlier than any other in its shard. */
static void monitor_kick(int64_t when)
{
    if (when < atomic_load(&np__sched.monitor_until) && atomic_exchange(&np__sched.monitor_word, 1) == 0)
        np__os_futex_wake(&np__sched.monitor_word);
}

/* Every worker idle (on the idle list, or blocked in the poller, which the
 * next timer or event wakes): nothing to watch. Announced first, then
 * looked at (both seq_cst); a worker leaving the idle state does the
 * opposite (np__go_idle), so one of the two sees the other. */
static bool all_idle(void)
{
    atomic_store(&np__sched.monitor_idle, 1);
    bool idle = atomic_load(&np__sched.nidle) + atomic_load(&np__sched.polling) == np__sched.nworkers;
    for (int i = 0; idle && i < np__sched.nworkers; i++)
        if (atomic_load(&np__sched.workers[i].own) & NP__OWN_LENT)
            idle = false;
    if (!idle)
        atomic_store(&np__sched.monitor_idle, 0);
    return idle;
}

void np__monitor_nudge(void)
{
    if (atomic_exchange(&np__sched.monitor_idle, 0) && atomic_exchange(&np__sched.monitor_word, 1) == 0)
        np__os_futex_wake(&np__sched.monitor_word);
}

#define IDLE_LOOKS 20 /* looks with every worker idle before the monitor sleeps */

static void *monitor_thread(void *arg)
{
    (void)arg;
    int64_t period = np__sched.stall_ns / 2;
    last_report = 0;
    unreported = 0;
    int64_t wait = period;
    int idle_looks = 0;
    while (!atomic_load(&np__sched.monitor_stop)) {
        np__os_futex_wait(&np__sched.monitor_word, 0, wait);
        atomic_store(&np__sched.monitor_word, 0);
        int64_t now = np_now();
        bool busy = look_for_stalls(now);
        bool confirming = confirm_stalls(now);
        wait = timers_due(now, busy, period);
        idle_looks = busy || confirming ? 0 : idle_looks + 1;
        if (idle_looks >= IDLE_LOOKS && all_idle()) {
            /* An idle program stays asleep: no looks until a worker wakes. */
            wait = -1;
            idle_looks = 0;
        }
    }
    return NULL;
}

int np__monitor_start(void)
{
    atomic_store(&np__sched.monitor_stop, 0);
    atomic_store(&np__sched.monitor_word, 0);
    atomic_store(&np__sched.monitor_until, 0);
    atomic_store(&np__sched.monitor_idle, 0);
    if (np__sched.stall_ns < 0)
        return 0;
    int rc = np__thread_create(&np__sched.monitor, monitor_thread, NULL);
    if (rc != 0)
        return -rc;
    atomic_store(&np__sched.monitor_running, true);
    np__netpoll_on_earlier_timer(monitor_kick);
    return 0;
}

void np__monitor_stop(void)
{
    if (!atomic_load(&np__sched.monitor_running))
        return;
    np__netpoll_on_earlier_timer(NULL);
    atomic_store(&np__sched.monitor_stop, 1);
    atomic_store(&np__sched.monitor_word, 1);
    np__os_futex_wake(&np__sched.monitor_word);
    pthread_join(np__sched.monitor, NULL);
    atomic_store(&np__sched.monitor_running, false);
}
