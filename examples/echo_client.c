/* tcpmsg-echo-client: sends each line of stdin as one frame and prints each echoed frame
 * on its own line (the course's "client host 4321"). Requests are pipelined: lines are sent
 * as fast as the connection takes them while replies come back. Exits 0 at the end of
 * stdin once every reply has arrived; 1 with one line on stderr when the server breaks the
 * protocol, resets, or says nothing for --timeout seconds.
 *
 * Built on the library's event loop, as a pure client: one worker with no listener dials
 * the server (every address, one deadline, TLS if asked), and reads stdin in the same loop;
 * a timer of the connection watches for the server's silence. */
#define _GNU_SOURCE /* POSIX and Linux interfaces under -std=c11 */
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Stop reading stdin while this much output waits for the server to take it. */
#define OUTPUT_HIGH ((size_t)1024 * 1024)

static _Noreturn void
usage(void)
{
    printf("Usage: %s [OPTION]... HOST PORT\n"
           "       %s [OPTION]... unix:PATH | unix:@NAME\n"
           "Send each line of stdin as one frame, print each reply on its own line.\n"
           "\n"
           "  -f, --framing F         len32, line, fixed:N, ... as the server [len32]\n"
           "  -s, --max-frame BYTES   largest frame sent or accepted [16777216]\n"
           "  -t, --timeout SEC       give up when the server is silent this long, 0: never [10]\n"
           TOOL_TLS_CLIENT_HELP
           "  -h, --help              this help\n"
           "  -V, --version           the version\n",
           tool_name(), tool_name());
    exit(0);
}

static struct {
    const char *host, *port, *framing;
    char where[300]; /* "HOST port PORT", or the Unix address, for messages */
    int timeout_ms;
    const struct tool_tls *tls;
    struct tool_input in;
    struct tcpmsg_conn *c; /* once connected */
    uint64_t sent, received;
    uint64_t moved;        /* bytes in and out at the last look */
    int64_t last_progress; /* when they last changed */
    bool opened; /* the connection was opened (it may have ended since: c NULL) */
    bool finishing, done;
} ec;

/* The connection failed before it opened (a connect or TLS failure). */
static void
on_down(struct tcpmsg_worker *w, uint64_t id, int reason, int64_t retry_ms, void *arg)
{
    (void)w, (void)id, (void)retry_ms, (void)arg;
    if (ec.opened || ec.done)
        return; /* the connection it opened ended: on_close said what there was to say */
    if (tool_tls_error(reason))
        tool_die("TLS handshake with %s: %s", ec.host, tcpmsg_strerror(reason));
    tool_die("cannot connect to %s: %s", ec.where, tcpmsg_strerror(reason));
}

static void
dial(struct tcpmsg_worker *w, void *user)
{
    struct tcpmsg_dial_opts o = {.connect_timeout_ms = ec.timeout_ms, /* 0: 10 s */
                                 .on_down = on_down,
                                 .tls = user,
                                 .tls_name = ec.tls->name};
    int r = tcpmsg_worker_dial(w, ec.host, ec.port, &o, NULL);
    if (r < 0)
        tool_die("cannot connect to %s: %s", ec.where, tcpmsg_strerror(r));
}

/* Every reply is in and stdin is over: the connection ends once its output is out. Looked
 * at after the loop turn delivered every frame that arrived (one more than asked for is an
 * error, even when it came with the last reply). */
static void
finish_due(struct tcpmsg_conn *c, uint64_t id, void *arg)
{
    (void)id, (void)arg;
    ec.finishing = false;
    if (ec.in.eof && ec.received == ec.sent && !ec.done) {
        ec.done = true;
        (void)tcpmsg_server_close(c, TCPMSG_EOF);
    }
}

static void
finish_if_done(void)
{
    if (!ec.in.eof || ec.received != ec.sent || ec.finishing)
        return;
    ec.finishing = true;
    if (tcpmsg_timer_start(ec.c, 0, 0, finish_due, NULL, NULL) < 0)
        tool_die("out of memory");
}

/* stdin was read: the lines it completed are queued (written when the loop turn ends). */
static void
more_input(void *arg)
{
    (void)arg;
    const uint8_t *line;
    size_t len;
    while (tool_input_next(&ec.in, &line, &len)) {
        int r = tcpmsg_conn_send(ec.c, line, len, TCPMSG_NOWAIT);
        if (r == -EINVAL || r == -EMSGSIZE)
            tool_die("line %llu cannot be sent with %s framing: %s",
                     (unsigned long long)ec.in.line_no, ec.framing,
                     r == -EMSGSIZE ? "too long" : "wrong size or forbidden bytes");
        if (r < 0)
            tool_die("sending to %s: %s", ec.where, tool_recv_error(r));
        ec.sent++;
    }
    if (tcpmsg_conn_output(ec.c, NULL) >= OUTPUT_HIGH)
        tool_stdin_pause(true); /* until on_drain */
    finish_if_done();
}

/* The server's silence, while replies are owed: the timer fires at the deadline the last
 * progress set, and moves on when bytes moved since. */
