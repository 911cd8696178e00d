/* Per-client limits (max_conns_per_client, conn_rate_per_client / conn_burst_per_client)
 * under every model: a client address over its limit is refused (TCPMSG_ELIMIT, logged,
 * counted in stats.limited) while other addresses are served; a connection that ends gives
 * its place back; behind the PROXY protocol the limit is the real client's, not the
 * balancer's. The table is shared by the worker processes of FORK and POOL. */
#include "nettest.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define LONG_WAIT tcpmsg_deadline_in(60000)

static const struct nt_model *models;
static int nmodels;
static struct tcpmsg_codec length4;

struct shared {
    atomic_int limited_logged, closed_logged;
};
static struct shared *sh;

static void
setup(void)
{
    nt_fd_setup();
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(sh, MAP_FAILED);
    memset(sh, 0, sizeof *sh);
}

static void
teardown(void)
{
    munmap(sh, sizeof *sh);
    nt_fd_teardown();
}

static void
record(void *user, enum tcpmsg_server_event ev, int code, const char *tuple)
{
    (void)user, (void)tuple;
    if (ev == TCPMSG_EV_REFUSED && code == TCPMSG_ELIMIT)
        atomic_fetch_add(&sh->limited_logged, 1);
    if (ev == TCPMSG_EV_CLOSE)
        atomic_fetch_add(&sh->closed_logged, 1);
}

static int
echo(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    return tcpmsg_conn_send(c, m->data, m->len, TCPMSG_FOREVER);
}

static const struct tcpmsg_handler handler = {.on_message = echo};

static struct tcpmsg_server *
start(const struct nt_model *m, struct tcpmsg_server_config *cfg)
{
    cfg->host = "127.0.0.1";
    cfg->model = m->model;
    cfg->pool_threads = m->pool_threads;
    cfg->workers = m->model == TCPMSG_MODEL_POOL ? 8 : m->workers; /* a worker per client */
    cfg->log = record;
    return nt_server(cfg, &handler);
}

/* A connection that claims to be `client` (a PROXY v1 header), or is itself (NULL). */
static struct tcpmsg_conn *
dial(struct tcpmsg_server *s, const char *client)
{
    int fd = tcpmsg_sock_connect("127.0.0.1", nt_service(tcpmsg_server_port(s)), NULL, LONG_WAIT);
    ck_assert_int_ge(fd, 0);
    if (client) {
        char h[128];
        int n = snprintf(h, sizeof h, "PROXY TCP4 %s 192.0.2.1 4000 7000\r\n", client);
        ck_assert(nt_send_all(fd, h, (size_t)n));
    }
    struct tcpmsg_conn *c;
    ck_assert_int_eq(tcpmsg_conn_open(&c, fd, &length4, NULL), 0);
    return c;
}

/* Served: an echo comes back. Refused: the connection ends without one. */
static bool
served(struct tcpmsg_conn *c)
{
    struct tcpmsg_frame f;
    if (tcpmsg_conn_send(c, "ping", 4, LONG_WAIT) != 0)
        return false;
    int r = tcpmsg_conn_recv(c, &f, LONG_WAIT);
    ck_assert_msg(r == 0 || r == TCPMSG_EOF || r == -ECONNRESET, "%s", tcpmsg_errname(r));
    return r == 0;
}

static bool
closes_logged(void *arg)
{
    return atomic_load(&sh->closed_logged) >= *(int *)arg;
}

