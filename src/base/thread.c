#include "base/sanitizer.h"
#include "base/thread.h"

#ifdef NP_TSAN
#include <errno.h>
#include <stdlib.h>

typedef struct start {
    void *(*fn)(void *);
    void *arg;
    np__sig_hold mask; /* the creator's, held while the thread was made */
} start;

static void *started(void *p)
{
    start s = *(start *)p;
    free(p);
    np__tsan_make_signal_state(NULL);
    np__sig_release_signals(&s.mask);
    void *r = s.fn(s.arg);
    /* Held to the end: what lands after the thread's last intercepted call
     * would go with its state. */
    np__sig_hold_signals(&s.mask);
    return r;
}

int np__thread_create(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    start *s = malloc(sizeof *s);
    if (!s)
        return ENOMEM;
    s->fn = fn;
    s->arg = arg;
    np__sig_hold_signals(&s->mask);
    np__sig_hold mine = s->mask; /* the new thread frees s */
    int rc = pthread_create(thread, NULL, started, s);
    np__sig_release_signals(&mine);
    if (rc != 0)
        free(s);
    return rc;
}
#else
int np__thread_create(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    return pthread_create(thread, NULL, fn, arg);
}
#endif
