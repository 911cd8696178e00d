/* Fuzz target: records from a peer into a server-side TLS session (the engine of lib/tls):
 * whatever arrives, in whatever pieces, the session ends with an error code or goes on, never
 * crashes, never reports plaintext it did not decrypt, never leaves its errors in OpenSSL's
 * queue. Input: one byte of piece size, then the bytes from the "client". The server's
 * certificate is made in memory at the first call (no key is committed). */
#include "tls/tls_internal.h"

#include "tcpmsg/error.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tcpmsg_tls_ctx *ctx;

static char *
pem_of(int (*write)(BIO *, void *), void *obj)
{
    BIO *b = BIO_new(BIO_s_mem());
    write(b, obj);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
    return out;
}

static int
write_key(BIO *b, void *k)
{
    return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
}

static int
write_cert(BIO *b, void *x)
{
    return PEM_write_bio_X509(b, x);
}

static void
make_ctx(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_sign(x, key, EVP_sha256());
    char *kp = pem_of(write_key, key), *cp = pem_of(write_cert, x);
    struct tcpmsg_tls_config c = {.cert = {.cert_pem = cp, .key_pem = kp}, .alpn = "a,b"};
    int r = tcpmsg_tls_ctx_create(&ctx, TCPMSG_TLS_SERVER, &c, NULL, 0);
    assert(r == 0);
    (void)r;
    free(kp);
    free(cp);
    X509_free(x);
    EVP_PKEY_free(key);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx)
        make_ctx();
    if (size < 1)
        return 0;
    size_t piece = data[0] ? data[0] : 1;
    data++, size--;
    struct tcpmsg__tls *t;
    if (tcpmsg__tls_new(&t, ctx, NULL, NULL, -1, NULL) != 0)
        return 0;
    uint8_t plain[4096];
    int last = 0;
    for (size_t at = 0; at <= size;) {
        if (at == size) {
            tcpmsg__tls_in_eof(t);
        } else {
            size_t room, k = size - at < piece ? size - at : piece;
            uint8_t *sp = tcpmsg__tls_in_space(t, &room);
            if (!sp)
                break;
            if (k > room)
                k = room;
            memcpy(sp, data + at, k);
            tcpmsg__tls_in_commit(t, k);
            at += k;
        }
        for (;;) {
            ptrdiff_t r = tcpmsg__tls_read(t, plain, sizeof plain);
            assert(ERR_peek_error() == 0); /* the queue is emptied after every call */
            if (r <= 0) {
                if (last < 0)
                    assert(r == last); /* errors are sticky */
                last = (int)r;
                break;
            }
            assert((size_t)r <= sizeof plain);
        }
        const uint8_t *p;
        size_t n = tcpmsg__tls_out(t, &p);
        tcpmsg__tls_out_done(t, n); /* what the server would send: discarded */
        if (last < 0 || at == size)
            break;
    }
    tcpmsg__tls_free(t);
    return 0;
}
