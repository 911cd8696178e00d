/* tcpmsg-relay: listens, and for each client opens one connection to the upstream server;
 * every frame goes through both ways, in order, re-framed between the two framings (a line
 * client in front of a len32 server, say), with backpressure: a side whose reader is slow
 * stops the other side's reading until its queue drains. A side's end of stream half-closes
 * the other (the replies still come back); its reset or failure ends the other, after what
 * was queued for it is written, with the same reason. Built on the EVENT loop:
 * outbound connections (tcpmsg_worker_dial), pause / resume and on_drain. The port it
 * listens on is printed on stdout; a line per connection and per upstream failure goes to
 * stderr. SIGINT/SIGTERM: stop, finish, exit 0. */
#define _GNU_SOURCE /* POSIX and Linux interfaces under -std=c11 */
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static _Noreturn void
usage(void)
{
    printf("Usage: %s [OPTION]... LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT\n"
           "Relay every frame between each client and a connection of its own to the\n"
           "upstream server, both ways, re-framed. LISTEN_PORT 0 picks a free port; the port\n"
           "is printed on stdout once the relay listens.\n"
           "\n"
           "  -f, --framing F           the clients' framing: len32, line, fixed:N, or any of\n"
           "                            len8 len16 len24 len64 varint lf crlf delim:HEX [len32]\n"
           "  -u, --upstream-framing F  the upstream's framing [the clients']\n"
           "  -b, --bind ADDR           address to listen on [all, IPv4 and IPv6]\n"
           "  -s, --max-frame BYTES     largest frame either way [16777216]\n"
           "  -c, --max-conns N         clients served at once, more are refused [1024]\n"
           "  -w, --workers N           event threads [CPUs]\n"
           "      --proxy-protocol      clients come through a load balancer that sends a\n"
           "                            PROXY protocol header (v1 or v2) first\n"
           "      --send-proxy          send the upstream a PROXY v2 header with each\n"
           "                            client's address, so that it knows the client\n"
           "  -h, --help                this help\n"
           "  -V, --version             the version\n",
           tool_name());
    exit(0);
}

static const char *up_host, *up_port;
static struct tcpmsg_codec up_codec;
static size_t high_water; /* the server's output_high: a side queued past it pauses the other */
static bool send_proxy; /* --send-proxy */

/* A client, its upstream and the dialler between them: all in one worker's thread. */
struct pair {
    struct tcpmsg_conn *client, *up;
    uint64_t dial;
    bool opened; /* the upstream connection was opened */
    int refs; /* the client, the dialler, the upstream connection while open */
    struct pair *next;
};
static _Thread_local struct pair *pairs; /* this worker's */

static void
unref(struct pair *p, int n)
{
    p->refs -= n;
    if (p->refs > 0)
        return;
    for (struct pair **q = &pairs; *q; q = &(*q)->next) {
        if (*q == p) {
            *q = p->next;
            break;
        }
    }
    free(p);
}

/* The dialler is down: an attempt failed (the client is ended with the reason), or the
 * upstream connection it opened has ended (handled in on_close). */
static void
upstream_down(struct tcpmsg_worker *w, uint64_t id, int reason, int64_t retry_ms, void *arg)
{
    (void)w, (void)id, (void)retry_ms;
    struct pair *p = arg;
    if (p->client && !p->opened) {
        tool_warn("upstream %s port %s: %s", up_host, up_port, tcpmsg_strerror(reason));
        (void)tcpmsg_server_close(p->client, reason);
    }
    p->dial = 0;
    unref(p, 1); /* no reconnect: the dialler is gone */
}

static int
on_open(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    uint64_t dial = tcpmsg_conn_dial_id(c);
    if (dial) { /* the upstream of a client */
        for (struct pair *p = pairs; p; p = p->next) {
            if (p->dial == dial) {
                p->up = c;
                p->opened = true;
                p->refs++;
                tcpmsg_conn_set_user(c, p);
                return p->client ? tcpmsg_server_resume(p->client) : -ECANCELED;
            }
        }
        return -ECANCELED; /* its client is gone */
    }
    struct pair *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->client = c;
    p->refs = 2;
    tcpmsg_conn_set_user(c, p);
    struct tcpmsg_dial_opts o = {.codec = &up_codec, .on_down = upstream_down, .arg = p};
    struct tcpmsg_proxy_info pi;
    if (send_proxy) {
        /* Who the client is (behind a balancer: whom it said), and where it connected. */
        memset(&pi, 0, sizeof pi);
        int fd = tcpmsg_conn_fd(c);
        const struct tcpmsg_proxy_info *in = tcpmsg_conn_proxy(c);
        if (in && !in->local)
            pi.dst = in->dst;
        else if (tcpmsg_addr_local(fd, &pi.dst) < 0)
            pi.local = true;
        if (tcpmsg_conn_peer(c, &pi.src) < 0)
            pi.local = true;
        if (tcpmsg_addr_family(&pi.src) == TCPMSG_FAMILY_UNIX)
            pi.local = true; /* an unnamed local client: nothing to tell */
        o.proxy = &pi;
    }
    int r = tcpmsg_worker_dial(tcpmsg_conn_worker(c), up_host, up_port, &o, &p->dial);
    if (r < 0) {
        free(p);
        return r;
    }
    p->next = pairs;
    pairs = p;
    return tcpmsg_server_pause(c); /* its frames wait until the upstream is there */
}

static struct tcpmsg_conn *
other(const struct pair *p, const struct tcpmsg_conn *c)
{
    return c == p->client ? p->up : p->client;
}

