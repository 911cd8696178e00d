/* Connecting under one deadline, trying every address, Happy Eyeballs style (RFC 8305). */
#include "tcpmsg/sock.h"

#include "io_internal.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_ATTEMPT_DELAY_MS 250

/* Starts a non-blocking connect to a. Returns the fd (connected or in progress, *done tells
 * which) or a negated errno. */
static int
start_attempt(const struct tcpmsg_addr *a, const struct tcpmsg_connect_opts *o, bool *done)
{
    *done = false;
    bool un = a->u.sa.sa_family == AF_UNIX;
    int fd =
        socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, un ? 0 : IPPROTO_TCP);
    if (fd < 0)
        return -errno;
    int r = 0;
    if (o->sndbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &o->sndbuf, sizeof o->sndbuf) < 0)
        r = -errno;
    if (r == 0 && o->rcvbuf > 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof o->rcvbuf) < 0)
        r = -errno;
    if (r == 0 && !un && (o->bind_host || o->bind_service)) {
        struct tcpmsg_addr local;
        enum tcpmsg_family fam = (enum tcpmsg_family)tcpmsg_addr_family(a);
        r = tcpmsg_addr_resolve(o->bind_host, o->bind_service, fam, TCPMSG_RESOLVE_PASSIVE, &local,
                                1);
        if (r > 0) {
            /* Concurrent attempts may share the local port; so may a quick reconnect. */
            int one = 1;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            r = bind(fd, &local.u.sa, local.len) < 0 ? -errno : 0;
        }
    }
    if (r == 0) {
        while ((r = connect(fd, &a->u.sa, a->len)) < 0 && errno == EINTR)
            ;
        if (r == 0)
            *done = true;
        else if (errno == EINPROGRESS)
            r = 0;
        else
            r = -errno;
    }
    if (r < 0) {
        tcpmsg__close_quietly(fd);
        return r;
    }
    return fd;
}

/* Makes a winning socket blocking again: the fds this API returns are blocking. */
static int
finish_winner(int fd)
{
    int r = tcpmsg__set_nonblock(fd, 0);
    if (r < 0) {
        tcpmsg__close_quietly(fd);
        return r;
    }
    return fd;
}

void
tcpmsg__he_begin(struct tcpmsg__he *he, const struct tcpmsg_addr *addrs, size_t n,
                 const struct tcpmsg_connect_opts *opts)
{
    memset(he, 0, sizeof *he);
    he->addrs = addrs;
    he->n = n;
    he->opts = *opts;
    he->delay = opts->attempt_delay_ms == 0 ? DEFAULT_ATTEMPT_DELAY_MS : opts->attempt_delay_ms;
}

/* An attempt failed with err: forgotten, and the next address may start at once. */
static void
he_failed(struct tcpmsg__he *he, size_t i, int err)
{
    if (!he->first_err)
        he->first_err = err;
    tcpmsg__close_quietly(he->fds[i].fd);
    he->fds[i] = he->fds[--he->npend];
    he->next_start = 0;
}

int
tcpmsg__he_advance(struct tcpmsg__he *he, int wait_ms)
{
    /* Start the next attempt when nothing is pending, or when the delay is over. */
    for (;;) {
        bool may_start = he->next < he->n && he->npend < TCPMSG__HE_INFLIGHT &&
                         (he->npend == 0 || (he->delay > 0 && tcpmsg_now_ms() >= he->next_start));
        if (!may_start)
            break;
        const struct tcpmsg_addr *a = &he->addrs[he->next++];
        if (tcpmsg_addr_family(a) == 0) {
            if (!he->first_err)
                he->first_err = -EAFNOSUPPORT;
            continue;
        }
        bool done;
        int fd = start_attempt(a, &he->opts, &done);
        if (fd >= 0 && done) {
            tcpmsg__he_abort(he);
            return fd;
        }
        if (fd < 0) {
            if (!he->first_err)
                he->first_err = fd;
            he->next_start = 0;
            continue; /* failed at once: the next address starts now */
        }
        he->fds[he->npend++] = (struct pollfd){.fd = fd, .events = POLLOUT};
        he->next_start = he->delay > 0 ? tcpmsg_now_ms() + he->delay : 0;
    }
    if (he->npend == 0)
        return he->first_err ? he->first_err : -ECONNREFUSED; /* every address failed */
    int r = poll(he->fds, he->npend, wait_ms);
    if (r < 0)
        return errno == EINTR ? TCPMSG__HE_PENDING : -errno;
    for (size_t i = 0; r > 0 && i < he->npend;) {
        if (!he->fds[i].revents) {
            i++;
            continue;
        }
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(he->fds[i].fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err == 0) {
            int fd = he->fds[i].fd;
            he->fds[i] = he->fds[--he->npend];
            tcpmsg__he_abort(he);
            return fd;
        }
        he_failed(he, i, -err);
    }
    if (he->npend == 0 && he->next >= he->n)
        return he->first_err ? he->first_err : -ECONNREFUSED;
    return TCPMSG__HE_PENDING;
}

