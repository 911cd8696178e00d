/* The event loop's timer heap: see timer_heap.h. */
#include "timer_heap.h"

#include <errno.h>
#include <stdlib.h>

void
tcpmsg__timers_init(struct tcpmsg__timers *h)
{
    h->heap = NULL;
    h->n = h->cap = 0;
    h->seq = 0;
}

void
tcpmsg__timers_fini(struct tcpmsg__timers *h)
{
    for (size_t i = 0; i < h->n; i++)
        h->heap[i]->pos = TCPMSG__TIMER_IDLE;
    free(h->heap);
    tcpmsg__timers_init(h);
}

void
tcpmsg__timer_init(struct tcpmsg__timer *t)
{
    t->due = 0;
    t->seq = 0;
    t->pos = TCPMSG__TIMER_IDLE;
}

bool
tcpmsg__timer_armed(const struct tcpmsg__timer *t)
{
    return t->pos != TCPMSG__TIMER_IDLE;
}

static bool
before(const struct tcpmsg__timer *a, const struct tcpmsg__timer *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void
place(struct tcpmsg__timers *h, size_t i, struct tcpmsg__timer *t)
{
    h->heap[i] = t;
    t->pos = i;
}

static void
sift_up(struct tcpmsg__timers *h, size_t i)
{
    struct tcpmsg__timer *t = h->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(t, h->heap[parent]))
            break;
        place(h, i, h->heap[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void
sift_down(struct tcpmsg__timers *h, size_t i)
{
    struct tcpmsg__timer *t = h->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->n)
            break;
        if (child + 1 < h->n && before(h->heap[child + 1], h->heap[child]))
            child++;
        if (!before(h->heap[child], t))
            break;
        place(h, i, h->heap[child]);
        i = child;
    }
    place(h, i, t);
}

/* Takes the timer at i out of the heap and restores the order. */
static void
remove_at(struct tcpmsg__timers *h, size_t i)
{
    struct tcpmsg__timer *t = h->heap[i];
    t->pos = TCPMSG__TIMER_IDLE;
    struct tcpmsg__timer *last = h->heap[--h->n];
    if (i == h->n)
        return;
    place(h, i, last);
    if (i > 0 && before(last, h->heap[(i - 1) / 2]))
        sift_up(h, i);
    else
        sift_down(h, i);
}

int
tcpmsg__timers_arm(struct tcpmsg__timers *h, struct tcpmsg__timer *t, int64_t due)
{
    if (tcpmsg__timer_armed(t))
        remove_at(h, t->pos);
    if (h->n == h->cap) {
        size_t ncap = h->cap ? 2 * h->cap : 16;
        struct tcpmsg__timer **p = realloc(h->heap, ncap * sizeof(struct tcpmsg__timer *));
        if (!p)
            return -ENOMEM;
        h->heap = p;
        h->cap = ncap;
    }
    t->due = due;
    t->seq = ++h->seq;
    h->heap[h->n] = t;
    t->pos = h->n++;
    sift_up(h, t->pos);
    return 0;
}

void
tcpmsg__timers_disarm(struct tcpmsg__timers *h, struct tcpmsg__timer *t)
{
    if (tcpmsg__timer_armed(t))
        remove_at(h, t->pos);
}

int64_t
tcpmsg__timers_next(const struct tcpmsg__timers *h)
{
    return h->n ? h->heap[0]->due : INT64_MAX;
}

struct tcpmsg__timer *
tcpmsg__timers_pop_due(struct tcpmsg__timers *h, int64_t now)
{
    if (h->n == 0 || h->heap[0]->due > now)
        return NULL;
    struct tcpmsg__timer *t = h->heap[0];
    remove_at(h, 0);
    return t;
}

size_t
tcpmsg__timers_count(const struct tcpmsg__timers *h)
{
    return h->n;
}
