/* tcpmsg/conn.h over real loopback sockets: round trips of every codec, pipelining,
 * hostile and broken peers, deadlines, raw stream helpers, event-loop use, close. */
#include "nettest.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MiB ((size_t)1024 * 1024)
#define LONG_WAIT tcpmsg_deadline_in(60000)

/* ---- peers ------------------------------------------------------------------------------ */

/* Serves one connection: every message is sent back unchanged until the client ends. */
struct echo {
    int lfd;
    struct tcpmsg_codec codec;
    struct tcpmsg_conn_opts opts;
    int end;                     /* what recv returned at the end */
    struct tcpmsg_conn_stats st; /* the server side's counters */
};

static void *
echo_main(void *arg)
{
    struct echo *e = arg;
    struct tcpmsg_conn *c;
    e->end = tcpmsg_conn_accept(&c, e->lfd, NULL, &e->codec, &e->opts, LONG_WAIT);
    if (e->end < 0)
        return NULL;
    struct tcpmsg_frame f;
    int r;
    while ((r = tcpmsg_conn_recv(c, &f, LONG_WAIT)) == 0)
        if ((r = tcpmsg_conn_send(c, f.data, f.len, LONG_WAIT)) < 0)
            break;
    e->end = r;
    tcpmsg_conn_stats(c, &e->st);
    tcpmsg_conn_close(c, LONG_WAIT);
    return NULL;
}

/* Writes a prepared byte stream, `chunk` bytes per send() (0: all at once), then ends it
 * (shutdown SHUT_WR) or resets it. */
struct writer {
    int fd;
    const uint8_t *p;
    size_t n, chunk;
    bool reset, keep_open;
    bool ok;
};

static void *
writer_main(void *arg)
{
    struct writer *w = arg;
    w->ok = true;
    if (w->chunk)
        tcpmsg_sock_set_nodelay(w->fd, true);
    for (size_t at = 0; at < w->n && w->ok;) {
        size_t k = w->chunk && w->chunk < w->n - at ? w->chunk : w->n - at;
        w->ok = nt_send_all(w->fd, w->p + at, k);
        at += k;
    }
    if (w->reset)
        tcpmsg_sock_reset(w->fd);
    else if (!w->keep_open)
        shutdown(w->fd, SHUT_WR);
    return NULL;
}

/* Waits (bounded) until fd's TCP state is CLOSE: its peer reset the connection. */
static bool
eventually_closed(int fd)
{
    int64_t dl = tcpmsg_deadline_in(20000);
    for (;;) {
        struct tcp_info ti;
        socklen_t len = sizeof ti;
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE)
            return true;
        if (tcpmsg_deadline_left(dl) == 0)
            return false;
        poll(NULL, 0, 2); /* polling a state, not timing anything */
    }
}

/* The default framing, a 4-byte length. */
static const struct tcpmsg_codec *
len4(void)
{
    static struct tcpmsg_codec c;
    if (!tcpmsg_codec_kind(&c))
        ck_assert_int_eq(tcpmsg_codec_init_length(&c, NULL), 0);
    return &c;
}

/* A conn on one end of a fresh loopback pair; *peer is the raw other end. */
static struct tcpmsg_conn *
conn_pair(const struct tcpmsg_codec *codec, const struct tcpmsg_conn_opts *o, int *peer)
{
    int c, s;
    nt_pair("127.0.0.1", &c, &s);
    struct tcpmsg_conn *conn;
    ck_assert_int_eq(tcpmsg_conn_open(&conn, c, codec, o), 0);
    *peer = s;
    return conn;
}

/* Encodes payloads into one contiguous stream (malloc). */
static uint8_t *
encode_stream(const struct tcpmsg_codec *codec, uint8_t **payloads, const size_t *lens, size_t n,
              size_t *total)
{
    size_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += tcpmsg_codec_frame_size(codec, lens[i]);
    uint8_t *s = malloc(sum + 1);
    ck_assert_ptr_nonnull(s);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        ptrdiff_t k = tcpmsg_codec_write(codec, payloads[i], lens[i], s + at, sum - at);
        ck_assert_int_gt(k, 0);
        at += (size_t)k;
    }
    *total = sum;
    return s;
}

/* ---- round trips ------------------------------------------------------------------------ */

struct rt_case {
    const char *name;
    int kind;
    struct tcpmsg_length_config len;
    struct tcpmsg_delim_config delim;
    struct tcpmsg_fixed_config fixed;
    bool letters;
    size_t sizes[10];
    size_t nsizes;
};

static const struct rt_case rt_cases[] = {
    {"length", TCPMSG_CODEC_LENGTH,
     .sizes = {0, 1, 100, 16383, 16384, 16385, 196615, MiB, 16 * MiB}, .nsizes = 9},
    {"varint", TCPMSG_CODEC_LENGTH, .len = {.varint = true, .max_payload = MiB},
     .sizes = {0, 127, 128, 16385, MiB}, .nsizes = 5},
    {"u16le", TCPMSG_CODEC_LENGTH, .len = {.width = 2, .little_endian = true},
     .sizes = {0, 1, 255, 256, 65535}, .nsizes = 5},
    {"lines", TCPMSG_CODEC_DELIM, .letters = true, .sizes = {0, 1, 100, 20000, MiB}, .nsizes = 5},
    {"crlf", TCPMSG_CODEC_DELIM, .delim = {.mode = TCPMSG_DELIM_CRLF}, .letters = true,
     .sizes = {0, 3, 16385}, .nsizes = 3},
    {"bytes", TCPMSG_CODEC_DELIM, .delim = {.delim = "\r\n.\r\n", .delim_len = 5}, .letters = true,
     .sizes = {0, 5, 20000, 16 * MiB}, .nsizes = 4},
    {"fixed-pad", TCPMSG_CODEC_FIXED, .fixed = {.size = 512, .pad = true, .pad_byte = '#'},
     .sizes = {0, 1, 512}, .nsizes = 3},
    {"fixed-big", TCPMSG_CODEC_FIXED, .fixed = {.size = 100000}, .sizes = {100000}, .nsizes = 1},
};

static void
init_case(const struct rt_case *k, struct tcpmsg_codec *codec)
{
    int r = k->kind == TCPMSG_CODEC_LENGTH  ? tcpmsg_codec_init_length(codec, &k->len)
            : k->kind == TCPMSG_CODEC_DELIM ? tcpmsg_codec_init_delim(codec, &k->delim)
                                            : tcpmsg_codec_init_fixed(codec, &k->fixed);
    ck_assert_int_eq(r, 0);
}

START_TEST(roundtrip_every_codec)
{
    const struct rt_case *k = &rt_cases[_i];
    struct echo e = {0};
    init_case(k, &e.codec);
    int port;
    e.lfd = nt_listen("127.0.0.1", &port);
    struct nt_thread t;
    nt_start(&t, echo_main, &e);

    struct tcpmsg_conn *c;
    ck_assert_int_eq(
        tcpmsg_conn_connect(&c, "127.0.0.1", nt_service(port), &e.codec, NULL, LONG_WAIT), 0);
    uint8_t *buf = malloc(16 * MiB + 1);
    for (size_t i = 0; i < k->nsizes; i++) {
        size_t n = k->sizes[i];
        if (k->letters)
            nt_fill_letters(buf, n, (uint32_t)i);
        else
            nt_fill(buf, n, (uint32_t)i);
        ck_assert_msg(tcpmsg_conn_send(c, buf, n, LONG_WAIT) == 0, "%s: send %zu", k->name, n);
        struct tcpmsg_frame f;
        ck_assert_msg(tcpmsg_conn_recv(c, &f, LONG_WAIT) == 0, "%s: recv %zu", k->name, n);
        size_t want = k->kind == TCPMSG_CODEC_FIXED ? k->fixed.size : n;
        ck_assert_uint_eq(f.len, want);
        ck_assert_int_eq(memcmp(f.data, buf, n), 0);
        for (size_t j = n; j < want; j++)
            ck_assert_int_eq(f.data[j], k->fixed.pad_byte);
    }
    /* Over the limit: refused before anything is sent, and not sticky. */
    uint64_t max = tcpmsg_codec_max_payload(&e.codec);
    if (k->kind != TCPMSG_CODEC_FIXED && max < 16 * MiB) {
        ck_assert_int_eq(tcpmsg_conn_send(c, buf, (size_t)max + 1, LONG_WAIT), -EMSGSIZE);
        ck_assert_int_eq(tcpmsg_conn_send(c, "ok", 2, LONG_WAIT), 0);
        struct tcpmsg_frame f;
        ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    }
    free(buf);
    ck_assert_int_eq(tcpmsg_conn_close(c, LONG_WAIT), 0);
    nt_join(&t);
    ck_assert_int_eq(e.end, TCPMSG_EOF);
    close(e.lfd);
}
END_TEST

