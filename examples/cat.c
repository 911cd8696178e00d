/* tcpmsg-cat: netcat for framed messages. Connects to HOST PORT (or with -l waits for one
 * client), sends stdin as frames (one per line, or the whole input as one with --raw) and
 * writes the frames received to stdout (one per line, raw, or hex-dumped). Ends once both
 * sides have ended their streams (stdin sent, the peer's end read), or after --count
 * frames.
 *
 * Built on the library's event loop: one worker dials HOST PORT (a pure client: no
 * listener) or, with -l, listens for one client; stdin is read in the same loop, the end of
 * the input half-closes (tcpmsg_server_shutdown), the peer's end is kept (on_eof) until the
 * input is sent, and a timer of the connection fails a conversation where nothing moves. */
#define _GNU_SOURCE /* POSIX and Linux interfaces under -std=c11 */
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OUTPUT_HIGH ((size_t)1024 * 1024)

static _Noreturn void
usage(void)
{
    printf("Usage: %s [OPTION]... HOST PORT | unix:PATH | unix:@NAME\n"
           "       %s -l [OPTION]... [HOST] PORT | unix:PATH | unix:@NAME\n"
           "Send stdin as frames to a TCP service and print the frames it sends back.\n"
           "\n"
           "  -l, --listen            wait for one client on [HOST] PORT instead of\n"
           "                          connecting (PORT 0: the port is printed on stderr)\n"
           "  -f, --framing F         len8 len16 len24 len32 len64 (length in network byte\n"
           "                          order), varint, line, lf, crlf, delim:HEX, fixed:N\n"
           "                          [len32]\n"
           "  -s, --max-frame BYTES   largest frame sent or accepted [16777216]\n"
           "  -r, --raw               the whole of stdin is one frame; frames received are\n"
           "                          written as they are, without a newline\n"
           "  -x, --hex               frames received are written as LENGTH: hex bytes\n"
           "  -n, --count N           stop after N frames received\n"
           "  -t, --timeout SEC       fail when nothing moves for SEC seconds [never]\n"
           "TLS, connecting:\n" TOOL_TLS_CLIENT_HELP
           "TLS, with -l (a TLS server for the one client):\n" TOOL_TLS_SERVER_HELP
           "  -h, --help              this help\n"
           "  -V, --version           the version\n"
           "\n"
           "Ends once stdin is sent and the peer has ended its stream, or after --count\n"
           "frames. Exit status: 0 then, 1 on a network or protocol error or a timeout,\n"
           "2 on bad usage.\n",
           tool_name(), tool_name());
    exit(0);
}

static struct {
    const char *host, *port, *framing;
    bool listen, raw, hex;
    uint64_t count, received;
    int timeout_ms;
    const struct tool_tls *tls;
    struct tool_input in;
    struct tcpmsg_conn *c; /* once connected */
    uint64_t moved;        /* bytes in and out and lines read, at the last look */
    int64_t last_progress;
    bool opened; /* the connection was opened (it may have ended since: c NULL) */
    bool done;   /* --count frames arrived */
} ct;

/* Connecting failed (or the TLS handshake) before any connection opened. */
static void
on_down(struct tcpmsg_worker *w, uint64_t id, int reason, int64_t retry_ms, void *arg)
{
    (void)w, (void)id, (void)retry_ms, (void)arg;
    if (ct.opened || ct.done)
        return; /* the connection it opened ended: on_close said what there was to say */
    if (tool_tls_error(reason))
        tool_die("TLS handshake with %s: %s", ct.host, tcpmsg_strerror(reason));
    if (!ct.port)
        tool_die("cannot connect to %s: %s", ct.host, tcpmsg_strerror(reason));
    tool_die("cannot connect to %s port %s: %s", ct.host, ct.port, tcpmsg_strerror(reason));
}

/* -l -t: nobody connected in time. */
static void
accept_timeout(struct tcpmsg_worker *w, uint64_t id, void *arg)
{
    (void)w, (void)id, (void)arg;
    if (!ct.opened)
        tool_die("accept: %s", tcpmsg_strerror(-ETIMEDOUT));
}

static void
worker_start(struct tcpmsg_worker *w, void *user)
{
    int r;
    if (ct.listen) {
        r = ct.timeout_ms ? tcpmsg_worker_timer_start(w, ct.timeout_ms, 0, accept_timeout, NULL,
                                                      NULL)
                          : 0;
    } else {
        struct tcpmsg_dial_opts o = {.connect_timeout_ms = ct.timeout_ms ? ct.timeout_ms : 30000,
                                     .on_down = on_down,
                                     .tls = user,
                                     .tls_name = ct.tls->name};
        r = tcpmsg_worker_dial(w, ct.host, ct.port, &o, NULL);
    }
    if (r < 0)
        tool_die("%s", tcpmsg_strerror(r));
}

