/* loadgen: a load generator for len32 echo servers (4-byte big-endian length, payload).
 *
 *   loadgen -p PORT [-h HOST] [-c CONNS] [-d DEPTH] [-s SIZE] [-t SECONDS] [-w WARMUP] [-T THREADS]
 *           [-S CAFILE [-H full|resumed]]
 *
 * -S: over TLS (OpenSSL, the server verified against CAFILE and the name HOST); with -H,
 * handshakes per second instead: each round connects, completes a handshake (a new one, or
 * resuming with the newest ticket the server gave), exchanges one frame and closes with
 * close_notify. Built only with OpenSSL (LOADGEN_TLS).
 *
 * Opens CONNS connections, keeps DEPTH frames of SIZE bytes in flight on each, and for
 * SECONDS (after WARMUP seconds not counted) checks every byte of every echoed frame and
 * measures the round trip of each. Prints one JSON object on stdout: messages/s, MB/s
 * (payload bytes echoed), round-trip latency p50/p99/p999 in microseconds, errors.
 *
 * Written on raw epoll without libtcpmsg, so that it measures the server and not itself:
 * edge-triggered, large reads, every reply batch answered with one write of new frames.
 * Each frame's first 8 bytes are its sequence number; the rest is a fixed pattern, so a
 * check is one compare and one memcmp. Send times wait in a per-connection ring (echo
 * preserves order), so no clock value travels in the payload. */
#define _GNU_SOURCE
#include "bench_hist.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifdef LOADGEN_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
static SSL_CTX *tls_ctx;
#endif

static const char *host = "127.0.0.1", *port;
static int nconns = 1, depth = 1, nthreads = 1;
static size_t size = 64;
static double seconds = 3, warmup = 0.5;
static uint8_t *pattern; /* the payload after the sequence number */

static atomic_int measuring; /* 0 warmup, 1 counting, 2 finished */

struct lconn {
    int fd;
#ifdef LOADGEN_TLS
    void *ssl; /* SSL *, or NULL: plain TCP */
#endif
    uint64_t next_seq, expect_seq;
    uint64_t *sent_at; /* ring of depth send times, indexed by seq % depth */
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    bool want_out;
};

struct worker {
    pthread_t thread;
    int ep;
    struct lconn *conns;
    int n;
    struct hist h;
    uint64_t msgs, bytes, errors, all; /* all: every reply, warmup included */
};

static void
die(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int
connect_one(void)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        die("getaddrinfo");
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) < 0)
        die("connect");
    freeaddrinfo(res);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

#ifdef LOADGEN_TLS
/* The newest session a server gave (TLS 1.3 sends tickets after the handshake): the one
 * the next connection offers, as a real client would (the new-session callback is where
 * OpenSSL hands them over; SSL_get1_session may still return the one without a ticket). */
static SSL_SESSION *newest;

static int
keep_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    SSL_SESSION_free(newest);
    newest = sess;
    return 1; /* the reference is ours */
}

/* The TLS handshake on a blocking fd; returns the SSL (resuming `resume` when given). */
static SSL *
tls_start(int fd, SSL_SESSION *resume)
{
    SSL *ssl = SSL_new(tls_ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, host);
    SSL_set1_host(ssl, host);
    if (resume)
        SSL_set_session(ssl, resume);
    if (SSL_connect(ssl) != 1) {
        ERR_print_errors_fp(stderr);
        fprintf(stderr, "loadgen: TLS handshake failed\n");
        exit(1);
    }
    return ssl;
}
#endif

/* Appends k new frames to c's output. */
static void
queue_frames(struct lconn *c, int k)
{
    size_t need = c->out_len + (size_t)k * (4 + size);
    if (need > c->out_cap) {
        if (c->out_off) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
            need = c->out_len + (size_t)k * (4 + size);
        }
        if (need > c->out_cap) {
            c->out_cap = need * 2;
            c->out = realloc(c->out, c->out_cap);
            if (!c->out)
                die("realloc");
        }
    }
    uint64_t t = now_ns();
    for (int i = 0; i < k; i++) {
        uint8_t *p = c->out + c->out_len;
        p[0] = (uint8_t)(size >> 24);
        p[1] = (uint8_t)(size >> 16);
        p[2] = (uint8_t)(size >> 8);
        p[3] = (uint8_t)size;
        uint64_t seq = c->next_seq++;
        memcpy(p + 4, &seq, size < 8 ? size : 8);
        if (size > 8)
            memcpy(p + 12, pattern, size - 8);
        c->sent_at[seq % (uint64_t)depth] = t;
        c->out_len += 4 + size;
    }
}

/* send(), or SSL_write over TLS: > 0 bytes, or -1 with errno EAGAIN (would block) or
 * another error. */
