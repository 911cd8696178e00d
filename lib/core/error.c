/* Error text. The codes the library returns on purpose get text that says what happened in
 * libtcpmsg's terms; any other errno falls back to the C library's own description
 * (strerrordesc_np: the library is built with _GNU_SOURCE). */
#include "tcpmsg/error.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

struct errinfo {
    int code;
    const char *name;
    const char *text;
};

/* Library codes and the errno values that are part of the documented vocabulary. */
static const struct errinfo table[] = {
    {0, "OK", "success"},
    {TCPMSG_EOF, "TCPMSG_EOF", "end of stream at a frame boundary"},
    {TCPMSG_EIDLE, "TCPMSG_EIDLE", "connection idle for too long"},
    {TCPMSG_ESLOW, "TCPMSG_ESLOW", "peer too slow to complete a frame"},
    {TCPMSG_EFULL, "TCPMSG_EFULL", "server at its connection limit"},
    {TCPMSG_ETLS, "TCPMSG_ETLS", "TLS handshake or protocol failure"},
    {TCPMSG_ETLSALERT, "TCPMSG_ETLSALERT", "the peer refused the TLS handshake"},
    {TCPMSG_ECERTUNTRUSTED, "TCPMSG_ECERTUNTRUSTED", "peer certificate not trusted"},
    {TCPMSG_ECERTEXPIRED, "TCPMSG_ECERTEXPIRED", "peer certificate expired or not yet valid"},
    {TCPMSG_ECERTNAME, "TCPMSG_ECERTNAME", "peer certificate is for another name"},
    {TCPMSG_ECERTMISSING, "TCPMSG_ECERTMISSING", "peer certificate required but not sent"},
    {TCPMSG_ETLSVERSION, "TCPMSG_ETLSVERSION", "no TLS version acceptable to both sides"},
    {TCPMSG_ETLSTRUNC, "TCPMSG_ETLSTRUNC", "TLS stream ended without close_notify (truncated)"},
    {TCPMSG_EPROXY, "TCPMSG_EPROXY", "PROXY protocol header missing or malformed"},
    {TCPMSG_ELIMIT, "TCPMSG_ELIMIT", "client over its connection limit"},
    {-ENOTSUP, "ENOTSUP", "not supported by this build"},
    {TCPMSG_EAI_AGAIN, "TCPMSG_EAI_AGAIN", "temporary failure in name resolution"},
    {TCPMSG_EAI_FAIL, "TCPMSG_EAI_FAIL", "non-recoverable failure in name resolution"},
    {TCPMSG_EAI_NONAME, "TCPMSG_EAI_NONAME", "host or service not known"},
    {TCPMSG_EAI_NODATA, "TCPMSG_EAI_NODATA", "host has no address"},
    {TCPMSG_EAI_FAMILY, "TCPMSG_EAI_FAMILY", "address family not supported"},
    {TCPMSG_EAI_SERVICE, "TCPMSG_EAI_SERVICE", "service not available for TCP"},
    {TCPMSG_EAI_ADDRFAMILY, "TCPMSG_EAI_ADDRFAMILY", "host has no address in the requested family"},
    {TCPMSG_EAI_OTHER, "TCPMSG_EAI_OTHER", "name resolution failed"},
    {-EINVAL, "EINVAL", "invalid argument or configuration"},
    {-ETIMEDOUT, "ETIMEDOUT", "deadline passed"},
    {-EMSGSIZE, "EMSGSIZE", "frame larger than the configured limit"},
    {-EPROTO, "EPROTO", "malformed frame, or end of stream inside a frame"},
    {-ECONNRESET, "ECONNRESET", "connection reset by peer"},
    {-EPIPE, "EPIPE", "connection closed by peer while sending"},
    {-ENOMEM, "ENOMEM", "out of memory"},
    {-ECONNREFUSED, "ECONNREFUSED", "connection refused"},
    {-EHOSTUNREACH, "EHOSTUNREACH", "host unreachable"},
    {-ENETUNREACH, "ENETUNREACH", "network unreachable"},
    {-EAGAIN, "EAGAIN", "operation would block"},
    {-EBADF, "EBADF", "bad or closed descriptor"},
    {-EMFILE, "EMFILE", "too many open files in this process"},
    {-ENFILE, "ENFILE", "too many open files in the system"},
    {-EADDRINUSE, "EADDRINUSE", "address already in use"},
    {-ENOBUFS, "ENOBUFS", "buffer full or too small"},
    {-ESHUTDOWN, "ESHUTDOWN", "server stopped"},
};

/* Positive errno values are accepted as a convenience: fold them onto the negative form. */
static int
normalize(int code)
{
    return (code > 0 && code < 4096) ? -code : code;
}

static const struct errinfo *
lookup(int code)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].code == code)
            return &table[i];
    return NULL;
}

const char *
tcpmsg_strerror(int code)
{
    code = normalize(code);
    const struct errinfo *e = lookup(code);
    if (e)
        return e->text;
    if (code < 0 && code > -4096) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
        /* strerrordesc_np returns static text and, unlike strerror, is thread-safe. */
        const char *s = strerrordesc_np(-code);
        if (s)
            return s;
#endif
    }
    return "unknown error";
}

const char *
tcpmsg_errname(int code)
{
    code = normalize(code);
    const struct errinfo *e = lookup(code);
    if (e)
        return e->name;
    if (code < 0 && code > -4096) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
        const char *s = strerrorname_np(-code);
        if (s)
            return s;
#endif
    }
    return "EUNKNOWN";
}
