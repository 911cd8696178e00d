/* Message connections: a socket, a codec, a receive buffer and a send buffer. */
#include "tcpmsg/conn.h"
#include "tcpmsg/wire.h"

#include "io_internal.h"
#include "tcpmsg/proxy.h"
#include "../tls/tls_internal.h"

#include <assert.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_RECV_BUFFER ((size_t)64 * 1024)
#define DEFAULT_SEND_BUFFER ((size_t)64 * 1024)
#define DEFAULT_COPY_MAX ((size_t)16 * 1024)
#define DEFAULT_MAX_OUTPUT ((size_t)64 * 1024 * 1024)
#define RAW_MAX_DEFAULT ((size_t)16 * 1024 * 1024)
#define READ_EXACT_MAX ((size_t)1 << 30)
/* A grown receive buffer is given back once empty if it is larger than this. */
#define KEEP_GROWN ((size_t)1024 * 1024)
/* A reader that lacks at least LOWAT_MIN bytes of what it needs asks the kernel not to wake
 * it before they are there (SO_RCVLOWAT, which poll and epoll honour), up to LOWAT_MAX at a
 * time; the kernel caps it further to half the largest receive buffer it would allow. */
#define LOWAT_MIN ((size_t)64 * 1024)
#define LOWAT_MAX ((size_t)4 * 1024 * 1024)
/* Pieces of one outgoing frame around the caller's iovec: pending output, head, tail. */
#define EXTRA_IOV 3
#define STACK_IOV 16

struct tcpmsg_conn {
    int fd;
    bool has_codec;
    bool eof;     /* the peer ended its stream */
    bool wr_shut; /* this side half-closed */
    int rerr;     /* sticky receive-side error */
    int werr;     /* sticky send-side error */

    struct tcpmsg_codec codec;
    struct tcpmsg_decoder dec;
    /* tcpmsg_conn_read_until's delimiter, as a codec so the search resumes where it
     * stopped; rebuilt when the caller changes delimiter or limit. */
    struct tcpmsg_codec raw;
    struct tcpmsg_decoder rawdec;
    size_t raw_max;

    uint8_t *rbuf;
    size_t rcap, rpos, rlen; /* unconsumed input is rbuf[rpos, rlen) */
    size_t deliver;          /* bytes of the view handed out last, consumed by the next call */
    size_t rlimit;           /* how far the receive buffer may grow for framed input */

    uint8_t *sbuf;
    size_t scap, spos, slen; /* queued output is sbuf[spos, slen) */

    size_t recv_buffer, send_buffer, copy_max, max_output;
    enum tcpmsg_flush flush;
    struct tcpmsg_conn_stats st;
    void *user;
    void (*wake)(void *arg); /* tcpmsg__conn_hook: output queued on an idle connection */
    void *wake_arg;
    uint8_t plain_width;     /* the codec is a plain big-endian length of this many bytes (no
                                offset, suffix or flags): recv and send take a short path */
    bool short_reads;        /* tcpmsg__conn_short_reads: a short read means the socket is empty */
    bool drained;            /* ... and one happened since the owner's last tcpmsg__conn_readable */
    bool lowat_off;          /* SO_RCVLOWAT refused: not asked again */
    size_t lowat;            /* the SO_RCVLOWAT asked for (0: never set, the kernel's 1) */
    struct tcpmsg__tls *tls; /* TLS between the buffers and the socket (NULL: plain) */
    bool tls_notified;       /* close_notify queued */
    struct tcpmsg_proxy_info *proxy; /* the PROXY header recorded (NULL: none) */
};

/* ---- TLS: the engine between the buffers and the socket ----------------------------------- */

/* Plaintext is encrypted in pieces of this size (records are 16 KiB), and no more than
 * TLS_OUT_HIGH bytes of ciphertext are made ahead of what the socket takes. */
#define TLS_PIECE ((size_t)64 * 1024)
#define TLS_OUT_HIGH ((size_t)256 * 1024)

static int write_iov(int fd, struct iovec *iov, int cnt, int64_t deadline, size_t *done,
                     uint64_t *calls);
static bool fatal(int r);

/* Whether the engine runs on the socket itself (kTLS asked for): OpenSSL then reads and
 * writes the descriptor, and its calls say when they wait for input or for room. */
static bool
tls_sock(const struct tcpmsg_conn *c)
{
    return c->tls && tcpmsg__tls_on_socket(c->tls);
}

static size_t
tls_out_len(const struct tcpmsg_conn *c)
{
    const uint8_t *p;
    if (!c->tls)
        return 0;
    if (tcpmsg__tls_on_socket(c->tls)) /* a record OpenSSL holds until the socket has room */
        return tcpmsg__tls_wants(c->tls) == TCPMSG__TLS_WANT_OUTPUT ? 1 : 0;
    return tcpmsg__tls_out(c->tls, &p);
}

/* How the engine sends on the socket (its records, before the kernel encrypts). */
static ptrdiff_t
tls_socket_send(int fd, const void *p, size_t n)
{
    for (;;) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k >= 0)
            return k;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* The engine's calls. Once the kernel encrypts (kTLS), OpenSSL's socket BIO writes with
 * write(), without MSG_NOSIGNAL: SIGPIPE is held off around every call that may write
 * then, the handshake included (it can end with the kernel sending the tickets). */
static int
tls_call_handshake(struct tcpmsg_conn *c)
{
    if (!tcpmsg__tls_on_socket(c->tls))
        return tcpmsg__tls_handshake(c->tls);
    struct tcpmsg__nosigpipe g = {{0}, false};
    tcpmsg__nosigpipe_enter(&g);
    int r = tcpmsg__tls_handshake(c->tls);
    tcpmsg__nosigpipe_leave(&g);
    return r;
}

static ptrdiff_t
tls_call_read(struct tcpmsg_conn *c, void *dst, size_t cap)
{
    if (!tcpmsg__tls_kernel_sends(c->tls)) {
        ptrdiff_t r = tcpmsg__tls_read(c->tls, dst, cap);
        if (r > 0 && tcpmsg__tls_on_socket(c->tls))
            c->st.reads++;
        return r;
    }
    struct tcpmsg__nosigpipe g = {{0}, false};
    tcpmsg__nosigpipe_enter(&g);
    ptrdiff_t r = tcpmsg__tls_read(c->tls, dst, cap);
    tcpmsg__nosigpipe_leave(&g);
    if (r > 0)
        c->st.reads++;
    return r;
}

static int
tls_call_write_some(struct tcpmsg_conn *c, const void *src, size_t n, size_t *put)
{
    if (!tcpmsg__tls_kernel_sends(c->tls)) {
        int r = tcpmsg__tls_write_some(c->tls, src, n, put);
        if (r == 0)
            c->st.writes++;
        return r;
    }
    struct tcpmsg__nosigpipe g = {{0}, false};
    tcpmsg__nosigpipe_enter(&g);
    int r = tcpmsg__tls_write_some(c->tls, src, n, put);
    tcpmsg__nosigpipe_leave(&g);
    if (r == 0)
        c->st.writes++;
    return r;
}

static int
tls_call_close_notify(struct tcpmsg_conn *c)
{
    if (!tcpmsg__tls_kernel_sends(c->tls))
        return tcpmsg__tls_close_notify(c->tls);
    struct tcpmsg__nosigpipe g = {{0}, false};
    tcpmsg__nosigpipe_enter(&g);
    int r = tcpmsg__tls_close_notify(c->tls);
    tcpmsg__nosigpipe_leave(&g);
    return r;
}

