/* tcpmsg/proxy.h: the PROXY protocol header parser against a hostile table: every valid
 * form (v1 TCP4, TCP6, UNKNOWN; v2 PROXY over IPv4, IPv6, Unix, LOCAL, UNSPEC, with TLVs),
 * each cut at every byte (always -EAGAIN, never a wrong answer), and every kind of bad
 * header (signature, version, command, family, transport, lengths, addresses, ports, TLVs
 * that overflow, a header over the bound). */
#include "testutil.h"

#include "tcpmsg/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A v2 header: signature, ver_cmd, fam, then body (len bytes). Returns its size. */
static size_t
v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t len)
{
    memcpy(out, SIG, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    if (len)
        memcpy(out + 16, body, len);
    return 16 + len;
}

/* Every prefix of a valid header is "read more"; the whole is its length. */
static void
assert_cut_everywhere(const uint8_t *h, size_t n)
{
    struct tcpmsg_proxy_info pi;
    for (size_t k = 0; k < n; k++)
        ck_assert_msg(tcpmsg_proxy_parse(h, k, &pi) == -EAGAIN, "cut at %zu of %zu", k, n);
    ck_assert_int_eq(tcpmsg_proxy_parse(h, n, &pi), (int)n);
}

static const char *
text(const struct tcpmsg_addr *a)
{
    static char buf[2][TCPMSG_ADDR_STRLEN];
    static int k;
    char *b = buf[k++ % 2];
    tcpmsg_addr_format(a, b, sizeof buf[0]);
    return b;
}

START_TEST(v1_every_form)
{
    struct tcpmsg_proxy_info pi;
    const char *h4 = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /";
    ck_assert_int_eq(tcpmsg_proxy_parse(h4, strlen(h4), &pi), (int)strlen(h4) - 5);
    ck_assert_int_eq(pi.version, 1);
    ck_assert(!pi.local);
    ck_assert_str_eq(text(&pi.src), "192.0.2.1:56324");
    ck_assert_str_eq(text(&pi.dst), "198.51.100.2:443");
    const char *h6 = "PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n";
    ck_assert_int_eq(tcpmsg_proxy_parse(h6, strlen(h6), &pi), (int)strlen(h6));
    ck_assert_str_eq(text(&pi.src), "[2001:db8::1]:65535");
    ck_assert_str_eq(text(&pi.dst), "[2001:db8::2]:0");
    const char *hu = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    ck_assert_int_eq(tcpmsg_proxy_parse(hu, strlen(hu), &pi), (int)strlen(hu));
    ck_assert(pi.local);
    ck_assert_int_eq(tcpmsg_proxy_parse("PROXY UNKNOWN\r\n", 15, &pi), 15);
    ck_assert(pi.local);
    assert_cut_everywhere((const uint8_t *)h6, strlen(h6));
    /* The longest line the specification allows: 107 bytes with its CRLF. */
    const char *longest = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    ck_assert_uint_eq(strlen(longest), TCPMSG_PROXY_V1_MAX);
    ck_assert_int_eq(tcpmsg_proxy_parse(longest, strlen(longest), &pi), TCPMSG_PROXY_V1_MAX);
}
END_TEST

START_TEST(v1_malformed)
{
    static const char *bad[] = {
        "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n",    /* LF alone */
        "PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n",        /* protocol */
        "PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",          /* a port missing */
        "PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n",      /* a field too many */
        "PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n",       /* two spaces */
        "PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n",       /* trailing space */
        "PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n",    /* port range */
        "PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n",       /* port sign */
        "PROXY TCP4 192.0.2.1 198.51.100.2 0x10 2\r\n",     /* port digits */
        "PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",      /* family mismatch */
        "PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",         /* family mismatch */
        "PROXY TCP4 example.org 198.51.100.2 1 2\r\n",      /* a name */
        "PROXY TCP4 192.0.2.256 198.51.100.2 1 2\r\n",      /* address */
        "PROXY \r\n",                                       /* nothing */
        "proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n",        /* case */
        "GET / HTTP/1.1\r\n",                               /* not a header at all */
        "\x16\x03\x01",                                     /* a TLS hello */
    };
    struct tcpmsg_proxy_info pi;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = tcpmsg_proxy_parse(bad[i], strlen(bad[i]), &pi);
        ck_assert_msg(r == TCPMSG_EPROXY, "%zu (%s): %s", i, bad[i], tcpmsg_errname(r));
        ck_assert_int_eq(pi.version, 0); /* nothing half-filled */
    }
    /* A NUL inside the line. */
    const char nul[] = "PROXY TCP4 192.0.2.1\0198.51.100.2 1 2\r\n";
    ck_assert_int_eq(tcpmsg_proxy_parse(nul, sizeof nul - 1, &pi), TCPMSG_EPROXY);
    /* No CRLF within 107 bytes: refused, not waited for. */
    char line[300] = "PROXY TCP4 ";
    memset(line + 11, '1', sizeof line - 12);
    line[sizeof line - 1] = '\0';
    ck_assert_int_eq(tcpmsg_proxy_parse(line, TCPMSG_PROXY_V1_MAX, &pi), TCPMSG_EPROXY);
    /* 105 bytes: a CRLF may still end the line at 107; 106 without it: it cannot. */
    ck_assert_int_eq(tcpmsg_proxy_parse(line, TCPMSG_PROXY_V1_MAX - 2, &pi), -EAGAIN);
    ck_assert_int_eq(tcpmsg_proxy_parse(line, TCPMSG_PROXY_V1_MAX - 1, &pi), TCPMSG_EPROXY);
    ck_assert_int_eq(tcpmsg_proxy_parse(line, sizeof line - 1, &pi), TCPMSG_EPROXY);
    ck_assert_int_eq(tcpmsg_proxy_parse(NULL, 1, &pi), -EINVAL);
    ck_assert_int_eq(tcpmsg_proxy_parse("P", 1, NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_proxy_parse("", 0, &pi), -EAGAIN);
}
END_TEST

START_TEST(v2_addresses_and_local)
{
    uint8_t h[600], body[300];
    struct tcpmsg_proxy_info pi;
    /* IPv4: 192.0.2.1:56324 -> 198.51.100.2:443, then the client's bytes. */
    uint8_t b4[12] = {192, 0, 2, 1, 198, 51, 100, 2, 0xDC, 0x04, 0x01, 0xBB};
    size_t n = v2(h, 0x21, 0x11, b4, sizeof b4);
    memcpy(h + n, "hello", 5);
    ck_assert_int_eq(tcpmsg_proxy_parse(h, n + 5, &pi), (int)n);
    ck_assert_int_eq(pi.version, 2);
    ck_assert_str_eq(text(&pi.src), "192.0.2.1:56324");
    ck_assert_str_eq(text(&pi.dst), "198.51.100.2:443");
    assert_cut_everywhere(h, n);
    /* IPv6. */
    memset(body, 0, 36);
    inet_pton(AF_INET6, "2001:db8::1", body);
    inet_pton(AF_INET6, "2001:db8::2", body + 16);
    body[32] = 0x30, body[33] = 0x39, body[34] = 0x00, body[35] = 0x50;
    n = v2(h, 0x21, 0x21, body, 36);
    ck_assert_int_eq(tcpmsg_proxy_parse(h, n, &pi), (int)n);
    ck_assert_str_eq(text(&pi.src), "[2001:db8::1]:12345");
    ck_assert_str_eq(text(&pi.dst), "[2001:db8::2]:80");
    /* Unix: two 108-byte paths. */
    memset(body, 0, 216);
    strcpy((char *)body, "/run/client.sock");
    strcpy((char *)body + 108, "/run/haproxy.sock");
    n = v2(h, 0x21, 0x31, body, 216);
    ck_assert_int_eq(tcpmsg_proxy_parse(h, n, &pi), (int)n);
    ck_assert_str_eq(text(&pi.src), "unix:/run/client.sock");
    ck_assert_str_eq(text(&pi.dst), "unix:/run/haproxy.sock");
    /* LOCAL (HAProxy's health checks): whatever addresses, the connection's own stand. */
    n = v2(h, 0x20, 0x11, b4, sizeof b4);
    ck_assert_int_eq(tcpmsg_proxy_parse(h, n, &pi), (int)n);
    ck_assert(pi.local);
    ck_assert_int_eq(pi.src.len, 0);
    n = v2(h, 0x20, 0x00, NULL, 0);
    ck_assert_int_eq(tcpmsg_proxy_parse(h, n, &pi), 16);
    ck_assert(pi.local);
    /* PROXY with AF_UNSPEC: the same. */
    n = v2(h, 0x21, 0x00, NULL, 0);
    ck_assert_int_eq(tcpmsg_proxy_parse(h, n, &pi), 16);
    ck_assert(pi.local);
}
END_TEST

/* One TLV: type, 16-bit length, value. */
static size_t
tlv(uint8_t *out, uint8_t type, const void *v, size_t len)
{
    out[0] = type;
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)len;
    if (len)
        memcpy(out + 3, v, len);
    return 3 + len;
}

