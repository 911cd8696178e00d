#include "tcpmsg/sock.h"

#include "io_internal.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

void
tcpmsg__close_quietly(int fd)
{
    if (fd >= 0) {
        int e = errno;
        close(fd);
        errno = e;
    }
}

int
tcpmsg__wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, tcpmsg_deadline_left(deadline));
        if (r > 0) {
            if (p.revents & POLLNVAL)
                return -EBADF;
            return p.revents;
        }
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

int
tcpmsg__set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    int want = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    if (want != fl && fcntl(fd, F_SETFL, want) < 0)
        return -errno;
    return fl;
}

static int
setopt(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof value) < 0 ? -errno : 0;
}

/* A Unix socket file is in the way of bind: removed if it is a socket nothing listens on
 * (connect is refused: its server died), so that a restart after a crash works; a live
 * server's file is never touched. True when the file was removed. */
static bool
unix_stale(const struct tcpmsg_addr *addr)
{
    struct stat st;
    if (addr->u.un.sun_path[0] == '\0' || lstat(addr->u.un.sun_path, &st) < 0 ||
        !S_ISSOCK(st.st_mode))
        return false; /* abstract (the kernel frees those), gone, or not a socket */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0)
        return false;
    int r = connect(probe, &addr->u.sa, addr->len);
    int e = r < 0 ? errno : 0;
    close(probe);
    return r < 0 && e == ECONNREFUSED && unlink(addr->u.un.sun_path) == 0;
}

int
tcpmsg_sock_listen_addr(const struct tcpmsg_addr *addr, const struct tcpmsg_listen_opts *opts)
{
    static const struct tcpmsg_listen_opts defaults;
    if (!opts)
        opts = &defaults;
    int fam = tcpmsg_addr_family(addr);
    if (fam == 0 || (opts->family != TCPMSG_FAMILY_ANY && (int)opts->family != fam) ||
        opts->backlog < 0 || opts->sndbuf < 0 || opts->rcvbuf < 0)
        return -EINVAL;

    bool un = fam == TCPMSG_FAMILY_UNIX;
    int fd = socket(addr->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, un ? 0 : IPPROTO_TCP);
    if (fd < 0)
        return -errno;
    int r = 0;
    if (!opts->no_reuseaddr && !un)
        r = setopt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (r == 0 && opts->reuseport && !un)
        r = setopt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (r == 0 && opts->sndbuf > 0)
        r = setopt(fd, SOL_SOCKET, SO_SNDBUF, opts->sndbuf);
    if (r == 0 && opts->rcvbuf > 0)
        r = setopt(fd, SOL_SOCKET, SO_RCVBUF, opts->rcvbuf);
    /* One socket for both families: IPv4 clients appear as ::ffff:a.b.c.d. Set explicitly,
     * since the system default (net.ipv6.bindv6only) may say otherwise. */
    if (r == 0 && fam == TCPMSG_FAMILY_V6)
        r = setopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, opts->family == TCPMSG_FAMILY_V6);
    if (r == 0 && bind(fd, &addr->u.sa, addr->len) < 0) {
        r = -errno;
        if (r == -EADDRINUSE && un && unix_stale(addr) && bind(fd, &addr->u.sa, addr->len) == 0)
            r = 0; /* a dead server's file, replaced */
    }
    if (r == 0 && un && opts->unix_mode && addr->u.un.sun_path[0] &&
        chmod(addr->u.un.sun_path, (mode_t)opts->unix_mode) < 0)
        r = -errno; /* before listen(): nobody can connect with the umask's bits meanwhile */
    if (r == 0 && listen(fd, opts->backlog > 0 ? opts->backlog : SOMAXCONN) < 0)
        r = -errno;
    if (r < 0) {
        tcpmsg__close_quietly(fd);
        return r;
    }
    return fd;
}

/* Listens on each resolved address in turn; the first that works wins. */
static int
listen_resolved(const char *host, const char *service, enum tcpmsg_family family,
                const struct tcpmsg_listen_opts *opts)
{
    struct tcpmsg_addr a[16];
    int n = tcpmsg_addr_resolve(host, service, family, TCPMSG_RESOLVE_PASSIVE, a, 16);
    if (n < 0)
        return n;
    int first = 0;
    for (int i = 0; i < n; i++) {
        int fd = tcpmsg_sock_listen_addr(&a[i], opts);
        if (fd >= 0)
            return fd;
        if (!first)
            first = fd;
    }
    return first;
}

