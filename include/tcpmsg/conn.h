/*
 * tcpmsg/conn.h - message connections: whole framed messages over a TCP socket.
 *
 * A connection is a socket, a codec (tcpmsg/codec.h), a receive buffer and a send buffer.
 * send() takes one message and frames it; recv() returns the next whole message as a view
 * into the receive buffer (no copy), valid until the next call on the connection. All the
 * edges of TCP stay inside: partial reads and writes, EINTR, EAGAIN, messages split across
 * reads or packed many to a read, a peer announcing more than the limit (refused before
 * anything is reserved), end of stream inside a message.
 *
 *   struct tcpmsg_codec codec;
 *   tcpmsg_codec_init_length(&codec, NULL);             // 4-byte length + payload
 *   struct tcpmsg_conn *c;
 *   int r = tcpmsg_conn_connect(&c, "localhost", "7000", &codec, NULL,
 *                               tcpmsg_deadline_in(3000));
 *   r = tcpmsg_conn_send(c, "hello", 5, TCPMSG_FOREVER);
 *   struct tcpmsg_frame m;
 *   r = tcpmsg_conn_recv(c, &m, tcpmsg_deadline_in(1000)); // m.data, m.len: the reply
 *   tcpmsg_conn_close(c, tcpmsg_deadline_in(1000));
 *
 * Deadlines: every call that may wait takes an absolute deadline (tcpmsg/deadline.h):
 * TCPMSG_FOREVER, TCPMSG_NOWAIT, or tcpmsg_deadline_in(ms). -ETIMEDOUT never breaks the
 * stream: a recv that timed out keeps the bytes that arrived, a send that timed out keeps
 * its message queued whole (it goes out with the next send, flush or close).
 *
 * Errors: the receiving side and the sending side each have a sticky error. Once recv has
 * returned TCPMSG_EOF (the peer ended at a message boundary), -EPROTO (it ended inside a
 * message, or broke the framing), -EMSGSIZE (it announced a message over the limit) or
 * -ECONNRESET, every later recv returns the same; once a send has failed with -EPIPE or
 * -ECONNRESET, so does every later send. -EINVAL, -EMSGSIZE from send (a message that cannot
 * be framed), -ENOBUFS and -ETIMEDOUT are not sticky.
 *
 * Event loops: a connection never blocks when given TCPMSG_NOWAIT, so it can be driven from
 * epoll, libuv or libevent: call recv(..., TCPMSG_NOWAIT) when the socket is readable until
 * it returns -ETIMEDOUT, and flush(..., TCPMSG_NOWAIT) when it is writable while
 * tcpmsg_conn_output() says bytes are waiting. A connection opened without a socket (fd -1)
 * does no I/O at all: the loop gives it the bytes it read (tcpmsg_conn_feed) and writes what
 * tcpmsg_conn_output() shows.
 *
 * Thread safety: one connection, one thread at a time.
 */
#ifndef TCPMSG_CONN_H
#define TCPMSG_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "tcpmsg/codec.h"
#include "tcpmsg/deadline.h"
#include "tcpmsg/error.h"
#include "tcpmsg/sock.h"
#include "tcpmsg/tls.h"
#include "tcpmsg/version.h"

