/* tcpmsg-calc: asks tcpmsg-calc-server for one result (protocol in calc_proto.h) and prints
 * it: tcpmsg-calc localhost 7000 '6 * 7' prints 42; '1.5 + 1' prints 2.5. */
#define _GNU_SOURCE /* POSIX and Linux interfaces under -std=c11 */
#include "common.h"
#include "calc_proto.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void
usage(void)
{
    printf("Usage: %s [OPTION]... HOST PORT EXPR...\n"
           "Ask a tcpmsg-calc-server for the value of EXPR: NUMBER OP NUMBER, with OP one of\n"
           "+ - * / %% (the words of EXPR are joined with spaces). Integers stay integers\n"
           "(64-bit, division truncates); a number with '.' or an exponent is a double.\n"
           "\n"
           "  -t, --timeout SEC   give up after SEC seconds [10]\n"
           "  -h, --help          this help\n"
           "  -V, --version       the version\n",
           tool_name());
    exit(0);
}

/* Parses a number at *p and advances past it; false when there is none. */
static bool
parse_number(const char **p, struct calc_number *n)
{
    const char *s = *p;
    while (*s == ' ')
        s++;
    char *end;
    errno = 0;
    long long i = strtoll(s, &end, 10);
    if (end != s && !(*end && strchr(".eEnNiIxXpP", *end)) && errno == 0) {
        *n = (struct calc_number){.is_double = false, .i = i};
    } else {
        errno = 0;
        double d = strtod(s, &end);
        if (end == s || errno == ERANGE)
            return false;
        *n = (struct calc_number){.is_double = true, .d = d};
    }
    *p = end;
    return true;
}

static void
print_number(const struct calc_number *n)
{
    if (n->is_double) {
        /* The shortest text that reads back as the same double (what Python prints). */
        char text[32];
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(text, sizeof text, "%.*g", prec, n->d);
            if (strtod(text, NULL) == n->d || n->d != n->d)
                break;
        }
        printf("%s%s\n", text, strpbrk(text, ".eni") ? "" : ".0"); /* 2.0, not 2 */
    } else
        printf("%lld\n", (long long)n->i);
}

int
main(int argc, char **argv)
{
    tool_init(argv[0]);
    static const struct option longopts[] = {{"timeout", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    int timeout_ms = 10000;
    int opt;
    /* "+" stops at the first operand: "-3 + 1" is an expression, not options. */
    while ((opt = getopt_long(argc, argv, "+:t:hV", longopts, NULL)) != -1) {
        switch (opt) {
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
    if (argc - optind < 3)
        tool_usage("missing HOST, PORT or EXPR");
    const char *host = argv[optind], *port = argv[optind + 1];
    char expr[1024] = "";
    for (int i = optind + 2; i < argc; i++)
        if (snprintf(expr + strlen(expr), sizeof expr - strlen(expr), "%s%s",
                     i > optind + 2 ? " " : "", argv[i]) >= (int)(sizeof expr - strlen(expr)))
            tool_usage("the expression is too long");

    static const char ops[] = "+-*/%";
    struct calc_number a, b;
    const char *p = expr;
    if (!parse_number(&p, &a))
        tool_usage("'%s': expected a number first", expr);
    while (*p == ' ')
        p++;
    const char *op = *p ? strchr(ops, *p) : NULL;
    if (!op)
        tool_usage("'%s': expected one of + - * / %% after the first number", expr);
    p++;
    if (!parse_number(&p, &b) || strspn(p, " ") != strlen(p))
        tool_usage("'%s': expected a number after the operator, and nothing more", expr);

    struct tcpmsg_codec codec;
    calc_codec(&codec);
    struct tcpmsg_conn *c;
    int64_t dl = tcpmsg_deadline_in(timeout_ms); /* one deadline for the whole exchange */
    int r = tcpmsg_conn_connect(&c, host, port, &codec, NULL, dl);
    if (r < 0)
        tool_die("cannot connect to %s port %s: %s", host, port, tcpmsg_strerror(r));

    uint8_t field[2], body[2 * CALC_NUMBER_SIZE];
    tcpmsg_wire_put_u16(field, (uint16_t)(CALC_ADD + (op - ops)));
    struct tcpmsg_wire_writer w;
    tcpmsg_wire_writer_init(&w, body, sizeof body);
    calc_write_number(&w, &a);
    calc_write_number(&w, &b);
    struct iovec v = {body, sizeof body};
    r = tcpmsg_conn_send_fields(c, field, sizeof field, &v, 1, dl);
    struct tcpmsg_frame f;
    if (r == 0)
        r = tcpmsg_conn_recv(c, &f, dl);
    if (r < 0)
        tool_die("%s port %s: %s", host, port, tool_recv_error(r));

    int status = 0;
    struct tcpmsg_wire_reader rd;
    tcpmsg_wire_reader_init(&rd, f.data, f.len);
    struct calc_number result;
    if (calc_type(&f) == CALC_RESULT && calc_read_number(&rd, &result)) {
        print_number(&result);
    } else if (calc_type(&f) == CALC_ERROR) {
        tool_warn("%s: %.*s", expr, (int)f.len, (const char *)f.data);
        status = EXIT_RUNTIME;
    } else {
        tool_warn("the server answered something unexpected");
        status = EXIT_RUNTIME;
    }
    tcpmsg_conn_close(c, dl);
    return status;
}
