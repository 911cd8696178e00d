/* bench_loop: the EVENT loop as a platform, against its references (tests/bench/run.py).
 *
 *   bench_loop xthread PRODUCERS FRAMES [libtcpmsg|libuv]   cross-thread sends into a loop
 *   bench_loop dial PORT CONNS DEPTH SIZE SECONDS WARMUP
 *                                         the loop as a client of a len32 echo server
 *
 * xthread: PRODUCERS threads each hand FRAMES frames of 64 bytes to one event loop, which
 * writes them (len32-framed) to one loopback TCP connection; a reader thread counts the
 * bytes. Two implementations run one after the other in the same process: libtcpmsg's
 * tcpmsg_server_send into an EVENT worker (retried on -EAGAIN, its bound), and libuv's
 * idiom, a mutex-protected queue and uv_async_send, whose callback takes the whole queue
 * and writes it with one uv_write (libuv coalesces async sends, so the queue is what keeps
 * every frame). Each prints one JSON line: frames/s from the first send to the last byte
 * read.
 *
 * dial: one EVENT worker with no listener opens CONNS connections to 127.0.0.1:PORT with
 * tcpmsg_worker_dial and keeps DEPTH frames of SIZE bytes in flight on each (every echo
 * answered with a new frame); after WARMUP seconds it counts echoes for SECONDS. The
 * reference is the raw-epoll load generator (loadgen) in the same scenario. */
#define _GNU_SOURCE
#include <tcpmsg.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef BENCH_LOOP_LIBUV
#include <uv.h>
#endif

#include "bench_clock.h"

#define FRAME 64

static _Noreturn void
die(const char *what, int r)
{
    fprintf(stderr, "bench_loop: %s: %s\n", what, tcpmsg_strerror(r));
    exit(1);
}

/* ---- xthread: the reader and the producers ------------------------------------------------ */

struct reader {
    int fd;
    uint64_t want; /* bytes */
    pthread_t t;
};

static void *
read_all(void *arg)
{
    struct reader *r = arg;
    static uint8_t buf[1 << 16];
    uint64_t got = 0;
    while (got < r->want) {
        ssize_t n = recv(r->fd, buf, sizeof buf, 0);
        if (n <= 0) {
            fprintf(stderr, "bench_loop: reader: %s\n", n ? strerror(errno) : "end of stream");
            exit(1);
        }
        got += (uint64_t)n;
    }
    return NULL;
}

static int
connect_to(int port)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    int fd = tcpmsg_sock_connect("127.0.0.1", p, NULL, tcpmsg_deadline_in(10000));
    if (fd < 0)
        die("connect", fd);
    return fd;
}

struct producer {
    pthread_t t;
    int frames;
    void (*send)(const uint8_t *frame, void *ctx);
    void *ctx;
};

static atomic_int go;

static void *
produce(void *arg)
{
    struct producer *p = arg;
    uint8_t frame[FRAME];
    memset(frame, 'x', sizeof frame);
    while (!atomic_load(&go))
        sched_yield();
    for (int i = 0; i < p->frames; i++) {
        memcpy(frame, &i, sizeof i);
        p->send(frame, p->ctx);
    }
    return NULL;
}

/* Runs the producers against send, the reader against fd; returns frames/s. */
static double
run_xthread(int nprod, int frames, int fd, void (*send)(const uint8_t *, void *), void *ctx)
{
    struct reader rd = {.fd = fd, .want = (uint64_t)nprod * (uint64_t)frames * (FRAME + 4)};
    struct producer *ps = calloc((size_t)nprod, sizeof *ps);
    if (!ps)
        die("calloc", -ENOMEM);
    atomic_store(&go, 0);
    for (int i = 0; i < nprod; i++) {
        ps[i] = (struct producer){.frames = frames, .send = send, .ctx = ctx};
        pthread_create(&ps[i].t, NULL, produce, &ps[i]);
    }
    pthread_create(&rd.t, NULL, read_all, &rd);
    double t0 = now();
    atomic_store(&go, 1);
    pthread_join(rd.t, NULL);
    double dt = now() - t0;
    for (int i = 0; i < nprod; i++)
        pthread_join(ps[i].t, NULL);
    free(ps);
    return (double)nprod * frames / dt;
}

/* libtcpmsg: the connection's handle, from its on_open. */
static struct tcpmsg_server *xs;
static _Atomic uint64_t xhandle;
static atomic_long xretries;

static int
x_open(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    atomic_store(&xhandle, tcpmsg_conn_handle(c));
    return 0;
}

static int
x_message(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)c, (void)m, (void)user;
    return 0;
}

static void
x_send(const uint8_t *frame, void *ctx)
{
    (void)ctx;
    int r;
    while ((r = tcpmsg_server_send(xs, atomic_load(&xhandle), frame, FRAME)) == -EAGAIN) {
        atomic_fetch_add(&xretries, 1);
        sched_yield(); /* the loop is behind: its bound, not a loss */
    }
    if (r < 0)
        die("tcpmsg_server_send", r);
}

