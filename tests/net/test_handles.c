/* Replies from other threads (tcpmsg_conn_handle, tcpmsg_server_send, tcpmsg_server_call)
 * under EVENT: 8 threads send 1,000,000 frames in total to 100 connections while some of
 * those connections close and new ones open; every frame sent to a connection that stays
 * live arrives once, in order per sending thread; every call on a dead handle returns
 * -ENOENT and touches nothing; calls run in the connection's worker; after the stop,
 * -ESHUTDOWN. */
#include "nettest.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LONG_WAIT tcpmsg_deadline_in(120000)
#define CONNS 100
#define SENDERS 8

static struct tcpmsg_codec length4;

/* The handle of each client slot's current connection, published by the server's on_message
 * when the client says which slot it is. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t handle_of[CONNS];
static bool stop_churn; /* under mu: the senders are done, no slot may churn any more */
static int churning;    /* under mu: slots between closing and their new connection */
static struct tcpmsg_server *server;
static _Atomic uint64_t sent_to[100]; /* frames queued for each slot (the stable ones count) */

static int
on_message(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    int k;
    char text[32] = {0};
    memcpy(text, m->data, m->len < sizeof text - 1 ? m->len : sizeof text - 1);
    if (sscanf(text, "slot %d", &k) == 1 && k >= 0 && k < CONNS) {
        pthread_mutex_lock(&mu);
        handle_of[k] = tcpmsg_conn_handle(c);
        pthread_mutex_unlock(&mu);
        return tcpmsg_conn_send(c, "ready", 5, TCPMSG_FOREVER);
    }
    return 0;
}

static const struct tcpmsg_handler handler = {.on_message = on_message};

struct frame {
    uint32_t sender, seq;
};

static struct tcpmsg_conn *
join_slot(int k)
{
    struct tcpmsg_conn *c;
    int r = tcpmsg_conn_connect(&c, "127.0.0.1", nt_service(tcpmsg_server_port(server)), &length4,
                                NULL, LONG_WAIT);
    ck_assert_msg(r == 0, "connect: %s", tcpmsg_errname(r));
    char text[32];
    int n = snprintf(text, sizeof text, "slot %d", k);
    ck_assert_int_eq(tcpmsg_conn_send(c, text, (size_t)n, LONG_WAIT), 0);
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    ck_assert(f.len == 5 && memcmp(f.data, "ready", 5) == 0);
    return c;
}

/* A client slot: reads its connection; slots below CHURN close theirs after a while and
 * open a new one, twice. Each connection must see every sender's frames numbered 0, 1, 2...
 * with no gap, until the end marker (sender UINT32_MAX) that comes after every sender's. */
#define CHURN 10
static uint64_t churn_after;   /* frames a churning slot reads before it changes connection */
static atomic_int churns_done; /* senders go on until every churning slot changed twice */
struct slot {
    int k;
    struct nt_thread t;
    uint64_t received;
    uint64_t old_handles[2];
    int nold;
    char error[160];
};

static void *
slot_main(void *arg)
{
    struct slot *sl = arg;
    struct tcpmsg_conn *c = join_slot(sl->k);
    uint32_t next[SENDERS] = {0};
    uint64_t here = 0;
    for (;;) {
        struct tcpmsg_frame f;
        int r = tcpmsg_conn_recv(c, &f, LONG_WAIT);
        if (r < 0) {
            snprintf(sl->error, sizeof sl->error, "slot %d: recv %s", sl->k, tcpmsg_errname(r));
            break;
        }
        struct frame fr;
        if (f.len != sizeof fr) {
            snprintf(sl->error, sizeof sl->error, "slot %d: frame of %zu bytes", sl->k, f.len);
            break;
        }
        memcpy(&fr, f.data, sizeof fr);
        if (fr.sender == UINT32_MAX)
            break; /* every sender's frames came before this */
        if (fr.sender >= SENDERS || fr.seq != next[fr.sender]) {
            snprintf(sl->error, sizeof sl->error, "slot %d: sender %u sent #%u, expected #%u",
                     sl->k, fr.sender, fr.seq, fr.sender < SENDERS ? next[fr.sender] : 0);
            break;
        }
        next[fr.sender]++;
        sl->received++;
        if (sl->k < CHURN && ++here == churn_after && sl->nold < 2) {
            /* Gone while the senders still use its handle: a new connection replaces it. */
            pthread_mutex_lock(&mu);
            bool go = !stop_churn;
            if (go) {
                sl->old_handles[sl->nold++] = handle_of[sl->k];
                churning++;
            }
            pthread_mutex_unlock(&mu);
            if (go) {
                tcpmsg_conn_close(c, TCPMSG_NOWAIT);
                c = join_slot(sl->k); /* its handle is published before "ready" */
                memset(next, 0, sizeof next);
                here = 0;
                pthread_mutex_lock(&mu);
                churning--;
                pthread_mutex_unlock(&mu);
                atomic_fetch_add(&churns_done, 1);
            }
        }
    }
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    return NULL;
}

