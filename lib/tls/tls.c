/* The TLS engine over OpenSSL 3: contexts, and one session as bytes in and bytes out.
 *
 * OpenSSL reads and writes through a BIO of our own whose callbacks only move bytes between
 * OpenSSL and two buffers of the session (input from the peer, output for the peer): no
 * system call happens here, the io layer owns the socket. A write into the output buffer
 * always succeeds (it grows), so SSL_write never asks to be repeated with the same buffer,
 * and the conn bounds what it queues; a read from an empty input buffer asks for a retry,
 * so SSL_read reports "want read" instead of an end of stream until the peer's end has
 * really come (tcpmsg__tls_in_eof). */
#include "tls_internal.h"

#include "tcpmsg/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define IN_MIN ((size_t)17 * 1024)  /* room for one whole record at least */
#define IN_READ ((size_t)64 * 1024) /* what one receive may bring */
#define ALPN_MAX 255

struct tcpmsg_tls_ctx {
    _Atomic long refs;
    enum tcpmsg_tls_role role;
    SSL_CTX *ssl;    /* the default certificate */
    SSL_CTX **sni;   /* server: one per extra certificate, same policy */
    X509 **sni_leaf; /* ... and its leaf, to match names */
    size_t nsni;
    BIO_METHOD *bio;                  /* the buffers' BIO, one per context: no global state */
    BIO_METHOD *sock;                 /* ktls: the filter over OpenSSL's socket BIO */
    bool verify_name;                 /* client: check the peer's name */
    bool ktls;                        /* sessions run on the socket, kTLS offered */
    unsigned char alpn[ALPN_MAX + 1]; /* wire format: length-prefixed names */
    size_t alpn_len;
};

struct tcpmsg_tls_session {
    SSL_SESSION *s;
};

struct tcpmsg__tls {
    struct tcpmsg_tls_ctx *ctx;
    SSL *ssl;
    uint8_t *in;
    size_t icap, ipos, ilen; /* ciphertext from the peer not yet taken: in[ipos, ilen) */
    bool in_eof;
    uint8_t *out;
    size_t ocap, opos, olen; /* ciphertext for the peer: out[opos, olen) */
    int err;                 /* sticky */
    bool done;               /* handshake complete */
    bool started;            /* OpenSSL has been given the handshake */
    bool on_socket;          /* OpenSSL reads and writes the descriptor itself (kTLS) */
    bool want_write;         /* on_socket: the last call waits for the socket's room ... */
    bool read_wants_write;   /* ... and that call was a read */
    int fd;                  /* on_socket: the descriptor, and how to send on it */
    tcpmsg__tls_send_fn sender;
    SSL_SESSION *session; /* client: the newest session the server gave */
    char detail[256];
};

/* ---- fork safety ----------------------------------------------------------------------------
 * OpenSSL's locks are plain pthread locks that a fork copies as they are: a process that
 * forks while another of its threads is inside OpenSSL (the FORK and POOL models under
 * tcpmsg_server_start, while the caller connects over TLS) gives the child a lock that no
 * thread will ever release, and the child's first handshake waits for ever (seen: a POOL
 * worker blocked in CRYPTO_THREAD_write_lock). Every entry point of this file that calls
 * OpenSSL runs under a shared lock, and a fork (pthread_atfork, so the application's forks
 * too) takes it exclusively: no thread is inside OpenSSL when the process is copied. Entry
 * points never block on I/O (the memory engine makes no system call; with kTLS, OpenSSL's
 * socket calls are non-blocking ones), so a fork waits at most for one handshake
 * computation; writers are preferred, so a stream of TLS calls cannot starve
 * it, and a thread-local depth lets entry points call each other. */

static pthread_rwlock_t fork_lock;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static _Thread_local unsigned guard_depth;

static void
fork_lock_init(void)
{
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&fork_lock, &a);
    pthread_rwlockattr_destroy(&a);
}

static void fork_setup(void);

static void
fork_prepare(void)
{
    /* Done already (the handler is registered by fork_setup): but the forking thread may
     * never have passed the once itself, and this is what orders the lock's init before
     * its use here for ThreadSanitizer (glibc's own atfork lock is invisible to it). */
    pthread_once(&fork_once, fork_setup);
    pthread_rwlock_wrlock(&fork_lock);
}

static void
fork_parent(void)
{
    pthread_rwlock_unlock(&fork_lock);
}

static void
fork_child(void)
{
    fork_lock_init(); /* the child has one thread, and the lock's owner was its parent's */
}