int
tcpmsg_sock_listen(const char *host, const char *service, const struct tcpmsg_listen_opts *opts)
{
    static const struct tcpmsg_listen_opts defaults;
    if (!opts)
        opts = &defaults;
    if (opts->family != TCPMSG_FAMILY_ANY && opts->family != TCPMSG_FAMILY_V4 &&
        opts->family != TCPMSG_FAMILY_V6)
        return -EINVAL;
    if (tcpmsg__is_unix(host)) {
        struct tcpmsg_addr a;
        int r = tcpmsg_addr_parse(host, &a);
        if (r < 0)
            return r;
        struct tcpmsg_listen_opts o = *opts;
        o.family = TCPMSG_FAMILY_ANY; /* not an IP listener's choice */
        return tcpmsg_sock_listen_addr(&a, &o);
    }
    if (host && host[0] != '\0')
        return listen_resolved(host, service, opts->family, opts);

    /* The wildcard: one IPv6 socket serves both families (the only way to get one port for
     * both without racing another program for the IPv4 half). */
    if (opts->family == TCPMSG_FAMILY_V4)
        return listen_resolved(NULL, service, TCPMSG_FAMILY_V4, opts);
    int fd = listen_resolved(NULL, service, TCPMSG_FAMILY_V6, opts);
    if (fd >= 0 || opts->family == TCPMSG_FAMILY_V6)
        return fd;
    /* No IPv6 on this system (module absent, or disabled by sysctl): IPv4 alone. */
    if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL || fd == -EPROTONOSUPPORT ||
        fd == TCPMSG_EAI_FAMILY || fd == TCPMSG_EAI_ADDRFAMILY || fd == TCPMSG_EAI_NONAME ||
        fd == TCPMSG_EAI_NODATA)
        return listen_resolved(NULL, service, TCPMSG_FAMILY_V4, opts);
    return fd;
}

/* A decimal environment value: 0 and *out, or -EINVAL. */
static int
env_uint(const char *name, unsigned long max, unsigned long *out)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return -ENOENT;
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno || *end || n > max || v[0] == '-')
        return -EINVAL;
    *out = n;
    return 0;
}

int
tcpmsg_sock_inherited(int *fds, char (*names)[TCPMSG_FDNAME_MAX], size_t max)
{
    enum { FIRST = 3 }; /* SD_LISTEN_FDS_START */
    unsigned long pid, n;
    int r = env_uint("LISTEN_PID", (unsigned long)INT32_MAX, &pid);
    if (r == -ENOENT || (r == 0 && pid != (unsigned long)getpid()))
        return 0; /* nothing offered, or offered to another process (our parent) */
    if (r < 0 || (r = env_uint("LISTEN_FDS", 4096, &n)) < 0)
        return r == -ENOENT ? 0 : -EINVAL;
    if ((!fds && max > 0) || n > max) {
        r = n > max ? -E2BIG : -EINVAL;
        goto out;
    }
    const char *all = getenv("LISTEN_FDNAMES");
    for (unsigned long i = 0; i < n; i++) {
        int fd = FIRST + (int)i, type = 0, acc = 0;
        socklen_t len = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM ||
            (len = sizeof acc, getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0) ||
            !acc) {
            r = -EBADF;
            goto out;
        }
        int fl = fcntl(fd, F_GETFD);
        if (fl >= 0)
            (void)fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
        fds[i] = fd;
        if (names) { /* the i-th of "a:b:c", "" past the end */
            const char *p = all ? all : "";
            for (unsigned long k = 0; k < i && p; k++)
                p = strchr(p, ':') ? strchr(p, ':') + 1 : NULL;
            size_t l = p ? strcspn(p, ":") : 0;
            if (l >= TCPMSG_FDNAME_MAX)
                l = TCPMSG_FDNAME_MAX - 1;
            memcpy(names[i], p ? p : "", l);
            names[i][l] = '\0';
        }
    }
    r = (int)n;
out:
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return r;
}

int
tcpmsg_sock_reserve(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* Out of descriptors: use the reserve to take the oldest queued connection off the backlog
 * and close it, so that the listener stops being readable (otherwise every poll returns at
 * once and the server spins). */
static void
drop_one(int lfd, int *reserve, int64_t deadline)
{
    if (*reserve < 0) {
        *reserve = tcpmsg_sock_reserve();
        return; /* maybe next time */
    }
    /* accept() reports EMFILE before it looks at the queue: wait for a connection, so that
     * the accept below cannot block on a blocking listener. */
    if (tcpmsg__wait_fd(lfd, POLLIN, deadline) <= 0)
        return;
    close(*reserve);
    *reserve = -1;
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    if (poll(&p, 1, 0) == 1) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            close(fd);
    }
    int r = tcpmsg_sock_reserve();
    *reserve = r >= 0 ? r : -1;
}

