/* The EVENT loop as a platform (issue 14): on_worker_start / on_worker_stop, the worker's own
 * timers, descriptors watched in the loop, pause / resume and on_drain, and what the other
 * models say to those calls. Every wait is on an event (a reply, a counter another thread
 * sets); times are only checked against generous bounds. No Check call in a server callback
 * (what callbacks see goes into atomics the test thread asserts). */
#include "nettest.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LONG_WAIT tcpmsg_deadline_in(60000)

static struct tcpmsg_codec length4;

static atomic_int failures; /* what a callback found wrong: must stay 0 */
static atomic_int started, stopped;

static void
flag_if(bool bad)
{
    if (bad)
        atomic_fetch_add(&failures, 1);
}

static int
echo(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    return tcpmsg_conn_send(c, m->data, m->len, TCPMSG_FOREVER);
}

static const char *
reply(struct tcpmsg_conn *c, char *buf, size_t cap)
{
    struct tcpmsg_frame f;
    int r = tcpmsg_conn_recv(c, &f, LONG_WAIT);
    ck_assert_msg(r == 0, "recv: %s", tcpmsg_errname(r));
    ck_assert_uint_lt(f.len, cap);
    memcpy(buf, f.data, f.len);
    buf[f.len] = '\0';
    return buf;
}

static bool
int_at_least(void *arg)
{
    atomic_int *v = ((void **)arg)[0];
    int want = *(int *)((void **)arg)[1];
    return atomic_load(v) >= want;
}

static bool
wait_for(atomic_int *v, int want)
{
    void *args[2] = {v, &want};
    return nt_eventually(int_at_least, args);
}

/* ---- the worker's own timers ---------------------------------------------------------- */

#define WORKERS 2
#define PERIODS 1000

struct wstate {
    pthread_t thread;     /* the worker's, seen in on_worker_start */
    atomic_int ticks;     /* periods of its periodic timer */
    atomic_int after;     /* fired after the periodic one stopped itself: must stay 0 */
    atomic_int cancelled; /* a one-shot stopped before its time fired: must stay 0 */
    atomic_int done;      /* the probe after the last period ran */
    uint64_t tick_id;
};
static struct wstate ws[WORKERS];

