/*
 * tcpmsg/tls.h - TLS 1.2 and 1.3 under message connections and servers.
 *
 * TLS is a transport under the connection: frames are encrypted on their way to the socket
 * and decrypted on their way into the receive buffer, so the codecs, the handlers and the
 * five server models work over TLS unchanged, zero-copy receive views included. A context
 * holds what connections share: the certificate and key, the trust anchors, the policy.
 *
 *   struct tcpmsg_tls_ctx *tls;                       // a client that verifies the server
 *   struct tcpmsg_tls_config tc = {.ca_file = "ca.pem"};  // NULL: the system's store
 *   int r = tcpmsg_tls_ctx_create(&tls, TCPMSG_TLS_CLIENT, &tc, NULL, 0);
 *   struct tcpmsg_conn_opts o = {.tls = tls};         // SNI and name check: the host
 *   r = tcpmsg_conn_connect(&c, "example.org", "7000", &codec, &o, deadline);
 *   ...
 *   tcpmsg_tls_ctx_destroy(tls);                      // connections keep a reference
 *
 * A server gets its context from its configuration (tcpmsg_server_config.tls). Defaults
 * are safe: a client verifies the server's chain (against ca_file, or the system's store)
 * and its host name or IP address, on by default and turned off only by name; versions
 * are TLS 1.2 and 1.3 only; renegotiation is refused; ciphers are OpenSSL's defaults.
 *
 * A peer that ends its stream without close_notify has not ended cleanly: recv returns
 * TCPMSG_ETLSTRUNC, never TCPMSG_EOF, so a truncation attack cannot pass for an end.
 * Failures have their own codes (tcpmsg/error.h): TCPMSG_ECERTUNTRUSTED,
 * TCPMSG_ECERTEXPIRED, TCPMSG_ECERTNAME, TCPMSG_ECERTMISSING, TCPMSG_ETLSVERSION,
 * TCPMSG_ETLSALERT (the peer refused), TCPMSG_ETLS (any other TLS failure);
 * tcpmsg_conn_tls_info gives OpenSSL's own words for logs.
 *
 * Built with OpenSSL 3 (TCPMSG_TLS, on when CMake finds OpenSSL). A library built without
 * it keeps every function: tcpmsg_tls_supported() returns false and the calls return
 * -ENOTSUP.
 *
 * Thread safety: a context may be used by any number of connections in any threads (it is
 * read-only once created); a session handle may be used by one connect at a time.
 */
#ifndef TCPMSG_TLS_H
#define TCPMSG_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "tcpmsg/version.h"

