/* CPU placement for the benchmarks: which CPUs this process may use, and
 * pinning the calling thread to one of them. */
#ifndef NP_BENCH_CPU_PIN_H
#define NP_BENCH_CPU_PIN_H

#include <pthread.h>
#include <sched.h>

/* The idx-th CPU this process may run on, or -1. */
static inline int nth_cpu(int idx)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set) && idx-- == 0)
            return c;
    return -1;
}

/* How many CPUs this process may run on (1 if that cannot be told). */
static inline int allowed_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    return CPU_COUNT(&set);
}

/* Pins the calling thread to cpu (cpu < 0: leaves it unpinned). 0 or the
 * pthread_setaffinity_np error. */
static inline int pin_self(int cpu)
{
    if (cpu < 0)
        return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

#endif