struct sender {
    uint32_t id;
    uint64_t quota;
    struct nt_thread t;
    uint64_t sent, dead, again;
};

static void *
sender_main(void *arg)
{
    struct sender *sd = arg;
    uint64_t last[CONNS] = {0};
    uint32_t seq[CONNS] = {0};
    for (uint64_t i = 0; sd->sent < sd->quota || atomic_load(&churns_done) < CHURN * 2; i++) {
        int k = (int)((i * 7 + sd->id * 13) % CONNS);
        pthread_mutex_lock(&mu);
        uint64_t h = handle_of[k];
        pthread_mutex_unlock(&mu);
        if (h != last[k]) { /* a new connection in that slot: its numbering starts again */
            last[k] = h;
            seq[k] = 0;
        }
        struct frame fr = {sd->id, seq[k]};
        int r = tcpmsg_server_send(server, h, &fr, sizeof fr);
        if (r == 0) {
            seq[k]++;
            sd->sent++;
            atomic_fetch_add(&sent_to[k], 1);
        } else if (r == -ENOENT) {
            sd->dead++; /* the slot's connection just ended */
        } else if (r == -EAGAIN) {
            sd->again++; /* the worker's queue is full: backpressure */
            sched_yield();
        } else {
            ck_abort_msg("send: %s", tcpmsg_errname(r));
        }
    }
    return NULL;
}

static void
in_worker(struct tcpmsg_conn *c, void *arg)
{
    struct {
        pthread_t caller;
        atomic_int ran;
        uint64_t h;
        int same;
    } *x = arg;
    x->same = c && !pthread_equal(pthread_self(), x->caller) && tcpmsg_conn_handle(c) == x->h;
    atomic_store(&x->ran, 1);
}

static void
never(struct tcpmsg_conn *c, void *arg)
{
    (void)c;
    atomic_store((atomic_int *)arg, 1);
}

START_TEST(eight_threads_one_million_frames_while_connections_come_and_go)
{
    const char *scale = getenv("TCPMSG_HANDLES_FRAMES");
    uint64_t total = scale ? strtoull(scale, NULL, 10) : 1000000;
    churn_after = total / CONNS / 8 > 10 ? total / CONNS / 8 : 10;
    memset(handle_of, 0, sizeof handle_of);
    for (int k = 0; k < CONNS; k++)
        atomic_store(&sent_to[k], 0);
    stop_churn = false;
    churning = 0;
    atomic_store(&churns_done, 0);
    struct tcpmsg_server_config cfg = {.host = "127.0.0.1", .workers = _i + 1};
    ck_assert_int_eq(tcpmsg_server_create(&server, &cfg, &handler), 0);
    ck_assert_int_eq(tcpmsg_server_start(server), 0);
    static struct slot slots[CONNS];
    memset(slots, 0, sizeof slots);
    for (int k = 0; k < CONNS; k++) {
        slots[k].k = k;
        nt_start(&slots[k].t, slot_main, &slots[k]);
    }
    for (;;) { /* every slot has a connection */
        pthread_mutex_lock(&mu);
        int n = 0;
        for (int k = 0; k < CONNS; k++)
            n += handle_of[k] != 0;
        pthread_mutex_unlock(&mu);
        if (n == CONNS)
            break;
        sched_yield(); /* waiting for an event (all published), not for time */
    }
    /* A call runs in the connection's worker, with that connection. */
    struct {
        pthread_t caller;
        atomic_int ran;
        uint64_t h;
        int same;
    } x = {pthread_self(), 0, handle_of[CONNS - 1], 0};
    ck_assert_int_eq(tcpmsg_server_call(server, x.h, in_worker, &x), 0);
    while (!atomic_load(&x.ran))
        sched_yield();
    ck_assert(x.same);

    static struct sender sd[SENDERS];
    for (uint32_t i = 0; i < SENDERS; i++) {
        sd[i] = (struct sender){.id = i, .quota = total / SENDERS};
        nt_start(&sd[i].t, sender_main, &sd[i]);
    }
    uint64_t sent = 0, dead = 0, again = 0;
    for (int i = 0; i < SENDERS; i++) {
        nt_join(&sd[i].t);
        sent += sd[i].sent, dead += sd[i].dead, again += sd[i].again;
    }
    ck_assert_uint_ge(sent, total / SENDERS * SENDERS);
    /* No slot changes its connection from now on. */
    for (bool settled = false; !settled;) {
        pthread_mutex_lock(&mu);
        stop_churn = true;
        settled = churning == 0;
        pthread_mutex_unlock(&mu);
        sched_yield(); /* waiting for an event (the last new connection), not for time */
    }
    /* The end marker, after every sender's frames (one queue per worker, in order). */
    struct frame end = {UINT32_MAX, 0};
    for (int k = 0; k < CONNS; k++) {
        int r;
        while ((r = tcpmsg_server_send(server, handle_of[k], &end, sizeof end)) == -EAGAIN)
            sched_yield();
        ck_assert_int_eq(r, 0);
    }
    uint64_t received = 0;
    for (int k = 0; k < CONNS; k++) {
        nt_join(&slots[k].t);
        ck_assert_msg(!slots[k].error[0], "%s", slots[k].error);
        received += slots[k].received;
    }
    /* A connection that stayed open got every frame queued for it; what may be missing is
     * only what the closed ones had not read. */
    ck_assert_uint_le(received, sent);
    for (int k = CHURN; k < CONNS; k++)
        ck_assert_msg(slots[k].received == atomic_load(&sent_to[k]),
                      "slot %d: %llu frames queued, %llu received", k,
                      (unsigned long long)atomic_load(&sent_to[k]),
                      (unsigned long long)slots[k].received);
    /* Dead handles: refused, nothing run. */
    atomic_int ran = 0;
    for (int k = 0; k < CHURN; k++) {
        ck_assert_int_eq(slots[k].nold, 2);
        for (int j = 0; j < 2; j++) {
            ck_assert_int_eq(tcpmsg_server_send(server, slots[k].old_handles[j], "x", 1), -ENOENT);
            ck_assert_int_eq(tcpmsg_server_call(server, slots[k].old_handles[j], never, &ran),
                             -ENOENT);
        }
    }
    ck_assert_int_eq(tcpmsg_server_send(server, 0, "x", 1), -ENOENT);
    ck_assert_int_eq(tcpmsg_server_send(server, (uint64_t)1 << 32 | 0xffffff, "x", 1), -ENOENT);
    fprintf(stderr,
            "handles (%d workers): %llu frames sent, %llu received, %llu to ended "
            "connections refused, %llu times the queue was full\n",
            _i + 1, (unsigned long long)sent, (unsigned long long)received,
            (unsigned long long)dead, (unsigned long long)again);
    tcpmsg_server_stop(server);
    ck_assert_int_eq(tcpmsg_server_wait(server), 0);
    ck_assert_int_eq(tcpmsg_server_send(server, handle_of[0], "x", 1), -ESHUTDOWN);
    ck_assert_int_eq(tcpmsg_server_call(server, handle_of[0], never, &ran), -ESHUTDOWN);
    tcpmsg_server_destroy(server);
    ck_assert_int_eq(atomic_load(&ran), 0);
}
END_TEST