static ssize_t
out_some(struct lconn *c, const void *p, size_t n)
{
#ifdef LOADGEN_TLS
    if (c->ssl) {
        size_t put;
        int r = SSL_write_ex(c->ssl, p, n, &put);
        if (r == 1)
            return (ssize_t)put;
        int e = SSL_get_error(c->ssl, r);
        errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EPIPE;
        return -1;
    }
#endif
    return send(c->fd, p, n, MSG_NOSIGNAL);
}

/* recv(), or SSL_read over TLS: > 0 bytes, 0 at the end, or -1 with errno EAGAIN. */
static ssize_t
in_some(struct lconn *c, void *p, size_t n)
{
#ifdef LOADGEN_TLS
    if (c->ssl) {
        size_t got;
        int r = SSL_read_ex(c->ssl, p, n, &got);
        if (r == 1)
            return (ssize_t)got;
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            errno = EAGAIN;
            return -1;
        }
        return 0;
    }
#endif
    return recv(c->fd, p, n, 0);
}

static void
flush_out(struct worker *w, struct lconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = out_some(c, c->out + c->out_off, c->out_len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (!c->want_out) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
                epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
                c->want_out = true;
            }
            return;
        }
        die("send");
    }
    c->out_off = c->out_len = 0;
}

/* Reads everything available, checks the complete replies, answers them with new frames. */
static void
on_readable(struct worker *w, struct lconn *c)
{
    int counting = atomic_load_explicit(&measuring, memory_order_relaxed);
    for (;;) {
        if (c->in_cap - c->in_len < 65536) {
            c->in_cap = c->in_cap * 2 + 65536 + 4 + size;
            c->in = realloc(c->in, c->in_cap);
            if (!c->in)
                die("realloc");
        }
        ssize_t n = in_some(c, c->in + c->in_len, c->in_cap - c->in_len);
        if (n > 0) {
            c->in_len += (size_t)n;
#ifdef LOADGEN_TLS
            if (c->ssl)
                continue; /* TLS: until OpenSSL wants more (a short read says nothing) */
#endif
            if ((size_t)n < c->in_cap - c->in_len + (size_t)n)
                break; /* a short read: the socket is drained (edge-triggered) */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        fprintf(stderr, "loadgen: the server closed a connection\n");
        exit(1);
    }
    size_t off = 0;
    int replies = 0;
    uint64_t t = now_ns();
    while (c->in_len - off >= 4) {
        const uint8_t *p = c->in + off;
        size_t len = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        if (len != size) {
            fprintf(stderr, "loadgen: a reply of %zu bytes, expected %zu\n", len, size);
            exit(1);
        }
        if (c->in_len - off < 4 + len)
            break;
        uint64_t seq = 0;
        memcpy(&seq, p + 4, size < 8 ? size : 8);
        bool ok = seq == (size < 8 ? (c->expect_seq & ((1ull << (8 * size)) - 1)) : c->expect_seq) &&
                  (size <= 8 || memcmp(p + 12, pattern, size - 8) == 0);
        if (!ok)
            w->errors++;
        if (counting == 1) {
            uint64_t dt = t - c->sent_at[c->expect_seq % (uint64_t)depth];
            hist_add(&w->h, dt);
            w->msgs++;
            w->bytes += size;
        }
        c->expect_seq++;
        w->all++;
        off += 4 + len;
        replies++;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    if (replies && counting != 2) {
        queue_frames(c, replies);
        flush_out(w, c);
    }
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->n; i++) {
        queue_frames(&w->conns[i], depth);
        flush_out(w, &w->conns[i]);
    }
    struct epoll_event ev[256];
    while (atomic_load(&measuring) != 2) {
        int n = epoll_wait(w->ep, ev, 256, 100);
        for (int i = 0; i < n; i++) {
            struct lconn *c = ev[i].data.ptr;
            if (ev[i].events & EPOLLOUT) {
                flush_out(w, c);
                if (c->out_len == 0 && c->want_out) {
                    struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
                    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &e);
                    c->want_out = false;
                }
            }
            if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(w, c);
        }
    }
    return NULL;
}