/* Writes the ciphertext the engine made until none is left or the deadline passes (on the
 * socket, OpenSSL writes its own: nothing is left here). */
static int
tls_send_out(struct tcpmsg_conn *c, int64_t deadline)
{
    if (tcpmsg__tls_on_socket(c->tls))
        return 0;
    for (;;) {
        const uint8_t *p;
        size_t n = tcpmsg__tls_out(c->tls, &p);
        if (n == 0)
            return 0;
        struct iovec v = {(void *)(uintptr_t)p, n};
        size_t done;
        int r = write_iov(c->fd, &v, 1, deadline, &done, &c->st.writes);
        tcpmsg__tls_out_done(c->tls, done);
        if (r < 0)
            return r;
    }
}

/* Receives what ciphertext the socket has into the engine, without waiting: > 0 bytes, 0 at
 * the peer's end, -ETIMEDOUT (nothing there), or a negated errno. */
static ptrdiff_t
tls_recv(struct tcpmsg_conn *c)
{
    /* Nothing is reserved for a peer that has sent nothing yet (a crowd of clients that
     * never say hello costs no buffers): the first receive looks before it allocates. */
    if (!tcpmsg__tls_in_allocated(c->tls)) {
        uint8_t b;
        ssize_t p = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (p < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -ETIMEDOUT;
    }
    size_t room;
    uint8_t *sp = tcpmsg__tls_in_space(c->tls, &room);
    if (!sp)
        return -ENOMEM;
    for (;;) {
        ssize_t n = recv(c->fd, sp, room, MSG_DONTWAIT);
        if (n > 0) {
            c->drained = c->short_reads && (size_t)n < room;
            tcpmsg__tls_in_commit(c->tls, (size_t)n);
            c->st.reads++;
            return n;
        }
        if (n == 0) {
            c->st.reads++;
            tcpmsg__tls_in_eof(c->tls);
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        return -ETIMEDOUT;
    }
}

/* The engine needs more from the peer: sends what it has to say as far as the socket takes
 * it, receives what has arrived, and otherwise waits until the socket is readable (or, with
 * output still waiting, writable) or the deadline passes. Never blocks on the output alone:
 * a peer that is itself blocked sending to us must be read, or both would wait for ever.
 * Returns 0 (call the engine again), -ETIMEDOUT, or an error. */
static int
tls_more(struct tcpmsg_conn *c, int64_t deadline)
{
    if (tcpmsg__tls_on_socket(c->tls)) {
        /* OpenSSL found the socket empty, or full: wait for what its last call wants. */
        if (tcpmsg_deadline_left(deadline) == 0)
            return -ETIMEDOUT;
        bool out = tcpmsg__tls_wants(c->tls) & TCPMSG__TLS_WANT_OUTPUT;
        int w = tcpmsg__wait_fd(c->fd, out ? POLLOUT : POLLIN, deadline);
        return w < 0 ? w : 0;
    }
    for (;;) {
        if (tls_out_len(c) && !c->werr) {
            int w = tls_send_out(c, TCPMSG_NOWAIT);
            if (w < 0 && fatal(w))
                c->werr = w; /* the sending side is broken; what arrived can still be read */
        }
        ptrdiff_t k = tls_recv(c);
        if (k >= 0)
            return 0; /* bytes, or the end: the engine says which */
        if (k != -ETIMEDOUT)
            return (int)k;
        if (tcpmsg_deadline_left(deadline) == 0)
            return -ETIMEDOUT;
        short ev = (short)(POLLIN | (tls_out_len(c) && !c->werr ? POLLOUT : 0));
        int w = tcpmsg__wait_fd(c->fd, ev, deadline);
        if (w < 0)
            return w;
    }
}

/* On the socket, a server's OpenSSL is not started before its client says something:
 * whether a byte (or the end) has arrived. */
static bool
peer_spoke(const struct tcpmsg_conn *c)
{
    uint8_t b;
    ssize_t p = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return !(p < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

/* Runs the handshake until it completes or the deadline passes. */
static int
tls_handshake(struct tcpmsg_conn *c, int64_t deadline)
{
    for (;;) {
        int h;
        if (tcpmsg__tls_on_socket(c->tls) && tcpmsg__tls_waits_for_hello(c->tls) && !peer_spoke(c))
            h = TCPMSG__TLS_WANT_INPUT; /* a silent client costs no OpenSSL buffers */
        else
            h = tls_call_handshake(c);
        if (h <= 0) {
            int w = tls_send_out(c, TCPMSG_NOWAIT); /* the last flight, or an alert */
            if (h == 0 && w < 0 && w != -ETIMEDOUT)
                return w; /* what the socket did not take goes out with the next write */
            return h;
        }
        int r = tls_more(c, deadline);
        if (r < 0)
            return r;
    }
}

/* struct iovec has no const variant; the library never writes through these. */
static void *
unconst(const void *p)
{
    return (void *)(uintptr_t)p;
}

static size_t
max_size(size_t a, size_t b)
{
    return a > b ? a : b;
}

/* ---- receiving -------------------------------------------------------------------------- */

/* Forgets how far each decoder searched: bytes were consumed behind its back. */
static void
reset_scans(struct tcpmsg_conn *c, bool main, bool raw)
{
    if (main && c->dec.err == 0)
        tcpmsg_decoder_init(&c->dec);
    if (raw && c->raw.kind) /* only once read_until has been used */
        tcpmsg_decoder_init(&c->rawdec);
}

/* The view handed out by the previous call is no longer needed. */
static void
consume_delivered(struct tcpmsg_conn *c)
{
    c->rpos += c->deliver;
    c->deliver = 0;
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
        if (c->rcap > max_size(c->recv_buffer, KEEP_GROWN)) {
            free(c->rbuf);
            c->rbuf = NULL;
            c->rcap = 0;
        }
    }
}

/* Makes room at the end of the receive buffer for at least one more byte, never growing it
 * past `limit` (and only ever doubling a buffer that is full of received bytes). */
static int
make_room(struct tcpmsg_conn *c, size_t limit)
{
    if (!c->rbuf) {
        c->rbuf = malloc(c->recv_buffer);
        if (!c->rbuf)
            return -ENOMEM;
        c->rcap = c->recv_buffer;
    }
    size_t used = c->rlen - c->rpos;
    /* Slide the unconsumed bytes to the front when the free tail has become too small for a
     * large read and sliding them is cheap compared to what it gains. */
    if (c->rpos > 0 &&
        (c->rlen == c->rcap || (c->rcap - c->rlen < c->rcap / 4 && used < c->rcap / 4))) {
        memmove(c->rbuf, c->rbuf + c->rpos, used);
        c->rpos = 0;
        c->rlen = used;
    }
    if (c->rlen < c->rcap)
        return 0;
    if (c->rcap >= limit)
        return -EMSGSIZE;
    assert(c->rcap > 0); /* rbuf is allocated: at least recv_buffer */
    size_t ncap = c->rcap > SIZE_MAX / 2 ? limit : c->rcap * 2;
    if (ncap > limit)
        ncap = limit;
    uint8_t *n = realloc(c->rbuf, ncap);
    if (!n)
        return -ENOMEM;
    c->rbuf = n;
    c->rcap = ncap;
    return 0;
}

static bool
fatal(int r)
{
    return r != -ETIMEDOUT && r != -ENOMEM && r != -EINTR;
}

/* Tells the kernel how much input to gather before it wakes this reader (SO_RCVLOWAT) while
 * the caller needs `want` bytes buffered in all (the rest of a large frame whose length is
 * known). The mark is at most half of what is missing: a blocking recv that has taken part of
 * the queue (less than the mark) sleeps until the mark's worth is queued again, which the
 * other half guarantees; the peer may send nothing more than the frame (it may be waiting for
 * the reply). It is changed only when it must come down or would at least double: a handful
 * of calls per frame, and the reader copies the first half while the second arrives. A
 * socket that refuses it is not asked again. */
static void
set_lowat(struct tcpmsg_conn *c, size_t want)
{
    if (c->lowat_off)
        return;
    size_t have = c->rlen - c->rpos, missing = want > have ? want - have : 0;
    size_t half = missing / 2;
    size_t mark = half >= LOWAT_MIN ? (half < LOWAT_MAX ? half : LOWAT_MAX) : 1;
    size_t cur = c->lowat ? c->lowat : 1;
    if (!(cur > 1 && 2 * cur > missing) && mark < 2 * cur)
        return;
    int v = (int)mark;
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof v) < 0)
        c->lowat_off = true;
    else
        c->lowat = mark;
}

/* Reads what the socket has (at least one byte, or waits for it until the deadline); want is
 * how many bytes the caller needs buffered in all, when it knows (0 if not).
 * Returns the count, 0 at the peer's end of stream, -ETIMEDOUT, or a negated errno. */
static ptrdiff_t fill_tls(struct tcpmsg_conn *c, size_t limit, int64_t deadline);

static ptrdiff_t
fill(struct tcpmsg_conn *c, size_t limit, size_t want, int64_t deadline)
{
    if (c->fd < 0)
        return -ETIMEDOUT; /* the bytes come from tcpmsg_conn_feed */
    if (c->tls)
        return fill_tls(c, limit, deadline);
    int r = make_room(c, limit);
    if (r < 0)
        return r;
    if (want || c->lowat > 1)
        set_lowat(c, want);
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen,
                         deadline == TCPMSG_FOREVER ? 0 : MSG_DONTWAIT);
        if (n > 0) {
            c->drained = c->short_reads && (size_t)n < c->rcap - c->rlen;
            c->rlen += (size_t)n;
            c->st.bytes_in += (uint64_t)n;
            c->st.reads++;
            return n;
        }
        if (n == 0) {
            c->st.reads++;
            c->eof = true;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        if (tcpmsg_deadline_left(deadline) == 0)
            return -ETIMEDOUT;
        int w = tcpmsg__wait_fd(c->fd, POLLIN, deadline);
        if (w < 0)
            return w;
    }
}

