/*
 * tcpmsg/deadline.h - absolute deadlines on the monotonic clock.
 *
 * Every libtcpmsg call that may block takes a deadline as its last parameter: a point in
 * time, in milliseconds of CLOCK_MONOTONIC, after which the call gives up with -ETIMEDOUT.
 * An absolute deadline (rather than a timeout) lets one deadline cover a whole sequence of
 * calls: "connect, send the request and read the reply within 2 s" is
 *
 *   int64_t dl = tcpmsg_deadline_in(2000);
 *   ... tcpmsg_conn_connect(..., dl); tcpmsg_conn_send(..., dl); tcpmsg_conn_recv(..., dl);
 *
 * Two values are special: TCPMSG_FOREVER (-1) waits as long as it takes, TCPMSG_NOWAIT (0)
 * lies in the past, so the call does what it can without waiting.
 */
#ifndef TCPMSG_DEADLINE_H
#define TCPMSG_DEADLINE_H

#include <stdint.h>

#include "tcpmsg/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TCPMSG_FOREVER ((int64_t)-1) /* never time out */
#define TCPMSG_NOWAIT ((int64_t)0)   /* do not wait at all */

/*
 * tcpmsg_now_ms - the monotonic clock (CLOCK_MONOTONIC) in milliseconds. Unaffected by
 * changes of the wall-clock time; only differences between two readings mean something.
 * Never fails, always > 0.
 */
TCPMSG_API int64_t tcpmsg_now_ms(void);

/*
 * tcpmsg_deadline_in - the deadline `ms` milliseconds from now. A negative `ms` gives
 * TCPMSG_FOREVER; 0 gives the current time (a deadline that has just passed). Saturates
 * instead of overflowing.
 */
TCPMSG_API int64_t tcpmsg_deadline_in(int64_t ms);

/*
 * tcpmsg_deadline_left - milliseconds until `deadline`, rounded up, in the form poll()
 * takes: -1 for TCPMSG_FOREVER (and any other negative deadline), 0 once it has passed,
 * at most INT32_MAX otherwise.
 */
TCPMSG_API int tcpmsg_deadline_left(int64_t deadline);

/*
 * tcpmsg_deadline_min - the earlier of two deadlines, TCPMSG_FOREVER counting as the
 * latest. Useful to bound one step ("at most 100 ms, and never past the request's
 * deadline").
 */
TCPMSG_API int64_t tcpmsg_deadline_min(int64_t a, int64_t b);

#ifdef __cplusplus
}
#endif

#endif /* TCPMSG_DEADLINE_H */
