#include "tcpmsg/addr.h"

#include "io_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
tcpmsg__eai_error(int eai, int saved_errno)
{
    switch (eai) {
    case EAI_AGAIN:
        return TCPMSG_EAI_AGAIN;
    case EAI_FAIL:
        return TCPMSG_EAI_FAIL;
    case EAI_NONAME:
        return TCPMSG_EAI_NONAME;
#ifdef EAI_NODATA
    case EAI_NODATA:
        return TCPMSG_EAI_NODATA;
#endif
    case EAI_FAMILY:
        return TCPMSG_EAI_FAMILY;
    case EAI_SERVICE:
        return TCPMSG_EAI_SERVICE;
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
        return TCPMSG_EAI_ADDRFAMILY;
#endif
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_SYSTEM:
        return saved_errno > 0 ? -saved_errno : TCPMSG_EAI_OTHER;
    default:
        return TCPMSG_EAI_OTHER;
    }
}

/* Copies src[0..n) into dst as a string; -ENOBUFS if it does not fit. */
static int
copy_part(char *dst, size_t cap, const char *src, size_t n)
{
    if (!dst || cap == 0 || n >= cap)
        return -ENOBUFS;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

static bool
valid_service(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
            return false;
    return true;
}

int
tcpmsg_addr_split(const char *text, char *host, size_t host_cap, char *port, size_t port_cap)
{
    if (host && host_cap)
        host[0] = '\0';
    if (port && port_cap)
        port[0] = '\0';
    if (!text || !host || !port || host_cap == 0 || port_cap == 0)
        return -EINVAL;

    const char *h = text, *p = NULL;
    size_t hn;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close)
            return -EINVAL;
        h = text + 1;
        hn = (size_t)(close - h);
        if (close[1] == ':')
            p = close + 2;
        else if (close[1] != '\0')
            return -EINVAL;
    } else {
        const char *colon = strchr(text, ':');
        if (colon && strchr(colon + 1, ':'))
            colon = NULL; /* two or more colons: a bare IPv6 address, all host */
        hn = colon ? (size_t)(colon - text) : strlen(text);
        if (colon)
            p = colon + 1;
    }
    if (memchr(h, '[', hn) || memchr(h, ']', hn))
        return -EINVAL;
    size_t pn = p ? strlen(p) : 0;
    if (p && !valid_service(p, pn))
        return -EINVAL;
    int r = copy_part(host, host_cap, h, hn);
    if (r == 0)
        r = copy_part(port, port_cap, p ? p : "", pn);
    if (r < 0) {
        host[0] = '\0';
        port[0] = '\0';
    }
    return r;
}

/* Parses a decimal port 0..65535 ("" is 0). */
static int
parse_port(const char *s, unsigned *out)
{
    unsigned v = 0;
    size_t n = strlen(s);
    if (n > 5)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *out = v;
    return 0;
}

bool
tcpmsg__is_unix(const char *text)
{
    return text && strncmp(text, "unix:", 5) == 0;
}

/* "unix:/path" or "unix:@name" into out. */
static int
parse_unix(const char *text, struct tcpmsg_addr *out)
{
    const char *name = text + 5;
    size_t n = strlen(name);
    if (n == 0 || (name[0] == '@' && n == 1))
        return -EINVAL;
    if (n > TCPMSG_UNIX_NAME_MAX)
        return -ENAMETOOLONG;
    out->u.un.sun_family = AF_UNIX;
    if (name[0] == '@') { /* abstract: a NUL, then the name, without a terminating NUL */
        memcpy(out->u.un.sun_path + 1, name + 1, n - 1);
        out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        memcpy(out->u.un.sun_path, name, n);
        out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
}

int
tcpmsg_addr_parse(const char *text, struct tcpmsg_addr *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!text || !out)
        return -EINVAL;
    if (tcpmsg__is_unix(text)) {
        int r = parse_unix(text, out);
        if (r < 0)
            memset(out, 0, sizeof *out);
        return r;
    }
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2], port[8];
    unsigned portnum;
    if (tcpmsg_addr_split(text, host, sizeof host, port, sizeof port) < 0 ||
        parse_port(port, &portnum) < 0)
        return -EINVAL;

    if (inet_pton(AF_INET, host, &out->u.in4.sin_addr) == 1) {
        if (text[0] == '[') /* "[1.2.3.4]" is not a form anyone writes */
            goto bad;
        out->u.in4.sin_family = AF_INET;
        out->u.in4.sin_port = htons((uint16_t)portnum);
        out->len = sizeof out->u.in4;
        return 0;
    }
    char *pct = strchr(host, '%');
    unsigned scope = 0;
    if (pct) {
        *pct++ = '\0';
        if (*pct == '\0')
            goto bad;
        char *end;
        unsigned long v = strtoul(pct, &end, 10);
        if (*end == '\0' && v <= UINT32_MAX)
            scope = (unsigned)v;
        else if ((scope = if_nametoindex(pct)) == 0)
            goto bad;
    }
    if (inet_pton(AF_INET6, host, &out->u.in6.sin6_addr) != 1)
        goto bad;
    out->u.in6.sin6_family = AF_INET6;
    out->u.in6.sin6_port = htons((uint16_t)portnum);
    out->u.in6.sin6_scope_id = scope;
    out->len = sizeof out->u.in6;
    return 0;
