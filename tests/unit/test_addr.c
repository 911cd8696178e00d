/* tcpmsg/addr.h and tcpmsg/deadline.h: parsing, formatting, resolving (numeric and
 * /etc/hosts only: no test depends on DNS), the monotonic deadlines. */
#include "testutil.h"

#include "tcpmsg/addr.h"
#include "tcpmsg/deadline.h"

#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *text, *host, *port;
} split_ok[] = {
    {"localhost:80", "localhost", "80"},
    {"127.0.0.1:8080", "127.0.0.1", "8080"},
    {"[::1]:8080", "::1", "8080"},
    {"[::1]", "::1", ""},
    {"::1", "::1", ""},
    {"fe80::1:2", "fe80::1:2", ""}, /* two colons: all host */
    {"[fe80::1%lo]:7", "fe80::1%lo", "7"},
    {"example.org", "example.org", ""},
    {":443", "", "443"},
    {"host:http", "host", "http"},
    {"", "", ""},
    {"[]:1", "", "1"},
};

static const char *split_bad[] = {
    "[::1", "[::1]x", "[::1]:", "host:", "host:8 0", "host:8/", "[a]b]:1", "a[b:1", "[::1]:80:",
};

START_TEST(split)
{
    char host[64], port[16];
    for (size_t i = 0; i < sizeof split_ok / sizeof split_ok[0]; i++) {
        ck_assert_msg(tcpmsg_addr_split(split_ok[i].text, host, sizeof host, port, sizeof port) ==
                          0,
                      "%s", split_ok[i].text);
        ck_assert_str_eq(host, split_ok[i].host);
        ck_assert_str_eq(port, split_ok[i].port);
    }
    for (size_t i = 0; i < sizeof split_bad / sizeof split_bad[0]; i++) {
        strcpy(host, "junk");
        ck_assert_msg(tcpmsg_addr_split(split_bad[i], host, sizeof host, port, sizeof port) ==
                          -EINVAL,
                      "%s", split_bad[i]);
        ck_assert_str_eq(host, ""); /* out-parameters reset */
    }
    ck_assert_int_eq(tcpmsg_addr_split("abcdef:1", host, 6, port, sizeof port), -ENOBUFS);
    ck_assert_str_eq(host, "");
    ck_assert_int_eq(tcpmsg_addr_split("abcde:123", host, 6, port, 3), -ENOBUFS);
    ck_assert_int_eq(tcpmsg_addr_split("abcde:12", host, 6, port, 3), 0);
    ck_assert_int_eq(tcpmsg_addr_split(NULL, host, 6, port, 3), -EINVAL);
}
END_TEST

/* Text that parses and formats back to itself. */
static const char *roundtrip[] = {
    "127.0.0.1:8080",       "0.0.0.0:0",         "255.255.255.255:65535", "[::1]:8080", "[::]:1",
    "[::ffff:10.0.0.1]:80", "[2001:db8::1]:443", "[fe80::1%lo]:22",
};