static void
xthread_libtcpmsg(int nprod, int frames)
{
    struct tcpmsg_server_config cfg = {.host = "127.0.0.1", .workers = 1,
                                       .idle_timeout_ms = -1,
                                       .conn = {.max_output = (size_t)1 << 30}};
    struct tcpmsg_handler h = {.on_open = x_open, .on_message = x_message};
    int r = tcpmsg_server_create(&xs, &cfg, &h);
    if (r < 0 || (r = tcpmsg_server_start(xs)) < 0)
        die("server", r);
    int fd = connect_to(tcpmsg_server_port(xs));
    while (!atomic_load(&xhandle))
        sched_yield();
    double rate = run_xthread(nprod, frames, fd, x_send, NULL);
    printf("{\"bench\": \"xthread\", \"impl\": \"libtcpmsg\", \"producers\": %d, "
           "\"frames_per_s\": %.0f, \"retries\": %ld}\n",
           nprod, rate, atomic_load(&xretries));
    fflush(stdout);
    tcpmsg_sock_close(fd);
    tcpmsg_server_stop(xs);
    tcpmsg_server_wait(xs);
    tcpmsg_server_destroy(xs);
}

#ifdef BENCH_LOOP_LIBUV
/* libuv: a queue under a mutex, uv_async_send to wake the loop. */
struct item {
    struct item *next;
    uint8_t bytes[FRAME + 4];
};

static struct {
    uv_loop_t loop;
    uv_tcp_t server, client;
    uv_async_t async, stop;
    pthread_mutex_t mu;
    struct item *head, **tail;
    atomic_int ready;
    int port;
} U;

struct wreq {
    uv_write_t req;
    char *buf;
};

static void
u_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    if (status < 0) {
        fprintf(stderr, "bench_loop: uv_write: %s\n", uv_strerror(status));
        exit(1);
    }
    free(w->buf);
    free(w);
}

static void
u_drain(uv_async_t *a)
{
    (void)a;
    pthread_mutex_lock(&U.mu);
    struct item *it = U.head;
    U.head = NULL;
    U.tail = &U.head;
    pthread_mutex_unlock(&U.mu);
    size_t n = 0;
    for (struct item *p = it; p; p = p->next)
        n++;
    if (!n)
        return;
    struct wreq *w = malloc(sizeof *w);
    w->buf = malloc(n * (FRAME + 4));
    size_t off = 0;
    while (it) {
        struct item *next = it->next;
        memcpy(w->buf + off, it->bytes, FRAME + 4);
        off += FRAME + 4;
        free(it);
        it = next;
    }
    uv_buf_t b = uv_buf_init(w->buf, (unsigned)off);
    uv_write(&w->req, (uv_stream_t *)&U.client, &b, 1, u_written);
}

static void
u_stop(uv_async_t *a)
{
    (void)a;
    uv_stop(&U.loop);
}

static void
u_accept(uv_stream_t *srv, int status)
{
    if (status < 0 || uv_tcp_init(&U.loop, &U.client) < 0 ||
        uv_accept(srv, (uv_stream_t *)&U.client) < 0) {
        fprintf(stderr, "bench_loop: uv accept failed\n");
        exit(1);
    }
    uv_tcp_nodelay(&U.client, 1);
    atomic_store(&U.ready, 1);
}

static void *
u_run(void *arg)
{
    (void)arg;
    uv_run(&U.loop, UV_RUN_DEFAULT);
    return NULL;
}

static void
u_send(const uint8_t *frame, void *ctx)
{
    (void)ctx;
    struct item *it = malloc(sizeof *it);
    if (!it)
        die("malloc", -ENOMEM);
    it->next = NULL;
    it->bytes[0] = 0, it->bytes[1] = 0, it->bytes[2] = 0, it->bytes[3] = FRAME;
    memcpy(it->bytes + 4, frame, FRAME);
    pthread_mutex_lock(&U.mu);
    *U.tail = it;
    U.tail = &it->next;
    pthread_mutex_unlock(&U.mu);
    uv_async_send(&U.async);
}

static void
xthread_libuv(int nprod, int frames)
{
    uv_loop_init(&U.loop);
    pthread_mutex_init(&U.mu, NULL);
    U.tail = &U.head;
    uv_async_init(&U.loop, &U.async, u_drain);
    uv_async_init(&U.loop, &U.stop, u_stop);
    uv_tcp_init(&U.loop, &U.server);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    if (uv_tcp_bind(&U.server, (const struct sockaddr *)&a, 0) < 0 ||
        uv_listen((uv_stream_t *)&U.server, 16, u_accept) < 0)
        die("uv listen", -EIO);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&U.server, (struct sockaddr *)&got, &len);
    pthread_t t;
    pthread_create(&t, NULL, u_run, NULL);
    int fd = connect_to(ntohs(got.sin_port));
    while (!atomic_load(&U.ready))
        sched_yield();
    double rate = run_xthread(nprod, frames, fd, u_send, NULL);
    printf("{\"bench\": \"xthread\", \"impl\": \"libuv\", \"producers\": %d, "
           "\"frames_per_s\": %.0f}\n",
           nprod, rate);
    fflush(stdout);
    uv_async_send(&U.stop);
    pthread_join(t, NULL);
    close(fd);
}
#endif