static void
fork_setup(void)
{
    fork_lock_init();
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static void
guard_enter(void)
{
    pthread_once(&fork_once, fork_setup);
    if (guard_depth++ == 0)
        pthread_rwlock_rdlock(&fork_lock);
}

static void
guard_leave(void)
{
    if (--guard_depth == 0)
        pthread_rwlock_unlock(&fork_lock);
}

bool
tcpmsg_tls_supported(void)
{
    return true;
}

/* ---- the buffers' BIO ------------------------------------------------------------------- */

static int
bio_read(BIO *b, char *dst, size_t n, size_t *got)
{
    struct tcpmsg__tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t avail = t->ilen - t->ipos;
    if (avail == 0) {
        *got = 0;
        if (t->in_eof)
            return 0; /* the transport's end: OpenSSL decides if it was clean */
        BIO_set_retry_read(b);
        return 0;
    }
    if (n > avail)
        n = avail;
    memcpy(dst, t->in + t->ipos, n);
    t->ipos += n;
    if (t->ipos == t->ilen)
        t->ipos = t->ilen = 0;
    *got = n;
    return 1;
}

static int
out_reserve(struct tcpmsg__tls *t, size_t n)
{
    if (t->opos > 0 && t->ocap - t->olen < n) {
        memmove(t->out, t->out + t->opos, t->olen - t->opos);
        t->olen -= t->opos;
        t->opos = 0;
    }
    if (t->ocap - t->olen >= n)
        return 0;
    size_t need = t->olen + n, ncap = t->ocap ? t->ocap : 16384;
    while (ncap < need)
        ncap *= 2;
    uint8_t *p = realloc(t->out, ncap);
    if (!p)
        return -ENOMEM;
    t->out = p;
    t->ocap = ncap;
    return 0;
}

static int
bio_write(BIO *b, const char *src, size_t n, size_t *put)
{
    struct tcpmsg__tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (out_reserve(t, n) < 0) {
        *put = 0;
        return 0;
    }
    memcpy(t->out + t->olen, src, n);
    t->olen += n;
    *put = n;
    return 1;
}

static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    /* A flush succeeds (the conn writes the output buffer); nothing else is supported. */
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int
bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* ---- the socket's filter (ktls) -----------------------------------------------------------
 * OpenSSL hands the keys to the kernel only through its own socket BIO, and that one sends
 * with write(): a SIGPIPE on a broken connection. So this filter sits on top of it: every
 * control (the kTLS ones included) and every read go down to the socket BIO, and a write
 * goes out through the io layer's send (MSG_NOSIGNAL) while the records are OpenSSL's; once
 * the kernel encrypts, writes go down too (they carry the record type in a control
 * message), and the connection holds SIGPIPE off around them. */

static int
sock_read(BIO *b, char *dst, size_t n, size_t *got)
{
    BIO_clear_retry_flags(b);
    int r = BIO_read_ex(BIO_next(b), dst, n, got);
    BIO_copy_next_retry(b);
    return r;
}

static int
sock_write(BIO *b, const char *src, size_t n, size_t *put)
{
    struct tcpmsg__tls *t = BIO_get_data(b);
    BIO *next = BIO_next(b);
    BIO_clear_retry_flags(b);
    *put = 0;
    if (BIO_ctrl(next, BIO_CTRL_GET_KTLS_SEND, 0, NULL) == 1) {
        int r = BIO_write_ex(next, src, n, put);
        BIO_copy_next_retry(b);
        return r;
    }
    ptrdiff_t k = t->sender(t->fd, src, n);
    if (k >= 0) {
        *put = (size_t)k;
        return 1;
    }
    if (k == -EAGAIN)
        BIO_set_retry_write(b);
    else
        errno = (int)-k; /* what failure() reports */
    return 0;
}

static long
sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return BIO_ctrl(BIO_next(b), cmd, num, ptr);
}

/* ---- contexts --------------------------------------------------------------------------- */

static void
say(char *why, size_t why_len, const char *what)
{
    if (!why || !why_len)
        return;
    unsigned long e = ERR_peek_last_error();
    if (e) {
        char ossl[200];
        ERR_error_string_n(e, ossl, sizeof ossl);
        (void)snprintf(why, why_len, "%s: %s", what, ossl);
    } else {
        (void)snprintf(why, why_len, "%s", what);
    }
}

static int
proto(enum tcpmsg_tls_version v, int dflt)
{
    return v == TCPMSG_TLS_DEFAULT ? dflt
           : v == TCPMSG_TLS_1_2   ? TLS1_2_VERSION
           : v == TCPMSG_TLS_1_3   ? TLS1_3_VERSION
                                   : -1;
}

/* A file that cannot be opened has its own code; anything else OpenSSL refuses is ETLS. */
static int
file_error(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    (void)fclose(f); /* opened for reading only, to tell why OpenSSL refused it */
    return TCPMSG_ETLS;
}

static int
load_cert(SSL_CTX *ssl, const struct tcpmsg_tls_cert *c, char *why, size_t why_len)
{
    if (c->cert_file) {
        if (SSL_CTX_use_certificate_chain_file(ssl, c->cert_file) != 1) {
            say(why, why_len, "cannot load the certificate chain");
            return file_error(c->cert_file);
        }
    } else {
        BIO *b = BIO_new_mem_buf(c->cert_pem, -1);
        X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        int ok = x && SSL_CTX_use_certificate(ssl, x) == 1;
        X509_free(x);
        while (ok) { /* the rest of the chain */
            X509 *ca = PEM_read_bio_X509(b, NULL, NULL, NULL);
            if (!ca)
                break;
            if (SSL_CTX_add0_chain_cert(ssl, ca) != 1) {
                X509_free(ca);
                ok = 0;
            }
        }
        BIO_free(b);
        ERR_clear_error(); /* the end of the PEM text is reported as an error */
        if (!ok) {
            say(why, why_len, "cannot load the certificate PEM");
            return TCPMSG_ETLS;
        }
    }
    if (c->key_file) {
        if (SSL_CTX_use_PrivateKey_file(ssl, c->key_file, SSL_FILETYPE_PEM) != 1) {
            say(why, why_len,
                ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH
                    ? "the private key does not match the certificate"
                    : "cannot load the private key");
            return file_error(c->key_file);
        }
    } else {
        BIO *b = BIO_new_mem_buf(c->key_pem, -1);
        EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
        int ok = k && SSL_CTX_use_PrivateKey(ssl, k) == 1;
        EVP_PKEY_free(k);
        BIO_free(b);
        if (!ok) {
            say(why, why_len,
                ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH
                    ? "the private key does not match the certificate"
                    : "cannot load the private key PEM");
            return TCPMSG_ETLS;
        }
    }
    if (SSL_CTX_check_private_key(ssl) != 1) {
        say(why, why_len, "the private key does not match the certificate");
        return TCPMSG_ETLS;
    }
    return 0;
}