int64_t
tcpmsg__he_next_start(const struct tcpmsg__he *he)
{
    if (he->next >= he->n || he->npend >= TCPMSG__HE_INFLIGHT)
        return INT64_MAX;
    if (he->npend == 0 || he->next_start == 0)
        return 0;
    return he->delay > 0 ? he->next_start : INT64_MAX;
}

void
tcpmsg__he_abort(struct tcpmsg__he *he)
{
    for (size_t i = 0; i < he->npend; i++)
        tcpmsg__close_quietly(he->fds[i].fd);
    he->npend = 0;
}

int
tcpmsg_sock_connect_addr(const struct tcpmsg_addr *addrs, size_t n,
                         const struct tcpmsg_connect_opts *opts, int64_t deadline)
{
    static const struct tcpmsg_connect_opts defaults;
    if (!opts)
        opts = &defaults;
    if (!addrs || n == 0 || opts->sndbuf < 0 || opts->rcvbuf < 0)
        return -EINVAL;
    struct tcpmsg__he he;
    tcpmsg__he_begin(&he, addrs, n, opts);
    for (int first = 1;; first = 0) {
        if (!first && tcpmsg_deadline_left(deadline) == 0) {
            tcpmsg__he_abort(&he);
            return -ETIMEDOUT; /* a timeout beats every other reason */
        }
        int64_t until = deadline, next = tcpmsg__he_next_start(&he);
        if (next != INT64_MAX && next != 0)
            until = tcpmsg_deadline_min(deadline, next);
        int r = tcpmsg__he_advance(&he, first ? 0 : tcpmsg_deadline_left(until));
        if (r >= 0)
            return finish_winner(r);
        if (r != TCPMSG__HE_PENDING)
            return r;
    }
}

int
tcpmsg__resolve_ordered(const char *host, const char *service, enum tcpmsg_family family,
                        struct tcpmsg_addr *out, int cap)
{
    struct tcpmsg_addr a[16];
    if (cap > 16)
        cap = 16;
    int n = tcpmsg_addr_resolve(host, service, family, 0, a, cap);
    if (n <= 0)
        return n;
    /* RFC 8305 section 4: keep the resolver's preference, but alternate families, starting
     * with the family of the preferred address, so that a broken IPv6 path costs one
     * attempt delay and not one per IPv6 address. */
    bool used[16] = {false};
    int want = tcpmsg_addr_family(&a[0]);
    for (int k = 0; k < n; k++) {
        int pick = -1;
        for (int i = 0; i < n && pick < 0; i++)
            if (!used[i] && tcpmsg_addr_family(&a[i]) == want)
                pick = i;
        for (int i = 0; i < n && pick < 0; i++)
            if (!used[i])
                pick = i;
        if (pick < 0)
            break; /* never: k < n of the n addresses are used */
        used[pick] = true;
        out[k] = a[pick];
        want = want == TCPMSG_FAMILY_V6 ? TCPMSG_FAMILY_V4 : TCPMSG_FAMILY_V6;
    }
    return n;
}

int
tcpmsg_sock_connect(const char *host, const char *service, const struct tcpmsg_connect_opts *opts,
                    int64_t deadline)
{
    static const struct tcpmsg_connect_opts defaults;
    if (!opts)
        opts = &defaults;
    if ((!service || service[0] == '\0') && !tcpmsg__is_unix(host))
        return -EINVAL; /* there is no port 0 to connect to */
    struct tcpmsg_addr order[16];
    int n = tcpmsg__resolve_ordered(host, service, opts->family, order, 16);
    if (n < 0)
        return n;
    return tcpmsg_sock_connect_addr(order, (size_t)n, opts, deadline);
}