bad:
    memset(out, 0, sizeof *out);
    return -EINVAL;
}

int
tcpmsg_addr_format(const struct tcpmsg_addr *a, char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return -ENOBUFS;
    char host[INET6_ADDRSTRLEN], scope[IF_NAMESIZE + 12] = "";
    int n;
    if (a && a->len >= sizeof(struct sockaddr_in) && a->u.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->u.in4.sin_addr, host, sizeof host);
        n = snprintf(buf, cap, "%s:%u", host, ntohs(a->u.in4.sin_port));
    } else if (a && a->len >= sizeof(struct sockaddr_in6) && a->u.sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, host, sizeof host);
        unsigned id = a->u.in6.sin6_scope_id;
        if (id) {
            char name[IF_NAMESIZE];
            /* scope has room for "%" and any name or number: cannot be truncated */
            if (if_indextoname(id, name))
                (void)snprintf(scope, sizeof scope, "%%%s", name);
            else
                (void)snprintf(scope, sizeof scope, "%%%u", id);
        }
        n = snprintf(buf, cap, "[%s%s]:%u", host, scope, ntohs(a->u.in6.sin6_port));
    } else if (a && a->u.sa.sa_family == AF_UNIX &&
               a->len >= offsetof(struct sockaddr_un, sun_path)) {
        size_t plen = a->len - offsetof(struct sockaddr_un, sun_path);
        const char *p = a->u.un.sun_path;
        if (plen > sizeof a->u.un.sun_path)
            plen = sizeof a->u.un.sun_path;
        if (plen == 0) /* unnamed: a client's socket */
            n = snprintf(buf, cap, "unix:");
        else if (p[0] == '\0')
            n = snprintf(buf, cap, "unix:@%.*s", (int)(plen - 1), p + 1);
        else
            n = snprintf(buf, cap, "unix:%.*s", (int)strnlen(p, plen), p);
    } else {
        (void)snprintf(buf, cap, "-"); /* cap >= 1: "" at worst */
        return -EAFNOSUPPORT;
    }
    return (size_t)n < cap ? n : -ENOBUFS;
}

int
tcpmsg_addr_family(const struct tcpmsg_addr *a)
{
    if (!a || a->len == 0)
        return 0;
    if (a->u.sa.sa_family == AF_INET)
        return TCPMSG_FAMILY_V4;
    if (a->u.sa.sa_family == AF_INET6)
        return TCPMSG_FAMILY_V6;
    if (a->u.sa.sa_family == AF_UNIX)
        return TCPMSG_FAMILY_UNIX;
    return 0;
}

int
tcpmsg_addr_port(const struct tcpmsg_addr *a)
{
    switch (tcpmsg_addr_family(a)) {
    case TCPMSG_FAMILY_V4:
        return ntohs(a->u.in4.sin_port);
    case TCPMSG_FAMILY_V6:
        return ntohs(a->u.in6.sin6_port);
    default:
        return -EAFNOSUPPORT;
    }
}

int
tcpmsg_addr_set_port(struct tcpmsg_addr *a, unsigned port)
{
    if (port > 65535)
        return -EINVAL;
    switch (tcpmsg_addr_family(a)) {
    case TCPMSG_FAMILY_V4:
        a->u.in4.sin_port = htons((uint16_t)port);
        return 0;
    case TCPMSG_FAMILY_V6:
        a->u.in6.sin6_port = htons((uint16_t)port);
        return 0;
    default:
        return -EAFNOSUPPORT;
    }
}

bool
tcpmsg_addr_equal(const struct tcpmsg_addr *a, const struct tcpmsg_addr *b)
{
    int fa = tcpmsg_addr_family(a);
    if (fa == 0 || fa != tcpmsg_addr_family(b))
        return false;
    if (fa == TCPMSG_FAMILY_V4)
        return a->u.in4.sin_port == b->u.in4.sin_port &&
               a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
    if (fa == TCPMSG_FAMILY_UNIX)
        return a->len == b->len && memcmp(&a->u.un, &b->u.un, a->len) == 0;
    return a->u.in6.sin6_port == b->u.in6.sin6_port &&
           a->u.in6.sin6_scope_id == b->u.in6.sin6_scope_id &&
           memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, sizeof(struct in6_addr)) == 0;
}

bool
tcpmsg_addr_unmap(struct tcpmsg_addr *a)
{
    if (tcpmsg_addr_family(a) != TCPMSG_FAMILY_V6 || !IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr))
        return false;
    struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = a->u.in6.sin6_port};
    memcpy(&v4.sin_addr, &a->u.in6.sin6_addr.s6_addr[12], 4);
    memset(a, 0, sizeof *a);
    a->u.in4 = v4;
    a->len = sizeof v4;
    return true;
}

