/* The PROXY protocol's header, v1 and v2 (haproxy.org/download/2.6/doc/proxy-protocol.txt):
 * a bounded parser over the bytes already received. */
#include "tcpmsg/proxy.h"

#include "io_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

enum {
    V2_HEAD = 16,
    PP2_TYPE_ALPN = 0x01,
    PP2_TYPE_AUTHORITY = 0x02,
    PP2_TYPE_SSL = 0x20,
    PP2_SUBTYPE_SSL_VERSION = 0x21,
    PP2_SUBTYPE_SSL_CN = 0x22,
    PP2_CLIENT_SSL = 0x01,
};

/* The bytes seen so far could still begin `want` (a signature): true. */
static bool
prefix_of(const uint8_t *p, size_t len, const void *want, size_t wlen)
{
    return memcmp(p, want, len < wlen ? len : wlen) == 0;
}

/* ---- v1: "PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n" ---------------------------------------- */

/* The next space-separated field of line[*pos..end): copied into out (NUL-terminated). */
static bool
field(const char *line, size_t end, size_t *pos, char *out, size_t cap)
{
    size_t i = *pos, n = 0;
    while (i < end && line[i] != ' ') {
        if (n + 1 >= cap)
            return false;
        out[n++] = line[i++];
    }
    out[n] = '\0';
    if (n == 0)
        return false;
    *pos = i < end ? i + 1 : i; /* past one space */
    return true;
}