static bool
has_cert(const struct tcpmsg_tls_cert *c)
{
    return (c->cert_file || c->cert_pem) && (c->key_file || c->key_pem);
}

static bool
half_cert(const struct tcpmsg_tls_cert *c)
{
    return !has_cert(c) && (c->cert_file || c->cert_pem || c->key_file || c->key_pem);
}

static int
load_trust(SSL_CTX *ssl, const struct tcpmsg_tls_config *cfg, enum tcpmsg_tls_role role, char *why,
           size_t why_len)
{
    if (cfg->ca_file) {
        if (SSL_CTX_load_verify_locations(ssl, cfg->ca_file, NULL) != 1) {
            say(why, why_len, "cannot load the CA file");
            return file_error(cfg->ca_file);
        }
        if (role == TCPMSG_TLS_SERVER) { /* the CAs named in the certificate request */
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
            if (names)
                SSL_CTX_set_client_CA_list(ssl, names);
        }
    }
    if (cfg->ca_pem) {
        BIO *b = BIO_new_mem_buf(cfg->ca_pem, -1);
        X509_STORE *store = SSL_CTX_get_cert_store(ssl);
        int n = 0;
        for (X509 *x; b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)); n++) {
            X509_STORE_add_cert(store, x);
            if (role == TCPMSG_TLS_SERVER)
                SSL_CTX_add_client_CA(ssl, x);
            X509_free(x);
        }
        BIO_free(b);
        ERR_clear_error();
        if (n == 0) {
            say(why, why_len, "no certificate in the CA PEM");
            return TCPMSG_ETLS;
        }
    }
    if (role == TCPMSG_TLS_CLIENT && !cfg->ca_file && !cfg->ca_pem &&
        SSL_CTX_set_default_verify_paths(ssl) != 1) {
        say(why, why_len, "cannot load the system's trust store");
        return TCPMSG_ETLS;
    }
    return 0;
}

/* "a,b" into ALPN's wire format. */
static int
alpn_wire(const char *list, unsigned char *out, size_t *len)
{
    size_t n = 0;
    while (*list) {
        const char *end = strchr(list, ',');
        size_t k = end ? (size_t)(end - list) : strlen(list);
        if (k == 0 || k > 255 || n + 1 + k > ALPN_MAX)
            return -EINVAL;
        out[n++] = (unsigned char)k;
        /* ALPN's wire format: length-prefixed names, no terminator. */
        memcpy(out + n, list, k); // NOLINT(bugprone-not-null-terminated-result)
        n += k;
        list += k + (end ? 1 : 0);
        if (end && !*list)
            return -EINVAL; /* a trailing comma */
    }
    *len = n;
    return n ? 0 : -EINVAL;
}

static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
            unsigned int inlen, void *arg)
{
    (void)ssl;
    struct tcpmsg_tls_ctx *ctx = arg;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, ctx->alpn, (unsigned)ctx->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* no protocol in common: refused (RFC 7301) */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Server: the certificate whose names match the client's SNI. */
static int
servername(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    struct tcpmsg_tls_ctx *ctx = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i < ctx->nsni; i++)
        if (X509_check_host(ctx->sni_leaf[i], name, 0, 0, NULL) == 1) {
            SSL_set_SSL_CTX(ssl, ctx->sni[i]);
            break;
        }
    return SSL_TLSEXT_ERR_OK;
}

/* Client: keeps the newest session the server gives (TLS 1.3 sends it after the
 * handshake), for tcpmsg_conn_tls_session. */
static int
new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct tcpmsg__tls *t = SSL_get_app_data(ssl);
    if (!t)
        return 0;
    SSL_SESSION_free(t->session);
    t->session = sess; /* returning 1: the reference is ours */
    return 1;
}

