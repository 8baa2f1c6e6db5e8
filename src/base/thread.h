/* Starting the library's own threads. */
#ifndef NP_BASE_THREAD_H
#define NP_BASE_THREAD_H

#include <pthread.h>
#include <signal.h>

/* Every signal but the faults: what a thread may block. A fault while it
 * is blocked kills the process without a word. */
static inline void np__sigfill_async(sigset_t *set)
{
    static const int faults[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT, SIGSYS };
    sigfillset(set);
    for (unsigned i = 0; i < sizeof faults / sizeof faults[0]; i++)
        sigdelset(set, faults[i]);
}

/* pthread_create with default attributes: 0 or a positive error number.
 * Under ThreadSanitizer the thread is born with signals blocked and takes
 * its creator's mask back once it runs: a signal that landed on it before
 * ThreadSanitizer had set it up would be dropped with the state that
 * queued it (base/sanitizer.h). */
int np__thread_create(pthread_t *thread, void *(*fn)(void *), void *arg);

#endif