START_TEST(v2_tlvs)
{
    uint8_t h[TCPMSG_PROXY_MAX + 64], body[TCPMSG_PROXY_MAX + 64];
    struct tcpmsg_proxy_info pi;
    uint8_t b4[12] = {10, 0, 0, 1, 10, 0, 0, 2, 0x12, 0x34, 0x00, 0x50};
    size_t n = 0;
    memcpy(body, b4, 12);
    n = 12;
    n += tlv(body + n, 0x01, "h2", 2);
    n += tlv(body + n, 0x02, "api.example.org", 15);
    n += tlv(body + n, 0xE0, "custom", 6);       /* unknown: skipped */
    n += tlv(body + n, 0x04, "\0\0\0\0", 4);     /* NOOP */
    n += tlv(body + n, 0x03, "\1\2\3\4", 4);     /* CRC32C: not checked, skipped */
    uint8_t ssl[64];
    size_t s = 0;
    ssl[s++] = 0x07;                             /* PP2_CLIENT_SSL | CERT_CONN | CERT_SESS */
    ssl[s++] = 0, ssl[s++] = 0, ssl[s++] = 0, ssl[s++] = 0; /* verify: 0 = success */
    s += tlv(ssl + s, 0x21, "TLSv1.3", 7);
    s += tlv(ssl + s, 0x22, "client1", 7);
    s += tlv(ssl + s, 0x23, "TLS_AES_128_GCM_SHA256", 22);
    n += tlv(body + n, 0x20, ssl, s);
    size_t total = v2(h, 0x21, 0x11, body, n);
    ck_assert_int_eq(tcpmsg_proxy_parse(h, total, &pi), (int)total);
    ck_assert_str_eq(pi.alpn, "h2");
    ck_assert_str_eq(pi.authority, "api.example.org");
    ck_assert(pi.tls);
    ck_assert(pi.tls_verified);
    ck_assert_str_eq(pi.tls_version, "TLSv1.3");
    ck_assert_str_eq(pi.tls_cn, "client1");
    ck_assert_str_eq(text(&pi.src), "10.0.0.1:4660");
    assert_cut_everywhere(h, total);
    /* A value longer than its field is cut, the header still parses. */
    char big[300];
    memset(big, 'a', sizeof big);
    n = 12;
    n += tlv(body + n, 0x02, big, sizeof big);
    total = v2(h, 0x21, 0x11, body, n);
    ck_assert_int_eq(tcpmsg_proxy_parse(h, total, &pi), (int)total);
    ck_assert_uint_eq(strlen(pi.authority), sizeof pi.authority - 1);
    /* A TLV running past the announced length, one cut short of its header, an SSL TLV
     * whose sub-TLV overflows: refused. */
    n = 12 + tlv(body + 12, 0x01, "h2", 2);
    total = v2(h, 0x21, 0x11, body, n - 1); /* the length says one byte less */
    ck_assert_int_eq(tcpmsg_proxy_parse(h, total, &pi), TCPMSG_EPROXY);
    total = v2(h, 0x21, 0x11, body, 12 + 2); /* two bytes of a TLV header */
    ck_assert_int_eq(tcpmsg_proxy_parse(h, total, &pi), TCPMSG_EPROXY);
    uint8_t badssl[16] = {0x01, 0, 0, 0, 0, 0x21, 0x00, 0x09, 'T', 'L', 'S'};
    n = 12 + tlv(body + 12, 0x20, badssl, 11);
    total = v2(h, 0x21, 0x11, body, n);
    ck_assert_int_eq(tcpmsg_proxy_parse(h, total, &pi), TCPMSG_EPROXY);
    /* Over the bound: refused from the 16 bytes of the header, whatever follows. */
    total = v2(h, 0x21, 0x11, body, 12);
    h[14] = (uint8_t)((TCPMSG_PROXY_MAX - 16 + 1) >> 8);
    h[15] = (uint8_t)(TCPMSG_PROXY_MAX - 16 + 1);
    ck_assert_int_eq(tcpmsg_proxy_parse(h, 16, &pi), TCPMSG_EPROXY);
    h[14] = 0xFF, h[15] = 0xFF;
    ck_assert_int_eq(tcpmsg_proxy_parse(h, 16, &pi), TCPMSG_EPROXY);
}
END_TEST