/* One SSL_CTX with the whole policy, and certificate c (NULL: none). */
static int
make_ssl_ctx(SSL_CTX **out, struct tcpmsg_tls_ctx *ctx, const struct tcpmsg_tls_config *cfg,
             const struct tcpmsg_tls_cert *c, char *why, size_t why_len)
{
    bool server = ctx->role == TCPMSG_TLS_SERVER;
    SSL_CTX *ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ssl) {
        say(why, why_len, "cannot create an OpenSSL context");
        return -ENOMEM;
    }
    *out = ssl;
    int minv = proto(cfg->min_version, TLS1_2_VERSION),
        maxv = proto(cfg->max_version, TLS1_3_VERSION);
    SSL_CTX_set_min_proto_version(ssl, minv);
    SSL_CTX_set_max_proto_version(ssl, maxv);
    SSL_CTX_set_options(ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Idle connections give their record buffers back. Over the buffers' BIO, moving
     * buffers and partial writes are never needed (it takes everything); on the socket
     * (kTLS), a write takes what the socket takes and is retried from where the
     * connection's send buffer has moved the rest (engine_new). */
    SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    if (cfg->ktls)
        SSL_CTX_set_options(ssl, SSL_OP_ENABLE_KTLS);
    if (cfg->ciphers && SSL_CTX_set_cipher_list(ssl, cfg->ciphers) != 1) {
        say(why, why_len, "no usable cipher in the TLS 1.2 cipher list");
        return TCPMSG_ETLS;
    }
    if (cfg->ciphersuites && SSL_CTX_set_ciphersuites(ssl, cfg->ciphersuites) != 1) {
        say(why, why_len, "no usable suite in the TLS 1.3 cipher suites");
        return TCPMSG_ETLS;
    }
    if (c) {
        int r = load_cert(ssl, c, why, why_len);
        if (r < 0)
            return r;
    }
    int r = load_trust(ssl, cfg, ctx->role, why, why_len);
    if (r < 0)
        return r;
    enum tcpmsg_tls_verify v = cfg->verify;
    if (v == TCPMSG_TLS_VERIFY_DEFAULT)
        v = !server                         ? TCPMSG_TLS_VERIFY_REQUIRED
            : (cfg->ca_file || cfg->ca_pem) ? TCPMSG_TLS_VERIFY_OPTIONAL
                                            : TCPMSG_TLS_VERIFY_NONE;
    int mode = v == TCPMSG_TLS_VERIFY_NONE ? SSL_VERIFY_NONE
               : v == TCPMSG_TLS_VERIFY_OPTIONAL
                   ? SSL_VERIFY_PEER
                   : SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ssl, mode, NULL);
    if (server) {
        /* Sessions resume across connections and across worker processes (the ticket keys
         * are made here, before the models fork). */
        static const unsigned char sid[] = "tcpmsg";
        SSL_CTX_set_session_id_context(ssl, sid, sizeof sid - 1);
        if (cfg->no_tickets) {
            SSL_CTX_set_options(ssl, SSL_OP_NO_TICKET);
            SSL_CTX_set_num_tickets(ssl, 0);
            SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
        }
        if (ctx->alpn_len)
            SSL_CTX_set_alpn_select_cb(ssl, alpn_select, ctx);
        if (ctx->nsni) {
            SSL_CTX_set_tlsext_servername_callback(ssl, servername);
            SSL_CTX_set_tlsext_servername_arg(ssl, ctx);
        }
    } else {
        SSL_CTX_set_session_cache_mode(ssl,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ssl, new_session);
        /* ALPN's setter returns 0 on success, unlike every other OpenSSL call. */
        if (ctx->alpn_len &&
            SSL_CTX_set_alpn_protos(ssl, ctx->alpn, (unsigned)ctx->alpn_len) != 0) {
            say(why, why_len, "cannot set the ALPN protocols");
            return TCPMSG_ETLS;
        }
    }
    return 0;
}

static void
ctx_free(struct tcpmsg_tls_ctx *ctx)
{
    SSL_CTX_free(ctx->ssl);
    for (size_t i = 0; i < ctx->nsni; i++) {
        SSL_CTX_free(ctx->sni ? ctx->sni[i] : NULL);
        X509_free(ctx->sni_leaf ? ctx->sni_leaf[i] : NULL);
    }
    free(ctx->sni);
    free(ctx->sni_leaf);
    BIO_meth_free(ctx->bio);
    BIO_meth_free(ctx->sock);
    free(ctx);
}

