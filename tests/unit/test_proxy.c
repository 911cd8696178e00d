/* tcpmsg/proxy.h: the PROXY protocol header parser against a hostile table: every valid
 * form (v1 TCP4, TCP6, UNKNOWN; v2 PROXY over IPv4, IPv6, Unix, LOCAL, UNSPEC, with TLVs),
 * each cut at every byte (always -EAGAIN, never a wrong answer), and every kind of bad
 * header (signature, version, command, family, transport, lengths, addresses, ports, TLVs
 * that overflow, a header over the bound). */
#include "testutil.h"

#include "tcpmsg/deadline.h"
#include "tcpmsg/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* ---- writing: tcpmsg_proxy_format, read back by the parser --------------------------- */

static struct tcpmsg_proxy_info
info(const char *src, const char *dst)
{
    struct tcpmsg_proxy_info pi;
    memset(&pi, 0, sizeof pi);
    ck_assert_int_eq(tcpmsg_addr_parse(src, &pi.src), 0);
    ck_assert_int_eq(tcpmsg_addr_parse(dst, &pi.dst), 0);
    return pi;
}

START_TEST(format_reads_back)
{
    static const char *pairs[][2] = {
        {"192.0.2.1:56324", "198.51.100.2:443"},
        {"[2001:db8::1]:1", "[2001:db8::2]:65535"},
        {"unix:/run/client.sock", "unix:@balancer"},
        {"[::ffff:192.0.2.9]:80", "198.51.100.2:7000"}, /* mapped beside IPv4: both IPv4 */
        {"[::ffff:192.0.2.9]:80", "[::ffff:192.0.2.1]:81"}, /* both mapped: IPv4 */
        {"[::ffff:192.0.2.9]:80", "[2001:db8::2]:81"}, /* beside real IPv6: IPv6 */
    };
    static const char *want[][2] = {
        {"192.0.2.1:56324", "198.51.100.2:443"},
        {"[2001:db8::1]:1", "[2001:db8::2]:65535"},
        {"unix:/run/client.sock", "unix:@balancer"},
        {"192.0.2.9:80", "198.51.100.2:7000"},
        {"192.0.2.9:80", "192.0.2.1:81"},
        {"[::ffff:192.0.2.9]:80", "[2001:db8::2]:81"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        struct tcpmsg_proxy_info pi = info(pairs[i][0], pairs[i][1]), back;
        uint8_t buf[TCPMSG_PROXY_MAX];
        int n = tcpmsg_proxy_format(buf, sizeof buf, &pi);
        ck_assert_int_gt(n, 16);
        assert_cut_everywhere(buf, (size_t)n);
        ck_assert_int_eq(tcpmsg_proxy_parse(buf, (size_t)n, &back), n);
        ck_assert_int_eq(back.version, 2);
        ck_assert(!back.local);
        ck_assert_str_eq(text(&back.src), want[i][0]);
        ck_assert_str_eq(text(&back.dst), want[i][1]);
        ck_assert_int_eq(tcpmsg_proxy_format(buf, (size_t)n - 1, &pi), -ENOBUFS);
    }
    /* LOCAL, and every TLV the parser knows. */
    struct tcpmsg_proxy_info pi, back;
    memset(&pi, 0, sizeof pi);
    pi.local = true;
    snprintf(pi.alpn, sizeof pi.alpn, "h2");
    snprintf(pi.authority, sizeof pi.authority, "example.org");
    pi.tls = pi.tls_verified = true;
    snprintf(pi.tls_version, sizeof pi.tls_version, "TLSv1.3");
    snprintf(pi.tls_cn, sizeof pi.tls_cn, "client one");
    uint8_t buf[TCPMSG_PROXY_MAX];
    int n = tcpmsg_proxy_format(buf, sizeof buf, &pi);
    ck_assert_int_gt(n, 16);
    assert_cut_everywhere(buf, (size_t)n);
    ck_assert_int_eq(tcpmsg_proxy_parse(buf, (size_t)n, &back), n);
    ck_assert(back.local);
    ck_assert_str_eq(back.alpn, "h2");
    ck_assert_str_eq(back.authority, "example.org");
    ck_assert(back.tls && back.tls_verified);
    ck_assert_str_eq(back.tls_version, "TLSv1.3");
    ck_assert_str_eq(back.tls_cn, "client one");
    /* A client certificate the balancer did not verify: said so. */
    pi.tls_verified = false;
    n = tcpmsg_proxy_format(buf, sizeof buf, &pi);
    ck_assert_int_eq(tcpmsg_proxy_parse(buf, (size_t)n, &back), n);
    ck_assert(back.tls && !back.tls_verified);
}
END_TEST

START_TEST(format_refuses)
{
    uint8_t buf[TCPMSG_PROXY_MAX];
    struct tcpmsg_proxy_info pi = info("192.0.2.1:1", "[2001:db8::2]:2");
    ck_assert_int_eq(tcpmsg_proxy_format(buf, sizeof buf, &pi), -EAFNOSUPPORT);
    pi = info("192.0.2.1:1", "unix:/x");
    ck_assert_int_eq(tcpmsg_proxy_format(buf, sizeof buf, &pi), -EAFNOSUPPORT);
    memset(&pi, 0, sizeof pi); /* no address, not LOCAL */
    ck_assert_int_eq(tcpmsg_proxy_format(buf, sizeof buf, &pi), -EAFNOSUPPORT);
    ck_assert_int_eq(tcpmsg_proxy_format(NULL, 10, &pi), -EINVAL);
    ck_assert_int_eq(tcpmsg_proxy_format(buf, sizeof buf, NULL), -EINVAL);
    pi.local = true;
    ck_assert_int_eq(tcpmsg_proxy_format(buf, 15, &pi), -ENOBUFS);
    ck_assert_int_eq(tcpmsg_proxy_format(buf, 16, &pi), 16);
}
END_TEST

/* ---- reading from a socket: tcpmsg_proxy_recv takes the header and nothing more ------- */

struct dribble {
    int fd;
    const uint8_t *p;
    size_t n;
};

/* Writes one byte at a time: the reader meets the header in every possible piece. */
static void *
dribble_main(void *arg)
{
    struct dribble *d = arg;
    for (size_t i = 0; i < d->n; i++)
        if (send(d->fd, d->p + i, 1, MSG_NOSIGNAL) != 1)
            return (void *)1;
    return NULL;
}

START_TEST(recv_takes_the_header_only)
{
    const char *v1 = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nclient bytes";
    uint8_t v2buf[TCPMSG_PROXY_MAX];
    struct tcpmsg_proxy_info pi = info("[2001:db8::1]:1", "[2001:db8::2]:2");
    snprintf(pi.authority, sizeof pi.authority, "svc.example");
    int hn = tcpmsg_proxy_format(v2buf, sizeof v2buf - 12, &pi);
    ck_assert_int_gt(hn, 0);
    memcpy(v2buf + hn, "client bytes", 12);
    const uint8_t *streams[2] = {(const uint8_t *)v1, v2buf};
    size_t lens[2] = {strlen(v1), (size_t)hn + 12};
    for (int k = 0; k < 2; k++) {
        for (int piecewise = 0; piecewise < 2; piecewise++) {
            int sv[2];
            ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
            pthread_t t;
            struct dribble d = {sv[0], streams[k], lens[k]};
            if (piecewise)
                ck_assert_int_eq(pthread_create(&t, NULL, dribble_main, &d), 0);
            else
                ck_assert_int_eq(send(sv[0], streams[k], lens[k], 0), (ssize_t)lens[k]);
            struct tcpmsg_proxy_info got;
            int n = tcpmsg_proxy_recv(sv[1], &got, tcpmsg_deadline_in(60000));
            ck_assert_int_eq(n, (int)lens[k] - 12);
            ck_assert_str_eq(text(&got.src), k ? "[2001:db8::1]:1" : "192.0.2.1:56324");
            if (k)
                ck_assert_str_eq(got.authority, "svc.example");
            char rest[32];
            ck_assert_int_eq(recv(sv[1], rest, 12, MSG_WAITALL), 12);
            ck_assert_int_eq(memcmp(rest, "client bytes", 12), 0);
            if (piecewise) {
                void *res;
                pthread_join(t, &res);
                ck_assert_ptr_null(res);
            }
            close(sv[0]);
            close(sv[1]);
        }
    }
}
END_TEST

START_TEST(recv_refuses)
{
    struct tcpmsg_proxy_info got;
    static const char *bad[] = {"GET / HTTP/1.0\r\n", "PROXY TCP4 1.2.3.4\r\n",
                                "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        ck_assert_int_eq(send(sv[0], bad[i], strlen(bad[i]), 0), (ssize_t)strlen(bad[i]));
        ck_assert_int_eq(tcpmsg_proxy_recv(sv[1], &got, tcpmsg_deadline_in(60000)), TCPMSG_EPROXY);
        close(sv[0]);
        close(sv[1]);
    }
    /* The end before any byte; the end within a header; nothing more within the deadline. */
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    shutdown(sv[0], SHUT_WR);
    ck_assert_int_eq(tcpmsg_proxy_recv(sv[1], &got, tcpmsg_deadline_in(60000)), TCPMSG_EOF);
    close(sv[0]);
    close(sv[1]);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(send(sv[0], "PROXY TCP4 ", 11, 0), 11);
    shutdown(sv[0], SHUT_WR);
    ck_assert_int_eq(tcpmsg_proxy_recv(sv[1], &got, tcpmsg_deadline_in(60000)), TCPMSG_EPROXY);
    close(sv[0]);
    close(sv[1]);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(send(sv[0], "PROXY", 5, 0), 5);
    ck_assert_int_eq(tcpmsg_proxy_recv(sv[1], &got, tcpmsg_deadline_in(0)), -ETIMEDOUT);
    close(sv[0]);
    close(sv[1]);
    ck_assert_int_eq(tcpmsg_proxy_recv(-1, &got, 0), -EINVAL);
    ck_assert_int_eq(tcpmsg_proxy_recv(0, NULL, 0), -EINVAL);
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
    tcase_add_test(t, format_reads_back);
    tcase_add_test(t, format_refuses);
    tcase_add_test(t, recv_takes_the_header_only);
    tcase_add_test(t, recv_refuses);
    suite_add_tcase(s, t);
    return tu_run(s);
}