/* A decimal port, 0..65535, digits only. */
static bool
port_of(const char *t, uint16_t *out)
{
    unsigned v = 0;
    if (!*t || strlen(t) > 5)
        return false;
    for (; *t; t++) {
        if (*t < '0' || *t > '9')
            return false;
        v = v * 10 + (unsigned)(*t - '0');
    }
    if (v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

static int
parse_v1(const char *p, size_t len, struct tcpmsg_proxy_info *out)
{
    /* The line ends at the first CRLF, within 107 bytes; a NUL, a lone CR or LF before it
     * is malformed at once (no need to wait for more). */
    size_t eol = 0;
    for (;; eol++) {
        if (eol + 2 > TCPMSG_PROXY_V1_MAX)
            return TCPMSG_EPROXY;
        if (eol >= len)
            return -EAGAIN;
        char ch = p[eol];
        if (ch == '\0' || ch == '\n')
            return TCPMSG_EPROXY;
        if (ch == '\r') {
            if (eol + 1 >= len)
                return -EAGAIN;
            if (p[eol + 1] != '\n')
                return TCPMSG_EPROXY;
            break;
        }
    }
    out->version = 1;
    size_t pos = 6; /* "PROXY " */
    char proto[8], a1[INET6_ADDRSTRLEN], a2[INET6_ADDRSTRLEN], p1[8], p2[8];
    if (!field(p, eol, &pos, proto, sizeof proto))
        return TCPMSG_EPROXY;
    if (strcmp(proto, "UNKNOWN") == 0) {
        out->local = true; /* whatever follows on the line is ignored, as specified */
        return (int)eol + 2;
    }
    int af = strcmp(proto, "TCP4") == 0 ? AF_INET : strcmp(proto, "TCP6") == 0 ? AF_INET6 : 0;
    uint16_t sport, dport;
    if (!af || !field(p, eol, &pos, a1, sizeof a1) || !field(p, eol, &pos, a2, sizeof a2) ||
        !field(p, eol, &pos, p1, sizeof p1) || !field(p, eol, &pos, p2, sizeof p2) || pos != eol ||
        p[eol - 1] == ' ' || !port_of(p1, &sport) || !port_of(p2, &dport))
        return TCPMSG_EPROXY;
    if (af == AF_INET) {
        struct sockaddr_in *s = &out->src.u.in4, *d = &out->dst.u.in4;
        if (inet_pton(AF_INET, a1, &s->sin_addr) != 1 || inet_pton(AF_INET, a2, &d->sin_addr) != 1)
            return TCPMSG_EPROXY;
        s->sin_family = d->sin_family = AF_INET;
        s->sin_port = htons(sport);
        d->sin_port = htons(dport);
        out->src.len = out->dst.len = sizeof *s;
    } else {
        struct sockaddr_in6 *s = &out->src.u.in6, *d = &out->dst.u.in6;
        if (inet_pton(AF_INET6, a1, &s->sin6_addr) != 1 ||
            inet_pton(AF_INET6, a2, &d->sin6_addr) != 1)
            return TCPMSG_EPROXY;
        s->sin6_family = d->sin6_family = AF_INET6;
        s->sin6_port = htons(sport);
        d->sin6_port = htons(dport);
        out->src.len = out->dst.len = sizeof *s;
    }
    return (int)eol + 2;
}

/* ---- v2 ------------------------------------------------------------------------------- */

static void
copy_text(char *dst, size_t cap, const uint8_t *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* The sub-TLVs of PP2_TYPE_SSL (after its client byte and verify word). */
static bool
parse_ssl(const uint8_t *v, size_t n, struct tcpmsg_proxy_info *out)
{
    if (n < 5)
        return false;
    out->tls = v[0] & PP2_CLIENT_SSL;
    uint32_t verify = (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 8 | v[4];
    for (size_t i = 5; i < n;) {
        if (n - i < 3)
            return false;
        uint8_t type = v[i];
        size_t l = (size_t)v[i + 1] << 8 | v[i + 2];
        if (n - i - 3 < l)
            return false;
        const uint8_t *val = v + i + 3;
        if (type == PP2_SUBTYPE_SSL_VERSION)
            copy_text(out->tls_version, sizeof out->tls_version, val, l);
        else if (type == PP2_SUBTYPE_SSL_CN)
            copy_text(out->tls_cn, sizeof out->tls_cn, val, l);
        i += 3 + l;
    }
    out->tls_verified = out->tls && verify == 0 && out->tls_cn[0];
    return true;
}

static int
parse_v2(const uint8_t *p, size_t len, struct tcpmsg_proxy_info *out)
{
    if (len < V2_HEAD)
        return -EAGAIN;
    uint8_t ver = p[12] >> 4, cmd = p[12] & 0x0F, fam = p[13] >> 4, proto = p[13] & 0x0F;
    size_t body = (size_t)p[14] << 8 | p[15];
    if (ver != 2 || cmd > 1 || fam > 3 || proto > 2 || proto == 2 /* DGRAM: not for TCP */)
        return TCPMSG_EPROXY;
    if (V2_HEAD + body > TCPMSG_PROXY_MAX)
        return TCPMSG_EPROXY; /* bounded, whatever the balancer announces */
    if (len < V2_HEAD + body)
        return -EAGAIN;
    out->version = 2;
    const uint8_t *b = p + V2_HEAD;
    size_t alen = fam == 1 ? 12 : fam == 2 ? 36 : fam == 3 ? 216 : 0;
    if (body < alen)
        return TCPMSG_EPROXY;
    if (cmd == 0 || fam == 0) {
        out->local = true; /* LOCAL, or UNSPEC: the connection's own addresses stand */
    } else if (fam == 1) {
        struct sockaddr_in *s = &out->src.u.in4, *d = &out->dst.u.in4;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, b, 4);
        memcpy(&d->sin_addr, b + 4, 4);
        memcpy(&s->sin_port, b + 8, 2);
        memcpy(&d->sin_port, b + 10, 2);
        out->src.len = out->dst.len = sizeof *s;
    } else if (fam == 2) {
        struct sockaddr_in6 *s = &out->src.u.in6, *d = &out->dst.u.in6;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, b, 16);
        memcpy(&d->sin6_addr, b + 16, 16);
        memcpy(&s->sin6_port, b + 32, 2);
        memcpy(&d->sin6_port, b + 34, 2);
        out->src.len = out->dst.len = sizeof *s;
    } else { /* AF_UNIX: two 108-byte paths */
        struct tcpmsg_addr *a[2] = {&out->src, &out->dst};
        for (int k = 0; k < 2; k++) {
            const uint8_t *path = b + (size_t)108 * (size_t)k;
            /* A path ends at its NUL; an abstract name (Linux) begins with one and ends at
             * the next (the balancer copies sun_path, zero-padded); all zeros: unnamed. */
            bool abstract = path[0] == 0 && path[1] != 0;
            size_t n = abstract ? 1 : 0;
            while (n < 108 && path[n])
                n++;
            if (n == 108 && !abstract && path[0])
                return TCPMSG_EPROXY; /* no room left for its NUL */
            a[k]->u.un.sun_family = AF_UNIX;
            memcpy(a[k]->u.un.sun_path, path, n);
            a[k]->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (abstract ? n
                                                                              : n      ? n + 1
                                                                                       : 0));
        }
    }
    /* TLVs: type, 16-bit length, value, to the end of the announced length exactly. */
    for (size_t i = alen; i < body;) {
        if (body - i < 3)
            return TCPMSG_EPROXY;
        uint8_t type = b[i];
        size_t l = (size_t)b[i + 1] << 8 | b[i + 2];
        if (body - i - 3 < l)
            return TCPMSG_EPROXY;
        const uint8_t *v = b + i + 3;
        if (type == PP2_TYPE_ALPN)
            copy_text(out->alpn, sizeof out->alpn, v, l);
        else if (type == PP2_TYPE_AUTHORITY)
            copy_text(out->authority, sizeof out->authority, v, l);
        else if (type == PP2_TYPE_SSL && !parse_ssl(v, l, out))
            return TCPMSG_EPROXY;
        i += 3 + l; /* any other type (CRC32C, NOOP, UNIQUE_ID, NETNS, custom): skipped */
    }
    return (int)(V2_HEAD + body);
}

int
tcpmsg_proxy_parse(const void *buf, size_t len, struct tcpmsg_proxy_info *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!buf || !out)
        return -EINVAL;
    const uint8_t *p = buf;
    if (len == 0)
        return -EAGAIN;
    if (p[0] == v2_sig[0] && prefix_of(p, len, v2_sig, sizeof v2_sig)) {
        if (len < sizeof v2_sig)
            return -EAGAIN;
        int r = parse_v2(p, len, out);
        if (r < 0)
            memset(out, 0, sizeof *out);
        return r;
    }
    if (prefix_of(p, len, "PROXY ", 6)) {
        if (len < 6)
            return -EAGAIN;
        int r = parse_v1((const char *)p, len, out);
        if (r < 0)
            memset(out, 0, sizeof *out);
        return r;
    }
    return TCPMSG_EPROXY;
}