START_TEST(sendv_and_header_fields)
{
    /* [type:1][len:4][flags:1] payload */
    struct tcpmsg_codec codec;
    ck_assert_int_eq(
        tcpmsg_codec_init_length(&codec, &(struct tcpmsg_length_config){.offset = 1, .suffix = 1}),
        0);
    int peer;
    struct tcpmsg_conn *c = conn_pair(&codec, NULL, &peer);
    char hel[] = "hel", none[] = "", lo[] = "lo";
    struct iovec v[3] = {{hel, 3}, {none, 0}, {lo, 2}};
    ck_assert_int_eq(tcpmsg_conn_send_fields(c, "\x07\x80", 2, v, 3, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_sendv(c, v, 3, LONG_WAIT), 0);
    uint8_t got[22];
    ck_assert(nt_recv_all(peer, got, 22));
    ck_assert_int_eq(memcmp(got, "\x07\x00\x00\x00\x05\x80hello\x00\x00\x00\x00\x05\x00hello", 22),
                     0);
    ck_assert_int_eq(tcpmsg_conn_send_fields(c, "\x07", 1, v, 3, LONG_WAIT), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_sendv(c, v, -1, LONG_WAIT), -EINVAL);

    /* The receiving side reads the fields from the raw frame. */
    ck_assert(nt_send_all(peer, got, 22));
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    ck_assert_uint_eq(f.raw_len, 11);
    ck_assert_int_eq(f.raw[0], 7);
    ck_assert_int_eq(f.raw[5], 0x80);
    ck_assert_int_eq(memcmp(f.data, "hello", 5), 0);

    /* Fields need a length codec; a delimiter codec joins the pieces and still refuses a
     * delimiter split across two of them. */
    struct tcpmsg_codec crlf;
    ck_assert_int_eq(
        tcpmsg_codec_init_delim(&crlf, &(struct tcpmsg_delim_config){.mode = TCPMSG_DELIM_CRLF}),
        0);
    int p2;
    struct tcpmsg_conn *d = conn_pair(&crlf, NULL, &p2);
    ck_assert_int_eq(tcpmsg_conn_send_fields(d, "", 0, v, 3, LONG_WAIT), -EINVAL);
    char ar[] = "a\r", nb[] = "\nb";
    struct iovec split[2] = {{ar, 2}, {nb, 2}};
    ck_assert_int_eq(tcpmsg_conn_sendv(d, split, 2, LONG_WAIT), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_sendv(d, v, 3, LONG_WAIT), 0);
    ck_assert(nt_recv_all(p2, got, 7));
    ck_assert_int_eq(memcmp(got, "hello\r\n", 7), 0);
    tcpmsg_conn_close(d, TCPMSG_NOWAIT);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    close(peer);
    close(p2);
}
END_TEST

START_TEST(large_frame_in_many_pieces)
{
    /* A frame over copy_max in 40 pieces: one writev of more iovecs than the stack holds,
     * from the caller's memory; the peer gets the pieces in order. */
    int peer;
    struct tcpmsg_conn *c = conn_pair(len4(), NULL, &peer);
    enum { PIECES = 40, PIECE = 1000 };
    static uint8_t data[PIECES * PIECE];
    nt_fill(data, sizeof data, 40);
    struct iovec v[PIECES];
    for (int i = 0; i < PIECES; i++)
        v[i] = (struct iovec){data + i * PIECE, PIECE};
    ck_assert_int_eq(tcpmsg_conn_sendv(c, v, PIECES, LONG_WAIT), 0);
    uint8_t head[4], got[sizeof data];
    ck_assert(nt_recv_all(peer, head, 4));
    ck_assert_uint_eq(tcpmsg_wire_get_u32(head), sizeof data);
    ck_assert(nt_recv_all(peer, got, sizeof got));
    ck_assert_int_eq(memcmp(got, data, sizeof data), 0);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    close(peer);
}
END_TEST

START_TEST(bad_arguments)
{
    /* Every call refuses what it cannot use with -EINVAL (or resets its outputs), never
     * crashes; none of these changes the stream. */
    int peer;
    struct tcpmsg_conn *c = conn_pair(len4(), NULL, &peer);
    uint8_t b[8];
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_read_exact(NULL, b, 1, LONG_WAIT), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_read_exact(c, NULL, 1, LONG_WAIT), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_read_until(c, "\n", 1, 0, NULL, LONG_WAIT), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_read_until(NULL, "\n", 1, 0, &f, LONG_WAIT), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_read_until(c, "0123456789abcdefg", 17, 0, &f, LONG_WAIT), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_read_some(NULL, b, 1, LONG_WAIT), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_flush(NULL, LONG_WAIT), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_shutdown(NULL, LONG_WAIT), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_error(NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_send(NULL, "x", 1, LONG_WAIT), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_send(c, NULL, 1, LONG_WAIT), -EINVAL);
    struct iovec bad = {NULL, 3};
    ck_assert_int_eq(tcpmsg_conn_sendv(c, &bad, 1, LONG_WAIT), -EINVAL);
    struct iovec huge[2] = {{b, SIZE_MAX}, {b, 2}};
    ck_assert_int_eq(tcpmsg_conn_sendv(c, huge, 2, LONG_WAIT), -EMSGSIZE); /* sum wraps */
    ck_assert_int_eq(tcpmsg_conn_write_all(NULL, "x", 1, LONG_WAIT), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_output_done(c, 1), -EINVAL); /* it has a socket */
    ck_assert_int_eq(tcpmsg_conn_output_done(NULL, 0), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_feed(c, "x", 1), -EINVAL); /* it has a socket */
    ck_assert_uint_eq(tcpmsg_conn_output(NULL, NULL), 0);
    ck_assert_uint_eq(tcpmsg_conn_buffered(NULL), 0);
    ck_assert_int_eq(tcpmsg_conn_fd(NULL), -1);
    ck_assert_ptr_null(tcpmsg_conn_user(NULL));
    tcpmsg_conn_set_user(NULL, b);
    struct tcpmsg_conn_stats st;
    memset(&st, 0xff, sizeof st);
    tcpmsg_conn_stats(NULL, &st);
    ck_assert_uint_eq(st.msgs_in, 0);
    tcpmsg_conn_stats(c, NULL);
    struct tcpmsg_conn *none = (struct tcpmsg_conn *)1;
    ck_assert_int_eq(tcpmsg_conn_connect(NULL, "127.0.0.1", "1", NULL, NULL, LONG_WAIT), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_accept(NULL, -1, NULL, NULL, NULL, LONG_WAIT), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_accept(&none, -1, NULL, NULL, NULL, TCPMSG_NOWAIT), -EBADF);
    ck_assert_ptr_null(none);
    ck_assert_int_eq(tcpmsg_conn_open(NULL, -1, NULL, NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_open(&none, -2, NULL, NULL), -EINVAL);
    /* The connection still works. */
    ck_assert_int_eq(tcpmsg_conn_send(c, "ok", 2, LONG_WAIT), 0);
    ck_assert(nt_recv_all(peer, b, 6));
    ck_assert_int_eq(memcmp(b, "\0\0\0\2ok", 6), 0);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    close(peer);
}
END_TEST

START_TEST(close_nowait_reads_a_bounded_amount)
{
    /* close(NOWAIT) reads what has arrived, but at most 64 reads: a peer that has pushed
     * more than that gets a reset instead of holding the close. */
    int peer;
    struct tcpmsg_conn_opts small = {.recv_buffer = 4096}; /* 64 reads: 256 KiB */
    struct tcpmsg_conn *c = conn_pair(len4(), &small, &peer);
    int big = 1 << 20;
    ck_assert_int_eq(setsockopt(peer, SOL_SOCKET, SO_SNDBUF, &big, sizeof big), 0);
    ck_assert_int_eq(fcntl(peer, F_SETFL, O_NONBLOCK), 0);
    static uint8_t junk[65536];
    size_t pushed = 0;
    for (;;) { /* until both kernels' buffers are full */
        ssize_t n = send(peer, junk, sizeof junk, MSG_NOSIGNAL);
        if (n < 0) {
            ck_assert_int_eq(errno, EAGAIN);
            break;
        }
        pushed += (size_t)n;
    }
    ck_assert_uint_gt(pushed, 2 * 64 * 4096);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    /* Data was left unread, so the close reset the connection after its FIN: the peer's
     * socket goes from CLOSE_WAIT (the FIN) to CLOSE (the reset). A close that had read
     * everything would leave it in CLOSE_WAIT. */
    ck_assert_msg(eventually_closed(peer), "the peer saw no reset");
    close(peer);
}
END_TEST

/* ---- many messages per system call -------------------------------------------------------- */

START_TEST(ten_thousand_pipelined)
{
    enum { N = 10000 };
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, NULL);
    static uint8_t data[N][40];
    static uint8_t *payloads[N];
    static size_t lens[N];
    for (size_t i = 0; i < N; i++) {
        lens[i] = i % 40;
        nt_fill(data[i], lens[i], (uint32_t)i);
        payloads[i] = data[i];
    }

    /* Receiving: a raw writer sends all 10,000 at once; the conn must serve them in few
     * reads. */
    int peer;
    struct tcpmsg_conn *c = conn_pair(&codec, NULL, &peer);
    size_t total;
    uint8_t *stream = encode_stream(&codec, payloads, lens, N, &total);
    struct writer w = {.fd = peer, .p = stream, .n = total};
    struct nt_thread t;
    nt_start(&t, writer_main, &w);
    for (size_t i = 0; i < N; i++) {
        struct tcpmsg_frame f;
        ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
        ck_assert_uint_eq(f.len, lens[i]);
        ck_assert_int_eq(memcmp(f.data, data[i], lens[i]), 0);
    }
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), TCPMSG_EOF);
    nt_join(&t);
    ck_assert(w.ok);
    struct tcpmsg_conn_stats st;
    tcpmsg_conn_stats(c, &st);
    ck_assert_uint_eq(st.msgs_in, N);
    ck_assert_uint_eq(st.bytes_in, total);
    ck_assert_msg(st.reads <= N / 20, "%llu reads for %d messages", (unsigned long long)st.reads,
                  N);
    tcpmsg_conn_close(c, LONG_WAIT);
    close(peer);

    /* Sending: batched sends coalesce into few writes. */
    struct tcpmsg_conn_opts batch = {.flush = TCPMSG_FLUSH_BATCH};
    c = conn_pair(&codec, &batch, &peer);
    for (size_t i = 0; i < N; i++)
        ck_assert_int_eq(tcpmsg_conn_send(c, data[i], lens[i], LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_flush(c, LONG_WAIT), 0);
    ck_assert_uint_eq(tcpmsg_conn_output(c, NULL), 0);
    tcpmsg_conn_stats(c, &st);
    ck_assert_uint_eq(st.msgs_out, N);
    ck_assert_uint_eq(st.bytes_out, total);
    ck_assert_msg(st.writes <= N / 20, "%llu writes", (unsigned long long)st.writes);
    uint8_t *got = malloc(total);
    ck_assert(nt_recv_all(peer, got, total));
    ck_assert_int_eq(memcmp(got, stream, total), 0);
    free(got);
    free(stream);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    close(peer);
}
END_TEST

