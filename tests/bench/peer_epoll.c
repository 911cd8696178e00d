/* peer_epoll: the practical limit: a len32 echo server hand-written on raw epoll, as one
 * would write it for speed alone. Usage: peer_epoll [-w WORKERS] PORT (prints the port).
 *
 * Edge-triggered; each worker thread has its own SO_REUSEPORT listener and epoll; one
 * 64 KiB input buffer per connection, read until a short read; the complete frames at the
 * front of the buffer are echoed straight from it (echo needs no copy: the reply is the
 * frame) with one send per read; a partial write keeps the rest and waits for EPOLLOUT,
 * and reading pauses until it is written. Frames over 16 MiB close the connection. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FRAME ((size_t)16 * 1024 * 1024)
#define BUF ((size_t)64 * 1024)

struct pconn {
    int fd;
    uint8_t *buf;
    size_t cap, len;  /* received bytes buf[0, len) */
    size_t out_end;   /* while > 0: buf[out_off, out_end) is still to be written */
    size_t out_off;
};

static int port_arg;
static int lfd0;

static int
make_listener(int port)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, SOMAXCONN) < 0) {
        perror("peer_epoll: listen");
        exit(1);
    }
    return fd;
}

static void
drop(struct pconn *c)
{
    close(c->fd);
    free(c->buf);
    free(c);
}

/* Writes the pending output; returns false when the connection must be dropped. */
static bool
write_out(int ep, struct pconn *c)
{
    while (c->out_off < c->out_end) {
        ssize_t n = send(c->fd, c->buf + c->out_off, c->out_end - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            return true;
        }
        return false;
    }
    /* All written: drop the echoed frames, keep the partial one, read again. */
    memmove(c->buf, c->buf + c->out_end, c->len - c->out_end);
    c->len -= c->out_end;
    c->out_off = c->out_end = 0;
    return true;
}

/* Reads until a short read (edge-triggered: the socket is then drained) and echoes the
 * complete frames; when the buffer filled up first, echoes and reads on. */
static bool
on_readable(int ep, struct pconn *c)
{
    for (;;) {
        bool drained = false;
        while (!drained) {
            if (c->len == c->cap) {
                size_t need = c->len >= 4 ? 4 + ((size_t)c->buf[0] << 24 | (size_t)c->buf[1] << 16 |
                                                 (size_t)c->buf[2] << 8 | c->buf[3])
                                          : 0;
                if (need <= c->cap)
                    break; /* full of complete frames: echo them first */
                if (need > 4 + MAX_FRAME)
                    return false;
                c->cap = need;
                c->buf = realloc(c->buf, c->cap);
                if (!c->buf)
                    return false;
            }
            size_t asked = c->cap - c->len;
            ssize_t n = recv(c->fd, c->buf + c->len, asked, 0);
            if (n == 0)
                return false;
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN)
                    return false;
                drained = true;
                break;
            }
            c->len += (size_t)n;
            drained = (size_t)n < asked;
        }
        size_t end = 0;
        while (c->len - end >= 4) {
            const uint8_t *p = c->buf + end;
            size_t flen = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
            if (flen > MAX_FRAME)
                return false;
            if (c->len - end < 4 + flen)
                break;
            end += 4 + flen;
        }
        if (end) {
            c->out_off = 0;
            c->out_end = end;
            if (!write_out(ep, c))
                return false;
            if (c->out_end)
                return true; /* resumed by EPOLLOUT */
        }
        if (drained)
            return true;
    }
}

static void *
worker(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event ev[256];
    for (;;) {
        int n = epoll_wait(ep, ev, 256, -1);
        for (int i = 0; i < n; i++) {
            struct pconn *c = ev[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    c->cap = BUF;
                    c->buf = malloc(BUF);
                    struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                }
                continue;
            }
            bool ok = true;
            if (c->out_end) {
                if (ev[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
                    ok = write_out(ep, c);
                    if (ok && !c->out_end) {
                        struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
                        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
                        ok = on_readable(ep, c); /* what arrived while paused */
                    }
                }
            } else {
                ok = on_readable(ep, c);
            }
            if (!ok)
                drop(c);
        }
    }
    return NULL;
}

int
main(int argc, char **argv)
{
    int workers = 1, opt;
    while ((opt = getopt(argc, argv, "w:")) != -1)
        if (opt == 'w')
            workers = atoi(optarg);
    if (optind != argc - 1) {
        fprintf(stderr, "usage: peer_epoll [-w WORKERS] PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    port_arg = atoi(argv[optind]);
    lfd0 = make_listener(port_arg);
    struct sockaddr_in6 a;
    socklen_t alen = sizeof a;
    getsockname(lfd0, (struct sockaddr *)&a, &alen);
    int port = ntohs(a.sin6_port);
    printf("%d\n", port);
    fflush(stdout);
    pthread_t t;
    for (int i = 1; i < workers; i++)
        pthread_create(&t, NULL, worker, (void *)(intptr_t)make_listener(port));
    worker((void *)(intptr_t)lfd0);
    return 0;
}
