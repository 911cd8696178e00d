/* What the example programs share (see common.h). */
#define _GNU_SOURCE /* POSIX and Linux interfaces under -std=c11 */
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *name = "tcpmsg";

void
tool_init(const char *argv0)
{
    opterr = 0; /* getopt's own messages would make two lines: tool_bad_option says it */
    if (argv0 && *argv0) {
        const char *slash = strrchr(argv0, '/');
        name = slash ? slash + 1 : argv0;
    }
}

const char *
tool_name(void)
{
    return name;
}

/* One line, written with one write(2) so that lines of several processes (the FORK and
 * POOL servers log from their children) never interleave. */
static void vline(const char *suffix, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
vline(const char *suffix, const char *fmt, va_list ap)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "%s: ", name);
    if (n < 0)
        return;
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    size_t len = m < 0 ? (size_t)n : (size_t)n + (size_t)m;
    if (len > sizeof line - 2 - strlen(suffix))
        len = sizeof line - 2 - strlen(suffix);
    memcpy(line + len, suffix, strlen(suffix));
    len += strlen(suffix);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void
tool_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline("", fmt, ap);
    va_end(ap);
}

void
tool_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline("", fmt, ap);
    va_end(ap);
    exit(EXIT_RUNTIME);
}

void
tool_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(" (see --help)", fmt, ap);
    va_end(ap);
    exit(EXIT_USAGE);
}

void
tool_bad_option(int opt, char **argv)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "?";
    if (opt == ':')
        tool_usage("option '%s' needs a value", arg);
    if (optopt)
        tool_usage("unknown option '-%c'", optopt);
    tool_usage("unknown option '%s'", arg);
}

void
tool_version(void)
{
    printf("%s (libtcpmsg) %s\n", name, tcpmsg_version_string());
    exit(0);
}

uint64_t
tool_uint(const char *opt, const char *text, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v < min || v > max)
        tool_usage("%s: '%s' is not a number from %llu to %llu", opt, text, (unsigned long long)min,
                   (unsigned long long)max);
    return v;
}

int
tool_seconds_ms(const char *opt, const char *text)
{
    char *end;
    errno = 0;
    double s = strtod(text, &end);
    if (errno || end == text || *end || !(s >= 0) || s > 86400.0 * 365)
        tool_usage("%s: '%s' is not a number of seconds", opt, text);
    return (int)(s * 1000 + 0.5);
}

void
tool_framing(const char *opt, const char *spec, uint64_t max, struct tcpmsg_codec *out)
{
    int r = tcpmsg_codec_parse(out, spec, max);
    if (r == -EMSGSIZE)
        tool_usage("%s: records of %s are larger than the frame limit", opt, spec);
    if (r < 0)
        tool_usage("%s: '%s' is not a framing (len8, len16, len24, len32, len64, varint, "
                   "line, lf, crlf, delim:HEX, fixed:N) that can carry %llu-byte frames",
                   opt, spec, (unsigned long long)(max ? max : TCPMSG_CODEC_DEFAULT_MAX));
}

void
tool_print_port(int port)
{
    printf("%d\n", port);
    fflush(stdout);
}

void
tool_log_server(void *user, enum tcpmsg_server_event ev, int code, const char *tuple)
{
    (void)user;
    switch (ev) {
    case TCPMSG_EV_OPEN:
        tool_warn("%s open", tuple);
        break;
    case TCPMSG_EV_CLOSE:
        tool_warn("%s closed: %s", tuple,
                  code == TCPMSG_EOF ? "end of stream" : tcpmsg_strerror(code));
        break;
    case TCPMSG_EV_REFUSED:
        tool_warn("%s refused: %s", tuple, tcpmsg_strerror(code));
        break;
    case TCPMSG_EV_ACCEPT:
        tool_warn("accept failed: %s", tcpmsg_strerror(code));
        break;
    case TCPMSG_EV_WORKER:
        tool_warn("a worker process died (status %d) and was replaced", code);
        break;
    case TCPMSG_EV_STOP:
        tool_warn("stopping");
        break;
    }
}

/* ---- stdin as frames --------------------------------------------------------------------- */