#ifdef LOADGEN_TLS
/* -H: handshakes per second for `seconds` (after `warmup`), one connection at a time. */
static int
run_handshakes(bool resumed)
{
    SSL_SESSION *sess = NULL;
    uint64_t t0 = 0, done = 0, reused = 0;
    uint64_t start = now_ns();
    uint8_t frame[4 + 8] = {0, 0, 0, 8}, back[12];
    for (;;) {
        uint64_t now = now_ns();
        double since = (double)(now - start) / 1e9;
        if (!t0 && since >= warmup)
            t0 = now, done = reused = 0;
        if (t0 && (double)(now - t0) / 1e9 >= seconds)
            break;
        int fd = connect_one();
        SSL *ssl = tls_start(fd, resumed ? sess : NULL);
        /* One exchange: it also brings a TLS 1.3 server's ticket. */
        size_t k;
        if (SSL_write_ex(ssl, frame, sizeof frame, &k) != 1)
            exit(1);
        for (size_t got = 0; got < sizeof back; got += k)
            if (SSL_read_ex(ssl, back + got, sizeof back - got, &k) != 1)
                exit(1);
        reused += SSL_session_reused(ssl) == 1;
        if (resumed && newest) {
            SSL_SESSION_free(sess);
            sess = newest;
            SSL_SESSION_up_ref(sess);
        }
        SSL_shutdown(ssl);
        SSL_free(ssl);
        close(fd);
        done++;
    }
    double elapsed = (double)(now_ns() - t0) / 1e9;
    printf("{\"handshakes_per_s\": %.0f, \"resumed\": %llu, \"total\": %llu, \"seconds\": %.3f}\n",
           (double)done / elapsed, (unsigned long long)reused, (unsigned long long)done,
           elapsed);
    SSL_SESSION_free(sess);
    SSL_SESSION_free(newest);
    return 0;
}
#endif

int
main(int argc, char **argv)
{
    int opt;
    const char *cafile = NULL, *hmode = NULL;
    while ((opt = getopt(argc, argv, "h:p:c:d:s:t:w:T:S:H:")) != -1) {
        switch (opt) {
        case 'S': cafile = optarg; break;
        case 'H': hmode = optarg; break;
        case 'h': host = optarg; break;
        case 'p': port = optarg; break;
        case 'c': nconns = atoi(optarg); break;
        case 'd': depth = atoi(optarg); break;
        case 's': size = (size_t)atol(optarg); break;
        case 't': seconds = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'T': nthreads = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: loadgen -p PORT [-h HOST] [-c CONNS] [-d DEPTH] [-s SIZE] "
                            "[-t SECONDS] [-w WARMUP] [-T THREADS]\n");
            return 2;
        }
    }
    if (!port || nconns < 1 || depth < 1 || nthreads < 1 || size < 1 || size > (1u << 30)) {
        fprintf(stderr, "loadgen: bad arguments (-p PORT is required)\n");
        return 2;
    }
    if (nthreads > nconns)
        nthreads = nconns;
    if (cafile) {
#ifdef LOADGEN_TLS
        tls_ctx = SSL_CTX_new(TLS_client_method());
        if (!tls_ctx || SSL_CTX_load_verify_locations(tls_ctx, cafile, NULL) != 1) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_read_ahead(tls_ctx, 1);
        SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(tls_ctx, keep_session);
        if (hmode)
            return run_handshakes(strcmp(hmode, "resumed") == 0);
#else
        fprintf(stderr, "loadgen: built without OpenSSL: no -S\n");
        return 2;
#endif
    }
    pattern = malloc(size);
    for (size_t i = 0; i < size; i++)
        pattern[i] = (uint8_t)(i * 131 + 7);

    struct worker *ws = calloc((size_t)nthreads, sizeof *ws);
    for (int t = 0; t < nthreads; t++) {
        struct worker *w = &ws[t];
        w->n = nconns / nthreads + (t < nconns % nthreads);
        w->conns = calloc((size_t)w->n, sizeof *w->conns);
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        for (int i = 0; i < w->n; i++) {
            struct lconn *c = &w->conns[i];
            c->fd = connect_one();
#ifdef LOADGEN_TLS
            if (tls_ctx)
                c->ssl = tls_start(c->fd, NULL);
#endif
            fcntl(c->fd, F_SETFL, O_NONBLOCK);
            c->sent_at = calloc((size_t)depth, sizeof *c->sent_at);
            struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
            if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
                die("epoll_ctl");
        }
    }
    for (int t = 0; t < nthreads; t++)
        pthread_create(&ws[t].thread, NULL, worker_main, &ws[t]);
    struct timespec ts = {(time_t)warmup, (long)((warmup - (double)(time_t)warmup) * 1e9)};
    nanosleep(&ts, NULL); /* the benchmark's duration, not a synchronisation */
    uint64_t t0 = now_ns();
    atomic_store(&measuring, 1);
    ts = (struct timespec){(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
    atomic_store(&measuring, 2);
    double elapsed = (double)(now_ns() - t0) / 1e9;
    struct hist all = {0};
    uint64_t msgs = 0, bytes = 0, errors = 0, all_msgs = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(ws[t].thread, NULL);
        hist_merge(&all, &ws[t].h);
        msgs += ws[t].msgs;
        bytes += ws[t].bytes;
        errors += ws[t].errors;
        all_msgs += ws[t].all;
    }
    print_result(nconns, depth, size, elapsed, msgs, bytes, &all, errors, all_msgs);
    return errors ? 1 : 0;
}