static int
on_message(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    struct pair *p = tcpmsg_conn_user(c);
    struct tcpmsg_conn *to = other(p, c);
    if (!to)
        return 0; /* the other side is ending: nothing can go there any more */
    int r = tcpmsg_conn_send(to, m->data, m->len, TCPMSG_FOREVER);
    if (r == -EMSGSIZE)
        return r; /* a frame the other framing cannot carry: this side is closed */
    if (r < 0)
        return r;
    if (tcpmsg_conn_output(to, NULL) > high_water)
        (void)tcpmsg_server_pause(c); /* until to's on_drain */
    return 0;
}

static void
on_drain(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    struct pair *p = tcpmsg_conn_user(c);
    struct tcpmsg_conn *from = p ? other(p, c) : NULL;
    if (from)
        (void)tcpmsg_server_resume(from);
}

/* A side ended its stream (a client half-closed after its last request): the other side is
 * half-closed after what was queued for it, and what it still sends comes back to this side,
 * which ends once both directions have. */
static int
on_eof(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    struct pair *p = tcpmsg_conn_user(c);
    struct tcpmsg_conn *to = p ? other(p, c) : NULL;
    if (!to)
        return TCPMSG_EOF; /* nothing more can come for c */
    (void)tcpmsg_server_shutdown(to);
    return 0;
}

/* Either side ended: the other ends after what was queued for it is written, with the same
 * reason (TCPMSG_EOF: a clean end). */
static void
on_close(struct tcpmsg_conn *c, int reason, void *user)
{
    (void)user;
    struct pair *p = tcpmsg_conn_user(c);
    if (!p)
        return;
    struct tcpmsg_conn *to = other(p, c);
    if (to)
        (void)tcpmsg_server_close(to, reason);
    int n = 1; /* this side's reference */
    if (c == p->client) {
        p->client = NULL;
        if (!to && p->dial && tcpmsg_worker_dial_stop(tcpmsg_conn_worker(c), p->dial) == 0) {
            p->dial = 0;
            n++; /* and the dialler's, stopped before it connected */
        }
    } else {
        p->up = NULL;
    }
    unref(p, n);
}

int
main(int argc, char **argv)
{
    tool_init(argv[0]);
    static const struct option longopts[] = {{"framing", required_argument, NULL, 'f'},
                                             {"upstream-framing", required_argument, NULL, 'u'},
                                             {"bind", required_argument, NULL, 'b'},
                                             {"max-frame", required_argument, NULL, 's'},
                                             {"max-conns", required_argument, NULL, 'c'},
                                             {"workers", required_argument, NULL, 'w'},
                                             {"proxy-protocol", no_argument, NULL, 'P'},
                                             {"send-proxy", no_argument, NULL, 'S'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    struct tcpmsg_server_config cfg = {.handle_signals = true, .log = tool_log_server,
                                       .idle_timeout_ms = -1};
    const char *framing = "len32", *up_framing = NULL;
    uint64_t max_frame = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":f:u:b:s:c:w:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'f':
            framing = optarg;
            break;
        case 'u':
            up_framing = optarg;
            break;
        case 'b':
            cfg.host = optarg;
            break;
        case 's':
            max_frame = tool_uint("--max-frame", optarg, 1, UINT32_MAX);
            break;
        case 'c':
            cfg.max_conns = (int)tool_uint("--max-conns", optarg, 1, 1000000);
            break;
        case 'w':
            cfg.workers = (int)tool_uint("--workers", optarg, 1, 1024);
            break;
        case 'P':
            cfg.proxy_protocol = true;
            break;
        case 'S':
            send_proxy = true;
            break;
        case 'h':
            usage();
        case 'V':
            tool_version();
        default:
            tool_bad_option(opt, argv);
        }
    }
    if (argc - optind != 3)
        tool_usage(argc - optind > 3 ? "too many arguments"
                                     : "missing LISTEN_PORT, UPSTREAM_HOST or UPSTREAM_PORT");
    cfg.port = argv[optind];
    up_host = argv[optind + 1];
    up_port = argv[optind + 2];
    if (!*up_port)
        tool_usage("UPSTREAM_PORT is empty");
    struct tcpmsg_codec codec;
    tool_framing("--framing", framing, max_frame, &codec);
    tool_framing("--upstream-framing", up_framing ? up_framing : framing, max_frame, &up_codec);
    cfg.codec = &codec;
    cfg.model = TCPMSG_MODEL_EVENT;
    high_water = 1024 * 1024; /* and the server pauses a side itself at 4 x this */
    cfg.output_high = 4 * high_water;
    cfg.output_low = high_water / 4;

    struct tcpmsg_handler h = {.on_open = on_open,
                               .on_message = on_message,
                               .on_close = on_close,
                               .on_drain = on_drain,
                               .on_eof = on_eof};
    struct tcpmsg_server *s;
    int r = tcpmsg_server_create(&s, &cfg, &h);
    if (r < 0)
        tool_die("cannot listen on %s port %s: %s", cfg.host ? cfg.host : "all addresses", cfg.port,
                 tcpmsg_strerror(r));
    tool_print_port(tcpmsg_server_port(s));
    tool_warn("listening on port %d, relaying to %s port %s (%s framing, upstream %s)",
              tcpmsg_server_port(s), up_host, up_port, framing, up_framing ? up_framing : framing);
    r = tcpmsg_server_run(s);
    tcpmsg_server_destroy(s);
    if (r < 0)
        tool_die("%s", tcpmsg_strerror(r));
    return 0;
}
