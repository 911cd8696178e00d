/*
 * tcpmsg/sock.h - TCP sockets without the traps.
 *
 * Plain file descriptors in, plain file descriptors out: every function here works on an
 * fd the caller owns and closes (tcpmsg_sock_close, or close(2)). Every fd the library
 * creates is close-on-exec; no call raises SIGPIPE; EINTR is retried inside; blocking calls
 * take an absolute deadline (tcpmsg/deadline.h). The fds returned by listen, accept and
 * connect are in blocking mode.
 *
 * A server:                                        A client:
 *   int lfd = tcpmsg_sock_listen(NULL, "7000", NULL);   int fd = tcpmsg_sock_connect(
 *   for (;;) {                                            "localhost", "7000", NULL,
 *       int fd = tcpmsg_sock_accept(lfd, NULL, NULL,      tcpmsg_deadline_in(3000));
 *                                   TCPMSG_FOREVER);
 *       ...
 *   }
 *
 * Errors are negated errno values (see tcpmsg/error.h) plus the resolver's TCPMSG_EAI_*.
 */
#ifndef TCPMSG_SOCK_H
#define TCPMSG_SOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "tcpmsg/addr.h"
#include "tcpmsg/deadline.h"
#include "tcpmsg/error.h"
#include "tcpmsg/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Listening options; a zero-initialised struct (or NULL) gives the defaults. */
struct tcpmsg_listen_opts {
    enum tcpmsg_family family; /* with a wildcard host: ANY (default) is ONE dual-stack IPv6
                                  socket that also accepts IPv4 (falling back to IPv4 when the
                                  system has no IPv6); V4 or V6 restricts to one family */
    int backlog;               /* listen() backlog; 0 means SOMAXCONN */
    bool reuseport;            /* SO_REUSEPORT: several sockets may listen on the same port,
                                  the kernel spreads connections over them */
    bool no_reuseaddr;         /* do not set SO_REUSEADDR (it is set by default, so that a
                                  restarted server can bind while old connections linger) */
    int sndbuf, rcvbuf;        /* SO_SNDBUF / SO_RCVBUF in bytes for the listener, inherited by
                                  every accepted connection; 0 keeps the system's automatic
                                  sizing. Receive buffers must be sized before the handshake
                                  (the window scale is fixed then), hence here. */
    int unix_mode;             /* a Unix socket file: its permission bits (0660: owner and
                                  group may connect), set before listen() [0: as the umask
                                  leaves them] */
};

/*
 * tcpmsg_sock_listen - resolves host/service and returns a listening socket bound to the
 * first address that works. host NULL or "" is the wildcard (see opts.family), otherwise a
 * name or a numeric address ("127.0.0.1", "::1", "[::1]"). service: a port or a service
 * name; "0" or NULL lets the kernel choose a free port (read it with tcpmsg_sock_port).
 * host "unix:/path" listens on a Unix-domain socket file (created with opts->unix_mode; a
 * file left by a process that died is replaced, a socket something still listens on never
 * is: -EADDRINUSE; the check is a connection attempt, which that listener sees as a client
 * that leaves at once), "unix:@name" on an abstract one; service is ignored for both.
 * Returns the fd (>= 0; the caller closes it), or a resolver error (TCPMSG_EAI_*), -EINVAL,
 * -EADDRINUSE, -EACCES (privileged port), -EADDRNOTAVAIL (not a local address),
 * -ENAMETOOLONG (a Unix name over TCPMSG_UNIX_NAME_MAX bytes), -EMFILE...
 */
TCPMSG_API int tcpmsg_sock_listen(const char *host, const char *service,
                                  const struct tcpmsg_listen_opts *opts);

/*
 * tcpmsg_sock_listen_addr - the same for one already resolved address (an IPv6 wildcard
 * address is made dual-stack unless opts->family is TCPMSG_FAMILY_V6).
 */
TCPMSG_API int tcpmsg_sock_listen_addr(const struct tcpmsg_addr *addr,
                                       const struct tcpmsg_listen_opts *opts);

/* Room for one name of LISTEN_FDNAMES (systemd allows 255 bytes) and its NUL. */
#define TCPMSG_FDNAME_MAX 256

