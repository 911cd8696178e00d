/* The TLS engine of a library built without OpenSSL (TCPMSG_TLS=OFF, or OpenSSL missing):
 * every function exists, so the ABI is the same, and says -ENOTSUP. */
#include "tls_internal.h"

#include <errno.h>
#include <string.h>

bool
tcpmsg_tls_supported(void)
{
    return false;
}

int
tcpmsg_tls_ctx_create(struct tcpmsg_tls_ctx **out, enum tcpmsg_tls_role role,
                      const struct tcpmsg_tls_config *cfg, char *why, size_t why_len)
{
    (void)role, (void)cfg;
    if (out)
        *out = NULL;
    if (why && why_len) {
        strncpy(why, "this libtcpmsg was built without TLS", why_len - 1);
        why[why_len - 1] = '\0';
    }
    return -ENOTSUP;
}

struct tcpmsg_tls_ctx *
tcpmsg_tls_ctx_ref(struct tcpmsg_tls_ctx *ctx)
{
    return ctx;
}

int
tcpmsg_tls_ctx_role(const struct tcpmsg_tls_ctx *ctx)
{
    (void)ctx;
    return -EINVAL;
}

void
tcpmsg_tls_ctx_destroy(struct tcpmsg_tls_ctx *ctx)
{
    (void)ctx;
}

void
tcpmsg_tls_session_destroy(struct tcpmsg_tls_session *s)
{
    (void)s;
}

int
tcpmsg__tls_new(struct tcpmsg__tls **out, struct tcpmsg_tls_ctx *ctx, const char *name,
                const struct tcpmsg_tls_session *session, int fd, tcpmsg__tls_send_fn sender)
{
    (void)ctx, (void)name, (void)session, (void)fd, (void)sender;
    *out = NULL;
    return -ENOTSUP;
}

/* Never reached without a session (tcpmsg__tls_new fails): they exist for the linker. */
void
tcpmsg__tls_free(struct tcpmsg__tls *t)
{
    (void)t;
}

bool
tcpmsg__tls_in_allocated(const struct tcpmsg__tls *t)
{
    (void)t;
    return false;
}

uint8_t *
tcpmsg__tls_in_space(struct tcpmsg__tls *t, size_t *room)
{
    (void)t;
    *room = 0;
    return NULL;
}

void
tcpmsg__tls_in_commit(struct tcpmsg__tls *t, size_t n)
{
    (void)t, (void)n;
}

void
tcpmsg__tls_in_eof(struct tcpmsg__tls *t)
{
    (void)t;
}

int
tcpmsg__tls_handshake(struct tcpmsg__tls *t)
{
    (void)t;
    return -ENOTSUP;
}

bool
tcpmsg__tls_handshake_done(const struct tcpmsg__tls *t)
{
    (void)t;
    return false;
}

ptrdiff_t
tcpmsg__tls_read(struct tcpmsg__tls *t, void *dst, size_t cap)
{
    (void)t, (void)dst, (void)cap;
    return -ENOTSUP;
}

bool
tcpmsg__tls_pending(const struct tcpmsg__tls *t)
{
    (void)t;
    return false;
}

int
tcpmsg__tls_write(struct tcpmsg__tls *t, const void *src, size_t n)
{
    (void)t, (void)src, (void)n;
    return -ENOTSUP;
}

bool
tcpmsg__tls_on_socket(const struct tcpmsg__tls *t)
{
    (void)t;
    return false;
}

bool
tcpmsg__tls_kernel_sends(const struct tcpmsg__tls *t)
{
    (void)t;
    return false;
}

bool
tcpmsg__tls_waits_for_hello(const struct tcpmsg__tls *t)
{
    (void)t;
    return false;
}

int
tcpmsg__tls_wants(const struct tcpmsg__tls *t)
{
    (void)t;
    return 0;
}

int
tcpmsg__tls_write_some(struct tcpmsg__tls *t, const void *src, size_t n, size_t *put)
{
    (void)t, (void)src, (void)n;
    *put = 0;
    return -ENOTSUP;
}

int
tcpmsg__tls_close_notify(struct tcpmsg__tls *t)
{
    (void)t;
    return -ENOTSUP;
}

size_t
tcpmsg__tls_out(const struct tcpmsg__tls *t, const uint8_t **p)
{
    (void)t;
    *p = NULL;
    return 0;
}

void
tcpmsg__tls_out_done(struct tcpmsg__tls *t, size_t n)
{
    (void)t, (void)n;
}

void
tcpmsg__tls_info(const struct tcpmsg__tls *t, struct tcpmsg_tls_info *out)
{
    (void)t;
    memset(out, 0, sizeof *out);
}

int
tcpmsg__tls_session(const struct tcpmsg__tls *t, struct tcpmsg_tls_session **out)
{
    (void)t;
    *out = NULL;
    return -ENOTSUP;
}
