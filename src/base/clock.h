#ifndef NP_CLOCK_H
#define NP_CLOCK_H

#include <stdint.h>
#include <time.h>

/* The monotonic clock at the kernel's tick (1-10 ms) resolution: a few ns
 * through the vDSO, a fifth of a CLOCK_MONOTONIC read here. For "since
 * when" stamps that only np_dump reads (a park's). */
static inline int64_t np__coarse_now(void)
{
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* now + delta, saturating at INT64_MAX / INT64_MIN instead of wrapping. */
int64_t np__add_sat(int64_t now, int64_t delta);

/* A non-negative duration in ns as a timespec (negative clamps to zero). */
struct timespec np__ns_to_timespec(int64_t ns);

#endif