START_TEST(batch_flushes_before_waiting)
{
    /* A request/response client in batch mode must not wait for a reply to a request that
     * is still in its own send buffer. */
    struct echo e = {0};
    tcpmsg_codec_init_length(&e.codec, NULL);
    e.opts.flush = TCPMSG_FLUSH_BATCH;
    int port;
    e.lfd = nt_listen("::1", &port);
    struct nt_thread t;
    nt_start(&t, echo_main, &e);
    struct tcpmsg_conn *c;
    struct tcpmsg_conn_opts batch = {.flush = TCPMSG_FLUSH_BATCH};
    ck_assert_int_eq(tcpmsg_conn_connect(&c, "::1", nt_service(port), &e.codec, &batch, LONG_WAIT),
                     0);
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(tcpmsg_conn_send(c, &i, sizeof i, LONG_WAIT), 0);
        ck_assert_uint_gt(tcpmsg_conn_output(c, NULL), 0); /* queued, not written */
        struct tcpmsg_frame f;
        ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
        ck_assert_int_eq(memcmp(f.data, &i, sizeof i), 0);
    }
    ck_assert_int_eq(tcpmsg_conn_close(c, LONG_WAIT), 0);
    nt_join(&t);
    ck_assert_int_eq(e.end, TCPMSG_EOF);
    ck_assert_uint_eq(e.st.msgs_in, 100);
    close(e.lfd);
}
END_TEST

/* ---- awkward peers -------------------------------------------------------------------------- */

START_TEST(peer_writes_one_byte_at_a_time)
{
    struct tcpmsg_codec codecs[2];
    tcpmsg_codec_init_length(&codecs[0], NULL);
    tcpmsg_codec_init_delim(&codecs[1],
                            &(struct tcpmsg_delim_config){.delim = "<END>", .delim_len = 5});
    for (int k = 0; k < 2; k++) {
        enum { N = 20 };
        uint8_t data[N][300], *payloads[N];
        size_t lens[N];
        for (size_t i = 0; i < N; i++) {
            lens[i] = i * 15;
            nt_fill_letters(data[i], lens[i], (uint32_t)i);
            payloads[i] = data[i];
        }
        size_t total;
        uint8_t *stream = encode_stream(&codecs[k], payloads, lens, N, &total);
        int peer;
        struct tcpmsg_conn *c = conn_pair(&codecs[k], NULL, &peer);
        struct writer w = {.fd = peer, .p = stream, .n = total, .chunk = 1};
        struct nt_thread t;
        nt_start(&t, writer_main, &w);
        for (size_t i = 0; i < N; i++) {
            struct tcpmsg_frame f;
            ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
            ck_assert_uint_eq(f.len, lens[i]);
            ck_assert_int_eq(memcmp(f.data, data[i], lens[i]), 0);
        }
        struct tcpmsg_frame f;
        ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), TCPMSG_EOF);
        nt_join(&t);
        tcpmsg_conn_close(c, LONG_WAIT);
        close(peer);
        free(stream);
    }
}
END_TEST

struct reader {
    int fd;
    struct tcpmsg_codec codec;
    size_t nmsgs;
    size_t sizes_sum;
    int end;
};

/* Receives with a tiny receive buffer (and tiny kernel buffers) until the end. */
static void *
slow_reader_main(void *arg)
{
    struct reader *r = arg;
    struct tcpmsg_conn *c;
    struct tcpmsg_conn_opts o = {.recv_buffer = 512};
    if ((r->end = tcpmsg_conn_open(&c, r->fd, &r->codec, &o)) < 0)
        return NULL;
    struct tcpmsg_frame f;
    while ((r->end = tcpmsg_conn_recv(c, &f, LONG_WAIT)) == 0) {
        for (size_t i = 0; i < f.len; i++)
            if (f.data[i] != (uint8_t)(f.len + i)) {
                r->end = -EBADMSG;
                break;
            }
        r->nmsgs++;
        r->sizes_sum += f.len;
    }
    tcpmsg_conn_close(c, LONG_WAIT);
    return NULL;
}

