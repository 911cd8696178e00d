/* Timers of connections (tcpmsg_timer_start / tcpmsg_timer_stop) under every model that runs
 * on_message: order and lateness against the monotonic clock (never early, generous upper
 * bounds), a periodic timer over many periods that stops itself, a timer that drops its
 * connection, timers of a closed connection that never fire, cancelling from another
 * connection's callback (EVENT), misuse, ids never reused.
 *
 * The client drives the server with text frames ("order", "tick N P", ...); the server's
 * callbacks answer with frames. No Check call in a server callback: a worker process forked
 * while the test thread was inside one would inherit Check's mutex held; what callbacks see
 * goes back in replies or in shared memory. */
#include "nettest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define LONG_WAIT tcpmsg_deadline_in(60000)

static const struct nt_model *models;
static int nmodels;
static struct tcpmsg_codec length4;

/* What callbacks saw, in memory shared with forked workers. */
struct shared {
    atomic_int late_fired;    /* timers of a closed connection that fired: must stay 0 */
    atomic_int closed;        /* on_close calls */
    atomic_int last_reason;   /* the last on_close reason */
    atomic_int stop_in_close; /* tcpmsg_timer_stop of a live id from on_close: -ENOENT */
};
static struct shared *sh;

/* A one-shot of the "order" command: its name and when it was due. */
struct ord {
    char name;
    int64_t due;
};

/* Per connection, in the process that serves it. */
struct cstate {
    struct tcpmsg_conn *c;
    int64_t start;
    struct ord ord[3];
    uint64_t tick_id, late_id;
    int ticks, tick_n;
    int64_t period;
};

/* EVENT, one worker: a connection whose periodic timer another connection stops. */
static struct cstate *ticking;

__attribute__((format(printf, 2, 3))) static void
say(struct tcpmsg_conn *c, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    (void)tcpmsg_conn_send(c, buf, (size_t)n, TCPMSG_FOREVER);
}

static void
order_fired(struct tcpmsg_conn *c, uint64_t id, void *arg)
{
    (void)id;
    const struct ord *o = arg;
    say(c, "%c:%lld", o->name, (long long)(tcpmsg_now_ms() - o->due));
}

static void
after_fired(struct tcpmsg_conn *c, uint64_t id, void *arg)
{
    (void)id, (void)arg;
    struct cstate *st = tcpmsg_conn_user(c);
    say(c, "after:%d", st->ticks);
}

static void
tick_fired(struct tcpmsg_conn *c, uint64_t id, void *arg)
{
    struct cstate *st = arg;
    st->ticks++;
    if (st->tick_n && st->ticks == st->tick_n) {
        int r = tcpmsg_timer_stop(c, id); /* from its own callback */
        say(c, "stopped:%d", r);
        /* Well after the next period would have come: says whether it came. */
        (void)tcpmsg_timer_start(c, 5 * st->period + 20, 0, after_fired, NULL, NULL);
    }
}

static void
drop_fired(struct tcpmsg_conn *c, uint64_t id, void *arg)
{
    (void)id, (void)arg;
    tcpmsg_server_drop(c, -ECANCELED);
}

static void
late_fired(struct tcpmsg_conn *c, uint64_t id, void *arg)
{
    (void)c, (void)id, (void)arg;
    atomic_fetch_add(&sh->late_fired, 1);
}

static void
probe_fired(struct tcpmsg_conn *c, uint64_t id, void *arg)
{
    (void)id, (void)arg;
    say(c, "late_fired:%d", atomic_load(&sh->late_fired));
}

static void
other_report(struct tcpmsg_conn *c, uint64_t id, void *arg)
{
    (void)id;
    say(c, "ticks:%d:%d", (int)(intptr_t)arg, ticking ? ticking->ticks : -1);
}

static int
on_open(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    struct cstate *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    st->c = c;
    tcpmsg_conn_set_user(c, st);
    return 0;
}

static void
on_close(struct tcpmsg_conn *c, int reason, void *user)
{
    (void)user;
    struct cstate *st = tcpmsg_conn_user(c);
    if (st->late_id)
        atomic_store(&sh->stop_in_close, tcpmsg_timer_stop(c, st->late_id));
    if (ticking == st)
        ticking = NULL;
    free(st);
    atomic_store(&sh->last_reason, reason);
    atomic_fetch_add(&sh->closed, 1);
}

