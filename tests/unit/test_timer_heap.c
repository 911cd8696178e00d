/* The event loop's timer heap (lib/server/timer_heap.c), white-box: order, ties, re-arming,
 * disarming anywhere in the heap, against a plain list as the reference, over random runs.
 * Replay a failure with TCPMSG_TEST_SEED=<seed printed>. */
#include "testutil.h"

#include "server/timer_heap.h"

#include <stdio.h>
#include <stdlib.h>

/* The heap's invariants: every timer knows its place, no child is before its parent. */
static void
check_heap(const struct tcpmsg__timers *h)
{
    for (size_t i = 0; i < h->n; i++) {
        ck_assert_uint_eq(h->heap[i]->pos, i);
        if (i > 0) {
            const struct tcpmsg__timer *p = h->heap[(i - 1) / 2], *c = h->heap[i];
            ck_assert(p->due < c->due || (p->due == c->due && p->seq < c->seq));
        }
    }
}

START_TEST(empty_and_idle)
{
    struct tcpmsg__timers h;
    tcpmsg__timers_init(&h);
    ck_assert_int_eq(tcpmsg__timers_next(&h), INT64_MAX);
    ck_assert_ptr_null(tcpmsg__timers_pop_due(&h, INT64_MAX));
    struct tcpmsg__timer t;
    tcpmsg__timer_init(&t);
    ck_assert(!tcpmsg__timer_armed(&t));
    tcpmsg__timers_disarm(&h, &t); /* not armed: nothing happens */
    ck_assert_int_eq(tcpmsg__timers_arm(&h, &t, 100), 0);
    ck_assert(tcpmsg__timer_armed(&t));
    ck_assert_int_eq(tcpmsg__timers_next(&h), 100);
    ck_assert_ptr_null(tcpmsg__timers_pop_due(&h, 99)); /* not yet */
    ck_assert_ptr_eq(tcpmsg__timers_pop_due(&h, 100), &t);
    ck_assert(!tcpmsg__timer_armed(&t));
    ck_assert_int_eq(tcpmsg__timers_arm(&h, &t, 5), 0);
    tcpmsg__timers_fini(&h); /* the timers it held are idle again */
    ck_assert(!tcpmsg__timer_armed(&t));
    ck_assert_uint_eq(tcpmsg__timers_count(&h), 0);
}
END_TEST

START_TEST(ties_fire_in_arming_order_and_rearming_moves)
{
    struct tcpmsg__timers h;
    tcpmsg__timers_init(&h);
    struct tcpmsg__timer t[50];
    for (int i = 0; i < 50; i++) {
        tcpmsg__timer_init(&t[i]);
        ck_assert_int_eq(tcpmsg__timers_arm(&h, &t[i], 7), 0);
    }
    ck_assert_int_eq(tcpmsg__timers_arm(&h, &t[0], 7), 0);  /* re-armed: now the last */
    ck_assert_int_eq(tcpmsg__timers_arm(&h, &t[49], 3), 0); /* re-armed earlier: first */
    ck_assert_uint_eq(tcpmsg__timers_count(&h), 50);
    ck_assert_ptr_eq(tcpmsg__timers_pop_due(&h, 7), &t[49]);
    for (int i = 1; i < 49; i++)
        ck_assert_ptr_eq(tcpmsg__timers_pop_due(&h, 7), &t[i]);
    ck_assert_ptr_eq(tcpmsg__timers_pop_due(&h, 7), &t[0]);
    ck_assert_ptr_null(tcpmsg__timers_pop_due(&h, 7));
    tcpmsg__timers_fini(&h);
}
END_TEST

/* Random arms, re-arms, disarms and pops of 1,000 timers (200,000 operations), checked
 * against the reference: the armed timer with the least (due, seq). */
START_TEST(random_runs_match_the_reference)
{
    enum { N = 1000, OPS = 200000 };
    static struct tcpmsg__timer t[N];
    struct tcpmsg__timers h;
    tcpmsg__timers_init(&h);
    for (int i = 0; i < N; i++)
        tcpmsg__timer_init(&t[i]);
    int64_t now = 0;
    for (int op = 0; op < OPS; op++) {
        int k = (int)tu_range(0, N - 1);
        switch (tu_range(0, 3)) {
        case 0:
        case 1: /* arm or re-arm, often at the same times (ties) */
            ck_assert_int_eq(tcpmsg__timers_arm(&h, &t[k], now + (int64_t)tu_range(0, 50)), 0);
            break;
        case 2:
            tcpmsg__timers_disarm(&h, &t[k]);
            ck_assert(!tcpmsg__timer_armed(&t[k]));
            break;
        default: { /* time passes; every due timer pops, in order */
            now += (int64_t)tu_range(0, 10);
            for (;;) {
                const struct tcpmsg__timer *want = NULL;
                for (int i = 0; i < N; i++)
                    if (tcpmsg__timer_armed(&t[i]) && t[i].due <= now &&
                        (!want || t[i].due < want->due ||
                         (t[i].due == want->due && t[i].seq < want->seq)))
                        want = &t[i];
                struct tcpmsg__timer *got = tcpmsg__timers_pop_due(&h, now);
                ck_assert_msg(got == want, "seed %llu, op %d", (unsigned long long)tu_seed(), op);
                if (!got)
                    break;
            }
        }
        }
        if (op % 997 == 0)
            check_heap(&h);
    }
    size_t armed = 0;
    for (int i = 0; i < N; i++)
        armed += tcpmsg__timer_armed(&t[i]);
    ck_assert_uint_eq(tcpmsg__timers_count(&h), armed);
    check_heap(&h);
    tcpmsg__timers_fini(&h);
}
END_TEST

int
main(void)
{
    tu_rand_seed(0x71e3a001);
    Suite *s = suite_create("timer_heap");
    TCase *t = tcase_create("timer_heap");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, empty_and_idle);
    tcase_add_test(t, ties_fire_in_arming_order_and_rearming_moves);
    tcase_add_test(t, random_runs_match_the_reference);
    suite_add_tcase(s, t);
    return tu_run(s);
}
