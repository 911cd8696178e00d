/* tcpmsg-echo-server: sends every frame back, unchanged and in order, under any server
 * model (the course's "server 4321"). The port it listens on is printed on stdout; one line
 * per connection opened and closed goes to stderr. SIGINT/SIGTERM: stop accepting, finish
 * the frames already received, exit 0. With --tls-cert and --tls-key it serves TLS only. */
#define _GNU_SOURCE /* POSIX and Linux interfaces under -std=c11 */
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Noreturn void
usage(void)
{
    printf("Usage: %s [OPTION]... PORT\n"
           "       %s [OPTION]... unix:PATH | unix:@NAME\n"
           "Started by systemd socket activation (LISTEN_FDS), it serves that socket and\n"
           "PORT may be left out. SIGHUP: a new copy (the program now at the same path)\n"
           "takes the listening socket over, and this one finishes its connections and exits.\n"
           "Echo every frame back to its sender. PORT 0 picks a free port; the port (or the\n"
           "Unix address) is printed on stdout once the server listens.\n"
           "\n"
           "  -m, --mode MODE          iterative, fork, thread, pool or event [event]\n"
           "  -f, --framing F          len32 (4-byte big-endian length), line, fixed:N, or\n"
           "                           any of len8 len16 len24 len64 varint lf crlf delim:HEX\n"
           "                           [len32]\n"
           "  -b, --bind ADDR          address to listen on [all, IPv4 and IPv6]\n"
           "  -s, --max-frame BYTES    largest frame; a peer announcing more is closed\n"
           "                           [16777216]\n"
           "  -i, --idle-timeout SEC   close connections silent this long, 0: never [60]\n"
           "  -F, --frame-timeout SEC  close a peer that takes longer to finish a frame it\n"
           "                           started (slowloris), 0: never [10]\n"
           "  -c, --max-conns N        connections served at once, more are refused\n"
           "                           [1024; fork: 64; pool: the workers; iterative: 1]\n"
           "  -w, --workers N          pool: workers [2 x CPUs]; event: threads [CPUs]\n"
           "      --socket-mode OCTAL  unix:PATH: the socket file's permissions, e.g. 660\n"
           "                           [as the umask leaves them]\n"
           "      --max-conns-per-client N  connections one client address may hold; more\n"
           "                           are refused [no limit]\n"
           "      --conn-rate-per-client N  new connections per second one client address\n"
           "                           may open (bursts of N) [no limit]\n"
           "      --proxy-protocol     behind a load balancer: every connection begins with\n"
           "                           a PROXY protocol header (v1 or v2), whose client\n"
           "                           address is the one logged; without one it is closed\n"
           "      --proxy-from ADDR[/PREFIX]  only these balancers may connect (repeatable;\n"
           "                           implies --proxy-protocol)\n"
           TOOL_TLS_SERVER_HELP
           "  -h, --help               this help\n"
           "  -V, --version            the version\n",
           tool_name(), tool_name());
    exit(0);
}

/* SIGHUP: a new copy of the program (the binary now at the path this one was started
 * from: an upgrade) takes the listener, and this one finishes. Signals go to this thread
 * (blocked everywhere else), since a hand-over cannot run in a signal handler. */
static struct tcpmsg_server *hup_server;
static char **hup_argv;
static char hup_path[4096];
static atomic_bool hup_busy; /* a hand-over runs: main waits for its last word at exit */

static void *
hup_thread(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    for (;;) {
        int sig;
        if (sigwait(&set, &sig) != 0)
            continue;
        atomic_store(&hup_busy, true);
        tool_warn("SIGHUP: handing the listener over to a new copy");
        int pid = tcpmsg_server_handover(hup_server, hup_path, hup_argv, 10000);
        if (pid > 0) { /* the server is stopping now */
            tool_warn("handed over to pid %d; finishing the connections open here", pid);
            return NULL;
        }
        if (pid == -ESHUTDOWN) /* it was stopping anyway */
            return NULL;
        tool_warn("the hand-over failed (%s); serving on", tcpmsg_strerror(pid));
        atomic_store(&hup_busy, false);
    }
}

static int
echo(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    return tcpmsg_conn_send(c, m->data, m->len, TCPMSG_FOREVER); /* queued by the server */
}

