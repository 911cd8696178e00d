/* peer_libevent: a len32 echo server written idiomatically on libevent 2: a bufferevent per
 * connection, frames found in the input evbuffer and moved to the output evbuffer without a
 * copy (evbuffer_remove_buffer), a high-water mark on the output to stop reading from a
 * client that does not read. Usage: peer_libevent PORT (prints the port). */
#define _GNU_SOURCE
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_FRAME ((uint32_t)16 * 1024 * 1024)
#define OUT_HIGH ((size_t)1024 * 1024)

static void on_write(struct bufferevent *bev, void *arg);

static void
on_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev), *out = bufferevent_get_output(bev);
    for (;;) {
        uint8_t h[4];
        if (evbuffer_copyout(in, h, 4) < 4)
            break;
        uint32_t len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
        if (len > MAX_FRAME) {
            bufferevent_free(bev);
            return;
        }
        if (evbuffer_get_length(in) < 4 + (size_t)len)
            break;
        evbuffer_remove_buffer(in, out, 4 + (size_t)len);
    }
    if (evbuffer_get_length(out) > OUT_HIGH) {
        bufferevent_disable(bev, EV_READ); /* resumed once the output drained */
        bufferevent_setwatermark(bev, EV_WRITE, OUT_HIGH / 4, 0);
    }
}

static void
on_write(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (!(bufferevent_get_enabled(bev) & EV_READ)) {
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        bufferevent_enable(bev, EV_READ);
        on_read(bev, NULL);
    }
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev);
}

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)sa, (void)salen, (void)arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct bufferevent *bev =
        bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, on_read, on_write, on_event, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: peer_libevent PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)atoi(argv[1]))};
    struct evconnlistener *l = evconnlistener_new_bind(
        base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
        (struct sockaddr *)&a, sizeof a);
    if (!l) {
        perror("peer_libevent: listen");
        return 1;
    }
    socklen_t alen = sizeof a;
    getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&a, &alen);
    printf("%d\n", ntohs(a.sin6_port));
    fflush(stdout);
    event_base_dispatch(base);
    return 0;
}