#ifdef __cplusplus
extern "C" {
#endif

struct tcpmsg_conn; /* opaque */

/* When queued output is written to the socket. */
enum tcpmsg_flush {
    TCPMSG_FLUSH_EACH = 0, /* every send writes its message before returning (default) */
    TCPMSG_FLUSH_BATCH = 1, /* sends accumulate in the send buffer; it is written when full,
                               by tcpmsg_conn_flush, and before any recv has to wait for the
                               peer (so a request is never stuck behind its own reply) */
    TCPMSG_FLUSH_MANUAL = 2 /* sends never wait: they queue (up to max_output) and the
                               owner writes with tcpmsg_conn_flush: what an event loop
                               wants, so that a handler's send cannot block the loop. One
                               exception saves a copy: a frame over copy_max with nothing
                               queued before it is written at once, as far as the socket
                               takes it without waiting; only the rest is queued */
};

/* Connection options; a zero-initialised struct (or NULL) gives the defaults. */
struct tcpmsg_conn_opts {
    size_t recv_buffer;     /* receive buffer and read size; 0 means 64 KiB. The buffer grows
                               (doubling, only when full of received bytes) up to the codec's
                               largest frame, and shrinks back when that frame is consumed */
    size_t send_buffer;     /* send buffer; 0 means 64 KiB */
    size_t copy_max;        /* messages whose frame is at most this size are copied into the
                               send buffer; larger ones go out with one writev from the
                               caller's memory; 0 means 16 KiB */
    enum tcpmsg_flush flush;
    size_t max_output;      /* queued output above which send refuses new messages with
                               -ENOBUFS (only reached with deadlines that expire or with fd
                               -1); 0 means 64 MiB */
};

/* Per-connection counters, since open. */
struct tcpmsg_conn_stats {
    uint64_t msgs_in;   /* messages delivered by recv */
    uint64_t msgs_out;  /* messages accepted by send */
    uint64_t bytes_in;  /* bytes received from the socket (or fed) */
    uint64_t bytes_out; /* bytes handed to the socket (or reported sent) */
    uint64_t reads;     /* receive system calls that returned data or end of stream */
    uint64_t writes;    /* send system calls that wrote something */
};

/*
 * tcpmsg_conn_open - wraps a connected stream socket. codec (copied) frames the messages;
 * NULL makes a raw connection for the read/write helpers only. opts NULL: defaults.
 * fd -1 opens a connection without a socket, driven with tcpmsg_conn_feed and
 * tcpmsg_conn_output. The socket's blocking mode is left as it is (the connection never
 * blocks past a deadline either way).
 * The connection owns fd only if this returns 0 (*out then holds it); on error the caller
 * still owns fd. Returns 0, -EINVAL (bad codec or options), -ENOTSOCK (fd is not a
 * stream socket), -ENOMEM.
 */
TCPMSG_API int tcpmsg_conn_open(struct tcpmsg_conn **out, int fd, const struct tcpmsg_codec *codec,
                                const struct tcpmsg_conn_opts *opts);

/*
 * tcpmsg_conn_connect - tcpmsg_sock_connect (with default connect options) followed by
 * tcpmsg_conn_open. Returns 0 with *out set, or the errors of both.
 * tcpmsg_conn_accept - tcpmsg_sock_accept (without a reserve fd) followed by
 * tcpmsg_conn_open; peer (optional) receives the client's address.
 */
TCPMSG_API int tcpmsg_conn_connect(struct tcpmsg_conn **out, const char *host,
                                   const char *service, const struct tcpmsg_codec *codec,
                                   const struct tcpmsg_conn_opts *opts, int64_t deadline);
TCPMSG_API int tcpmsg_conn_accept(struct tcpmsg_conn **out, int lfd, struct tcpmsg_addr *peer,
                                  const struct tcpmsg_codec *codec,
                                  const struct tcpmsg_conn_opts *opts, int64_t deadline);

/*
 * tcpmsg_conn_send - frames and sends one message of len bytes (payload borrowed for the
 * call). Small frames are copied into the send buffer; larger ones are written with their
 * header in one writev, without copying the payload. With TCPMSG_FLUSH_EACH the call
 * returns once the whole frame is in the kernel; with TCPMSG_FLUSH_BATCH once it is queued.
 * Returns 0; -ETIMEDOUT (the deadline passed first: the message stays queued whole and goes
 * out with the next flush); -EMSGSIZE (payload over the codec's limit) or -EINVAL (the codec
 * refuses the payload, e.g. it contains the delimiter; no codec); -ENOBUFS (more than
 * max_output already queued: not queued); sticky -EPIPE / -ECONNRESET; -ENOMEM.
 */
TCPMSG_API int tcpmsg_conn_send(struct tcpmsg_conn *c, const void *payload, size_t len,
                                int64_t deadline);

/*
 * tcpmsg_conn_sendv - the same for a payload in iovcnt pieces (scatter-gather), sent as ONE
 * message. Same returns; -EINVAL for iovcnt < 0 or over IOV_MAX - 3.
 */
TCPMSG_API int tcpmsg_conn_sendv(struct tcpmsg_conn *c, const struct iovec *iov, int iovcnt,
                                 int64_t deadline);

/*
 * tcpmsg_conn_send_fields - for a length-prefixed codec with offset and/or suffix header
 * bytes (a type, a version, flags): sends one message with those header bytes set.
 * fields holds the offset bytes followed by the suffix bytes (fields_len must be their
 * sum); the length field is computed as usual. Returns as tcpmsg_conn_sendv; -EINVAL when
 * the codec is not length-prefixed or fields_len does not match.
 */
TCPMSG_API int tcpmsg_conn_send_fields(struct tcpmsg_conn *c, const void *fields,
                                       size_t fields_len, const struct iovec *iov, int iovcnt,
                                       int64_t deadline);

/*
 * tcpmsg_conn_flush - writes the queued output. Returns 0 when nothing is left queued,
 * -ETIMEDOUT (what is left stays queued), sticky -EPIPE / -ECONNRESET.
 */
TCPMSG_API int tcpmsg_conn_flush(struct tcpmsg_conn *c, int64_t deadline);

/*
 * tcpmsg_conn_recv - the next whole message. *out receives views into the connection's
 * receive buffer (out->data / out->len: what the codec delivers, normally the payload;
 * out->raw / out->raw_len: the frame as received, header fields included), valid until the
 * next call on this connection. Reads in receive-buffer-sized chunks, so many small
 * messages cost one system call. While a length-prefixed message whose length is known
 * lacks 128 KiB or more, the socket's SO_RCVLOWAT is set to half of what is missing, so the
 * kernel wakes the reader (and a poll on tcpmsg_conn_fd) less often; it is back to 1 once
 * the message is whole (plain TCP only; tcpmsg_conn_read_exact does the same).
 * Returns 0; -ETIMEDOUT (no whole message before the deadline; bytes received so far are
 * kept); sticky: TCPMSG_EOF (the peer ended at a message boundary), -EPROTO (it ended
 * inside a message, or sent malformed framing), -EMSGSIZE (a message over the limit),
 * -ECONNRESET, another negated errno; -EINVAL (no codec); -ENOMEM.
 */
TCPMSG_API int tcpmsg_conn_recv(struct tcpmsg_conn *c, struct tcpmsg_frame *out,
                                int64_t deadline);

/* ---- raw stream helpers, for protocols that are not framed (they share the buffers) --- */

/*
 * tcpmsg_conn_read_exact - copies exactly n bytes of the stream into dst.
 * Returns n; -ETIMEDOUT (nothing is consumed: the bytes that arrived stay buffered);
 * TCPMSG_EOF (the stream ended cleanly, nothing was left); -EPROTO (it ended after fewer
 * than n bytes: they stay buffered for tcpmsg_conn_read_some); -ECONNRESET or another
 * negated errno. n may not exceed 1 GiB (-EINVAL). EOF results are not sticky here.
 */
TCPMSG_API ptrdiff_t tcpmsg_conn_read_exact(struct tcpmsg_conn *c, void *dst, size_t n,
                                            int64_t deadline);

/*
 * tcpmsg_conn_read_until - the stream up to and including the next occurrence of delim
 * (1..16 bytes), as views valid until the next call: out->raw / raw_len include the
 * delimiter, out->data / len exclude it. max bounds the bytes before the delimiter
 * (0: 16 MiB). Searched bytes are not searched again when more arrive.
 * Returns raw_len (> 0); -ETIMEDOUT; -EMSGSIZE (no delimiter within max: nothing is
 * consumed); TCPMSG_EOF (the stream ended cleanly, nothing was left); -EPROTO (it ended
 * without a delimiter: what arrived stays buffered for tcpmsg_conn_read_some); -EINVAL;
 * other errors as recv. The first three are not sticky here.
 */
TCPMSG_API ptrdiff_t tcpmsg_conn_read_until(struct tcpmsg_conn *c, const void *delim,
                                            size_t delim_len, size_t max,
                                            struct tcpmsg_frame *out, int64_t deadline);

/*
 * tcpmsg_conn_read_some - copies what is buffered, or else waits for what arrives next, up
 * to cap bytes. Returns the count (> 0), -ETIMEDOUT, TCPMSG_EOF, or a negated errno.
 */
TCPMSG_API ptrdiff_t tcpmsg_conn_read_some(struct tcpmsg_conn *c, void *dst, size_t cap,
                                           int64_t deadline);

/*
 * tcpmsg_conn_write_all - queues n raw bytes (no framing) and writes them according to the
 * flush policy. Returns as tcpmsg_conn_send (without the codec errors).
 */
TCPMSG_API int tcpmsg_conn_write_all(struct tcpmsg_conn *c, const void *data, size_t n,
                                     int64_t deadline);

/* ---- driving a connection from an event loop -------------------------------------------- */

/*
 * tcpmsg_conn_feed - for a connection opened with fd -1: appends n bytes the caller read
 * (copied); n == 0 means the stream ended. Then call recv(..., TCPMSG_NOWAIT) until it
 * returns -ETIMEDOUT. Returns 0, -ENOBUFS (more than twice the codec's largest frame (or
 * the receive buffer, if larger) would be buffered: recv the frames first; nothing is
 * appended), -EINVAL (the connection has a socket, or the stream already ended), -ENOMEM.
 */
TCPMSG_API int tcpmsg_conn_feed(struct tcpmsg_conn *c, const void *data, size_t n);

/*
 * tcpmsg_conn_output - the bytes queued for sending: returns their count and, if data is
 * not NULL, points *data at them (valid until the next call that sends or closes).
 * tcpmsg_conn_output_done - for a connection opened with fd -1: the caller has written the
 * first n bytes of the output itself. Returns 0, -EINVAL (n larger than the output, or the
 * connection has a socket).
 */
TCPMSG_API size_t tcpmsg_conn_output(const struct tcpmsg_conn *c, const void **data);
TCPMSG_API int tcpmsg_conn_output_done(struct tcpmsg_conn *c, size_t n);

/* ---- state ------------------------------------------------------------------------------ */

/*
 * tcpmsg_conn_set_user / tcpmsg_conn_user - one pointer of the caller's per-connection
 * state (a session), kept but never used or freed by the library. NULL at open.
 */
TCPMSG_API void tcpmsg_conn_set_user(struct tcpmsg_conn *c, void *user);
TCPMSG_API void *tcpmsg_conn_user(const struct tcpmsg_conn *c);

/*
 * tcpmsg_conn_fd - the socket (-1 for none). Still owned by the connection: do not close
 * it, and do not read from or write to it behind the connection's back (polling is fine).
 * tcpmsg_conn_error - the sticky error: the receive side's if any, else the send side's,
 * else 0.
 * tcpmsg_conn_stats - copies the counters into *out.
 * tcpmsg_conn_buffered - bytes received and not yet consumed by recv or the read helpers.
 */
TCPMSG_API int tcpmsg_conn_fd(const struct tcpmsg_conn *c);
TCPMSG_API int tcpmsg_conn_error(const struct tcpmsg_conn *c);
TCPMSG_API void tcpmsg_conn_stats(const struct tcpmsg_conn *c, struct tcpmsg_conn_stats *out);
TCPMSG_API size_t tcpmsg_conn_buffered(const struct tcpmsg_conn *c);

/* The process at the other end of a Unix-domain connection, as it was when it connected
 * (SO_PEERCRED): a local service can refuse a user in on_open. */
struct tcpmsg_peer_cred {
    int pid;
    unsigned uid, gid;
};
/*
 * tcpmsg_conn_peer_cred - c's peer process into *out. Returns 0, -ENOTSUP (not a
 * Unix-domain socket: TCP carries no such thing), -EINVAL (c or out NULL, no socket). Never
 * blocks; from the thread that owns c.
 */
TCPMSG_API int tcpmsg_conn_peer_cred(const struct tcpmsg_conn *c, struct tcpmsg_peer_cred *out);

struct tcpmsg_proxy_info; /* tcpmsg/proxy.h */
struct tcpmsg_addr;       /* tcpmsg/addr.h */
/*
 * Behind a load balancer that speaks the PROXY protocol (tcpmsg/proxy.h), the socket's peer
 * is the balancer; the client is the address its header gave. A server with
 * proxy_protocol reads the header before on_open and records it on the connection; a
 * program with its own accept loop reads it with tcpmsg_proxy_recv and records it here.
 *
 * tcpmsg_conn_set_proxy - records a copy of the header *pi read from c's socket (NULL:
 * forgets it). Returns 0, -EINVAL (c NULL), -ENOMEM.
 * tcpmsg_conn_proxy - the header recorded, or NULL (none: c is not behind a balancer, or
 * was not told). Valid until c is freed or the next set_proxy.
 * tcpmsg_conn_peer - the client's address into *out: the header's source when one was
 * recorded and it is not LOCAL (a balancer's own connection: a health check), else the
 * socket's peer (tcpmsg_addr_peer). Returns 0, -EINVAL, or getpeername's error (-ENOTCONN
 * once the peer has gone).
 * tcpmsg_conn_tuple - c's 4-tuple as tcpmsg_addr_tuple formats it, with the client's
 * address of tcpmsg_conn_peer as its peer ("10.0.0.5:7000 203.0.113.9:51514"). Returns the
 * length, or the errors of tcpmsg_addr_tuple (TCPMSG_TUPLE_STRLEN bytes are enough).
 * All four never block; from the thread that owns c.
 */
TCPMSG_API int tcpmsg_conn_set_proxy(struct tcpmsg_conn *c, const struct tcpmsg_proxy_info *pi);
TCPMSG_API const struct tcpmsg_proxy_info *tcpmsg_conn_proxy(const struct tcpmsg_conn *c);
TCPMSG_API int tcpmsg_conn_peer(const struct tcpmsg_conn *c, struct tcpmsg_addr *out);
TCPMSG_API int tcpmsg_conn_tuple(const struct tcpmsg_conn *c, char *buf, size_t cap);

/* ---- ending ----------------------------------------------------------------------------- */

/*
 * tcpmsg_conn_shutdown - flushes, then half-closes: the peer reads end-of-stream after the
 * last message, while this side can still recv (its replies, or its own end). Later sends
 * return -EPIPE. Returns 0, -ETIMEDOUT (output still queued; not half-closed yet: call
 * again), or a send error.
 */
TCPMSG_API int tcpmsg_conn_shutdown(struct tcpmsg_conn *c, int64_t deadline);

/*
 * tcpmsg_conn_close - orderly close: flushes, half-closes, reads and discards until the
 * peer's end of stream, then closes the socket and frees everything, all under the one
 * deadline. With TCPMSG_NOWAIT it waits for nothing: what the socket takes is written,
 * FIN is sent, what has already arrived is discarded (up to 64 reads) and the socket is
 * closed at once. Frees c in every case (NULL is accepted). Returns 0 when the peer
 * received everything and ended too; -ETIMEDOUT (the deadline passed first: queued output
 * may be lost), or the connection's error. Blocks until the deadline at most.
 */
TCPMSG_API int tcpmsg_conn_close(struct tcpmsg_conn *c, int64_t deadline);

/*
 * tcpmsg_conn_reset - abortive close: the peer gets a reset (RST), queued output and
 * unread input are discarded, c is freed. NULL is accepted.
 */
TCPMSG_API void tcpmsg_conn_reset(struct tcpmsg_conn *c);

/*
 * tcpmsg_conn_detach - frees the connection and gives the socket back (its return value)
 * with the bytes received and not yet consumed: *rest receives a malloc'd buffer the
 * caller frees (NULL when empty), *rest_len its length. The socket's blocking mode is as
 * it was. Returns the fd (or -1 for a connection without one), -EBUSY (output is still
 * queued: flush first; nothing is freed), -EINVAL (rest or rest_len NULL).
 */
TCPMSG_API int tcpmsg_conn_detach(struct tcpmsg_conn *c, void **rest, size_t *rest_len);

/* ---- TLS (tcpmsg/tls.h) ------------------------------------------------------------------ */

/* How a connection runs TLS: the context (its role says client or server) and, for a
 * client, the name to ask for and verify and a session to resume. */
struct tcpmsg_tls_params {
    struct tcpmsg_tls_ctx *ctx;                /* required; the connection takes a reference */
    const char *name;                          /* client: SNI and the name the certificate
                                                  must carry (an IP address is checked as
                                                  one, and not sent) [connect_tls: the host] */
    const struct tcpmsg_tls_session *session;  /* client: resume this session [none] */
    struct tcpmsg_tls_info *info;              /* optional: receives what was negotiated, or
                                                  OpenSSL's words for the failure */
};

/*
 * tcpmsg_conn_connect_tls - tcpmsg_conn_connect, then the TLS handshake, all under one
 * deadline: verifies the server as the context says (the chain, and the name p->name or
 * else host), sends SNI, offers ALPN, presents the context's certificate when the server
 * asks, resumes p->session if given. Returns 0 with *out set (a connection whose send,
 * recv, flush, shutdown and close work as for TCP, with frames encrypted), or the connect
 * errors, -ETIMEDOUT, TCPMSG_ECERTUNTRUSTED, TCPMSG_ECERTEXPIRED, TCPMSG_ECERTNAME,
 * TCPMSG_ETLSVERSION, TCPMSG_ETLSALERT (the server refused us), TCPMSG_ETLS, -EINVAL (no
 * context, or a server context), -ENOTSUP (built without TLS). On failure nothing is left
 * open and p->info (if set) says why. Blocks until the deadline at most.
 */
TCPMSG_API int tcpmsg_conn_connect_tls(struct tcpmsg_conn **out, const char *host,
                                       const char *service, const struct tcpmsg_codec *codec,
                                       const struct tcpmsg_conn_opts *opts,
                                       const struct tcpmsg_tls_params *p, int64_t deadline);

/*
 * tcpmsg_conn_start_tls - puts TLS under an open connection (a client's or a server's, by
 * the context's role) and runs the handshake until it completes or the deadline passes
 * (TCPMSG_NOWAIT: starts it; an event loop continues with tcpmsg_conn_handshake when the
 * socket is readable, or writable while tcpmsg_conn_output() is not 0). Nothing may have
 * been received or queued on c yet (-EBUSY). Returns 0 (handshake done), -ETIMEDOUT (in
 * progress), the TLS errors of tcpmsg_conn_connect_tls, TCPMSG_ECERTMISSING (server: the
 * client sent no certificate and one is required), -EINVAL (no socket, already TLS, or a
 * client context that checks names given no p->name). A TLS error is sticky on c; c stays
 * the caller's to close. Blocks until the deadline; any thread that owns c.
 * tcpmsg_conn_handshake - continues it: the same returns; 0 at once when done or plain.
 */
TCPMSG_API int tcpmsg_conn_start_tls(struct tcpmsg_conn *c, const struct tcpmsg_tls_params *p,
                                     int64_t deadline);
TCPMSG_API int tcpmsg_conn_handshake(struct tcpmsg_conn *c, int64_t deadline);

/*
 * tcpmsg_conn_tls_info - what c's handshake negotiated (version, cipher, ALPN, SNI, the
 * peer's certificate subject, resumption) and OpenSSL's words for its last TLS failure.
 * Returns 0, or -EINVAL (c does not run TLS: *out is zeroed). Never blocks.
 * tcpmsg_conn_tls_session - a handle on c's session, to resume it with the next connect
 * (params.session); the caller frees it with tcpmsg_tls_session_destroy. Returns 0,
 * -ENOENT (none yet: a TLS 1.3 server sends it just after the handshake, so it arrives with
 * the first reply; or the server gives none), -EINVAL (not TLS), -ENOMEM.
 */
TCPMSG_API int tcpmsg_conn_tls_info(const struct tcpmsg_conn *c, struct tcpmsg_tls_info *out);
TCPMSG_API int tcpmsg_conn_tls_session(const struct tcpmsg_conn *c,
                                       struct tcpmsg_tls_session **out);

#ifdef __cplusplus
}
#endif

#endif /* TCPMSG_CONN_H */