/*
 * tcpmsg_sock_inherited - the listening sockets this process was started with by systemd's
 * socket activation (or systemd-socket-activate, or anything speaking its protocol:
 * LISTEN_PID is this process, LISTEN_FDS = n sockets at fds 3 .. 3 + n - 1, LISTEN_FDNAMES
 * "name:name" optional), read directly (no libsystemd). Each must be a listening stream
 * socket; it is made close-on-exec and goes to fds[i], its name (or "") to names[i] when
 * names is not NULL. LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES are then removed from the
 * environment, so that children do not take them for theirs. Returns the count: 0 when
 * none was offered (no LISTEN_FDS, or another process's LISTEN_PID); -EBADF when one that
 * was offered is not a listening stream socket, -E2BIG when more than max were offered,
 * -EINVAL (malformed variables, fds NULL with max > 0): then the caller must not bind a
 * socket of its own instead, since its manager thinks it serves the inherited ones. Call it
 * before other threads start (it changes the environment); never blocks.
 */
TCPMSG_API int tcpmsg_sock_inherited(int *fds, char (*names)[TCPMSG_FDNAME_MAX], size_t max);

/*
 * tcpmsg_sock_reserve - opens a spare file descriptor (/dev/null, close-on-exec) for
 * tcpmsg_sock_accept's EMFILE handling. Returns the fd or a negated errno.
 */
TCPMSG_API int tcpmsg_sock_reserve(void);

/*
 * tcpmsg_sock_accept - waits until the deadline for a connection on listening socket lfd
 * and returns its fd (close-on-exec, blocking mode). peer (optional) receives the client's
 * address. The wait works whether lfd is blocking or not.
 * ECONNABORTED (a client that gave up while queued) and EINTR are retried.
 * Running out of file descriptors (EMFILE, ENFILE) would leave the connection queued and
 * the listener readable for ever, a busy loop. With `reserve` pointing to an fd from
 * tcpmsg_sock_reserve(), the reserve is closed, the pending connection accepted and closed
 * at once (the client sees the connection end), and the reserve reopened (*reserve is -1 if
 * that failed, and is retried next time); the call then returns -EMFILE / -ENFILE so the
 * caller can log it. reserve NULL: the error is returned and the connection stays queued.
 * Returns the fd (>= 0), -ETIMEDOUT, -EMFILE, -ENFILE, -ENOBUFS, -ENOMEM, -EBADF, -EINVAL
 * (lfd not listening).
 */
TCPMSG_API int tcpmsg_sock_accept(int lfd, int *reserve, struct tcpmsg_addr *peer,
                                  int64_t deadline);

/* Connection options; a zero-initialised struct (or NULL) gives the defaults. */
struct tcpmsg_connect_opts {
    enum tcpmsg_family family;  /* restrict the addresses tried; default ANY */
    const char *bind_host;      /* optional local address to bind before connecting (a name or
                                   numeric address; NULL: the kernel chooses) */
    const char *bind_service;   /* optional local port (NULL: the kernel chooses) */
    int attempt_delay_ms;       /* Happy Eyeballs (RFC 8305): while an attempt is pending, the
                                   next address is tried after this delay; 0 means 250 ms,
                                   negative means strictly one address at a time */
    int sndbuf, rcvbuf;         /* SO_SNDBUF / SO_RCVBUF in bytes, set before connecting (see
                                   tcpmsg_listen_opts); 0 keeps the automatic sizing */
};

/*
 * tcpmsg_sock_connect - resolves host/service and connects to the first address that
 * answers, trying them all under ONE deadline. Addresses are interleaved by family (IPv6,
 * IPv4, IPv6, ...) in the resolver's order, and a new attempt starts every
 * attempt_delay_ms while earlier ones are still pending, or at once when one fails; the
 * first connection established wins and the others are closed (RFC 8305, Happy Eyeballs).
 * Returns the connected fd (close-on-exec, blocking mode), or when every address failed:
 * -ECONNREFUSED (something answered "no one listens here"), -ENETUNREACH / -EHOSTUNREACH,
 * -ETIMEDOUT (the deadline passed first), another negated errno, a resolver error
 * (TCPMSG_EAI_*), or -EINVAL. When the attempts fail differently, the first address's
 * error is reported, except that a timeout beats everything.
 * Name resolution itself is not bounded by the deadline (getaddrinfo cannot be).
 * host "unix:/path" or "unix:@name" connects to that Unix-domain socket (service ignored,
 * may be NULL): -ENOENT (no such file), -ECONNREFUSED (nothing listens), -EAGAIN (its
 * backlog is full), -ENAMETOOLONG.
 */
