/* peer_libuv: a len32 echo server written idiomatically on libuv: one growing input buffer
 * per connection, the complete frames of each read copied into one write request (libuv
 * writes from caller memory that must outlive the callback), reading stopped while more than
 * 1 MiB waits to be written. Usage: peer_libuv PORT (prints the port). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MAX_FRAME ((size_t)16 * 1024 * 1024)
#define OUT_HIGH ((size_t)1024 * 1024)

struct client {
    uv_tcp_t tcp;
    char *buf;
    size_t len, cap;
};

struct wreq {
    uv_write_t req;
    char data[];
};

static void
on_close(uv_handle_t *h)
{
    struct client *c = (struct client *)h;
    free(c->buf);
    free(c);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct client *c = (struct client *)h;
    (void)suggested;
    if (c->cap - c->len < 65536) {
        c->cap = c->cap ? c->cap * 2 : 65536;
        c->buf = realloc(c->buf, c->cap);
    }
    *b = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void
on_written(uv_write_t *req, int status)
{
    struct client *c = req->data;
    free(req);
    if (status == 0 && !uv_is_closing((uv_handle_t *)&c->tcp) &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < OUT_HIGH / 4)
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct client *c = (struct client *)s;
    (void)b;
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, on_close);
        return;
    }
    c->len += (size_t)n;
    size_t end = 0;
    while (c->len - end >= 4) {
        const uint8_t *p = (const uint8_t *)c->buf + end;
        size_t flen = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        if (flen > MAX_FRAME) {
            uv_close((uv_handle_t *)s, on_close);
            return;
        }
        if (c->len - end < 4 + flen)
            break;
        end += 4 + flen;
    }
    if (end) {
        struct wreq *w = malloc(sizeof *w + end);
        memcpy(w->data, c->buf, end);
        w->req.data = c;
        uv_buf_t wb = uv_buf_init(w->data, (unsigned)end);
        uv_write(&w->req, s, &wb, 1, on_written);
        memmove(c->buf, c->buf + end, c->len - end);
        c->len -= end;
        if (uv_stream_get_write_queue_size(s) > OUT_HIGH)
            uv_read_stop(s);
    }
}

static void
on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct client *c = calloc(1, sizeof *c);
    uv_tcp_init(server->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0) {
        uv_tcp_nodelay(&c->tcp, 1);
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    } else {
        uv_close((uv_handle_t *)&c->tcp, on_close);
    }
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: peer_libuv PORT\n");
        return 2;
    }
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in6 a;
    uv_ip6_addr("::", atoi(argv[1]), &a);
    uv_tcp_init(loop, &server);
    if (uv_tcp_bind(&server, (struct sockaddr *)&a, 0) < 0 ||
        uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection) < 0) {
        fprintf(stderr, "peer_libuv: cannot listen\n");
        return 1;
    }
    int alen = sizeof a;
    uv_tcp_getsockname(&server, (struct sockaddr *)&a, &alen);
    printf("%d\n", ntohs(a.sin6_port));
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
