/* Connecting under one deadline, trying every address, Happy Eyeballs style (RFC 8305). */
#include "tcpmsg/sock.h"

#include "io_internal.h"

#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_ATTEMPT_DELAY_MS 250
#define MAX_INFLIGHT 16

/* Starts a non-blocking connect to a. Returns the fd (connected or in progress, *done tells
 * which) or a negated errno. */
static int
start_attempt(const struct tcpmsg_addr *a, const struct tcpmsg_connect_opts *o, bool *done)
{
    *done = false;
    int fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0)
        return -errno;
    int r = 0;
    if (o->sndbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &o->sndbuf, sizeof o->sndbuf) < 0)
        r = -errno;
    if (r == 0 && o->rcvbuf > 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof o->rcvbuf) < 0)
        r = -errno;
    if (r == 0 && (o->bind_host || o->bind_service)) {
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

int
tcpmsg_sock_connect_addr(const struct tcpmsg_addr *addrs, size_t n,
                         const struct tcpmsg_connect_opts *opts, int64_t deadline)
{
    static const struct tcpmsg_connect_opts defaults;
    if (!opts)
        opts = &defaults;
    if (!addrs || n == 0 || opts->sndbuf < 0 || opts->rcvbuf < 0)
        return -EINVAL;
    const int64_t delay =
        opts->attempt_delay_ms == 0 ? DEFAULT_ATTEMPT_DELAY_MS : opts->attempt_delay_ms;

    struct pollfd pend[MAX_INFLIGHT];
    size_t npend = 0, next = 0;
    int first_err = 0, winner = -1;
    int64_t next_start = 0; /* when the next attempt may start (0: at once) */

    for (;;) {
        /* Start the next attempt when nothing is pending, or when the delay is over. */
        bool may_start = next < n && npend < MAX_INFLIGHT &&
                         (npend == 0 || (delay > 0 && tcpmsg_now_ms() >= next_start));
        if (may_start) {
            if (deadline >= 0 && tcpmsg_deadline_left(deadline) == 0 && npend == 0 && next > 0) {
                first_err = -ETIMEDOUT;
                break;
            }
            if (tcpmsg_addr_family(&addrs[next]) == 0) {
                if (!first_err)
                    first_err = -EAFNOSUPPORT;
                next++;
                continue;
            }
            bool done;
            int fd = start_attempt(&addrs[next++], opts, &done);
            if (fd >= 0 && done) {
                winner = fd;
                break;
            }
            if (fd < 0) {
                if (!first_err)
                    first_err = fd;
                next_start = 0;
                continue; /* failed at once: the next address starts now */
            }
            pend[npend++] = (struct pollfd){.fd = fd, .events = POLLOUT};
            next_start = delay > 0 ? tcpmsg_now_ms() + delay : 0;
            continue;
        }
        if (npend == 0)
            break; /* every address failed */

        int64_t until = deadline;
        if (next < n && delay > 0 && npend < MAX_INFLIGHT)
            until = tcpmsg_deadline_min(deadline, next_start);
        int r = poll(pend, npend, tcpmsg_deadline_left(until));
        if (r < 0 && errno != EINTR) {
            first_err = -errno;
            break;
        }
        if (r == 0 && until == deadline) {
            first_err = -ETIMEDOUT; /* a timeout beats every other reason */
            break;
        }
        for (size_t i = 0; r > 0 && i < npend;) {
            if (!pend[i].revents) {
                i++;
                continue;
            }
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(pend[i].fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
            if (err == 0) {
                winner = pend[i].fd;
                pend[i] = pend[--npend];
                break;
            }
            /* This address failed: forget it, and let the next one start at once. */
            if (!first_err)
                first_err = -err;
            tcpmsg__close_quietly(pend[i].fd);
            pend[i] = pend[--npend];
            next_start = 0;
        }
        if (winner >= 0)
            break;
    }
    for (size_t i = 0; i < npend; i++)
        tcpmsg__close_quietly(pend[i].fd);
    if (winner >= 0)
        return finish_winner(winner);
    return first_err ? first_err : -ECONNREFUSED;
}

int
tcpmsg_sock_connect(const char *host, const char *service, const struct tcpmsg_connect_opts *opts,
                    int64_t deadline)
{
    static const struct tcpmsg_connect_opts defaults;
    if (!opts)
        opts = &defaults;
    if (!service || service[0] == '\0')
        return -EINVAL; /* there is no port 0 to connect to */
    struct tcpmsg_addr a[16], order[16];
    int n = tcpmsg_addr_resolve(host, service, opts->family, 0, a, 16);
    if (n < 0)
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
        order[k] = a[pick];
        want = want == TCPMSG_FAMILY_V6 ? TCPMSG_FAMILY_V4 : TCPMSG_FAMILY_V6;
    }
    return tcpmsg_sock_connect_addr(order, (size_t)n, opts, deadline);
}
