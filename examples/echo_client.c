/* tcpmsg-echo-client: sends each line of stdin as one frame and prints each echoed frame
 * on its own line (the course's "client host 4321"). Requests are pipelined: lines are sent
 * as fast as the connection takes them while replies come back. Exits 0 at the end of
 * stdin once every reply has arrived; 1 with one line on stderr when the server breaks the
 * protocol, resets, or says nothing for --timeout seconds. */
#define _GNU_SOURCE /* POSIX and Linux interfaces under -std=c11 */
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
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
           "Send each line of stdin as one frame, print each reply on its own line.\n"
           "\n"
           "  -f, --framing F         len32, line, fixed:N, ... as the server [len32]\n"
           "  -s, --max-frame BYTES   largest frame sent or accepted [16777216]\n"
           "  -t, --timeout SEC       give up when the server is silent this long [10]\n"
           TOOL_TLS_CLIENT_HELP
           "  -h, --help              this help\n"
           "  -V, --version           the version\n",
           tool_name());
    exit(0);
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
    if (argc - optind != 2)
        tool_usage(argc - optind < 2 ? "missing HOST or PORT" : "too many arguments");
    const char *host = argv[optind], *port = argv[optind + 1];
    struct tcpmsg_codec codec;
    tool_framing("--framing", framing, max_frame, &codec);
    struct tcpmsg_tls_ctx *tls_ctx = tool_tls_client(&tls);

    /* Connect under the timeout; the connection only queues what it is given (MANUAL) and
     * the loop below writes it when the socket can take it, so stdin and the socket are
     * served at the same time. */
    int fd = tcpmsg_sock_connect(host, port, NULL, tcpmsg_deadline_in(timeout_ms));
    if (fd < 0)
        tool_die("cannot connect to %s port %s: %s", host, port, tcpmsg_strerror(fd));
    struct tcpmsg_conn *c;
    struct tcpmsg_conn_opts opts = {.flush = TCPMSG_FLUSH_MANUAL};
    int r = tcpmsg_conn_open(&c, fd, &codec, &opts);
    if (r < 0)
        tool_die("%s", tcpmsg_strerror(r));
    tool_tls_start(c, tls_ctx, &tls, host, tcpmsg_deadline_in(timeout_ms));

    struct tool_input in;
    tool_input_open(&in, false, max_frame);
    uint64_t sent = 0, received = 0;
    int64_t last_progress = tcpmsg_now_ms();
    uint64_t progress_mark = 0;

    for (;;) {
        /* Queue the lines read so far. */
        const uint8_t *line;
        size_t len;
        while (tool_input_next(&in, &line, &len)) {
            r = tcpmsg_conn_send(c, line, len, TCPMSG_NOWAIT);
            if (r == -EINVAL || r == -EMSGSIZE)
                tool_die("line %llu cannot be sent with %s framing: %s",
                         (unsigned long long)in.line_no, framing,
                         r == -EMSGSIZE ? "too long" : "wrong size or forbidden bytes");
            if (r < 0)
                tool_die("sending: %s", tool_recv_error(r));
            sent++;
        }
        r = tcpmsg_conn_flush(c, TCPMSG_NOWAIT);
        if (r < 0 && r != -ETIMEDOUT)
            tool_die("sending to %s port %s: %s", host, port, tool_recv_error(r));

        /* Print the replies that arrived. */
        struct tcpmsg_frame f;
        while ((r = tcpmsg_conn_recv(c, &f, TCPMSG_NOWAIT)) == 0) {
            if (++received > sent)
                tool_die("the server sent a frame nobody asked for");
            tool_print_frame(f.data, f.len, false, false);
        }
        if (r != -ETIMEDOUT) {
            if (r == TCPMSG_EOF && received < sent)
                tool_die("the server closed the connection with %llu replies missing",
                         (unsigned long long)(sent - received));
            tool_die("%s port %s: %s", host, port, tool_recv_error(r));
        }
        size_t queued = tcpmsg_conn_output(c, NULL);
        if (in.eof && received == sent && queued == 0)
            break;

        /* Wait for stdin (unless it ended or the server lags behind) and for the server. */
        fflush(stdout);
        struct tcpmsg_conn_stats st;
        tcpmsg_conn_stats(c, &st);
        if (st.bytes_in + st.bytes_out != progress_mark) {
            progress_mark = st.bytes_in + st.bytes_out;
            last_progress = tcpmsg_now_ms();
        }
        bool waiting = received < sent || queued > 0;
        struct pollfd p[2] = {
            {.fd = fd, .events = (short)(POLLIN | (queued ? POLLOUT : 0))},
            {.fd = in.eof || queued >= OUTPUT_HIGH ? -1 : STDIN_FILENO, .events = POLLIN},
        };
        int wait = -1;
        if (waiting) {
            wait = (int)tcpmsg_deadline_left(last_progress + timeout_ms);
            if (wait == 0)
                tool_die("no reply from %s port %s for %.1f s (%llu outstanding)", host, port,
                         timeout_ms / 1000.0, (unsigned long long)(sent - received));
        }
        if (poll(p, 2, wait) < 0 && errno != EINTR)
            tool_die("poll: %s", strerror(errno));
        if (p[1].revents)
            tool_input_read(&in);
    }
    tool_input_close(&in);
    fflush(stdout);
    r = tcpmsg_conn_close(c, tcpmsg_deadline_in(timeout_ms));
    tcpmsg_tls_ctx_destroy(tls_ctx);
    /* Every reply has arrived: a server that then ends without TLS's close_notify (Python's
     * ssl does) has cut nothing we were waiting for. */
    if (r < 0 && r != -ETIMEDOUT && r != TCPMSG_ETLSTRUNC)
        tool_die("closing: %s", tool_recv_error(r));
    return ferror(stdout) ? EXIT_RUNTIME : 0;
}
