/* A binary min-heap of timers for the event loop (issue 14: timers owned by connections and
 * workers, and the idle and frame timeouts, on one structure; no periodic sweep).
 *
 * Timers are intrusive: the owner embeds a struct tcpmsg__timer and the heap keeps pointers,
 * each timer knowing its position, so that cancelling is O(log n) and needs no lookup.
 * Timers due at the same time fire in the order they were armed (a sequence number breaks
 * ties), so a run is deterministic. The heap never calls the clock: times are the caller's
 * (tcpmsg_now_ms). Not thread-safe: one heap per loop. Not installed. */
#ifndef TCPMSG_TIMER_HEAP_H
#define TCPMSG_TIMER_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TCPMSG__TIMER_IDLE SIZE_MAX /* pos of a timer that is not armed */

struct tcpmsg__timer {
    int64_t due;  /* when it fires (ms, the caller's clock) */
    uint64_t seq; /* arming order: ties fire first armed, first fired */
    size_t pos;   /* index in the heap, or TCPMSG__TIMER_IDLE */
};

struct tcpmsg__timers {
    struct tcpmsg__timer **heap;
    size_t n, cap;
    uint64_t seq;
};

void tcpmsg__timers_init(struct tcpmsg__timers *h);
/* Frees the heap's array (not the timers, which are their owners'). */
void tcpmsg__timers_fini(struct tcpmsg__timers *h);

/* An idle timer (before its first arm). */
void tcpmsg__timer_init(struct tcpmsg__timer *t);
bool tcpmsg__timer_armed(const struct tcpmsg__timer *t);

/* Arms t for `due` (re-arms it if armed). 0, or -ENOMEM (t is then not armed). */
int tcpmsg__timers_arm(struct tcpmsg__timers *h, struct tcpmsg__timer *t, int64_t due);
/* Disarms t; nothing happens if it is not armed. */
void tcpmsg__timers_disarm(struct tcpmsg__timers *h, struct tcpmsg__timer *t);

/* The earliest due time, or INT64_MAX for an empty heap. */
int64_t tcpmsg__timers_next(const struct tcpmsg__timers *h);
/* Removes and returns the earliest timer due at or before now, or NULL. */
struct tcpmsg__timer *tcpmsg__timers_pop_due(struct tcpmsg__timers *h, int64_t now);
size_t tcpmsg__timers_count(const struct tcpmsg__timers *h);

#endif