/* ---- reading a header from a socket, and nothing past it ------------------------------- */

int
tcpmsg__proxy_step(int fd, struct tcpmsg__proxy_rd *rd, struct tcpmsg_proxy_info *out)
{
    for (;;) {
        /* Look at what has come without taking it: the client's bytes after the header
         * must stay in the socket. Everything before a complete header is the header's
         * (the parser says -EAGAIN only for the beginning of a valid one), so what was
         * looked at is taken once the parser has seen it. */
        ssize_t n =
            recv(fd, rd->buf + rd->have, sizeof rd->buf - rd->have, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
        if (n == 0)
            return rd->have ? TCPMSG_EPROXY : TCPMSG_EOF;
        int r = tcpmsg_proxy_parse(rd->buf, rd->have + (size_t)n, out);
        if (r < 0 && r != -EAGAIN)
            return r;
        if (r == -EAGAIN && rd->have + (size_t)n == sizeof rd->buf)
            return TCPMSG_EPROXY; /* cannot happen: a header is bounded by the buffer */
        size_t take = r > 0 ? (size_t)r - rd->have : (size_t)n;
        ssize_t got;
        do
            got = recv(fd, rd->buf + rd->have, take, MSG_DONTWAIT);
        while (got < 0 && errno == EINTR);
        if (got != (ssize_t)take)
            return got < 0 ? -errno : -EIO; /* what was looked at is there to take */
        rd->have += take;
        if (r > 0)
            return r;
    }
}

int
tcpmsg_proxy_recv(int fd, struct tcpmsg_proxy_info *out, int64_t deadline)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (fd < 0 || !out)
        return -EINVAL;
    struct tcpmsg__proxy_rd rd = {.have = 0};
    for (;;) {
        int r = tcpmsg__proxy_step(fd, &rd, out);
        if (r != -EAGAIN)
            return r;
        int w = tcpmsg__wait_fd(fd, POLLIN, deadline);
        if (w < 0)
            return w;
    }
}

/* ---- writing a v2 header ---------------------------------------------------------------- */

/* Appends one TLV; false when it does not fit. */
static bool
put_tlv(uint8_t *b, size_t cap, size_t *pos, uint8_t type, const void *v, size_t n)
{
    if (n > 0xFFFF || cap - *pos < 3 + n)
        return false;
    b[*pos] = type;
    b[*pos + 1] = (uint8_t)(n >> 8);
    b[*pos + 2] = (uint8_t)n;
    if (n)
        memcpy(b + *pos + 3, v, n);
    *pos += 3 + n;
    return true;
}

