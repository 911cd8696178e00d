/* bench_conn: the blocking message connection against the raw socket code it replaces,
 * side by side in the same run, with every allocation counted.
 *
 *   bench_conn pingpong PORT [SIZE] [ROUNDS]   one connection, one frame at a time, to a len32
 *                                              echo server on 127.0.0.1:PORT: round-trip time
 *                                              of tcpmsg_conn_send + recv vs write + read
 *   bench_conn bulk [SIZE] [MIB]               one direction, SIZE-byte frames (1 MiB), a
 *                                              sender and a receiver thread on two CPUs:
 *                                              tcpmsg_conn vs a plain send/recv loop
 *
 * One JSON object per line. The allocation counter wraps malloc, calloc and realloc of the
 * whole process (this file defines them over glibc's __libc_* functions) and counts the
 * calls made while the timed loop runs: "allocs_per_msg" must be 0 in steady state. */
#define _GNU_SOURCE
#include <tcpmsg.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_clock.h"

/* ---- counting allocator ------------------------------------------------------------------ */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static atomic_ulong allocs;

void *
malloc(size_t n)
{
    atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
    return __libc_malloc(n);
}

void *
calloc(size_t a, size_t b)
{
    atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
    return __libc_calloc(a, b);
}

void *
realloc(void *p, size_t n)
{
    atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
    return __libc_realloc(p, n);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static void
die(const char *what, int code)
{
    fprintf(stderr, "bench_conn: %s: %s\n", what, code ? tcpmsg_strerror(code) : strerror(errno));
    exit(1);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void
write_all(int fd, const void *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("send", 0);
        p = (const char *)p + w;
        n -= (size_t)w;
    }
}

static void
read_all(int fd, void *p, size_t n)
{
    while (n) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("recv", r == 0 ? TCPMSG_EOF : 0);
        p = (char *)p + r;
        n -= (size_t)r;
    }
}

static void
pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % (int)sysconf(_SC_NPROCESSORS_ONLN), &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* ---- ping-pong ---------------------------------------------------------------------------- */

static double
rtt_raw(int fd, uint8_t *frame, size_t size, int rounds)
{
    uint8_t *back = malloc(4 + size);
    double start = now();
    for (int i = 0; i < rounds; i++) {
        write_all(fd, frame, 4 + size);
        read_all(fd, back, 4);
        read_all(fd, back + 4, size);
    }
    double el = now() - start;
    free(back);
    return el / rounds;
}

static double
rtt_conn(struct tcpmsg_conn *c, const uint8_t *payload, size_t size, int rounds, double *allocs_per)
{
    unsigned long a0 = atomic_load(&allocs);
    double start = now();
    for (int i = 0; i < rounds; i++) {
        struct tcpmsg_frame f;
        int r = tcpmsg_conn_send(c, payload, size, TCPMSG_FOREVER);
        if (r == 0)
            r = tcpmsg_conn_recv(c, &f, TCPMSG_FOREVER);
        if (r < 0)
            die("conn", r);
    }
    double el = now() - start;
    *allocs_per = (double)(atomic_load(&allocs) - a0) / rounds;
    return el / rounds;
}

static int
pingpong(const char *port, size_t size, int rounds)
{
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, NULL);
    uint8_t *frame = malloc(4 + size);
    frame[0] = (uint8_t)(size >> 24), frame[1] = (uint8_t)(size >> 16);
    frame[2] = (uint8_t)(size >> 8), frame[3] = (uint8_t)size;
    memset(frame + 4, 'p', size);
    int fd = tcpmsg_sock_connect("127.0.0.1", port, NULL, tcpmsg_deadline_in(5000));
    if (fd < 0)
        die("connect", fd);
    tcpmsg_sock_set_nodelay(fd, true);
    struct tcpmsg_conn *c;
    int cfd = tcpmsg_sock_connect("127.0.0.1", port, NULL, tcpmsg_deadline_in(5000));
    if (cfd < 0)
        die("connect", cfd);
    tcpmsg_sock_set_nodelay(cfd, true);
    int r = tcpmsg_conn_open(&c, cfd, &codec, NULL);
    if (r < 0)
        die("open", r);
    double per = 0;
    rtt_raw(fd, frame, size, rounds / 10); /* warm up both paths */
    rtt_conn(c, frame + 4, size, rounds / 10, &per);
    enum { REPS = 7 };
    double raw[REPS], conn[REPS], allocs_per = 0;
    for (int i = 0; i < REPS; i++) { /* interleaved: drift hits both alike */
        raw[i] = rtt_raw(fd, frame, size, rounds);
        conn[i] = rtt_conn(c, frame + 4, size, rounds, &per);
        allocs_per += per;
    }
    qsort(raw, REPS, sizeof raw[0], cmp_double);
    qsort(conn, REPS, sizeof conn[0], cmp_double);
    printf("{\"bench\": \"pingpong\", \"size\": %zu, \"rounds\": %d, \"raw_rtt_us\": %.2f, "
           "\"conn_rtt_us\": %.2f, \"raw_spread_us\": %.2f, \"conn_spread_us\": %.2f, "
           "\"ratio\": %.3f, \"allocs_per_msg\": %.4f}\n",
           size, rounds, raw[REPS / 2] * 1e6, conn[REPS / 2] * 1e6, (raw[REPS - 1] - raw[0]) * 1e6,
           (conn[REPS - 1] - conn[0]) * 1e6, conn[REPS / 2] / raw[REPS / 2], allocs_per / REPS);
    tcpmsg_conn_close(c, tcpmsg_deadline_in(1000));
    close(fd);
    free(frame);
    return 0;
}

/* ---- bulk --------------------------------------------------------------------------------- */