START_TEST(tiny_socket_buffers_force_partial_writes)
{
    int a, b;
    nt_pair_tiny("127.0.0.1", &a, &b);
    int snd, rcv;
    ck_assert_int_eq(tcpmsg_sock_get_buffers(b, &snd, &rcv), 0);
    ck_assert_int_lt(snd, 10000);
    ck_assert_int_lt(rcv, 10000);
    struct reader r = {.fd = b};
    tcpmsg_codec_init_length(&r.codec, NULL);
    struct nt_thread t;
    nt_start(&t, slow_reader_main, &r);

    struct tcpmsg_conn *c;
    ck_assert_int_eq(tcpmsg_conn_open(&c, a, &r.codec, NULL), 0);
    size_t sizes[] = {2 * MiB, 0, 1, 70000, 3, 16385, 100};
    size_t sum = 0;
    uint8_t *buf = malloc(2 * MiB);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (size_t j = 0; j < sizes[i]; j++)
            buf[j] = (uint8_t)(sizes[i] + j);
        ck_assert_int_eq(tcpmsg_conn_send(c, buf, sizes[i], LONG_WAIT), 0);
        sum += sizes[i];
    }
    struct tcpmsg_conn_stats st;
    tcpmsg_conn_stats(c, &st);
    ck_assert_msg(st.writes > 20, "only %llu writes: no partial write happened",
                  (unsigned long long)st.writes);
    ck_assert_int_eq(tcpmsg_conn_close(c, LONG_WAIT), 0);
    nt_join(&t);
    ck_assert_int_eq(r.end, TCPMSG_EOF);
    ck_assert_uint_eq(r.nmsgs, sizeof sizes / sizeof sizes[0]);
    ck_assert_uint_eq(r.sizes_sum, sum);
    free(buf);
}
END_TEST

/* ---- how a connection ends ---------------------------------------------------------------- */

START_TEST(clean_eof_and_eof_inside_a_frame)
{
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, NULL);
    int peer;
    struct tcpmsg_conn *c = conn_pair(&codec, NULL, &peer);
    ck_assert(nt_send_all(peer, "\0\0\0\2hi", 6));
    shutdown(peer, SHUT_WR);
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), TCPMSG_EOF);
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), TCPMSG_EOF); /* sticky */
    ck_assert_int_eq(tcpmsg_conn_error(c), TCPMSG_EOF);
    /* The peer only half-closed: this side may still send. */
    ck_assert_int_eq(tcpmsg_conn_send(c, "bye", 3, LONG_WAIT), 0);
    uint8_t got[7];
    ck_assert(nt_recv_all(peer, got, 7));
    tcpmsg_conn_close(c, LONG_WAIT);
    close(peer);

    /* Ends mid-header, mid-payload: -EPROTO, sticky. */
    const char *cuts[] = {"\0\0", "\0\0\0\x64"
                                  "0123456789"};
    size_t cut_len[] = {2, 14};
    for (int i = 0; i < 2; i++) {
        c = conn_pair(&codec, NULL, &peer);
        ck_assert(nt_send_all(peer, cuts[i], cut_len[i]));
        close(peer);
        ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), -EPROTO);
        ck_assert_int_eq(tcpmsg_conn_recv(c, &f, TCPMSG_NOWAIT), -EPROTO);
        ck_assert_ptr_null(f.data);
        tcpmsg_conn_close(c, LONG_WAIT);
    }
}
END_TEST

START_TEST(peer_reset)
{
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, NULL);
    int peer;
    struct tcpmsg_conn *c = conn_pair(&codec, NULL, &peer);
    ck_assert(nt_send_all(peer, "\0\0\0\2hi\0\0", 8));
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_sock_reset(peer), 0);
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), -ECONNRESET);
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), -ECONNRESET);
    tcpmsg_conn_close(c, LONG_WAIT);
}
END_TEST

START_TEST(write_to_closed_peer_is_epipe_not_sigpipe)
{
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill this test */
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, NULL);
    int peer;
    struct tcpmsg_conn *c = conn_pair(&codec, NULL, &peer);
    close(peer);
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), TCPMSG_EOF);
    /* The first send is answered by a reset; a later one fails. */
    int r = 0;
    for (int i = 0; i < 100 && r == 0; i++)
        r = tcpmsg_conn_send(c, "data", 4, LONG_WAIT);
    ck_assert_int_eq(r, -EPIPE);
    ck_assert_int_eq(tcpmsg_conn_send(c, "data", 4, LONG_WAIT), -EPIPE); /* sticky */
    ck_assert_int_eq(tcpmsg_conn_flush(c, LONG_WAIT), -EPIPE);
    ck_assert_int_eq(tcpmsg_conn_close(c, LONG_WAIT), -EPIPE);
}
END_TEST

START_TEST(oversized_header_refused_at_once)
{
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, &(struct tcpmsg_length_config){.max_payload = 1000});
    int peer;
    struct tcpmsg_conn *c = conn_pair(&codec, NULL, &peer);
    /* The peer announces 4 GiB - 1 and keeps the connection open: the answer cannot wait
     * for the payload. */
    ck_assert(nt_send_all(peer,
                          "\xff\xff\xff\xff"
                          "abc",
                          7));
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), -EMSGSIZE);
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), -EMSGSIZE);
    ck_assert_uint_le(tcpmsg_conn_buffered(c), 7);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    close(peer);

    /* A line codec: no delimiter within the limit. */
    tcpmsg_codec_init_delim(&codec, &(struct tcpmsg_delim_config){.max_len = 100});
    c = conn_pair(&codec, NULL, &peer);
    uint8_t junk[300];
    nt_fill_letters(junk, sizeof junk, 1);
    ck_assert(nt_send_all(peer, junk, sizeof junk));
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), -EMSGSIZE);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    close(peer);
}
END_TEST

/* ---- deadlines -------------------------------------------------------------------------- */

START_TEST(recv_timeout_keeps_the_stream)
{
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, NULL);
    int peer;
    struct tcpmsg_conn *c = conn_pair(&codec, NULL, &peer);
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, TCPMSG_NOWAIT), -ETIMEDOUT);
    ck_assert(nt_send_all(peer, "\0\0\0\x05he", 6));
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, tcpmsg_deadline_in(30)), -ETIMEDOUT);
    ck_assert_int_eq(tcpmsg_conn_error(c), 0); /* not sticky */
    ck_assert(nt_send_all(peer, "llo", 3));
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    ck_assert_uint_eq(f.len, 5);
    ck_assert_int_eq(memcmp(f.data, "hello", 5), 0);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    close(peer);
}
END_TEST

