/* tcpmsg/tls.h under tcpmsg/conn.h: contexts, handshakes, frames over TLS in every shape
 * that broke other event-loop TLS layers (many frames in a record, a frame over many
 * records, records a byte at a time), every verification failure with its own code on the
 * side that detects it, truncation, resumption. Over real loopback sockets, with the test
 * PKI made by tests/tls/make_certs.sh (TCPMSG_TLS_CERTS names its directory). Exits 77
 * (a CTest skip) when the library was built without TLS. */
#include "nettest.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LONG_WAIT tcpmsg_deadline_in(60000)

static char certs[4096];
static struct tcpmsg_codec length4;

static const char *
pki(const char *name)
{
    static char buf[8][4200];
    static unsigned slot;
    char *p = buf[slot++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", certs, name);
    return p;
}

/* A server context with certificate `name` (server, expired, other, rogue...). */
static struct tcpmsg_tls_ctx *
server_ctx(const char *name, const struct tcpmsg_tls_config *extra)
{
    struct tcpmsg_tls_config c = extra ? *extra : (struct tcpmsg_tls_config){0};
    char cert[64], key[64];
    snprintf(cert, sizeof cert, "%s.pem", name);
    snprintf(key, sizeof key, "%s.key", name);
    c.cert.cert_file = pki(cert);
    c.cert.key_file = pki(key);
    struct tcpmsg_tls_ctx *ctx;
    char why[256];
    int r = nt_tls_ctx_create(&ctx, TCPMSG_TLS_SERVER, &c, why, sizeof why);
    ck_assert_msg(r == 0, "server ctx %s: %s (%s)", name, tcpmsg_errname(r), why);
    return ctx;
}

/* A client context trusting the test CA (unless extra says otherwise). */
static struct tcpmsg_tls_ctx *
client_ctx(const struct tcpmsg_tls_config *extra)
{
    struct tcpmsg_tls_config c = extra ? *extra : (struct tcpmsg_tls_config){0};
    if (!c.ca_file && !c.ca_pem)
        c.ca_file = pki("ca.pem");
    struct tcpmsg_tls_ctx *ctx;
    char why[256];
    int r = nt_tls_ctx_create(&ctx, TCPMSG_TLS_CLIENT, &c, why, sizeof why);
    ck_assert_msg(r == 0, "client ctx: %s (%s)", tcpmsg_errname(r), why);
    return ctx;
}

/* The server end of a test: its handshake (and the rest of its part) in a thread. */
struct server_end {
    int fd;
    struct tcpmsg_tls_ctx *ctx;
    struct tcpmsg_conn_opts opts;
    int result; /* the handshake's */
    struct tcpmsg_tls_info info;
    struct tcpmsg_conn *c;
    void (*then)(struct server_end *); /* after a successful handshake (optional) */
    struct nt_thread t;
};

static void *
server_main(void *arg)
{
    struct server_end *e = arg;
    ck_assert_int_eq(tcpmsg_conn_open(&e->c, e->fd, &length4, &e->opts), 0);
    struct tcpmsg_tls_params p = {.ctx = e->ctx, .info = &e->info};
    e->result = tcpmsg_conn_start_tls(e->c, &p, LONG_WAIT);
    if (e->result == 0 && e->then)
        e->then(e);
    return NULL;
}

/* A loopback pair with TLS on both ends: *client is the client's connection after its
 * handshake returned `*cres` (the server's result is in e after server_join). */
static struct tcpmsg_conn *
tls_pair(struct server_end *e, struct tcpmsg_tls_ctx *cctx, const char *name,
         const struct tcpmsg_tls_session *sess, const struct tcpmsg_conn_opts *copts, int *cres,
         struct tcpmsg_tls_info *cinfo)
{
    int cfd;
    nt_pair("127.0.0.1", &cfd, &e->fd);
    nt_start(&e->t, server_main, e);
    struct tcpmsg_conn *c;
    ck_assert_int_eq(tcpmsg_conn_open(&c, cfd, &length4, copts), 0);
    struct tcpmsg_tls_params p = {.ctx = cctx, .name = name, .session = sess, .info = cinfo};
    *cres = tcpmsg_conn_start_tls(c, &p, LONG_WAIT);
    return c;
}

static void
server_join(struct server_end *e)
{
    nt_join(&e->t);
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

/* The server's part of most tests: echo every frame until the end, then close. */
static void
echo_until_end(struct server_end *e)
{
    for (;;) {
        struct tcpmsg_frame f;
        int r = tcpmsg_conn_recv(e->c, &f, LONG_WAIT);
        if (r < 0) {
            e->result = r == TCPMSG_EOF ? 0 : r;
            break;
        }
        ck_assert_int_eq(tcpmsg_conn_send(e->c, f.data, f.len, LONG_WAIT), 0);
    }
    tcpmsg_conn_close(e->c, LONG_WAIT);
    e->c = NULL;
}

/* ---- contexts --------------------------------------------------------------------------- */

START_TEST(context_errors)
{
    struct tcpmsg_tls_ctx *ctx = (struct tcpmsg_tls_ctx *)1;
    char why[256];
    ck_assert_int_eq(nt_tls_ctx_create(&ctx, TCPMSG_TLS_SERVER, NULL, why, sizeof why),
                     -EINVAL);
    ck_assert_ptr_null(ctx);
    ck_assert_ptr_nonnull(strstr(why, "certificate"));
    struct tcpmsg_tls_config c = {.cert = {.cert_file = pki("server.pem")}};
    ck_assert_int_eq(nt_tls_ctx_create(&ctx, TCPMSG_TLS_CLIENT, &c, why, sizeof why), -EINVAL);
    c.cert.key_file = pki("no-such.key");
    ck_assert_int_eq(nt_tls_ctx_create(&ctx, TCPMSG_TLS_SERVER, &c, why, sizeof why), -ENOENT);
    ck_assert_ptr_nonnull(strstr(why, "private key"));
    c.cert.key_file = pki("client.key"); /* another certificate's key */
    ck_assert_int_eq(nt_tls_ctx_create(&ctx, TCPMSG_TLS_SERVER, &c, why, sizeof why),
                     TCPMSG_ETLS);
    ck_assert_ptr_nonnull(strstr(why, "does not match"));
    c.cert.key_file = pki("server.key");
    c.min_version = TCPMSG_TLS_1_3;
    c.max_version = TCPMSG_TLS_1_2;
    ck_assert_int_eq(nt_tls_ctx_create(&ctx, TCPMSG_TLS_SERVER, &c, why, sizeof why), -EINVAL);
    c.min_version = 11;
    c.max_version = 0;
    ck_assert_int_eq(nt_tls_ctx_create(&ctx, TCPMSG_TLS_SERVER, &c, NULL, 0), -EINVAL);
    c.min_version = 0;
    c.alpn = "a,,b";
    ck_assert_int_eq(nt_tls_ctx_create(&ctx, TCPMSG_TLS_SERVER, &c, why, sizeof why), -EINVAL);
    c.alpn = NULL;
    c.ciphers = "NO-SUCH-CIPHER";
    ck_assert_int_eq(nt_tls_ctx_create(&ctx, TCPMSG_TLS_SERVER, &c, why, sizeof why),
                     TCPMSG_ETLS);
    c.ciphers = NULL;
    c.verify = TCPMSG_TLS_VERIFY_REQUIRED; /* client certificates, but no CA to check them */
    ck_assert_int_eq(nt_tls_ctx_create(&ctx, TCPMSG_TLS_SERVER, &c, why, sizeof why), -EINVAL);
    struct tcpmsg_tls_config cl = {.verify = TCPMSG_TLS_VERIFY_OPTIONAL};
    ck_assert_int_eq(nt_tls_ctx_create(&ctx, TCPMSG_TLS_CLIENT, &cl, why, sizeof why), -EINVAL);
    ck_assert_int_eq(nt_tls_ctx_create(NULL, TCPMSG_TLS_CLIENT, &cl, why, sizeof why), -EINVAL);
    /* PEM text in memory works like the files. */
    char *pem[2] = {NULL, NULL};
    const char *files[2] = {pki("server.pem"), pki("server.key")};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(files[i], "r");
        ck_assert_ptr_nonnull(f);
        pem[i] = calloc(1, 8192);
        ck_assert_uint_gt(fread(pem[i], 1, 8191, f), 0);
        fclose(f);
    }
    struct tcpmsg_tls_config m = {.cert = {.cert_pem = pem[0], .key_pem = pem[1]}};
    ck_assert_int_eq(nt_tls_ctx_create(&ctx, TCPMSG_TLS_SERVER, &m, why, sizeof why), 0);
    ck_assert_str_eq(why, "");
    ck_assert_int_eq(tcpmsg_tls_ctx_role(ctx), TCPMSG_TLS_SERVER);
    ck_assert_ptr_eq(tcpmsg_tls_ctx_ref(ctx), ctx);
    tcpmsg_tls_ctx_destroy(ctx);
    tcpmsg_tls_ctx_destroy(ctx);
    tcpmsg_tls_ctx_destroy(NULL);
    ck_assert_ptr_null(tcpmsg_tls_ctx_ref(NULL));
    ck_assert_int_eq(tcpmsg_tls_ctx_role(NULL), -EINVAL);
    free(pem[0]);
    free(pem[1]);
}
END_TEST

/* ---- the handshake and what it negotiated ------------------------------------------------ */

START_TEST(handshake_and_frames_both_ways)
{
    struct tcpmsg_tls_config sc = {.alpn = "tcpmsg/1,h2"};
    struct tcpmsg_tls_config cc = {.alpn = "h2,tcpmsg/1"};
    struct server_end e = {.ctx = server_ctx("server", &sc), .then = echo_until_end};
    struct tcpmsg_tls_ctx *cctx = client_ctx(&cc);
    int r;
    struct tcpmsg_tls_info ci;
    struct tcpmsg_conn *c = tls_pair(&e, cctx, "localhost", NULL, NULL, &r, &ci);
    ck_assert_msg(r == 0, "client handshake: %s (%s)", tcpmsg_errname(r), ci.detail);
    ck_assert(ci.done);
    ck_assert_int_eq(ci.version, 13);
    ck_assert_str_eq(ci.alpn, "tcpmsg/1"); /* the server's preference wins */
    ck_assert(ci.peer_verified);
    ck_assert_ptr_nonnull(strstr(ci.peer_subject, "CN=localhost"));
    ck_assert_uint_gt(strlen(ci.cipher), 0);
    for (size_t len = 0; len < 70000; len = len * 3 + 1) {
        uint8_t *m = malloc(len + 1);
        nt_fill(m, len, (uint32_t)len);
        exchange(c, m, len);
        free(m);
    }
    ck_assert_int_eq(tcpmsg_conn_close(c, LONG_WAIT), 0); /* close_notify both ways */
    server_join(&e);
    ck_assert_int_eq(e.result, 0);
    ck_assert(e.info.done);
    ck_assert_str_eq(e.info.sni, "localhost");
    ck_assert_str_eq(e.info.alpn, "tcpmsg/1");
    tcpmsg_tls_ctx_destroy(e.ctx);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

START_TEST(tls_1_2_and_ip_address_names)
{
    struct tcpmsg_tls_config v12 = {.max_version = TCPMSG_TLS_1_2};
    struct server_end e = {.ctx = server_ctx("server", NULL), .then = echo_until_end};
    struct tcpmsg_tls_ctx *cctx = client_ctx(&v12);
    int r;
    struct tcpmsg_tls_info ci;
    struct tcpmsg_conn *c = tls_pair(&e, cctx, "127.0.0.1", NULL, NULL, &r, &ci);
    ck_assert_msg(r == 0, "%s (%s)", tcpmsg_errname(r), ci.detail);
    ck_assert_int_eq(ci.version, 12);
    exchange(c, "over 1.2", 8);
    tcpmsg_conn_close(c, LONG_WAIT);
    server_join(&e);
    ck_assert_int_eq(e.result, 0);
    ck_assert_str_eq(e.info.sni, ""); /* an IP address is never sent as SNI */
    tcpmsg_tls_ctx_destroy(e.ctx);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

static void
read_client_subject(struct server_end *e)
{
    struct tcpmsg_tls_info i;
    ck_assert_int_eq(tcpmsg_conn_tls_info(e->c, &i), 0);
    ck_assert(i.peer_verified);
    ck_assert_ptr_nonnull(strstr(i.peer_subject, "CN=client1"));
    echo_until_end(e);
}

START_TEST(mutual_tls)
{
    struct tcpmsg_tls_config req = {.ca_file = pki("ca.pem"), .verify = TCPMSG_TLS_VERIFY_REQUIRED};
    struct server_end e = {.ctx = server_ctx("server", &req), .then = read_client_subject};
    struct tcpmsg_tls_config cc = {.cert = {.cert_file = pki("client.pem"),
                                            .key_file = pki("client.key")}};
    struct tcpmsg_tls_ctx *cctx = client_ctx(&cc);
    int r;
    struct tcpmsg_tls_info ci;
    struct tcpmsg_conn *c = tls_pair(&e, cctx, "localhost", NULL, NULL, &r, &ci);
    ck_assert_msg(r == 0, "%s (%s)", tcpmsg_errname(r), ci.detail);
    exchange(c, "authenticated", 13);
    tcpmsg_conn_close(c, LONG_WAIT);
    server_join(&e);
    ck_assert_int_eq(e.result, 0);
    tcpmsg_tls_ctx_destroy(e.ctx);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

START_TEST(sni_chooses_the_certificate)
{
    struct tcpmsg_tls_cert second = {.cert_file = pki("second.pem"), .key_file = pki("second.key")};
    struct tcpmsg_tls_config sc = {.sni_certs = &second, .sni_count = 1};
    struct tcpmsg_tls_ctx *sctx = server_ctx("server", &sc);
    struct tcpmsg_tls_ctx *cctx = client_ctx(NULL);
    const char *names[] = {"second.example", "localhost"};
    for (int i = 0; i < 2; i++) {
        struct server_end e = {.ctx = sctx, .then = echo_until_end};
        int r;
        struct tcpmsg_tls_info ci;
        struct tcpmsg_conn *c = tls_pair(&e, cctx, names[i], NULL, NULL, &r, &ci);
        ck_assert_msg(r == 0, "%s: %s (%s)", names[i], tcpmsg_errname(r), ci.detail);
        char want[64];
        snprintf(want, sizeof want, "CN=%s", names[i]);
        ck_assert_ptr_nonnull(strstr(ci.peer_subject, want));
        exchange(c, names[i], strlen(names[i]));
        tcpmsg_conn_close(c, LONG_WAIT);
        server_join(&e);
        ck_assert_str_eq(e.info.sni, names[i]);
    }
    tcpmsg_tls_ctx_destroy(sctx);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

/* ---- verification failures: each with its code on the side that detects it ---------------- */

struct failure {
    const char *what;
    const char *server_cert;
    struct tcpmsg_tls_config server;
    struct tcpmsg_tls_config client;
    const char *name;
    int client_code; /* 0: any TLS error */
    int server_code;
};

static const struct failure failures[] = {
    {.what = "untrusted CA", .server_cert = "rogue", .name = "localhost",
     .client_code = TCPMSG_ECERTUNTRUSTED, .server_code = TCPMSG_ETLSALERT},
    {.what = "expired", .server_cert = "expired", .name = "localhost",
     .client_code = TCPMSG_ECERTEXPIRED, .server_code = TCPMSG_ETLSALERT},
    {.what = "wrong name", .server_cert = "other", .name = "localhost",
     .client_code = TCPMSG_ECERTNAME, .server_code = TCPMSG_ETLSALERT},
    {.what = "wrong IP", .server_cert = "second", .name = "127.0.0.1",
     .client_code = TCPMSG_ECERTNAME, .server_code = TCPMSG_ETLSALERT},
    {.what = "version", .server_cert = "server", .server = {.min_version = TCPMSG_TLS_1_3},
     .client = {.max_version = TCPMSG_TLS_1_2}, .name = "localhost",
     .client_code = TCPMSG_ETLSVERSION, .server_code = TCPMSG_ETLSVERSION},
    {.what = "no ALPN in common", .server_cert = "server", .server = {.alpn = "a"},
     .client = {.alpn = "b"}, .name = "localhost", .client_code = TCPMSG_ETLSALERT,
     .server_code = TCPMSG_ETLS},
};

START_TEST(verification_failures)
{
    const struct failure *k = &failures[_i];
    struct server_end e = {.ctx = server_ctx(k->server_cert, &k->server)};
    struct tcpmsg_tls_ctx *cctx = client_ctx(&k->client);
    int r;
    struct tcpmsg_tls_info ci;
    struct tcpmsg_conn *c = tls_pair(&e, cctx, k->name, NULL, NULL, &r, &ci);
    ck_assert_msg(r == k->client_code, "%s: client got %s, not %s (%s)", k->what,
                  tcpmsg_errname(r), tcpmsg_errname(k->client_code), ci.detail);
    ck_assert_uint_gt(strlen(ci.detail), 0);
    /* Sticky: the connection is unusable, and says so. */
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, TCPMSG_NOWAIT), r);
    ck_assert_int_eq(tcpmsg_conn_send(c, "x", 1, TCPMSG_NOWAIT), r);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    server_join(&e);
    ck_assert_msg(e.result == k->server_code, "%s: server got %s, not %s (%s)", k->what,
                  tcpmsg_errname(e.result), tcpmsg_errname(k->server_code), e.info.detail);
    tcpmsg_conn_close(e.c, TCPMSG_NOWAIT);
    tcpmsg_tls_ctx_destroy(e.ctx);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

START_TEST(client_certificate_missing_or_untrusted)
{
    struct tcpmsg_tls_config req = {.ca_file = pki("ca.pem"), .verify = TCPMSG_TLS_VERIFY_REQUIRED};
    struct tcpmsg_tls_ctx *sctx = server_ctx("server", &req);
    /* No certificate: the server detects it (TCPMSG_ECERTMISSING); under TLS 1.3 the client's
     * handshake has already completed, so it hears the refusal on its first read. */
    struct tcpmsg_tls_ctx *none = client_ctx(NULL);
    struct server_end e = {.ctx = sctx};
    int r;
    struct tcpmsg_conn *c = tls_pair(&e, none, "localhost", NULL, NULL, &r, NULL);
    server_join(&e);
    ck_assert_msg(e.result == TCPMSG_ECERTMISSING, "server: %s", tcpmsg_errname(e.result));
    tcpmsg_conn_close(e.c, TCPMSG_NOWAIT);
    struct tcpmsg_frame f;
    if (r == 0)
        r = tcpmsg_conn_recv(c, &f, LONG_WAIT);
    ck_assert_msg(r == TCPMSG_ETLSALERT, "client: %s", tcpmsg_errname(r));
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    /* A certificate from a CA the server does not trust. */
    struct tcpmsg_tls_config rogue = {.cert = {.cert_file = pki("rogue-client.pem"),
                                               .key_file = pki("rogue-client.key")}};
    struct tcpmsg_tls_ctx *mallory = client_ctx(&rogue);
    struct server_end e2 = {.ctx = sctx};
    c = tls_pair(&e2, mallory, "localhost", NULL, NULL, &r, NULL);
    server_join(&e2);
    ck_assert_msg(e2.result == TCPMSG_ECERTUNTRUSTED, "server: %s", tcpmsg_errname(e2.result));
    tcpmsg_conn_close(e2.c, TCPMSG_NOWAIT);
    if (r == 0)
        r = tcpmsg_conn_recv(c, &f, LONG_WAIT);
    ck_assert_msg(r == TCPMSG_ETLSALERT, "client: %s", tcpmsg_errname(r));
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    tcpmsg_tls_ctx_destroy(sctx);
    tcpmsg_tls_ctx_destroy(none);
    tcpmsg_tls_ctx_destroy(mallory);
}
END_TEST

START_TEST(insecure_and_unchecked_name_by_name_only)
{
    /* Verification is on unless turned off by name: VERIFY_NONE accepts the rogue server,
     * no_verify_name accepts a certificate for another name but still checks the chain. */
    struct tcpmsg_tls_ctx *rogue = server_ctx("rogue", NULL), *other = server_ctx("other", NULL);
    struct tcpmsg_tls_config insecure = {.verify = TCPMSG_TLS_VERIFY_NONE};
    struct tcpmsg_tls_config noname = {.no_verify_name = true};
    struct tcpmsg_tls_ctx *i = client_ctx(&insecure), *n = client_ctx(&noname);
    struct {
        struct tcpmsg_tls_ctx *s, *c;
        int want;
    } cases[] = {{rogue, i, 0}, {other, n, 0}, {rogue, n, TCPMSG_ECERTUNTRUSTED}};
    for (int k = 0; k < 3; k++) {
        struct server_end e = {.ctx = cases[k].s, .then = echo_until_end};
        int r;
        struct tcpmsg_conn *c = tls_pair(&e, cases[k].c, "localhost", NULL, NULL, &r, NULL);
        ck_assert_msg(r == cases[k].want, "case %d: %s", k, tcpmsg_errname(r));
        if (r == 0) {
            exchange(c, "hi", 2);
            tcpmsg_conn_close(c, LONG_WAIT);
        } else {
            tcpmsg_conn_close(c, TCPMSG_NOWAIT);
        }
        server_join(&e);
        if (e.c)
            tcpmsg_conn_close(e.c, TCPMSG_NOWAIT);
    }
    tcpmsg_tls_ctx_destroy(rogue);
    tcpmsg_tls_ctx_destroy(other);
    tcpmsg_tls_ctx_destroy(i);
    tcpmsg_tls_ctx_destroy(n);
}
END_TEST

/* ---- the stream: records against frames ---------------------------------------------------- */

/* A relay between the client and the server that forwards in pieces of `piece` bytes (1:
 * every TLS record arrives a byte at a time), both ways, until both ends close. */
struct relay {
    int a, b; /* a: the client's side, b: the server's */
    size_t piece;
    struct nt_thread t[2];
    int from[2], to[2];
};

struct pipe_arg {
    int from, to;
    size_t piece;
};

static void *
pump_bytes(void *arg)
{
    struct pipe_arg *p = arg;
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = recv(p->from, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        for (ssize_t at = 0; at < n;) {
            size_t k = (size_t)(n - at) < p->piece ? (size_t)(n - at) : p->piece;
            if (!nt_send_all(p->to, buf + at, k))
                goto out;
            at += (ssize_t)k;
        }
    }
out:
    shutdown(p->to, SHUT_WR);
    free(p);
    return NULL;
}

/* Client fd <-> relay <-> server fd: returns the client's fd and sets *server_fd. */
static int
relayed_pair(struct relay *r, size_t piece, int *server_fd)
{
    int c1, r1, r2, s2;
    nt_pair("127.0.0.1", &c1, &r1);
    nt_pair("127.0.0.1", &r2, &s2);
    r->a = r1;
    r->b = r2;
    r->piece = piece;
    struct pipe_arg *up = malloc(sizeof *up), *down = malloc(sizeof *down);
    *up = (struct pipe_arg){r1, r2, piece};
    *down = (struct pipe_arg){r2, r1, piece};
    nt_start(&r->t[0], pump_bytes, up);
    nt_start(&r->t[1], pump_bytes, down);
    *server_fd = s2;
    return c1;
}

static void
relay_join(struct relay *r)
{
    nt_join(&r->t[0]);
    nt_join(&r->t[1]);
    close(r->a);
    close(r->b);
}

static void
big_frames_echo(size_t piece)
{
    struct server_end e = {.ctx = server_ctx("server", NULL), .then = echo_until_end};
    struct tcpmsg_tls_ctx *cctx = client_ctx(NULL);
    struct relay rl;
    int cfd = relayed_pair(&rl, piece, &e.fd);
    nt_start(&e.t, server_main, &e);
    struct tcpmsg_conn *c;
    ck_assert_int_eq(tcpmsg_conn_open(&c, cfd, &length4, NULL), 0);
    struct tcpmsg_tls_params p = {.ctx = cctx, .name = "localhost"};
    ck_assert_int_eq(tcpmsg_conn_start_tls(c, &p, LONG_WAIT), 0);
    /* One frame over many records (100 KiB), many frames in one record (200 small ones
     * queued and flushed together), and a record of 16 KiB a byte at a time. */
    size_t sizes[] = {100000, 16384, 1, 0, 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t *m = malloc(sizes[i] + 1);
        nt_fill(m, sizes[i], (uint32_t)i);
        exchange(c, m, sizes[i]);
        free(m);
    }
    for (int i = 0; i < 200; i++)
        ck_assert_int_eq(tcpmsg_conn_send(c, &i, sizeof i, TCPMSG_NOWAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_flush(c, LONG_WAIT), 0);
    for (int i = 0; i < 200; i++) {
        struct tcpmsg_frame f;
        ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
        ck_assert_int_eq(memcmp(f.data, &i, sizeof i), 0);
    }
    ck_assert_int_eq(tcpmsg_conn_close(c, LONG_WAIT), 0);
    server_join(&e);
    ck_assert_int_eq(e.result, 0);
    relay_join(&rl);
    tcpmsg_tls_ctx_destroy(e.ctx);
    tcpmsg_tls_ctx_destroy(cctx);
}

START_TEST(records_a_byte_at_a_time)
{
    big_frames_echo(1);
}
END_TEST

START_TEST(records_in_odd_pieces)
{
    big_frames_echo(7);
}
END_TEST

START_TEST(sixteen_mib_frames_and_small_buffers)
{
    /* 16 MiB frames each way, through receive and send buffers much smaller than a frame:
     * the frame is encrypted in pieces and leaves as the socket takes it. */
    struct server_end e = {.ctx = server_ctx("server", NULL), .then = echo_until_end,
                           .opts = {.recv_buffer = 4096, .send_buffer = 4096}};
    struct tcpmsg_tls_ctx *cctx = client_ctx(NULL);
    int r;
    struct tcpmsg_conn_opts small = {.recv_buffer = 4096, .send_buffer = 4096};
    struct tcpmsg_conn *c = tls_pair(&e, cctx, "localhost", NULL, &small, &r, NULL);
    ck_assert_int_eq(r, 0);
    size_t len = 16 * 1024 * 1024;
    uint8_t *m = malloc(len);
    nt_fill(m, len, 16);
    exchange(c, m, len);
    exchange(c, m, len - 1);
    free(m);
    tcpmsg_conn_close(c, LONG_WAIT);
    server_join(&e);
    ck_assert_int_eq(e.result, 0);
    tcpmsg_tls_ctx_destroy(e.ctx);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

/* ---- ends ---------------------------------------------------------------------------------- */

static void
close_without_notify(struct server_end *e)
{
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(e->c, &f, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_send(e->c, f.data, f.len, LONG_WAIT), 0);
    /* The TCP end without TLS's: what a truncation attack looks like. */
    shutdown(tcpmsg_conn_fd(e->c), SHUT_WR);
    e->result = tcpmsg_conn_recv(e->c, &f, LONG_WAIT); /* the client's end */
    tcpmsg_conn_reset(e->c);
    e->c = NULL;
}

START_TEST(an_end_without_close_notify_is_a_truncation)
{
    struct server_end e = {.ctx = server_ctx("server", NULL), .then = close_without_notify};
    struct tcpmsg_tls_ctx *cctx = client_ctx(NULL);
    int r;
    struct tcpmsg_conn *c = tls_pair(&e, cctx, "localhost", NULL, NULL, &r, NULL);
    ck_assert_int_eq(r, 0);
    exchange(c, "last", 4);
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), TCPMSG_ETLSTRUNC);
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), TCPMSG_ETLSTRUNC); /* sticky */
    struct tcpmsg_tls_info i;
    ck_assert_int_eq(tcpmsg_conn_tls_info(c, &i), 0);
    ck_assert_uint_gt(strlen(i.detail), 0);
    /* The session failed (OpenSSL allows nothing after it): no close_notify can follow. */
    ck_assert_int_eq(tcpmsg_conn_shutdown(c, LONG_WAIT), TCPMSG_ETLSTRUNC);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    server_join(&e); /* and the server sees the client's end as a truncation too, or (where
                        OpenSSL wrote its alert to the socket before the end) as refused */
    ck_assert_msg(e.result == TCPMSG_ETLSTRUNC || e.result == -ECONNRESET ||
                      e.result == TCPMSG_ETLSALERT,
                  "server: %s", tcpmsg_errname(e.result));
    tcpmsg_tls_ctx_destroy(e.ctx);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

static void
half_close_then_reply(struct server_end *e)
{
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(e->c, &f, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_recv(e->c, &f, LONG_WAIT), TCPMSG_EOF); /* its half-close */
    ck_assert_int_eq(tcpmsg_conn_send(e->c, "after your end", 14, LONG_WAIT), 0);
    e->result = tcpmsg_conn_close(e->c, LONG_WAIT);
    e->c = NULL;
}

START_TEST(half_close_over_tls)
{
    struct server_end e = {.ctx = server_ctx("server", NULL), .then = half_close_then_reply};
    struct tcpmsg_tls_ctx *cctx = client_ctx(NULL);
    int r;
    struct tcpmsg_conn *c = tls_pair(&e, cctx, "localhost", NULL, NULL, &r, NULL);
    ck_assert_int_eq(r, 0);
    ck_assert_int_eq(tcpmsg_conn_send(c, "one", 3, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_shutdown(c, LONG_WAIT), 0); /* close_notify, then FIN */
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    ck_assert_uint_eq(f.len, 14);
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), TCPMSG_EOF);
    tcpmsg_conn_close(c, LONG_WAIT);
    server_join(&e);
    ck_assert_int_eq(e.result, 0);
    tcpmsg_tls_ctx_destroy(e.ctx);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

START_TEST(plaintext_against_tls)
{
    /* A plain client talking to a TLS server, and a TLS client to a plain peer: both fail
     * with TCPMSG_ETLS at once, neither hangs. */
    struct server_end e = {.ctx = server_ctx("server", NULL)};
    int cfd;
    nt_pair("127.0.0.1", &cfd, &e.fd);
    nt_start(&e.t, server_main, &e);
    ck_assert(nt_send_all(cfd, "\0\0\0\5hello", 9));
    server_join(&e);
    ck_assert_int_eq(e.result, TCPMSG_ETLS);
    tcpmsg_conn_close(e.c, TCPMSG_NOWAIT);
    close(cfd);

    int sfd;
    nt_pair("127.0.0.1", &cfd, &sfd);
    ck_assert(nt_send_all(sfd, "\0\0\0\5hello plain and then some", 29));
    struct tcpmsg_tls_ctx *cctx = client_ctx(NULL);
    struct tcpmsg_conn *c;
    ck_assert_int_eq(tcpmsg_conn_open(&c, cfd, &length4, NULL), 0);
    struct tcpmsg_tls_params p = {.ctx = cctx, .name = "localhost"};
    ck_assert_int_eq(tcpmsg_conn_start_tls(c, &p, LONG_WAIT), TCPMSG_ETLS);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    close(sfd);
    tcpmsg_tls_ctx_destroy(e.ctx);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

/* ---- sessions ------------------------------------------------------------------------------ */

START_TEST(sessions_resume)
{
    for (int v = 12; v <= 13; v++) {
        struct tcpmsg_tls_config cv = {.min_version = (enum tcpmsg_tls_version)v,
                                       .max_version = (enum tcpmsg_tls_version)v};
        struct tcpmsg_tls_ctx *sctx = server_ctx("server", NULL), *cctx = client_ctx(&cv);
        struct tcpmsg_tls_session *sess = NULL;
        for (int round = 0; round < 2; round++) {
            struct server_end e = {.ctx = sctx, .then = echo_until_end};
            int r;
            struct tcpmsg_tls_info ci;
            struct tcpmsg_conn *c = tls_pair(&e, cctx, "localhost", sess, NULL, &r, &ci);
            ck_assert_msg(r == 0, "%s", tcpmsg_errname(r));
            ck_assert_msg(ci.resumed == (round == 1), "TLS 1.%d round %d: resumed %d", v - 10,
                          round, ci.resumed);
            exchange(c, "ticket?", 7); /* TLS 1.3 tickets come with the first reply */
            if (round == 0)
                ck_assert_int_eq(tcpmsg_conn_tls_session(c, &sess), 0);
            tcpmsg_conn_close(c, LONG_WAIT);
            server_join(&e);
        }
        tcpmsg_tls_session_destroy(sess);
        tcpmsg_tls_ctx_destroy(sctx);
        tcpmsg_tls_ctx_destroy(cctx);
    }
    tcpmsg_tls_session_destroy(NULL);
}
END_TEST

struct acceptor {
    int lfd;
    struct server_end *e;
    struct nt_thread t;
};

static void *
accept_then_serve(void *arg)
{
    struct acceptor *a = arg;
    a->e->fd = tcpmsg_sock_accept(a->lfd, NULL, NULL, LONG_WAIT);
    ck_assert_int_ge(a->e->fd, 0);
    return server_main(a->e);
}

START_TEST(connect_tls_names_the_host)
{
    /* tcpmsg_conn_connect_tls: connect, then the handshake, with SNI and the name to check
     * taken from the host; a failure leaves nothing open (the fixture counts fds) and says
     * why in info. */
    int port;
    int lfd = nt_listen("127.0.0.1", &port);
    struct tcpmsg_tls_ctx *cctx = client_ctx(NULL);
    struct tcpmsg_tls_info info;
    struct tcpmsg_tls_params p = {.ctx = cctx, .info = &info};
    struct tcpmsg_conn *c;

    struct server_end e = {.ctx = server_ctx("server", NULL), .then = echo_until_end};
    struct acceptor a = {lfd, &e, {0}};
    nt_start(&a.t, accept_then_serve, &a);
    int r = tcpmsg_conn_connect_tls(&c, "localhost", nt_service(port), &length4, NULL, &p,
                                    LONG_WAIT);
    ck_assert_msg(r == 0, "%s (%s)", tcpmsg_errname(r), info.detail);
    ck_assert(info.done);
    exchange(c, "named", 5);
    tcpmsg_conn_close(c, LONG_WAIT);
    nt_join(&a.t);
    ck_assert_str_eq(e.info.sni, "localhost");

    struct server_end e2 = {.ctx = server_ctx("other", NULL)};
    struct acceptor a2 = {lfd, &e2, {0}};
    nt_start(&a2.t, accept_then_serve, &a2);
    c = (struct tcpmsg_conn *)1;
    r = tcpmsg_conn_connect_tls(&c, "localhost", nt_service(port), &length4, NULL, &p, LONG_WAIT);
    ck_assert_int_eq(r, TCPMSG_ECERTNAME);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(info.detail, "mismatch"));
    nt_join(&a2.t);
    tcpmsg_conn_close(e2.c, TCPMSG_NOWAIT);

    ck_assert_int_eq(tcpmsg_conn_connect_tls(&c, "localhost", nt_service(port), &length4, NULL,
                                             NULL, LONG_WAIT),
                     -EINVAL);
    close(lfd);
    tcpmsg_tls_ctx_destroy(e.ctx);
    tcpmsg_tls_ctx_destroy(e2.ctx);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

/* A file's text, for the PEM-in-memory cases (freed by the caller). */
static char *
slurp(const char *name)
{
    FILE *f = fopen(pki(name), "r");
    ck_assert_ptr_nonnull(f);
    char *text = calloc(1, 16384);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_gt(fread(text, 1, 16383, f), 0);
    fclose(f);
    return text;
}

START_TEST(pem_texts_and_policies)
{
    char why[256];
    struct tcpmsg_tls_ctx *ctx;
    char *leaf = slurp("server.pem"), *key = slurp("server.key"), *ca = slurp("ca.pem");
    char *other_key = slurp("client.key");
    char *chain = calloc(1, strlen(leaf) + strlen(ca) + 1);
    strcat(strcat(chain, leaf), ca);
    /* A chain and a key as PEM text on the server, the CA as PEM text on the client (and on
     * a server that asks for client certificates): a verified handshake. */
    struct tcpmsg_tls_config sc = {.cert = {.cert_pem = chain, .key_pem = key}, .ca_pem = ca,
                                   .verify = TCPMSG_TLS_VERIFY_OPTIONAL, .no_tickets = true};
    struct server_end e = {.then = echo_until_end};
    ck_assert_int_eq(nt_tls_ctx_create(&e.ctx, TCPMSG_TLS_SERVER, &sc, why, sizeof why), 0);
    struct tcpmsg_tls_config cc = {.ca_pem = ca};
    struct tcpmsg_tls_ctx *cctx = client_ctx(&cc);
    int r;
    struct tcpmsg_tls_info ci;
    struct tcpmsg_conn *c = tls_pair(&e, cctx, "localhost", NULL, NULL, &r, &ci);
    ck_assert_msg(r == 0, "%s (%s)", tcpmsg_errname(r), ci.detail);
    ck_assert(ci.peer_verified);
    exchange(c, "pem", 3);
    struct tcpmsg_tls_session *sess = (struct tcpmsg_tls_session *)1;
    ck_assert_int_eq(tcpmsg_conn_tls_session(c, &sess), -ENOENT); /* no_tickets: none */
    ck_assert_ptr_null(sess);
    tcpmsg_conn_close(c, LONG_WAIT);
    server_join(&e);
    ck_assert_int_eq(e.result, 0);
    tcpmsg_tls_ctx_destroy(e.ctx);

    /* What cannot load says why. */
    struct {
        struct tcpmsg_tls_config cfg;
        enum tcpmsg_tls_role role;
        int code;
        const char *why;
    } bad[] = {
        {{.cert = {.cert_pem = "garbage", .key_pem = key}}, TCPMSG_TLS_SERVER, TCPMSG_ETLS,
         "certificate PEM"},
        {{.cert = {.cert_pem = leaf, .key_pem = "garbage"}}, TCPMSG_TLS_SERVER, TCPMSG_ETLS,
         "private key PEM"},
        {{.cert = {.cert_pem = leaf, .key_pem = other_key}}, TCPMSG_TLS_SERVER, TCPMSG_ETLS,
         "does not match"},
        {{.cert = {.cert_file = pki("ca.cnf"), .key_file = pki("server.key")}},
         TCPMSG_TLS_SERVER, TCPMSG_ETLS, "certificate chain"},
        {{.ca_pem = "no certificate here"}, TCPMSG_TLS_CLIENT, TCPMSG_ETLS, "no certificate"},
        {{.ca_file = pki("no-such-ca.pem")}, TCPMSG_TLS_CLIENT, -ENOENT, "CA file"},
        {{.cert = {.cert_file = pki("server.pem"), .cert_pem = leaf, .key_pem = key}},
         TCPMSG_TLS_SERVER, -EINVAL, "not both"},
        {{.cert = {.cert_pem = leaf, .key_pem = key}}, (enum tcpmsg_tls_role)7, -EINVAL,
         "unknown role"},
        {{.cert = {.cert_pem = leaf, .key_pem = key}, .alpn = "a,"}, TCPMSG_TLS_SERVER,
         -EINVAL, "ALPN"},
        {{.cert = {.cert_pem = leaf, .key_pem = key}, .ciphersuites = "NO_SUCH_SUITE"},
         TCPMSG_TLS_SERVER, TCPMSG_ETLS, "cipher suites"},
        {{.cert = {.cert_pem = leaf, .key_pem = key},
          .sni_certs = &(struct tcpmsg_tls_cert){.cert_file = pki("second.pem")},
          .sni_count = 1},
         TCPMSG_TLS_SERVER, -EINVAL, "SNI certificate"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctx = (struct tcpmsg_tls_ctx *)1;
        r = nt_tls_ctx_create(&ctx, bad[i].role, &bad[i].cfg, why, sizeof why);
        ck_assert_msg(r == bad[i].code, "case %zu: %s", i, tcpmsg_errname(r));
        ck_assert_ptr_null(ctx);
        ck_assert_msg(strstr(why, bad[i].why), "case %zu: '%s'", i, why);
    }

    /* Misuse of a connection's TLS start: a session on a server end, a name check without
     * a name. Refused, nothing sent. */
    struct tcpmsg_tls_ctx *sctx = server_ctx("server", NULL);
    int a, b;
    nt_pair("127.0.0.1", &a, &b);
    struct tcpmsg_conn *ca_conn;
    ck_assert_int_eq(tcpmsg_conn_open(&ca_conn, a, &length4, NULL), 0);
    struct tcpmsg_tls_params p = {.ctx = sctx, .session = (struct tcpmsg_tls_session *)&p};
    ck_assert_int_eq(tcpmsg_conn_start_tls(ca_conn, &p, LONG_WAIT), -EINVAL);
    tcpmsg_conn_close(ca_conn, TCPMSG_NOWAIT);
    ck_assert_int_eq(tcpmsg_conn_open(&ca_conn, b, &length4, NULL), 0);
    struct tcpmsg_tls_params q = {.ctx = cctx}; /* verify the name, but which? */
    ck_assert_int_eq(tcpmsg_conn_start_tls(ca_conn, &q, LONG_WAIT), -EINVAL);
    tcpmsg_conn_close(ca_conn, TCPMSG_NOWAIT);
    tcpmsg_tls_ctx_destroy(sctx);
    tcpmsg_tls_ctx_destroy(cctx);
    free(leaf), free(key), free(ca), free(other_key), free(chain);
}
END_TEST

START_TEST(tls_calls_misused)
{
    struct tcpmsg_tls_ctx *cctx = client_ctx(NULL);
    struct tcpmsg_tls_params p = {.ctx = cctx, .name = "localhost"};
    struct tcpmsg_tls_info info;
    struct tcpmsg_tls_session *sess;
    struct tcpmsg_conn *c = (struct tcpmsg_conn *)1;
    ck_assert_int_eq(tcpmsg_conn_connect_tls(NULL, "h", "1", &length4, NULL, &p, 0), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_connect_tls(&c, NULL, "1", &length4, NULL, &p, 0), -EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(tcpmsg_conn_connect_tls(&c, "h", "1", &length4, NULL, NULL, 0), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_start_tls(NULL, &p, 0), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_handshake(NULL, 0), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_tls_info(NULL, NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_tls_info(NULL, &info), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_tls_session(NULL, NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_tls_session(NULL, &sess), -EINVAL);
    /* A plain connection: no TLS to ask about, a handshake that has nothing to do; once
     * plaintext is in flight, TLS cannot start on it; TLS twice is refused. */
    int a, b;
    nt_pair("127.0.0.1", &a, &b);
    struct tcpmsg_conn *x, *y;
    ck_assert_int_eq(tcpmsg_conn_open(&x, a, &length4, NULL), 0);
    ck_assert_int_eq(tcpmsg_conn_open(&y, b, &length4, NULL), 0);
    ck_assert_int_eq(tcpmsg_conn_handshake(x, 0), 0);
    ck_assert_int_eq(tcpmsg_conn_tls_info(x, &info), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_tls_session(x, &sess), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_send(y, "clear", 5, LONG_WAIT), 0);
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(x, &f, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_start_tls(x, &p, 0), -EBUSY); /* the frame is unread */
    tcpmsg_conn_close(x, TCPMSG_NOWAIT);
    tcpmsg_conn_close(y, TCPMSG_NOWAIT);
    /* A TLS connection cannot be detached from its session, nor start TLS again. */
    struct server_end e = {.ctx = server_ctx("server", NULL), .then = echo_until_end};
    int r;
    c = tls_pair(&e, cctx, "localhost", NULL, NULL, &r, NULL);
    ck_assert_int_eq(r, 0);
    ck_assert_int_eq(tcpmsg_conn_start_tls(c, &p, 0), -EINVAL);
    void *rest;
    size_t rest_len;
    ck_assert_int_eq(tcpmsg_conn_detach(c, &rest, &rest_len), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_handshake(c, LONG_WAIT), 0); /* already done */
    tcpmsg_conn_close(c, LONG_WAIT);
    server_join(&e);
    tcpmsg_tls_ctx_destroy(e.ctx);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

/* A fork while another thread is inside OpenSSL must not hand the child a lock held for
 * ever (the FORK and POOL models fork while the caller's threads use TLS): a thread loads
 * certificates without pause while the test forks children, each of which makes its first
 * handshake (OpenSSL then fills its caches, under write locks). Without the library's fork
 * guard, children hang in CRYPTO_THREAD_write_lock. No Check call in the thread or the
 * children: Check's own mutex would be copied held in the same way. */
static atomic_bool churn_stop;
static struct tcpmsg_tls_ctx *fork_sctx, *fork_cctx;

static void *
churn(void *arg)
{
    struct tcpmsg_tls_config *c = arg;
    while (!atomic_load(&churn_stop)) {
        struct tcpmsg_tls_ctx *ctx;
        if (nt_tls_ctx_create(&ctx, TCPMSG_TLS_SERVER, c, NULL, 0) == 0)
            tcpmsg_tls_ctx_destroy(ctx);
    }
    return NULL;
}

static void *
child_server(void *arg)
{
    struct tcpmsg_tls_params p = {.ctx = fork_sctx};
    return (void *)(intptr_t)tcpmsg_conn_start_tls(arg, &p, tcpmsg_deadline_in(60000));
}

/* The child: one handshake over a socket pair, the server's end in a thread. */
static int
child_handshake(void)
{
    int sv[2];
    struct tcpmsg_conn *a, *b;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
        tcpmsg_conn_open(&a, sv[0], &length4, NULL) < 0 ||
        tcpmsg_conn_open(&b, sv[1], &length4, NULL) < 0)
        return 2;
    pthread_t t;
    if (pthread_create(&t, NULL, child_server, b) != 0)
        return 2;
    struct tcpmsg_tls_params p = {.ctx = fork_cctx, .name = "localhost"};
    int rc = tcpmsg_conn_start_tls(a, &p, tcpmsg_deadline_in(60000));
    void *rs;
    pthread_join(t, &rs);
    return rc == 0 && (intptr_t)rs == 0 ? 0 : 3;
}

START_TEST(forks_while_another_thread_uses_tls)
{
    /* Not under valgrind (its threads take turns, so the race cannot happen, and each child
     * inherits the other thread's OpenSSL state without the thread, which valgrind reports
     * as lost) nor the sanitizers (their runtimes are not fork-safe in a threaded process). */
    if (getenv("TCPMSG_VALGRIND") || getenv("TCPMSG_NO_THREADED_FORK")) {
        fprintf(stderr, "forks_while_another_thread_uses_tls: not run under valgrind or a "
                        "sanitizer\n");
        return;
    }
    fork_sctx = server_ctx("server", NULL);
    fork_cctx = client_ctx(NULL);
    struct tcpmsg_tls_config cfg = {.cert = {.cert_file = pki("server.pem"),
                                             .key_file = pki("server.key")}};
    atomic_store(&churn_stop, false);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, churn, &cfg), 0);
    int children = 50;
    int hung = 0, failed = 0, failed_status = 0;
    for (int i = 0; i < children && !hung && !failed; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(child_handshake());
        if (pid < 0) {
            failed = -1;
            break;
        }
        int st = 0;
        int64_t dl = tcpmsg_deadline_in(90000); /* a hang, not a slow child */
        while (waitpid(pid, &st, WNOHANG) == 0) {
            if (tcpmsg_deadline_left(dl) == 0) {
                kill(pid, SIGKILL);
                waitpid(pid, &st, 0);
                hung = i + 1;
                break;
            }
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL); /* polling a child's end, not timing anything */
        }
        if (!hung && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
            failed = i + 1, failed_status = st;
    }
    atomic_store(&churn_stop, true);
    pthread_join(t, NULL);
    ck_assert_msg(!hung, "child %d hung: a lock of OpenSSL was copied held", hung - 1);
    ck_assert_msg(!failed, "child %d: its handshake failed (status 0x%x)", failed - 1,
                  (unsigned)failed_status);
    tcpmsg_tls_ctx_destroy(fork_sctx);
    tcpmsg_tls_ctx_destroy(fork_cctx);
}
END_TEST


/* ---- kTLS ---------------------------------------------------------------------------------- */

#ifdef NT_COUNT_ULP
/* The test program's setsockopt comes first for libssl too (the executable exports it): it
 * counts OpenSSL's requests for the kernel's TLS (TCP_ULP "tls") and passes every call on. */
#include <dlfcn.h>
#include <netinet/tcp.h>
static atomic_int ulp_requests;
__attribute__((visibility("default"))) int
setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    static int (*real)(int, int, int, const void *, socklen_t);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "setsockopt");
    if (level == IPPROTO_TCP && name == TCP_ULP && len >= 3 && memcmp(val, "tls", 3) == 0)
        atomic_fetch_add(&ulp_requests, 1);
    return real(fd, level, name, val, len);
}
#endif

/* Asks for the "tls" upper layer by the system call itself (not counted above). */
static int
syscall_setsockopt_ulp(int fd)
{
    return (int)syscall(SYS_setsockopt, fd, IPPROTO_TCP, 31 /* TCP_ULP */, "tls", 4);
}

/* Whether this kernel can give a TCP socket the "tls" upper layer (CONFIG_TLS). */
static bool
kernel_has_ktls(void)
{
    int a, b;
    nt_pair("127.0.0.1", &a, &b);
    bool has = syscall_setsockopt_ulp(a) == 0;
    close(a);
    close(b);
    return has;
}

START_TEST(ktls_where_the_kernel_has_it)
{
    /* Contexts that ask for kTLS: the handshake, 1 MiB frames both ways, close_notify. On a
     * kernel with kTLS the kernel encrypts what each end sends (TLS 1.3 with AES-GCM, which
     * OpenSSL 3 hands over); on one without, OpenSSL keeps the records on the same socket
     * (the fallback), and the connection behaves the same. */
    bool kernel = kernel_has_ktls();
    fprintf(stderr, "test_tls: this kernel %s kTLS\n", kernel ? "has" : "has no");
    struct tcpmsg_tls_config want = {.ktls = true, .ciphersuites = "TLS_AES_128_GCM_SHA256"};
    struct server_end e = {.ctx = server_ctx("server", &want), .then = echo_until_end};
    struct tcpmsg_tls_ctx *cctx = client_ctx(&want);
#ifdef NT_COUNT_ULP
    int before = atomic_load(&ulp_requests);
#endif
    int r;
    struct tcpmsg_tls_info ci;
    struct tcpmsg_conn *c = tls_pair(&e, cctx, "localhost", NULL, NULL, &r, &ci);
    ck_assert_int_eq(r, 0);
    ck_assert_int_eq(ci.version, 13);
    ck_assert(ci.ktls_send == kernel);
    if (!kernel)
        ck_assert(!ci.ktls_recv);
    size_t len = 1024 * 1024;
    uint8_t *m = malloc(len);
    nt_fill(m, len, 7);
    for (int i = 0; i < 4; i++)
        exchange(c, m, len - (size_t)i);
    free(m);
    ck_assert_int_eq(tcpmsg_conn_close(c, LONG_WAIT), 0);
    server_join(&e);
    ck_assert_int_eq(e.result, 0);
    ck_assert(e.info.ktls_send == kernel);
#ifdef NT_COUNT_ULP
    /* OpenSSL asked for it on both ends: the socket path is really taken. */
    ck_assert_int_ge(atomic_load(&ulp_requests) - before, 2);
#endif
    /* Without .ktls nothing is asked of the kernel. */
    if (!nt_ktls()) {
        struct server_end p = {.ctx = server_ctx("server", NULL), .then = echo_until_end};
        struct tcpmsg_tls_ctx *plain = client_ctx(NULL);
#ifdef NT_COUNT_ULP
        int mid = atomic_load(&ulp_requests);
#endif
        c = tls_pair(&p, plain, "localhost", NULL, NULL, &r, &ci);
        ck_assert_int_eq(r, 0);
        ck_assert(!ci.ktls_send && !ci.ktls_recv);
        exchange(c, "plain", 5);
        tcpmsg_conn_close(c, LONG_WAIT);
        server_join(&p);
#ifdef NT_COUNT_ULP
        ck_assert_int_eq(atomic_load(&ulp_requests), mid);
#endif
        tcpmsg_tls_ctx_destroy(p.ctx);
        tcpmsg_tls_ctx_destroy(plain);
    }
    tcpmsg_tls_ctx_destroy(e.ctx);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

static void
reset_at_once(struct server_end *e)
{
    tcpmsg_conn_reset(e->c);
    e->c = NULL;
}

START_TEST(ktls_writes_raise_no_sigpipe)
{
    /* OpenSSL writes the socket itself under kTLS, without MSG_NOSIGNAL: writing on after
     * the peer reset must give an error, never SIGPIPE (default disposition here: it would
     * end this process), and the thread's signal mask comes back as it was. */
    signal(SIGPIPE, SIG_DFL);
    struct tcpmsg_tls_config want = {.ktls = true};
    struct server_end e = {.ctx = server_ctx("server", &want), .then = reset_at_once};
    struct tcpmsg_tls_ctx *cctx = client_ctx(&want);
    int r;
    struct tcpmsg_conn *c = tls_pair(&e, cctx, "localhost", NULL, NULL, &r, NULL);
    ck_assert_int_eq(r, 0);
    server_join(&e);
    sigset_t before, after, pending;
    pthread_sigmask(SIG_SETMASK, NULL, &before);
    uint8_t block[16384] = {0};
    int w = 0;
    for (int i = 0; i < 10000 && w == 0; i++)
        w = tcpmsg_conn_send(c, block, sizeof block, LONG_WAIT);
    ck_assert_msg(w == -EPIPE || w == -ECONNRESET, "send: %s", tcpmsg_errname(w));
    pthread_sigmask(SIG_SETMASK, NULL, &after);
    ck_assert_int_eq(sigismember(&after, SIGPIPE), sigismember(&before, SIGPIPE));
    ck_assert_int_eq(sigpending(&pending), 0);
    ck_assert_int_eq(sigismember(&pending, SIGPIPE), 0);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    tcpmsg_tls_ctx_destroy(e.ctx);
    tcpmsg_tls_ctx_destroy(cctx);
}
END_TEST

int
main(void)
{
    if (!tcpmsg_tls_supported()) {
        fprintf(stderr, "test_tls: skipped: this libtcpmsg was built without TLS\n");
        return 77;
    }
    const char *dir = getenv("TCPMSG_TLS_CERTS");
    if (!dir || !*dir) {
        fprintf(stderr, "test_tls: TCPMSG_TLS_CERTS (the test PKI's directory) is not set\n");
        return 1;
    }
    snprintf(certs, sizeof certs, "%s", dir);
    tcpmsg_codec_init_length(&length4, NULL);
    Suite *s = suite_create("tls");
    TCase *t = tcase_create("tls");
    tcase_add_checked_fixture(t, nt_fd_setup, nt_fd_teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, context_errors);
    tcase_add_test(t, handshake_and_frames_both_ways);
    tcase_add_test(t, tls_1_2_and_ip_address_names);
    tcase_add_test(t, mutual_tls);
    tcase_add_test(t, sni_chooses_the_certificate);
    tcase_add_loop_test(t, verification_failures, 0, (int)(sizeof failures / sizeof failures[0]));
    tcase_add_test(t, client_certificate_missing_or_untrusted);
    tcase_add_test(t, insecure_and_unchecked_name_by_name_only);
    tcase_add_test(t, records_a_byte_at_a_time);
    tcase_add_test(t, records_in_odd_pieces);
    tcase_add_test(t, sixteen_mib_frames_and_small_buffers);
    tcase_add_test(t, an_end_without_close_notify_is_a_truncation);
    tcase_add_test(t, half_close_over_tls);
    tcase_add_test(t, plaintext_against_tls);
    tcase_add_test(t, sessions_resume);
    tcase_add_test(t, connect_tls_names_the_host);
    tcase_add_test(t, pem_texts_and_policies);
    tcase_add_test(t, tls_calls_misused);
    tcase_add_test(t, forks_while_another_thread_uses_tls);
    tcase_add_test(t, ktls_where_the_kernel_has_it);
    tcase_add_test(t, ktls_writes_raise_no_sigpipe);
    suite_add_tcase(s, t);
    return tu_run(s);
}
