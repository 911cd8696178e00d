/* tcpmsg-cat: netcat for framed messages. Connects to HOST PORT (or with -l waits for one
 * client), sends stdin as frames (one per line, or the whole input as one with --raw) and
 * writes the frames received to stdout (one per line, raw, or hex-dumped). Ends once both
 * sides have ended their streams (stdin sent, the peer's end read), or after --count
 * frames. */
#define _GNU_SOURCE /* POSIX and Linux interfaces under -std=c11 */
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OUTPUT_HIGH ((size_t)1024 * 1024)

static _Noreturn void
usage(void)
{
    printf("Usage: %s [OPTION]... HOST PORT\n"
           "       %s -l [OPTION]... [HOST] PORT\n"
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

/* Connects, or listens and accepts one client; returns the connected socket. */
static int
open_socket(bool listen, const char *host, const char *port, int timeout_ms)
{
    int64_t dl = timeout_ms ? tcpmsg_deadline_in(timeout_ms) : TCPMSG_FOREVER;
    if (!listen) {
        int fd = tcpmsg_sock_connect(host, port, NULL, dl);
        if (fd < 0)
            tool_die("cannot connect to %s port %s: %s", host, port, tcpmsg_strerror(fd));
        return fd;
    }
    int lfd = tcpmsg_sock_listen(host, port, NULL);
    if (lfd < 0)
        tool_die("cannot listen on port %s: %s", port, tcpmsg_strerror(lfd));
    tool_warn("listening on port %d", tcpmsg_sock_port(lfd));
    struct tcpmsg_addr peer;
    int fd = tcpmsg_sock_accept(lfd, NULL, &peer, dl);
    tcpmsg_sock_close(lfd); /* one client */
    if (fd < 0)
        tool_die("accept: %s", tcpmsg_strerror(fd));
    char text[TCPMSG_ADDR_STRLEN];
    tcpmsg_addr_format(&peer, text, sizeof text);
    tool_warn("connection from %s", text);
    return fd;
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
    if (nargs > 2 || nargs < (listen ? 1 : 2))
        tool_usage(nargs > 2 ? "too many arguments" : "missing HOST or PORT");
    const char *host = nargs == 2 ? argv[optind] : NULL;
    const char *port = argv[argc - 1];
    struct tcpmsg_codec codec;
    tool_framing("--framing", framing, max_frame, &codec);
    if (listen && (tls.name || tls.insecure))
        tool_usage("--tls-name and --tls-insecure are for connecting, not with -l");
    if (listen && tls.on && !tls.cert)
        tool_usage("-l --tls: a TLS server needs --tls-cert and --tls-key");
    struct tcpmsg_tls_ctx *tls_ctx = listen ? tool_tls_server(&tls) : tool_tls_client(&tls);

    int fd = open_socket(listen, host, port, timeout_ms);
    struct tcpmsg_conn *c;
    struct tcpmsg_conn_opts opts = {.flush = TCPMSG_FLUSH_MANUAL};
    int r = tcpmsg_conn_open(&c, fd, &codec, &opts);
    if (r < 0)
        tool_die("%s", tcpmsg_strerror(r));
    tool_tls_start(c, tls_ctx, &tls, host,
                   timeout_ms ? tcpmsg_deadline_in(timeout_ms) : tcpmsg_deadline_in(30000));

    struct tool_input in;
    tool_input_open(&in, raw, max_frame);
    bool half_closed = false;
    uint64_t received = 0, progress_mark = 0;
    int64_t last_progress = tcpmsg_now_ms();
    for (;;) {
        const uint8_t *data;
        size_t len;
        while (tool_input_next(&in, &data, &len)) {
            r = tcpmsg_conn_send(c, data, len, TCPMSG_NOWAIT);
            if (r == -EINVAL || r == -EMSGSIZE)
                tool_die("input %llu cannot be sent with %s framing: %s",
                         (unsigned long long)(raw ? 1 : in.line_no), framing,
                         r == -EMSGSIZE ? "too long" : "wrong size or forbidden bytes");
            if (r < 0)
                tool_die("sending: %s", tool_recv_error(r));
        }
        r = tcpmsg_conn_flush(c, TCPMSG_NOWAIT);
        if (r < 0 && r != -ETIMEDOUT)
            tool_die("sending: %s", tool_recv_error(r));
        size_t queued = tcpmsg_conn_output(c, NULL);
        if (in.eof && queued == 0 && !half_closed) {
            /* Everything is sent: the peer reads our end of stream, we read on. */
            if ((r = tcpmsg_conn_shutdown(c, TCPMSG_NOWAIT)) < 0)
                tool_die("shutdown: %s", tool_recv_error(r));
            half_closed = true;
        }

        struct tcpmsg_frame f;
        while ((r = tcpmsg_conn_recv(c, &f, TCPMSG_NOWAIT)) == 0) {
            tool_print_frame(f.data, f.len, raw, hex);
            if (++received == count)
                break;
        }
        if (received == count && count) {
            r = 0;
            break;
        }
        if (r == TCPMSG_EOF && in.eof && queued == 0)
            break; /* both ends said everything */
        if (r != -ETIMEDOUT && r != TCPMSG_EOF)
            tool_die("%s", tool_recv_error(r));

        fflush(stdout);
        struct tcpmsg_conn_stats st;
        tcpmsg_conn_stats(c, &st);
        if (st.bytes_in + st.bytes_out + in.line_no != progress_mark) {
            progress_mark = st.bytes_in + st.bytes_out + in.line_no;
            last_progress = tcpmsg_now_ms();
        }
        int wait = timeout_ms ? tcpmsg_deadline_left(last_progress + timeout_ms) : -1;
        if (wait == 0)
            tool_die("nothing moved for %.1f s", timeout_ms / 1000.0);
        struct pollfd p[2] = {
            {.fd = fd, .events = (short)((r == TCPMSG_EOF ? 0 : POLLIN) | (queued ? POLLOUT : 0))},
            {.fd = in.eof || queued >= OUTPUT_HIGH ? -1 : STDIN_FILENO, .events = POLLIN},
        };
        if (poll(p, 2, wait) < 0 && errno != EINTR)
            tool_die("poll: %s", strerror(errno));
        if (p[1].revents)
            tool_input_read(&in);
    }
    tool_input_close(&in);
    fflush(stdout);
    r = tcpmsg_conn_close(c, tcpmsg_deadline_in(timeout_ms ? timeout_ms : 1000));
    (void)r; /* the exchange is complete: how the peer ends does not change the result */
    tcpmsg_tls_ctx_destroy(tls_ctx);
    return ferror(stdout) ? EXIT_RUNTIME : 0;
}
