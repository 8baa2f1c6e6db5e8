/* The offload pool: threads that run blocking work (np_offload) while the
 * task that asked for it is parked, so its worker stays free. */
#ifndef NP_OFFLOAD_H
#define NP_OFFLOAD_H

/* Called by np_run: max threads (> 0). Threads start on demand. */
void np__offload_start(int max_threads);

/* Called by np_run once every task has finished: stops and joins every
 * pool thread (no job can be queued or running by then). */
void np__offload_stop(void);

/* Queues fn(arg) on the pool without waiting for it (fn owns arg and
 * reports back by its own means). 0, -ENOMEM, or -ESRCH when no runtime
 * runs. np_run does not return before it has run. */
int np__offload_async(void (*fn)(void *), void *arg);

/* Pool threads alive now (for statistics). */
int np__offload_threads(void);

#endif