static void
never(struct tcpmsg_worker *w, uint64_t id, void *arg)
{
    (void)w, (void)id;
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void
probe(struct tcpmsg_worker *w, uint64_t id, void *arg)
{
    (void)id, (void)arg;
    atomic_store(&ws[tcpmsg_worker_index(w)].done, 1);
}

static void
tick(struct tcpmsg_worker *w, uint64_t id, void *arg)
{
    struct wstate *st = arg;
    flag_if(!pthread_equal(pthread_self(), st->thread)); /* in the worker's thread */
    flag_if(id != st->tick_id);
    if (atomic_fetch_add(&st->ticks, 1) + 1 == PERIODS) {
        flag_if(tcpmsg_worker_timer_stop(w, id) != 0); /* from its own callback */
        flag_if(tcpmsg_worker_timer_stop(w, id) != -ENOENT);
        (void)tcpmsg_worker_timer_start(w, 20, 0, probe, NULL, NULL); /* well after a period */
    } else if (atomic_load(&st->ticks) > PERIODS) {
        atomic_fetch_add(&st->after, 1);
    }
}

static void
timers_start(struct tcpmsg_worker *w, void *user)
{
    (void)user;
    int i = tcpmsg_worker_index(w);
    flag_if(i < 0 || i >= WORKERS || tcpmsg_worker_server(w) == NULL);
    if (i < 0 || i >= WORKERS)
        return;
    struct wstate *st = &ws[i];
    st->thread = pthread_self();
    atomic_fetch_add(&started, 1);
    uint64_t a = 0, b = 0;
    flag_if(tcpmsg_worker_timer_start(w, 1, 1, tick, st, &st->tick_id) != 0);
    flag_if(tcpmsg_worker_timer_start(w, 30, 0, never, &st->cancelled, &a) != 0);
    flag_if(tcpmsg_worker_timer_stop(w, a) != 0);
    flag_if(tcpmsg_worker_timer_start(w, -1, 0, never, NULL, &b) != -EINVAL || b != 0);
    flag_if(tcpmsg_worker_timer_start(w, 1, 0, NULL, NULL, NULL) != -EINVAL);
    flag_if(st->tick_id == 0 || a == 0 || a == st->tick_id);
    /* A timer still armed when the worker ends: cancelled, it never fires. */
    flag_if(tcpmsg_worker_timer_start(w, 3600 * 1000, 0, never, &st->after, NULL) != 0);
}

static void
timers_stop(struct tcpmsg_worker *w, void *user)
{
    (void)user;
    flag_if(!pthread_equal(pthread_self(), ws[tcpmsg_worker_index(w)].thread));
    atomic_fetch_add(&stopped, 1);
}

START_TEST(worker_timers_run_in_their_worker_and_stop)
{
    memset(ws, 0, sizeof ws);
    atomic_store(&failures, 0);
    atomic_store(&started, 0);
    atomic_store(&stopped, 0);
    struct tcpmsg_handler h = {.on_message = echo,
                               .on_worker_start = timers_start,
                               .on_worker_stop = timers_stop};
    struct tcpmsg_server_config cfg = {.host = "127.0.0.1", .workers = WORKERS};
    int64_t t0 = tcpmsg_now_ms();
    struct tcpmsg_server *s = nt_server(&cfg, &h);
    for (int i = 0; i < WORKERS; i++)
        ck_assert(wait_for(&ws[i].done, 1));
    int64_t took = tcpmsg_now_ms() - t0;
    nt_server_end(s);
    ck_assert_int_eq(atomic_load(&started), WORKERS);
    ck_assert_int_eq(atomic_load(&stopped), WORKERS);
    for (int i = 0; i < WORKERS; i++) {
        ck_assert_int_eq(atomic_load(&ws[i].ticks), PERIODS);
        ck_assert_int_eq(atomic_load(&ws[i].after), 0);
        ck_assert_int_eq(atomic_load(&ws[i].cancelled), 0);
    }
    ck_assert_int_eq(atomic_load(&failures), 0);
    /* 1,000 periods of 1 ms never run early: at least a second. */
    ck_assert_int_ge(took, PERIODS);
    /* Outside EVENT, and with nothing: refused with the reason. */
    ck_assert_int_eq(tcpmsg_worker_timer_start(NULL, 1, 0, never, NULL, NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_worker_timer_stop(NULL, 1), -EINVAL);
    ck_assert_int_eq(tcpmsg_worker_index(NULL), -EINVAL);
    ck_assert_ptr_null(tcpmsg_worker_server(NULL));
}
END_TEST

/* ---- descriptors watched in the loop ----------------------------------------------------- */

static int pipe_rd = -1, regular_fd = -1;
static struct tcpmsg_conn *listener_conn; /* the one client of the watch test */
static atomic_int eof_events, watch_calls, opened;

static void
pipe_ready(struct tcpmsg_worker *w, int fd, int events, void *arg)
{
    (void)arg;
    atomic_fetch_add(&watch_calls, 1);
    flag_if(events != TCPMSG_WATCH_IN || fd != pipe_rd);
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0 && listener_conn) {
        /* Input read in the loop goes out on a connection, written at the end of the turn. */
        flag_if(tcpmsg_conn_send(listener_conn, buf, (size_t)n, TCPMSG_FOREVER) != 0);
    } else if (n == 0) {
        atomic_fetch_add(&eof_events, 1);
        flag_if(tcpmsg_worker_unwatch(w, fd) != 0); /* from its own callback */
        flag_if(tcpmsg_worker_unwatch(w, fd) != -ENOENT);
        if (listener_conn)
            (void)tcpmsg_conn_send(listener_conn, "eof", 3, TCPMSG_FOREVER);
    }
}

static void
ignore_ready(struct tcpmsg_worker *w, int fd, int events, void *arg)
{
    (void)w, (void)fd, (void)events, (void)arg;
}

static void
watch_start(struct tcpmsg_worker *w, void *user)
{
    (void)user;
    flag_if(tcpmsg_worker_watch(w, pipe_rd, TCPMSG_WATCH_IN, ignore_ready, NULL) != 0);
    /* Watching again changes the callback. */
    flag_if(tcpmsg_worker_watch(w, pipe_rd, TCPMSG_WATCH_IN, pipe_ready, NULL) != 0);
    flag_if(tcpmsg_worker_watch(w, regular_fd, TCPMSG_WATCH_IN, ignore_ready, NULL) != -EPERM);
    flag_if(tcpmsg_worker_watch(w, pipe_rd, 0, ignore_ready, NULL) != -EINVAL);
    flag_if(tcpmsg_worker_watch(w, pipe_rd, 4, ignore_ready, NULL) != -EINVAL);
    flag_if(tcpmsg_worker_watch(w, pipe_rd, TCPMSG_WATCH_IN, NULL, NULL) != -EINVAL);
    flag_if(tcpmsg_worker_watch(w, -1, TCPMSG_WATCH_IN, ignore_ready, NULL) != -EINVAL);
    flag_if(tcpmsg_worker_unwatch(w, regular_fd) != -ENOENT);
}

static int
watch_open(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    listener_conn = c;
    flag_if(tcpmsg_conn_worker(c) == NULL);
    atomic_fetch_add(&opened, 1);
    return 0;
}

static void
watch_close(struct tcpmsg_conn *c, int reason, void *user)
{
    (void)reason, (void)user;
    if (listener_conn == c)
        listener_conn = NULL;
}

START_TEST(a_watched_pipe_is_read_in_the_loop)
{
    atomic_store(&failures, 0);
    atomic_store(&eof_events, 0);
    atomic_store(&watch_calls, 0);
    atomic_store(&opened, 0);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    pipe_rd = p[0];
    char path[] = "/tmp/tcpmsg-watch-XXXXXX";
    regular_fd = mkstemp(path);
    ck_assert_int_ge(regular_fd, 0);
    unlink(path);
    struct tcpmsg_handler h = {.on_open = watch_open,
                               .on_message = echo,
                               .on_close = watch_close,
                               .on_worker_start = watch_start};
    struct tcpmsg_server_config cfg = {.host = "127.0.0.1", .workers = 1};
    struct tcpmsg_server *s = nt_server(&cfg, &h);
    struct tcpmsg_conn *c = nt_client(s, &length4);
    ck_assert(wait_for(&opened, 1));
    char buf[64];
    /* Each write to the pipe comes back as one frame, in order. */
    for (int i = 0; i < 100; i++) {
        char line[32];
        int n = snprintf(line, sizeof line, "line %d", i);
        ck_assert_int_eq(write(p[1], line, (size_t)n), n);
        ck_assert_str_eq(reply(c, buf, sizeof buf), line);
    }
    close(p[1]); /* the end: one call with nothing to read, then it is unwatched */
    ck_assert_str_eq(reply(c, buf, sizeof buf), "eof");
    int calls = atomic_load(&watch_calls);
    /* The loop goes on serving the connection, and the pipe is quiet. */
    ck_assert_int_eq(tcpmsg_conn_send(c, "still here", 10, LONG_WAIT), 0);
    ck_assert_str_eq(reply(c, buf, sizeof buf), "still here");
    ck_assert_int_eq(atomic_load(&watch_calls), calls);
    ck_assert_int_eq(atomic_load(&eof_events), 1);
    tcpmsg_conn_close(c, LONG_WAIT);
    nt_server_end(s);
    ck_assert_int_eq(atomic_load(&failures), 0);
    close(p[0]);
    close(regular_fd);
    ck_assert_int_eq(tcpmsg_worker_watch(NULL, 0, TCPMSG_WATCH_IN, ignore_ready, NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_worker_unwatch(NULL, 0), -EINVAL);
}
END_TEST

/* ---- pause, resume, on_drain ------------------------------------------------------------ */

/* One worker, two clients: the producer's frames go to the consumer; when the consumer's
 * output passes output_high the producer is paused, and the consumer's on_drain resumes
 * it. The consumer reads nothing until the producer has been paused, then everything. */
#define FRAME (64 * 1024)
#define FRAMES 1024 /* 64 MiB through the relay */
#define HIGH (1024 * 1024)

static struct tcpmsg_conn *producer, *consumer;
static atomic_int pauses, resumes, drains, forwarded;
static atomic_long max_queued;

static int
relay_open(struct tcpmsg_conn *c, void *user)
{
    (void)c, (void)user;
    atomic_fetch_add(&opened, 1);
    return 0;
}

static int
relay_message(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    if (m->len == 5 && memcmp(m->data, "hello", 5) == 0) { /* the consumer says who it is */
        consumer = c;
        return 0;
    }
    if (!producer)
        producer = c;
    flag_if(c != producer || !consumer);
    if (!consumer)
        return -EPROTO;
    int r = tcpmsg_conn_send(consumer, m->data, m->len, TCPMSG_FOREVER);
    if (r < 0)
        return r;
    atomic_fetch_add(&forwarded, 1);
    long q = (long)tcpmsg_conn_output(consumer, NULL);
    if (q > atomic_load(&max_queued))
        atomic_store(&max_queued, q);
    if (q > HIGH) {
        flag_if(tcpmsg_server_pause(c) != 0);
        flag_if(tcpmsg_server_pause(c) != 0); /* twice is once */
        atomic_fetch_add(&pauses, 1);
    }
    return 0;
}

static void
relay_drain(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    atomic_fetch_add(&drains, 1);
    if (c == consumer && producer) {
        flag_if(tcpmsg_server_resume(producer) != 0);
        atomic_fetch_add(&resumes, 1);
    }
}

static void
relay_close(struct tcpmsg_conn *c, int reason, void *user)
{
    (void)user;
    if (c == consumer)
        consumer = NULL;
    if (c == producer) {
        producer = NULL;
        flag_if(reason != TCPMSG_EOF);
    }
}

struct pushed {
    struct tcpmsg_conn *c;
    int sent;
};

static void *
push_all(void *arg)
{
    struct pushed *p = arg;
    uint8_t *m = malloc(FRAME);
    for (int i = 0; i < FRAMES; i++) {
        nt_fill(m, FRAME, (uint32_t)i);
        if (tcpmsg_conn_send(p->c, m, FRAME, LONG_WAIT) != 0)
            break;
        p->sent++;
    }
    free(m);
    tcpmsg_conn_shutdown(p->c, LONG_WAIT);
    return NULL;
}

START_TEST(pause_and_on_drain_carry_backpressure_across_connections)
{
    atomic_store(&failures, 0);
    atomic_store(&opened, 0);
    atomic_store(&pauses, 0);
    atomic_store(&resumes, 0);
    atomic_store(&drains, 0);
    atomic_store(&forwarded, 0);
    atomic_store(&max_queued, 0);
    producer = consumer = NULL;
    struct tcpmsg_handler h = {.on_open = relay_open,
                               .on_message = relay_message,
                               .on_close = relay_close,
                               .on_drain = relay_drain};
    struct tcpmsg_server_config cfg = {.host = "127.0.0.1",
                                       .workers = 1,
                                       .output_high = 4 * HIGH,
                                       .output_low = HIGH / 4,
                                       .idle_timeout_ms = -1,
                                       .listen = {.sndbuf = 65536}};
    struct tcpmsg_server *s = nt_server(&cfg, &h);
    struct tcpmsg_conn *cons = nt_client(s, &length4);
    ck_assert_int_eq(tcpmsg_conn_send(cons, "hello", 5, LONG_WAIT), 0);
    ck_assert(wait_for(&opened, 1));
    struct tcpmsg_conn_opts po = {.recv_buffer = 65536};
    struct tcpmsg_conn *prod;
    ck_assert_int_eq(tcpmsg_conn_connect(&prod, "127.0.0.1", nt_service(tcpmsg_server_port(s)),
                                         &length4, &po, LONG_WAIT),
                     0);
    struct pushed p = {prod, 0};
    struct nt_thread t;
    nt_start(&t, push_all, &p);
    /* The producer is paused while the consumer reads nothing. */
    ck_assert(wait_for(&pauses, 1));
    int before = atomic_load(&forwarded);
    uint8_t *want = malloc(FRAME);
    for (int i = 0; i < FRAMES; i++) {
        struct tcpmsg_frame f;
        int r = tcpmsg_conn_recv(cons, &f, LONG_WAIT);
        ck_assert_msg(r == 0, "frame %d: %s", i, tcpmsg_errname(r));
        ck_assert_uint_eq(f.len, FRAME);
        nt_fill(want, FRAME, (uint32_t)i);
        ck_assert_msg(memcmp(f.data, want, FRAME) == 0, "frame %d differs", i);
    }
    free(want);
    nt_join(&t);
    ck_assert_int_eq(p.sent, FRAMES);
    /* The worker counts a frame after its send, which may write it at once: the last one
     * can be here before the count is. */
    ck_assert(wait_for(&forwarded, FRAMES));
    ck_assert_int_eq(atomic_load(&forwarded), FRAMES);
    ck_assert_int_lt(before, FRAMES); /* it did wait for the consumer */
    /* The consumer's queue never went far past the watermark: a frame over it at most. */
    ck_assert_int_le(atomic_load(&max_queued), HIGH + FRAME + 64);
    ck_assert_int_ge(atomic_load(&resumes), 1);
    ck_assert_int_ge(atomic_load(&drains), atomic_load(&resumes));
    tcpmsg_conn_close(prod, LONG_WAIT);
    tcpmsg_conn_close(cons, LONG_WAIT);
    nt_server_end(s);
    ck_assert_int_eq(atomic_load(&failures), 0);
}
END_TEST

/* A paused connection is not read (its buffered frames wait) and no idle timeout runs on it;
 * once resumed, its frames come in order and its idle time starts again. */
static atomic_int delivered_while_paused, idle_closes;
static bool is_paused;

static void
resume_later(struct tcpmsg_conn *c, uint64_t id, void *arg)
{
    (void)id, (void)arg;
    is_paused = false;
    flag_if(tcpmsg_server_resume(c) != 0);
    (void)tcpmsg_conn_send(c, "resumed", 7, TCPMSG_FOREVER);
}

static int
pause_message(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    if (is_paused)
        atomic_fetch_add(&delivered_while_paused, 1);
    if (m->len == 5 && memcmp(m->data, "pause", 5) == 0) {
        is_paused = true;
        flag_if(tcpmsg_server_pause(c) != 0);
        /* Three idle timeouts later (the loop's clock, not the test's). */
        flag_if(tcpmsg_timer_start(c, 300, 0, resume_later, NULL, NULL) != 0);
        return 0;
    }
    return tcpmsg_conn_send(c, m->data, m->len, TCPMSG_FOREVER);
}

static void
pause_close(struct tcpmsg_conn *c, int reason, void *user)
{
    (void)c, (void)user;
    if (reason == TCPMSG_EIDLE)
        atomic_fetch_add(&idle_closes, 1);
}

START_TEST(a_paused_connection_waits_and_is_not_idle)
{
    atomic_store(&failures, 0);
    atomic_store(&delivered_while_paused, 0);
    atomic_store(&idle_closes, 0);
    is_paused = false;
    struct tcpmsg_handler h = {.on_message = pause_message, .on_close = pause_close};
    struct tcpmsg_server_config cfg = {.host = "127.0.0.1", .workers = 1,
                                       .idle_timeout_ms = 100};
    struct tcpmsg_server *s = nt_server(&cfg, &h);
    struct tcpmsg_conn *c = nt_client(s, &length4);
    /* The pause, then two frames that arrive with it or soon after. */
    ck_assert_int_eq(tcpmsg_conn_send(c, "pause", 5, TCPMSG_NOWAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_send(c, "one", 3, TCPMSG_NOWAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_send(c, "two", 3, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_flush(c, LONG_WAIT), 0);
    char buf[64];
    ck_assert_str_eq(reply(c, buf, sizeof buf), "resumed"); /* not closed as idle meanwhile */
    ck_assert_str_eq(reply(c, buf, sizeof buf), "one");
    ck_assert_str_eq(reply(c, buf, sizeof buf), "two");
    ck_assert_int_eq(atomic_load(&delivered_while_paused), 0);
    ck_assert_int_eq(atomic_load(&idle_closes), 0);
    /* Silent from now on: the idle timeout applies again. */
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), TCPMSG_EOF);
    ck_assert(wait_for(&idle_closes, 1));
    tcpmsg_conn_close(c, LONG_WAIT);
    nt_server_end(s);
    ck_assert_int_eq(atomic_load(&failures), 0);
}
END_TEST

/* ---- half-close: on_eof and tcpmsg_server_shutdown ----------------------------------------- */

static atomic_int eofs, hc_closes, hc_reason, late_send, after_shut_send;
static bool keep_on_eof;
static int64_t late_ms; /* when on_eof's reply goes */

static void
late_reply(struct tcpmsg_conn *c, uint64_t id, void *arg)
{
    (void)id, (void)arg;
    atomic_store(&late_send, tcpmsg_conn_send(c, "late", 4, TCPMSG_FOREVER));
    flag_if(tcpmsg_server_shutdown(c) != 0);
    flag_if(tcpmsg_server_shutdown(c) != 0); /* twice: still 0 */
}

static int
hc_eof(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    atomic_fetch_add(&eofs, 1);
    if (!keep_on_eof)
        return -ECANCELED;
    /* The answer comes after the peer's end, from the loop's clock. */
    flag_if(tcpmsg_timer_start(c, late_ms, 0, late_reply, NULL, NULL) != 0);
    return 0;
}

static int
hc_message(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    if (m->len == 4 && memcmp(m->data, "shut", 4) == 0) {
        /* This side ends first; what the peer still sends is read. */
        flag_if(tcpmsg_conn_send(c, "bye", 3, TCPMSG_FOREVER) != 0);
        flag_if(tcpmsg_server_shutdown(c) != 0);
        return 0;
    }
    if (m->len == 5 && memcmp(m->data, "after", 5) == 0) {
        atomic_store(&after_shut_send, tcpmsg_conn_send(c, "x", 1, TCPMSG_FOREVER));
        return 0;
    }
    return tcpmsg_conn_send(c, m->data, m->len, TCPMSG_FOREVER);
}

static void
hc_close(struct tcpmsg_conn *c, int reason, void *user)
{
    (void)c, (void)user;
    atomic_store(&hc_reason, reason);
    atomic_fetch_add(&hc_closes, 1);
}

static bool
after_was_sent(void *arg)
{
    (void)arg;
    return atomic_load(&after_shut_send) != 1;
}

static struct tcpmsg_server *
hc_server(bool keep)
{
    atomic_store(&failures, 0);
    atomic_store(&eofs, 0);
    atomic_store(&hc_closes, 0);
    atomic_store(&hc_reason, 0);
    atomic_store(&late_send, 1);
    atomic_store(&after_shut_send, 1);
    keep_on_eof = keep;
    late_ms = 20;
    static struct tcpmsg_handler h = {.on_message = hc_message, .on_close = hc_close,
                                      .on_eof = hc_eof};
    struct tcpmsg_server_config cfg = {.host = "127.0.0.1", .workers = 1};
    return nt_server(&cfg, &h);
}

START_TEST(a_peer_that_half_closes_still_gets_its_late_replies)
{
    struct tcpmsg_server *s = hc_server(true);
    struct tcpmsg_conn *c = nt_client(s, &length4);
    ck_assert_int_eq(tcpmsg_conn_send(c, "one", 3, TCPMSG_NOWAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_send(c, "two", 3, TCPMSG_NOWAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_shutdown(c, LONG_WAIT), 0);
    char buf[16];
    ck_assert_str_eq(reply(c, buf, sizeof buf), "one");
    ck_assert_str_eq(reply(c, buf, sizeof buf), "two");
    ck_assert_str_eq(reply(c, buf, sizeof buf), "late");
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), TCPMSG_EOF);
    ck_assert(wait_for(&hc_closes, 1));
    ck_assert_int_eq(atomic_load(&hc_reason), TCPMSG_EOF); /* both sides ended cleanly */
    ck_assert_int_eq(atomic_load(&eofs), 1);
    ck_assert_int_eq(atomic_load(&late_send), 0);
    tcpmsg_conn_close(c, LONG_WAIT);
    nt_server_end(s);
    ck_assert_int_eq(atomic_load(&failures), 0);
}
END_TEST

START_TEST(on_eof_refusing_ends_the_connection_at_once)
{
    struct tcpmsg_server *s = hc_server(false);
    struct tcpmsg_conn *c = nt_client(s, &length4);
    ck_assert_int_eq(tcpmsg_conn_send(c, "one", 3, TCPMSG_NOWAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_shutdown(c, LONG_WAIT), 0);
    char buf[16];
    ck_assert_str_eq(reply(c, buf, sizeof buf), "one");
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), TCPMSG_EOF);
    ck_assert(wait_for(&hc_closes, 1));
    ck_assert_int_eq(atomic_load(&hc_reason), -ECANCELED);
    ck_assert_int_eq(atomic_load(&late_send), 1); /* no timer ran */
    tcpmsg_conn_close(c, LONG_WAIT);
    nt_server_end(s);
    ck_assert_int_eq(atomic_load(&failures), 0);
}
END_TEST

START_TEST(the_server_ends_its_side_first_and_still_reads)
{
    struct tcpmsg_server *s = hc_server(true);
    struct tcpmsg_conn *c = nt_client(s, &length4);
    ck_assert_int_eq(tcpmsg_conn_send(c, "shut", 4, LONG_WAIT), 0);
    char buf[16];
    ck_assert_str_eq(reply(c, buf, sizeof buf), "bye");
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), TCPMSG_EOF); /* its half-close */
    /* The server still reads: this frame arrives, and its send says the side is shut. */
    ck_assert_int_eq(tcpmsg_conn_send(c, "after", 5, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_flush(c, LONG_WAIT), 0);
    ck_assert(nt_eventually(after_was_sent, NULL));
    ck_assert_int_eq(atomic_load(&after_shut_send), -EPIPE);
    ck_assert_int_eq(atomic_load(&hc_closes), 0);
    /* Our end: both sides have ended, the server's connection closes cleanly. on_eof kept
     * it, its timer's late reply finds the side shut. */
    ck_assert_int_eq(tcpmsg_conn_shutdown(c, LONG_WAIT), 0);
    ck_assert(wait_for(&hc_closes, 1));
    ck_assert_int_eq(atomic_load(&hc_reason), TCPMSG_EOF);
    tcpmsg_conn_close(c, LONG_WAIT);
    nt_server_end(s);
    ck_assert_int_eq(atomic_load(&failures), 0);
}
END_TEST

/* A connection that is not read (paused, or its end kept by on_eof) and is reset: the reset
 * ends it with its error, at once (level-triggered epoll reports the hang-up on every turn:
 * left alone, the worker would spin and on_close would never come). */
static atomic_int hu_opened;
static int
hu_open(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    atomic_fetch_add(&hu_opened, 1);
    return tcpmsg_server_pause(c);
}

START_TEST(a_connection_not_read_that_is_reset_ends_with_the_reset)
{
    for (int kept = 0; kept < 2; kept++) {
        struct tcpmsg_server *s = hc_server(true);
        late_ms = 600000; /* the reset comes first */
        atomic_store(&hu_opened, 0);
        struct tcpmsg_handler ph = {.on_open = hu_open, .on_message = hc_message,
                                    .on_close = hc_close};
        struct tcpmsg_server_config cfg = {.host = "127.0.0.1", .workers = 1};
        struct tcpmsg_server *ps = kept ? NULL : nt_server(&cfg, &ph);
        struct tcpmsg_conn *c = nt_client(kept ? s : ps, &length4);
        if (kept) {
            /* Half-closed, kept by on_eof: then reset before the late reply. */
            ck_assert_int_eq(tcpmsg_conn_shutdown(c, LONG_WAIT), 0);
            ck_assert(wait_for(&eofs, 1));
        } else {
            ck_assert(wait_for(&hu_opened, 1));
        }
        tcpmsg_conn_reset(c);
        ck_assert(wait_for(&hc_closes, 1));
        int why = atomic_load(&hc_reason);
        ck_assert_msg(why == -ECONNRESET || why == -EPIPE, "%s", tcpmsg_errname(why));
        if (ps)
            nt_server_end(ps);
        nt_server_end(s);
    }
}
END_TEST

/* ---- the other models ---------------------------------------------------------------------- */

static atomic_int other_answers; /* each call's result, checked in the test thread */
static atomic_int other_pause, other_resume, other_worker_null;

static int
other_message(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    atomic_store(&other_pause, tcpmsg_server_pause(c));
    atomic_store(&other_resume, tcpmsg_server_resume(c));
    atomic_store(&other_worker_null, tcpmsg_conn_worker(c) == NULL);
    atomic_fetch_add(&other_answers, 1);
    return tcpmsg_conn_send(c, m->data, m->len, TCPMSG_FOREVER);
}

START_TEST(the_blocking_models_say_not_supported)
{
    enum tcpmsg_model ms[] = {TCPMSG_MODEL_ITERATIVE, TCPMSG_MODEL_THREAD};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        atomic_store(&other_answers, 0);
        struct tcpmsg_handler h = {.on_message = other_message};
        struct tcpmsg_server_config cfg = {.host = "127.0.0.1", .model = ms[i]};
        struct tcpmsg_server *s = nt_server(&cfg, &h);
        struct tcpmsg_conn *c = nt_client(s, &length4);
        char buf[16];
        ck_assert_int_eq(tcpmsg_conn_send(c, "x", 1, LONG_WAIT), 0);
        ck_assert_str_eq(reply(c, buf, sizeof buf), "x");
        ck_assert_int_eq(atomic_load(&other_answers), 1);
        ck_assert_int_eq(atomic_load(&other_pause), -ENOTSUP);
        ck_assert_int_eq(atomic_load(&other_resume), -ENOTSUP);
        ck_assert_int_eq(atomic_load(&other_worker_null), 1);
        tcpmsg_conn_close(c, LONG_WAIT);
        nt_server_end(s);
    }
    ck_assert_int_eq(tcpmsg_server_pause(NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_server_resume(NULL), -EINVAL);
    ck_assert_ptr_null(tcpmsg_conn_worker(NULL));
}
END_TEST


/* ---- outbound connections ------------------------------------------------------------------ */

/* The dialling side: a server without a listener (a pure client), one worker, whose
 * on_worker_start dials what the test set in `plan`. What happens is written down here by
 * the worker and read by the test once the counters say it happened. */
#define MAX_DOWNS 16
static struct {
    const char *host;
    char port[16];
    struct tcpmsg_dial_opts o;
    bool stop_after_downs; /* dial_stop from on_down once MAX_DOWNS are in */
    const char *hello;     /* sent by on_open of a dialled connection */
} plan;
static struct {
    uint64_t id;
    atomic_int downs, opens, closes, replies;
    int reason[MAX_DOWNS];
    int64_t retry[MAX_DOWNS], at[MAX_DOWNS];
    int64_t open_at[MAX_DOWNS];
    int last_close;
    char reply[64];
} got;

static atomic_int quiet; /* set by a worker timer well after the dialler was stopped */

static void
quiet_after(struct tcpmsg_worker *w, uint64_t id, void *arg)
{
    (void)w, (void)id, (void)arg;
    atomic_store(&quiet, 1);
}

static void
dialler_down(struct tcpmsg_worker *w, uint64_t id, int reason, int64_t retry_ms, void *arg)
{
    (void)arg;
    flag_if(id != got.id);
    int i = atomic_load(&got.downs);
    if (i < MAX_DOWNS) {
        got.reason[i] = reason;
        got.retry[i] = retry_ms;
        got.at[i] = tcpmsg_now_ms();
    }
    if (plan.stop_after_downs && i + 1 == MAX_DOWNS) {
        flag_if(tcpmsg_worker_dial_stop(w, id) != 0);
        flag_if(tcpmsg_worker_dial_stop(w, id) != -ENOENT);
        /* Well after the attempt that would have come: says whether it came. */
        flag_if(tcpmsg_worker_timer_start(w, (retry_ms > 0 ? retry_ms : 0) + 50, 0, quiet_after,
                                          NULL, NULL) != 0);
    }
    atomic_fetch_add(&got.downs, 1);
}

static void
dialler_start(struct tcpmsg_worker *w, void *user)
{
    (void)user;
    plan.o.on_down = dialler_down;
    flag_if(tcpmsg_worker_dial(w, plan.host, plan.port, &plan.o, &got.id) != 0);
    flag_if(got.id == 0);
    uint64_t none;
    flag_if(tcpmsg_worker_dial(w, NULL, "1", NULL, &none) != -EINVAL || none != 0);
    flag_if(tcpmsg_worker_dial(w, "127.0.0.1", "", NULL, NULL) != -EINVAL);
    struct tcpmsg_dial_opts bad = {.connect_timeout_ms = -1};
    flag_if(tcpmsg_worker_dial(w, "127.0.0.1", "1", &bad, NULL) != -EINVAL);
    flag_if(tcpmsg_worker_dial_stop(w, got.id + 1000) != -ENOENT);
}

static int
dialled_open(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    flag_if(tcpmsg_conn_dial_id(c) != got.id);
    int i = atomic_load(&got.opens);
    if (i < MAX_DOWNS)
        got.open_at[i] = tcpmsg_now_ms();
    atomic_fetch_add(&got.opens, 1);
    if (plan.hello)
        return tcpmsg_conn_send(c, plan.hello, strlen(plan.hello), TCPMSG_FOREVER);
    return 0;
}

static int
dialled_message(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)c, (void)user;
    size_t n = m->len < sizeof got.reply - 1 ? m->len : sizeof got.reply - 1;
    memcpy(got.reply, m->data, n);
    got.reply[n] = '\0';
    atomic_fetch_add(&got.replies, 1);
    return 0;
}