START_TEST(v2_malformed)
{
    uint8_t h[600], b4[12] = {0};
    struct tcpmsg_proxy_info pi;
    static const struct {
        uint8_t ver_cmd, fam;
        size_t len;
        const char *why;
    } bad[] = {
        {0x11, 0x11, 12, "version 1 in a v2 header"}, {0x31, 0x11, 12, "version 3"},
        {0x22, 0x11, 12, "command 2"},                {0x2F, 0x11, 12, "command 15"},
        {0x21, 0x41, 12, "family 4"},                 {0x21, 0x12, 12, "DGRAM"},
        {0x21, 0x13, 12, "transport 3"},              {0x21, 0x11, 11, "IPv4 cut short"},
        {0x21, 0x21, 35, "IPv6 cut short"},           {0x21, 0x31, 215, "Unix cut short"},
        {0x20, 0x11, 11, "LOCAL, its block cut short"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t body[300] = {0};
        memcpy(body, b4, sizeof b4);
        size_t n = v2(h, bad[i].ver_cmd, bad[i].fam, body, bad[i].len);
        int r = tcpmsg_proxy_parse(h, n, &pi);
        ck_assert_msg(r == TCPMSG_EPROXY, "%s: %s", bad[i].why, tcpmsg_errname(r));
    }
    /* Each signature byte wrong in turn. */
    size_t n = v2(h, 0x21, 0x11, b4, sizeof b4);
    for (size_t k = 0; k < 12; k++) {
        h[k] ^= 0x20;
        ck_assert_msg(tcpmsg_proxy_parse(h, n, &pi) == TCPMSG_EPROXY, "signature byte %zu", k);
        h[k] ^= 0x20;
    }
    /* A Unix path of 108 bytes: no room for its NUL. */
    uint8_t body[216];
    memset(body, 'p', sizeof body);
    body[0] = '/';
    n = v2(h, 0x21, 0x31, body, sizeof body);
    ck_assert_int_eq(tcpmsg_proxy_parse(h, n, &pi), TCPMSG_EPROXY);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("proxy");
    TCase *t = tcase_create("proxy");
    tcase_add_test(t, v1_every_form);
    tcase_add_test(t, v1_malformed);
    tcase_add_test(t, v2_addresses_and_local);
    tcase_add_test(t, v2_tlvs);
    tcase_add_test(t, v2_malformed);
    suite_add_tcase(s, t);
    return tu_run(s);
}