/* fill over TLS: decrypts what the engine holds, and receives ciphertext only when it has
 * nothing left, so that bytes TLS buffered are never left behind waiting for the socket to
 * become readable (the stall of event-loop TLS layers). What TLS itself has to say (the
 * handshake, tickets, key updates, alerts) is written as it comes: before waiting for the
 * peer under the caller's deadline, otherwise as far as the socket takes it now. */
static ptrdiff_t
fill_tls(struct tcpmsg_conn *c, size_t limit, int64_t deadline)
{
    int r = make_room(c, limit);
    if (r < 0)
        return r;
    for (;;) {
        ptrdiff_t n = tls_call_read(c, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (n != 0 && tls_out_len(c) && !c->werr) { /* tickets, alerts: as the socket takes */
            int w = tls_send_out(c, TCPMSG_NOWAIT);
            if (w < 0 && fatal(w))
                c->werr = w;
        }
        if (n > 0) {
            c->rlen += (size_t)n;
            c->st.bytes_in += (uint64_t)n;
            return n;
        }
        if (n == TCPMSG_EOF) {
            c->eof = true;
            return 0;
        }
        if (n < 0)
            return n;
        int k = tls_more(c, deadline);
        if (k < 0)
            return k;
    }
}

static void
deliver(struct tcpmsg_conn *c, size_t n)
{
    c->deliver = n;
}

static uint64_t
get_be(const uint8_t *p, unsigned width)
{
    return width == 4 ? (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3]
                      : tcpmsg_wire_get_uint(p, width);
}

static int recv_general(struct tcpmsg_conn *c, struct tcpmsg_frame *out, int64_t deadline)
    __attribute__((noinline));

int
tcpmsg_conn_recv(struct tcpmsg_conn *c, struct tcpmsg_frame *out, int64_t deadline)
{
    /* Short path: a plain length prefix and a whole frame already buffered (many small
     * messages per read). Everything else, errors included, takes the general path. */
    if (c && out && c->plain_width && !c->rerr) {
        c->rpos += c->deliver;
        c->deliver = 0;
        size_t avail = c->rlen - c->rpos, w = c->plain_width;
        if (avail >= w) {
            const uint8_t *p = c->rbuf + c->rpos;
            uint64_t v = get_be(p, c->plain_width);
            if (v <= c->codec.max && avail - w >= v) {
                out->raw = p;
                out->raw_len = w + (size_t)v;
                out->data = p + w;
                out->len = (size_t)v;
                c->deliver = w + (size_t)v;
                c->dec.need = 0;
                c->st.msgs_in++;
                return 0;
            }
        }
    }
    return recv_general(c, out, deadline);
}

/* Kept out of line, so that the short path above stays a leaf with a small frame. */
static int
recv_general(struct tcpmsg_conn *c, struct tcpmsg_frame *out, int64_t deadline)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!c || !out || !c->has_codec)
        return -EINVAL;
    if (c->rerr)
        return c->rerr;
    consume_delivered(c);
    for (;;) {
        if (c->rlen > c->rpos || c->eof) {
            ptrdiff_t n;
            const uint8_t *p = c->rbuf ? c->rbuf + c->rpos : NULL;
            size_t len = c->rlen - c->rpos;
            n = c->eof ? tcpmsg_codec_finish(&c->codec, &c->dec, p, len, out)
                       : tcpmsg_codec_decode(&c->codec, &c->dec, p, len, out);
            if (n > 0) {
                deliver(c, (size_t)n);
                reset_scans(c, false, true);
                c->st.msgs_in++;
                return 0;
            }
            if (n < 0)
                return c->rerr = (int)n;
        }
        /* Nothing whole is buffered: whatever this side still has to say goes out before
         * waiting for the peer, which may be waiting for exactly that. */
        if (c->flush == TCPMSG_FLUSH_BATCH && c->slen > c->spos && c->fd >= 0 && !c->werr) {
            int r = tcpmsg_conn_flush(c, deadline);
            if (r == -ETIMEDOUT)
                return r;
        }
        /* After a short read the socket had nothing more: an event loop that trusts this
         * (level-triggered, so it is told again when more arrives) saves the recv that
         * would only say EAGAIN. */
        size_t want = c->codec.kind == TCPMSG_CODEC_LENGTH ? c->dec.need : 0;
        if (c->drained && deadline == TCPMSG_NOWAIT && !c->tls) {
            if (want || c->lowat > 1)
                set_lowat(c, want); /* before the loop waits for the socket */
            return -ETIMEDOUT;
        }
        if (c->drained && deadline == TCPMSG_NOWAIT && !tcpmsg__tls_pending(c->tls))
            return -ETIMEDOUT;
        ptrdiff_t r = fill(c, c->rlimit, want, deadline);
        if (r < 0) {
            if (fatal((int)r))
                c->rerr = (int)r;
            return (int)r;
        }
    }
}