#ifdef __cplusplus
extern "C" {
#endif

struct tcpmsg_tls_ctx;     /* opaque: certificates, trust and policy, shared by connections */
struct tcpmsg_tls_session; /* opaque: a client's session, to resume it on the next connect */

/* Which end of the handshake a context is for. */
enum tcpmsg_tls_role { TCPMSG_TLS_CLIENT = 0, TCPMSG_TLS_SERVER = 1 };

/* Peer certificate checks. */
enum tcpmsg_tls_verify {
    TCPMSG_TLS_VERIFY_DEFAULT = 0,  /* client: REQUIRED; server: OPTIONAL if ca_file or ca_pem
                                       is set, else NONE */
    TCPMSG_TLS_VERIFY_NONE = 1,     /* no certificate asked for or checked (a client doing this
                                       talks to whoever answers: tools say "insecure") */
    TCPMSG_TLS_VERIFY_OPTIONAL = 2, /* server: a client certificate is asked for and, if sent,
                                       must verify */
    TCPMSG_TLS_VERIFY_REQUIRED = 3  /* the peer must present a certificate that verifies */
};

/* Protocol versions. */
enum tcpmsg_tls_version {
    TCPMSG_TLS_DEFAULT = 0, /* min: TLS 1.2, max: TLS 1.3 */
    TCPMSG_TLS_1_2 = 12,
    TCPMSG_TLS_1_3 = 13
};

/* A certificate chain (leaf first) and its private key, in PEM: files, or text in memory. */
struct tcpmsg_tls_cert {
    const char *cert_file; /* PEM chain file ... */
    const char *key_file;  /* ... and key file (may be the same file) */
    const char *cert_pem;  /* or the chain as PEM text (NUL-terminated) ... */
    const char *key_pem;   /* ... and the key as PEM text */
};

/* A context's configuration; zero-initialised fields take the default in brackets. Strings
 * are read during tcpmsg_tls_ctx_create and not kept. */
struct tcpmsg_tls_config {
    struct tcpmsg_tls_cert cert;             /* own certificate: a server's (required), or a
                                                client's for servers that ask for one */
    const struct tcpmsg_tls_cert *sni_certs; /* server: more certificates, each chosen when
                                                the client's SNI name matches one of its
                                                names; cert answers every other name */
    size_t sni_count;                        /* entries of sni_certs */
    const char *ca_file;                     /* trust anchors, PEM: a client's for servers
                                                [the system's store], a server's for client
                                                certificates [none] */
    const char *ca_pem;                      /* or as PEM text (with ca_file: both) */
    enum tcpmsg_tls_verify verify;           /* [TCPMSG_TLS_VERIFY_DEFAULT] */
    bool no_verify_name;                     /* client: the chain is checked, the name is not
                                                (name checks are on by default) */
    const char *alpn;                        /* ALPN protocols, comma-separated, in order of
                                                preference ("tcpmsg/1,h2") [none] */
    enum tcpmsg_tls_version min_version;     /* [TLS 1.2] */
    enum tcpmsg_tls_version max_version;     /* [TLS 1.3] */
    const char *ciphers;                     /* TLS 1.2 cipher list, OpenSSL syntax
                                                [OpenSSL's default] */
    const char *ciphersuites;                /* TLS 1.3 suites, OpenSSL syntax [default] */
    bool no_tickets;                         /* server: no session tickets (no resumption) */
    bool ktls;                               /* hand the records to the kernel (kTLS) after
                                                the handshake where the kernel, OpenSSL and
                                                the cipher allow it [off]: then OpenSSL
                                                reads and writes the socket itself (made
                                                non-blocking); where they do not, TLS stays
                                                in OpenSSL on that socket. Either way the
                                                connection's calls work the same
                                                (docs/tls.md: the few differences);
                                                tcpmsg_tls_info says which it got */
};

/*
 * tcpmsg_tls_ctx_create - builds a context for `role` from cfg (read, not kept): loads the
 * certificates and keys, the trust anchors, the policy. Returns 0 with *out set, or
 * -EINVAL (a contradictory configuration: a server without a certificate, a name check
 * without verification, min above max, a version outside 1.2..1.3), -ENOENT / -EACCES (a
 * file that cannot be read), TCPMSG_ETLS (a certificate, key or cipher list OpenSSL
 * refuses, or a key that does not match its certificate), -ENOMEM, -ENOTSUP (built
 * without TLS). When why is not NULL, it receives a one-line explanation (NUL-terminated,
 * at most why_len bytes; "" on success). Does not block beyond reading the files.
 * tcpmsg_tls_ctx_destroy - drops the caller's reference: the context is freed once no
 * connection uses it any more. NULL is accepted.
 */
TCPMSG_API int tcpmsg_tls_ctx_create(struct tcpmsg_tls_ctx **out, enum tcpmsg_tls_role role,
                                     const struct tcpmsg_tls_config *cfg, char *why,
                                     size_t why_len);
TCPMSG_API void tcpmsg_tls_ctx_destroy(struct tcpmsg_tls_ctx *ctx);

/*
 * tcpmsg_tls_ctx_ref - takes another reference on ctx (each one is dropped with
 * tcpmsg_tls_ctx_destroy) and returns ctx; NULL gives NULL. Any thread.
 * tcpmsg_tls_ctx_role - the role ctx was made for; -EINVAL for NULL.
 */
TCPMSG_API struct tcpmsg_tls_ctx *tcpmsg_tls_ctx_ref(struct tcpmsg_tls_ctx *ctx);
TCPMSG_API int tcpmsg_tls_ctx_role(const struct tcpmsg_tls_ctx *ctx);

/* tcpmsg_tls_supported - whether this library was built with TLS (OpenSSL). */
TCPMSG_API bool tcpmsg_tls_supported(void);

/* What a connection's handshake negotiated (tcpmsg_conn_tls_info). */
struct tcpmsg_tls_info {
    bool done;              /* the handshake completed */
    int version;            /* 12 or 13 (TLS 1.2, 1.3); 0 before the handshake */
    bool resumed;           /* the session was resumed (no full handshake) */
    bool peer_verified;     /* the peer presented a certificate and it verified */
    char cipher[64];        /* OpenSSL's name of the cipher, e.g. "TLS_AES_128_GCM_SHA256" */
    char alpn[64];          /* the ALPN protocol agreed, "" if none */
    char sni[256];          /* server: the name the client asked for, "" if none */
    char peer_subject[256]; /* the peer certificate's subject (RFC 2253), "" if none */
    char detail[256];       /* OpenSSL's words for the last failure, "" if none */
    bool ktls_send;         /* the kernel encrypts what this end sends (kTLS) */
    bool ktls_recv;         /* the kernel decrypts what this end receives (kTLS) */
};

/*
 * tcpmsg_tls_session_destroy - frees a session handle from tcpmsg_conn_tls_session. NULL is
 * accepted.
 */
TCPMSG_API void tcpmsg_tls_session_destroy(struct tcpmsg_tls_session *s);

#ifdef __cplusplus
}
#endif

#endif /* TCPMSG_TLS_H */
