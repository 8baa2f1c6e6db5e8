#ifndef NP_CLOCK_H
#define NP_CLOCK_H

#include <stdint.h>
#include <time.h>

/* now + delta, saturating at INT64_MAX / INT64_MIN instead of wrapping. */
int64_t np__add_sat(int64_t now, int64_t delta);

/* A non-negative duration in ns as a timespec (negative clamps to zero). */
struct timespec np__ns_to_timespec(int64_t ns);

#endif