START_TEST(parse_format)
{
    char out[TCPMSG_ADDR_STRLEN];
    struct tcpmsg_addr a, b;
    for (size_t i = 0; i < sizeof roundtrip / sizeof roundtrip[0]; i++) {
        ck_assert_msg(tcpmsg_addr_parse(roundtrip[i], &a) == 0, "%s", roundtrip[i]);
        int n = tcpmsg_addr_format(&a, out, sizeof out);
        ck_assert_int_eq(n, (int)strlen(roundtrip[i]));
        ck_assert_str_eq(out, roundtrip[i]);
        ck_assert_int_eq(tcpmsg_addr_parse(out, &b), 0);
        ck_assert(tcpmsg_addr_equal(&a, &b));
        /* One byte short: -ENOBUFS, and still a terminated string. */
        ck_assert_int_eq(tcpmsg_addr_format(&a, out, (size_t)n), -ENOBUFS);
        ck_assert_int_eq(out[n - 1], '\0');
    }
    /* The numeric scope form parses too, and formats with the interface's name. */
    char scoped[64];
    snprintf(scoped, sizeof scoped, "[fe80::1%%%u]:22", if_nametoindex("lo"));
    ck_assert_int_eq(tcpmsg_addr_parse(scoped, &a), 0);
    tcpmsg_addr_format(&a, out, sizeof out);
    ck_assert_str_eq(out, "[fe80::1%lo]:22");

    ck_assert_int_eq(tcpmsg_addr_parse("::1", &a), 0); /* no port: 0 */
    ck_assert_int_eq(tcpmsg_addr_port(&a), 0);
    ck_assert_int_eq(tcpmsg_addr_family(&a), TCPMSG_FAMILY_V6);
    ck_assert_int_eq(tcpmsg_addr_parse("10.1.2.3", &a), 0);
    ck_assert_int_eq(tcpmsg_addr_family(&a), TCPMSG_FAMILY_V4);

    const char *bad[] = {"localhost:80", "1.2.3.4:65536", "1.2.3.4:http",      "[1.2.3.4]:80",
                         "1.2.3:80",     "[::1%]:80",     "[::1%nosuchif0]:1", "",
                         "1.2.3.4:-1",   "[::g]:1",       "1.2.3.4:000080"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        a.len = 99;
        ck_assert_msg(tcpmsg_addr_parse(bad[i], &a) == -EINVAL, "%s", bad[i]);
        ck_assert_int_eq(a.len, 0);
    }

    struct tcpmsg_addr none;
    memset(&none, 0, sizeof none);
    ck_assert_int_eq(tcpmsg_addr_format(&none, out, sizeof out), -EAFNOSUPPORT);
    ck_assert_str_eq(out, "-");
    ck_assert_int_eq(tcpmsg_addr_format(NULL, out, sizeof out), -EAFNOSUPPORT);
    ck_assert_int_eq(tcpmsg_addr_format(&a, NULL, 0), -ENOBUFS);
    ck_assert_int_eq(tcpmsg_addr_port(&none), -EAFNOSUPPORT);
    ck_assert_int_eq(tcpmsg_addr_set_port(&none, 1), -EAFNOSUPPORT);
    ck_assert_int_eq(tcpmsg_addr_parse("10.1.2.3", &a), 0);
    ck_assert_int_eq(tcpmsg_addr_set_port(&a, 65536), -EINVAL);
    ck_assert_int_eq(tcpmsg_addr_set_port(&a, 65535), 0);
    ck_assert_int_eq(tcpmsg_addr_port(&a), 65535);
    ck_assert(!tcpmsg_addr_equal(&none, &none));
}
END_TEST

START_TEST(unmap)
{
    struct tcpmsg_addr a, b;
    ck_assert_int_eq(tcpmsg_addr_parse("[::ffff:192.0.2.7]:99", &a), 0);
    ck_assert(tcpmsg_addr_unmap(&a));
    ck_assert_int_eq(tcpmsg_addr_parse("192.0.2.7:99", &b), 0);
    ck_assert(tcpmsg_addr_equal(&a, &b));
    ck_assert(!tcpmsg_addr_unmap(&a)); /* already IPv4 */
    ck_assert_int_eq(tcpmsg_addr_parse("[::1]:99", &a), 0);
    ck_assert(!tcpmsg_addr_unmap(&a));
}
END_TEST