static int
api_ctx_create(struct tcpmsg_tls_ctx **out, enum tcpmsg_tls_role role,
               const struct tcpmsg_tls_config *cfg, char *why, size_t why_len)
{
    static const struct tcpmsg_tls_config defaults;
    if (why && why_len)
        why[0] = '\0';
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cfg)
        cfg = &defaults;
    bool server = role == TCPMSG_TLS_SERVER;
    int minv = proto(cfg->min_version, TLS1_2_VERSION),
        maxv = proto(cfg->max_version, TLS1_3_VERSION);
    const char *bad = NULL;
    if (role != TCPMSG_TLS_CLIENT && role != TCPMSG_TLS_SERVER)
        bad = "unknown role";
    else if (minv < 0 || maxv < 0 || minv > maxv)
        bad = "TLS versions: 1.2 and 1.3 only, min <= max";
    else if (server && !has_cert(&cfg->cert))
        bad = "a server needs a certificate and its key";
    else if (half_cert(&cfg->cert))
        bad = "a certificate needs its key, and a key its certificate";
    else if ((cfg->cert.cert_file && cfg->cert.cert_pem) ||
             (cfg->cert.key_file && cfg->cert.key_pem))
        bad = "a certificate (or key) as a file or as PEM text, not both";
    else if (cfg->sni_count && (!server || !cfg->sni_certs))
        bad = "SNI certificates are for servers, and need their list";
    else if (cfg->verify < TCPMSG_TLS_VERIFY_DEFAULT || cfg->verify > TCPMSG_TLS_VERIFY_REQUIRED)
        bad = "unknown verification mode";
    else if (!server && cfg->verify == TCPMSG_TLS_VERIFY_OPTIONAL)
        bad = "a client verifies the server or does not: OPTIONAL is for servers";
    else if (server &&
             (cfg->verify == TCPMSG_TLS_VERIFY_OPTIONAL ||
              cfg->verify == TCPMSG_TLS_VERIFY_REQUIRED) &&
             !cfg->ca_file && !cfg->ca_pem)
        bad = "verifying client certificates needs the CA that signs them";
    for (size_t i = 0; !bad && i < cfg->sni_count; i++)
        if (!has_cert(&cfg->sni_certs[i]))
            bad = "an SNI certificate without its key";
    if (bad) {
        if (why && why_len)
            (void)snprintf(why, why_len, "%s", bad);
        return -EINVAL;
    }

    struct tcpmsg_tls_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return -ENOMEM;
    atomic_init(&ctx->refs, 1);
    ctx->role = role;
    ctx->verify_name = !server && cfg->verify != TCPMSG_TLS_VERIFY_NONE && !cfg->no_verify_name;
    ctx->ktls = cfg->ktls;
    int r = 0;
    if (cfg->alpn && (r = alpn_wire(cfg->alpn, ctx->alpn, &ctx->alpn_len)) < 0) {
        if (why && why_len)
            (void)snprintf(why, why_len, "ALPN: a comma-separated list of names of 1-255 bytes");
        goto fail;
    }
    ERR_clear_error();
    /* A fixed type of the user range, not BIO_get_new_index(): that one hands out one of
     * 128 numbers per call, for the life of the process. */
    ctx->bio = BIO_meth_new((BIO_TYPE_START + 0x3d) | BIO_TYPE_SOURCE_SINK, "tcpmsg buffers");
    if (!ctx->bio || !BIO_meth_set_read_ex(ctx->bio, bio_read) ||
        !BIO_meth_set_write_ex(ctx->bio, bio_write) || !BIO_meth_set_ctrl(ctx->bio, bio_ctrl) ||
        !BIO_meth_set_create(ctx->bio, bio_create)) {
        r = -ENOMEM;
        goto fail;
    }
    ctx->sock =
        cfg->ktls ? BIO_meth_new((BIO_TYPE_START + 0x3e) | BIO_TYPE_FILTER, "tcpmsg socket") : NULL;
    if (cfg->ktls &&
        (!ctx->sock || !BIO_meth_set_read_ex(ctx->sock, sock_read) ||
         !BIO_meth_set_write_ex(ctx->sock, sock_write) ||
         !BIO_meth_set_ctrl(ctx->sock, sock_ctrl) || !BIO_meth_set_create(ctx->sock, bio_create))) {
        r = -ENOMEM;
        goto fail;
    }
    if (cfg->sni_count) {
        ctx->sni = calloc(cfg->sni_count, sizeof(SSL_CTX *));
        ctx->sni_leaf = calloc(cfg->sni_count, sizeof(X509 *));
        if (!ctx->sni || !ctx->sni_leaf) {
            r = -ENOMEM;
            goto fail;
        }
        ctx->nsni = cfg->sni_count;
    }
    r = make_ssl_ctx(&ctx->ssl, ctx, cfg, has_cert(&cfg->cert) ? &cfg->cert : NULL, why, why_len);
    for (size_t i = 0; r == 0 && i < ctx->nsni; i++) {
        r = make_ssl_ctx(&ctx->sni[i], ctx, cfg, &cfg->sni_certs[i], why, why_len);
        if (r == 0 && !(ctx->sni_leaf[i] = SSL_CTX_get0_certificate(ctx->sni[i])))
            r = TCPMSG_ETLS;
        if (r == 0)
            X509_up_ref(ctx->sni_leaf[i]);
    }
    ERR_clear_error();
    if (r < 0)
        goto fail;
    *out = ctx;
    return 0;
fail:
    ERR_clear_error();
    ctx_free(ctx);
    return r;
}

struct tcpmsg_tls_ctx *
tcpmsg_tls_ctx_ref(struct tcpmsg_tls_ctx *ctx)
{
    if (ctx)
        atomic_fetch_add(&ctx->refs, 1);
    return ctx;
}

int
tcpmsg_tls_ctx_role(const struct tcpmsg_tls_ctx *ctx)
{
    return ctx ? (int)ctx->role : -EINVAL;
}

static void
api_ctx_destroy(struct tcpmsg_tls_ctx *ctx)
{
    if (ctx && atomic_fetch_sub(&ctx->refs, 1) == 1)
        ctx_free(ctx);
}

static void
api_session_destroy(struct tcpmsg_tls_session *s)
{
    if (!s)
        return;
    SSL_SESSION_free(s->s);
    free(s);
}

/* ---- sessions ----------------------------------------------------------------------------- */

static int
engine_new(struct tcpmsg__tls **out, struct tcpmsg_tls_ctx *ctx, const char *name,
           const struct tcpmsg_tls_session *session, int fd, tcpmsg__tls_send_fn sender)
{
    *out = NULL;
    if (!ctx || (session && ctx->role != TCPMSG_TLS_CLIENT))
        return -EINVAL;
    struct tcpmsg__tls *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl);
    t->on_socket = ctx->ktls && fd >= 0 && sender;
    t->fd = fd;
    t->sender = sender;
    BIO *b = t->ssl ? BIO_new(t->on_socket ? ctx->sock : ctx->bio) : NULL;
    BIO *sock = b && t->on_socket ? BIO_new_socket(fd, BIO_NOCLOSE) : NULL;
    if (!b || (t->on_socket && !sock)) {
        BIO_free(b);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return -ENOMEM;
    }
    BIO_set_data(b, t);
    if (t->on_socket)
        BIO_push(b, sock);     /* the filter over OpenSSL's socket BIO (which leaves fd open) */
    SSL_set_bio(t->ssl, b, b); /* one BIO (chain) both ways; the SSL owns it */
    if (t->on_socket) {
        /* OpenSSL's socket BIO is what hands the keys to the kernel after the handshake
         * where the kernel has kTLS. */
        SSL_set_mode(t->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        /* Read what has arrived, not one record header then one body: one system call
         * for many records, as over the buffers, and a handshake that fails has read its
         * peer's whole flight (closing on unread bytes would send a reset that can destroy
         * the alert on its way). The kernel then takes over receiving only when no record
         * came in the same read as the peer's Finished (OpenSSL's rule); sending is not
         * affected. */
        SSL_set_read_ahead(t->ssl, 1);
    }
    SSL_set_app_data(t->ssl, t);
    t->ctx = ctx;
    atomic_fetch_add(&ctx->refs, 1);
    int r = 0;
    if (ctx->role == TCPMSG_TLS_SERVER) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (ctx->verify_name && (!name || !*name))
            r = -EINVAL; /* a name check without a name: refused, never silently skipped */
        if (r == 0 && name && *name) {
            /* An IP address is checked as one and never sent as SNI (RFC 6066); a name is
             * both sent and checked. */
            X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
            bool ip = X509_VERIFY_PARAM_set1_ip_asc(vp, name) == 1;
            if (ip && !ctx->verify_name)
                X509_VERIFY_PARAM_set1_ip(vp, NULL, 0);
            if (!ip) {
                ERR_clear_error();
                /* SSL_set_tlsext_host_name, without its macro's cast away from const
                 * (OpenSSL copies the name). */
                void *sni = (void *)(uintptr_t)name;
                if (SSL_ctrl(t->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                             sni) != 1 ||
                    (ctx->verify_name && SSL_set1_host(t->ssl, name) != 1))
                    r = -EINVAL;
            }
        }
        if (r == 0 && session && SSL_set_session(t->ssl, session->s) != 1)
            r = -EINVAL;
    }
    ERR_clear_error();
    if (r < 0) {
        tcpmsg__tls_free(t);
        return r;
    }
    *out = t;
    return 0;
}