int
tcpmsg_proxy_format(void *buf, size_t cap, const struct tcpmsg_proxy_info *pi)
{
    if (!buf || !pi)
        return -EINVAL;
    uint8_t *b = buf;
    if (cap > TCPMSG_PROXY_MAX)
        cap = TCPMSG_PROXY_MAX;
    if (cap < V2_HEAD)
        return -ENOBUFS;
    memcpy(b, v2_sig, sizeof v2_sig);
    size_t pos = V2_HEAD;
    uint8_t fam = 0;
    if (!pi->local) {
        /* IPv4-mapped addresses (a dual-stack socket's) are written as the IPv4 they are,
         * unless the other address is a real IPv6 one. */
        struct tcpmsg_addr s = pi->src, d = pi->dst;
        tcpmsg_addr_unmap(&s);
        tcpmsg_addr_unmap(&d);
        int fs = tcpmsg_addr_family(&s), fd = tcpmsg_addr_family(&d);
        if (fs != fd && tcpmsg_addr_family(&pi->src) == tcpmsg_addr_family(&pi->dst)) {
            s = pi->src;
            d = pi->dst;
            fs = fd = tcpmsg_addr_family(&s);
        }
        if (fs != fd || fs == 0)
            return -EAFNOSUPPORT;
        size_t alen = fs == TCPMSG_FAMILY_V4 ? 12 : fs == TCPMSG_FAMILY_V6 ? 36 : 216;
        if (cap - pos < alen)
            return -ENOBUFS;
        uint8_t *a = b + pos;
        memset(a, 0, alen);
        if (fs == TCPMSG_FAMILY_V4) {
            fam = 1;
            memcpy(a, &s.u.in4.sin_addr, 4);
            memcpy(a + 4, &d.u.in4.sin_addr, 4);
            memcpy(a + 8, &s.u.in4.sin_port, 2);
            memcpy(a + 10, &d.u.in4.sin_port, 2);
        } else if (fs == TCPMSG_FAMILY_V6) {
            fam = 2;
            memcpy(a, &s.u.in6.sin6_addr, 16);
            memcpy(a + 16, &d.u.in6.sin6_addr, 16);
            memcpy(a + 32, &s.u.in6.sin6_port, 2);
            memcpy(a + 34, &d.u.in6.sin6_port, 2);
        } else {
            fam = 3;
            const struct tcpmsg_addr *u[2] = {&s, &d};
            for (int k = 0; k < 2; k++) {
                size_t off = offsetof(struct sockaddr_un, sun_path);
                size_t n = u[k]->len > off ? u[k]->len - off : 0;
                if (n > 108)
                    n = 108;
                memcpy(a + (size_t)108 * (size_t)k, u[k]->u.un.sun_path, n);
                if (n == 108 && u[k]->u.un.sun_path[0] && u[k]->u.un.sun_path[107])
                    return -EAFNOSUPPORT; /* a path: no room for the NUL the parser wants */
            }
        }
        pos += alen;
    }
    if (pi->alpn[0] &&
        !put_tlv(b, cap, &pos, PP2_TYPE_ALPN, pi->alpn, strnlen(pi->alpn, sizeof pi->alpn - 1)))
        return -ENOBUFS;
    if (pi->authority[0] && !put_tlv(b, cap, &pos, PP2_TYPE_AUTHORITY, pi->authority,
                                     strnlen(pi->authority, sizeof pi->authority - 1)))
        return -ENOBUFS;
    if (pi->tls) {
        uint8_t ssl[5 + 3 + sizeof pi->tls_version + 3 + sizeof pi->tls_cn];
        size_t sp = 5;
        ssl[0] = PP2_CLIENT_SSL;
        uint32_t verify = pi->tls_verified ? 0 : 1;
        ssl[1] = (uint8_t)(verify >> 24);
        ssl[2] = (uint8_t)(verify >> 16);
        ssl[3] = (uint8_t)(verify >> 8);
        ssl[4] = (uint8_t)verify;
        if (pi->tls_version[0])
            put_tlv(ssl, sizeof ssl, &sp, PP2_SUBTYPE_SSL_VERSION, pi->tls_version,
                    strnlen(pi->tls_version, sizeof pi->tls_version - 1));
        if (pi->tls_cn[0])
            put_tlv(ssl, sizeof ssl, &sp, PP2_SUBTYPE_SSL_CN, pi->tls_cn,
                    strnlen(pi->tls_cn, sizeof pi->tls_cn - 1));
        if (!put_tlv(b, cap, &pos, PP2_TYPE_SSL, ssl, sp))
            return -ENOBUFS;
    }
    size_t body = pos - V2_HEAD;
    b[12] = (uint8_t)(0x20 | (pi->local ? 0 : 1)); /* version 2, LOCAL or PROXY */
    b[13] = (uint8_t)(fam << 4 | (fam ? 1 : 0));   /* family, STREAM (UNSPEC for LOCAL) */
    b[14] = (uint8_t)(body >> 8);
    b[15] = (uint8_t)body;
    return (int)pos;
}