int
main(int argc, char **argv)
{
    tool_init(argv[0]);
    static const struct option longopts[] = {{"mode", required_argument, NULL, 'm'},
                                             {"framing", required_argument, NULL, 'f'},
                                             {"bind", required_argument, NULL, 'b'},
                                             {"max-frame", required_argument, NULL, 's'},
                                             {"idle-timeout", required_argument, NULL, 'i'},
        {"frame-timeout", required_argument, NULL, 'F'},
                                             {"max-conns", required_argument, NULL, 'c'},
                                             {"workers", required_argument, NULL, 'w'},
                                             {"socket-mode", required_argument, NULL, 'M'},
                                             {"proxy-protocol", no_argument, NULL, 'P'},
                                             {"max-conns-per-client", required_argument, NULL,
                                              'K'},
                                             {"conn-rate-per-client", required_argument, NULL,
                                              'Q'},
                                             {"proxy-from", required_argument, NULL, 'R'},
                                             TOOL_TLS_SERVER_OPTIONS,
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    struct tcpmsg_server_config cfg = {.handle_signals = true, .log = tool_log_server};
    const char *framing = "len32";
    uint64_t max_frame = 0;
    struct tool_tls tls = {0};
    const char **proxy_from = calloc((size_t)argc + 1, sizeof *proxy_from); /* NULL-ended */
    int nproxy_from = 0;
    if (!proxy_from)
        tool_die("out of memory");
    int opt;
    while ((opt = getopt_long(argc, argv, ":m:f:b:s:i:F:c:w:hV", longopts, NULL)) != -1) {
        if (tool_tls_option(&tls, opt, optarg))
            continue;
        switch (opt) {
        case 'm':
            if (tcpmsg_model_parse(optarg, &cfg.model) < 0)
                tool_usage("--mode: '%s' is not iterative, fork, thread, pool or event", optarg);
            break;
        case 'f':
            framing = optarg;
            break;
        case 'b':
            cfg.host = optarg;
            break;
        case 's':
            max_frame = tool_uint("--max-frame", optarg, 1, UINT32_MAX);
            break;
        case 'i': {
            int ms = tool_seconds_ms("--idle-timeout", optarg);
            cfg.idle_timeout_ms = ms ? ms : -1;
            break;
        }
        case 'F': {
            int ms = tool_seconds_ms("--frame-timeout", optarg);
            cfg.frame_timeout_ms = ms ? ms : -1;
            break;
        }
        case 'c':
            cfg.max_conns = (int)tool_uint("--max-conns", optarg, 1, 1000000);
            break;
        case 'w':
            cfg.workers = (int)tool_uint("--workers", optarg, 1, 1024);
            break;
        case 'M': {
            char *end;
            long mode = strtol(optarg, &end, 8);
            if (!*optarg || *end || mode <= 0 || mode > 0777)
                tool_usage("--socket-mode: '%s' is not an octal mode such as 660", optarg);
            cfg.listen.unix_mode = (int)mode;
            break;
        }
        case 'P':
            cfg.proxy_protocol = true;
            break;
        case 'K':
            cfg.max_conns_per_client = (int)tool_uint("--max-conns-per-client", optarg, 1, 1000000);
            break;
        case 'Q':
            cfg.conn_rate_per_client = (int)tool_uint("--conn-rate-per-client", optarg, 1, 1000000);
            break;
        case 'R':
            proxy_from[nproxy_from++] = optarg;
            cfg.proxy_protocol = true;
            cfg.proxy_from = proxy_from;
            break;
        case 'h':
            usage();
        case 'V':
            tool_version();
        default:
            tool_bad_option(opt, argv);
        }
    }
    /* Started by systemd (or systemd-socket-activate) with a socket: that one is served,
     * and PORT may be left out. An offer that cannot be used is an error, never a reason to
     * bind a socket of our own. */
    int inherited[8];
    char names[8][TCPMSG_FDNAME_MAX];
    int ninh = tcpmsg_sock_inherited(inherited, names, 8);
    if (ninh < 0)
        tool_die("the sockets systemd passed (LISTEN_FDS): %s", tcpmsg_strerror(ninh));
    if (ninh > 1)
        tool_die("systemd passed %d sockets; one listening socket is served", ninh);
    if (optind != argc - 1 && !(ninh == 1 && optind == argc)) /* PORT, or an inherited one */
        tool_usage(optind < argc ? "too many arguments" : "missing PORT");
    const char *where = optind < argc ? argv[optind] : "";
    bool un = strncmp(where, "unix:", 5) == 0;
    if (un && cfg.host)
        tool_usage("--bind is for a port, not with %s", where);
    if (!un && cfg.listen.unix_mode)
        tool_usage("--socket-mode is for a unix:PATH address");
    if (ninh == 1) {
        cfg.listen_fd = inherited[0];
        un = false;
    } else if (un) {
        cfg.host = where;
    } else {
        cfg.port = where;
    }
    struct tcpmsg_codec codec;
    tool_framing("--framing", framing, max_frame, &codec);
    cfg.codec = &codec;
    cfg.tls_ctx = tool_tls_server(&tls);
    cfg.handshake_timeout_ms = tls.handshake_ms;

    struct tcpmsg_handler h = {.on_message = echo};
    struct tcpmsg_server *s;
    cfg.handover = true; /* one listener for every worker: SIGHUP passes it on whole */
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, NULL); /* for every thread: hup_thread waits for it */
    int r = tcpmsg_server_create(&s, &cfg, &h);
    if (r == -EINVAL && cfg.proxy_from)
        tool_usage("--proxy-from: an address or a prefix such as 10.0.0.0/8 or ::1 expected");
    if (r < 0 && ninh == 1)
        tool_die("cannot serve the socket systemd passed: %s", tcpmsg_strerror(r));
    if (r < 0 && un)
        tool_die("cannot listen on %s: %s", where, tcpmsg_strerror(r));
    if (r < 0)
        tool_die("cannot listen on %s port %s: %s", cfg.host ? cfg.host : "all addresses", cfg.port,
                 tcpmsg_strerror(r));
    char on[TCPMSG_ADDR_STRLEN + TCPMSG_FDNAME_MAX + 64];
    bool handed = ninh == 1 && strcmp(names[0], "handover") == 0; /* from a SIGHUP */
    struct tcpmsg_addr la;
    if (ninh == 1 && tcpmsg_addr_local(inherited[0], &la) == 0 &&
        tcpmsg_addr_family(&la) == TCPMSG_FAMILY_UNIX) {
        char text[TCPMSG_ADDR_STRLEN];
        tcpmsg_addr_format(&la, text, sizeof text);
        printf("%s\n", text);
        fflush(stdout);
        snprintf(on, sizeof on, "%s (%s%s%s)", text, handed ? "handed over" : "from systemd",
                 names[0][0] && !handed ? ": " : "", handed ? "" : names[0]);
    } else if (ninh == 1) {
        tool_print_port(tcpmsg_server_port(s));
        snprintf(on, sizeof on, "port %d (%s%s%s)", tcpmsg_server_port(s),
                 handed ? "handed over" : "from systemd", names[0][0] && !handed ? ": " : "",
                 handed ? "" : names[0]);
    } else if (un) {
        printf("%s\n", where); /* as a port is: a script waits for this line */
        fflush(stdout);
        snprintf(on, sizeof on, "%s", where);
    } else {
        tool_print_port(tcpmsg_server_port(s));
        snprintf(on, sizeof on, "port %d", tcpmsg_server_port(s));
    }
    tool_warn("listening on %s (%s model, %s framing, frames up to %llu bytes%s%s)", on,
              tcpmsg_model_name(cfg.model), framing,
              (unsigned long long)tcpmsg_codec_max_payload(&codec), cfg.tls_ctx ? ", TLS" : "",
              cfg.proxy_protocol ? ", PROXY protocol" : "");
    hup_server = s;
    hup_argv = argv;
    ssize_t pl = readlink("/proc/self/exe", hup_path, sizeof hup_path - 1);
    if (pl > 0 && (size_t)pl < sizeof hup_path - 1) {
        hup_path[pl] = '\0';
        char *deleted = strstr(hup_path, " (deleted)"); /* replaced on disk: the new one */
        if (deleted && deleted[10] == '\0')
            *deleted = '\0';
    } else {
        snprintf(hup_path, sizeof hup_path, "/proc/self/exe");
    }
    pthread_t hupt;
    bool hup_on = pthread_create(&hupt, NULL, hup_thread, NULL) == 0;
    if (!hup_on)
        tool_warn("no SIGHUP hand-over: cannot start its thread");
    r = tcpmsg_server_run(s);
    if (hup_on && atomic_load(&hup_busy))
        pthread_join(hupt, NULL); /* its stop ended run: its line comes before ours */
    /* What an operator (or a test of a restart) checks: every frame read was answered. */
    struct tcpmsg_server_stats st;
    tcpmsg_server_stats(s, &st);
    tool_warn("stopped: %llu connections, %llu frames in, %llu frames out",
              (unsigned long long)st.accepted, (unsigned long long)st.msgs_in,
              (unsigned long long)st.msgs_out);
    tcpmsg_server_destroy(s);
    tcpmsg_tls_ctx_destroy(cfg.tls_ctx);
    free(proxy_from);
    if (r < 0)
        tool_die("%s", tcpmsg_strerror(r));
    return 0;
}