void
tool_input_open(struct tool_input *in, bool raw, uint64_t max)
{
    memset(in, 0, sizeof *in);
    in->raw = raw;
    in->max = max ? (size_t)max : (size_t)TCPMSG_CODEC_DEFAULT_MAX;
    if (raw)
        return;
    /* The line codec cuts stdin: it already knows "\n" and "\r\n", the limit, and a last
     * line without a newline. A connection without a socket (fd -1) holds the bytes. */
    struct tcpmsg_codec lines;
    struct tcpmsg_delim_config dc = {
        .mode = TCPMSG_DELIM_ANY_EOL, .eof_partial = true, .max_len = in->max};
    if (tcpmsg_codec_init_delim(&lines, &dc) < 0 ||
        tcpmsg_conn_open(&in->lines, -1, &lines, NULL) < 0)
        tool_die("cannot set up the input");
}

void
tool_input_read(struct tool_input *in)
{
    uint8_t buf[65536];
    ssize_t n;
    do
        n = read(STDIN_FILENO, buf, sizeof buf);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        tool_die("reading stdin: %s", strerror(errno));
    if (n == 0)
        in->eof = true;
    if (in->raw) {
        if (in->all_len + (size_t)n > in->max)
            tool_die("the input is larger than the frame limit (%zu bytes)", in->max);
        if (in->all_len + (size_t)n + 1 > in->all_cap) {
            size_t cap = 2 * (in->all_len + (size_t)n + 1);
            uint8_t *p = realloc(in->all, cap);
            if (!p)
                tool_die("out of memory");
            in->all = p;
            in->all_cap = cap;
        }
        memcpy(in->all + in->all_len, buf, (size_t)n);
        in->all_len += (size_t)n;
        return;
    }
    int r = tcpmsg_conn_feed(in->lines, buf, (size_t)n);
    if (r < 0)
        tool_die("reading stdin: %s", tcpmsg_strerror(r));
}

bool
tool_input_next(struct tool_input *in, const uint8_t **data, size_t *len)
{
    if (in->raw) {
        if (!in->eof || in->taken)
            return false;
        *data = in->all ? in->all : (const uint8_t *)""; /* empty input: one empty frame */
        *len = in->all_len;
        in->taken = true;
        return true;
    }
    struct tcpmsg_frame f;
    int r = tcpmsg_conn_recv(in->lines, &f, TCPMSG_NOWAIT);
    if (r == 0) {
        in->line_no++;
        *data = f.data;
        *len = f.len;
        return true;
    }
    if (r == -EMSGSIZE)
        tool_die("line %llu of the input is longer than the frame limit (%zu bytes)",
                 (unsigned long long)in->line_no + 1, in->max);
    if (r != -ETIMEDOUT && r != TCPMSG_EOF)
        tool_die("reading stdin: %s", tcpmsg_strerror(r));
    return false;
}

void
tool_input_close(struct tool_input *in)
{
    tcpmsg_conn_close(in->lines, TCPMSG_NOWAIT);
    free(in->all);
    memset(in, 0, sizeof *in);
}

void
tool_print_frame(const uint8_t *data, size_t len, bool raw, bool hex)
{
    if (hex) {
        int indent = printf("%zu:", len); /* continuation lines line up under the bytes */
        for (size_t i = 0; i < len; i++) {
            if (i % 16 == 0 && i)
                printf("\n%*s", indent, "");
            printf(" %02x", data[i]);
        }
        putchar('\n');
        return;
    }
    fwrite(data, 1, len, stdout);
    if (!raw)
        putchar('\n');
}

const char *
tool_recv_error(int code)
{
    switch (code) {
    case -EMSGSIZE:
        return "the peer announced a frame over the limit";
    case -EPROTO:
        return "the peer's stream ended inside a frame, or broke the framing";
    case -ECONNRESET:
        return "the connection was reset by the peer";
    case TCPMSG_EOF:
        return "the peer closed the connection";
    case -ETIMEDOUT:
        return "timed out";
    default:
        return tcpmsg_strerror(code);
    }
}