START_TEST(misuse_and_models_without_handles)
{
    ck_assert_uint_eq(tcpmsg_conn_handle(NULL), 0);
    struct tcpmsg_server_config cfg = {.host = "127.0.0.1", .model = TCPMSG_MODEL_THREAD};
    ck_assert_int_eq(tcpmsg_server_create(&server, &cfg, &handler), 0);
    ck_assert_int_eq(tcpmsg_server_start(server), 0);
    memset(handle_of, 0xff, sizeof handle_of);
    struct tcpmsg_conn *c = join_slot(0);
    ck_assert_uint_eq(handle_of[0], 0); /* THREAD: no handles */
    uint64_t h = (uint64_t)1 << 32;     /* generation 1, worker 0, slot 0 */
    ck_assert_int_eq(tcpmsg_server_send(server, h, "x", 1), -ESHUTDOWN); /* not EVENT */
    ck_assert_int_eq(tcpmsg_server_send(server, 1, "x", 1), -ENOENT);    /* generation 0: none */
    ck_assert_int_eq(tcpmsg_server_send(NULL, 1, "x", 1), -EINVAL);
    ck_assert_int_eq(tcpmsg_server_send(server, 1, NULL, 1), -EINVAL);
    ck_assert_int_eq(tcpmsg_server_call(server, 1, NULL, NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_handle(c), 0); /* a client's connection */
    tcpmsg_conn_close(c, LONG_WAIT);
    tcpmsg_server_stop(server);
    ck_assert_int_eq(tcpmsg_server_wait(server), 0);
    tcpmsg_server_destroy(server);
    /* Over the codec's limit. */
    struct tcpmsg_codec small;
    tcpmsg_codec_init_length(&small, &(struct tcpmsg_length_config){.max_payload = 4});
    struct tcpmsg_server_config ec = {.host = "127.0.0.1", .codec = &small, .workers = 1};
    ck_assert_int_eq(tcpmsg_server_create(&server, &ec, &handler), 0);
    ck_assert_int_eq(tcpmsg_server_send(server, 1, "12345", 5), -EMSGSIZE);
    ck_assert_int_eq(tcpmsg_server_send(server, h, "1234", 4), -ESHUTDOWN); /* not running */
    tcpmsg_server_destroy(server);
}
END_TEST

int
main(void)
{
    tcpmsg_codec_init_length(&length4, NULL);
    Suite *s = suite_create("handles");
    TCase *t = tcase_create("handles");
    tcase_add_checked_fixture(t, nt_fd_setup, nt_fd_teardown);
    tcase_set_timeout(t, 600);
    tcase_add_loop_test(t, eight_threads_one_million_frames_while_connections_come_and_go, 0, 2);
    tcase_add_test(t, misuse_and_models_without_handles);
    suite_add_tcase(s, t);
    return tu_run(s);
}