static void
engine_free(struct tcpmsg__tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    SSL_SESSION_free(t->session);
    tcpmsg_tls_ctx_destroy(t->ctx);
    free(t->in);
    free(t->out);
    free(t);
}

bool
tcpmsg__tls_in_allocated(const struct tcpmsg__tls *t)
{
    return t->in != NULL;
}

uint8_t *
tcpmsg__tls_in_space(struct tcpmsg__tls *t, size_t *room)
{
    if (t->ipos > 0 && t->ipos == t->ilen)
        t->ipos = t->ilen = 0;
    if (t->icap - t->ilen < IN_MIN) {
        if (t->ipos > 0) { /* slide the unread part to the front */
            memmove(t->in, t->in + t->ipos, t->ilen - t->ipos);
            t->ilen -= t->ipos;
            t->ipos = 0;
        }
        if (t->icap - t->ilen < IN_MIN) {
            size_t ncap = t->ilen + IN_READ;
            uint8_t *p = realloc(t->in, ncap);
            if (!p)
                return NULL;
            t->in = p;
            t->icap = ncap;
        }
    }
    *room = t->icap - t->ilen;
    return t->in + t->ilen;
}

void
tcpmsg__tls_in_commit(struct tcpmsg__tls *t, size_t n)
{
    t->ilen += n;
}

void
tcpmsg__tls_in_eof(struct tcpmsg__tls *t)
{
    t->in_eof = true;
}

/* The verification result, as a code a user can act on. */
static int
verify_error(long v)
{
    switch (v) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return TCPMSG_ECERTEXPIRED;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
    case X509_V_ERR_EMAIL_MISMATCH:
        return TCPMSG_ECERTNAME;
    default:
        return TCPMSG_ECERTUNTRUSTED;
    }
}

/* After a failed SSL call: the sticky error, with OpenSSL's words kept for the logs and its
 * error queue emptied (one connection's error never shows on another). */
static int
failure(struct tcpmsg__tls *t, int ret)
{
    int sys = errno; /* on the socket: what the system call said */
    int e = SSL_get_error(t->ssl, ret);
    unsigned long q = ERR_peek_error();
    int lib = ERR_GET_LIB(q), reason = ERR_GET_REASON(q);
    int code = TCPMSG_ETLS;
    if (e == SSL_ERROR_ZERO_RETURN) {
        code = TCPMSG_EOF;
    } else if (e == SSL_ERROR_SYSCALL && t->on_socket && sys != 0 && q == 0) {
        code = -sys; /* a reset, a broken pipe: the socket's own error, as without TLS */
    } else if ((e == SSL_ERROR_SSL && lib == ERR_LIB_SSL &&
                reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) ||
               (e == SSL_ERROR_SYSCALL && t->in_eof)) {
        code = TCPMSG_ETLSTRUNC;
    } else if (lib == ERR_LIB_SSL && reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        long v = SSL_get_verify_result(t->ssl);
        code = verify_error(v);
        (void)snprintf(t->detail, sizeof t->detail, "certificate verify failed: %s",
                       X509_verify_cert_error_string(v));
    } else if (lib == ERR_LIB_SSL && reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        code = TCPMSG_ECERTMISSING;
    } else if (lib == ERR_LIB_SSL &&
               (reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_NO_PROTOCOLS_AVAILABLE ||
                reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION)) {
        code = TCPMSG_ETLSVERSION;
    } else if (lib == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET &&
               reason < SSL_AD_REASON_OFFSET + 256) {
        code = TCPMSG_ETLSALERT; /* the peer's fatal alert (it refused something of ours) */
    }
    if (!t->detail[0] && q)
        ERR_error_string_n(q, t->detail, sizeof t->detail);
    if (!t->detail[0] && code == TCPMSG_ETLSTRUNC)
        (void)snprintf(t->detail, sizeof t->detail, "the stream ended without close_notify");
    ERR_clear_error();
    if (code != TCPMSG_EOF)
        t->err = code;
    return code;
}

