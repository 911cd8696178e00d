/* The server over TLS, under every model (the model loop of test_server): the handshake
 * completes before on_open, which reads what was negotiated; frames up to 16 MiB and
 * pipelines both ways; mutual TLS; a client that never says hello is closed by the
 * handshake deadline while others are served; plaintext is refused; the graceful stop ends
 * with close_notify; idle timeouts; sessions resume, across worker processes too; the
 * EVENT loop's outbound connections run TLS against every model. With the
 * test PKI of tests/tls/make_certs.sh (TCPMSG_TLS_CERTS). Exits 77 (a CTest skip) when the
 * library was built without TLS. */
#include "nettest.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define LONG_WAIT tcpmsg_deadline_in(60000)

static const struct nt_model *models;
static int nmodels;
static char certs[4096];
static struct tcpmsg_codec length4;

/* What handlers saw, in memory shared with forked workers. */
struct shared {
    atomic_int opened, closed, messages, refused_logged;
    atomic_int last_refusal;
    atomic_int open_done;              /* on_open saw a completed handshake */
    atomic_int open_version;
    char subject[256];                 /* the client certificate's subject, seen by on_open */
    char peer[TCPMSG_ADDR_STRLEN];     /* tcpmsg_conn_peer in on_open */
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

static const char *
pki(const char *name)
{
    static char buf[8][4200];
    static unsigned slot;
    char *p = buf[slot++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", certs, name);
    return p;
}

static int
on_open(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    /* No ck_assert in a handler: a worker process forked while the test thread was inside
     * one inherits Check's mutex locked, and its first check would wait for ever. What the
     * handler saw goes to shared memory; the test thread checks it. */
    struct tcpmsg_tls_info i;
    if (tcpmsg_conn_tls_info(c, &i) != 0)
        i.done = false, i.version = -1;
    atomic_store(&sh->open_done, i.done);
    atomic_store(&sh->open_version, i.version);
    if (i.peer_subject[0])
        snprintf(sh->subject, sizeof sh->subject, "%s", i.peer_subject);
    struct tcpmsg_addr a;
    if (tcpmsg_conn_peer(c, &a) != 0 || tcpmsg_addr_format(&a, sh->peer, sizeof sh->peer) < 0)
        snprintf(sh->peer, sizeof sh->peer, "?");
    atomic_fetch_add(&sh->opened, 1);
    return 0;
}

static int
on_message(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    atomic_fetch_add(&sh->messages, 1);
    return tcpmsg_conn_send(c, m->data, m->len, TCPMSG_FOREVER);
}

static void
on_close(struct tcpmsg_conn *c, int reason, void *user)
{
    (void)c, (void)reason, (void)user;
    atomic_fetch_add(&sh->closed, 1);
}

static void
record(void *user, enum tcpmsg_server_event ev, int code, const char *tuple)
{
    (void)user, (void)tuple;
    if (ev == TCPMSG_EV_REFUSED) {
        atomic_store(&sh->last_refusal, code);
        atomic_fetch_add(&sh->refused_logged, 1);
    }
}

static const struct tcpmsg_handler echo = {.on_open = on_open, .on_message = on_message, .on_close = on_close};

/* The server of a test: certificate "server", the model's settings, cfg's others. */
static struct tcpmsg_server *
start(const struct nt_model *m, struct tcpmsg_server_config *cfg, struct tcpmsg_tls_config *tls)
{
    tls->cert.cert_file = pki("server.pem");
    tls->cert.key_file = pki("server.key");
    tls->ktls = tls->ktls || nt_ktls();
    cfg->host = "127.0.0.1";
    cfg->model = m->model;
    cfg->pool_threads = m->pool_threads;
    if (!cfg->workers)
        cfg->workers = m->workers;
    cfg->tls = tls;
    cfg->log = record;
    struct tcpmsg_server *s;
    int r = tcpmsg_server_create(&s, cfg, &echo);
    ck_assert_msg(r == 0, "create: %s", tcpmsg_errname(r));
    ck_assert_int_eq(tcpmsg_server_start(s), 0);
    return s;
}

static void
finish(struct tcpmsg_server *s)
{
    tcpmsg_server_stop(s);
    ck_assert_int_eq(tcpmsg_server_wait(s), 0);
    tcpmsg_server_destroy(s);
    errno = 0;
    ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1); /* no child left behind */
}

static struct tcpmsg_tls_ctx *
client_ctx(bool with_cert)
{
    struct tcpmsg_tls_config c = {.ca_file = pki("ca.pem")};
    if (with_cert) {
        c.cert.cert_file = pki("client.pem");
        c.cert.key_file = pki("client.key");
    }
    struct tcpmsg_tls_ctx *ctx;
    ck_assert_int_eq(nt_tls_ctx_create(&ctx, TCPMSG_TLS_CLIENT, &c, NULL, 0), 0);
    return ctx;
}

static struct tcpmsg_conn *
tls_client(struct tcpmsg_server *s, struct tcpmsg_tls_ctx *ctx,
           const struct tcpmsg_tls_session *sess, struct tcpmsg_tls_info *info)
{
    struct tcpmsg_conn *c;
    struct tcpmsg_tls_params p = {.ctx = ctx, .session = sess, .info = info};
    int r = tcpmsg_conn_connect_tls(&c, "127.0.0.1", nt_service(tcpmsg_server_port(s)), &length4,
                                    NULL, &p, LONG_WAIT);
    ck_assert_msg(r == 0, "connect_tls: %s (%s)", tcpmsg_errname(r), info ? info->detail : "");
    return c;
}

static void
exchange(struct tcpmsg_conn *c, const void *msg, size_t len)
{
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_send(c, msg, len, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    ck_assert_uint_eq(f.len, len);
    ck_assert(len == 0 || memcmp(f.data, msg, len) == 0);
}

static bool
refusals_at_least(void *arg)
{
    return atomic_load(&sh->refused_logged) >= *(int *)arg;
}

/* ---- the suite ------------------------------------------------------------------------ */

START_TEST(echo_over_tls)
{
    const struct nt_model *m = &models[_i];
    struct tcpmsg_tls_config tls = {0};
    struct tcpmsg_server_config cfg = {0};
    struct tcpmsg_server *s = start(m, &cfg, &tls);
    struct tcpmsg_tls_ctx *cctx = client_ctx(false);
    struct tcpmsg_conn *c = tls_client(s, cctx, NULL, NULL);
    exchange(c, "hello", 5);
    ck_assert_int_eq(atomic_load(&sh->open_done), 1); /* the handshake came before on_open */
    ck_assert_int_eq(atomic_load(&sh->open_version), 13);
    size_t big = 16 * 1024 * 1024;
    uint8_t *m16 = malloc(big);
    nt_fill(m16, big, 1);
    exchange(c, m16, big);
    free(m16);
    /* A pipeline of 1000 frames, sent before any reply is read. */
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(tcpmsg_conn_send(c, &i, sizeof i, LONG_WAIT), 0);
    for (int i = 0; i < 1000; i++) {
        struct tcpmsg_frame f;
        ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
        ck_assert_int_eq(memcmp(f.data, &i, sizeof i), 0);
    }
    ck_assert_int_eq(tcpmsg_conn_close(c, LONG_WAIT), 0);
    finish(s);
    ck_assert_int_eq(atomic_load(&sh->opened), 1);
    ck_assert_int_eq(atomic_load(&sh->closed), 1);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

START_TEST(a_proxy_header_comes_before_the_handshake)
{
    /* HAProxy's send-proxy-v2 in front of a TLS backend: the header, then the client's own
     * TLS bytes, which the server's handshake must find untouched. */
    const struct nt_model *m = &models[_i];
    struct tcpmsg_tls_config tls = {0};
    struct tcpmsg_server_config cfg = {.proxy_protocol = true};
    struct tcpmsg_server *s = start(m, &cfg, &tls);
    struct tcpmsg_tls_ctx *cctx = client_ctx(false);
    int fd = tcpmsg_sock_connect("127.0.0.1", nt_service(tcpmsg_server_port(s)), NULL, LONG_WAIT);
    ck_assert_int_ge(fd, 0);
    struct tcpmsg_proxy_info pi;
    memset(&pi, 0, sizeof pi);
    ck_assert_int_eq(tcpmsg_addr_parse("198.51.100.77:4433", &pi.src), 0);
    ck_assert_int_eq(tcpmsg_addr_parse("192.0.2.1:443", &pi.dst), 0);
    uint8_t hdr[TCPMSG_PROXY_MAX];
    int n = tcpmsg_proxy_format(hdr, sizeof hdr, &pi);
    ck_assert_int_gt(n, 0);
    ck_assert(nt_send_all(fd, hdr, (size_t)n));
    struct tcpmsg_conn *c;
    ck_assert_int_eq(tcpmsg_conn_open(&c, fd, &length4, NULL), 0);
    struct tcpmsg_tls_params p = {.ctx = cctx, .name = "localhost"};
    int r = tcpmsg_conn_start_tls(c, &p, LONG_WAIT);
    ck_assert_msg(r == 0, "%s: handshake after the header: %s", m->name, tcpmsg_errname(r));
    exchange(c, "behind a balancer", 17);
    ck_assert_int_eq(atomic_load(&sh->opened), 1); /* written after sh->peer */
    ck_assert_str_eq(sh->peer, "198.51.100.77:4433");
    ck_assert_int_eq(atomic_load(&sh->open_done), 1);
    ck_assert_int_eq(tcpmsg_conn_close(c, LONG_WAIT), 0);
    /* Without the header, the first TLS byte is not one: refused, never handshaken. */
    int before = atomic_load(&sh->refused_logged);
    struct tcpmsg_tls_params p2 = {.ctx = cctx};
    r = tcpmsg_conn_connect_tls(&c, "127.0.0.1", nt_service(tcpmsg_server_port(s)), &length4,
                                NULL, &p2, LONG_WAIT);
    ck_assert_int_ne(r, 0);
    int want = before + 1;
    ck_assert(nt_eventually(refusals_at_least, &want));
    ck_assert_int_eq(atomic_load(&sh->last_refusal), TCPMSG_EPROXY);
    finish(s);
    ck_assert_int_eq(atomic_load(&sh->opened), 1);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

START_TEST(mutual_tls_identity_in_on_open)
{
    const struct nt_model *m = &models[_i];
    struct tcpmsg_tls_config tls = {.ca_file = pki("ca.pem"), .verify = TCPMSG_TLS_VERIFY_REQUIRED};
    struct tcpmsg_server_config cfg = {0};
    struct tcpmsg_server *s = start(m, &cfg, &tls);
    struct tcpmsg_tls_ctx *with = client_ctx(true), *without = client_ctx(false);
    struct tcpmsg_conn *c = tls_client(s, with, NULL, NULL);
    exchange(c, "me", 2);
    ck_assert_ptr_nonnull(strstr(sh->subject, "CN=client1"));
    tcpmsg_conn_close(c, LONG_WAIT);
    /* Without a certificate: refused before on_open, the reason logged. Under TLS 1.3 the
     * client's side of the handshake completes first; the refusal comes on its first read. */
    struct tcpmsg_tls_params p = {.ctx = without};
    int r = tcpmsg_conn_connect_tls(&c, "127.0.0.1", nt_service(tcpmsg_server_port(s)),
                                    &length4, NULL, &p, LONG_WAIT);
    if (r == 0) {
        struct tcpmsg_frame f;
        tcpmsg_conn_send(c, "x", 1, LONG_WAIT);
        r = tcpmsg_conn_recv(c, &f, LONG_WAIT);
        tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    }
    ck_assert_msg(r == TCPMSG_ETLSALERT, "client: %s", tcpmsg_errname(r));
    int want = 1;
    ck_assert(nt_eventually(refusals_at_least, &want));
    ck_assert_int_eq(atomic_load(&sh->last_refusal), TCPMSG_ECERTMISSING);
    finish(s);
    ck_assert_int_eq(atomic_load(&sh->opened), 1);
    tcpmsg_tls_ctx_destroy(with);
    tcpmsg_tls_ctx_destroy(without);
}
END_TEST

START_TEST(silent_and_plaintext_clients_are_refused)
{
    /* A client that connects and says nothing is closed by the handshake deadline; a client
     * speaking plaintext is refused at once; a TLS client is served meanwhile. */
    const struct nt_model *m = &models[_i];
    struct tcpmsg_tls_config tls = {0};
    struct tcpmsg_server_config cfg = {.handshake_timeout_ms = 300};
    struct tcpmsg_server *s = start(m, &cfg, &tls);
    struct tcpmsg_tls_ctx *cctx = client_ctx(false);
    int silent = tcpmsg_sock_connect("127.0.0.1", nt_service(tcpmsg_server_port(s)), NULL,
                                     LONG_WAIT);
    ck_assert_int_ge(silent, 0);
    long got = nt_drain(silent); /* the server ends it: no hang */
    ck_assert_msg(got == 0 || got == -ECONNRESET, "silent client: %ld", got);
    close(silent);
    int want = 1;
    ck_assert(nt_eventually(refusals_at_least, &want));
    ck_assert_int_eq(atomic_load(&sh->last_refusal), -ETIMEDOUT);

    int plain = tcpmsg_sock_connect("127.0.0.1", nt_service(tcpmsg_server_port(s)), NULL,
                                    LONG_WAIT);
    ck_assert(nt_send_all(plain, "\0\0\0\5hello", 9));
    got = nt_drain(plain);
    ck_assert_msg(got >= 0 || got == -ECONNRESET, "plain client: %ld", got);
    close(plain);
    want = 2;
    ck_assert(nt_eventually(refusals_at_least, &want));
    ck_assert_int_eq(atomic_load(&sh->last_refusal), TCPMSG_ETLS);

    struct tcpmsg_conn *c = tls_client(s, cctx, NULL, NULL);
    exchange(c, "still served", 12);
    tcpmsg_conn_close(c, LONG_WAIT);
    finish(s);
    ck_assert_int_eq(atomic_load(&sh->opened), 1); /* on_open only for the real client */
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

static bool
handled(void *arg)
{
    return atomic_load(&sh->messages) >= *(int *)arg;
}

START_TEST(stop_over_tls_answers_and_ends_with_close_notify)
{
    const struct nt_model *m = &models[_i];
    struct tcpmsg_tls_config tls = {0};
    struct tcpmsg_server_config cfg = {0};
    struct tcpmsg_server *s = start(m, &cfg, &tls);
    struct tcpmsg_tls_ctx *cctx = client_ctx(false);
    struct tcpmsg_conn *c = tls_client(s, cctx, NULL, NULL);
    exchange(c, "served", 6);
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(tcpmsg_conn_send(c, &i, sizeof i, LONG_WAIT), 0);
    int want = 51;
    ck_assert(nt_eventually(handled, &want));
    tcpmsg_server_stop(s);
    for (int i = 0; i < 50; i++) {
        struct tcpmsg_frame f;
        ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
        ck_assert_int_eq(memcmp(f.data, &i, sizeof i), 0);
    }
    struct tcpmsg_frame f;
    int r = tcpmsg_conn_recv(c, &f, LONG_WAIT);
    ck_assert_msg(r == TCPMSG_EOF, "%s: the end was %s, not a close_notify", m->name,
                  tcpmsg_errname(r));
    tcpmsg_conn_close(c, LONG_WAIT);
    ck_assert_int_eq(tcpmsg_server_wait(s), 0);
    tcpmsg_server_destroy(s);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

START_TEST(idle_timeout_over_tls)
{
    const struct nt_model *m = &models[_i];
    struct tcpmsg_tls_config tls = {0};
    /* The idle deadline is the one that counts once the handshake is done, not the longer
     * handshake deadline armed before it (EVENT kept that one: the idle close came 10 s
     * late; with this one, the recv below would time out first). */
    struct tcpmsg_server_config cfg = {.idle_timeout_ms = 200, .handshake_timeout_ms = 120000};
    struct tcpmsg_server *s = start(m, &cfg, &tls);
    struct tcpmsg_tls_ctx *cctx = client_ctx(false);
    struct tcpmsg_conn *c = tls_client(s, cctx, NULL, NULL);
    exchange(c, "then silence", 12);
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), TCPMSG_EOF); /* with close_notify */
    tcpmsg_conn_close(c, LONG_WAIT);
    finish(s);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

START_TEST(sessions_resume_across_workers)
{
    /* The context is made before the models fork, so a session given by one worker (or
     * thread) resumes with any other. */
    const struct nt_model *m = &models[_i];
    struct tcpmsg_tls_config tls = {0};
    struct tcpmsg_server_config cfg = {0};
    struct tcpmsg_server *s = start(m, &cfg, &tls);
    struct tcpmsg_tls_ctx *cctx = client_ctx(false);
    struct tcpmsg_tls_info info;
    struct tcpmsg_conn *c = tls_client(s, cctx, NULL, &info);
    ck_assert(!info.resumed);
    exchange(c, "first", 5);
    struct tcpmsg_tls_session *sess;
    ck_assert_int_eq(tcpmsg_conn_tls_session(c, &sess), 0);
    tcpmsg_conn_close(c, LONG_WAIT);
    for (int i = 0; i < 4; i++) {
        c = tls_client(s, cctx, sess, &info);
        ck_assert_msg(info.resumed, "%s: connection %d not resumed", m->name, i + 2);
        exchange(c, "again", 5);
        /* TLS 1.3 tickets are used once: the next connection resumes with this one's. */
        tcpmsg_tls_session_destroy(sess);
        ck_assert_int_eq(tcpmsg_conn_tls_session(c, &sess), 0);
        tcpmsg_conn_close(c, LONG_WAIT);
    }
    tcpmsg_tls_session_destroy(sess);
    finish(s);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

/* ---- the loop's outbound connections over TLS ---------------------------------------- */

/* The dialling side: a pure client (no listener), one worker, whose on_worker_start dials
 * the server under test with the right name (it must echo), then with a name the
 * certificate does not carry (the attempt must fail with that reason, before any on_open). */
static struct {
    char port[16];
    struct tcpmsg_tls_ctx *ctx;
    atomic_int echoed, downs, down_reason, opened_wrong;
    atomic_long down_retry;
    uint64_t good, bad;
} dl;

static void
dl_down(struct tcpmsg_worker *w, uint64_t id, int reason, int64_t retry_ms, void *arg)
{
    (void)w, (void)arg;
    if (id != dl.bad)
        return;
    atomic_store(&dl.down_reason, reason);
    atomic_store(&dl.down_retry, (long)retry_ms);
    atomic_fetch_add(&dl.downs, 1);
}

static void
dl_start(struct tcpmsg_worker *w, void *user)
{
    (void)user;
    struct tcpmsg_dial_opts o = {.tls = dl.ctx, .on_down = dl_down};
    int r = tcpmsg_worker_dial(w, "127.0.0.1", dl.port, &o, &dl.good);
    if (r != 0)
        atomic_store(&dl.down_reason, r); /* not TCPMSG_ECERTNAME: the test fails */
}

static int
dl_open(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    if (tcpmsg_conn_dial_id(c) == dl.bad)
        atomic_fetch_add(&dl.opened_wrong, 1);
    struct tcpmsg_tls_info i;
    if (tcpmsg_conn_tls_info(c, &i) != 0 || !i.done)
        return -EPROTO; /* not encrypted, or on_open before the handshake: no echo */
    return tcpmsg_conn_send(c, "over tls", 8, TCPMSG_FOREVER);
}

static int
dl_message(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    if (m->len != 8 || memcmp(m->data, "over tls", 8) != 0)
        return -EPROTO;
    atomic_fetch_add(&dl.echoed, 1);
    /* Then the wrong name, once this connection is gone (an ITERATIVE server serves one
     * connection at a time). */
    struct tcpmsg_dial_opts o = {.tls = dl.ctx, .on_down = dl_down,
                                 .tls_name = "not-the-server.example"};
    int r = tcpmsg_worker_dial(tcpmsg_conn_worker(c), "127.0.0.1", dl.port, &o, &dl.bad);
    if (r != 0)
        atomic_store(&dl.down_reason, r);
    return TCPMSG_EOF;
}

static bool
dl_done(void *arg)
{
    (void)arg;
    return atomic_load(&dl.echoed) >= 1 && atomic_load(&dl.downs) >= 1;
}

START_TEST(the_loop_dials_out_over_tls)
{
    const struct nt_model *m = &models[_i];
    struct tcpmsg_tls_config tls = {0};
    struct tcpmsg_server_config cfg = {0};
    struct tcpmsg_server *s = start(m, &cfg, &tls);
    memset(&dl, 0, sizeof dl);
    snprintf(dl.port, sizeof dl.port, "%d", tcpmsg_server_port(s));
    dl.ctx = client_ctx(false);
    struct tcpmsg_handler h = {.on_worker_start = dl_start, .on_open = dl_open,
                               .on_message = dl_message};
    struct tcpmsg_server_config dc = {.no_listener = true, .workers = 1};
    struct tcpmsg_server *d = nt_server(&dc, &h);
    ck_assert_msg(nt_eventually(dl_done, NULL), "echoed %d, %d down: %s", atomic_load(&dl.echoed),
                  atomic_load(&dl.downs), tcpmsg_errname(atomic_load(&dl.down_reason)));
    ck_assert_int_eq(atomic_load(&dl.echoed), 1);
    ck_assert_int_eq(atomic_load(&dl.down_reason), TCPMSG_ECERTNAME);
    ck_assert_int_eq(atomic_load(&dl.down_retry), -1); /* no reconnect asked */
    ck_assert_int_eq(atomic_load(&dl.opened_wrong), 0);
    nt_server_end(d);
    tcpmsg_tls_ctx_destroy(dl.ctx);
    finish(s);
}
END_TEST

int
main(void)
{
    if (!tcpmsg_tls_supported()) {
        fprintf(stderr, "test_tls_server: skipped: this libtcpmsg was built without TLS\n");
        return 77;
    }
    const char *dir = getenv("TCPMSG_TLS_CERTS");
    if (!dir || !*dir) {
        fprintf(stderr, "test_tls_server: TCPMSG_TLS_CERTS is not set\n");
        return 1;
    }
    snprintf(certs, sizeof certs, "%s", dir);
    tcpmsg_codec_init_length(&length4, NULL);
    nmodels = nt_models("test_tls_server", &models);
    Suite *s = suite_create("tls_server");
    TCase *t = tcase_create("tls_server");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_loop_test(t, echo_over_tls, 0, nmodels);
    tcase_add_loop_test(t, mutual_tls_identity_in_on_open, 0, nmodels);
    tcase_add_loop_test(t, a_proxy_header_comes_before_the_handshake, 0, nmodels);
    tcase_add_loop_test(t, silent_and_plaintext_clients_are_refused, 0, nmodels);
    tcase_add_loop_test(t, stop_over_tls_answers_and_ends_with_close_notify, 0, nmodels);
    tcase_add_loop_test(t, idle_timeout_over_tls, 0, nmodels);
    tcase_add_loop_test(t, sessions_resume_across_workers, 0, nmodels);
    tcase_add_loop_test(t, the_loop_dials_out_over_tls, 0, nmodels);
    suite_add_tcase(s, t);
    return tu_run(s);
}
