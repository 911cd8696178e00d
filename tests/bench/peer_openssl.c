/* peer_openssl: the raw limit for TLS, as peer_epoll is for TCP: a len32 echo server written
 * directly on OpenSSL and epoll, with the tricks a careful hand would use: a socket BIO with
 * read-ahead (one read brings many records), partial writes, level-triggered epoll with
 * every readable connection drained until OpenSSL wants more, replies of a batch written
 * with one SSL_write. One thread (pin it with taskset).
 *
 *   peer_openssl CERT KEY [PORT]   (prints the port on stdout) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct pconn {
    int fd;
    SSL *ssl;
    bool hs_done;
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    bool want_out;
};

static int ep;

static void
die(const char *what)
{
    fprintf(stderr, "peer_openssl: %s: %s\n", what, strerror(errno));
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void
drop(struct pconn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    SSL_free(c->ssl);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

static void
interest(struct pconn *c, bool out)
{
    if (out == c->want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = out;
}

/* Writes the queued replies; false when the connection is gone. */
static bool
flush(struct pconn *c)
{
    while (c->out_off < c->out_len) {
        size_t put;
        int r = SSL_write_ex(c->ssl, c->out + c->out_off, c->out_len - c->out_off, &put);
        if (r == 1) {
            c->out_off += put;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            interest(c, true);
            return true;
        }
        drop(c);
        return false;
    }
    c->out_off = c->out_len = 0;
    interest(c, false);
    return true;
}

/* Reads until OpenSSL wants more, echoes every whole frame. */
static void
readable(struct pconn *c)
{
    if (!c->hs_done) {
        int r = SSL_accept(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                interest(c, e == SSL_ERROR_WANT_WRITE);
                return;
            }
            drop(c);
            return;
        }
        c->hs_done = true;
    }
    for (;;) {
        if (c->in_cap - c->in_len < 65536) {
            c->in_cap = c->in_cap * 2 + 65536;
            c->in = realloc(c->in, c->in_cap);
        }
        size_t got;
        int r = SSL_read_ex(c->ssl, c->in + c->in_len, c->in_cap - c->in_len, &got);
        if (r == 1) {
            c->in_len += got;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_WANT_WRITE) {
            interest(c, true);
            break;
        }
        drop(c); /* the end, or an error */
        return;
    }
    size_t off = 0;
    while (c->in_len - off >= 4) {
        const uint8_t *p = c->in + off;
        size_t len = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        if (c->in_len - off < 4 + len)
            break;
        if (c->out_cap - c->out_len < 4 + len) {
            c->out_cap = c->out_cap * 2 + 4 + len;
            c->out = realloc(c->out, c->out_cap);
        }
        memcpy(c->out + c->out_len, p, 4 + len);
        c->out_len += 4 + len;
        off += 4 + len;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    flush(c);
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: peer_openssl CERT KEY [PORT]\n");
        return 2;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1)
        die("certificate");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, 65536);
    static const unsigned char sid[] = "peer_openssl";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)(argc > 3 ? atoi(argv[3]) : 0))};
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0)
        die("listen");
    socklen_t alen = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &alen);
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);

    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event ev[256];
    for (;;) {
        int n = epoll_wait(ep, ev, 256, -1);
        for (int i = 0; i < n; i++) {
            struct pconn *c = ev[i].data.ptr;
            if (!c) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct pconn *k = calloc(1, sizeof *k);
                    k->fd = fd;
                    k->ssl = SSL_new(ctx);
                    SSL_set_fd(k->ssl, fd);
                    SSL_set_accept_state(k->ssl);
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = k};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                }
                continue;
            }
            if ((ev[i].events & EPOLLOUT) && c->hs_done && c->out_len) {
                if (!flush(c))
                    continue;
            }
            if (!c->hs_done || (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                readable(c);
        }
    }
}
