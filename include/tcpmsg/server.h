/*
 * tcpmsg/server.h - one handler, any server model.
 *
 * Write what happens to a connection once (a handler), choose how connections are served
 * by configuration (a model):
 *
 *   ITERATIVE  one connection at a time: accept, serve, close (the course's first server)
 *   FORK       a watcher accepts and forks one executor process per connection
 *   THREAD     one thread per connection
 *   POOL       N pre-forked worker processes (or threads) accepting on the shared listener
 *   EVENT      non-blocking sockets on epoll, N event threads (the default)
 *
 *   static int echo(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
 *   {
 *       return tcpmsg_conn_send(c, m->data, m->len, TCPMSG_FOREVER);  // queued, never blocks
 *   }
 *   ...
 *   struct tcpmsg_handler h = {.on_message = echo};
 *   struct tcpmsg_server_config cfg = {.port = "7000", .handle_signals = true};
 *   struct tcpmsg_server *s;
 *   int r = tcpmsg_server_create(&s, &cfg, &h);   // listening from here on
 *   if (r == 0) r = tcpmsg_server_run(s);          // until SIGINT/SIGTERM: drains, returns 0
 *   tcpmsg_server_destroy(s);
 *
 * Inside on_message, tcpmsg_conn_send only queues the reply (the connection runs with
 * TCPMSG_FLUSH_MANUAL under every model); the server writes queued replies before it waits
 * for the peer again, so a handler never blocks, whatever deadline it passes. A dialog
 * handler's connection runs with TCPMSG_FLUSH_BATCH: its sends write as its deadlines say.
 *
 * Over TLS (config.tls), the handshake completes before on_open under every model, and
 * on_open may read what was negotiated (tcpmsg_conn_tls_info: the client certificate's
 * subject, SNI, ALPN); a client whose handshake fails or does not finish within
 * handshake_timeout_ms is closed without on_open (logged as refused, with the reason).
 *
 * Every connection ends with exactly one on_close(conn, reason) (if on_open accepted it),
 * where reason is: TCPMSG_EOF (the peer ended cleanly), -EPROTO / -EMSGSIZE (it broke the
 * framing), -ECONNRESET, -EPIPE, TCPMSG_EIDLE (idle timeout), TCPMSG_ESLOW (a frame was
 * not completed in time), -ETIMEDOUT (replies could not be written in time), -ESHUTDOWN
 * (the server stopped), or the negative value a handler returned.
 */
#ifndef TCPMSG_SERVER_H
#define TCPMSG_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tcpmsg/codec.h"
#include "tcpmsg/conn.h"
#include "tcpmsg/error.h"
#include "tcpmsg/proxy.h"
#include "tcpmsg/version.h"

