/* tcpmsg-chat: a chat room. Every line a client sends goes to every other client, prefixed
 * with the sender's address; try it with `nc localhost PORT` in a few terminals.
 *
 * Event-driven on one worker thread: all members live in that thread, so a handler can
 * send to any of them (the server writes their output at the end of the loop turn). A
 * member that does not read cannot stall the room: once its queued output passes
 * --max-output it is dropped (reset), the others go on. stdout: the port. */
#define _GNU_SOURCE /* POSIX and Linux interfaces under -std=c11 */
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void
usage(void)
{
    printf("Usage: %s [OPTION]... PORT\n"
           "A chat room over lines of text (PORT 0: any free port, printed on stdout).\n"
           "\n"
           "  -b, --bind ADDR          address to listen on [all, IPv4 and IPv6]\n"
           "  -o, --max-output BYTES   drop a member with more than this waiting to be\n"
           "                           sent to it [1048576]\n"
           "  -L, --max-line BYTES     longest line [4096]\n"
           "  -h, --help               this help\n"
           "  -V, --version            the version\n",
           tool_name());
    exit(0);
}

/* A member: the connection and its name, the address as "[host]:port" or "host:port". */
struct member {
    struct tcpmsg_conn *c;
    char name[TCPMSG_ADDR_STRLEN];
    struct member *prev, *next;
};

static struct member *members;
static int count;

/* Sends one line to every member but `from`; drops those that cannot take it. */
static void broadcast(const struct member *from, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
broadcast(const struct member *from, const char *fmt, ...)
{
    char line[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    for (struct member *m = members; m; m = m->next) {
        if (m == from)
            continue;
        int r = tcpmsg_conn_send(m->c, line, len, TCPMSG_NOWAIT);
        if (r == -ENOBUFS) {
            tool_warn("%s is too slow to read: dropped", m->name);
            tcpmsg_server_drop(m->c, -ENOBUFS);
        }
    }
}

static int
on_open(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    struct member *m = calloc(1, sizeof *m);
    struct tcpmsg_addr peer;
    if (!m)
        return -ENOMEM;
    m->c = c;
    /* "127.0.0.1:5000" rather than the dual-stack socket's "[::ffff:127.0.0.1]:5000". */
    if (tcpmsg_addr_peer(tcpmsg_conn_fd(c), &peer) < 0 || (tcpmsg_addr_unmap(&peer), false) ||
        tcpmsg_addr_format(&peer, m->name, sizeof m->name) < 0)
        strcpy(m->name, "?");
    char hello[128];
    int n = snprintf(hello, sizeof hello, "* welcome %s, %d other%s here", m->name, count,
                     count == 1 ? " is" : "s are");
    tcpmsg_conn_send(c, hello, (size_t)n, TCPMSG_NOWAIT);
    broadcast(NULL, "* %s joined", m->name);
    m->next = members;
    if (members)
        members->prev = m;
    members = m;
    count++;
    tcpmsg_conn_set_user(c, m);
    return 0;
}

static int
on_line(struct tcpmsg_conn *c, const struct tcpmsg_frame *line, void *user)
{
    (void)user;
    struct member *m = tcpmsg_conn_user(c);
    size_t len = line->len;
    while (len && line->data[len - 1] == '\r') /* "text\r\r\n": the room sends "text\n" */
        len--;
    broadcast(m, "%s: %.*s", m->name, (int)len, (const char *)line->data);
    return 0;
}

static void
on_close(struct tcpmsg_conn *c, int reason, void *user)
{
    (void)user;
    struct member *m = tcpmsg_conn_user(c);
    if (m->prev)
        m->prev->next = m->next;
    else
        members = m->next;
    if (m->next)
        m->next->prev = m->prev;
    count--;
    broadcast(NULL, "* %s left (%s)", m->name,
              reason == TCPMSG_EOF ? "bye" : tcpmsg_strerror(reason));
    free(m);
}

int
main(int argc, char **argv)
{
    tool_init(argv[0]);
    static const struct option longopts[] = {
        {"bind", required_argument, NULL, 'b'},     {"max-output", required_argument, NULL, 'o'},
        {"max-line", required_argument, NULL, 'L'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},        {NULL, 0, NULL, 0}};
    struct tcpmsg_server_config cfg = {
        .workers = 1,          /* one thread owns every member: handlers may send to all of them */
        .idle_timeout_ms = -1, /* people may listen for hours without saying a word */
        .handle_signals = true,
        .log = tool_log_server,
    };
    size_t max_output = 1024 * 1024, max_line = 4096;
    int opt;
    while ((opt = getopt_long(argc, argv, ":b:o:L:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            cfg.host = optarg;
            break;
        case 'o':
            max_output = tool_uint("--max-output", optarg, 1024, UINT32_MAX);
            break;
        case 'L':
            max_line = tool_uint("--max-line", optarg, 1, 4096);
            break;
        case 'h':
            usage();
        case 'V':
            tool_version();
        default:
            tool_bad_option(opt, argv);
        }
    }
    if (argc - optind != 1)
        tool_usage(optind < argc ? "too many arguments" : "missing PORT");
    cfg.port = argv[optind];
    /* Lines end with "\n" or "\r\n" (nc and telnet alike); the room sends "\n". */
    struct tcpmsg_codec lines;
    tcpmsg_codec_init_delim(
        &lines, &(struct tcpmsg_delim_config){.mode = TCPMSG_DELIM_ANY_EOL, .max_len = max_line});
    cfg.codec = &lines;
    /* Sends beyond max_output fail with -ENOBUFS: that member is dropped. The server stops
     * reading from a member whose output passed output_high, so keep it below. */
    cfg.conn.max_output = max_output;
    cfg.output_high = max_output / 4;

    struct tcpmsg_handler h = {.on_open = on_open, .on_message = on_line, .on_close = on_close};
    struct tcpmsg_server *s;
    int r = tcpmsg_server_create(&s, &cfg, &h);
    if (r < 0)
        tool_die("cannot listen on port %s: %s", cfg.port, tcpmsg_strerror(r));
    tool_print_port(tcpmsg_server_port(s));
    r = tcpmsg_server_run(s);
    tcpmsg_server_destroy(s);
    if (r < 0)
        tool_die("%s", tcpmsg_strerror(r));
    return 0;
}
