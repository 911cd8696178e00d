/* The PROXY protocol in the server (config.proxy_protocol, proxy_from), under every model:
 * the client's address from the balancer's header reaches the handler (tcpmsg_conn_peer,
 * tcpmsg_conn_tuple, tcpmsg_conn_proxy) and the log; the client's bytes sent with the header
 * are its first frames; a LOCAL header keeps the balancer's address; a missing, malformed,
 * late or untrusted header refuses that connection with its own code, and the next one is
 * served; a dialled connection sends a header of its own (tcpmsg_dial_opts.proxy).
 *
 * Handlers of FORK and POOL run in child processes: what they see is sent back to the
 * client (on_open's greeting) or recorded in MAP_SHARED memory (the log). */
#include "nettest.h"

#include <errno.h>
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

struct shared {
    atomic_int opened, refused, refused_code, closed;
    atomic_int close_logged; /* after close_tuple is written (and open_tuple before it) */
    char open_tuple[TCPMSG_TUPLE_STRLEN];
    char close_tuple[TCPMSG_TUPLE_STRLEN];
    char dialled_saw[512]; /* the greeting a dialled connection received (EVENT case) */
    atomic_int dialled_done;
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

/* on_open greets with what the handler sees: "tuple|peer|version local alpn authority". */
static int
greet(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    char tuple[TCPMSG_TUPLE_STRLEN], peer[TCPMSG_ADDR_STRLEN], msg[1024];
    struct tcpmsg_addr a;
    if (tcpmsg_conn_tuple(c, tuple, sizeof tuple) < 0)
        snprintf(tuple, sizeof tuple, "?");
    if (tcpmsg_conn_peer(c, &a) < 0 || tcpmsg_addr_format(&a, peer, sizeof peer) < 0)
        snprintf(peer, sizeof peer, "?");
    const struct tcpmsg_proxy_info *pi = tcpmsg_conn_proxy(c);
    int n = snprintf(msg, sizeof msg, "%s|%s|%d %d %s %s", tuple, peer, pi ? pi->version : 0,
                     pi ? pi->local : -1, pi ? pi->alpn : "", pi ? pi->authority : "");
    atomic_fetch_add(&sh->opened, 1);
    return tcpmsg_conn_send(c, msg, (size_t)n, TCPMSG_FOREVER);
}

static int
echo(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    return tcpmsg_conn_send(c, m->data, m->len, TCPMSG_FOREVER);
}

static void
closed(struct tcpmsg_conn *c, int reason, void *user)
{
    (void)c, (void)reason, (void)user;
    atomic_fetch_add(&sh->closed, 1);
}

static const struct tcpmsg_handler greeter = {.on_open = greet, .on_message = echo,
                                              .on_close = closed};

static void
record(void *user, enum tcpmsg_server_event ev, int code, const char *tuple)
{
    (void)user;
    if (ev == TCPMSG_EV_OPEN)
        snprintf(sh->open_tuple, sizeof sh->open_tuple, "%s", tuple);
    if (ev == TCPMSG_EV_CLOSE) {
        snprintf(sh->close_tuple, sizeof sh->close_tuple, "%s", tuple);
        atomic_fetch_add(&sh->close_logged, 1); /* the test reads the tuples after this */
    }
    if (ev == TCPMSG_EV_REFUSED) {
        atomic_store(&sh->refused_code, code);
        atomic_fetch_add(&sh->refused, 1);
    }
}

static struct tcpmsg_server *
start(const struct nt_model *m, struct tcpmsg_server_config *cfg)
{
    if (!cfg->host)
        cfg->host = "127.0.0.1";
    cfg->model = m->model;
    cfg->pool_threads = m->pool_threads;
    cfg->workers = m->workers;
    cfg->proxy_protocol = true;
    cfg->log = record;
    return nt_server(cfg, &greeter);
}

/* A raw connection to the server that sends `head` (a header, maybe with frames). */
static int
dial_raw(struct tcpmsg_server *s, const char *host, const void *head, size_t n)
{
    int fd = tcpmsg_sock_connect(host, nt_service(tcpmsg_server_port(s)), NULL, LONG_WAIT);
    ck_assert_int_ge(fd, 0);
    if (n)
        ck_assert(nt_send_all(fd, head, n));
    return fd;
}

static struct tcpmsg_codec length4;

/* The local address text of the server's side, as the tuple begins. */
static void
server_side(struct tcpmsg_server *s, const char *host, char *out, size_t cap)
{
    snprintf(out, cap, "%s:%d", host, tcpmsg_server_port(s));
}

static void
frame(uint8_t *out, const char *text, size_t *n)
{
    size_t len = strlen(text);
    out[0] = 0, out[1] = 0, out[2] = (uint8_t)(len >> 8), out[3] = (uint8_t)len;
    memcpy(out + 4, text, len);
    *n = 4 + len;
}

/* Reads the greeting into buf, then checks one echo. */
static void
greeting_then_echo(int fd, char *buf, size_t cap)
{
    struct tcpmsg_conn *c;
    ck_assert_int_eq(tcpmsg_conn_open(&c, fd, &length4, NULL), 0);
    struct tcpmsg_frame f;
    int r = tcpmsg_conn_recv(c, &f, LONG_WAIT);
    ck_assert_msg(r == 0, "greeting: %s", tcpmsg_errname(r));
    ck_assert_uint_lt(f.len, cap);
    memcpy(buf, f.data, f.len);
    buf[f.len] = '\0';
    /* The frame sent with the header is the first the server read: its echo comes now. */
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    ck_assert_uint_eq(f.len, 5);
    ck_assert_int_eq(memcmp(f.data, "first", 5), 0);
    ck_assert_int_eq(tcpmsg_conn_send(c, "second", 6, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    ck_assert_uint_eq(f.len, 6);
    ck_assert_int_eq(tcpmsg_conn_close(c, LONG_WAIT), 0);
}

static bool
closes_logged(void *arg)
{
    return atomic_load(&sh->close_logged) >= *(int *)arg;
}

static bool
refusals_seen(void *arg)
{
    return atomic_load(&sh->refused) >= *(int *)arg;
}

START_TEST(the_client_address_replaces_the_balancer)
{
    const struct nt_model *m = &models[_i];
    struct tcpmsg_server_config cfg = {0};
    struct tcpmsg_server *s = start(m, &cfg);
    char here[64];
    server_side(s, "127.0.0.1", here, sizeof here);

    /* Three headers, each with the client's first frame in the same write. */
    uint8_t v2ip4[TCPMSG_PROXY_MAX], v2ip6[TCPMSG_PROXY_MAX];
    struct tcpmsg_proxy_info pi;
    memset(&pi, 0, sizeof pi);
    ck_assert_int_eq(tcpmsg_addr_parse("198.51.100.20:61000", &pi.src), 0);
    ck_assert_int_eq(tcpmsg_addr_parse("192.0.2.1:443", &pi.dst), 0);
    snprintf(pi.alpn, sizeof pi.alpn, "tcpmsg/1");
    int n4 = tcpmsg_proxy_format(v2ip4, sizeof v2ip4, &pi);
    memset(&pi, 0, sizeof pi);
    ck_assert_int_eq(tcpmsg_addr_parse("[2001:db8::7]:5000", &pi.src), 0);
    ck_assert_int_eq(tcpmsg_addr_parse("[2001:db8::1]:80", &pi.dst), 0);
    snprintf(pi.authority, sizeof pi.authority, "svc.example");
    int n6 = tcpmsg_proxy_format(v2ip6, sizeof v2ip6, &pi);
    ck_assert_int_gt(n4, 0);
    ck_assert_int_gt(n6, 0);
    const char *v1 = "PROXY TCP4 203.0.113.7 192.0.2.1 4242 7000\r\n";
    struct {
        const uint8_t *h;
        size_t n;
        const char *client, *rest;
    } cases[] = {
        {(const uint8_t *)v1, strlen(v1), "203.0.113.7:4242", "1 0  "},
        {v2ip4, (size_t)n4, "198.51.100.20:61000", "2 0 tcpmsg/1 "},
        {v2ip6, (size_t)n6, "[2001:db8::7]:5000", "2 0  svc.example"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t out[TCPMSG_PROXY_MAX + 64];
        size_t fl;
        memcpy(out, cases[i].h, cases[i].n);
        frame(out + cases[i].n, "first", &fl);
        int fd = dial_raw(s, "127.0.0.1", out, cases[i].n + fl);
        char got[1024], want[1024];
        greeting_then_echo(fd, got, sizeof got);
        snprintf(want, sizeof want, "%s %s|%s|%s", here, cases[i].client, cases[i].client,
                 cases[i].rest);
        ck_assert_msg(strcmp(got, want) == 0, "%s: the handler saw '%s', not '%s'", m->name, got,
                      want);
        int k = (int)i + 1;
        ck_assert(nt_eventually(closes_logged, &k));
        snprintf(want, sizeof want, "%s %s", here, cases[i].client);
        ck_assert_str_eq(sh->open_tuple, want);   /* the log, at the open ... */
        ck_assert_str_eq(sh->close_tuple, want);  /* ... and at the close */
    }
    nt_server_end(s);
    ck_assert_int_eq(atomic_load(&sh->refused), 0);
}
END_TEST

START_TEST(a_local_header_keeps_the_balancer)
{
    /* HAProxy's health checks (check-send-proxy) send LOCAL: no client, the connection's own
     * addresses stand. */
    const struct nt_model *m = &models[_i];
    struct tcpmsg_server_config cfg = {0};
    struct tcpmsg_server *s = start(m, &cfg);
    struct tcpmsg_proxy_info pi;
    memset(&pi, 0, sizeof pi);
    pi.local = true;
    uint8_t out[TCPMSG_PROXY_MAX + 64];
    int n = tcpmsg_proxy_format(out, sizeof out, &pi);
    ck_assert_int_gt(n, 0);
    size_t fl;
    frame(out + n, "first", &fl);
    int fd = dial_raw(s, "127.0.0.1", out, (size_t)n + fl);
    char tuple[TCPMSG_TUPLE_STRLEN], got[1024], want[1024];
    ck_assert_int_gt(tcpmsg_addr_tuple(fd, tuple, sizeof tuple), 0);
    /* The client's tuple reversed is the server's. */
    char *sp = strchr(tuple, ' ');
    ck_assert_ptr_nonnull(sp);
    *sp = '\0';
    greeting_then_echo(fd, got, sizeof got);
    snprintf(want, sizeof want, "%s %s|%s|2 1  ", sp + 1, tuple, tuple);
    ck_assert_msg(strcmp(got, want) == 0, "%s: '%s', not '%s'", m->name, got, want);
    nt_server_end(s);
}
END_TEST

START_TEST(a_bad_or_missing_header_is_refused)
{
    const struct nt_model *m = &models[_i];
    struct tcpmsg_server_config cfg = {.frame_timeout_ms = 300};
    struct tcpmsg_server *s = start(m, &cfg);
    uint8_t plain[16];
    size_t pl;
    frame(plain, "hello", &pl);
    static const uint8_t bad_v2[16] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                                       0x55, 0x49, 0x54, 0x0A, 0x31, 0x11, 0x00, 0x0C};
    struct {
        const void *p;
        size_t n;
        bool end; /* then the client ends its side */
        int code;
    } cases[] = {
        {plain, pl, false, TCPMSG_EPROXY},                      /* a client without balancer */
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", 0, false, TCPMSG_EPROXY}, /* bad port */
        {bad_v2, sizeof bad_v2, false, TCPMSG_EPROXY},          /* version 3 */
        {"PROXY TCP4 1.2.3.4", 0, true, TCPMSG_EPROXY},         /* ended within the header */
        {"", 0, true, TCPMSG_EOF},                              /* a TCP health check */
        {"PROXY TCP4 1.2", 0, false, -ETIMEDOUT},               /* never finished */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = cases[i].n ? cases[i].n : strlen(cases[i].p);
        int fd = dial_raw(s, "127.0.0.1", cases[i].p, n);
        if (cases[i].end)
            shutdown(fd, SHUT_WR);
        long got = nt_drain(fd); /* the server closes it: no greeting, nothing at all */
        ck_assert_msg(got == 0 || got == -ECONNRESET, "%s case %zu: %ld", m->name, i, got);
        close(fd);
        int k = (int)i + 1;
        ck_assert(nt_eventually(refusals_seen, &k));
        ck_assert_msg(atomic_load(&sh->refused_code) == cases[i].code, "%s case %zu: %s", m->name,
                      i, tcpmsg_errname(atomic_load(&sh->refused_code)));
    }
    ck_assert_int_eq(atomic_load(&sh->opened), 0);
    /* The next one, with its header, is served. */
    const char *v1 = "PROXY TCP4 203.0.113.7 192.0.2.1 4242 7000\r\n";
    uint8_t out[128];
    size_t fl;
    memcpy(out, v1, strlen(v1));
    frame(out + strlen(v1), "first", &fl);
    int fd = dial_raw(s, "127.0.0.1", out, strlen(v1) + fl);
    char got[1024];
    greeting_then_echo(fd, got, sizeof got);
    nt_server_end(s);
    ck_assert_int_eq(atomic_load(&sh->opened), 1);
}
END_TEST

START_TEST(only_trusted_balancers)
{
    /* proxy_from: a peer outside the list is refused before anything is read from it; an
     * IPv4 client of a dual-stack listener (an IPv4-mapped peer) matches its IPv4 entry. */
    const struct nt_model *m = &models[_i];
    const char *v1 = "PROXY TCP4 203.0.113.7 192.0.2.1 4242 7000\r\n";
    uint8_t out[128];
    size_t fl;
    memcpy(out, v1, strlen(v1));
    frame(out + strlen(v1), "first", &fl);

    static const char *const others[] = {"10.0.0.0/8", "2001:db8::/32", NULL};
    struct tcpmsg_server_config cfg = {.proxy_from = others};
    struct tcpmsg_server *s = start(m, &cfg);
    int fd = dial_raw(s, "127.0.0.1", out, strlen(v1) + fl);
    long got = nt_drain(fd);
    ck_assert_msg(got == 0 || got == -ECONNRESET, "%s: %ld", m->name, got);
    close(fd);
    int one = 1;
    ck_assert(nt_eventually(refusals_seen, &one));
    ck_assert_int_eq(atomic_load(&sh->refused_code), -EACCES);
    nt_server_end(s);

    static const char *const loopback[] = {"192.0.2.0/24", "127.0.0.0/8", NULL};
    struct tcpmsg_server_config cfg2 = {.proxy_from = loopback, .host = "::"};
    s = start(m, &cfg2);
    fd = dial_raw(s, "127.0.0.1", out, strlen(v1) + fl);
    char text[1024];
    greeting_then_echo(fd, text, sizeof text);
    ck_assert_msg(strstr(text, "|203.0.113.7:4242|") != NULL, "%s: %s", m->name, text);
    nt_server_end(s);

    static const char *const exact[] = {"::1", NULL};
    struct tcpmsg_server_config cfg3 = {.proxy_from = exact, .host = "::1"};
    s = start(m, &cfg3);
    fd = dial_raw(s, "::1", out, strlen(v1) + fl);
    greeting_then_echo(fd, text, sizeof text);
    nt_server_end(s);
    ck_assert_int_eq(atomic_load(&sh->refused), 1);
}
END_TEST

START_TEST(configuration_errors)
{
    struct tcpmsg_server *s;
    static const char *const ok[] = {"127.0.0.1", NULL};
    struct tcpmsg_server_config cfg = {.host = "127.0.0.1", .proxy_from = ok};
    ck_assert_int_eq(tcpmsg_server_create(&s, &cfg, &greeter), -EINVAL); /* no proxy_protocol */
    static const char *const bad[][2] = {{"", NULL},           {"1.2.3.4/33", NULL},
                                         {"::1/129", NULL},    {"localhost", NULL},
                                         {"1.2.3.4/", NULL},   {"1.2.3.4/x", NULL},
                                         {"/8", NULL},         {"1.2.3.4/0008", NULL}};
    cfg.proxy_protocol = true;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.proxy_from = bad[i];
        ck_assert_msg(tcpmsg_server_create(&s, &cfg, &greeter) == -EINVAL, "'%s'", bad[i][0]);
    }
    static const char *const empty[] = {NULL};
    cfg.proxy_from = empty;
    ck_assert_int_eq(tcpmsg_server_create(&s, &cfg, &greeter), -EINVAL);
    static const char *const good[] = {"0.0.0.0/0", "::/0", "fe80::1", "10.1.2.3/32", NULL};
    cfg.proxy_from = good;
    ck_assert_int_eq(tcpmsg_server_create(&s, &cfg, &greeter), 0);
    tcpmsg_server_destroy(s);
}
END_TEST

/* ---- EVENT: a dialled connection sends its own header ----------------------------------- */

static int
dialled_message(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)c, (void)user;
    size_t n = m->len < sizeof sh->dialled_saw - 1 ? m->len : sizeof sh->dialled_saw - 1;
    memcpy(sh->dialled_saw, m->data, n);
    sh->dialled_saw[n] = '\0';
    atomic_store(&sh->dialled_done, 1);
    return -ECANCELED; /* one greeting is all it came for */
}

static int dial_port;

static void
dial_on_start(struct tcpmsg_worker *w, void *user)
{
    (void)user;
    struct tcpmsg_proxy_info pi;
    memset(&pi, 0, sizeof pi);
    (void)tcpmsg_addr_parse("[2001:db8::42]:31337", &pi.src);
    (void)tcpmsg_addr_parse("[2001:db8::1]:443", &pi.dst);
    snprintf(pi.alpn, sizeof pi.alpn, "h2");
    struct tcpmsg_dial_opts o = {.proxy = &pi};
    (void)tcpmsg_worker_dial(w, "127.0.0.1", nt_service(dial_port), &o, NULL);
}

static bool
dialled(void *arg)
{
    (void)arg;
    return atomic_load(&sh->dialled_done) == 1;
}

START_TEST(a_dialled_connection_sends_a_header)
{
    const struct nt_model *m = NULL;
    for (int i = 0; i < nmodels && !m; i++)
        if (models[i].model == TCPMSG_MODEL_EVENT)
            m = &models[i];
    ck_assert_ptr_nonnull(m);
    struct tcpmsg_server_config cfg = {0};
    struct tcpmsg_server *s = start(m, &cfg);
    dial_port = tcpmsg_server_port(s);
    struct tcpmsg_server_config ccfg = {.no_listener = true, .workers = 1};
    struct tcpmsg_handler ch = {.on_message = dialled_message, .on_worker_start = dial_on_start};
    struct tcpmsg_server *client = nt_server(&ccfg, &ch);
    ck_assert(nt_eventually(dialled, NULL));
    nt_server_end(client);
    nt_server_end(s);
    ck_assert_msg(strstr(sh->dialled_saw, " [2001:db8::42]:31337|[2001:db8::42]:31337|2 0 h2 ") !=
                      NULL,
                  "%s", sh->dialled_saw);
}
END_TEST

static Suite *
make_suite(void)
{
    tcpmsg_codec_init_length(&length4, NULL);
    nmodels = nt_models("test_proxy_server", &models);
    Suite *s = suite_create("proxy_server");
    TCase *t = tcase_create("proxy_server");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_loop_test(t, the_client_address_replaces_the_balancer, 0, nmodels);
    tcase_add_loop_test(t, a_local_header_keeps_the_balancer, 0, nmodels);
    tcase_add_loop_test(t, a_bad_or_missing_header_is_refused, 0, nmodels);
    tcase_add_loop_test(t, only_trusted_balancers, 0, nmodels);
    tcase_add_test(t, configuration_errors);
    bool event = false;
    for (int i = 0; i < nmodels; i++)
        event |= models[i].model == TCPMSG_MODEL_EVENT;
    if (event)
        tcase_add_test(t, a_dialled_connection_sends_a_header);
    suite_add_tcase(s, t);
    return s;
}

int
main(void)
{
    return tu_run(make_suite());
}