ptrdiff_t
tcpmsg_conn_read_exact(struct tcpmsg_conn *c, void *dst, size_t n, int64_t deadline)
{
    if (!c || (!dst && n) || n > READ_EXACT_MAX)
        return -EINVAL;
    if (c->rerr && c->rerr != TCPMSG_EOF)
        return c->rerr;
    consume_delivered(c);
    while (c->rlen - c->rpos < n) {
        if (c->eof)
            return c->rlen > c->rpos ? -EPROTO : TCPMSG_EOF;
        ptrdiff_t r = fill(c, max_size(c->rlimit, n), n, deadline);
        if (r < 0) {
            if (fatal((int)r))
                c->rerr = (int)r;
            return r;
        }
    }
    if (n) {
        memcpy(dst, c->rbuf + c->rpos, n);
        c->rpos += n;
    }
    reset_scans(c, true, true);
    return (ptrdiff_t)n;
}

ptrdiff_t
tcpmsg_conn_read_until(struct tcpmsg_conn *c, const void *delim, size_t delim_len, size_t max,
                       struct tcpmsg_frame *out, int64_t deadline)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!c || !out || !delim || delim_len == 0 || delim_len > TCPMSG_CODEC_DELIM_MAX)
        return -EINVAL;
    if (c->rerr && c->rerr != TCPMSG_EOF)
        return c->rerr;
    if (max == 0)
        max = RAW_MAX_DEFAULT;
    if (c->raw.kind == 0 || c->raw_max != max || c->raw.delim_len != delim_len ||
        memcmp(c->raw.delim, delim, delim_len) != 0) {
        struct tcpmsg_delim_config dc = {.delim = delim, .delim_len = delim_len, .max_len = max};
        int r = tcpmsg_codec_init_delim(&c->raw, &dc);
        if (r < 0)
            return r;
        c->raw_max = max;
        tcpmsg_decoder_init(&c->rawdec);
    }
    consume_delivered(c);
    for (;;) {
        if (c->rlen > c->rpos) {
            ptrdiff_t n =
                tcpmsg_codec_decode(&c->raw, &c->rawdec, c->rbuf + c->rpos, c->rlen - c->rpos, out);
            if (n > 0) {
                deliver(c, (size_t)n);
                reset_scans(c, true, false);
                return n;
            }
            if (n < 0) {
                tcpmsg_decoder_init(&c->rawdec); /* the bytes stay: the caller decides */
                return n;
            }
        }
        if (c->eof)
            return c->rlen > c->rpos ? -EPROTO : TCPMSG_EOF;
        ptrdiff_t r = fill(c, max_size(c->rlimit, tcpmsg_codec_max_frame(&c->raw)), 0, deadline);
        if (r < 0) {
            if (fatal((int)r))
                c->rerr = (int)r;
            return r;
        }
    }
}

ptrdiff_t
tcpmsg_conn_read_some(struct tcpmsg_conn *c, void *dst, size_t cap, int64_t deadline)
{
    if (!c || !dst || cap == 0)
        return -EINVAL;
    if (c->rerr && c->rerr != TCPMSG_EOF)
        return c->rerr;
    consume_delivered(c);
    while (c->rlen == c->rpos) {
        if (c->eof)
            return TCPMSG_EOF;
        ptrdiff_t r = fill(c, c->rlimit, 0, deadline);
        if (r < 0) {
            if (fatal((int)r))
                c->rerr = (int)r;
            return r;
        }
    }
    size_t n = c->rlen - c->rpos;
    if (n > cap)
        n = cap;
    memcpy(dst, c->rbuf + c->rpos, n);
    c->rpos += n;
    reset_scans(c, true, true);
    return (ptrdiff_t)n;
}

int
tcpmsg_conn_feed(struct tcpmsg_conn *c, const void *data, size_t n)
{
    if (!c || c->fd >= 0 || c->eof || (!data && n))
        return -EINVAL;
    if (n == 0) {
        c->eof = true;
        return 0;
    }
    consume_delivered(c);
    size_t used = c->rlen - c->rpos;
    if (n > 2 * c->rlimit - used)
        return -ENOBUFS;
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, used);
        c->rpos = 0;
        c->rlen = used;
    }
    if (c->rcap - c->rlen < n) {
        size_t ncap = max_size(max_size(c->rcap * 2, c->recv_buffer), used + n);
        uint8_t *nb = realloc(c->rbuf, ncap);
        if (!nb)
            return -ENOMEM;
        c->rbuf = nb;
        c->rcap = ncap;
    }
    memcpy(c->rbuf + c->rlen, data, n);
    c->rlen += n;
    c->st.bytes_in += n;
    return 0;
}

/* ---- sending ---------------------------------------------------------------------------- */

/* Writes iov[0..cnt) in full unless the deadline passes; iov is advanced in place and
 * *done receives the bytes written. Returns 0, -ETIMEDOUT or a negated errno. */
static int
write_iov(int fd, struct iovec *iov, int cnt, int64_t deadline, size_t *done, uint64_t *calls)
{
    *done = 0;
    for (;;) {
        while (cnt > 0 && iov->iov_len == 0) {
            iov++;
            cnt--;
        }
        if (cnt == 0)
            return 0;
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        /* MSG_NOSIGNAL: a peer that went away is -EPIPE, never SIGPIPE. */
        ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL | (deadline == TCPMSG_FOREVER ? 0 : MSG_DONTWAIT));
        if (n >= 0) {
            (*calls)++;
            size_t left = (size_t)n;
            *done += left;
            while (left > 0) {
                size_t k = left < iov->iov_len ? left : iov->iov_len;
                iov->iov_base = (uint8_t *)iov->iov_base + k;
                iov->iov_len -= k;
                left -= k;
                if (iov->iov_len == 0) {
                    iov++;
                    cnt--;
                }
            }
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        if (tcpmsg_deadline_left(deadline) == 0)
            return -ETIMEDOUT;
        int w = tcpmsg__wait_fd(fd, POLLOUT, deadline);
        if (w < 0)
            return w;
    }
}

/* write_iov over TLS: encrypts iov[0..cnt) a piece at a time and writes the ciphertext,
 * never making more than TLS_OUT_HIGH ahead of the socket. *done counts the plaintext
 * encrypted: all of it on 0; on -ETIMEDOUT the rest is the caller's to keep, and the
 * ciphertext made stays queued in the engine (tcpmsg_conn_output counts it). The handshake
 * is completed first if it is not. */
static int tls_sock_write_iov(struct tcpmsg_conn *c, struct iovec *iov, int cnt, int64_t deadline,
                              size_t *done);