static void
dialled_close(struct tcpmsg_conn *c, int reason, void *user)
{
    (void)c, (void)user;
    got.last_close = reason;
    atomic_fetch_add(&got.closes, 1);
}

static struct tcpmsg_server *
dialler(void)
{
    static const struct tcpmsg_handler h = {.on_open = dialled_open,
                                            .on_message = dialled_message,
                                            .on_close = dialled_close,
                                            .on_worker_start = dialler_start};
    struct tcpmsg_server_config cfg = {.no_listener = true, .workers = 1};
    struct tcpmsg_server *s = nt_server(&cfg, &h);
    ck_assert_int_eq(tcpmsg_server_port(s), -ENOTCONN);
    return s;
}

static void
plan_reset(const char *host, int port)
{
    memset(&plan, 0, sizeof plan);
    memset(&got, 0, sizeof got);
    atomic_store(&failures, 0);
    atomic_store(&quiet, 0);
    plan.host = host;
    snprintf(plan.port, sizeof plan.port, "%d", port);
}

START_TEST(a_dialled_connection_is_served_by_the_handler)
{
    struct tcpmsg_handler eh = {.on_message = echo};
    struct tcpmsg_server_config ec = {.host = "127.0.0.1", .workers = 1};
    struct tcpmsg_server *up = nt_server(&ec, &eh);
    plan_reset("127.0.0.1", tcpmsg_server_port(up));
    plan.hello = "hello upstream";
    struct tcpmsg_server *s = dialler();
    ck_assert(wait_for(&got.replies, 1));
    ck_assert_str_eq(got.reply, "hello upstream");
    ck_assert_int_eq(atomic_load(&got.opens), 1);
    ck_assert_int_eq(atomic_load(&got.downs), 0);
    nt_server_end(s); /* the dialler's stop ends its connection: no attempt after it */
    ck_assert_int_eq(atomic_load(&got.closes), 1);
    ck_assert_int_eq(got.last_close, -ESHUTDOWN);
    ck_assert_int_eq(atomic_load(&got.downs), 1);
    ck_assert_int_eq(got.reason[0], -ESHUTDOWN);
    ck_assert_int_eq(got.retry[0], -1);
    nt_server_end(up);
    ck_assert_int_eq(atomic_load(&failures), 0);
}
END_TEST