static int
sockname(int fd, struct tcpmsg_addr *out, int peer)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    socklen_t len = sizeof out->u.storage;
    int r = peer ? getpeername(fd, &out->u.sa, &len) : getsockname(fd, &out->u.sa, &len);
    if (r < 0) {
        int e = errno;
        memset(out, 0, sizeof *out);
        return -e;
    }
    out->len = len;
    return 0;
}

int
tcpmsg_addr_local(int fd, struct tcpmsg_addr *out)
{
    return sockname(fd, out, 0);
}

int
tcpmsg_addr_peer(int fd, struct tcpmsg_addr *out)
{
    return sockname(fd, out, 1);
}

int
tcpmsg_addr_tuple(int fd, char *buf, size_t cap)
{
    return tcpmsg__addr_tuple(fd, NULL, buf, cap);
}

int
tcpmsg__addr_tuple(int fd, const struct tcpmsg_addr *client, char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return -ENOBUFS;
    buf[0] = '\0';
    struct tcpmsg_addr local, peer;
    memset(&peer, 0, sizeof peer);
    int r = tcpmsg_addr_local(fd, &local);
    if (r == 0 && client)
        peer = *client;
    else if (r == 0)
        r = tcpmsg_addr_peer(fd, &peer);
    if (r < 0)
        return r;
    char who[32] = "";
    if (!client && tcpmsg_addr_family(&peer) == TCPMSG_FAMILY_UNIX &&
        peer.len <= offsetof(struct sockaddr_un, sun_path)) {
        /* An unnamed client: its process says who it is. */
        struct ucred cr;
        socklen_t cl = sizeof cr;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0)
            (void)snprintf(who, sizeof who, "unix:pid=%d", (int)cr.pid);
    }
    int n = tcpmsg_addr_format(&local, buf, cap);
    if (n < 0) {
        buf[0] = '\0';
        return n;
    }
    if ((size_t)n + 1 >= cap) {
        buf[0] = '\0';
        return -ENOBUFS;
    }
    buf[n] = ' ';
    int m;
    if (who[0]) {
        m = snprintf(buf + n + 1, cap - (size_t)n - 1, "%s", who);
        if ((size_t)m >= cap - (size_t)n - 1)
            m = -ENOBUFS;
    } else {
        m = tcpmsg_addr_format(&peer, buf + n + 1, cap - (size_t)n - 1);
    }
    if (m < 0) {
        buf[0] = '\0';
        return m;
    }
    return n + 1 + m;
}

int
tcpmsg_addr_resolve(const char *host, const char *service, enum tcpmsg_family family, int flags,
                    struct tcpmsg_addr *out, size_t max)
{
    if (!out || max == 0 || (flags & ~(TCPMSG_RESOLVE_PASSIVE | TCPMSG_RESOLVE_NUMERIC)))
        return -EINVAL;
    if (family != TCPMSG_FAMILY_ANY && family != TCPMSG_FAMILY_V4 && family != TCPMSG_FAMILY_V6)
        return -EINVAL;
    if (tcpmsg__is_unix(host)) {
        if (family != TCPMSG_FAMILY_ANY)
            return TCPMSG_EAI_FAMILY;
        int r = tcpmsg_addr_parse(host, &out[0]);
        return r < 0 ? r : 1;
    }

    /* "[::1]" is how people write IPv6 literals next to ports; getaddrinfo wants "::1". */
    char buf[256];
    if (host && host[0] == '[') {
        size_t n = strlen(host);
        if (n < 2 || host[n - 1] != ']' || n - 2 >= sizeof buf)
            return TCPMSG_EAI_NONAME;
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    if (host && host[0] == '\0')
        host = NULL;
    if (!service || service[0] == '\0')
        service = "0";

    struct addrinfo hints = {
        .ai_family = family == TCPMSG_FAMILY_V4   ? AF_INET
                     : family == TCPMSG_FAMILY_V6 ? AF_INET6
                                                  : AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_protocol = IPPROTO_TCP,
        .ai_flags = ((flags & TCPMSG_RESOLVE_PASSIVE) ? AI_PASSIVE : 0) |
                    ((flags & TCPMSG_RESOLVE_NUMERIC) ? AI_NUMERICHOST : 0),
    };
    struct addrinfo *res = NULL;
    int eai = getaddrinfo(host, service, &hints, &res);
    if (eai != 0)
        return tcpmsg__eai_error(eai, errno);

    size_t n = 0;
    for (struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof out[n].u.storage)
            continue;
        memset(&out[n], 0, sizeof out[n]);
        memcpy(&out[n].u.storage, ai->ai_addr, ai->ai_addrlen);
        out[n].len = ai->ai_addrlen;
        bool dup = false;
        for (size_t i = 0; i < n && !dup; i++)
            dup = tcpmsg_addr_equal(&out[i], &out[n]);
        if (!dup)
            n++;
    }
    freeaddrinfo(res);
    return n > 0 ? (int)n : TCPMSG_EAI_NODATA;
}
