/*
 * tcpmsg/error.h - the library's error codes and their text.
 *
 * Every libtcpmsg function that can fail returns an int (or a ptrdiff_t count): >= 0 is
 * success, < 0 is an error. An error is either a negated errno value (-EINVAL, -ETIMEDOUT,
 * -EMSGSIZE, -EPROTO, -ECONNRESET, -EPIPE, -ENOMEM, ...) or one of the TCPMSG_E* constants
 * below, which lie outside errno's range (Linux errno values are below 4096). errno itself
 * is never the error channel.
 *
 * The vocabulary (docs/design.md has the full table):
 *   -EINVAL      bad argument or impossible configuration
 *   -ETIMEDOUT   the deadline passed
 *   -EMSGSIZE    a frame over the configured limit (announced or accumulated)
 *   -EPROTO      malformed framing, or the stream ended inside a frame
 *   TCPMSG_EOF   the peer ended the stream cleanly, at a frame boundary
 *   -ECONNRESET  the peer reset the connection
 *   -EPIPE       writing to a connection the peer has closed
 *   -ENOMEM      out of memory
 *   TCPMSG_EAI_* name resolution failures (getaddrinfo)
 *   TCPMSG_ETLS, TCPMSG_ECERT*, ...  TLS failures (tcpmsg/tls.h)
 *   TCPMSG_EPROXY  a PROXY protocol header missing or malformed (tcpmsg/proxy.h)
 *   TCPMSG_ELIMIT  a client over its own limit (connections or new connections per second)
 */
#ifndef TCPMSG_ERROR_H
#define TCPMSG_ERROR_H

#include "tcpmsg/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Library-specific error codes. All are negative and below -4095, so they never collide
 * with a negated errno value. */
enum tcpmsg_error {
    TCPMSG_EOF = -5001,            /* clean end of stream at a frame boundary */
    TCPMSG_EIDLE = -5002,          /* server: the connection was idle too long */
    TCPMSG_ESLOW = -5003,          /* server: the peer did not complete a frame in time */
    TCPMSG_EFULL = -5004,          /* server: at its connection limit, connection refused */
    TCPMSG_ETLS = -5010,           /* TLS: handshake or record failure (not TLS, bad data...) */
    TCPMSG_ETLSALERT = -5011,      /* TLS: the peer refused the handshake (a fatal alert) */
    TCPMSG_ECERTUNTRUSTED = -5012, /* TLS: the peer's certificate chain is not trusted */
    TCPMSG_ECERTEXPIRED = -5013,   /* TLS: the peer's certificate expired (or is not yet valid) */
    TCPMSG_ECERTNAME = -5014,      /* TLS: the peer's certificate is for another name */
    TCPMSG_ECERTMISSING = -5015,   /* TLS: the peer sent no certificate, and one is required */
    TCPMSG_ETLSVERSION = -5016,    /* TLS: no protocol version both sides accept */
    TCPMSG_ETLSTRUNC = -5017,      /* TLS: the stream ended without close_notify (truncated) */
    TCPMSG_EPROXY = -5020,         /* PROXY protocol: the header is missing or malformed */
    TCPMSG_ELIMIT = -5021,         /* a client address over its connection or rate limit */
    TCPMSG_EAI_AGAIN = -5101,      /* name resolution: temporary failure, try again */
    TCPMSG_EAI_FAIL = -5102,       /* name resolution: non-recoverable failure */
    TCPMSG_EAI_NONAME = -5103,     /* name resolution: host or service not known */
    TCPMSG_EAI_NODATA = -5104,     /* name resolution: the host has no address */
    TCPMSG_EAI_FAMILY = -5105,     /* name resolution: address family not supported */
    TCPMSG_EAI_SERVICE = -5106,    /* name resolution: service not available for TCP */
    TCPMSG_EAI_ADDRFAMILY = -5107, /* name resolution: no address in the requested family */
    TCPMSG_EAI_OTHER = -5108       /* name resolution: any other resolver failure */
};

/*
 * tcpmsg_strerror - a one-line English description of an error code.
 * Accepts every code the library returns: 0, the TCPMSG_E* constants and negated errno
 * values (a positive errno value is accepted too). The string is static, owned by the
 * library, and safe to use from several threads. Unknown codes give "unknown error".
 * Never fails, never returns NULL.
 */
TCPMSG_API const char *tcpmsg_strerror(int code);

/*
 * tcpmsg_errname - the symbolic name of an error code, e.g. "EMSGSIZE", "TCPMSG_EOF",
 * "TCPMSG_EAI_NONAME", "OK" for 0; meant for logs and test output. Same input rules and
 * ownership as tcpmsg_strerror(). Unknown codes give "EUNKNOWN". Never returns NULL.
 */
TCPMSG_API const char *tcpmsg_errname(int code);

#ifdef __cplusplus
}
#endif

#endif /* TCPMSG_ERROR_H */