static int
on_message(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    struct cstate *st = tcpmsg_conn_user(c);
    char cmd[64] = {0};
    memcpy(cmd, m->data, m->len < sizeof cmd - 1 ? m->len : sizeof cmd - 1);
    int n, p;
    if (strcmp(cmd, "order") == 0) {
        /* Three one-shots started out of order: they fire by due time. */
        static const int delays[3] = {60, 20, 40};
        st->start = tcpmsg_now_ms();
        for (int i = 0; i < 3; i++) {
            st->ord[i].name = (char)('a' + i);
            st->ord[i].due = st->start + delays[i];
            int r = tcpmsg_timer_start(c, delays[i], 0, order_fired, &st->ord[i], NULL);
            if (r < 0)
                say(c, "error:%d", r);
        }
    } else if (sscanf(cmd, "tick %d %d", &n, &p) == 2) {
        st->ticks = 0;
        st->tick_n = n;
        st->period = p;
        int r = tcpmsg_timer_start(c, p, p, tick_fired, st, &st->tick_id);
        say(c, "started:%d", r);
    } else if (sscanf(cmd, "forever %d", &p) == 1) {
        st->ticks = 0;
        st->tick_n = 0;
        st->period = p;
        ticking = st;
        say(c, "started:%d", tcpmsg_timer_start(c, p, p, tick_fired, st, &st->tick_id));
    } else if (strcmp(cmd, "stop-other") == 0) {
        /* Another connection of this worker stops the ticking one's timer, then reports
         * its count now and a while later: unchanged. */
        int r = ticking ? tcpmsg_timer_stop(ticking->c, ticking->tick_id) : -ENOENT;
        int again = ticking ? tcpmsg_timer_stop(ticking->c, ticking->tick_id) : 0;
        say(c, "stop:%d:%d", r, again);
        (void)tcpmsg_timer_start(c, 100, 0, other_report,
                                 (void *)(intptr_t)(ticking ? ticking->ticks : -1), NULL);
    } else if (strcmp(cmd, "drop") == 0) {
        say(c, "started:%d", tcpmsg_timer_start(c, 10, 0, drop_fired, NULL, NULL));
    } else if (strcmp(cmd, "late") == 0) {
        say(c, "started:%d", tcpmsg_timer_start(c, 150, 0, late_fired, NULL, &st->late_id));
    } else if (sscanf(cmd, "probe %d", &p) == 1) {
        (void)tcpmsg_timer_start(c, p, 0, probe_fired, NULL, NULL);
    } else if (strcmp(cmd, "misuse") == 0) {
        uint64_t id = 7;
        int a = tcpmsg_timer_start(c, 10, 0, NULL, NULL, &id);
        int b = tcpmsg_timer_start(c, -1, 0, late_fired, NULL, NULL);
        int d = tcpmsg_timer_start(c, 0, -5, late_fired, NULL, NULL);
        int e = tcpmsg_timer_stop(c, 123456789);
        /* Ids only grow: 1000 started and stopped. */
        uint64_t last = 0;
        int grow = 1;
        for (int i = 0; i < 1000; i++) {
            uint64_t x;
            if (tcpmsg_timer_start(c, 100000, 0, late_fired, NULL, &x) < 0 || x <= last ||
                tcpmsg_timer_stop(c, x) != 0)
                grow = 0;
            last = x;
        }
        say(c, "misuse:%d:%d:%d:%d:%llu:%d", a, b, d, e, (unsigned long long)id, grow);
    } else {
        say(c, "unknown");
    }
    return 0;
}

static const struct tcpmsg_handler handler = {.on_open = on_open, .on_message = on_message, .on_close = on_close};

static void
setup(void)
{
    nt_fd_setup();
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(sh, MAP_FAILED);
    memset(sh, 0, sizeof *sh);
    ticking = NULL;
}

static void
teardown(void)
{
    munmap(sh, sizeof *sh);
    nt_fd_teardown();
}

static struct tcpmsg_server *
start(const struct nt_model *m, const struct tcpmsg_handler *h)
{
    struct tcpmsg_server_config cfg = {.host = "127.0.0.1",
                                       .model = m->model,
                                       .pool_threads = m->pool_threads,
                                       .workers = m->workers};
    struct tcpmsg_server *s;
    ck_assert_int_eq(tcpmsg_server_create(&s, &cfg, h), 0);
    ck_assert_int_eq(tcpmsg_server_start(s), 0);
    return s;
}

static void
finish(struct tcpmsg_server *s)
{
    tcpmsg_server_stop(s);
    ck_assert_int_eq(tcpmsg_server_wait(s), 0);
    tcpmsg_server_destroy(s);
}