START_TEST(connections_per_client)
{
    const struct nt_model *m = &models[_i]; /* not ITERATIVE: it never holds two */
    struct tcpmsg_server_config cfg = {.max_conns_per_client = 2, .proxy_protocol = true};
    struct tcpmsg_server *s = start(m, &cfg);
    struct tcpmsg_conn *a1 = dial(s, "203.0.113.1"), *a2 = dial(s, "203.0.113.1");
    ck_assert(served(a1));
    ck_assert(served(a2));
    struct tcpmsg_conn *a3 = dial(s, "203.0.113.1");
    ck_assert_msg(!served(a3), "%s: a third connection of one client", m->name);
    tcpmsg_conn_close(a3, TCPMSG_NOWAIT);
    /* Another client (behind the same balancer, the same peer address) is not limited by
     * the first one's connections. */
    struct tcpmsg_conn *b1 = dial(s, "203.0.113.2"), *b2 = dial(s, "203.0.113.2");
    ck_assert(served(b1));
    ck_assert(served(b2));
    /* A connection that ends gives its place back. */
    ck_assert_int_eq(tcpmsg_conn_close(a1, LONG_WAIT), 0);
    int one = 1;
    ck_assert(nt_eventually(closes_logged, &one));
    struct tcpmsg_conn *a4 = dial(s, "203.0.113.1");
    ck_assert_msg(served(a4), "%s: the place of a connection that ended", m->name);
    tcpmsg_conn_close(a2, LONG_WAIT);
    tcpmsg_conn_close(a4, LONG_WAIT);
    tcpmsg_conn_close(b1, LONG_WAIT);
    tcpmsg_conn_close(b2, LONG_WAIT);
    struct tcpmsg_server_stats st;
    tcpmsg_server_stats(s, &st);
    nt_server_end(s);
    ck_assert_uint_eq(st.limited, 1);
    ck_assert_uint_ge(st.refused, 1);
    ck_assert_int_eq(atomic_load(&sh->limited_logged), 1);
}
END_TEST

START_TEST(new_connections_per_second)
{
    /* A burst of 3, then 1 per second: of 10 connections opened in a row, the first 3 are
     * served and the others only as the bucket refills (one per second that passed). */
    const struct nt_model *m = &models[_i];
    struct tcpmsg_server_config cfg = {.conn_rate_per_client = 1, .conn_burst_per_client = 3};
    struct tcpmsg_server *s = start(m, &cfg);
    int64_t t0 = tcpmsg_now_ms();
    int ok = 0, refused = 0;
    for (int i = 0; i < 10; i++) {
        struct tcpmsg_conn *c = dial(s, NULL);
        bool yes = served(c);
        ok += yes;
        refused += !yes;
        if (i < 3)
            ck_assert_msg(yes, "%s: connection %d of the burst", m->name, i);
        tcpmsg_conn_close(c, LONG_WAIT);
    }
    int64_t secs = (tcpmsg_now_ms() - t0) / 1000;
    ck_assert_msg(ok <= 3 + secs + 1, "%s: %d served in %lld s", m->name, ok, (long long)secs);
    if (secs < 6)
        ck_assert_int_gt(refused, 0);
    struct tcpmsg_server_stats st;
    tcpmsg_server_stats(s, &st);
    nt_server_end(s);
    ck_assert_uint_eq(st.limited, (uint64_t)refused);
}
END_TEST

START_TEST(configuration_errors)
{
    struct tcpmsg_server *s;
    struct tcpmsg_server_config bad[] = {
        {.host = "127.0.0.1", .max_conns_per_client = -1},
        {.host = "127.0.0.1", .conn_rate_per_client = -1},
        {.host = "127.0.0.1", .conn_burst_per_client = 5}, /* a burst without a rate */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_int_eq(tcpmsg_server_create(&s, &bad[i], &handler), -EINVAL);
}
END_TEST

int
main(void)
{
    tcpmsg_codec_init_length(&length4, NULL);
    nmodels = nt_models("test_limits", &models);
    Suite *su = suite_create("limits");
    TCase *t = tcase_create("limits");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    for (int i = 0; i < nmodels; i++)
        if (models[i].model != TCPMSG_MODEL_ITERATIVE) /* one connection at a time */
            tcase_add_loop_test(t, connections_per_client, i, i + 1);
    tcase_add_loop_test(t, new_connections_per_second, 0, nmodels);
    tcase_add_test(t, configuration_errors);
    suite_add_tcase(su, t);
    return tu_run(su);
}