START_TEST(send_timeout_keeps_the_message_whole)
{
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, NULL);
    int a, peer;
    nt_pair_tiny("127.0.0.1", &a, &peer);
    struct tcpmsg_conn *c;
    ck_assert_int_eq(tcpmsg_conn_open(&c, a, &codec, NULL), 0);
    /* Nobody reads: a 4 MiB message cannot go out before the deadline. */
    size_t n = 4 * MiB;
    uint8_t *big = malloc(n);
    nt_fill(big, n, 9);
    ck_assert_int_eq(tcpmsg_conn_send(c, big, n, tcpmsg_deadline_in(20)), -ETIMEDOUT);
    size_t queued = tcpmsg_conn_output(c, NULL);
    ck_assert_uint_gt(queued, 0);
    ck_assert_uint_le(queued, n + 4);
    ck_assert_int_eq(tcpmsg_conn_error(c), 0);
    /* Behind it, a small message; then the reader starts and everything arrives intact. */
    ck_assert_int_eq(tcpmsg_conn_send(c, "next", 4, TCPMSG_NOWAIT), -ETIMEDOUT);
    struct tcpmsg_conn *rc;
    ck_assert_int_eq(tcpmsg_conn_open(&rc, peer, &codec, NULL), 0);
    ck_assert_int_eq(tcpmsg_conn_flush(c, TCPMSG_NOWAIT), -ETIMEDOUT);
    /* Flush from this thread while reading from the other end: alternate NOWAIT steps. */
    struct tcpmsg_frame f;
    int got = 0;
    while (got < 2) {
        int fr = tcpmsg_conn_flush(c, TCPMSG_NOWAIT);
        ck_assert(fr == 0 || fr == -ETIMEDOUT);
        int rr = tcpmsg_conn_recv(rc, &f, fr == 0 ? LONG_WAIT : TCPMSG_NOWAIT);
        if (rr == -ETIMEDOUT) { /* until the writer has room or the reader has bytes */
            struct pollfd p[2] = {{.fd = a, .events = POLLOUT}, {.fd = peer, .events = POLLIN}};
            ck_assert_int_gt(poll(p, 2, 60000), 0);
            continue;
        }
        ck_assert_int_eq(rr, 0);
        if (got == 0) {
            ck_assert_uint_eq(f.len, n);
            ck_assert_int_eq(memcmp(f.data, big, n), 0);
        } else {
            ck_assert_uint_eq(f.len, 4);
            ck_assert_int_eq(memcmp(f.data, "next", 4), 0);
        }
        got++;
    }
    ck_assert_uint_eq(tcpmsg_conn_output(c, NULL), 0);
    free(big);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    tcpmsg_conn_close(rc, TCPMSG_NOWAIT);
}
END_TEST

START_TEST(backpressure_limit)
{
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, NULL);
    struct tcpmsg_conn *c;
    struct tcpmsg_conn_opts o = {.max_output = 100};
    ck_assert_int_eq(tcpmsg_conn_open(&c, -1, &codec, &o), 0);
    uint8_t m[60] = {0};
    ck_assert_int_eq(tcpmsg_conn_send(c, m, 60, TCPMSG_NOWAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_send(c, m, 60, TCPMSG_NOWAIT), 0); /* 64 < 100: accepted */
    ck_assert_int_eq(tcpmsg_conn_send(c, m, 60, TCPMSG_NOWAIT), -ENOBUFS);
    ck_assert_uint_eq(tcpmsg_conn_output(c, NULL), 128);
    ck_assert_int_eq(tcpmsg_conn_output_done(c, 128), 0);
    ck_assert_int_eq(tcpmsg_conn_send(c, m, 60, TCPMSG_NOWAIT), 0);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
}
END_TEST

/* ---- raw stream helpers ------------------------------------------------------------------ */

START_TEST(raw_helpers)
{
    int peer;
    struct tcpmsg_conn *c = conn_pair(NULL, NULL, &peer);
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, TCPMSG_NOWAIT), -EINVAL); /* no codec */
    ck_assert_int_eq(tcpmsg_conn_send(c, "x", 1, TCPMSG_NOWAIT), -EINVAL);

    /* The course's text protocol: a line, then a counted body. */
    ck_assert(nt_send_all(peer, "GET 5\r\nhello", 12));
    ck_assert_int_eq(tcpmsg_conn_read_until(c, "\r\n", 2, 100, &f, LONG_WAIT), 7);
    ck_assert_uint_eq(f.len, 5);
    ck_assert_int_eq(memcmp(f.data, "GET 5", 5), 0);
    char body[16];
    ck_assert_int_eq(tcpmsg_conn_read_exact(c, body, 5, LONG_WAIT), 5);
    ck_assert_int_eq(memcmp(body, "hello", 5), 0);

    /* Timeouts consume nothing, the search resumes. */
    ck_assert(nt_send_all(peer, "abc\r", 4));
    ck_assert_int_eq(tcpmsg_conn_read_until(c, "\r\n", 2, 100, &f, tcpmsg_deadline_in(10)),
                     -ETIMEDOUT);
    ck_assert_int_eq(tcpmsg_conn_read_exact(c, body, 6, tcpmsg_deadline_in(10)), -ETIMEDOUT);
    ck_assert_uint_eq(tcpmsg_conn_buffered(c), 4);
    ck_assert(nt_send_all(peer, "\nxyz", 4));
    ck_assert_int_eq(tcpmsg_conn_read_until(c, "\r\n", 2, 100, &f, LONG_WAIT), 5);
    ck_assert_int_eq(memcmp(f.raw, "abc\r\n", 5), 0);

    /* Over the limit: -EMSGSIZE, nothing consumed. */
    ck_assert_int_eq(tcpmsg_conn_read_until(c, "\r\n", 2, 1, &f, TCPMSG_NOWAIT), -EMSGSIZE);
    ck_assert_int_eq(tcpmsg_conn_read_until(c, "", 0, 2, &f, TCPMSG_NOWAIT), -EINVAL);

    /* Written raw, no framing. */
    ck_assert_int_eq(tcpmsg_conn_write_all(c, "raw!", 4, LONG_WAIT), 0);
    ck_assert(nt_recv_all(peer, body, 4));
    ck_assert_int_eq(memcmp(body, "raw!", 4), 0);

    /* Nothing buffered: read_some waits for what arrives next, under its deadline. */
    uint8_t some[8];
    ck_assert_int_eq(tcpmsg_conn_read_exact(c, some, 3, LONG_WAIT), 3); /* "xyz" */
    ck_assert_uint_eq(tcpmsg_conn_buffered(c), 0);
    ck_assert_int_eq(tcpmsg_conn_read_some(c, some, sizeof some, TCPMSG_NOWAIT), -ETIMEDOUT);
    ck_assert(nt_send_all(peer, "later", 5));
    ck_assert_int_eq(tcpmsg_conn_read_some(c, some, sizeof some, LONG_WAIT), 5);
    ck_assert_int_eq(memcmp(some, "later", 5), 0);
    ck_assert_int_eq(tcpmsg_conn_read_some(c, NULL, 1, LONG_WAIT), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_read_some(c, some, 0, LONG_WAIT), -EINVAL);
    ck_assert(nt_send_all(peer, "xyz", 3)); /* as before, for the end below */

    /* The end: what is left stays readable, then a clean end. */
    close(peer);
    ck_assert_int_eq(tcpmsg_conn_read_exact(c, body, 10, LONG_WAIT), -EPROTO);
    ck_assert_int_eq(tcpmsg_conn_read_until(c, "\n", 1, 0, &f, LONG_WAIT), -EPROTO);
    ck_assert_int_eq(tcpmsg_conn_read_some(c, body, 2, LONG_WAIT), 2);
    ck_assert_int_eq(memcmp(body, "xy", 2), 0);
    ck_assert_int_eq(tcpmsg_conn_read_some(c, body, sizeof body, LONG_WAIT), 1);
    ck_assert_int_eq(tcpmsg_conn_read_some(c, body, sizeof body, LONG_WAIT), TCPMSG_EOF);
    ck_assert_int_eq(tcpmsg_conn_read_exact(c, body, 1, LONG_WAIT), TCPMSG_EOF);
    ck_assert_int_eq(tcpmsg_conn_read_exact(c, body, 0, LONG_WAIT), 0);
    struct tcpmsg_conn_stats st;
    tcpmsg_conn_stats(c, &st);
    ck_assert_uint_eq(st.msgs_out, 0);
    ck_assert_uint_eq(st.bytes_out, 4);
    ck_assert_uint_eq(st.bytes_in, 28);
    tcpmsg_conn_close(c, LONG_WAIT);
}
END_TEST

/* ---- event loops -------------------------------------------------------------------------- */