static struct tcpmsg_conn *
client(struct tcpmsg_server *s)
{
    struct tcpmsg_conn *c;
    ck_assert_int_eq(tcpmsg_conn_connect(&c, "127.0.0.1", nt_service(tcpmsg_server_port(s)),
                                         &length4, NULL, LONG_WAIT),
                     0);
    return c;
}

static void
cmd(struct tcpmsg_conn *c, const char *text)
{
    ck_assert_int_eq(tcpmsg_conn_send(c, text, strlen(text), LONG_WAIT), 0);
}

/* The next reply, as a string (static storage). */
static const char *
reply(struct tcpmsg_conn *c)
{
    static char buf[256];
    struct tcpmsg_frame f;
    int r = tcpmsg_conn_recv(c, &f, LONG_WAIT);
    ck_assert_msg(r == 0, "recv: %s", tcpmsg_errname(r));
    ck_assert_uint_lt(f.len, sizeof buf);
    memcpy(buf, f.data, f.len);
    buf[f.len] = '\0';
    return buf;
}

static bool
closed_at_least(void *arg)
{
    return atomic_load(&sh->closed) >= *(int *)arg;
}

START_TEST(one_shots_fire_in_due_order_never_early)
{
    const struct nt_model *m = &models[_i];
    struct tcpmsg_server *s = start(m, &handler);
    struct tcpmsg_conn *c = client(s);
    for (int round = 0; round < 3; round++) {
        cmd(c, "order");
        const char *want = "bca";
        for (int i = 0; i < 3; i++) {
            char name;
            long long late;
            const char *r = reply(c);
            ck_assert_msg(sscanf(r, "%c:%lld", &name, &late) == 2, "%s: '%s'", m->name, r);
            ck_assert_msg(name == want[i], "%s: fired %c, expected %c", m->name, name, want[i]);
            ck_assert_msg(late >= 0 && late < 10000, "%s: %c fired %lld ms late", m->name, name,
                          late);
        }
    }
    tcpmsg_conn_close(c, LONG_WAIT);
    finish(s);
}
END_TEST

START_TEST(a_periodic_timer_runs_its_periods_and_stops_itself)
{
    const struct nt_model *m = &models[_i];
    /* 2,000 periods of 1 ms under EVENT; fewer, longer ones elsewhere (a blocking model's
     * loop wakes once per period too, but a thread per connection makes that slower). */
    int n = m->model == TCPMSG_MODEL_EVENT ? 2000 : 300;
    int period = m->model == TCPMSG_MODEL_EVENT ? 1 : 2;
    struct tcpmsg_server *s = start(m, &handler);
    struct tcpmsg_conn *c = client(s);
    char text[64];
    snprintf(text, sizeof text, "tick %d %d", n, period);
    int64_t t0 = tcpmsg_now_ms();
    cmd(c, text);
    ck_assert_str_eq(reply(c), "started:0");
    ck_assert_str_eq(reply(c), "stopped:0"); /* stop from its own callback: 0 */
    int64_t elapsed = tcpmsg_now_ms() - t0;
    /* Never early: the n-th period cannot end before n periods have passed. */
    ck_assert_msg(elapsed >= (int64_t)n * period, "%s: %d periods of %d ms in %lld ms", m->name, n,
                  period, (long long)elapsed);
    char after[64];
    snprintf(after, sizeof after, "after:%d", n);
    ck_assert_str_eq(reply(c), after); /* and not one more */
    tcpmsg_conn_close(c, LONG_WAIT);
    finish(s);
}
END_TEST

START_TEST(a_timer_can_drop_its_connection)
{
    const struct nt_model *m = &models[_i];
    struct tcpmsg_server *s = start(m, &handler);
    struct tcpmsg_conn *c = client(s);
    cmd(c, "drop");
    ck_assert_str_eq(reply(c), "started:0");
    struct tcpmsg_frame f;
    int r = tcpmsg_conn_recv(c, &f, LONG_WAIT);
    ck_assert_msg(r == -ECONNRESET || r == TCPMSG_EOF, "%s: %s", m->name, tcpmsg_errname(r));
    int want = 1;
    ck_assert(nt_eventually(closed_at_least, &want));
    ck_assert_int_eq(atomic_load(&sh->last_reason), -ECANCELED);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    finish(s);
}
END_TEST

