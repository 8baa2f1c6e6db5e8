/* Signals, Go's os/signal way: np_signal_notify(ch, signo) makes each
 * arrival of signo an int sent on ch, without blocking (dropped if ch is
 * full).
 *
 * The handler does only what is async-signal-safe: it counts the signal
 * (an atomic add on a lock-free counter) and writes a byte to a pipe. A
 * delivery thread, started with the first watcher and stopped with the
 * last, sleeps on that pipe, takes the counts, and sends on every watching
 * channel with a past deadline (a non-blocking send). It is a plain thread:
 * delivery needs no worker, so it works however busy or idle the runtime
 * is, and even with none running (the channel simply fills).
 *
 * Dispositions: the first watcher of a signal installs the handler and
 * saves what was there; when the last watcher of it goes, that saved
 * disposition (the default, usually) is put back.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/thread.h"
#include "base/sys.h"
#include "netpoll.h"
#include "os/os.h"
#include "sync/chan.h"

#define NSIGS 65 /* signal numbers 1..64 (Linux: 64 with real-time ones) */

typedef struct watcher {
    int signo;
    np_chan ch;
} watcher;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static watcher *watchers; /* under lock */
static size_t nwatchers, capwatchers;
static struct sigaction saved[NSIGS]; /* under lock: for signals we handle */
static bool handled[NSIGS];           /* under lock */

static _Atomic uint32_t pending[NSIGS]; /* counted by the handler */
static _Atomic int wake_fd = -1;        /* the running generation's pipe */
static _Atomic int in_handler;          /* handlers between their load of
                                         * wake_fd and their write to it */

/* One delivery thread's own state: its pipe and its stop flag. A thread
 * started after another was stopped never shares them, so a stop that is
 * still joining the old thread cannot be confused by the new one. */
typedef struct generation {
    int rfd, wfd;
    _Atomic int stopping;
    pthread_t thread;
} generation;
static generation *current; /* under lock: the running one, or NULL */

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the signal handler needs lock-free atomics");

static void on_signal(int signo)
{
    NP__ERRNO_SAVE();
    if (signo > 0 && signo < NSIGS)
        atomic_fetch_add_explicit(&pending[signo], 1, memory_order_relaxed);
    /* Counted in first (seq_cst, as the load): a stop that sets wake_fd to
     * -1 and then finds in_handler 0 knows no handler can still write to
     * the old pipe, and only then closes it (its number may be reused at
     * once, by anything). */
    atomic_fetch_add(&in_handler, 1);
    int fd = atomic_load(&wake_fd); /* the pipe is made before */
    if (fd >= 0) {
        char b = 0;
        ssize_t n = write(fd, &b, 1); /* full: a wake is pending already */
        (void)n;
    }
    atomic_fetch_sub(&in_handler, 1);
    NP__ERRNO_RESTORE();
}

/* Under lock: sends one signo to every watcher of it; drops watchers whose
 * channel is gone. */
static void deliver(int signo)
{
    for (size_t i = 0; i < nwatchers;) {
        if (watchers[i].signo != signo) {
            i++;
            continue;
        }
        int rc = np_chan_send(watchers[i].ch, &signo, -1);
        if (rc == -EBADF) { /* freed without np_signal_stop */
            watchers[i] = watchers[--nwatchers];
            continue;
        }
        i++; /* 0, or full (-ETIMEDOUT): dropped, as in Go */
    }
}

static void *delivery_thread(void *arg)
{
    generation *g = arg; /* born with every signal blocked (start_thread) */
    char buf[64];
    for (;;) {
        ssize_t n = NP__SYS(read(g->rfd, buf, sizeof buf));
        if (n == -EINTR)
            continue;
        if (atomic_load(&g->stopping))
            return NULL;
        pthread_mutex_lock(&lock);
        for (int s = 1; s < NSIGS; s++)
            for (uint32_t k = atomic_exchange(&pending[s], 0); k > 0; k--)
                deliver(s);
        pthread_mutex_unlock(&lock);
    }
}