static int
tls_write_iov(struct tcpmsg_conn *c, struct iovec *iov, int cnt, int64_t deadline, size_t *done)
{
    *done = 0;
    if (!tcpmsg__tls_handshake_done(c->tls)) {
        int h = tls_handshake(c, deadline);
        if (h < 0)
            return h;
    }
    if (tcpmsg__tls_on_socket(c->tls))
        return tls_sock_write_iov(c, iov, cnt, deadline, done);
    for (int i = 0; i < cnt; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left > 0) {
            if (tls_out_len(c) >= TLS_OUT_HIGH) {
                int w = tls_send_out(c, deadline);
                if (w < 0)
                    return w;
            }
            size_t k = left < TLS_PIECE ? left : TLS_PIECE;
            int r = tcpmsg__tls_write(c->tls, p, k);
            if (r < 0)
                return r;
            p += k;
            left -= k;
            *done += k;
        }
    }
    return tls_send_out(c, deadline);
}

/* tls_write_iov on the socket: OpenSSL writes a record at a time as far as the socket takes
 * it; *done counts the plaintext of the records written. A record that did not fit stays
 * with OpenSSL, and the next call starts with the same bytes (the caller keeps them from
 * *done on): the rule of SSL_write after a want. A close_notify that waited for room is
 * sent again first. */
static int
tls_sock_write_iov(struct tcpmsg_conn *c, struct iovec *iov, int cnt, int64_t deadline,
                   size_t *done)
{
    for (;;) {
        int r = c->tls_notified && tcpmsg__tls_wants(c->tls) ? tls_call_close_notify(c) : 0;
        if (r == 0)
            break;
        if (r < 0)
            return r;
        if (tcpmsg_deadline_left(deadline) == 0)
            return -ETIMEDOUT;
        int w = tcpmsg__wait_fd(c->fd, POLLOUT, deadline);
        if (w < 0)
            return w;
    }
    for (int i = 0; i < cnt; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left > 0) {
            size_t put, k = left < TLS_PIECE ? left : TLS_PIECE;
            int r = tls_call_write_some(c, p, k, &put);
            if (r == 0) {
                p += put;
                left -= put;
                *done += put;
                continue;
            }
            if (r < 0)
                return r;
            if (tcpmsg_deadline_left(deadline) == 0)
                return -ETIMEDOUT;
            int w =
                tcpmsg__wait_fd(c->fd, r == TCPMSG__TLS_WANT_OUTPUT ? POLLOUT : POLLIN, deadline);
            if (w < 0)
                return w;
        }
    }
    return 0;
}

/* Room for n more bytes at the end of the send buffer. */
static int
reserve_output(struct tcpmsg_conn *c, size_t n)
{
    if (c->spos > 0 && c->scap - c->slen < n) {
        memmove(c->sbuf, c->sbuf + c->spos, c->slen - c->spos);
        c->slen -= c->spos;
        c->spos = 0;
    }
    if (c->scap - c->slen >= n)
        return 0;
    size_t need = c->slen + n;
    if (need < n)
        return -ENOMEM;
    size_t ncap = max_size(max_size(c->scap * 2, c->send_buffer), need);
    uint8_t *nb = realloc(c->sbuf, ncap);
    if (!nb)
        return -ENOMEM;
    c->sbuf = nb;
    c->scap = ncap;
    return 0;
}

static void
output_written(struct tcpmsg_conn *c, size_t n)
{
    c->spos += n;
    c->st.bytes_out += n;
    if (c->spos == c->slen) {
        c->spos = c->slen = 0;
        if (c->scap > 4 * c->send_buffer) { /* grown by a timed-out large send */
            free(c->sbuf);
            c->sbuf = NULL;
            c->scap = 0;
        }
    }
}

int
tcpmsg_conn_flush(struct tcpmsg_conn *c, int64_t deadline)
{
    if (!c)
        return -EINVAL;
    if (c->werr)
        return c->werr;
    if (c->slen == c->spos && !tls_out_len(c))
        return 0;
    if (c->fd < 0)
        return -ETIMEDOUT; /* the caller writes tcpmsg_conn_output() itself */
    struct iovec v = {c->sbuf + c->spos, c->slen - c->spos};
    size_t done;
    int r = c->tls ? tls_write_iov(c, &v, 1, deadline, &done)
                   : write_iov(c->fd, &v, 1, deadline, &done, &c->st.writes);
    output_written(c, done);
    if (r < 0 && fatal(r))
        c->werr = r;
    return r;
}

/* One outgoing frame: head, the caller's pieces, pad_len pad bytes, tail. */
struct frame_parts {
    const uint8_t *head;
    size_t head_len;
    const struct iovec *iov;
    int iovcnt;
    size_t pad_len;
    uint8_t pad_byte;
    const uint8_t *tail;
    size_t tail_len;
};

/* Copies the frame's bytes from offset `skip` on into the send buffer (room reserved). */
static void
copy_frame(struct tcpmsg_conn *c, const struct frame_parts *f, size_t skip)
{
    assert(c->sbuf != NULL); /* reserve_output made room: every frame has >= 1 byte */
    uint8_t *d = c->sbuf + c->slen;
    if (skip == 0 && f->iovcnt == 1 && f->pad_len == 0 && f->tail_len == 0) {
        /* A header and one payload: most small messages. */
        for (size_t i = 0; i < f->head_len; i++)
            d[i] = f->head[i];
        d += f->head_len;
        if (f->iov[0].iov_len)
            memcpy(d, f->iov[0].iov_base, f->iov[0].iov_len);
        c->slen = (size_t)(d - c->sbuf) + f->iov[0].iov_len;
        return;
    }
#define PUT(ptr, len)                                                                              \
    do {                                                                                           \
        size_t len_ = (len);                                                                       \
        if (skip >= len_) {                                                                        \
            skip -= len_;                                                                          \
        } else {                                                                                   \
            memcpy(d, (const uint8_t *)(ptr) + skip, len_ - skip);                                 \
            d += len_ - skip;                                                                      \
            skip = 0;                                                                              \
        }                                                                                          \
    } while (0)
    PUT(f->head, f->head_len);
    for (int i = 0; i < f->iovcnt; i++)
        PUT(f->iov[i].iov_base, f->iov[i].iov_len);
#undef PUT
    if (f->pad_len > skip) {
        memset(d, f->pad_byte, f->pad_len - skip);
        d += f->pad_len - skip;
        skip = 0;
    } else {
        skip -= f->pad_len;
    }
    if (f->tail_len > skip) {
        memcpy(d, f->tail + skip, f->tail_len - skip);
        d += f->tail_len - skip;
    }
    c->slen = (size_t)(d - c->sbuf);
}