START_TEST(timers_of_a_closed_connection_never_fire)
{
    const struct nt_model *m = &models[_i];
    struct tcpmsg_server *s = start(m, &handler);
    struct tcpmsg_conn *c = client(s);
    cmd(c, "late"); /* a one-shot in 150 ms ... */
    ck_assert_str_eq(reply(c), "started:0");
    tcpmsg_conn_close(c, LONG_WAIT); /* ... and the connection ends first */
    int want = 1;
    ck_assert(nt_eventually(closed_at_least, &want));
    ck_assert_int_eq(atomic_load(&sh->stop_in_close), -ENOENT); /* cancelled before on_close */
    /* Well past the time it was due, another connection's timer looks. */
    c = client(s);
    cmd(c, "probe 400");
    ck_assert_str_eq(reply(c), "late_fired:0");
    tcpmsg_conn_close(c, LONG_WAIT);
    finish(s);
    ck_assert_int_eq(atomic_load(&sh->late_fired), 0);
}
END_TEST

START_TEST(misuse_and_ids)
{
    const struct nt_model *m = &models[_i];
    struct tcpmsg_server *s = start(m, &handler);
    struct tcpmsg_conn *c = client(s);
    cmd(c, "misuse");
    char want[128];
    snprintf(want, sizeof want, "misuse:%d:%d:%d:%d:0:1", -EINVAL, -EINVAL, -EINVAL, -ENOENT);
    ck_assert_str_eq(reply(c), want);
    /* A connection no server serves has no timers. */
    ck_assert_int_eq(tcpmsg_timer_start(c, 1, 0, late_fired, NULL, NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_timer_stop(c, 1), -EINVAL);
    ck_assert_int_eq(tcpmsg_timer_start(NULL, 1, 0, late_fired, NULL, NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_timer_stop(NULL, 1), -EINVAL);
    tcpmsg_conn_close(c, LONG_WAIT);
    finish(s);
}
END_TEST

/* ---- EVENT and blocking specifics ------------------------------------------------------- */

START_TEST(event_another_connection_stops_a_timer)
{
    struct tcpmsg_server_config cfg = {.host = "127.0.0.1", .workers = 1};
    struct tcpmsg_server *s;
    ck_assert_int_eq(tcpmsg_server_create(&s, &cfg, &handler), 0);
    ck_assert_int_eq(tcpmsg_server_start(s), 0);
    struct tcpmsg_conn *a = client(s), *b = client(s);
    cmd(a, "forever 2");
    ck_assert_str_eq(reply(a), "started:0");
    cmd(b, "stop-other");
    ck_assert_str_eq(reply(b), "stop:0:-2"); /* stopped; a second stop: -ENOENT */
    int at_stop, later;
    const char *r = reply(b); /* 100 ms (50 periods) later */
    ck_assert_msg(sscanf(r, "ticks:%d:%d", &at_stop, &later) == 2, "'%s'", r);
    ck_assert_int_eq(at_stop, later);
    tcpmsg_conn_close(a, LONG_WAIT);
    tcpmsg_conn_close(b, LONG_WAIT);
    finish(s);
}
END_TEST

static int
dialog(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    int r = tcpmsg_timer_start(c, 1, 0, late_fired, NULL, NULL);
    return tcpmsg_conn_send(c, &r, sizeof r, LONG_WAIT) < 0 ? -EIO : TCPMSG_EOF;
}

START_TEST(a_dialog_has_no_timers)
{
    struct tcpmsg_handler h = {.dialog = dialog};
    struct tcpmsg_server_config cfg = {.host = "127.0.0.1", .model = TCPMSG_MODEL_ITERATIVE};
    struct tcpmsg_server *s;
    ck_assert_int_eq(tcpmsg_server_create(&s, &cfg, &h), 0);
    ck_assert_int_eq(tcpmsg_server_start(s), 0);
    struct tcpmsg_conn *c = client(s);
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    int r;
    memcpy(&r, f.data, sizeof r);
    ck_assert_int_eq(r, -ENOTSUP);
    tcpmsg_conn_close(c, LONG_WAIT);
    finish(s);
}
END_TEST

int
main(void)
{
    nmodels = nt_models("test_timers", &models);
    tcpmsg_codec_init_length(&length4, NULL);
    Suite *s = suite_create("timers");
    TCase *t = tcase_create("timers");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_loop_test(t, one_shots_fire_in_due_order_never_early, 0, nmodels);
    tcase_add_loop_test(t, a_periodic_timer_runs_its_periods_and_stops_itself, 0, nmodels);
    tcase_add_loop_test(t, a_timer_can_drop_its_connection, 0, nmodels);
    tcase_add_loop_test(t, timers_of_a_closed_connection_never_fire, 0, nmodels);
    tcase_add_loop_test(t, misuse_and_ids, 0, nmodels);
    tcase_add_test(t, event_another_connection_stops_a_timer);
    tcase_add_test(t, a_dialog_has_no_timers);
    suite_add_tcase(s, t);
    return tu_run(s);
}
