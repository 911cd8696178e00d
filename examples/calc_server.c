/* tcpmsg-calc-server: answers typed arithmetic requests (protocol in calc_proto.h). Shows
 * a binary protocol with a type field, and integers and doubles in network byte order
 * read and written with tcpmsg/wire.h; any language with a socket and a way to pack bytes
 * can talk to it (see python/calc_client.py). stdout: the port. */
#define _GNU_SOURCE /* POSIX and Linux interfaces under -std=c11 */
#include "common.h"
#include "calc_proto.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void
usage(void)
{
    printf("Usage: %s [OPTION]... PORT\n"
           "Serve the calculator protocol (PORT 0: any free port, printed on stdout).\n"
           "\n"
           "  -m, --mode MODE   iterative, fork, thread, pool or event [event]\n"
           "  -b, --bind ADDR   address to listen on [all, IPv4 and IPv6]\n"
           "  -h, --help        this help\n"
           "  -V, --version     the version\n",
           tool_name());
    exit(0);
}

/* Computes a op b; returns NULL, or the reason it cannot. */
static const char *
compute(uint16_t op, struct calc_number a, struct calc_number b, struct calc_number *out)
{
    if (op < CALC_ADD || op > CALC_MOD)
        return "unknown operation";
    if (a.is_double || b.is_double) {
        double x = a.is_double ? a.d : (double)a.i, y = b.is_double ? b.d : (double)b.i;
        out->is_double = true;
        out->d = op == CALC_ADD   ? x + y
                 : op == CALC_SUB ? x - y
                 : op == CALC_MUL ? x * y
                 : op == CALC_DIV ? x / y
                                  : fmod(x, y);
        return NULL;
    }
    out->is_double = false;
    int64_t x = a.i, y = b.i;
    switch (op) {
    case CALC_ADD:
        return __builtin_add_overflow(x, y, &out->i) ? "integer overflow" : NULL;
    case CALC_SUB:
        return __builtin_sub_overflow(x, y, &out->i) ? "integer overflow" : NULL;
    case CALC_MUL:
        return __builtin_mul_overflow(x, y, &out->i) ? "integer overflow" : NULL;
    default:
        if (y == 0)
            return "division by zero";
        if (x == INT64_MIN && y == -1)
            return "integer overflow";
        out->i = op == CALC_DIV ? x / y : x % y;
        return NULL;
    }
}

static int
reply(struct tcpmsg_conn *c, uint16_t type, const void *body, size_t len)
{
    uint8_t field[2];
    tcpmsg_wire_put_u16(field, type);
    struct iovec v = {(void *)(uintptr_t)body, len};
    return tcpmsg_conn_send_fields(c, field, sizeof field, &v, 1, TCPMSG_FOREVER);
}

static int
on_request(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    struct tcpmsg_wire_reader r;
    tcpmsg_wire_reader_init(&r, m->data, m->len);
    struct calc_number a, b, result;
    if (!calc_read_number(&r, &a) || !calc_read_number(&r, &b) || tcpmsg_wire_reader_left(&r))
        return reply(c, CALC_ERROR, "malformed request", 17);
    const char *why = compute(calc_type(m), a, b, &result);
    if (why)
        return reply(c, CALC_ERROR, why, strlen(why));
    uint8_t body[CALC_NUMBER_SIZE];
    struct tcpmsg_wire_writer w;
    tcpmsg_wire_writer_init(&w, body, sizeof body);
    calc_write_number(&w, &result);
    return reply(c, CALC_RESULT, body, sizeof body);
}

int
main(int argc, char **argv)
{
    tool_init(argv[0]);
    static const struct option longopts[] = {{"mode", required_argument, NULL, 'm'},
                                             {"bind", required_argument, NULL, 'b'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    struct tcpmsg_server_config cfg = {.handle_signals = true, .log = tool_log_server};
    int opt;
    while ((opt = getopt_long(argc, argv, ":m:b:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm':
            if (tcpmsg_model_parse(optarg, &cfg.model) < 0)
                tool_usage("--mode: '%s' is not iterative, fork, thread, pool or event", optarg);
            break;
        case 'b':
            cfg.host = optarg;
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
    struct tcpmsg_codec codec;
    calc_codec(&codec);
    cfg.codec = &codec;
    struct tcpmsg_handler h = {.on_message = on_request};
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