START_TEST(a_refused_port_and_a_black_hole_fail_with_their_reason)
{
    int holder;
    int refused = nt_refusing_port("127.0.0.1", &holder);
    plan_reset("127.0.0.1", refused);
    struct tcpmsg_server *s = dialler();
    ck_assert(wait_for(&got.downs, 1));
    ck_assert_int_eq(got.reason[0], -ECONNREFUSED);
    ck_assert_int_eq(got.retry[0], -1); /* no reconnect: once */
    nt_server_end(s);
    close(holder);

    struct nt_blackhole bh;
    nt_blackhole_open(&bh, "127.0.0.1");
    plan_reset("127.0.0.1", bh.port);
    plan.o.connect_timeout_ms = 300;
    int64_t t0 = tcpmsg_now_ms();
    s = dialler();
    ck_assert(wait_for(&got.downs, 1));
    ck_assert_int_eq(got.reason[0], -ETIMEDOUT);
    ck_assert_int_ge(got.at[0] - t0, 300); /* never before its deadline */
    ck_assert_int_eq(atomic_load(&got.opens), 0);
    nt_server_end(s);
    nt_blackhole_close(&bh);
    ck_assert_int_eq(atomic_load(&failures), 0);
}
END_TEST

START_TEST(a_name_with_several_addresses_connects_to_the_one_that_answers)
{
    /* "localhost" is ::1 and 127.0.0.1 here; only 127.0.0.1 listens on this port. */
    struct tcpmsg_handler eh = {.on_message = echo};
    struct tcpmsg_server_config ec = {.host = "127.0.0.1", .workers = 1};
    struct tcpmsg_server *up = nt_server(&ec, &eh);
    plan_reset("localhost", tcpmsg_server_port(up));
    plan.hello = "via localhost";
    struct tcpmsg_server *s = dialler();
    ck_assert(wait_for(&got.replies, 1));
    ck_assert_str_eq(got.reply, "via localhost");
    ck_assert_int_eq(atomic_load(&got.downs), 0);
    nt_server_end(s);
    nt_server_end(up);
    ck_assert_int_eq(atomic_load(&failures), 0);
}
END_TEST

