/* loadgen_mq: the load generator for the message-library echo peers (peer_zmq, peer_nng),
 * which frame messages themselves and so cannot take loadgen's len32 frames.
 *
 *   loadgen_mq -k zmq|nng -p PORT [-c CONNS] [-d DEPTH] [-s SIZE] [-t SECONDS] [-w WARMUP]
 *
 * Opens CONNS connections (one ZeroMQ DEALER socket, or one NNG REQ socket in raw mode,
 * each), keeps DEPTH messages of SIZE bytes in flight on each, and for SECONDS (after WARMUP
 * seconds not counted) checks every byte of every reply and measures its round trip. The
 * same payload as loadgen's (an 8-byte sequence number, then a fixed pattern) and the same
 * JSON object on stdout, so run.py puts the columns side by side. One thread, written with
 * each library's own calls (zmq_poll; NNG's receive notification descriptors and poll),
 * as the library's users would write it: the client's cost differs from loadgen's, which is
 * why run.py reports each side's CPU time per message too. */
#define _GNU_SOURCE
#include "bench_hist.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

static int nconns = 1, depth = 1;
static size_t size = 64;
static double seconds = 3, warmup = 0.5;
static uint8_t *payload; /* the message sent, its first 8 bytes rewritten for each */

struct mconn {
    void *z;      /* ZeroMQ DEALER, or NULL */
    nng_socket n; /* NNG REQ (raw) */
    uint64_t next_seq, expect_seq;
    uint64_t *sent_at; /* ring of depth send times, indexed by seq % depth */
};

static struct hist h;
static uint64_t msgs, bytes, errors, all;
static int phase; /* 0 warmup, 1 counting, 2 finished */

static _Noreturn void
fail(const char *what, const char *why)
{
    fprintf(stderr, "loadgen_mq: %s: %s\n", what, why);
    exit(1);
}

static void
stamp(struct mconn *c)
{
    uint64_t seq = c->next_seq++;
    memcpy(payload, &seq, 8);
    c->sent_at[seq % (uint64_t)depth] = now_ns();
}

static void
send_one(struct mconn *c)
{
    stamp(c);
    if (c->z) {
        if (zmq_send(c->z, payload, size, 0) < 0)
            fail("zmq_send", zmq_strerror(zmq_errno()));
        return;
    }
    nng_msg *m;
    int r = nng_msg_alloc(&m, size);
    if (r == 0) {
        memcpy(nng_msg_body(m), payload, size);
        /* raw REQ: the application writes the request id (high bit set) */
        r = nng_msg_header_append_u32(m, 0x80000000u | (uint32_t)(c->next_seq & 0x7fffffff));
    }
    if (r == 0 && (r = nng_sendmsg(c->n, m, 0)) != 0)
        nng_msg_free(m);
    if (r != 0)
        fail("nng_sendmsg", nng_strerror(r));
}

/* Checks one reply and sends the next request. */
static void
on_reply(struct mconn *c, const uint8_t *data, size_t len)
{
    uint64_t seq;
    if (len != size || (memcpy(&seq, data, 8), seq != c->expect_seq) ||
        memcmp(data + 8, payload + 8, size - 8) != 0) {
        errors++;
        fprintf(stderr, "loadgen_mq: a reply is not what was sent\n");
        phase = 2;
        return;
    }
    uint64_t dt = now_ns() - c->sent_at[seq % (uint64_t)depth];
    c->expect_seq++;
    all++;
    if (phase == 1) {
        hist_add(&h, dt);
        msgs++;
        bytes += size;
    }
    send_one(c);
}

/* Receives what is there on c without blocking; returns the number of replies. */
static int
drain(struct mconn *c)
{
    int got = 0;
    for (;;) {
        if (c->z) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, c->z, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                if (zmq_errno() != EAGAIN)
                    fail("zmq_msg_recv", zmq_strerror(zmq_errno()));
                return got;
            }
            on_reply(c, zmq_msg_data(&m), zmq_msg_size(&m));
            zmq_msg_close(&m);
        } else {
            nng_msg *m;
            int r = nng_recvmsg(c->n, &m, NNG_FLAG_NONBLOCK);
            if (r == NNG_EAGAIN)
                return got;
            if (r != 0)
                fail("nng_recvmsg", nng_strerror(r));
            on_reply(c, nng_msg_body(m), nng_msg_len(m));
            nng_msg_free(m);
        }
        got++;
    }
}

