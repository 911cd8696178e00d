/* peer_zmq: an echo server written idiomatically on ZeroMQ (libzmq): one ROUTER socket;
 * each request is [peer identity][payload] and goes back as it came, the message objects
 * moved from receive to send (no payload copy in the application). ROUTER and DEALER is
 * the pattern that lets a client keep many requests in flight on one connection (REQ/REP
 * allows one at a time). ZeroMQ frames by itself, so its clients are loadgen_mq's, not
 * loadgen's. Usage: peer_zmq PORT (0: any; prints the port). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static void
on_term(int sig)
{
    (void)sig; /* interrupts zmq_msg_recv with EINTR */
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: peer_zmq PORT\n");
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    int hwm = 0; /* no high-water mark: the clients bound what is in flight */
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    char ep[64];
    if (strcmp(argv[1], "0") == 0)
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:*");
    else
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%s", argv[1]);
    if (zmq_bind(s, ep) != 0) {
        fprintf(stderr, "peer_zmq: bind %s: %s\n", ep, zmq_strerror(zmq_errno()));
        return 1;
    }
    char last[128];
    size_t len = sizeof last;
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, last, &len);
    const char *colon = strrchr(last, ':');
    printf("%s\n", colon ? colon + 1 : "?");
    fflush(stdout);
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    for (;;) {
        if (zmq_msg_recv(&id, s, 0) < 0 || zmq_msg_recv(&body, s, 0) < 0)
            break;
        if (zmq_msg_send(&id, s, ZMQ_SNDMORE) < 0 || zmq_msg_send(&body, s, 0) < 0)
            break;
    }
    int err = zmq_errno();
    zmq_msg_close(&id);
    zmq_msg_close(&body);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return err == EINTR ? 0 : 1;
}