START_TEST(reconnect_waits_double_with_jitter_up_to_the_maximum)
{
    int holder;
    int refused = nt_refusing_port("127.0.0.1", &holder);
    plan_reset("127.0.0.1", refused);
    plan.o.reconnect = true;
    plan.o.backoff_initial_ms = 20;
    plan.o.backoff_max_ms = 160;
    plan.stop_after_downs = true;
    struct tcpmsg_server *s = dialler();
    ck_assert(wait_for(&got.downs, MAX_DOWNS));
    int64_t b = 20;
    for (int i = 0; i < MAX_DOWNS; i++) {
        ck_assert_int_eq(got.reason[i], -ECONNREFUSED);
        if (i == MAX_DOWNS - 1)
            break; /* stopped from its own on_down */
        ck_assert_msg(got.retry[i] >= b / 2 && got.retry[i] <= b,
                      "wait %d: %lld ms, outside [%lld, %lld]", i, (long long)got.retry[i],
                      (long long)(b / 2), (long long)b);
        /* The next attempt never comes before its wait is over (at[i] is taken in on_down,
         * a little after the wait was armed: a few ms of slack, not the wait's size). */
        ck_assert_int_ge(got.at[i + 1] - got.at[i], got.retry[i] - 20);
        b = b * 2 > 160 ? 160 : b * 2;
    }
    ck_assert(wait_for(&quiet, 1));
    ck_assert_int_eq(atomic_load(&got.downs), MAX_DOWNS); /* no attempt after the stop */
    nt_server_end(s);
    close(holder);
    ck_assert_int_eq(atomic_load(&failures), 0);
}
END_TEST