/* Queues or writes one frame of `total` bytes according to the flush policy. */
static int
send_frame(struct tcpmsg_conn *c, const struct frame_parts *f, size_t total, bool is_msg,
           int64_t deadline)
{
    if (c->slen - c->spos >= c->max_output) {
        int r = c->fd >= 0 && c->flush != TCPMSG_FLUSH_MANUAL ? tcpmsg_conn_flush(c, deadline)
                                                              : -ETIMEDOUT;
        if (r < 0 && r != -ETIMEDOUT)
            return r;
        if (c->slen - c->spos >= c->max_output)
            return -ENOBUFS;
    }

    /* MANUAL never waits, but a large frame with nothing queued before it is written at
     * once, as far as the socket takes it, from the caller's memory: only the rest is
     * copied (a 1 MiB echo then costs no copy at all when the socket has room). */
    bool manual = c->flush == TCPMSG_FLUSH_MANUAL;
    bool direct =
        manual && c->fd >= 0 && total > c->copy_max && f->pad_len == 0 && c->slen == c->spos;
    if (total <= c->copy_max || c->fd < 0 || f->pad_len > 0 || (manual && !direct)) {
        /* Small frame: one copy into the send buffer, written now or with later ones. */
        if (c->slen + total > c->scap && c->fd >= 0 && c->slen > c->spos &&
            c->flush != TCPMSG_FLUSH_MANUAL) {
            int r = tcpmsg_conn_flush(c, deadline);
            if (r < 0 && r != -ETIMEDOUT)
                return r;
        }
        int r = reserve_output(c, total);
        if (r < 0)
            return r;
        bool was_idle = c->slen == c->spos;
        copy_frame(c, f, 0);
        c->st.msgs_out += is_msg;
        if (c->fd < 0 || c->flush == TCPMSG_FLUSH_MANUAL) {
            if (was_idle && c->wake)
                c->wake(c->wake_arg);
            return 0;
        }
        if (c->flush == TCPMSG_FLUSH_EACH || c->slen - c->spos >= c->send_buffer)
            return tcpmsg_conn_flush(c, deadline);
        return 0;
    }

    /* Large frame: what is queued, the head, the payload from the caller's memory and the
     * tail in one writev; nothing is copied unless the deadline cuts it short. */
    if (direct)
        deadline = TCPMSG_NOWAIT;
    struct iovec stack[STACK_IOV], *v = stack;
    int cnt = f->iovcnt + EXTRA_IOV;
    if (cnt > STACK_IOV && !(v = malloc((size_t)cnt * sizeof *v)))
        return -ENOMEM;
    size_t pending = c->slen - c->spos;
    int k = 0;
    v[k++] = (struct iovec){c->sbuf ? c->sbuf + c->spos : NULL, pending};
    v[k++] = (struct iovec){unconst(f->head), f->head_len};
    for (int i = 0; i < f->iovcnt; i++)
        v[k++] = f->iov[i];
    v[k++] = (struct iovec){unconst(f->tail), f->tail_len};
    size_t done;
    int r = c->tls ? tls_write_iov(c, v, k, deadline, &done)
                   : write_iov(c->fd, v, k, deadline, &done, &c->st.writes);
    if (v != stack)
        free(v);

    size_t from_queue = done < pending ? done : pending;
    output_written(c, from_queue);
    size_t frame_done = done - from_queue;
    c->st.bytes_out += frame_done;
    if (r == 0) {
        c->st.msgs_out += is_msg;
        return 0;
    }
    if (r != -ETIMEDOUT) {
        c->werr = r;
        return r;
    }
    /* The deadline passed inside the frame: keep the rest queued so that the stream stays
     * whole and the next flush completes the frame. (Over TLS the whole frame may already
     * be encrypted, its ciphertext waiting in the engine: then nothing is left to copy.) */
    if (frame_done < total) {
        int q = reserve_output(c, total - frame_done);
        if (q < 0) {
            c->werr = q; /* half a frame is on the wire: the stream cannot be repaired */
            return q;
        }
        copy_frame(c, f, frame_done);
    }
    c->st.msgs_out += is_msg;
    if (direct) {
        if (c->wake)
            c->wake(c->wake_arg);
        return 0; /* queued, as MANUAL promises */
    }
    return -ETIMEDOUT;
}

static int
check_send(struct tcpmsg_conn *c, const struct iovec *iov, int iovcnt, size_t *total)
{
    if (!c || iovcnt < 0 || iovcnt > IOV_MAX - EXTRA_IOV || (!iov && iovcnt > 0))
        return -EINVAL;
    if (c->werr)
        return c->werr;
    if (c->wr_shut)
        return -EPIPE;
    size_t sum = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (!iov[i].iov_base && iov[i].iov_len)
            return -EINVAL;
        if (sum + iov[i].iov_len < sum)
            return -EMSGSIZE;
        sum += iov[i].iov_len;
    }
    *total = sum;
    return 0;
}

/* Frames and sends a message; fields (offset + suffix header bytes) are optional. */
static int
send_message(struct tcpmsg_conn *c, const void *fields, size_t fields_len, const struct iovec *iov,
             int iovcnt, int64_t deadline)
{
    size_t len = 0;
    int r = check_send(c, iov, iovcnt, &len);
    if (r < 0)
        return r;
    if (!c->has_codec)
        return -EINVAL;

    /* The delimiter codec checks the payload for its delimiter, which needs it in one
     * piece; scatter-gather payloads for that codec are joined first. */
    void *joined = NULL;
    const void *flat = iovcnt > 0 ? iov[0].iov_base : NULL;
    if (iovcnt > 1 && c->codec.kind == TCPMSG_CODEC_DELIM) {
        if (!(joined = malloc(len ? len : 1)))
            return -ENOMEM;
        size_t at = 0;
        for (int i = 0; i < iovcnt; i++) {
            memcpy((uint8_t *)joined + at, iov[i].iov_base, iov[i].iov_len);
            at += iov[i].iov_len;
        }
        flat = joined;
    }
    struct tcpmsg_encoded enc;
    r = tcpmsg_codec_encode(&c->codec, flat, len, &enc);
    free(joined);
    if (r < 0)
        return r;
    if (fields) {
        memcpy(enc.head, fields, c->codec.offset);
        memcpy(enc.head + enc.head_len - c->codec.suffix, (const uint8_t *)fields + c->codec.offset,
               c->codec.suffix);
    }
    (void)fields_len;
    struct frame_parts f = {enc.head,    enc.head_len, iov,      iovcnt,
                            enc.pad_len, enc.pad_byte, enc.tail, enc.tail_len};
    return send_frame(c, &f, enc.head_len + len + enc.pad_len + enc.tail_len, true, deadline);
}

static int send_general(struct tcpmsg_conn *c, const void *payload, size_t len, int64_t deadline)
    __attribute__((noinline));

int
tcpmsg_conn_send(struct tcpmsg_conn *c, const void *payload, size_t len, int64_t deadline)
{
    /* Short path: a plain length prefix, a small frame that fits the send buffer, queued
     * (MANUAL, or BATCH below the buffer's size). */
    if (c && c->plain_width && !c->werr && !c->wr_shut && len <= c->codec.max &&
        len + c->plain_width <= c->copy_max && c->flush != TCPMSG_FLUSH_EACH &&
        c->scap - c->slen >= len + c->plain_width && (payload || !len) &&
        c->slen - c->spos + len + c->plain_width < c->send_buffer) {
        uint8_t *d = c->sbuf + c->slen;
        bool was_idle = c->slen == c->spos;
        if (c->plain_width == 4)
            tcpmsg_wire_put_u32(d, (uint32_t)len);
        else
            tcpmsg_wire_put_uint(d, len, c->plain_width);
        if (len)
            memcpy(d + c->plain_width, payload, len);
        c->slen += c->plain_width + len;
        c->st.msgs_out++;
        if (was_idle && c->wake && c->flush == TCPMSG_FLUSH_MANUAL)
            c->wake(c->wake_arg);
        return 0;
    }
    return send_general(c, payload, len, deadline);
}

static int
send_general(struct tcpmsg_conn *c, const void *payload, size_t len, int64_t deadline)
{
    struct iovec v = {unconst(payload), len};
    return send_message(c, NULL, 0, &v, 1, deadline);
}

int
tcpmsg_conn_sendv(struct tcpmsg_conn *c, const struct iovec *iov, int iovcnt, int64_t deadline)
{
    return send_message(c, NULL, 0, iov, iovcnt, deadline);
}

