/* Helpers shared by the io layer's files. Not installed. */
#ifndef TCPMSG_IO_INTERNAL_H
#define TCPMSG_IO_INTERNAL_H

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "tcpmsg/sock.h"

/* Closes fd without disturbing errno (cleanup paths report the first error, not close's). */
void tcpmsg__close_quietly(int fd);

/* Waits until fd is ready for `events` (POLLIN / POLLOUT) or the deadline passes.
 * Returns the revents (> 0), -ETIMEDOUT, or a negated errno. EINTR is retried with the
 * time that is left. */
int tcpmsg__wait_fd(int fd, short events, int64_t deadline);

/* Sets or clears O_NONBLOCK. Returns the previous flags (>= 0) or a negated errno. */
int tcpmsg__set_nonblock(int fd, int on);

/* SIGPIPE held off around a call that may write to a socket without MSG_NOSIGNAL (OpenSSL's
 * socket BIO once the kernel encrypts, kTLS): what that call raises is discarded (it sees
 * EPIPE) and the thread's signal mask is restored. */
struct tcpmsg__nosigpipe {
    unsigned long old[16]; /* the thread's mask (a sigset_t) */
    bool blocked;
};
void tcpmsg__nosigpipe_enter(struct tcpmsg__nosigpipe *g);
void tcpmsg__nosigpipe_leave(struct tcpmsg__nosigpipe *g);

/* Happy Eyeballs (RFC 8305) without blocking: the attempts of one connect, advanced by the
 * caller, who waits (poll, or an event loop) between the steps. Pending attempts are
 * non-blocking sockets in fds[0..npend) waiting for POLLOUT. */
#define TCPMSG__HE_INFLIGHT 16
#define TCPMSG__HE_PENDING (-EINPROGRESS) /* never a final result: those are other errors */
struct tcpmsg__he {
    const struct tcpmsg_addr *addrs; /* the caller's, tried in order */
    size_t n, next;
    struct tcpmsg_connect_opts opts;
    int64_t delay, next_start;
    struct pollfd fds[TCPMSG__HE_INFLIGHT];
    size_t npend;
    int first_err;
};
void tcpmsg__he_begin(struct tcpmsg__he *he, const struct tcpmsg_addr *addrs, size_t n,
                      const struct tcpmsg_connect_opts *opts);
/* Starts the attempts that may start now, waits up to wait_ms (0: not at all) for pending
 * ones and looks at them. Returns the winner's fd (non-blocking; the others are closed),
 * TCPMSG__HE_PENDING (call again: when a pending fd is writable, or at next_start), or the
 * error once every address failed (the first one's, as tcpmsg_sock_connect says). */
int tcpmsg__he_advance(struct tcpmsg__he *he, int wait_ms);
/* When the next attempt may start (tcpmsg_now_ms), 0: now, INT64_MAX: none is due. */
int64_t tcpmsg__he_next_start(const struct tcpmsg__he *he);
/* Closes the pending attempts. */
void tcpmsg__he_abort(struct tcpmsg__he *he);
/* Resolves host/service into at most cap addresses, interleaved by family (RFC 8305). */
int tcpmsg__resolve_ordered(const char *host, const char *service, enum tcpmsg_family family,
                            struct tcpmsg_addr *out, int cap);

/* tcpmsg_addr_tuple with `client` as the peer (NULL: the socket's own peer). */
int tcpmsg__addr_tuple(int fd, const struct tcpmsg_addr *client, char *buf, size_t cap);
/* Maps a getaddrinfo() error (with errno for EAI_SYSTEM) to the library's codes. */
int tcpmsg__eai_error(int eai, int saved_errno);
/* The text names a Unix-domain socket ("unix:/path", "unix:@name"). */
bool tcpmsg__is_unix(const char *text);

/* Reading a PROXY header from a socket a step at a time (an event loop's, or
 * tcpmsg_proxy_recv's loop): never past the header. */
#include "tcpmsg/proxy.h"
struct tcpmsg__proxy_rd {
    uint8_t buf[TCPMSG_PROXY_MAX];
    size_t have; /* bytes of the header already taken from the socket */
};
/* Returns the header's length (> 0, *out filled), -EAGAIN (wait until fd is readable and
 * call again), TCPMSG_EPROXY, TCPMSG_EOF (ended before any byte), or a negated errno. */
int tcpmsg__proxy_step(int fd, struct tcpmsg__proxy_rd *rd, struct tcpmsg_proxy_info *out);

/* The server layer's hook on a connection it serves. wake(arg), if set, runs when a send
 * queues output on a TCPMSG_FLUSH_MANUAL connection that had none (so an event loop learns
 * that a handler replied on a connection other than the one it is serving); arg is also
 * what tcpmsg__conn_hook_arg returns (NULL when the connection is not served). */
struct tcpmsg_conn;
void tcpmsg__conn_hook(struct tcpmsg_conn *c, void (*wake)(void *arg), void *arg);
void *tcpmsg__conn_hook_arg(const struct tcpmsg_conn *c);

/* For a level-triggered event loop: with short_reads on, a read that returned less than it
 * asked for marks the socket empty, and recv(..., TCPMSG_NOWAIT) then says -ETIMEDOUT
 * without the system call that would only return EAGAIN, until tcpmsg__conn_readable()
 * (the loop heard the socket is readable, or wants to read again anyway). */
void tcpmsg__conn_short_reads(struct tcpmsg_conn *c, bool on);
void tcpmsg__conn_readable(struct tcpmsg_conn *c);

#endif