/* After an SSL call that did not complete: TCPMSG__TLS_WANT_INPUT or _OUTPUT when it waits
 * for the peer or (on the socket) for room to write, else 0 (it failed). */
static int
wants(struct tcpmsg__tls *t, int ret, bool reading)
{
    int e = SSL_get_error(t->ssl, ret);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        return 0;
    ERR_clear_error();
    /* Over the buffers' BIO a write never waits: only input is ever missing. */
    t->want_write = t->on_socket && e == SSL_ERROR_WANT_WRITE;
    t->read_wants_write = t->want_write && reading;
    return t->want_write ? TCPMSG__TLS_WANT_OUTPUT : TCPMSG__TLS_WANT_INPUT;
}

static int
engine_handshake(struct tcpmsg__tls *t)
{
    if (t->err)
        return t->err;
    if (t->done)
        return 0;
    /* A server has nothing to say before the client's hello: OpenSSL is not asked (it
     * would set up its record buffers for a client that may never speak). */
    if (t->ctx->role == TCPMSG_TLS_SERVER && !t->started && t->ilen == t->ipos && !t->in_eof &&
        !t->on_socket)
        return TCPMSG__TLS_WANT_INPUT;
    t->started = true;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->done = true;
        t->want_write = false;
        return 0;
    }
    int w = wants(t, r, false);
    if (w)
        return w;
    int code = failure(t, r);
    return code == TCPMSG_EOF ? (t->err = TCPMSG_ETLS) : code;
}

bool
tcpmsg__tls_handshake_done(const struct tcpmsg__tls *t)
{
    return t->done;
}

static ptrdiff_t
engine_read(struct tcpmsg__tls *t, void *dst, size_t cap)
{
    if (t->err)
        return t->err;
    if (!t->done) {
        int h = tcpmsg__tls_handshake(t);
        if (h == TCPMSG__TLS_WANT_INPUT)
            return 0;
        if (h < 0)
            return h;
    }
    ERR_clear_error();
    size_t got = 0;
    int r = SSL_read_ex(t->ssl, dst, cap, &got);
    if (r == 1) {
        t->want_write = false;
        return (ptrdiff_t)got;
    }
    if (wants(t, r, true))
        return 0;
    return failure(t, r);
}

bool
tcpmsg__tls_pending(const struct tcpmsg__tls *t)
{
    return !t->err && (t->ilen > t->ipos || SSL_has_pending(t->ssl));
}

bool
tcpmsg__tls_on_socket(const struct tcpmsg__tls *t)
{
    return t->on_socket;
}

bool
tcpmsg__tls_kernel_sends(const struct tcpmsg__tls *t)
{
    return t->on_socket && BIO_ctrl(SSL_get_wbio(t->ssl), BIO_CTRL_GET_KTLS_SEND, 0, NULL) == 1;
}

bool
tcpmsg__tls_waits_for_hello(const struct tcpmsg__tls *t)
{
    return t->ctx->role == TCPMSG_TLS_SERVER && !t->started;
}

int
tcpmsg__tls_wants(const struct tcpmsg__tls *t)
{
    return !t->want_write        ? 0
           : t->read_wants_write ? TCPMSG__TLS_WANT_INPUT | TCPMSG__TLS_WANT_OUTPUT
                                 : TCPMSG__TLS_WANT_OUTPUT;
}

static int
engine_write(struct tcpmsg__tls *t, const void *src, size_t n)
{
    if (t->err)
        return t->err;
    if (!t->done)
        return -EAGAIN;
    while (n > 0) {
        ERR_clear_error();
        size_t put = 0;
        int r = SSL_write_ex(t->ssl, src, n, &put);
        if (r != 1) {
            int code = failure(t, r);
            return code == TCPMSG_EOF ? (t->err = -EPIPE) : code;
        }
        src = (const uint8_t *)src + put;
        n -= put;
    }
    return 0;
}

/* On the socket: writes what it can of n bytes, *put of them (records the socket took). */
static int
engine_write_some(struct tcpmsg__tls *t, const void *src, size_t n, size_t *put)
{
    *put = 0;
    if (t->err)
        return t->err;
    if (!t->done)
        return -EAGAIN;
    ERR_clear_error();
    int r = SSL_write_ex(t->ssl, src, n, put);
    if (r == 1) {
        t->want_write = false;
        return 0;
    }
    int w = wants(t, r, false);
    if (w)
        return w;
    int code = failure(t, r);
    return code == TCPMSG_EOF ? (t->err = -EPIPE) : code;
}

static int
engine_close_notify(struct tcpmsg__tls *t)
{
    if (t->err)
        return t->err;
    if (!t->done)
        return 0; /* nothing to end: no session was established */
    ERR_clear_error();
    int r = SSL_shutdown(t->ssl); /* 0: sent, the peer's may follow; 1: both done */
    if (r >= 0) {
        t->want_write = false;
        ERR_clear_error();
        return 0;
    }
    /* On the socket, close_notify may wait for room (call again); a wait for input is the
     * peer's close_notify, which is not waited for. */
    int w = wants(t, r, false);
    if (w) {
        if (w == TCPMSG__TLS_WANT_INPUT)
            t->want_write = false;
        return w == TCPMSG__TLS_WANT_OUTPUT ? w : 0;
    }
    ERR_clear_error();
    return TCPMSG_ETLS;
}

size_t
tcpmsg__tls_out(const struct tcpmsg__tls *t, const uint8_t **p)
{
    *p = t->out ? t->out + t->opos : NULL; /* nothing was ever queued: no buffer yet */
    return t->olen - t->opos;
}