bool
tool_tls_option(struct tool_tls *t, int opt, const char *arg)
{
    switch (opt) {
    case TOOL_OPT_TLS:
        t->on = true;
        return true;
    case TOOL_OPT_TLS_CERT:
        t->cert = arg;
        return true;
    case TOOL_OPT_TLS_KEY:
        t->key = arg;
        return true;
    case TOOL_OPT_TLS_CA:
        t->ca = arg;
        return true;
    case TOOL_OPT_TLS_NAME:
        t->name = arg;
        return true;
    case TOOL_OPT_TLS_VERIFY_PEER:
        t->verify_peer = true;
        return true;
    case TOOL_OPT_TLS_INSECURE:
        t->insecure = true;
        return true;
    case TOOL_OPT_TLS_KTLS:
        t->ktls = true;
        return true;
    case TOOL_OPT_TLS_HANDSHAKE_TIMEOUT:
        t->handshake_ms = tool_seconds_ms("--tls-handshake-timeout", arg);
        if (t->handshake_ms == 0)
            tool_usage("--tls-handshake-timeout: more than 0 seconds");
        return true;
    default:
        return false;
    }
}

static struct tcpmsg_tls_ctx *
make_ctx(enum tcpmsg_tls_role role, const struct tcpmsg_tls_config *cfg)
{
    if (!tcpmsg_tls_supported())
        tool_die("TLS: this libtcpmsg was built without TLS (OpenSSL)");
    struct tcpmsg_tls_ctx *ctx;
    char why[256];
    int r = tcpmsg_tls_ctx_create(&ctx, role, cfg, why, sizeof why);
    if (r == -EINVAL)
        tool_usage("TLS: %s", why);
    if (r < 0)
        tool_die("TLS: %s", why[0] ? why : tcpmsg_strerror(r));
    return ctx;
}

struct tcpmsg_tls_ctx *
tool_tls_server(const struct tool_tls *t)
{
    if (!t->cert && !t->key && !t->ca && !t->verify_peer) {
        if (t->ktls)
            tool_usage("TLS: --tls-ktls needs --tls-cert and --tls-key");
        return NULL;
    }
    if (!t->cert || !t->key)
        tool_usage("TLS: --tls-cert and --tls-key go together");
    if (t->verify_peer && !t->ca)
        tool_usage("TLS: --tls-verify-peer needs --tls-ca (the CA of the client certificates)");
    struct tcpmsg_tls_config cfg = {.cert = {.cert_file = t->cert, .key_file = t->key},
                                    .ca_file = t->ca,
                                    .verify = t->verify_peer ? TCPMSG_TLS_VERIFY_REQUIRED
                                                             : TCPMSG_TLS_VERIFY_DEFAULT,
                                    .ktls = t->ktls};
    return make_ctx(TCPMSG_TLS_SERVER, &cfg);
}

struct tcpmsg_tls_ctx *
tool_tls_client(const struct tool_tls *t)
{
    if (!t->on) {
        if (t->ca || t->name || t->cert || t->key || t->insecure || t->ktls)
            tool_usage("the TLS options need --tls");
        return NULL;
    }
    if (!t->cert != !t->key)
        tool_usage("TLS: --tls-cert and --tls-key go together");
    if (t->insecure)
        tool_warn("TLS: --tls-insecure: the server is not verified, anyone can pretend to be it");
    struct tcpmsg_tls_config cfg = {.cert = {.cert_file = t->cert, .key_file = t->key},
                                    .ca_file = t->ca,
                                    .verify = t->insecure ? TCPMSG_TLS_VERIFY_NONE
                                                          : TCPMSG_TLS_VERIFY_DEFAULT,
                                    .ktls = t->ktls};
    return make_ctx(TCPMSG_TLS_CLIENT, &cfg);
}

void
tool_tls_start(struct tcpmsg_conn *c, struct tcpmsg_tls_ctx *ctx, const struct tool_tls *t,
               const char *host, int64_t deadline)
{
    if (!ctx)
        return;
    struct tcpmsg_tls_info info;
    bool server = tcpmsg_tls_ctx_role(ctx) == TCPMSG_TLS_SERVER;
    struct tcpmsg_tls_params p = {.ctx = ctx, .name = server ? NULL : t->name ? t->name : host,
                                  .info = &info};
    int r = tcpmsg_conn_start_tls(c, &p, deadline);
    if (r < 0)
        tool_die("TLS handshake with %s: %s%s%s%s", host ? host : "the client", tcpmsg_strerror(r),
                 info.detail[0] ? " (" : "", info.detail, info.detail[0] ? ")" : "");
    tool_tls_say_ktls(c, t);
}