#ifdef __cplusplus
extern "C" {
#endif

struct tcpmsg_server; /* opaque */
struct tcpmsg_worker; /* opaque: one EVENT worker, its loop and its thread */

enum tcpmsg_model {
    TCPMSG_MODEL_EVENT = 0, /* epoll event loops, one per worker thread (default) */
    TCPMSG_MODEL_ITERATIVE = 1,
    TCPMSG_MODEL_FORK = 2,
    TCPMSG_MODEL_THREAD = 3,
    TCPMSG_MODEL_POOL = 4
};

/*
 * What the server calls. Every callback is optional and receives the handler's `user`.
 * Callbacks of different connections may run concurrently (THREAD, POOL threads, EVENT with
 * several workers) or in different processes (FORK, POOL): share state accordingly.
 * Under EVENT, a callback may also send on any other connection of its worker (kept from
 * its on_open until its on_close): that output is written at the end of the loop turn, so
 * one worker (workers = 1) can run a chat room or a broadcast.
 */
struct tcpmsg_handler {
    /* A connection was accepted. Return < 0 to refuse it (it is closed, on_close is not
     * called). Per-connection state goes in tcpmsg_conn_set_user(). */
    int (*on_open)(struct tcpmsg_conn *c, void *user);
    /* One whole message (a view valid during the call). Reply with tcpmsg_conn_send.
     * Return 0 to go on, < 0 to close this connection with that reason. */
    int (*on_message)(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user);
    /* The connection is ending, for `reason` (see above); replies queued are flushed after.
     * c stays valid during the call and is freed after it. */
    void (*on_close)(struct tcpmsg_conn *c, int reason, void *user);
    /* Blocking models only (ITERATIVE, FORK, THREAD, POOL): instead of on_message, owns the
     * whole conversation (the course's handle_dialog_with_client), using tcpmsg_conn_recv /
     * send / the raw helpers with deadlines of its choice. Returns the close reason. When the
     * server stops, the connection's reading side is shut down, so a blocked recv returns.
     * Refused (-EINVAL) with the EVENT model. */
    int (*dialog)(struct tcpmsg_conn *c, void *user);
    void *user;
    /* EVENT: a worker's loop starts, in its thread, before it serves anything: the place to
     * start the worker's timers, watch descriptors (see "The EVENT loop as a platform"). */
    void (*on_worker_start)(struct tcpmsg_worker *w, void *user);
    /* EVENT: a worker's loop ends, in its thread, after its last connection closed; its
     * timers and watches are cancelled after the call. */
    void (*on_worker_stop)(struct tcpmsg_worker *w, void *user);
    /* EVENT: c's queued output fell to output_low or below after it had been above: the
     * moment a relay resumes the connection it paused for c's sake (tcpmsg_server_resume). */
    void (*on_drain)(struct tcpmsg_conn *c, void *user);
    /* EVENT: c's peer ended its stream cleanly (a half-close, after its last frame was
     * delivered). Without on_eof, or when it returns < 0, c ends (on_close with TCPMSG_EOF,
     * or the code returned). Return 0 to keep c for sending: it is no longer read (its idle
     * timeout still runs) and ends with tcpmsg_server_close, or cleanly once its own side is
     * ended with tcpmsg_server_shutdown, or on an error (the peer resets). The other models
     * do not call it: a peer's end ends the connection there. */
    int (*on_eof)(struct tcpmsg_conn *c, void *user);
};

/* Events reported to the log callback. */
enum tcpmsg_server_event {
    TCPMSG_EV_OPEN = 1,     /* a connection was accepted (code 0) */
    TCPMSG_EV_CLOSE = 2,    /* a connection ended (code: the reason); logged once its
                               max_conns slot is free again, just before its socket closes */
    TCPMSG_EV_REFUSED = 3,  /* a connection was refused: TCPMSG_EFULL, on_open's code, or
                               (TLS) why its handshake failed: -ETIMEDOUT, TCPMSG_ETLS... */
    TCPMSG_EV_ACCEPT = 4,   /* accept failed (code: -EMFILE, -ENFILE, ...) */
    TCPMSG_EV_WORKER = 5,   /* a worker process died and was replaced (code: its status) */
    TCPMSG_EV_STOP = 6      /* the server is stopping (code 0) */
};

/* The server's configuration; zero-initialised fields take the default in brackets. */
struct tcpmsg_server_config {
    const char *host;            /* address to bind, or "unix:/path" / "unix:@name" (a
                                    Unix-domain socket, made with listen.unix_mode and
                                    removed at destroy) [NULL: wildcard, one dual-stack
                                    socket] */
    const char *port;            /* port or service [NULL or "0": the kernel picks one; read
                                    it with tcpmsg_server_port] */
    const struct tcpmsg_codec *codec; /* framing, copied; its limit is the max frame size
                                    [NULL: 4-byte length prefix, 16 MiB] */
    enum tcpmsg_model model;     /* [EVENT] */
    int workers;                 /* POOL: worker processes/threads [2 x online CPUs];
                                    EVENT: event threads [online CPUs] */
    bool pool_threads;           /* POOL: threads instead of processes */
    int max_conns;               /* connections served at once; more are closed at once
                                    (TCPMSG_EFULL), under every model [1024; FORK: 64;
                                    POOL: workers (the next client waits for a free
                                    worker); ITERATIVE: 1 (the next waits)]; never more
                                    than the descriptor limit (RLIMIT_NOFILE at create)
                                    less 32 */
    int idle_timeout_ms;         /* close a connection silent this long (TCPMSG_EIDLE)
                                    [60000; < 0: never] */
    int frame_timeout_ms;        /* close a peer that started a frame and did not finish it
                                    in this time (TCPMSG_ESLOW) [10000; < 0: never] */
    int write_timeout_ms;        /* blocking models: close when replies cannot be written in
                                    this time (-ETIMEDOUT) [10000] */
    int drain_ms;                /* at stop: time granted to finish, flush and close
                                    [5000]; then connections are reset (a worker process
                                    still running 1 s later is killed) */
    size_t output_high;          /* stop reading from a connection whose queued output
                                    passed this [1 MiB] (blocking models: write it, for up to
                                    write_timeout_ms, before reading more) ... */
    size_t output_low;           /* ... EVENT: until it drained below this [256 KiB] */
    bool handle_signals;         /* SIGINT and SIGTERM stop the server (one server per
                                    process); SIGPIPE is never needed */
    bool nagle;                  /* keep Nagle's algorithm on accepted connections [off:
                                    TCP_NODELAY is set, since the connection coalesces
                                    small replies itself] */
    struct tcpmsg_conn_opts conn; /* per-connection buffers (flush is set by the model;
                                    max_output is raised to 4 x output_high at least) */
    struct tcpmsg_listen_opts listen; /* the listener: family (for the wildcard), backlog,
                                    sndbuf / rcvbuf of every accepted connection.
                                    EVENT with several workers gives each its own
                                    SO_REUSEPORT listener, after checking that no other
                                    socket holds the port (-EADDRINUSE); reuseport set
                                    here skips the check: other processes may share */
    int listen_fd;               /* > 0: serve this listening socket instead of binding
                                    host and port (one tcpmsg_sock_inherited returned, or
                                    the caller's own), owned by the server once create
                                    succeeded (closed at destroy; a Unix socket's file is
                                    left where it is: not the server's); every worker
                                    shares it [0: bind] */
    bool handover;               /* EVENT with several workers: one listening socket shared
                                    by every worker instead of one each (an SO_REUSEPORT
                                    group), so that tcpmsg_server_handover can pass it on
                                    whole (the other models, Unix sockets and inherited
                                    sockets always have one) [off] */
    bool no_listener;            /* EVENT: no listening socket at all (host and port are
                                    ignored): a pure client, whose connections all come from
                                    tcpmsg_worker_dial; tcpmsg_server_port says -ENOTCONN */
    const struct tcpmsg_tls_config *tls; /* serve TLS only, configured so (read at create;
                                    the context is made before any worker forks, so
                                    sessions resume across workers) [NULL: plain TCP] */
    struct tcpmsg_tls_ctx *tls_ctx; /* or a server context made by the caller (a reference
                                    is taken) [NULL] */
    int handshake_timeout_ms;    /* TLS: a client that has not completed its handshake in
                                    this time is closed (-ETIMEDOUT, logged as refused)
                                    [10000] */
    bool proxy_protocol;         /* behind a load balancer (HAProxy's send-proxy or
                                    send-proxy-v2, nginx's proxy_protocol): every accepted
                                    connection must begin with a PROXY header, v1 or v2
                                    (tcpmsg/proxy.h), read before the TLS handshake and
                                    on_open within frame_timeout_ms (or handshake_timeout_ms
                                    when frames have no timeout); the client's address is
                                    then tcpmsg_conn_peer's, and the tuple's in the log and
                                    tcpmsg_conn_tuple; a LOCAL header (the balancer's health
                                    check) keeps the balancer's. A malformed or missing
                                    header: refused with TCPMSG_EPROXY (TCPMSG_EOF: closed
                                    before any byte, as a TCP health check does; -ETIMEDOUT)
                                    [off: a header would be the client's data] */
    const char *const *proxy_from; /* with proxy_protocol: the balancers trusted, a
                                    NULL-terminated list of "ADDR" or "ADDR/PREFIX"
                                    ("127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"; an
                                    IPv4-mapped peer matches its IPv4 form); a connection
                                    from any other peer is refused with -EACCES before
                                    anything is read (-ECONNRESET: reset before that); a Unix-socket peer matches no entry
                                    (the socket file's mode says who may connect). Parsed
                                    at create (-EINVAL) [NULL: any peer may send one] */
    int max_conns_per_client;    /* connections one client address may hold at once; more
                                    are refused (TCPMSG_ELIMIT, counted in stats.limited) as
                                    soon as the address is known: at accept, or after the
                                    PROXY header (the real client's) [0: no limit] */
    int conn_rate_per_client;    /* new connections per second one client address may open
                                    (a token bucket refilled at this rate) ... [0: no limit] */
    int conn_burst_per_client;   /* ... holding this many [the rate]; past it: TCPMSG_ELIMIT.
                                    Per IPv4 or IPv6 address (an IPv4-mapped one as IPv4);
                                    Unix-socket peers are not limited. The addresses are kept
                                    in a table of 4096 shared by every worker, processes
                                    included; when it is full, new addresses are not limited.
                                    A refusal costs the others nothing: no read, no
                                    handshake, no on_open */
    /* Optional: receives every event with the connection's 4-tuple ("" when there is
     * none). Called from any worker (thread or process); must not block for long. */
    void (*log)(void *user, enum tcpmsg_server_event ev, int code, const char *tuple);
    void *log_user;
};

/* Counters, summed over every worker (processes included). */
struct tcpmsg_server_stats {
    uint64_t accepted;  /* connections accepted (refused ones included) */
    uint64_t refused;   /* closed at once: over max_conns, or refused by on_open */
    uint64_t active;    /* connections being served now */
    uint64_t closed_error; /* connections that ended for another reason than a clean EOF or
                              the server's stop */
    uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
    uint64_t workers_replaced; /* POOL processes that died and were replaced */
    uint64_t limited;   /* refused for a per-client limit (counted in refused too) */
};

/*
 * tcpmsg_server_create - validates the configuration, copies it and the handler, and binds
 * and listens (so that the port is known and clients can connect before run). Returns 0
 * with *out set, -EINVAL (bad configuration, no on_message nor dialog, dialog with EVENT),
 * -EBUSY (handle_signals while another server of this process has them), the listen errors
 * (-EADDRINUSE, TCPMSG_EAI_*...), -ENOMEM.
 */
TCPMSG_API int tcpmsg_server_create(struct tcpmsg_server **out,
                                    const struct tcpmsg_server_config *cfg,
                                    const struct tcpmsg_handler *h);

/* tcpmsg_server_port - the port the server listens on; -EAFNOSUPPORT for a Unix-domain
 * listener (host "unix:..."), -ENOTCONN without a listener. */
TCPMSG_API int tcpmsg_server_port(const struct tcpmsg_server *s);

/*
 * tcpmsg_server_run - serves until stopped (tcpmsg_server_stop, or a signal with
 * handle_signals), then stops accepting; each connection reads what its socket has
 * already received (without waiting for more), handles its whole frames and flushes the
 * replies within drain_ms, and is closed at once (FIN, then close without waiting for the
 * peer's end), the same under every model; then run returns 0 (or a negated errno when
 * the model could not start: -EAGAIN (threads), -ENOMEM...). Blocks; runs the model in the
 * calling thread (its workers in other threads or processes).
 */
TCPMSG_API int tcpmsg_server_run(struct tcpmsg_server *s);

/*
 * tcpmsg_server_start - runs tcpmsg_server_run in a new thread and returns at once (0, or
 * -EAGAIN / -EBUSY when already started). tcpmsg_server_wait joins it and returns what run
 * returned.
 */
TCPMSG_API int tcpmsg_server_start(struct tcpmsg_server *s);
TCPMSG_API int tcpmsg_server_wait(struct tcpmsg_server *s);

/*
 * tcpmsg_server_stop - asks the server to stop; returns at once. Safe from any thread,
 * from a handler (in a FORK or POOL worker process too: the whole server stops), and from
 * a signal handler (it only sets a flag and writes to an eventfd). Idempotent.
 */
TCPMSG_API void tcpmsg_server_stop(struct tcpmsg_server *s);

/*
 * tcpmsg_model_name - the model's name as tcpmsg_model_parse reads it ("iterative", "fork",
 * "thread", "pool", "event"); "?" for a value outside the enum. Static storage.
 * tcpmsg_model_parse - the model named `name` (exact, lower case) into *out. Returns 0, or
 * -EINVAL for an unknown name (*out untouched). For command lines and configuration files.
 */
TCPMSG_API const char *tcpmsg_model_name(enum tcpmsg_model m);
TCPMSG_API int tcpmsg_model_parse(const char *name, enum tcpmsg_model *out);

/*
 * tcpmsg_server_drop - from a callback, ends connection c with `reason` (< 0): its queued
 * output is discarded, the peer gets a reset, and on_close(c, reason) runs once the
 * current callback has returned (never from inside this call). c is the callback's own
 * connection or, under EVENT, any other connection of the same worker thread (a chat room
 * dropping a member too slow to read what the others say). The first reason wins; later
 * calls return 0 and change nothing. Returns 0, or -EINVAL (reason >= 0, or c is not a
 * connection a server serves).
 */
TCPMSG_API int tcpmsg_server_drop(struct tcpmsg_conn *c, int reason);

/*
 * Timers of a connection, called in the thread that serves it like any other callback:
 * fn(c, id, arg) may send on c (the output is written when the callback returns), start and
 * stop timers, and end c with tcpmsg_server_drop.
 */
typedef void (*tcpmsg_timer_fn)(struct tcpmsg_conn *c, uint64_t id, void *arg);

/*
 * tcpmsg_timer_start - calls fn(c, id, arg) once delay_ms have passed, then every period_ms
 * (period_ms 0: once), until it is stopped or c ends: every timer of a connection is
 * cancelled before its on_close (and when on_open refuses it), so a timer never fires for
 * a connection that is gone. Timers due at the same time fire in the order they were
 * started; a periodic timer that falls behind (a long callback) skips the periods it
 * missed rather than firing them in a burst. Ids are never reused within a process.
 * Call it from a callback of c (on_open, on_message, a timer of c; under EVENT, from any
 * callback of c's worker thread), on a connection a server serves with on_message under
 * any model (the blocking models' loop waits for the next timer as well as for the peer).
 * Returns 0 with *id set (id may be NULL), -EINVAL (fn NULL, delay_ms or period_ms < 0,
 * c NULL or not served by a server), -ENOTSUP (a dialog handler's connection: the dialog
 * owns its waiting), -ENOMEM. Never blocks.
 */
TCPMSG_API int tcpmsg_timer_start(struct tcpmsg_conn *c, int64_t delay_ms, int64_t period_ms,
                                  tcpmsg_timer_fn fn, void *arg, uint64_t *id);

/*
 * tcpmsg_timer_stop - cancels timer id of connection c, from the threads that may start
 * one (a periodic timer may stop itself from its own callback). Returns 0, or -ENOENT (no
 * such timer on c: a one-shot that fired, one already stopped, another connection's) or
 * -EINVAL (c NULL or not served).
 */
TCPMSG_API int tcpmsg_timer_stop(struct tcpmsg_conn *c, uint64_t id);

/*
 * Replies from other threads (EVENT). A connection's handle names it for any thread of the
 * process: a thread pool that computes an answer later sends it with tcpmsg_server_send, or
 * runs code in the connection's worker with tcpmsg_server_call. A handle outlives its
 * connection safely: once the connection has ended, the calls return -ENOENT and touch
 * nothing, and a handle is never given to another connection (a generation changes each
 * time an entry is reused, 2^32 times before a value can repeat).
 *
 * tcpmsg_conn_handle - c's handle, from a callback of c; 0 for a connection not served
 * under EVENT (the blocking models and FORK / POOL processes have no handles: another
 * process could not use one anyway).
 */
TCPMSG_API uint64_t tcpmsg_conn_handle(const struct tcpmsg_conn *c);

/*
 * tcpmsg_server_send - from any thread: queues a copy of one frame (len bytes) for the
 * connection h names; its worker sends it as if a callback of the connection had (a send
 * that fails there, over max_output, drops the connection with -ENOBUFS). Frames one thread
 * sends to one connection arrive in that order, and none is lost: the worker is woken by an
 * eventfd when its queue stops being empty and takes the whole queue each time. A frame
 * whose connection ends before its worker gets to it is discarded. Returns 0 (queued),
 * -ENOENT (h names no live connection of this server), -EAGAIN (the worker already holds
 * 65,536 posts or 64 MiB from other threads: try again later; nothing was queued),
 * -EMSGSIZE (over the codec's limit), -ESHUTDOWN (the server is not running or has
 * stopped), -EINVAL, -ENOMEM. Never blocks (but for a short lock).
 */
TCPMSG_API int tcpmsg_server_send(struct tcpmsg_server *s, uint64_t h, const void *data,
                                  size_t len);

/*
 * tcpmsg_server_call - from any thread: runs fn(c, arg) in the worker of the connection h
 * names, as a callback of c (it may send, start timers, drop c). If the connection has ended
 * by the time its worker gets to it, or the server stops first, fn runs with c NULL (so that
 * it can free arg). Returns as tcpmsg_server_send (-ENOENT, -EAGAIN, -ESHUTDOWN: fn will not
 * run).
 */
TCPMSG_API int tcpmsg_server_call(struct tcpmsg_server *s, uint64_t h,
                                  void (*fn)(struct tcpmsg_conn *c, void *arg), void *arg);

/* ---- the EVENT loop as a platform ----------------------------------------------------------
 * Under EVENT each worker is an event loop in a thread of its own, where its connections'
 * callbacks run. A program hangs more on it: timers of the worker's own, descriptors it
 * watches (stdin, a pipe, an eventfd), and flow control between its connections. The
 * handler's on_worker_start runs in each worker before anything else: the place to start
 * them. These calls are for the worker's own thread (its callbacks, its timers, its
 * watches), unless said otherwise; under the other models they return -ENOTSUP.
 */

/* tcpmsg_conn_worker - the worker serving c (from c's callbacks); NULL when c is not served
 * under EVENT. tcpmsg_worker_index - the worker's number, 0 .. workers - 1.
 * tcpmsg_worker_server - its server. */
TCPMSG_API struct tcpmsg_worker *tcpmsg_conn_worker(const struct tcpmsg_conn *c);
TCPMSG_API int tcpmsg_worker_index(const struct tcpmsg_worker *w);
TCPMSG_API struct tcpmsg_server *tcpmsg_worker_server(const struct tcpmsg_worker *w);

/* A worker's timer callback: the worker, the timer's id, the caller's argument. */
typedef void (*tcpmsg_worker_timer_fn)(struct tcpmsg_worker *w, uint64_t id, void *arg);

/*
 * tcpmsg_worker_timer_start - a timer of the worker, not tied to any connection: calls
 * fn(w, id, arg) after delay_ms, then every period_ms (0: once), in the worker's thread,
 * outside any connection's callback (what it sends on connections is written at the end of
 * the loop turn). Its id (never 0, never reused) goes to *id. Cancelled when the worker
 * ends, after on_worker_stop. Returns 0, -EINVAL (w or fn NULL, a negative time), -ENOMEM.
 * tcpmsg_worker_timer_stop - cancels it (from its own callback too): 0, or -ENOENT (not a
 * timer of w, or a one-shot timer that already ran).
 */
TCPMSG_API int tcpmsg_worker_timer_start(struct tcpmsg_worker *w, int64_t delay_ms,
                                         int64_t period_ms, tcpmsg_worker_timer_fn fn,
                                         void *arg, uint64_t *id);
TCPMSG_API int tcpmsg_worker_timer_stop(struct tcpmsg_worker *w, uint64_t id);

/*
 * tcpmsg_server_pause - stops reading from c: its frames wait (in the kernel, and those
 * already received in its buffer) until tcpmsg_server_resume; its output is still written
 * and its on_drain still comes. From any callback of c's worker. Idle and frame timeouts
 * do not run while c is paused (the silence is this side's).
 * tcpmsg_server_resume - reads again, starting with the frames already buffered. Both
 * return 0, or -ENOTSUP (c is not served under EVENT), -EINVAL (c NULL).
 */
TCPMSG_API int tcpmsg_server_pause(struct tcpmsg_conn *c);
TCPMSG_API int tcpmsg_server_resume(struct tcpmsg_conn *c);

/* What a watched descriptor is ready for (level-triggered, as poll says it: an error or a
 * hang-up is reported as whatever was asked). */
enum { TCPMSG_WATCH_IN = 1, TCPMSG_WATCH_OUT = 2 };
typedef void (*tcpmsg_watch_fn)(struct tcpmsg_worker *w, int fd, int events, void *arg);

/*
 * tcpmsg_worker_watch - calls fn(w, fd, ready, arg) in the worker's loop whenever fd is
 * ready for events (TCPMSG_WATCH_IN and/or _OUT), until tcpmsg_worker_unwatch; watching fd
 * again changes events, fn and arg. fd stays the caller's (not closed, not made
 * non-blocking: read it as much as poll allows). Returns 0, -EINVAL (events 0 or unknown,
 * fn NULL), -EEXIST (fd is one of the server's own), -EPERM (a regular file: epoll cannot
 * watch it), -ENOMEM.
 * tcpmsg_worker_unwatch - stops watching fd (from its own callback too; call it before
 * closing fd): 0, or -ENOENT.
 */
TCPMSG_API int tcpmsg_worker_watch(struct tcpmsg_worker *w, int fd, int events, tcpmsg_watch_fn fn,
                                   void *arg);
TCPMSG_API int tcpmsg_worker_unwatch(struct tcpmsg_worker *w, int fd);

/*
 * tcpmsg_server_close - ends c once its queued output is written, from any callback of c's
 * worker (EVENT): c's on_close(reason) comes at the end of the callback (at once when c is
 * not the connection being served), no more frames of c are delivered, and the socket is
 * closed when its replies are out (write_timeout_ms at most), as when a handler returns
 * reason. For one connection to end another gracefully (a relay ending the client with its
 * upstream). reason < 0 (TCPMSG_EOF for a clean end). Returns 0 (also when c is already
 * ending), -EINVAL (c NULL, reason >= 0), -ENOTSUP (c is not served under EVENT: a blocking
 * handler returns the reason instead).
 */
TCPMSG_API int tcpmsg_server_close(struct tcpmsg_conn *c, int reason);

/*
 * tcpmsg_server_shutdown - half-closes c once its queued output is written: the peer reads
 * the end of stream after the last frame sent, and c is still read (the replies to what it
 * sent). From any callback of c's worker (EVENT). When the peer's end has come too (kept by
 * on_eof, before or after), c ends cleanly: on_close(TCPMSG_EOF). Frames sent before the
 * half-close is written go out before it; sends after it return -EPIPE (and that error ends
 * c when a callback returns it). Returns 0 (also when c is already ending or half-closing),
 * -EINVAL (c NULL), -ENOTSUP (c is not served under EVENT: a dialog uses
 * tcpmsg_conn_shutdown).
 */
TCPMSG_API int tcpmsg_server_shutdown(struct tcpmsg_conn *c);

/* Options of an outbound connection; zero-initialised fields take the default in brackets. */
struct tcpmsg_dial_opts {
    const struct tcpmsg_codec *codec; /* its framing, copied [the server's] */
    int connect_timeout_ms; /* one deadline over every address of an attempt [10000] */
    int attempt_delay_ms;   /* Happy Eyeballs: the next address starts this long after the
                               previous one if that one has not answered [250] */
    bool reconnect;         /* dial again after a failure or after the connection ended, until
                               tcpmsg_worker_dial_stop or the server's stop [no: once] */
    int backoff_initial_ms; /* reconnect: the first wait [100] ... */
    int backoff_max_ms;     /* ... doubled after each failure up to this [30000]; each wait is
                               drawn between half of it and all of it (jitter) */
    int healthy_ms;         /* reconnect: the waits start over from backoff_initial_ms only
                               after a connection stayed open this long [10000]; one that
                               ended sooner (a server that accepts and closes at once) counts
                               as a failure, so the waits go on doubling */
    /* Optional: the dialler is down: an attempt failed (no connection was opened: no
     * on_open, no on_close), reason -ECONNREFUSED, -ETIMEDOUT, -ENETUNREACH,
     * -EHOSTUNREACH, a resolver error (TCPMSG_EAI_*), on_open's refusal; or the connection
     * it opened ended (after its on_close), reason on_close's. retry_ms: when the next
     * attempt starts, -1 when none will (then the dialler is gone, its id unknown). In the
     * worker's thread; a place to log "reconnecting in ...". */
    void (*on_down)(struct tcpmsg_worker *w, uint64_t id, int reason, int64_t retry_ms,
                    void *arg);
    void *arg; /* on_down's */
    struct tcpmsg_tls_ctx *tls; /* a client context: each connection runs TLS, its handshake
                                   within connect_timeout_ms too, before on_open; a failed
                                   handshake is a failed attempt (on_down with its TLS error)
                                   [plain TCP]; the dialler keeps a reference */
    const char *tls_name;       /* TLS: the name sent as SNI and checked in the server's
                                   certificate, copied [host] */
    const struct tcpmsg_proxy_info *proxy; /* a PROXY v2 header (tcpmsg_proxy_format) sent
                                   first on each connection, before TLS, so that a server
                                   behind this one (a relay's upstream, with
                                   proxy_protocol) learns the client's address; copied
                                   [none] */
};

/*
 * tcpmsg_worker_dial - opens a connection from the worker to host:port, served by the
 * server's handler like the accepted ones (on_open once connected, on_message, on_close
 * with the reason), with every address tried under one deadline (Happy Eyeballs, as
 * tcpmsg_sock_connect), and with .reconnect dialled again after each failure or end, with
 * exponential back-off and jitter. The name is resolved in the worker's thread at each
 * attempt (a numeric address or a name in /etc/hosts does not wait; a DNS name may block
 * the loop for the resolver's time). TLS with opts->tls. The dialler's id (never 0) goes to
 * *id. Returns 0 (the outcome comes later, in the callbacks), -EINVAL (w, host or port NULL,
 * port empty, a negative time, a server TLS context), -ENOMEM, -ESHUTDOWN (the server is
 * stopping).
 * tcpmsg_worker_dial_stop - no more attempts: a pending one is abandoned, an open
 * connection stays open (drop it with tcpmsg_server_drop) and is not dialled again once it
 * ends. 0, or -ENOENT.
 * tcpmsg_conn_dial_id - the id of the dialler that opened c; 0 for an accepted connection.
 */
TCPMSG_API int tcpmsg_worker_dial(struct tcpmsg_worker *w, const char *host, const char *port,
                                  const struct tcpmsg_dial_opts *opts, uint64_t *id);
TCPMSG_API int tcpmsg_worker_dial_stop(struct tcpmsg_worker *w, uint64_t id);
TCPMSG_API uint64_t tcpmsg_conn_dial_id(const struct tcpmsg_conn *c);

/*
 * tcpmsg_server_handover - restarts without refusing a client, as nginx's binary upgrade:
 * starts a new copy of the program (path, or /proc/self/exe when NULL, with argv) that
 * inherits this server's listening socket by systemd's protocol (descriptor 3, LISTEN_FDS=1,
 * LISTEN_PID, LISTEN_FDNAMES=handover: tcpmsg_sock_inherited finds it, and the new copy's
 * server takes it as listen_fd) and says when it serves (its tcpmsg_server_run writes to a
 * pipe named by TCPMSG_READY_FD, read and unset by tcpmsg_server_create). Until then this
 * server goes on serving; once the new copy serves, this one stops as tcpmsg_server_stop
 * says (accepts no more, finishes the frames it read, writes the replies, closes: a client
 * sees the end after its last reply), and its run returns. The listening socket never
 * closes, so no connection attempt is refused: those this server does not accept wait in
 * the socket's queue for the new copy. A Unix socket's file is left to the new copy.
 * Returns the new process's pid (> 0), -ECHILD (the copy exited, or never said it serves:
 * this server goes on), -ETIMEDOUT (it did not say so within timeout_ms: it was killed,
 * this server goes on), -ENOTSUP (no listener, or one per EVENT worker: create the server
 * with handover), -ESHUTDOWN (stopping already), -EINVAL, or fork's and pipe's errors.
 * Blocks up to timeout_ms; call it from any thread but the server's own callbacks (not
 * from a signal handler: forward the signal to a thread, as tcpmsg-echo-server does with
 * SIGHUP). The new process is this one's child: it outlives this one.
 */
TCPMSG_API int tcpmsg_server_handover(struct tcpmsg_server *s, const char *path,
                                      char *const argv[], int timeout_ms);

/* tcpmsg_server_stats - copies the counters. */
TCPMSG_API void tcpmsg_server_stats(const struct tcpmsg_server *s,
                                    struct tcpmsg_server_stats *out);

/*
 * tcpmsg_server_destroy - stops the server if it runs, waits for it (when started with
 * tcpmsg_server_start), closes the listener, restores the signal handlers it installed and
 * frees everything. NULL is accepted.
 */
TCPMSG_API void tcpmsg_server_destroy(struct tcpmsg_server *s);

#ifdef __cplusplus
}
#endif

#endif /* TCPMSG_SERVER_H */
