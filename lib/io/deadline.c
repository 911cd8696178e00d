#include "tcpmsg/deadline.h"

#include <limits.h>
#include <time.h>

/* Nanoseconds are kept internally so that a wait is never rounded down to "already late". */
static int64_t
now_ns(void)
{
    struct timespec ts;
    /* CLOCK_MONOTONIC cannot fail with a valid pointer on Linux. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
tcpmsg_now_ms(void)
{
    /* +1 keeps the value > 0 even in the first millisecond after boot, so that it can
     * never be mistaken for TCPMSG_NOWAIT or TCPMSG_FOREVER. */
    return now_ns() / 1000000 + 1;
}

int64_t
tcpmsg_deadline_in(int64_t ms)
{
    if (ms < 0)
        return TCPMSG_FOREVER;
    int64_t now = tcpmsg_now_ms();
    return ms > INT64_MAX - now ? INT64_MAX : now + ms;
}

int
tcpmsg_deadline_left(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    if (deadline == 0)
        return 0;
    /* deadline is in tcpmsg_now_ms() units: (ns / 1e6) + 1. */
    int64_t end_ns = (deadline - 1) > INT64_MAX / 1000000 ? INT64_MAX : (deadline - 1) * 1000000;
    int64_t left = end_ns - now_ns();
    if (left <= 0)
        return 0;
    int64_t ms = (left + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

int64_t
tcpmsg_deadline_min(int64_t a, int64_t b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}