TCPMSG_API int tcpmsg_sock_connect(const char *host, const char *service,
                                   const struct tcpmsg_connect_opts *opts, int64_t deadline);

/*
 * tcpmsg_sock_connect_addr - the same for `n` already resolved addresses, tried in the order
 * given (no interleaving). Same returns; -EINVAL for n == 0.
 */
TCPMSG_API int tcpmsg_sock_connect_addr(const struct tcpmsg_addr *addrs, size_t n,
                                        const struct tcpmsg_connect_opts *opts,
                                        int64_t deadline);

/*
 * tcpmsg_sock_port - the local port socket fd is bound to (after listening on port 0, the
 * port the kernel chose). Returns 0..65535 or a negated errno.
 */
TCPMSG_API int tcpmsg_sock_port(int fd);

/* ---- options: each returns 0 or a negated errno (-EBADF, -ENOTSOCK, -EINVAL) ---------- */

/* TCP_NODELAY: send small segments at once instead of waiting (Nagle's algorithm off). */
TCPMSG_API int tcpmsg_sock_set_nodelay(int fd, bool on);

/* SO_KEEPALIVE with TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT: probe an idle connection
 * after idle_s seconds, every interval_s seconds, and give up after count unanswered
 * probes. A value <= 0 keeps the system default for that parameter. on false disables. */
TCPMSG_API int tcpmsg_sock_set_keepalive(int fd, bool on, int idle_s, int interval_s, int count);

/* TCP_USER_TIMEOUT: fail the connection when sent data stays unacknowledged for ms
 * milliseconds (0 restores the system default). */
TCPMSG_API int tcpmsg_sock_set_user_timeout(int fd, unsigned ms);

/* SO_SNDBUF / SO_RCVBUF: request kernel buffer sizes in bytes (Linux doubles the value and
 * enforces a minimum), turning off automatic sizing. Shrinking the receive buffer of an
 * established connection below its advertised window stalls it: size receive buffers
 * through tcpmsg_listen_opts / tcpmsg_connect_opts instead. tcpmsg_sock_get_buffers reads
 * the sizes back; either pointer may be NULL. */
TCPMSG_API int tcpmsg_sock_set_sndbuf(int fd, int bytes);
TCPMSG_API int tcpmsg_sock_set_rcvbuf(int fd, int bytes);
TCPMSG_API int tcpmsg_sock_get_buffers(int fd, int *sndbuf, int *rcvbuf);

/* SO_LINGER: with on and seconds > 0, close() waits up to that long for unsent data; with
 * on and seconds == 0, close() resets the connection (RST) and discards unsent data. */
TCPMSG_API int tcpmsg_sock_set_linger(int fd, bool on, int seconds);

/* O_NONBLOCK on or off. */
TCPMSG_API int tcpmsg_sock_set_nonblocking(int fd, bool on);

/* tcpmsg_sock_shutdown_write - half-close: the peer reads end-of-stream after the data
 * already sent, while this side can still receive. */
TCPMSG_API int tcpmsg_sock_shutdown_write(int fd);

/*
 * tcpmsg_sock_close - closes fd; errno is preserved and EINTR is not retried (on Linux the
 * fd is released anyway). Returns 0 or a negated errno; fd < 0 is accepted and ignored.
 * tcpmsg_sock_reset - abortive close: the peer gets a reset (RST) instead of an orderly
 * end of stream, unsent data is discarded. Same return.
 */
TCPMSG_API int tcpmsg_sock_close(int fd);
TCPMSG_API int tcpmsg_sock_reset(int fd);

#ifdef __cplusplus
}
#endif

#endif /* TCPMSG_SOCK_H */