/* An upstream that accepts and closes at once: the dialler's connections open and end, and
 * each end counts as a failure (none stayed healthy), so the waits keep doubling. */
static int
refuse_all(struct tcpmsg_conn *c, void *user)
{
    (void)c, (void)user;
    return -EPERM;
}

START_TEST(a_server_that_closes_at_once_gets_no_reconnect_storm)
{
    struct tcpmsg_handler rh = {.on_open = refuse_all, .on_message = echo};
    struct tcpmsg_server_config rc = {.host = "127.0.0.1", .workers = 1};
    struct tcpmsg_server *up = nt_server(&rc, &rh);
    plan_reset("127.0.0.1", tcpmsg_server_port(up));
    plan.o.reconnect = true;
    plan.o.backoff_initial_ms = 10;
    plan.o.backoff_max_ms = 320;
    plan.stop_after_downs = true;
    struct tcpmsg_server *s = dialler();
    ck_assert(wait_for(&got.downs, MAX_DOWNS));
    int64_t b = 10, total = 0;
    for (int i = 0; i < MAX_DOWNS - 1; i++) {
        ck_assert_msg(got.retry[i] >= b / 2 && got.retry[i] <= b, "wait %d: %lld ms", i,
                      (long long)got.retry[i]);
        total += got.retry[i];
        b = b * 2 > 320 ? 320 : b * 2;
    }
    /* 16 ends took at least the sum of the waits (>= 1.6 s): a storm takes milliseconds. */
    ck_assert_int_ge(got.at[MAX_DOWNS - 1] - got.at[0], total - got.retry[MAX_DOWNS - 1]);
    ck_assert_int_ge(atomic_load(&got.opens), 1);
    ck_assert(wait_for(&quiet, 1));
    ck_assert_int_eq(atomic_load(&got.downs), MAX_DOWNS);
    nt_server_end(s);
    nt_server_end(up);
    ck_assert_int_eq(atomic_load(&failures), 0);
}
END_TEST

