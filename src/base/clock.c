/* The one clock: CLOCK_MONOTONIC in nanoseconds. */
#include <time.h>

#include "base/clock.h"
#include "netpoll.h"
#include "base/np_assert.h"

int64_t np_now(void)
{
    struct timespec ts;
    /* Cannot fail for a valid clock id and pointer. */
    int rc = clock_gettime(CLOCK_MONOTONIC, &ts);
    np__assert(rc == 0);
    return (int64_t)ts.tv_sec * NP_SECOND + ts.tv_nsec;
}

int64_t np__add_sat(int64_t now, int64_t delta)
{
    int64_t r;
    if (__builtin_add_overflow(now, delta, &r))
        return delta > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

struct timespec np__ns_to_timespec(int64_t ns)
{
    if (ns < 0)
        ns = 0;
    struct timespec ts = { .tv_sec = ns / NP_SECOND, .tv_nsec = ns % NP_SECOND };
    return ts;
}
