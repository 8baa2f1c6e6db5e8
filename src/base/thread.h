/* Starting the library's own threads. */
#ifndef NP_BASE_THREAD_H
#define NP_BASE_THREAD_H

#include <pthread.h>

/* pthread_create with default attributes: 0 or a positive error number.
 * Under ThreadSanitizer the thread is born with signals blocked and takes
 * its creator's mask back once it runs: a signal that landed on it before
 * ThreadSanitizer had set it up would be dropped with the state that
 * queued it (base/sanitizer.h). */
int np__thread_create(pthread_t *thread, void *(*fn)(void *), void *arg);

#endif
