/*
 * tcpmsg/proxy.h - the PROXY protocol: the header a load balancer (HAProxy's send-proxy /
 * send-proxy-v2, nginx's proxy_protocol, Envoy, cloud balancers) writes first on each
 * connection to a backend, to say who the client really is. Version 1 is one text line,
 * version 2 a binary header with optional TLVs (ALPN, authority, TLS facts).
 *
 * Parsing only, like the codecs: no descriptor is touched and nothing is allocated, so a
 * peer cannot make it allocate what it announces. Feed it the first bytes of a connection:
 *
 *   struct tcpmsg_proxy_info pi;
 *   int n = tcpmsg_proxy_parse(buf, len, &pi);
 *   if (n == -EAGAIN) ...              // read more (the header is not complete yet)
 *   else if (n < 0) ...                // TCPMSG_EPROXY: close this connection
 *   else ...                           // pi.src is the client; the client's bytes start at buf + n
 *
 * Only a trusted balancer may send it: accept it on a listener no one else can reach, or
 * check the connection's peer first, or any client can claim any address.
 */
#ifndef TCPMSG_PROXY_H
#define TCPMSG_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tcpmsg/addr.h"
#include "tcpmsg/deadline.h"
#include "tcpmsg/error.h"
#include "tcpmsg/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The longest header accepted: a v1 line is at most 107 bytes (its CRLF included, as the
 * specification says); a v2 header is 16 bytes and its announced length, refused past
 * this many bytes in all (HAProxy sends a few hundred at most). */
#define TCPMSG_PROXY_V1_MAX 107
#define TCPMSG_PROXY_MAX 4096

/* What a header said. */
struct tcpmsg_proxy_info {
    int version;            /* 1 or 2 */
    bool local;             /* no client address: v2 LOCAL (the balancer's own connection,
                               such as a health check), v2 AF_UNSPEC, or v1 "UNKNOWN":
                               keep the connection's own addresses */
    struct tcpmsg_addr src; /* when !local: the client (IPv4, IPv6 or Unix) */
    struct tcpmsg_addr dst; /* ... and the address it connected to on the balancer */
    /* v2 TLVs, when sent ("" / false otherwise); unknown TLVs are skipped. */
    char alpn[64];          /* PP2_TYPE_ALPN: the protocol the client negotiated */
    char authority[256];    /* PP2_TYPE_AUTHORITY: the host name the client asked for (SNI) */
    bool tls;               /* PP2_TYPE_SSL with PP2_CLIENT_SSL: the client spoke TLS to the
                               balancer */
    bool tls_verified;      /* ... and presented a certificate the balancer verified */
    char tls_version[32];   /* PP2_SUBTYPE_SSL_VERSION, e.g. "TLSv1.3" */
    char tls_cn[256];       /* PP2_SUBTYPE_SSL_CN: the client certificate's common name */
};

/*
 * tcpmsg_proxy_parse - parses the PROXY header (v1 or v2) at the start of buf[0..len).
 * Returns the header's length in bytes (> 0; what follows is the client's data), -EAGAIN
 * (what is there is the beginning of a valid header: read more, up to TCPMSG_PROXY_MAX),
 * TCPMSG_EPROXY (not a PROXY header, or a malformed one: a bad signature, version, command,
 * family or transport, a v1 line without CRLF in 107 bytes or with a bad address or port,
 * addresses or TLVs that do not fit the announced length, a header over TCPMSG_PROXY_MAX),
 * -EINVAL (buf or out NULL). TLV values too long for their field are cut at the field's
 * size; a TLV the parser does not know is skipped. *out is zeroed first. Never blocks; any
 * thread.
 */
TCPMSG_API int tcpmsg_proxy_parse(const void *buf, size_t len, struct tcpmsg_proxy_info *out);

/*
 * tcpmsg_proxy_recv - reads the PROXY header (v1 or v2) from the start of socket fd and
 * nothing past it: the client's first bytes stay in the socket for whoever reads next (a
 * TLS handshake, tcpmsg_conn_open). Waits until `deadline` (tcpmsg_deadline_in, or
 * TCPMSG_FOREVER) for the rest of a header that comes in pieces. Returns the header's length
 * (> 0) with *out filled, TCPMSG_EPROXY (not a valid header; the bytes read are lost, so
 * close the connection), TCPMSG_EOF (the peer ended before a whole header), -ETIMEDOUT, or
 * -ECONNRESET and the other errors of recv; -EINVAL (fd < 0, out NULL). Blocks up to the
 * deadline (the socket may be blocking or not: it is read with MSG_DONTWAIT and polled);
 * any thread, one caller per socket. Uses a 4 KiB buffer on the stack.
 */
TCPMSG_API int tcpmsg_proxy_recv(int fd, struct tcpmsg_proxy_info *out, int64_t deadline);

/*
 * tcpmsg_proxy_format - writes a PROXY v2 header saying what *pi says (for a relay or a
 * balancer of one's own: the next server learns who the client is): the PROXY command with
 * pi->src and pi->dst (both IPv4, both IPv6, or both Unix; IPv4-mapped IPv6 addresses, a
 * dual-stack socket's, are written as IPv4 unless the other one is a real IPv6 address), or LOCAL when pi->local; then the ALPN,
 * authority and SSL TLVs of the fields that are set. pi->version is ignored. Returns the
 * header's length, -ENOBUFS (cap too small: 16 + 216 + the TLVs is always enough within
 * TCPMSG_PROXY_MAX), -EAFNOSUPPORT (src and dst of different or unknown families),
 * -EINVAL (NULL). Never blocks; any thread.
 */
TCPMSG_API int tcpmsg_proxy_format(void *buf, size_t cap, const struct tcpmsg_proxy_info *pi);

#ifdef __cplusplus
}
#endif

#endif /* TCPMSG_PROXY_H */
