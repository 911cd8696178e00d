/* tcpmsg-uv-echo: the echo server of tcpmsg-echo-server, written on libuv's event loop,
 * with libtcpmsg's codec doing the framing inside libuv's read callback. The codec never
 * touches a socket ("sans-I/O"): libuv reads the bytes, the codec finds the frames in them,
 * libuv writes the replies. Any loop (libevent, a game engine's, your own) works the same.
 * Usage: tcpmsg-uv-echo [--framing F] PORT   (PORT 0: any free port, printed on stdout) */
#define _GNU_SOURCE /* POSIX and Linux interfaces under -std=c11 */
#include "common.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* Stop reading from a client while this much of its replies waits to be written. */
#define WRITE_HIGH ((size_t)1024 * 1024)

static struct tcpmsg_codec codec;

struct client {
    uv_tcp_t tcp;
    struct tcpmsg_decoder dec; /* the codec's per-stream state: a few words, no malloc */
    uint8_t *in;               /* bytes received and not yet framed */
    size_t in_len, in_cap;
};

struct reply {
    uv_write_t req;
    uint8_t bytes[]; /* the framed replies of one read callback, written at once */
};

static void
on_closed(uv_handle_t *h)
{
    struct client *cl = (struct client *)h;
    free(cl->in);
    free(cl);
}

static void
drop(struct client *cl, const char *why)
{
    if (why)
        tool_warn("closing a client: %s", why);
    if (!uv_is_closing((uv_handle_t *)&cl->tcp))
        uv_close((uv_handle_t *)&cl->tcp, on_closed);
}

/* libuv asks for room before each read: the free end of the client's input buffer, grown
 * only when full and never past two frames' worth (the codec bounds a frame first). */
static void
on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct client *cl = (struct client *)h;
    (void)hint;
    if (cl->in_cap - cl->in_len < 4096 && cl->in_cap < 2 * tcpmsg_codec_max_frame(&codec) + 65536) {
        size_t cap = cl->in_cap ? 2 * cl->in_cap : 65536;
        uint8_t *p = realloc(cl->in, cap);
        if (p) {
            cl->in = p;
            cl->in_cap = cap;
        }
    }
    *buf = uv_buf_init((char *)cl->in + cl->in_len, (unsigned)(cl->in_cap - cl->in_len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void
on_written(uv_write_t *req, int status)
{
    struct client *cl = req->data;
    free(req);
    if (status < 0)
        drop(cl, uv_strerror(status));
    else if (!uv_is_closing((uv_handle_t *)&cl->tcp) &&
             uv_stream_get_write_queue_size((uv_stream_t *)&cl->tcp) < WRITE_HIGH / 4)
        uv_read_start((uv_stream_t *)&cl->tcp, on_alloc, on_read); /* backpressure ends */
}

/* Frames what arrived and writes every reply of this batch with one uv_write. */
static void
echo_frames(struct client *cl, bool eof)
{
    size_t off = 0, out_len = 0;
    struct reply *rep = NULL;
    for (;;) {
        struct tcpmsg_frame f;
        ptrdiff_t n =
            eof ? tcpmsg_codec_finish(&codec, &cl->dec, cl->in + off, cl->in_len - off, &f)
                : tcpmsg_codec_decode(&codec, &cl->dec, cl->in + off, cl->in_len - off, &f);
        if (n == 0 || n == TCPMSG_EOF)
            break;
        if (n < 0) {
            free(rep);
            drop(cl, tcpmsg_strerror((int)n));
            return;
        }
        size_t need = tcpmsg_codec_frame_size(&codec, f.len);
        struct reply *grown = realloc(rep, sizeof *rep + out_len + need);
        if (!grown) {
            free(rep);
            drop(cl, "out of memory");
            return;
        }
        rep = grown;
        out_len += (size_t)tcpmsg_codec_write(&codec, f.data, f.len, rep->bytes + out_len, need);
        off += (size_t)n;
    }
    /* The decoder contract: unconsumed bytes go first in the next call. */
    memmove(cl->in, cl->in + off, cl->in_len - off);
    cl->in_len -= off;
    if (rep) {
        rep->req.data = cl;
        uv_buf_t b = uv_buf_init((char *)rep->bytes, (unsigned)out_len);
        if (uv_write(&rep->req, (uv_stream_t *)&cl->tcp, &b, 1, on_written) < 0) {
            free(rep);
            drop(cl, "write failed");
            return;
        }
    }
    if (uv_stream_get_write_queue_size((uv_stream_t *)&cl->tcp) >= WRITE_HIGH)
        uv_read_stop((uv_stream_t *)&cl->tcp); /* backpressure: resumed in on_written */
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    drop(req->data, NULL);
    free(req);
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct client *cl = (struct client *)s;
    (void)buf;
    if (n > 0) {
        cl->in_len += (size_t)n;
        echo_frames(cl, false);
    } else if (n == UV_EOF) {
        echo_frames(cl, true); /* a frame cut by the end is an error, reported here */
        uv_shutdown_t *req = malloc(sizeof *req);
        if (!uv_is_closing((uv_handle_t *)s) && req) {
            req->data = cl;
            if (uv_shutdown(req, s, on_shutdown) == 0)
                return; /* closed once the replies are written */
        }
        free(req);
        drop(cl, NULL);
    } else if (n < 0) {
        drop(cl, uv_strerror((int)n));
    }
}

static void
on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct client *cl = calloc(1, sizeof *cl);
    if (!cl)
        return;
    tcpmsg_decoder_init(&cl->dec);
    uv_tcp_init(server->loop, &cl->tcp);
    if (uv_accept(server, (uv_stream_t *)&cl->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&cl->tcp, on_alloc, on_read) < 0)
        drop(cl, "accept failed");
}

static void
on_signal(uv_signal_t *sig, int signum)
{
    (void)signum;
    uv_stop(sig->loop);
}

int
main(int argc, char **argv)
{
    tool_init(argv[0]);
    static const struct option longopts[] = {{"framing", required_argument, NULL, 'f'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    const char *framing = "len32";
    int opt;
    while ((opt = getopt_long(argc, argv, ":f:hV", longopts, NULL)) != -1) {
        if (opt == 'f')
            framing = optarg;
        else if (opt == 'h') {
            printf("Usage: %s [--framing F] PORT\nAn echo server on libuv, framed by libtcpmsg.\n",
                   tool_name());
            return 0;
        } else if (opt == 'V')
            tool_version();
        else
            tool_bad_option(opt, argv);
    }
    if (argc - optind != 1)
        tool_usage("missing PORT");
    tool_framing("--framing", framing, 0, &codec);

    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in6 any;
    uv_ip6_addr("::", (int)tool_uint("PORT", argv[optind], 0, 65535), &any);
    uv_tcp_init(loop, &server);
    int r = uv_tcp_bind(&server, (const struct sockaddr *)&any, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection);
    if (r < 0)
        tool_die("cannot listen: %s", uv_strerror(r));
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
    tool_print_port(ntohs(((struct sockaddr_in6 *)&bound)->sin6_port));

    uv_signal_t sigint, sigterm;
    uv_signal_init(loop, &sigint);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