/* stdin was read: its frames are queued (written when the loop turn ends); after the last
 * one the connection is half-closed, once its output is out. */
static void
more_input(void *arg)
{
    (void)arg;
    const uint8_t *data;
    size_t len;
    while (tool_input_next(&ct.in, &data, &len)) {
        int r = tcpmsg_conn_send(ct.c, data, len, TCPMSG_NOWAIT);
        if (r == -EINVAL || r == -EMSGSIZE)
            tool_die("input %llu cannot be sent with %s framing: %s",
                     (unsigned long long)(ct.raw ? 1 : ct.in.line_no), ct.framing,
                     r == -EMSGSIZE ? "too long" : "wrong size or forbidden bytes");
        if (r < 0 && r != -EPIPE)
            tool_die("sending: %s", tool_recv_error(r));
    }
    if (tcpmsg_conn_output(ct.c, NULL) >= OUTPUT_HIGH)
        tool_stdin_pause(true); /* until on_drain */
    if (ct.in.eof)
        (void)tcpmsg_server_shutdown(ct.c);
}

/* --timeout: fires at the deadline the last progress set, and moves on if anything moved. */
static void
silence_check(struct tcpmsg_conn *c, uint64_t id, void *arg)
{
    (void)id, (void)arg;
    struct tcpmsg_conn_stats st;
    tcpmsg_conn_stats(c, &st);
    int64_t now = tcpmsg_now_ms();
    uint64_t moved = st.bytes_in + st.bytes_out + ct.in.line_no;
    if (moved != ct.moved) {
        ct.moved = moved;
        ct.last_progress = now;
    } else if (now - ct.last_progress >= ct.timeout_ms) {
        tool_die("nothing moved for %.1f s", ct.timeout_ms / 1000.0);
    }
    int64_t next = ct.last_progress + ct.timeout_ms - now;
    if (tcpmsg_timer_start(c, next > 0 ? next : 0, 0, silence_check, NULL, NULL) < 0)
        tool_die("out of memory");
}

static int
on_open(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    if (ct.opened)
        return TCPMSG_EFULL; /* -l: one client */
    ct.c = c;
    ct.opened = true;
    if (ct.listen) {
        struct tcpmsg_addr peer;
        char text[TCPMSG_ADDR_STRLEN] = "?";
        struct tcpmsg_peer_cred pc;
        if (tcpmsg_conn_peer_cred(c, &pc) == 0) /* a Unix client has no address */
            snprintf(text, sizeof text, "unix:pid=%d", pc.pid);
        else if (tcpmsg_addr_peer(tcpmsg_conn_fd(c), &peer) == 0)
            tcpmsg_addr_format(&peer, text, sizeof text);
        tool_warn("connection from %s", text);
    }
    tool_tls_say_ktls(c, ct.tls);
    ct.last_progress = tcpmsg_now_ms();
    if (ct.timeout_ms && tcpmsg_timer_start(c, ct.timeout_ms, 0, silence_check, NULL, NULL) < 0)
        return -ENOMEM;
    tool_stdin_start(&ct.in, tcpmsg_conn_worker(c), more_input, NULL);
    return 0;
}

static int
on_message(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    tool_print_frame(m->data, m->len, ct.raw, ct.hex);
    tool_stdout_flush_soon(tcpmsg_conn_worker(c));
    if (++ct.received == ct.count) {
        ct.done = true;
        return TCPMSG_EOF; /* enough: the connection ends, the frames after it are not read */
    }
    return 0;
}

/* The peer ended its stream: the rest of the input still goes to it; the connection ends
 * once ours has ended too. */
static int
on_eof(struct tcpmsg_conn *c, void *user)
{
    (void)c, (void)user;
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
    ct.c = NULL;
    tool_stdin_stop(); /* its frames would go to a connection that is gone */
    tcpmsg_server_stop(tcpmsg_worker_server(tcpmsg_conn_worker(c)));
    if (ct.done || reason == TCPMSG_EOF)
        return; /* --count frames, or both sides ended their streams */
    tool_die("%s", tool_recv_error(reason));
}