struct bulk {
    int fd;
    size_t size, frames;
    bool use_conn;
    double seconds;
    unsigned long allocs;
};

static void *
bulk_receiver(void *arg)
{
    struct bulk *b = arg;
    pin(1);
    if (b->use_conn) {
        struct tcpmsg_codec codec;
        tcpmsg_codec_init_length(&codec, NULL);
        struct tcpmsg_conn *c;
        int r = tcpmsg_conn_open(&c, b->fd, &codec, NULL);
        if (r < 0)
            die("open", r);
        for (size_t i = 0; i < b->frames; i++) {
            struct tcpmsg_frame f;
            if ((r = tcpmsg_conn_recv(c, &f, TCPMSG_FOREVER)) < 0 || f.len != b->size)
                die("recv", r);
        }
        tcpmsg_conn_detach(c, &(void *){0}, &(size_t){0});
    } else {
        uint8_t *buf = malloc(4 + b->size);
        for (size_t i = 0; i < b->frames; i++) {
            read_all(b->fd, buf, 4);
            size_t len = (size_t)buf[0] << 24 | (size_t)buf[1] << 16 | (size_t)buf[2] << 8 | buf[3];
            if (len != b->size)
                die("frame size", -EPROTO);
            read_all(b->fd, buf + 4, len);
        }
        free(buf);
    }
    return NULL;
}

static double
bulk_run(bool use_conn, size_t size, size_t frames, unsigned long *allocs_out)
{
    int lfd = tcpmsg_sock_listen("127.0.0.1", "0", NULL);
    char port[16];
    snprintf(port, sizeof port, "%d", tcpmsg_sock_port(lfd));
    int wfd = tcpmsg_sock_connect("127.0.0.1", port, NULL, tcpmsg_deadline_in(5000));
    int rfd = tcpmsg_sock_accept(lfd, NULL, NULL, tcpmsg_deadline_in(5000));
    if (lfd < 0 || wfd < 0 || rfd < 0)
        die("bulk sockets", wfd < 0 ? wfd : rfd);
    tcpmsg_sock_close(lfd);
    struct bulk b = {.fd = rfd, .size = size, .frames = frames, .use_conn = use_conn};
    uint8_t *payload = malloc(4 + size);
    memset(payload, 'b', 4 + size);
    payload[0] = (uint8_t)(size >> 24), payload[1] = (uint8_t)(size >> 16);
    payload[2] = (uint8_t)(size >> 8), payload[3] = (uint8_t)size;
    struct tcpmsg_codec codec;
    tcpmsg_codec_init_length(&codec, NULL);
    struct tcpmsg_conn *c = NULL;
    if (use_conn && tcpmsg_conn_open(&c, wfd, &codec, NULL) < 0)
        die("open", 0);
    pin(0);
    pthread_t t;
    unsigned long a0 = atomic_load(&allocs);
    double start = now();
    pthread_create(&t, NULL, bulk_receiver, &b);
    for (size_t i = 0; i < frames; i++) {
        if (use_conn) {
            int r = tcpmsg_conn_send(c, payload + 4, size, TCPMSG_FOREVER);
            if (r < 0)
                die("send", r);
        } else {
            write_all(wfd, payload, 4 + size);
        }
    }
    pthread_join(t, NULL);
    double el = now() - start;
    *allocs_out = atomic_load(&allocs) - a0;
    if (c)
        tcpmsg_conn_close(c, TCPMSG_NOWAIT);
    else
        close(wfd);
    close(rfd);
    free(payload);
    return el;
}

static int
bulk(size_t size, size_t mib)
{
    size_t frames = mib * 1024 * 1024 / size;
    unsigned long a;
    bulk_run(false, size, frames / 4, &a); /* warm up */
    bulk_run(true, size, frames / 4, &a);
    enum { REPS = 5 };
    double plain[REPS], conn[REPS];
    unsigned long conn_allocs = 0;
    for (int i = 0; i < REPS; i++) {
        plain[i] = bulk_run(false, size, frames, &a);
        conn[i] = bulk_run(true, size, frames, &a);
        conn_allocs += a;
    }
    qsort(plain, REPS, sizeof plain[0], cmp_double);
    qsort(conn, REPS, sizeof conn[0], cmp_double);
    double bytes = (double)frames * (double)size;
    printf("{\"bench\": \"bulk\", \"size\": %zu, \"frames\": %zu, \"plain_gbps\": %.3f, "
           "\"conn_gbps\": %.3f, \"plain_spread_gbps\": %.3f, \"conn_spread_gbps\": %.3f, "
           "\"ratio\": %.3f, \"allocs_per_msg\": %.4f}\n",
           size, frames, bytes / plain[REPS / 2] / 1e9, bytes / conn[REPS / 2] / 1e9,
           bytes / plain[0] / 1e9 - bytes / plain[REPS - 1] / 1e9,
           bytes / conn[0] / 1e9 - bytes / conn[REPS - 1] / 1e9, plain[REPS / 2] / conn[REPS / 2],
           (double)conn_allocs / REPS / (double)frames);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "pingpong") == 0)
        return pingpong(argv[2], argc > 3 ? (size_t)atol(argv[3]) : 64,
                        argc > 4 ? atoi(argv[4]) : 20000);
    if (argc >= 2 && strcmp(argv[1], "bulk") == 0)
        return bulk(argc > 2 ? (size_t)atol(argv[2]) : 1048576,
                    argc > 3 ? (size_t)atol(argv[3]) : 2048);
    fprintf(stderr, "usage: bench_conn pingpong PORT [SIZE] [ROUNDS] | bulk [SIZE] [MIB]\n");
    return 2;
}
