#include "nettest.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int
nt_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own fd */
}

static int fd_baseline;

void
nt_fd_setup(void)
{
    fd_baseline = nt_fd_count();
}

void
nt_fd_teardown(void)
{
    ck_assert_int_eq(nt_fd_count(), fd_baseline);
}

int
nt_listen(const char *host, int *port)
{
    int fd = tcpmsg_sock_listen(host, "0", NULL);
    ck_assert_int_ge(fd, 0);
    int p = tcpmsg_sock_port(fd);
    ck_assert_int_gt(p, 0);
    if (port)
        *port = p;
    return fd;
}

const char *
nt_service(int port)
{
    static _Thread_local char buf[4][8]; /* per thread: client threads call it at once */
    static _Thread_local unsigned slot;
    char *s = buf[slot++ % 4];
    snprintf(s, sizeof buf[0], "%d", port);
    return s;
}

static void
pair(const char *host, int *client, int *server, int bufsize)
{
    struct tcpmsg_listen_opts lo = {.sndbuf = bufsize, .rcvbuf = bufsize};
    struct tcpmsg_connect_opts co = {.sndbuf = bufsize, .rcvbuf = bufsize};
    int lfd = tcpmsg_sock_listen(host, "0", &lo);
    ck_assert_int_ge(lfd, 0);
    int port = tcpmsg_sock_port(lfd);
    *client = tcpmsg_sock_connect(host, nt_service(port), &co, tcpmsg_deadline_in(5000));
    ck_assert_int_ge(*client, 0);
    *server = tcpmsg_sock_accept(lfd, NULL, NULL, tcpmsg_deadline_in(5000));
    ck_assert_int_ge(*server, 0);
    close(lfd);
}

void
nt_pair(const char *host, int *client, int *server)
{
    pair(host, client, server, 0);
}

void
nt_pair_tiny(const char *host, int *client, int *server)
{
    pair(host, client, server, 1); /* the kernel raises it to its minimum */
}

void
nt_fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

void
nt_fill_letters(uint8_t *p, size_t n, uint32_t seed)
{
    nt_fill(p, n, seed);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)('a' + p[i] % 26);
}

void
nt_start(struct nt_thread *t, void *(*fn)(void *), void *arg)
{
    ck_assert_int_eq(pthread_create(&t->t, NULL, fn, arg), 0);
}

void *
nt_join(struct nt_thread *t)
{
    void *r = NULL;
    ck_assert_int_eq(pthread_join(t->t, &r), 0);
    return r;
}

bool
nt_send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        b += k;
        n -= (size_t)k;
    }
    return true;
}

bool
nt_recv_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t k = recv(fd, b, n, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        b += k;
        n -= (size_t)k;
    }
    return true;
}

long
nt_drain(int fd)
{
    static uint8_t buf[65536];
    long total = 0;
    for (;;) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return total;
        total += k;
    }
}

void
nt_blackhole_open(struct nt_blackhole *b, const char *host)
{
    memset(b, 0, sizeof *b);
    struct tcpmsg_listen_opts lo = {.backlog = 1};
    b->lfd = tcpmsg_sock_listen(host, "0", &lo);
    ck_assert_int_ge(b->lfd, 0);
    b->port = tcpmsg_sock_port(b->lfd);
    /* Fill the accept queue until a connection no longer completes. The kernel queues
     * backlog + 1 connections; the bound is generous and the loop stops at the first
     * timeout, which is what makes the address a black hole. */
    for (;;) {
        ck_assert_msg(b->nfill < 8, "the accept queue never filled");
        int fd = tcpmsg_sock_connect(host, nt_service(b->port), NULL, tcpmsg_deadline_in(200));
        if (fd == -ETIMEDOUT)
            break;
        ck_assert_int_ge(fd, 0);
        b->fill[b->nfill++] = fd;
    }
}

void
nt_blackhole_close(struct nt_blackhole *b)
{
    for (int i = 0; i < b->nfill; i++)
        close(b->fill[i]);
    close(b->lfd);
}

int
nt_refusing_port(const char *host, int *holder)
{
    struct tcpmsg_addr a;
    ck_assert_int_eq(
        tcpmsg_addr_resolve(host, "0", TCPMSG_FAMILY_ANY, TCPMSG_RESOLVE_NUMERIC, &a, 1), 1);
    int fd = socket(a.u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, &a.u.sa, a.len), 0);
    *holder = fd;
    return tcpmsg_sock_port(fd);
}

static const struct nt_model all_models[] = {
    {"iterative", TCPMSG_MODEL_ITERATIVE, false, 0, false, false},
    {"fork", TCPMSG_MODEL_FORK, false, 0, true, true},
    {"thread", TCPMSG_MODEL_THREAD, false, 0, true, false},
    {"pool", TCPMSG_MODEL_POOL, false, 3, false, true},
    {"pool-threads", TCPMSG_MODEL_POOL, true, 3, false, false},
    {"event", TCPMSG_MODEL_EVENT, false, 1, true, false},
    {"event-2", TCPMSG_MODEL_EVENT, false, 2, true, false},
};

int
nt_models(const char *who, const struct nt_model **out)
{
    static struct nt_model chosen[sizeof all_models / sizeof all_models[0]];
    const char *only = getenv("TCPMSG_TEST_MODELS");
    int n = 0;
    for (size_t i = 0; i < sizeof all_models / sizeof all_models[0]; i++) {
        if (only && *only) {
            char list[256], key[64];
            snprintf(list, sizeof list, ",%s,", only);
            snprintf(key, sizeof key, ",%s,", all_models[i].name);
            if (!strstr(list, key))
                continue;
        }
        chosen[n++] = all_models[i];
    }
    if (only && *only)
        fprintf(stderr, "%s: models restricted by TCPMSG_TEST_MODELS to %s\n", who, only);
    *out = chosen;
    return n;
}


bool
nt_ktls(void)
{
    const char *k = getenv("TCPMSG_TEST_KTLS");
    return k && strcmp(k, "1") == 0;
}

bool
nt_eventually(bool (*cond)(void *), void *arg)
{
    int64_t dl = tcpmsg_deadline_in(20000);
    while (!cond(arg)) {
        if (tcpmsg_deadline_left(dl) == 0)
            return false;
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling a condition, not timing anything */
    }
    return true;
}

struct tcpmsg_server *
nt_server(const struct tcpmsg_server_config *cfg, const struct tcpmsg_handler *h)
{
    struct tcpmsg_server *s;
    int r = tcpmsg_server_create(&s, cfg, h);
    ck_assert_msg(r == 0, "server create: %s", tcpmsg_errname(r));
    ck_assert_int_eq(tcpmsg_server_start(s), 0);
    return s;
}

void
nt_server_end(struct tcpmsg_server *s)
{
    tcpmsg_server_stop(s);
    ck_assert_int_eq(tcpmsg_server_wait(s), 0);
    tcpmsg_server_destroy(s);
}

struct tcpmsg_conn *
nt_client(struct tcpmsg_server *s, const struct tcpmsg_codec *codec)
{
    struct tcpmsg_conn *c;
    int r = tcpmsg_conn_connect(&c, "127.0.0.1", nt_service(tcpmsg_server_port(s)), codec, NULL,
                                tcpmsg_deadline_in(60000));
    ck_assert_msg(r == 0, "connect: %s", tcpmsg_errname(r));
    return c;
}