static void
silence_check(struct tcpmsg_conn *c, uint64_t id, void *arg)
{
    (void)id, (void)arg;
    struct tcpmsg_conn_stats st;
    tcpmsg_conn_stats(c, &st);
    int64_t now = tcpmsg_now_ms();
    bool waiting = ec.received < ec.sent || tcpmsg_conn_output(c, NULL) > 0;
    if (st.bytes_in + st.bytes_out != ec.moved || !waiting) {
        ec.moved = st.bytes_in + st.bytes_out;
        ec.last_progress = now;
    } else if (now - ec.last_progress >= ec.timeout_ms) {
        tool_die("no reply from %s for %.1f s (%llu outstanding)", ec.where,
                 ec.timeout_ms / 1000.0, (unsigned long long)(ec.sent - ec.received));
    }
    int64_t next = ec.last_progress + ec.timeout_ms - now;
    if (tcpmsg_timer_start(c, next > 0 ? next : 0, 0, silence_check, NULL, NULL) < 0)
        tool_die("out of memory");
}

static int
on_open(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    ec.c = c;
    ec.opened = true;
    tool_tls_say_ktls(c, ec.tls);
    ec.last_progress = tcpmsg_now_ms();
    if (ec.timeout_ms && tcpmsg_timer_start(c, ec.timeout_ms, 0, silence_check, NULL, NULL) < 0)
        return -ENOMEM;
    tool_stdin_start(&ec.in, tcpmsg_conn_worker(c), more_input, NULL);
    return 0;
}

static int
on_message(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    if (++ec.received > ec.sent)
        tool_die("the server sent a frame nobody asked for");
    tool_print_frame(m->data, m->len, false, false);
    tool_stdout_flush_soon(tcpmsg_conn_worker(c));
    finish_if_done();
    return 0;
}

static void
on_drain(struct tcpmsg_conn *c, void *user)
{
    (void)c, (void)user;
    tool_stdin_pause(false);
}

static void
on_close(struct tcpmsg_conn *c, int reason, void *user)
{
    (void)user;
    ec.c = NULL;
    tool_stdin_stop(); /* its frames would go to a connection that is gone */
    tcpmsg_server_stop(tcpmsg_worker_server(tcpmsg_conn_worker(c)));
    if (ec.done)
        return; /* our end, with every reply in */
    if (reason == TCPMSG_EOF && ec.received < ec.sent)
        tool_die("the server closed the connection with %llu replies missing",
                 (unsigned long long)(ec.sent - ec.received));
    tool_die("%s: %s", ec.where, tool_recv_error(reason));
}

int
main(int argc, char **argv)
{
    tool_init(argv[0]);
    static const struct option longopts[] = {
        {"framing", required_argument, NULL, 'f'}, {"max-frame", required_argument, NULL, 's'},
        {"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},       TOOL_TLS_CLIENT_OPTIONS,
        {"tls-ca", required_argument, NULL, TOOL_OPT_TLS_CA},
        {"tls-cert", required_argument, NULL, TOOL_OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, TOOL_OPT_TLS_KEY},
        {NULL, 0, NULL, 0}};
    const char *framing = "len32";
    uint64_t max_frame = 0;
    int timeout_ms = 10000;
    struct tool_tls tls = {0};
    int opt;
    while ((opt = getopt_long(argc, argv, ":f:s:t:hV", longopts, NULL)) != -1) {
        if (tool_tls_option(&tls, opt, optarg))
            continue;
        switch (opt) {
        case 'f':
            framing = optarg;
            break;
        case 's':
            max_frame = tool_uint("--max-frame", optarg, 1, UINT32_MAX);
            break;
        case 't':
            timeout_ms = tool_seconds_ms("--timeout", optarg);
            break;
        case 'h':
            usage();
        case 'V':
            tool_version();
        default:
            tool_bad_option(opt, argv);
        }
    }
    int nargs = argc - optind;
    bool un = nargs >= 1 && strncmp(argv[optind], "unix:", 5) == 0;
    if (nargs != (un ? 1 : 2))
        tool_usage(nargs < (un ? 1 : 2) ? "missing HOST or PORT" : "too many arguments");
    const char *host = argv[optind], *port = un ? NULL : argv[optind + 1];
    struct tcpmsg_codec codec;
    tool_framing("--framing", framing, max_frame, &codec);
    struct tcpmsg_tls_ctx *tls_ctx = tool_tls_client(&tls);
    ec.host = host;
    ec.port = port;
    if (un)
        snprintf(ec.where, sizeof ec.where, "%s", host);
    else
        snprintf(ec.where, sizeof ec.where, "%s port %s", host, port);
    ec.framing = framing;
    ec.timeout_ms = timeout_ms;
    ec.tls = &tls;
    tool_input_open(&ec.in, false, max_frame);

    /* A pure client: one worker, no listener, no idle timeout (the silence timer decides);
     * its output stops stdin at OUTPUT_HIGH and on_drain reads it again at a quarter. */
    struct tcpmsg_server_config cfg = {.no_listener = true, .workers = 1, .codec = &codec,
                                       .idle_timeout_ms = -1, .frame_timeout_ms = -1,
                                       .output_high = 4 * OUTPUT_HIGH,
                                       .output_low = OUTPUT_HIGH / 4};
    struct tcpmsg_handler h = {.on_worker_start = dial, .on_open = on_open,
                               .on_message = on_message, .on_drain = on_drain,
                               .on_close = on_close, .user = tls_ctx};
    struct tcpmsg_server *s;
    int r = tcpmsg_server_create(&s, &cfg, &h);
    if (r < 0)
        tool_die("%s", tcpmsg_strerror(r));
    r = tcpmsg_server_run(s);
    tcpmsg_server_destroy(s);
    tcpmsg_tls_ctx_destroy(tls_ctx);
    tool_input_close(&ec.in);
    if (r < 0)
        tool_die("%s", tcpmsg_strerror(r));
    return fflush(stdout) || ferror(stdout) ? EXIT_RUNTIME : 0;
}