START_TEST(resolve)
{
    struct tcpmsg_addr a[8];
    char out[TCPMSG_ADDR_STRLEN];
    ck_assert_int_eq(tcpmsg_addr_resolve("127.0.0.1", "80", TCPMSG_FAMILY_ANY, 0, a, 8), 1);
    tcpmsg_addr_format(&a[0], out, sizeof out);
    ck_assert_str_eq(out, "127.0.0.1:80");
    ck_assert_int_eq(tcpmsg_addr_resolve("[::1]", "http", TCPMSG_FAMILY_ANY, 0, a, 8), 1);
    tcpmsg_addr_format(&a[0], out, sizeof out);
    ck_assert_str_eq(out, "[::1]:80");
    /* The wildcard when passive, loopback otherwise. */
    ck_assert_int_ge(tcpmsg_addr_resolve(NULL, "7", TCPMSG_FAMILY_V6, TCPMSG_RESOLVE_PASSIVE, a, 8),
                     1);
    tcpmsg_addr_format(&a[0], out, sizeof out);
    ck_assert_str_eq(out, "[::]:7");
    ck_assert_int_ge(tcpmsg_addr_resolve("", "7", TCPMSG_FAMILY_V4, 0, a, 8), 1);
    tcpmsg_addr_format(&a[0], out, sizeof out);
    ck_assert_str_eq(out, "127.0.0.1:7");
    ck_assert_int_ge(
        tcpmsg_addr_resolve(NULL, NULL, TCPMSG_FAMILY_V4, TCPMSG_RESOLVE_PASSIVE, a, 8), 1);
    tcpmsg_addr_format(&a[0], out, sizeof out);
    ck_assert_str_eq(out, "0.0.0.0:0");
    /* A name from /etc/hosts. */
    int n = tcpmsg_addr_resolve("localhost", "9", TCPMSG_FAMILY_V4, 0, a, 8);
    ck_assert_int_ge(n, 1);
    tcpmsg_addr_format(&a[0], out, sizeof out);
    ck_assert_str_eq(out, "127.0.0.1:9");
    ck_assert_int_eq(tcpmsg_addr_resolve("localhost", "9", TCPMSG_FAMILY_ANY, 0, a, 1), 1);

    /* Failures, each with its own code. */
    ck_assert_int_eq(
        tcpmsg_addr_resolve("localhost", "9", TCPMSG_FAMILY_ANY, TCPMSG_RESOLVE_NUMERIC, a, 8),
        TCPMSG_EAI_NONAME);
    ck_assert_int_eq(
        tcpmsg_addr_resolve("127.0.0.1", "no-such-service-x", TCPMSG_FAMILY_ANY, 0, a, 8),
        TCPMSG_EAI_SERVICE);
    int r = tcpmsg_addr_resolve("127.0.0.1", "1", TCPMSG_FAMILY_V6, 0, a, 8);
    ck_assert_msg(r == TCPMSG_EAI_ADDRFAMILY || r == TCPMSG_EAI_NONAME, "%s", tcpmsg_errname(r));
    ck_assert_int_eq(tcpmsg_addr_resolve("[::1", "1", TCPMSG_FAMILY_ANY, 0, a, 8),
                     TCPMSG_EAI_NONAME);
    ck_assert_int_eq(tcpmsg_addr_resolve("::1", "1", TCPMSG_FAMILY_ANY, 0, a, 0), -EINVAL);
    ck_assert_int_eq(tcpmsg_addr_resolve("::1", "1", TCPMSG_FAMILY_ANY, 0, NULL, 1), -EINVAL);
    ck_assert_int_eq(tcpmsg_addr_resolve("::1", "1", (enum tcpmsg_family)5, 0, a, 8), -EINVAL);
    ck_assert_int_eq(tcpmsg_addr_resolve("::1", "1", TCPMSG_FAMILY_ANY, 0x100, a, 8), -EINVAL);
    /* Every resolver failure has text of its own. */
    ck_assert_str_ne(tcpmsg_strerror(TCPMSG_EAI_SERVICE), tcpmsg_strerror(TCPMSG_EAI_NONAME));
}
END_TEST

START_TEST(deadlines)
{
    int64_t now = tcpmsg_now_ms();
    ck_assert_int_gt(now, 0);
    ck_assert_int_ge(tcpmsg_now_ms(), now); /* monotonic */
    ck_assert_int_eq(tcpmsg_deadline_in(-5), TCPMSG_FOREVER);
    ck_assert_int_eq(tcpmsg_deadline_in(INT64_MAX), INT64_MAX);
    int64_t d = tcpmsg_deadline_in(100000);
    ck_assert_int_ge(d, now + 100000);
    int left = tcpmsg_deadline_left(d);
    ck_assert_int_gt(left, 0);
    ck_assert_int_le(left, 100000);
    ck_assert_int_eq(tcpmsg_deadline_left(TCPMSG_FOREVER), -1);
    ck_assert_int_eq(tcpmsg_deadline_left(-7), -1);
    ck_assert_int_eq(tcpmsg_deadline_left(TCPMSG_NOWAIT), 0);
    ck_assert_int_eq(tcpmsg_deadline_left(1), 0);
    ck_assert_int_eq(tcpmsg_deadline_left(INT64_MAX), INT_MAX);
    ck_assert_int_eq(tcpmsg_deadline_left(tcpmsg_deadline_in(0)), 0);
    ck_assert_int_eq(tcpmsg_deadline_min(TCPMSG_FOREVER, 5), 5);
    ck_assert_int_eq(tcpmsg_deadline_min(5, TCPMSG_FOREVER), 5);
    ck_assert_int_eq(tcpmsg_deadline_min(TCPMSG_FOREVER, TCPMSG_FOREVER), TCPMSG_FOREVER);
    ck_assert_int_eq(tcpmsg_deadline_min(7, 5), 5);
    ck_assert_int_eq(tcpmsg_deadline_min(0, 5), 0);
}
END_TEST

static Suite *
make_suite(void)
{
    Suite *s = suite_create("addr");
    TCase *t = tcase_create("addr");
    tcase_add_test(t, split);
    tcase_add_test(t, parse_format);
    tcase_add_test(t, unmap);
    tcase_add_test(t, resolve);
    tcase_add_test(t, deadlines);
    suite_add_tcase(s, t);
    return s;
}

int
main(void)
{
    return tu_run(make_suite());
}