int
tcpmsg_conn_send_fields(struct tcpmsg_conn *c, const void *fields, size_t fields_len,
                        const struct iovec *iov, int iovcnt, int64_t deadline)
{
    if (!c || !c->has_codec || c->codec.kind != TCPMSG_CODEC_LENGTH ||
        fields_len != (size_t)c->codec.offset + c->codec.suffix || (!fields && fields_len))
        return -EINVAL;
    return send_message(c, fields, fields_len, iov, iovcnt, deadline);
}

int
tcpmsg_conn_write_all(struct tcpmsg_conn *c, const void *data, size_t n, int64_t deadline)
{
    struct iovec v = {unconst(data), n};
    size_t len = 0;
    int r = check_send(c, &v, 1, &len);
    if (r < 0)
        return r;
    struct frame_parts f = {NULL, 0, &v, 1, 0, 0, NULL, 0};
    return send_frame(c, &f, len, false, deadline);
}

size_t
tcpmsg_conn_output(const struct tcpmsg_conn *c, const void **data)
{
    if (data)
        *data = NULL;
    if (!c)
        return 0;
    size_t n = c->slen - c->spos;
    if (data && n && !c->tls)
        *data = c->sbuf + c->spos;
    return n + tls_out_len(c);
}

int
tcpmsg_conn_output_done(struct tcpmsg_conn *c, size_t n)
{
    if (!c || c->fd >= 0 || n > c->slen - c->spos)
        return -EINVAL;
    output_written(c, n);
    return 0;
}

/* ---- life cycle ------------------------------------------------------------------------- */

int
tcpmsg_conn_open(struct tcpmsg_conn **out, int fd, const struct tcpmsg_codec *codec,
                 const struct tcpmsg_conn_opts *opts)
{
    static const struct tcpmsg_conn_opts defaults;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!opts)
        opts = &defaults;
    if ((codec && tcpmsg_codec_kind(codec) == 0) || fd < -1 ||
        (opts->flush != TCPMSG_FLUSH_EACH && opts->flush != TCPMSG_FLUSH_BATCH &&
         opts->flush != TCPMSG_FLUSH_MANUAL) ||
        opts->recv_buffer > READ_EXACT_MAX || opts->send_buffer > READ_EXACT_MAX)
        return -EINVAL;
    if (fd >= 0) {
        int type;
        socklen_t len = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
            return -errno;
        if (type != SOCK_STREAM)
            return -ENOTSOCK;
    }
    struct tcpmsg_conn *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->fd = fd;
    if (codec) {
        c->codec = *codec;
        c->has_codec = true;
    }
    tcpmsg_decoder_init(&c->dec);
    tcpmsg_decoder_init(&c->rawdec);
    c->recv_buffer = opts->recv_buffer ? opts->recv_buffer : DEFAULT_RECV_BUFFER;
    c->send_buffer = opts->send_buffer ? opts->send_buffer : DEFAULT_SEND_BUFFER;
    c->copy_max = opts->copy_max ? opts->copy_max : DEFAULT_COPY_MAX;
    c->max_output = opts->max_output ? opts->max_output : DEFAULT_MAX_OUTPUT;
    c->flush = opts->flush;
    c->rlimit = max_size(codec ? tcpmsg_codec_max_frame(codec) : 0, c->recv_buffer);
    if (codec && codec->kind == TCPMSG_CODEC_LENGTH && codec->flags == 0 && codec->offset == 0 &&
        codec->suffix == 0 && codec->width)
        c->plain_width = codec->width;
    *out = c;
    return 0;
}

/* Wraps a new fd (or passes its error on); the fd is closed if the connection cannot be made. */
static int
adopt(struct tcpmsg_conn **out, int fd, const struct tcpmsg_codec *codec,
      const struct tcpmsg_conn_opts *opts)
{
    if (fd < 0)
        return fd;
    int r = tcpmsg_conn_open(out, fd, codec, opts);
    if (r < 0)
        tcpmsg__close_quietly(fd);
    return r;
}

int
tcpmsg_conn_connect(struct tcpmsg_conn **out, const char *host, const char *service,
                    const struct tcpmsg_codec *codec, const struct tcpmsg_conn_opts *opts,
                    int64_t deadline)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    return adopt(out, tcpmsg_sock_connect(host, service, NULL, deadline), codec, opts);
}

int
tcpmsg_conn_accept(struct tcpmsg_conn **out, int lfd, struct tcpmsg_addr *peer,
                   const struct tcpmsg_codec *codec, const struct tcpmsg_conn_opts *opts,
                   int64_t deadline)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    return adopt(out, tcpmsg_sock_accept(lfd, NULL, peer, deadline), codec, opts);
}

void
tcpmsg__conn_hook(struct tcpmsg_conn *c, void (*wake)(void *arg), void *arg)
{
    c->wake = wake;
    c->wake_arg = arg;
}

void
tcpmsg__conn_short_reads(struct tcpmsg_conn *c, bool on)
{
    c->short_reads = on;
    c->drained = false;
}

void
tcpmsg__conn_readable(struct tcpmsg_conn *c)
{
    c->drained = false;
}

void *
tcpmsg__conn_hook_arg(const struct tcpmsg_conn *c)
{
    return c ? c->wake_arg : NULL;
}

void
tcpmsg_conn_set_user(struct tcpmsg_conn *c, void *user)
{
    if (c)
        c->user = user;
}

void *
tcpmsg_conn_user(const struct tcpmsg_conn *c)
{
    return c ? c->user : NULL;
}

int
tcpmsg_conn_fd(const struct tcpmsg_conn *c)
{
    return c ? c->fd : -1;
}

int
tcpmsg_conn_peer_cred(const struct tcpmsg_conn *c, struct tcpmsg_peer_cred *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!c || !out || c->fd < 0)
        return -EINVAL;
    struct tcpmsg_addr a;
    int r = tcpmsg_addr_local(c->fd, &a);
    if (r < 0)
        return r;
    if (tcpmsg_addr_family(&a) != TCPMSG_FAMILY_UNIX)
        return -ENOTSUP;
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
        return -errno;
    *out = (struct tcpmsg_peer_cred){(int)cr.pid, (unsigned)cr.uid, (unsigned)cr.gid};
    return 0;
}

int
tcpmsg_conn_set_proxy(struct tcpmsg_conn *c, const struct tcpmsg_proxy_info *pi)
{
    if (!c)
        return -EINVAL;
    if (!pi) {
        free(c->proxy);
        c->proxy = NULL;
        return 0;
    }
    if (!c->proxy && !(c->proxy = malloc(sizeof *c->proxy)))
        return -ENOMEM;
    *c->proxy = *pi;
    return 0;
}

const struct tcpmsg_proxy_info *
tcpmsg_conn_proxy(const struct tcpmsg_conn *c)
{
    return c ? c->proxy : NULL;
}

/* The client the header names, NULL when there is none (no header, or LOCAL). */
static const struct tcpmsg_addr *
proxied_client(const struct tcpmsg_conn *c)
{
    return c->proxy && !c->proxy->local ? &c->proxy->src : NULL;
}

int
tcpmsg_conn_peer(const struct tcpmsg_conn *c, struct tcpmsg_addr *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!c || !out)
        return -EINVAL;
    const struct tcpmsg_addr *client = proxied_client(c);
    if (client) {
        *out = *client;
        return 0;
    }
    return tcpmsg_addr_peer(c->fd, out);
}

