/* bench_clock.h - the benchmarks' clock: CLOCK_MONOTONIC in seconds, nanosecond
 * resolution (tcpmsg_now_ms counts milliseconds, too coarse to time a loop). */
#ifndef TCPMSG_BENCH_CLOCK_H
#define TCPMSG_BENCH_CLOCK_H

#include <time.h>

static inline double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