/* Under lock. */
static int start_thread(void)
{
    if (current)
        return 0;
    generation *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    int p[2];
    int rc = np__os_pipe(p);
    if (rc < 0) {
        free(g);
        return rc;
    }
    /* The handler must never block: a full pipe means a wake is pending. */
    int fl = NP__SYS(fcntl(p[1], F_GETFL));
    if (fl < 0 || (rc = NP__SYS(fcntl(p[1], F_SETFL, fl | O_NONBLOCK))) < 0) {
        close(p[0]);
        close(p[1]);
        free(g);
        return fl < 0 ? fl : rc;
    }
    g->rfd = p[0];
    g->wfd = p[1];
    /* Signals are for the program's threads, not for this one: it is
     * born with them blocked, so that none lands on it before it could
     * block them itself. */
    sigset_t all, old;
    np__sigfill_async(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = pthread_create(&g->thread, NULL, delivery_thread, g);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        close(p[0]);
        close(p[1]);
        free(g);
        return -rc;
    }
    current = g;
    atomic_store(&wake_fd, p[1]);
    return 0;
}

/* Called with lock held; returns with it released (it joins the thread,
 * which may be waiting for the lock). */
static void stop_thread_unlock(void)
{
    generation *g = current;
    if (!g || nwatchers > 0) {
        pthread_mutex_unlock(&lock);
        return;
    }
    current = NULL;
    atomic_store(&wake_fd, -1);
    atomic_store(&g->stopping, 1);
    char b = 0;
    ssize_t n = write(g->wfd, &b, 1);
    (void)n;
    pthread_mutex_unlock(&lock);
    pthread_join(g->thread, NULL);
    /* A handler that loaded the old wake_fd may not have written yet. */
    while (atomic_load(&in_handler))
        sched_yield();
    close(g->wfd);
    close(g->rfd);
    free(g);
}

static bool catchable(int signo)
{
    switch (signo) {
    case SIGKILL:
    case SIGSTOP:
        return false; /* the kernel's */
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
        return false; /* faults: they cannot wait for a channel */
    default:
        return signo > 0 && signo < NSIGS && signo < NSIG;
    }
}

int np_signal_notify(np_chan ch, int signo)
{
    if (!catchable(signo))
        return -EINVAL;
    np__chan *c = np__chan_lookup(ch.id);
    if (!c)
        return -EBADF;
    np__spin_lock(&c->lock);
    bool ok = np__chan_live(c, ch.id);
    size_t esz = c->elem_size;
    np__spin_unlock(&c->lock);
    if (!ok)
        return -EBADF;
    if (esz != sizeof(int))
        return -EINVAL;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < nwatchers; i++)
        if (watchers[i].signo == signo && watchers[i].ch.id == ch.id) {
            pthread_mutex_unlock(&lock);
            return 0; /* already */
        }
    int rc = start_thread();
    if (rc == 0 && nwatchers == capwatchers) {
        size_t cap = capwatchers ? 2 * capwatchers : 8;
        watcher *w = realloc(watchers, cap * sizeof *w);
        if (!w)
            rc = -ENOMEM;
        else {
            watchers = w;
            capwatchers = cap;
        }
    }
    if (rc == 0 && !handled[signo]) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESTART | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        rc = NP__SYS(sigaction(signo, &sa, &saved[signo]));
        if (rc == 0)
            handled[signo] = true;
    }
    if (rc == 0)
        watchers[nwatchers++] = (watcher){ signo, ch };
    stop_thread_unlock(); /* stops it again if this failed and nobody watches */
    return rc;
}

int np_signal_stop(np_chan ch)
{
    if (ch.id == 0)
        return -EBADF;
    pthread_mutex_lock(&lock);
    size_t found = 0;
    for (size_t i = 0; i < nwatchers;) {
        if (watchers[i].ch.id == ch.id) {
            watchers[i] = watchers[--nwatchers];
            found++;
        } else {
            i++;
        }
    }
    /* A channel that is not (or no longer) a live one: -EBADF, once any
     * watchers it left (freed while watching) are gone. */
    int rc = found == 0 && !np__chan_lookup(ch.id) ? -EBADF : 0;
    /* Signals nobody watches any more get their old disposition back. */
    for (int s = 1; s < NSIGS; s++) {
        if (!handled[s])
            continue;
        bool watched = false;
        for (size_t i = 0; i < nwatchers && !watched; i++)
            watched = watchers[i].signo == s;
        if (!watched) {
            sigaction(s, &saved[s], NULL);
            handled[s] = false;
            atomic_store(&pending[s], 0);
        }
    }
    stop_thread_unlock();
    return rc;
}