void
tool_tls_say_ktls(const struct tcpmsg_conn *c, const struct tool_tls *t)
{
    struct tcpmsg_tls_info info;
    if (t->ktls && tcpmsg_conn_tls_info(c, &info) == 0)
        tool_warn("TLS: kTLS: %s encrypts, %s decrypts", info.ktls_send ? "the kernel" : "OpenSSL",
                  info.ktls_recv ? "the kernel" : "OpenSSL");
}

bool
tool_tls_error(int code)
{
    return code <= TCPMSG_ETLS && code >= TCPMSG_ETLSTRUNC;
}

/* ---- stdin in the loop ------------------------------------------------------------------- */

static struct {
    struct tool_input *in;
    struct tcpmsg_worker *w;
    void (*more)(void *arg);
    void *arg;
    bool by_timer; /* always ready (a regular file, /dev/null): read from a timer */
    bool on;       /* being read (not paused, not at its end) */
    uint64_t timer;
} stdin_loop;

static void stdin_set(bool on);

static void
stdin_read(void)
{
    tool_input_read(stdin_loop.in);
    if (stdin_loop.in->eof)
        stdin_set(false);
    stdin_loop.more(stdin_loop.arg);
}

static void
stdin_ready(struct tcpmsg_worker *w, int fd, int events, void *arg)
{
    (void)w, (void)fd, (void)events, (void)arg;
    stdin_read();
}

static void
stdin_turn(struct tcpmsg_worker *w, uint64_t id, void *arg)
{
    (void)w, (void)id, (void)arg;
    stdin_loop.timer = 0;
    if (!stdin_loop.on)
        return;
    if (tcpmsg_worker_timer_start(stdin_loop.w, 0, 0, stdin_turn, NULL, &stdin_loop.timer) < 0)
        tool_die("out of memory");
    stdin_read(); /* after the next turn's timer is set: stdin_set(false) there stops it */
}

static void
stdin_set(bool on)
{
    if (on == stdin_loop.on || (on && stdin_loop.in->eof))
        return;
    stdin_loop.on = on;
    int r = 0;
    if (stdin_loop.by_timer) {
        if (on)
            r = tcpmsg_worker_timer_start(stdin_loop.w, 0, 0, stdin_turn, NULL, &stdin_loop.timer);
        else if (stdin_loop.timer)
            (void)tcpmsg_worker_timer_stop(stdin_loop.w, stdin_loop.timer), stdin_loop.timer = 0;
    } else {
        r = on ? tcpmsg_worker_watch(stdin_loop.w, STDIN_FILENO, TCPMSG_WATCH_IN, stdin_ready, NULL)
               : tcpmsg_worker_unwatch(stdin_loop.w, STDIN_FILENO);
    }
    if (r < 0)
        tool_die("reading stdin: %s", tcpmsg_strerror(r));
}

void
tool_stdin_start(struct tool_input *in, struct tcpmsg_worker *w, void (*more)(void *arg),
                 void *arg)
{
    stdin_loop.in = in;
    stdin_loop.w = w;
    stdin_loop.more = more;
    stdin_loop.arg = arg;
    int r = tcpmsg_worker_watch(w, STDIN_FILENO, TCPMSG_WATCH_IN, stdin_ready, NULL);
    if (r == -EPERM) {
        stdin_loop.by_timer = true; /* epoll refuses what is always ready */
        stdin_loop.on = false;
        stdin_set(true);
        return;
    }
    if (r < 0)
        tool_die("reading stdin: %s", tcpmsg_strerror(r));
    stdin_loop.on = true;
}

static bool flush_armed;

static void
flush_due(struct tcpmsg_worker *w, uint64_t id, void *arg)
{
    (void)w, (void)id, (void)arg;
    flush_armed = false;
    if (fflush(stdout) != 0)
        tool_die("writing stdout: %s", strerror(errno));
}

void
tool_stdout_flush_soon(struct tcpmsg_worker *w)
{
    if (flush_armed)
        return;
    if (tcpmsg_worker_timer_start(w, 0, 0, flush_due, NULL, NULL) < 0)
        fflush(stdout); /* no memory for a timer: now */
    else
        flush_armed = true;
}

void
tool_stdin_pause(bool pause)
{
    if (stdin_loop.w)
        stdin_set(!pause);
}

void
tool_stdin_stop(void)
{
    if (stdin_loop.w)
        stdin_set(false);
    stdin_loop.w = NULL; /* for good: nothing reads it again */
}