START_TEST(sans_io_feed_and_output)
{
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, &(struct tcpmsg_length_config){.width = 2});
    enum { N = 500 };
    static uint8_t data[N][700];
    uint8_t *payloads[N];
    size_t lens[N];
    tu_rand_seed(42);
    for (size_t i = 0; i < N; i++) {
        lens[i] = tu_range(0, 700);
        nt_fill(data[i], lens[i], (uint32_t)i);
        payloads[i] = data[i];
    }
    size_t total;
    uint8_t *stream = encode_stream(&codec, payloads, lens, N, &total);
    struct tcpmsg_conn *c;
    ck_assert_int_eq(tcpmsg_conn_open(&c, -1, &codec, NULL), 0);
    ck_assert_int_eq(tcpmsg_conn_fd(c), -1);
    size_t got = 0;
    struct tcpmsg_frame f;
    for (size_t at = 0; at < total;) {
        size_t k = tu_range(1, 300);
        if (k > total - at)
            k = total - at;
        ck_assert_int_eq(tcpmsg_conn_feed(c, stream + at, k), 0);
        at += k;
        int r;
        while ((r = tcpmsg_conn_recv(c, &f, TCPMSG_NOWAIT)) == 0) {
            ck_assert_uint_eq(f.len, lens[got]);
            ck_assert_int_eq(memcmp(f.data, data[got], f.len), 0);
            got++;
        }
        ck_assert_int_eq(r, -ETIMEDOUT);
    }
    ck_assert_uint_eq(got, N);
    ck_assert_int_eq(tcpmsg_conn_feed(c, NULL, 0), 0);
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, TCPMSG_NOWAIT), TCPMSG_EOF);
    ck_assert_int_eq(tcpmsg_conn_feed(c, "x", 1), -EINVAL); /* after the end */

    /* Output: what the loop must write. */
    ck_assert_int_eq(tcpmsg_conn_send(c, "ab", 2, TCPMSG_FOREVER), 0);
    ck_assert_int_eq(tcpmsg_conn_send(c, "cde", 3, TCPMSG_FOREVER), 0);
    const void *out;
    ck_assert_uint_eq(tcpmsg_conn_output(c, &out), 9);
    ck_assert_int_eq(memcmp(out, "\0\2ab\0\3cde", 9), 0);
    ck_assert_int_eq(tcpmsg_conn_flush(c, TCPMSG_NOWAIT), -ETIMEDOUT);
    ck_assert_int_eq(tcpmsg_conn_output_done(c, 10), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_output_done(c, 4), 0);
    ck_assert_uint_eq(tcpmsg_conn_output(c, &out), 5);
    ck_assert_int_eq(memcmp(out, "\0\3cde", 5), 0);
    ck_assert_int_eq(tcpmsg_conn_output_done(c, 5), 0);
    ck_assert_uint_eq(tcpmsg_conn_output(c, &out), 0);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(tcpmsg_conn_flush(c, TCPMSG_NOWAIT), 0);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);

    /* Feeding more than twice the largest frame without taking frames out: refused. */
    ck_assert_int_eq(
        tcpmsg_conn_open(&c, -1, &codec, &(struct tcpmsg_conn_opts){.recv_buffer = 1000}), 0);
    ck_assert_int_eq(tcpmsg_conn_feed(c, stream, 65537 * 2 + 1), -ENOBUFS);
    ck_assert_int_eq(tcpmsg_conn_feed(c, stream, 1000), 0);
    ck_assert_uint_eq(tcpmsg_conn_buffered(c), 1000);
    int fds[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
    struct tcpmsg_conn *s;
    ck_assert_int_eq(tcpmsg_conn_open(&s, fds[0], &codec, NULL), 0);
    ck_assert_int_eq(tcpmsg_conn_feed(s, "x", 1), -EINVAL); /* has a socket */
    ck_assert_int_eq(tcpmsg_conn_output_done(s, 0), -EINVAL);
    tcpmsg_conn_close(s, TCPMSG_NOWAIT);
    close(fds[1]);
    free(stream);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
}
END_TEST

START_TEST(manual_queues_small_and_writes_large_at_once)
{
    /* MANUAL: small frames only queue; a large one with nothing queued before it goes out
     * at once from the caller's memory (no copy); behind queued bytes, it queues too. */
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, NULL);
    int peer;
    struct tcpmsg_conn *c =
        conn_pair(&codec, &(struct tcpmsg_conn_opts){.flush = TCPMSG_FLUSH_MANUAL}, &peer);
    static uint8_t big[100000];
    nt_fill_letters(big, sizeof big, 7);
    ck_assert_int_eq(tcpmsg_conn_send(c, "small", 5, TCPMSG_FOREVER), 0);
    ck_assert_uint_eq(tcpmsg_conn_output(c, NULL), 9); /* queued, not written */
    ck_assert_int_eq(tcpmsg_conn_send(c, big, sizeof big, TCPMSG_FOREVER), 0);
    ck_assert_uint_eq(tcpmsg_conn_output(c, NULL), 9 + 4 + sizeof big); /* behind it: queued */
    ck_assert_int_eq(tcpmsg_conn_flush(c, LONG_WAIT), 0);
    struct tcpmsg_conn_stats st;
    tcpmsg_conn_stats(c, &st);
    uint64_t writes = st.writes;
    ck_assert_int_eq(tcpmsg_conn_send(c, big, sizeof big, TCPMSG_NOWAIT), 0);
    tcpmsg_conn_stats(c, &st);
    ck_assert_uint_gt(st.writes, writes);                           /* written at once */
    ck_assert_uint_lt(tcpmsg_conn_output(c, NULL), 4 + sizeof big); /* at most the rest queued */
    ck_assert_int_eq(tcpmsg_conn_flush(c, LONG_WAIT), 0);
    /* The peer reads the three frames whole and in order. */
    struct tcpmsg_conn *pc;
    ck_assert_int_eq(tcpmsg_conn_open(&pc, peer, &codec, NULL), 0);
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(pc, &f, LONG_WAIT), 0);
    ck_assert_uint_eq(f.len, 5);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(tcpmsg_conn_recv(pc, &f, LONG_WAIT), 0);
        ck_assert_uint_eq(f.len, sizeof big);
        ck_assert_int_eq(memcmp(f.data, big, sizeof big), 0);
    }
    /* The reader ends first: c's orderly close then sees its end at once (the other order
     * waited out the whole deadline for an end that came only after it). */
    tcpmsg_conn_close(pc, TCPMSG_NOWAIT);
    ck_assert_int_eq(tcpmsg_conn_close(c, LONG_WAIT), 0);
}
END_TEST

START_TEST(driven_by_poll)
{
    /* A non-blocking socket, driven the way an epoll loop drives it. */
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_delim(&codec, NULL);
    enum { N = 2000 };
    static uint8_t data[N][64];
    uint8_t *payloads[N];
    size_t lens[N];
    for (size_t i = 0; i < N; i++) {
        lens[i] = i % 64;
        nt_fill_letters(data[i], lens[i], (uint32_t)i);
        payloads[i] = data[i];
    }
    size_t total;
    uint8_t *stream = encode_stream(&codec, payloads, lens, N, &total);
    int peer;
    struct tcpmsg_conn *c =
        conn_pair(&codec, &(struct tcpmsg_conn_opts){.recv_buffer = 4096}, &peer);
    ck_assert_int_eq(tcpmsg_sock_set_nonblocking(tcpmsg_conn_fd(c), true), 0);
    struct writer w = {.fd = peer, .p = stream, .n = total, .chunk = 1000};
    struct nt_thread t;
    nt_start(&t, writer_main, &w);
    size_t got = 0;
    int r = 0;
    while (r != TCPMSG_EOF) {
        struct pollfd p = {.fd = tcpmsg_conn_fd(c), .events = POLLIN};
        ck_assert_int_eq(poll(&p, 1, 60000), 1);
        struct tcpmsg_frame f;
        while ((r = tcpmsg_conn_recv(c, &f, TCPMSG_NOWAIT)) == 0) {
            ck_assert_uint_lt(got, N);
            ck_assert_uint_eq(f.len, lens[got]);
            ck_assert_int_eq(memcmp(f.data, data[got], f.len), 0);
            got++;
        }
        ck_assert(r == -ETIMEDOUT || r == TCPMSG_EOF);
    }
    ck_assert_uint_eq(got, N);
    nt_join(&t);
    free(stream);
    tcpmsg_conn_close(c, LONG_WAIT);
    close(peer);
}
END_TEST

