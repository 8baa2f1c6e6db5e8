/* np_stats_get: the runtime's figures, gathered from each layer (the
 * scheduler's queues and counters, the handles, the timers). It lives at
 * the top layer because it reads all of them. */
#include <errno.h>
#include <string.h>

#include "net/fd.h"
#include "netpoll.h"
#include "pd/timer.h"
#include "runtime/scheduler.h"

int np_stats_get(np_stats *out)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    /* Holds the runtime for the reads: np_run cannot free the workers or
     * finish meanwhile (it waits for plain threads inside). */
    if (!np__runtime_enter())
        return -ESRCH;
    np__sched_fill_stats(out);
    np__fd_open_counts(&out->conns_open, &out->listeners_open);
    out->timers_pending = np__timers_pending();
    np__runtime_leave();
    return 0;
}
