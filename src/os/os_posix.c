/* The parts of the platform unit (os.h) that macOS and FreeBSD share: plain
 * POSIX where Linux has a faster or more exact call of its own. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/sys.h"
#include "os/os.h"

void np__os_sleep_until(int64_t deadline)
{
    /* No clock_nanosleep on macOS: relative sleeps until the clock says. */
    for (;;) {
        int64_t left = deadline - np_now();
        if (left <= 0)
            return;
        struct timespec rel = { .tv_sec = left / NP_SECOND, .tv_nsec = left % NP_SECOND };
        nanosleep(&rel, NULL);
    }
}

void np__os_reraise_default(int sig)
{
    /* Blocked while the handler runs: delivered as it returns. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    pthread_kill(pthread_self(), sig);
}

void np__os_discard_pending(int sig)
{
    /* No sigtimedwait on macOS. sigwait returns at once for a pending
     * signal, and only then is it called. */
    sigset_t set, pending;
    if (sigpending(&pending) != 0 || !sigismember(&pending, sig))
        return;
    sigemptyset(&set);
    sigaddset(&set, sig);
    int got;
    (void)sigwait(&set, &got);
}

/* strerror() may format into a shared buffer, and a thread-local buffer is
 * no good either: a task that called np_strerror may read the text on
 * another thread after a switch, while its first thread overwrites it. So
 * each code's text is copied once, by strerror_r, into memory that is never
 * freed, and published in a table: static and thread-safe, at the cost of
 * one small allocation per code ever asked for (at most TEXTS). */
#define TEXTS 256
static _Atomic(const char *) texts[TEXTS];

const char *np__os_strerror(int err)
{
    if (err <= 0 || err >= TEXTS)
        return NULL;
    const char *s = atomic_load_explicit(&texts[err], memory_order_acquire);
    if (s)
        return s;
    char buf[128];
    if (strerror_r(err, buf, sizeof buf) != 0) /* unknown code (EINVAL) */
        return NULL;
    char *copy = strdup(buf);
    if (!copy)
        return NULL;
    const char *was = NULL;
    if (!atomic_compare_exchange_strong_explicit(&texts[err], &was, copy, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        free(copy); /* another thread published it first */
        return was;
    }
    return copy;
}

int np__os_socket_family(int fd)
{
    /* No SO_DOMAIN: the family of its address, which a socket has even
     * unbound (the unspecified address, or an unnamed AF_UNIX one). */
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    memset(&ss, 0, sizeof ss);
    int rc = NP__SYS(getsockname(fd, (struct sockaddr *)&ss, &l));
    return rc < 0 ? rc : ss.ss_family;
}

int np__os_same_file(int a, int b)
{
    (void)a;
    (void)b;
    return -ENOSYS; /* no kcmp: the caller compares fstat's identity */
}

int np__os_usable_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