int
tcpmsg_conn_tuple(const struct tcpmsg_conn *c, char *buf, size_t cap)
{
    if (!c) {
        if (buf && cap)
            buf[0] = '\0';
        return -EINVAL;
    }
    return tcpmsg__addr_tuple(c->fd, proxied_client(c), buf, cap);
}

int
tcpmsg_conn_error(const struct tcpmsg_conn *c)
{
    if (!c)
        return -EINVAL;
    return c->rerr ? c->rerr : c->werr;
}

void
tcpmsg_conn_stats(const struct tcpmsg_conn *c, struct tcpmsg_conn_stats *out)
{
    if (!out)
        return;
    if (c)
        *out = c->st;
    else
        memset(out, 0, sizeof *out);
}

size_t
tcpmsg_conn_buffered(const struct tcpmsg_conn *c)
{
    return c ? c->rlen - c->rpos - c->deliver : 0;
}

int
tcpmsg_conn_shutdown(struct tcpmsg_conn *c, int64_t deadline)
{
    if (!c)
        return -EINVAL;
    int r = tcpmsg_conn_flush(c, deadline);
    if (r < 0)
        return r;
    if (c->tls && !c->tls_notified && !c->wr_shut) { /* the TLS end first: close_notify */
        c->tls_notified = true;
        r = tls_call_close_notify(c);
        if (r == 0)
            r = tls_send_out(c, deadline);
        else if (r > 0) /* on the socket, with no room yet: sent by the flush */
            r = tcpmsg_conn_flush(c, deadline);
        if (r < 0)
            return r;
    }
    if (c->fd >= 0 && !c->wr_shut) {
        if (shutdown(c->fd, SHUT_WR) < 0 && errno != ENOTCONN)
            return -errno;
    }
    c->wr_shut = true;
    return 0;
}

static void
destroy(struct tcpmsg_conn *c)
{
    tcpmsg__tls_free(c->tls);
    free(c->proxy);
    free(c->rbuf);
    free(c->sbuf);
    free(c);
}

int
tcpmsg_conn_close(struct tcpmsg_conn *c, int64_t deadline)
{
    if (!c)
        return 0;
    int r = 0;
    if (c->fd >= 0) {
        r = tcpmsg_conn_shutdown(c, deadline);
        /* Read until the peer's end of stream: closing with unread data would make the
         * kernel reset the connection and could destroy the last reply in flight. With
         * TCPMSG_NOWAIT, only what has already arrived is read, a bounded amount of it: a
         * peer that keeps pushing does not hold the close (it gets the reset it asked for). */
        if (r == 0 &&
            (c->rerr == 0 || c->rerr == TCPMSG_EOF || c->rerr == -EPROTO || c->rerr == -EMSGSIZE)) {
            for (int reads = 0; !c->eof; reads++) {
                if (deadline == TCPMSG_NOWAIT && reads == 64)
                    break;
                c->rpos = c->rlen = c->deliver = 0;
                ptrdiff_t n = fill(c, c->recv_buffer, 0, deadline);
                if (n < 0) {
                    r = (int)n;
                    break;
                }
            }
        }
        tcpmsg_sock_close(c->fd);
    }
    destroy(c);
    return r;
}

void
tcpmsg_conn_reset(struct tcpmsg_conn *c)
{
    if (!c)
        return;
    tcpmsg_sock_reset(c->fd);
    destroy(c);
}

int
tcpmsg_conn_detach(struct tcpmsg_conn *c, void **rest, size_t *rest_len)
{
    if (rest)
        *rest = NULL;
    if (rest_len)
        *rest_len = 0;
    if (!c || !rest || !rest_len)
        return -EINVAL;
    if (c->slen > c->spos)
        return -EBUSY;
    if (c->tls)
        return -EINVAL; /* the TLS session cannot be handed over with the descriptor */
    consume_delivered(c);
    size_t n = c->rlen - c->rpos;
    if (n) {
        memmove(c->rbuf, c->rbuf + c->rpos, n);
        *rest = c->rbuf;
        *rest_len = n;
        c->rbuf = NULL;
    }
    if (c->lowat > 1) { /* the descriptor's next owner reads as the kernel would */
        int one = 1;
        (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
    }
    int fd = c->fd;
    destroy(c);
    return fd;
}

/* ---- TLS ---------------------------------------------------------------------------------- */

int
tcpmsg_conn_start_tls(struct tcpmsg_conn *c, const struct tcpmsg_tls_params *p, int64_t deadline)
{
    if (p && p->info)
        memset(p->info, 0, sizeof *p->info);
    if (!c || !p || !p->ctx || c->tls || c->fd < 0)
        return -EINVAL;
    if (c->rlen > c->rpos || c->slen > c->spos)
        return -EBUSY; /* plaintext already in flight: the TLS stream must start clean */
    int r = tcpmsg__tls_new(&c->tls, p->ctx, p->name, p->session, c->fd, tls_socket_send);
    if (r < 0)
        return r;
    if (tls_sock(c)) { /* OpenSSL's reads and writes must never block */
        r = tcpmsg__set_nonblock(c->fd, 1);
        if (r < 0) {
            tcpmsg__tls_free(c->tls);
            c->tls = NULL;
            return r;
        }
    }
    r = tls_handshake(c, deadline);
    if (p->info)
        tcpmsg__tls_info(c->tls, p->info);
    if (r < 0 && r != -ETIMEDOUT)
        c->rerr = c->werr = r;
    return r;
}

int
tcpmsg_conn_connect_tls(struct tcpmsg_conn **out, const char *host, const char *service,
                        const struct tcpmsg_codec *codec, const struct tcpmsg_conn_opts *opts,
                        const struct tcpmsg_tls_params *p, int64_t deadline)
{
    if (p && p->info)
        memset(p->info, 0, sizeof *p->info);
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!p || !p->ctx || !host)
        return -EINVAL;
    struct tcpmsg_conn *c;
    int r = tcpmsg_conn_connect(&c, host, service, codec, opts, deadline);
    if (r < 0)
        return r;
    struct tcpmsg_tls_params q = *p;
    if (!q.name)
        q.name = host; /* SNI, and the name the certificate must carry */
    r = tcpmsg_conn_start_tls(c, &q, deadline);
    if (r < 0) {
        tcpmsg_conn_reset(c);
        return r;
    }
    *out = c;
    return 0;
}

int
tcpmsg_conn_handshake(struct tcpmsg_conn *c, int64_t deadline)
{
    if (!c)
        return -EINVAL;
    if (!c->tls)
        return 0;
    if (c->rerr && c->rerr != TCPMSG_EOF)
        return c->rerr;
    int r = tls_handshake(c, deadline);
    if (r < 0 && r != -ETIMEDOUT && fatal(r))
        c->rerr = c->werr = r;
    return r;
}

int
tcpmsg_conn_tls_info(const struct tcpmsg_conn *c, struct tcpmsg_tls_info *out)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    if (!c || !c->tls)
        return -EINVAL;
    tcpmsg__tls_info(c->tls, out);
    return 0;
}

int
tcpmsg_conn_tls_session(const struct tcpmsg_conn *c, struct tcpmsg_tls_session **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!c || !c->tls)
        return -EINVAL;
    return tcpmsg__tls_session(c->tls, out);
}