/* ---- life cycle ----------------------------------------------------------------------------- */

START_TEST(open_ownership_and_detach)
{
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, NULL);
    struct tcpmsg_conn *c = (struct tcpmsg_conn *)&codec;
    /* Failure leaves the fd with the caller. */
    int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(tcpmsg_conn_open(&c, udp, &codec, NULL), -ENOTSOCK);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(fcntl(udp, F_GETFD) >= 0, 1);
    close(udp);
    struct tcpmsg_codec bad = {0};
    ck_assert_int_eq(tcpmsg_conn_open(&c, -1, &bad, NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_open(&c, -1, &codec, &(struct tcpmsg_conn_opts){.flush = 7}),
                     -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_open(NULL, -1, &codec, NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_open(&c, -2, &codec, NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_close(NULL, 0), 0);
    tcpmsg_conn_reset(NULL);

    /* Detach gives back the socket and the bytes after the last message delivered. */
    int peer;
    c = conn_pair(&codec, NULL, &peer);
    int fd = tcpmsg_conn_fd(c);
    ck_assert(nt_send_all(peer, "\0\0\0\1A\0\0\0\1Btail", 14));
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    /* Loopback delivers a send() whole before it returns: one read took all 14 bytes. */
    ck_assert_uint_eq(tcpmsg_conn_buffered(c), 9);
    void *rest;
    size_t rest_len;
    ck_assert_int_eq(tcpmsg_conn_detach(c, NULL, &rest_len), -EINVAL);
    ck_assert_int_eq(tcpmsg_conn_detach(c, &rest, &rest_len), fd);
    ck_assert_uint_eq(rest_len, 9);
    ck_assert_int_eq(memcmp(rest, "\0\0\0\1Btail", 9), 0);
    free(rest);
    ck_assert_int_eq(fcntl(fd, F_GETFD) >= 0, 1); /* still open, now ours */
    close(fd);
    close(peer);

    /* Not while output is queued. */
    ck_assert_int_eq(tcpmsg_conn_open(&c, -1, &codec, NULL), 0);
    ck_assert_int_eq(tcpmsg_conn_send(c, "x", 1, TCPMSG_NOWAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_detach(c, &rest, &rest_len), -EBUSY);
    ck_assert_int_eq(tcpmsg_conn_output_done(c, 5), 0);
    ck_assert_int_eq(tcpmsg_conn_detach(c, &rest, &rest_len), -1);
    ck_assert_ptr_null(rest);
}
END_TEST

struct closer {
    int fd;
    size_t msgs;
    int end;
};

static void *
count_then_reply_main(void *arg)
{
    struct closer *k = arg;
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, NULL);
    struct tcpmsg_conn *c;
    tcpmsg_conn_open(&c, k->fd, &codec, NULL);
    struct tcpmsg_frame f;
    while ((k->end = tcpmsg_conn_recv(c, &f, LONG_WAIT)) == 0)
        k->msgs++;
    /* The client half-closed: the reply still reaches it. */
    if (k->end == TCPMSG_EOF)
        tcpmsg_conn_send(c, "total", 5, LONG_WAIT);
    tcpmsg_conn_close(c, LONG_WAIT);
    return NULL;
}

START_TEST(orderly_shutdown_and_close)
{
    int a, b;
    nt_pair("127.0.0.1", &a, &b);
    struct closer k = {.fd = b};
    struct nt_thread t;
    nt_start(&t, count_then_reply_main, &k);
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, NULL);
    struct tcpmsg_conn *c;
    ck_assert_int_eq(
        tcpmsg_conn_open(&c, a, &codec, &(struct tcpmsg_conn_opts){.flush = TCPMSG_FLUSH_BATCH}),
        0);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(tcpmsg_conn_send(c, &i, sizeof i, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_shutdown(c, LONG_WAIT), 0); /* flushes, then half-closes */
    ck_assert_int_eq(tcpmsg_conn_send(c, "late", 4, LONG_WAIT), -EPIPE);
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    ck_assert_int_eq(memcmp(f.data, "total", 5), 0);
    ck_assert_int_eq(tcpmsg_conn_close(c, LONG_WAIT), 0);
    nt_join(&t);
    ck_assert_int_eq(k.end, TCPMSG_EOF);
    ck_assert_uint_eq(k.msgs, 1000);

    /* close() alone does the same: everything queued reaches the peer before the end. */
    nt_pair("127.0.0.1", &a, &b);
    k = (struct closer){.fd = b};
    nt_start(&t, count_then_reply_main, &k);
    ck_assert_int_eq(
        tcpmsg_conn_open(&c, a, &codec, &(struct tcpmsg_conn_opts){.flush = TCPMSG_FLUSH_BATCH}),
        0);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(tcpmsg_conn_send(c, &i, sizeof i, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_close(c, LONG_WAIT), 0);
    nt_join(&t);
    ck_assert_uint_eq(k.msgs, 1000);

    /* A peer that never ends: close gives up at the deadline, and still frees everything. */
    int peer;
    c = conn_pair(&codec, NULL, &peer);
    ck_assert_int_eq(tcpmsg_conn_close(c, tcpmsg_deadline_in(20)), -ETIMEDOUT);
    char buf[4];
    ck_assert_int_eq(recv(peer, buf, sizeof buf, 0), 0); /* it saw our end */
    close(peer);

    /* Reset: the peer sees a reset, not an end. */
    c = conn_pair(&codec, NULL, &peer);
    tcpmsg_conn_reset(c);
    errno = 0;
    ck_assert_int_lt(recv(peer, buf, sizeof buf, 0), 0);
    ck_assert_int_eq(errno, ECONNRESET);
    close(peer);
}
END_TEST

START_TEST(receive_buffer_grows_and_shrinks)
{
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, NULL);
    int peer;
    struct tcpmsg_conn *c =
        conn_pair(&codec, &(struct tcpmsg_conn_opts){.recv_buffer = 1024}, &peer);
    /* A 3 MiB message then a small one: the big one is delivered whole. */
    size_t n = 3 * MiB;
    uint8_t *big = malloc(n + 4);
    memcpy(big, "\0\x30\0\0", 4);
    nt_fill(big + 4, n, 3);
    struct writer w = {.fd = peer, .p = big, .n = n + 4, .keep_open = true};
    struct nt_thread t;
    nt_start(&t, writer_main, &w);
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    ck_assert_uint_eq(f.len, n);
    ck_assert_int_eq(memcmp(f.data, big + 4, n), 0);
    nt_join(&t);
    ck_assert(nt_send_all(peer, "\0\0\0\1z", 5));
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    ck_assert_int_eq(f.data[0], 'z');
    free(big);
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    close(peer);
}
END_TEST

/* A raw echo peer: reads a length-prefixed frame whole, writes it back in one send, until the
 * stream ends; the pattern under which a receiver that waits for the rest of a large frame
 * must still be woken by the last bytes. */
struct raw_echo {
    int fd;
    size_t frames;
    int reader_fd; /* the connection's socket */
    pid_t reader;  /* the thread that reads it */
};

/* Whether the reader is blocked in a receive or a poll with less queued on its socket than
 * its low-water mark: it waits for more. */
static bool
reader_waits(const struct raw_echo *e)
{
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)e->reader);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    long nr = -1;
    bool got = fgets(buf, sizeof buf, f) && sscanf(buf, "%ld", &nr) == 1;
    fclose(f);
    int queued = -1, mark = 0;
    socklen_t len = sizeof mark;
    return got && (nr == SYS_recvfrom || nr == SYS_poll || nr == SYS_ppoll) &&
           ioctl(e->reader_fd, FIONREAD, &queued) == 0 &&
           getsockopt(e->reader_fd, SOL_SOCKET, SO_RCVLOWAT, &mark, &len) == 0 && queued < mark;
}

