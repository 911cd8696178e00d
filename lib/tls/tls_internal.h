/* The TLS engine: one TLS session as bytes in and bytes out, no descriptor, no system call
 * (the io layer moves the bytes). Not installed.
 *
 * Ciphertext from the peer goes in with in_space/in_commit (the caller receives straight
 * into the engine's buffer); ciphertext for the peer comes out with out/out_done; plaintext
 * is read with read and given with write. A write never waits and never fails for want of
 * room: the ciphertext it makes is queued, and the caller bounds what it queues. */
#ifndef TCPMSG_TLS_INTERNAL_H
#define TCPMSG_TLS_INTERNAL_H

#include "tcpmsg/tls.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tcpmsg__tls;

/* Returned by handshake and read when the engine needs more ciphertext from the peer (its
 * own output, if any, must be sent first or alongside). */
#define TCPMSG__TLS_WANT_INPUT 1
/* On the socket only (tcpmsg__tls_on_socket): the call waits for room to write; call it
 * again, with the same bytes for a write, once the socket is writable. */
#define TCPMSG__TLS_WANT_OUTPUT 2

/* A session over ctx (a reference is taken). name: a client's SNI and expected name (NULL:
 * none: then the name is not checked); session: a client's session to resume (NULL: none).
 * fd: the connection's socket: a context made with .ktls runs the session on it (OpenSSL
 * reads the descriptor, which must be non-blocking, writes through sender, and hands the keys
 * to the kernel where it can); otherwise, or with fd < 0, the session is bytes in and out.
 * Returns 0, -EINVAL, -ENOMEM, -ENOTSUP. */
typedef ptrdiff_t (*tcpmsg__tls_send_fn)(int fd, const void *p, size_t n); /* sent, or -errno
                                                                         (-EAGAIN: full) */
int tcpmsg__tls_new(struct tcpmsg__tls **out, struct tcpmsg_tls_ctx *ctx, const char *name,
                    const struct tcpmsg_tls_session *session, int fd, tcpmsg__tls_send_fn sender);
/* Whether the kernel encrypts what this session sends (kTLS is on): OpenSSL's socket BIO
 * then writes with write(), which can raise SIGPIPE. */
bool tcpmsg__tls_kernel_sends(const struct tcpmsg__tls *t);

/* Whether the session runs on the socket. There, the in_ and out calls are not used: the
 * handshake, read, write_some and close_notify calls move the bytes, and return
 * TCPMSG__TLS_WANT_INPUT / _OUTPUT when the socket has nothing or no room. */
bool tcpmsg__tls_on_socket(const struct tcpmsg__tls *t);
/* A server that OpenSSL has not been asked to start yet (its client has not spoken). */
bool tcpmsg__tls_waits_for_hello(const struct tcpmsg__tls *t);
/* On the socket: 0, or what the last unfinished call waits for: TCPMSG__TLS_WANT_OUTPUT
 * (a handshake, write or close_notify to call again), or both bits (a read that must write
 * first: the read is called again once the socket is writable). */
int tcpmsg__tls_wants(const struct tcpmsg__tls *t);
/* On the socket: encrypts and writes what the socket takes of n bytes (the handshake must
 * be done): 0 with *put > 0, TCPMSG__TLS_WANT_OUTPUT / _INPUT (*put == 0), or a sticky
 * error. After a want, the next call must start with the same bytes (at least as many). */
int tcpmsg__tls_write_some(struct tcpmsg__tls *t, const void *src, size_t n, size_t *put);
void tcpmsg__tls_free(struct tcpmsg__tls *t);

/* Whether the input buffer exists yet (it is made by the first in_space). */
bool tcpmsg__tls_in_allocated(const struct tcpmsg__tls *t);
/* Room for ciphertext from the peer: a pointer and *room >= 1 bytes, or NULL (-ENOMEM). */
uint8_t *tcpmsg__tls_in_space(struct tcpmsg__tls *t, size_t *room);
/* n bytes were written at in_space. */
void tcpmsg__tls_in_commit(struct tcpmsg__tls *t, size_t n);
/* The peer's stream ended (no more ciphertext will come). */
void tcpmsg__tls_in_eof(struct tcpmsg__tls *t);

/* Advances the handshake: 0 done, TCPMSG__TLS_WANT_INPUT, or a sticky error. */
int tcpmsg__tls_handshake(struct tcpmsg__tls *t);
bool tcpmsg__tls_handshake_done(const struct tcpmsg__tls *t);

/* Decrypts into dst (cap >= 1): > 0 bytes, 0 when more input is needed, TCPMSG_EOF (the
 * peer's close_notify), or a sticky error (TCPMSG_ETLSTRUNC when the stream ended without
 * close_notify). Drives the handshake first if needed. */
ptrdiff_t tcpmsg__tls_read(struct tcpmsg__tls *t, void *dst, size_t cap);
/* Whether read may return bytes without more input (decrypted bytes or whole records, or
 * ciphertext not yet looked at, are buffered). */
bool tcpmsg__tls_pending(const struct tcpmsg__tls *t);

/* Encrypts all n bytes (the handshake must be done): 0, or a sticky error. */
int tcpmsg__tls_write(struct tcpmsg__tls *t, const void *src, size_t n);
/* Queues close_notify (on the socket: sends it; TCPMSG__TLS_WANT_OUTPUT: call again once
 * writable): 0, or a sticky error. */
int tcpmsg__tls_close_notify(struct tcpmsg__tls *t);

/* Ciphertext waiting for the peer: its length, and *p its start. */
size_t tcpmsg__tls_out(const struct tcpmsg__tls *t, const uint8_t **p);
void tcpmsg__tls_out_done(struct tcpmsg__tls *t, size_t n);

/* What was negotiated; detail: OpenSSL's words for the last failure. */
void tcpmsg__tls_info(const struct tcpmsg__tls *t, struct tcpmsg_tls_info *out);
/* A new handle on the session to resume next time (0), or -ENOENT (none yet: TLS 1.3
 * servers send it after the handshake, with the first records that follow). */
int tcpmsg__tls_session(const struct tcpmsg__tls *t, struct tcpmsg_tls_session **out);

#endif