START_TEST(the_dialler_reconnects_when_its_server_comes_back)
{
    struct tcpmsg_handler eh = {.on_message = echo};
    struct tcpmsg_server_config ec = {.host = "127.0.0.1", .workers = 1};
    struct tcpmsg_server *up = nt_server(&ec, &eh);
    int port = tcpmsg_server_port(up);
    plan_reset("127.0.0.1", port);
    plan.o.reconnect = true;
    plan.o.backoff_initial_ms = 20;
    plan.o.backoff_max_ms = 100;
    plan.o.healthy_ms = 50;
    plan.hello = "again";
    struct tcpmsg_server *s = dialler();
    ck_assert(wait_for(&got.replies, 1));
    /* The server goes away: the connection ends, attempts are refused meanwhile ... */
    nt_server_end(up);
    ck_assert(wait_for(&got.downs, 3));
    ck_assert_int_eq(atomic_load(&got.closes), 1);
    for (int i = 1; i < 3; i++)
        ck_assert_int_eq(got.reason[i], -ECONNREFUSED);
    /* ... and once it is back on the same port, the dialler connects and is served. */
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    ec.port = p;
    up = nt_server(&ec, &eh);
    ck_assert(wait_for(&got.replies, 2));
    ck_assert_str_eq(got.reply, "again");
    ck_assert_int_eq(atomic_load(&got.opens), 2);
    nt_server_end(s);
    nt_server_end(up);
    ck_assert_int_eq(atomic_load(&failures), 0);
}
END_TEST