int
tcpmsg_sock_accept(int lfd, int *reserve, struct tcpmsg_addr *peer, int64_t deadline)
{
    if (peer)
        memset(peer, 0, sizeof *peer);
    int fl = fcntl(lfd, F_GETFL);
    if (fl < 0)
        return -errno;
    /* A blocking listener would ignore the deadline inside accept(): wait in poll first. */
    bool wait_first = !(fl & O_NONBLOCK) && deadline >= 0;
    for (;;) {
        if (wait_first) {
            int r = tcpmsg__wait_fd(lfd, POLLIN, deadline);
            if (r < 0)
                return r;
        }
        struct tcpmsg_addr a;
        memset(&a, 0, sizeof a);
        socklen_t len = sizeof a.u.storage;
        int fd = accept4(lfd, &a.u.sa, &len, SOCK_CLOEXEC);
        if (fd >= 0) {
            if (peer) {
                *peer = a;
                peer->len = len;
            }
            return fd;
        }
        int e = errno;
        switch (e) {
        case EINTR:
        case ECONNABORTED:
        /* Linux reports pending network errors of the new connection through accept(); the
         * man page asks to treat them like EAGAIN. */
        case EPROTO:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case ENETUNREACH:
            continue;
        case EAGAIN: {
            int r = tcpmsg__wait_fd(lfd, POLLIN, deadline);
            if (r < 0)
                return r;
            continue;
        }
        case EMFILE:
        case ENFILE:
            if (reserve)
                drop_one(lfd, reserve, deadline);
            return -e;
        default:
            return -e;
        }
    }
}

int
tcpmsg_sock_port(int fd)
{
    struct tcpmsg_addr a;
    int r = tcpmsg_addr_local(fd, &a);
    if (r < 0)
        return r;
    return tcpmsg_addr_port(&a);
}

int
tcpmsg_sock_set_nodelay(int fd, bool on)
{
    return setopt(fd, IPPROTO_TCP, TCP_NODELAY, on);
}

int
tcpmsg_sock_set_keepalive(int fd, bool on, int idle_s, int interval_s, int count)
{
    int r = setopt(fd, SOL_SOCKET, SO_KEEPALIVE, on);
    if (r < 0 || !on)
        return r;
    if (idle_s > 0 && (r = setopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle_s)) < 0)
        return r;
    if (interval_s > 0 && (r = setopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, interval_s)) < 0)
        return r;
    if (count > 0 && (r = setopt(fd, IPPROTO_TCP, TCP_KEEPCNT, count)) < 0)
        return r;
    return 0;
}

int
tcpmsg_sock_set_user_timeout(int fd, unsigned ms)
{
    if (ms > INT32_MAX)
        return -EINVAL;
    return setopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, (int)ms);
}

int
tcpmsg_sock_set_sndbuf(int fd, int bytes)
{
    return bytes <= 0 ? -EINVAL : setopt(fd, SOL_SOCKET, SO_SNDBUF, bytes);
}

int
tcpmsg_sock_set_rcvbuf(int fd, int bytes)
{
    return bytes <= 0 ? -EINVAL : setopt(fd, SOL_SOCKET, SO_RCVBUF, bytes);
}

int
tcpmsg_sock_get_buffers(int fd, int *sndbuf, int *rcvbuf)
{
    int v;
    socklen_t len = sizeof v;
    if (sndbuf) {
        if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &len) < 0)
            return -errno;
        *sndbuf = v;
    }
    len = sizeof v;
    if (rcvbuf) {
        if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &len) < 0)
            return -errno;
        *rcvbuf = v;
    }
    return 0;
}

int
tcpmsg_sock_set_linger(int fd, bool on, int seconds)
{
    if (seconds < 0)
        return -EINVAL;
    struct linger l = {.l_onoff = on, .l_linger = seconds};
    return setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) < 0 ? -errno : 0;
}

int
tcpmsg_sock_set_nonblocking(int fd, bool on)
{
    int r = tcpmsg__set_nonblock(fd, on);
    return r < 0 ? r : 0;
}

int
tcpmsg_sock_shutdown_write(int fd)
{
    return shutdown(fd, SHUT_WR) < 0 ? -errno : 0;
}

int
tcpmsg_sock_close(int fd)
{
    if (fd < 0)
        return 0;
    int e = errno;
    int r = close(fd);
    /* On Linux the descriptor is gone even when close() reports EINTR: never retry. */
    r = (r < 0 && errno != EINTR) ? -errno : 0;
    errno = e;
    return r;
}

int
tcpmsg_sock_reset(int fd)
{
    if (fd < 0)
        return 0;
    int e = errno;
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    errno = e;
    return tcpmsg_sock_close(fd);
}