static void *
raw_echo_main(void *arg)
{
    struct raw_echo *e = arg;
    uint8_t *buf = NULL;
    uint8_t head[4];
    while (nt_recv_all(e->fd, head, 4)) {
        size_t n = tcpmsg_wire_get_u32(head);
        uint8_t *nb = realloc(buf, 4 + n);
        if (!nb)
            break;
        buf = nb;
        memcpy(buf, head, 4);
        if (!nt_recv_all(e->fd, buf + 4, n))
            break;
        /* Large replies in two sends: the last quarter once the reader has taken the rest
         * and sleeps (bounded: on a timeout the test goes on, less sharp). A reader whose
         * mark asks for more than that quarter never wakes. */
        size_t first = n >= 256 * 1024 ? 4 + n - n / 4 : 4 + n;
        if (!nt_send_all(e->fd, buf, first))
            break;
        if (first < 4 + n) {
            int64_t dl = tcpmsg_deadline_in(5000);
            while (!reader_waits(e) && tcpmsg_deadline_left(dl) > 0)
                poll(NULL, 0, 1); /* polling a state, not timing anything */
            if (!nt_send_all(e->fd, buf + first, 4 + n - first))
                break;
        }
        e->frames++;
    }
    free(buf);
    shutdown(e->fd, SHUT_WR);
    return NULL;
}

static int
rcvlowat(int fd)
{
    int v = -1;
    socklen_t len = sizeof v;
    ck_assert_int_eq(getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, &len), 0);
    return v;
}

/* Large frames round trip under every way of waiting (blocking, a deadline, NOWAIT driven by
 * poll): the connection asks the kernel not to wake it before the rest of a large frame is
 * there (SO_RCVLOWAT), never for more than the frame still lacks, and gives the mark back once
 * the frame is whole. With a mark above what one recv takes, a blocking recv slept forever. */
START_TEST(large_frames_round_trip_under_a_low_water_mark)
{
    int peer;
    struct tcpmsg_conn *c = conn_pair(len4(), NULL, &peer);
    struct raw_echo e = {.fd = peer, .reader_fd = tcpmsg_conn_fd(c), .reader = gettid()};
    struct nt_thread t;
    nt_start(&t, raw_echo_main, &e);
    static const size_t sizes[] = {65537, 1048576, 3 * 1048576 + 7, 200000, 9 * 1048576 + 1};
    size_t big = 9 * 1048576 + 1;
    uint8_t *data = malloc(big);
    ck_assert_ptr_nonnull(data);
    size_t sent = 0;
    for (int mode = 0; mode < 3; mode++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            nt_fill(data, n, (int)(i + 10 * mode));
            ck_assert_int_eq(tcpmsg_conn_send(c, data, n, LONG_WAIT), 0);
            sent++;
            struct tcpmsg_frame f;
            int r;
            if (mode == 0) {
                r = tcpmsg_conn_recv(c, &f, TCPMSG_FOREVER);
            } else if (mode == 1) {
                r = tcpmsg_conn_recv(c, &f, LONG_WAIT);
            } else {
                int64_t dl = LONG_WAIT;
                while ((r = tcpmsg_conn_recv(c, &f, TCPMSG_NOWAIT)) == -ETIMEDOUT) {
                    /* waiting for the rest of a large frame: a mark, never above what is
                     * missing */
                    int mark = rcvlowat(tcpmsg_conn_fd(c));
                    ck_assert_int_ge(mark, 1);
                    ck_assert_uint_le((size_t)mark, n + 4);
                    struct pollfd p = {.fd = tcpmsg_conn_fd(c), .events = POLLIN};
                    int left = (int)tcpmsg_deadline_left(dl);
                    ck_assert_int_gt(left, 0);
                    ck_assert_int_eq(poll(&p, 1, left), 1);
                }
            }
            ck_assert_int_eq(r, 0);
            ck_assert_uint_eq(f.len, n);
            ck_assert_int_eq(memcmp(f.data, data, n), 0);
        }
    }
    /* Half of a large frame: the mark asks for what is missing of it (within the buffer). */
    uint8_t head[4] = {0, 0x40, 0, 0}; /* 4 MiB */
    ck_assert(nt_send_all(peer, head, 4));
    ck_assert(nt_send_all(peer, data, 1048576));
    struct tcpmsg_frame f;
    int r;
    int64_t dl = LONG_WAIT;
    int mark = 1;
    while ((r = tcpmsg_conn_recv(c, &f, TCPMSG_NOWAIT)) == -ETIMEDOUT &&
           (mark = rcvlowat(tcpmsg_conn_fd(c))) == 1 && tcpmsg_deadline_left(dl) > 0) {
        struct pollfd p = {.fd = tcpmsg_conn_fd(c), .events = POLLIN};
        (void)poll(&p, 1, 10); /* the mark is set once the whole first megabyte is read */
    }
    ck_assert_int_eq(r, -ETIMEDOUT);
    ck_assert_int_ge(mark, 64 * 1024);
    ck_assert_int_le(mark, 3 * 1048576 + 4); /* never above what is missing */
    ck_assert(nt_send_all(peer, data, 3 * 1048576));
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    ck_assert_uint_eq(f.len, 4 * 1048576);
    /* A small frame next: the mark is back to one byte before the connection waits. */
    ck_assert(nt_send_all(peer, "\0\0\0\2ab", 4));
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, TCPMSG_NOWAIT), -ETIMEDOUT);
    ck_assert_int_eq(rcvlowat(tcpmsg_conn_fd(c)), 1);
    free(data);
    shutdown(peer, SHUT_RDWR);
    nt_join(&t);
    ck_assert_uint_eq(e.frames, sent); /* every reply came from the peer's echo, none twice */
    tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    close(peer);
}
END_TEST

static Suite *
make_suite(void)
{
    Suite *s = suite_create("conn");
    TCase *t = tcase_create("conn");
    tcase_add_checked_fixture(t, nt_fd_setup, nt_fd_teardown);
    tcase_set_timeout(t, 120);
    tcase_add_loop_test(t, roundtrip_every_codec, 0, (int)(sizeof rt_cases / sizeof rt_cases[0]));
    tcase_add_test(t, sendv_and_header_fields);
    tcase_add_test(t, large_frame_in_many_pieces);
    tcase_add_test(t, bad_arguments);
    tcase_add_test(t, close_nowait_reads_a_bounded_amount);
    tcase_add_test(t, ten_thousand_pipelined);
    tcase_add_test(t, batch_flushes_before_waiting);
    tcase_add_test(t, peer_writes_one_byte_at_a_time);
    tcase_add_test(t, tiny_socket_buffers_force_partial_writes);
    tcase_add_test(t, clean_eof_and_eof_inside_a_frame);
    tcase_add_test(t, peer_reset);
    tcase_add_test(t, write_to_closed_peer_is_epipe_not_sigpipe);
    tcase_add_test(t, oversized_header_refused_at_once);
    tcase_add_test(t, recv_timeout_keeps_the_stream);
    tcase_add_test(t, send_timeout_keeps_the_message_whole);
    tcase_add_test(t, backpressure_limit);
    tcase_add_test(t, raw_helpers);
    tcase_add_test(t, sans_io_feed_and_output);
    tcase_add_test(t, driven_by_poll);
    tcase_add_test(t, manual_queues_small_and_writes_large_at_once);
    tcase_add_test(t, open_ownership_and_detach);
    tcase_add_test(t, orderly_shutdown_and_close);
    tcase_add_test(t, receive_buffer_grows_and_shrinks);
    tcase_add_test(t, large_frames_round_trip_under_a_low_water_mark);
    suite_add_tcase(s, t);
    return s;
}

int
main(void)
{
    return tu_run(make_suite());
}