int
main(void)
{
    tcpmsg_codec_init_length(&length4, NULL);
    Suite *s = suite_create("loop");
    TCase *t = tcase_create("loop");
    tcase_add_checked_fixture(t, nt_fd_setup, nt_fd_teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, worker_timers_run_in_their_worker_and_stop);
    tcase_add_test(t, a_watched_pipe_is_read_in_the_loop);
    tcase_add_test(t, pause_and_on_drain_carry_backpressure_across_connections);
    tcase_add_test(t, a_paused_connection_waits_and_is_not_idle);
    tcase_add_test(t, a_peer_that_half_closes_still_gets_its_late_replies);
    tcase_add_test(t, on_eof_refusing_ends_the_connection_at_once);
    tcase_add_test(t, the_server_ends_its_side_first_and_still_reads);
    tcase_add_test(t, a_connection_not_read_that_is_reset_ends_with_the_reset);
    tcase_add_test(t, the_blocking_models_say_not_supported);
    tcase_add_test(t, a_dialled_connection_is_served_by_the_handler);
    tcase_add_test(t, a_refused_port_and_a_black_hole_fail_with_their_reason);
    tcase_add_test(t, a_name_with_several_addresses_connects_to_the_one_that_answers);
    tcase_add_test(t, reconnect_waits_double_with_jitter_up_to_the_maximum);
    tcase_add_test(t, a_server_that_closes_at_once_gets_no_reconnect_storm);
    tcase_add_test(t, the_dialler_reconnects_when_its_server_comes_back);
    suite_add_tcase(s, t);
    return tu_run(s);
}