/* ---- dial: the loop as a client ----------------------------------------------------------- */

static struct {
    const char *port;
    int conns, depth;
    size_t size;
    double seconds, warmup;
    uint8_t *frame;
    int opened;
    uint64_t echoed, counted;
    int64_t start_ms, counting_from;
    int errors;
} D;

static void
d_down(struct tcpmsg_worker *w, uint64_t id, int reason, int64_t retry_ms, void *arg)
{
    (void)w, (void)id, (void)retry_ms, (void)arg;
    if (reason != TCPMSG_EOF && reason != -ESHUTDOWN && reason != -ECANCELED)
        D.errors++;
}

static void
d_stop(struct tcpmsg_worker *w, uint64_t id, void *arg)
{
    (void)id, (void)arg;
    tcpmsg_server_stop(tcpmsg_worker_server(w));
}

static void
d_mark(struct tcpmsg_worker *w, uint64_t id, void *arg)
{
    (void)w, (void)id, (void)arg;
    D.counted = D.echoed;
    D.counting_from = tcpmsg_now_ms();
}

static void
d_start(struct tcpmsg_worker *w, void *user)
{
    (void)user;
    struct tcpmsg_dial_opts o = {.on_down = d_down, .connect_timeout_ms = 30000};
    for (int i = 0; i < D.conns; i++)
        if (tcpmsg_worker_dial(w, "127.0.0.1", D.port, &o, NULL) < 0)
            D.errors++;
}

static int
d_open(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    if (++D.opened == D.conns) {
        /* Every connection is up: the warm-up, then the measured time. */
        struct tcpmsg_worker *w = tcpmsg_conn_worker(c);
        tcpmsg_worker_timer_start(w, (int64_t)(D.warmup * 1000), 0, d_mark, NULL, NULL);
        tcpmsg_worker_timer_start(w, (int64_t)((D.warmup + D.seconds) * 1000), 0, d_stop, NULL,
                                  NULL);
    }
    for (int i = 0; i < D.depth; i++)
        if (tcpmsg_conn_send(c, D.frame, D.size, TCPMSG_NOWAIT) < 0)
            return -EIO;
    return 0;
}

static int
d_message(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    if (m->len != D.size) {
        D.errors++;
        return -EPROTO;
    }
    D.echoed++;
    return tcpmsg_conn_send(c, D.frame, D.size, TCPMSG_NOWAIT);
}

static int
dial_bench(char **argv)
{
    D.port = argv[0];
    D.conns = atoi(argv[1]);
    D.depth = atoi(argv[2]);
    D.size = (size_t)atol(argv[3]);
    D.seconds = atof(argv[4]);
    D.warmup = atof(argv[5]);
    D.frame = malloc(D.size ? D.size : 1);
    memset(D.frame, 'd', D.size);
    struct tcpmsg_server_config cfg = {.no_listener = true, .workers = 1,
                                       .max_conns = D.conns + 16, .idle_timeout_ms = -1};
    struct tcpmsg_handler h = {.on_worker_start = d_start, .on_open = d_open,
                               .on_message = d_message};
    struct tcpmsg_server *s;
    int r = tcpmsg_server_create(&s, &cfg, &h);
    if (r < 0 || (r = tcpmsg_server_run(s)) < 0)
        die("client", r);
    tcpmsg_server_destroy(s);
    double dt = (double)(tcpmsg_now_ms() - D.counting_from) / 1000.0;
    if (D.opened != D.conns || !D.counting_from) {
        fprintf(stderr, "bench_loop: %d of %d connections opened\n", D.opened, D.conns);
        return 1;
    }
    printf("{\"bench\": \"dial\", \"impl\": \"libtcpmsg-loop\", \"conns\": %d, \"depth\": %d, "
           "\"msgs_per_s\": %.0f, \"errors\": %d}\n",
           D.conns, D.depth, (double)(D.echoed - D.counted) / (dt > 0 ? dt : 1), D.errors);
    free(D.frame);
    return D.errors ? 1 : 0;
}

int
main(int argc, char **argv)
{
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "xthread") == 0) {
        int nprod = atoi(argv[2]), frames = atoi(argv[3]);
        const char *only = argc == 5 ? argv[4] : ""; /* "libtcpmsg" or "libuv": that one */
        if (strcmp(only, "libuv") != 0)
            xthread_libtcpmsg(nprod, frames);
#ifdef BENCH_LOOP_LIBUV
        if (strcmp(only, "libtcpmsg") != 0)
            xthread_libuv(nprod, frames);
#endif
        return 0;
    }
    if (argc == 8 && strcmp(argv[1], "dial") == 0)
        return dial_bench(argv + 2);
    fprintf(stderr, "usage: bench_loop xthread PRODUCERS FRAMES [libtcpmsg|libuv]\n"
                    "       bench_loop dial PORT CONNS DEPTH SIZE SECONDS WARMUP\n");
    return 2;
}