void
tcpmsg__tls_out_done(struct tcpmsg__tls *t, size_t n)
{
    t->opos += n;
    if (t->opos == t->olen) {
        t->opos = t->olen = 0;
        if (t->ocap > 4 * IN_READ) { /* grown by a large write: given back */
            free(t->out);
            t->out = NULL;
            t->ocap = 0;
        }
    }
}

static void
engine_info(const struct tcpmsg__tls *t, struct tcpmsg_tls_info *out)
{
    memset(out, 0, sizeof *out);
    (void)snprintf(out->detail, sizeof out->detail, "%s", t->detail);
    out->done = t->done;
    if (!t->done)
        return;
    int v = SSL_version(t->ssl);
    out->version = v == TLS1_3_VERSION ? 13 : v == TLS1_2_VERSION ? 12 : 0;
    out->resumed = SSL_session_reused(t->ssl) == 1;
    (void)snprintf(out->cipher, sizeof out->cipher, "%s", SSL_get_cipher_name(t->ssl));
    const unsigned char *a = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(t->ssl, &a, &alen);
    if (a && alen < sizeof out->alpn) {
        memcpy(out->alpn, a, alen);
        out->alpn[alen] = '\0';
    }
    const char *sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
    if (sni && t->ctx->role == TCPMSG_TLS_SERVER)
        (void)snprintf(out->sni, sizeof out->sni, "%s", sni);
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    if (peer) {
        out->peer_verified = SSL_get_verify_result(t->ssl) == X509_V_OK;
        BIO *m = BIO_new(BIO_s_mem());
        if (m && X509_NAME_print_ex(m, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0) {
            int n = BIO_read(m, out->peer_subject, (int)sizeof out->peer_subject - 1);
            out->peer_subject[n > 0 ? n : 0] = '\0';
        }
        BIO_free(m);
    }
    if (t->on_socket) {
        /* Whether OpenSSL handed each direction to the kernel (kTLS) */
        out->ktls_send = BIO_ctrl(SSL_get_wbio(t->ssl), BIO_CTRL_GET_KTLS_SEND, 0, NULL) == 1;
        out->ktls_recv = BIO_ctrl(SSL_get_rbio(t->ssl), BIO_CTRL_GET_KTLS_RECV, 0, NULL) == 1;
    }
    ERR_clear_error();
}

static int
engine_session(const struct tcpmsg__tls *t, struct tcpmsg_tls_session **out)
{
    *out = NULL;
    SSL_SESSION *s = t->session ? t->session : NULL;
    if (!s || SSL_SESSION_is_resumable(s) != 1)
        return -ENOENT;
    struct tcpmsg_tls_session *h = malloc(sizeof *h);
    if (!h)
        return -ENOMEM;
    SSL_SESSION_up_ref(s);
    h->s = s;
    *out = h;
    return 0;
}

/* ---- the entry points, each inside the fork guard ------------------------------------ */

int
tcpmsg_tls_ctx_create(struct tcpmsg_tls_ctx **out, enum tcpmsg_tls_role role,
                      const struct tcpmsg_tls_config *cfg, char *why, size_t why_len)
{
    guard_enter();
    int r = api_ctx_create(out, role, cfg, why, why_len);
    guard_leave();
    return r;
}

void
tcpmsg_tls_ctx_destroy(struct tcpmsg_tls_ctx *ctx)
{
    guard_enter();
    api_ctx_destroy(ctx);
    guard_leave();
}

void
tcpmsg_tls_session_destroy(struct tcpmsg_tls_session *s)
{
    guard_enter();
    api_session_destroy(s);
    guard_leave();
}

int
tcpmsg__tls_new(struct tcpmsg__tls **out, struct tcpmsg_tls_ctx *ctx, const char *name,
                const struct tcpmsg_tls_session *session, int fd, tcpmsg__tls_send_fn sender)
{
    guard_enter();
    int r = engine_new(out, ctx, name, session, fd, sender);
    guard_leave();
    return r;
}

void
tcpmsg__tls_free(struct tcpmsg__tls *t)
{
    guard_enter();
    engine_free(t);
    guard_leave();
}

int
tcpmsg__tls_handshake(struct tcpmsg__tls *t)
{
    guard_enter();
    int r = engine_handshake(t);
    guard_leave();
    return r;
}

ptrdiff_t
tcpmsg__tls_read(struct tcpmsg__tls *t, void *dst, size_t cap)
{
    guard_enter();
    ptrdiff_t r = engine_read(t, dst, cap);
    guard_leave();
    return r;
}

int
tcpmsg__tls_write(struct tcpmsg__tls *t, const void *src, size_t n)
{
    guard_enter();
    int r = engine_write(t, src, n);
    guard_leave();
    return r;
}

int
tcpmsg__tls_write_some(struct tcpmsg__tls *t, const void *src, size_t n, size_t *put)
{
    guard_enter();
    int r = engine_write_some(t, src, n, put);
    guard_leave();
    return r;
}

int
tcpmsg__tls_close_notify(struct tcpmsg__tls *t)
{
    guard_enter();
    int r = engine_close_notify(t);
    guard_leave();
    return r;
}

void
tcpmsg__tls_info(const struct tcpmsg__tls *t, struct tcpmsg_tls_info *out)
{
    guard_enter();
    engine_info(t, out);
    guard_leave();
}

int
tcpmsg__tls_session(const struct tcpmsg__tls *t, struct tcpmsg_tls_session **out)
{
    guard_enter();
    int r = engine_session(t, out);
    guard_leave();
    return r;
}