int
main(int argc, char **argv)
{
    tool_init(argv[0]);
    static const struct option longopts[] = {{"listen", no_argument, NULL, 'l'},
                                             {"framing", required_argument, NULL, 'f'},
                                             {"max-frame", required_argument, NULL, 's'},
                                             {"raw", no_argument, NULL, 'r'},
                                             {"hex", no_argument, NULL, 'x'},
                                             {"count", required_argument, NULL, 'n'},
                                             {"timeout", required_argument, NULL, 't'},
                                             TOOL_TLS_SERVER_OPTIONS,
                                             TOOL_TLS_CLIENT_OPTIONS,
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    const char *framing = "len32";
    uint64_t max_frame = 0, count = 0;
    bool listen = false, raw = false, hex = false;
    int timeout_ms = 0;
    struct tool_tls tls = {0};
    int opt;
    while ((opt = getopt_long(argc, argv, ":lf:s:rxn:t:hV", longopts, NULL)) != -1) {
        if (tool_tls_option(&tls, opt, optarg))
            continue;
        switch (opt) {
        case 'l':
            listen = true;
            break;
        case 'f':
            framing = optarg;
            break;
        case 's':
            max_frame = tool_uint("--max-frame", optarg, 1, UINT32_MAX);
            break;
        case 'r':
            raw = true;
            break;
        case 'x':
            hex = true;
            break;
        case 'n':
            count = tool_uint("--count", optarg, 1, UINT64_MAX);
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
    bool un = nargs == 1 && strncmp(argv[optind], "unix:", 5) == 0; /* no port there */
    if (nargs > 2 || nargs < (listen || un ? 1 : 2))
        tool_usage(nargs > 2 ? "too many arguments" : "missing HOST or PORT");
    const char *host = nargs == 2 || un ? argv[optind] : NULL;
    const char *port = un ? NULL : argv[argc - 1];
    struct tcpmsg_codec codec;
    tool_framing("--framing", framing, max_frame, &codec);
    if (listen && (tls.name || tls.insecure))
        tool_usage("--tls-name and --tls-insecure are for connecting, not with -l");
    if (listen && tls.on && !tls.cert)
        tool_usage("-l --tls: a TLS server needs --tls-cert and --tls-key");
    struct tcpmsg_tls_ctx *tls_ctx = listen ? tool_tls_server(&tls) : tool_tls_client(&tls);
    ct.host = host;
    ct.port = port;
    ct.framing = framing;
    ct.listen = listen;
    ct.raw = raw;
    ct.hex = hex;
    ct.count = count;
    ct.timeout_ms = timeout_ms;
    ct.tls = &tls;
    tool_input_open(&ct.in, raw, max_frame);

    /* One worker: with -l a listener for one client (a second one is refused), else none
     * (the connection is dialled). No idle timeout: --timeout is the conversation's. */
    struct tcpmsg_server_config cfg = {.host = host, .port = port, .no_listener = !listen,
                                       .workers = 1, .max_conns = listen ? 1 : 0,
                                       .codec = &codec, .idle_timeout_ms = -1,
                                       .frame_timeout_ms = -1, .output_high = 4 * OUTPUT_HIGH,
                                       .output_low = OUTPUT_HIGH / 4};
    if (listen) {
        cfg.tls_ctx = tls_ctx;
        cfg.handshake_timeout_ms = tls.handshake_ms ? tls.handshake_ms : timeout_ms;
    }
    struct tcpmsg_handler h = {.on_worker_start = worker_start, .on_open = on_open,
                               .on_message = on_message, .on_eof = on_eof, .on_drain = on_drain,
                               .on_close = on_close, .user = listen ? NULL : tls_ctx};
    struct tcpmsg_server *s;
    int r = tcpmsg_server_create(&s, &cfg, &h);
    if (r < 0 && listen)
        tool_die("cannot listen on %s%s: %s", un ? "" : "port ", un ? host : port,
                 tcpmsg_strerror(r));
    if (r < 0)
        tool_die("%s", tcpmsg_strerror(r));
    if (listen && un)
        tool_warn("listening on %s", host);
    else if (listen)
        tool_warn("listening on port %d", tcpmsg_server_port(s));
    r = tcpmsg_server_run(s);
    tcpmsg_server_destroy(s);
    tcpmsg_tls_ctx_destroy(tls_ctx);
    tool_input_close(&ct.in);
    if (r < 0)
        tool_die("%s", tcpmsg_strerror(r));
    return fflush(stdout) || ferror(stdout) ? EXIT_RUNTIME : 0;
}