int
main(int argc, char **argv)
{
    const char *kind = NULL, *port = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "k:p:c:d:s:t:w:")) != -1) {
        switch (opt) {
        case 'k': kind = optarg; break;
        case 'p': port = optarg; break;
        case 'c': nconns = atoi(optarg); break;
        case 'd': depth = atoi(optarg); break;
        case 's': size = (size_t)atol(optarg); break;
        case 't': seconds = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        default:
            fprintf(stderr, "usage: loadgen_mq -k zmq|nng -p PORT [-c CONNS] [-d DEPTH] "
                            "[-s SIZE] [-t SECONDS] [-w WARMUP]\n");
            return 2;
        }
    }
    bool zmq = kind && strcmp(kind, "zmq") == 0;
    if (!kind || (!zmq && strcmp(kind, "nng") != 0) || !port || nconns < 1 || depth < 1 ||
        depth > 4096 || size < 8 || size > (1u << 30)) {
        fprintf(stderr, "loadgen_mq: bad arguments (-k zmq|nng and -p PORT are required, "
                        "SIZE >= 8, DEPTH <= 4096)\n");
        return 2;
    }
    payload = malloc(size);
    for (size_t i = 0; i < size; i++)
        payload[i] = (uint8_t)(i * 131 + 7);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%s", port);
    void *ctx = zmq ? zmq_ctx_new() : NULL;
    struct mconn *cs = calloc((size_t)nconns, sizeof *cs);
    struct pollfd *pfd = calloc((size_t)nconns, sizeof *pfd);
    zmq_pollitem_t *items = calloc((size_t)nconns, sizeof *items);
    for (int i = 0; i < nconns; i++) {
        struct mconn *c = &cs[i];
        c->sent_at = calloc((size_t)depth, sizeof *c->sent_at);
        if (zmq) {
            c->z = zmq_socket(ctx, ZMQ_DEALER);
            int hwm = 0;
            zmq_setsockopt(c->z, ZMQ_SNDHWM, &hwm, sizeof hwm);
            zmq_setsockopt(c->z, ZMQ_RCVHWM, &hwm, sizeof hwm);
            if (zmq_connect(c->z, url) != 0)
                fail("zmq_connect", zmq_strerror(zmq_errno()));
            items[i] = (zmq_pollitem_t){.socket = c->z, .events = ZMQ_POLLIN};
            continue;
        }
        int r = nng_req0_open_raw(&c->n), fd = -1;
        /* replies wait in the socket's queue while this thread is busy elsewhere: room for
         * all of them, or NNG stops reading the connection and the server stops too */
        if (r == 0)
            r = nng_socket_set_int(c->n, NNG_OPT_RECVBUF, depth > 8192 ? 8192 : depth);
        if (r == 0)
            r = nng_socket_set_size(c->n, NNG_OPT_RECVMAXSZ, 0);
        if (r == 0)
            r = nng_dial(c->n, url, NULL, 0); /* blocking: connected when it returns */
        if (r == 0)
            r = nng_socket_get_int(c->n, NNG_OPT_RECVFD, &fd);
        if (r != 0)
            fail(url, nng_strerror(r));
        pfd[i] = (struct pollfd){.fd = fd, .events = POLLIN};
    }
    for (int i = 0; i < nconns; i++)
        for (int k = 0; k < depth; k++)
            send_one(&cs[i]);
    uint64_t start = now_ns(), t0 = 0;
    while (phase < 2) {
        int n = zmq ? zmq_poll(items, nconns, 100) : poll(pfd, (nfds_t)nconns, 100);
        if (n < 0 && errno != EINTR)
            fail("poll", strerror(errno));
        for (int i = 0; i < nconns && n > 0; i++)
            if (zmq ? (items[i].revents & ZMQ_POLLIN) : (pfd[i].revents & POLLIN))
                drain(&cs[i]);
        uint64_t now = now_ns();
        if (phase == 0 && (double)(now - start) / 1e9 >= warmup)
            phase = 1, t0 = now;
        else if (phase == 1 && (double)(now - t0) / 1e9 >= seconds)
            phase = 2;
    }
    double elapsed = (double)(now_ns() - t0) / 1e9;
    print_result(nconns, depth, size, elapsed, msgs, bytes, &h, errors, all);
    _exit(errors ? 1 : 0); /* without closing hundreds of sockets with messages in flight */
}
