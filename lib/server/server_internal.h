/* Shared between the server's models. Not installed. */
#ifndef TCPMSG_SERVER_INTERNAL_H
#define TCPMSG_SERVER_INTERNAL_H

#include "tcpmsg/server.h"
#include "tcpmsg/sock.h"

#include "../io/io_internal.h"
#include "timer_heap.h"

#include <pthread.h>
#include <sys/types.h>
#include <signal.h>
#include <stdatomic.h>

/* Counters in MAP_SHARED memory, so that forked workers add to the same ones. */
struct tcpmsg__counters {
    _Atomic uint64_t accepted, refused, active, closed_error;
    _Atomic uint64_t msgs_in, msgs_out, bytes_in, bytes_out, workers_replaced, limited;
};

/* Per-client limits: one entry per client address, in MAP_SHARED memory (FORK and POOL
 * processes use the same table), under a process-shared mutex. */
#define TCPMSG__CLIENTS 4096
struct tcpmsg__client {
    uint8_t key[17]; /* family (4 or 6), then the address; key[0] == 0: free */
    int conns;
    int64_t tokens_milli; /* the token bucket, in thousandths of a connection */
    int64_t refilled;     /* tcpmsg_now_ms of the last refill */
};
struct tcpmsg__clients {
    pthread_mutex_t mu;
    struct tcpmsg__client e[TCPMSG__CLIENTS];
};
/* What a connection holds in the table, so that its end gives it back. */
struct tcpmsg__client_ref {
    bool held;
    uint8_t key[17];
};

/* A timer of a connection (tcpmsg_timer_start): in the heap of the loop that serves it. */
struct tcpmsg__utimer {
    struct tcpmsg__timer node; /* first: the heap's pointer is the timer's */
    uint64_t id;
    int64_t period;             /* 0: one-shot */
    tcpmsg_timer_fn fn;         /* a connection's callback ... */
    tcpmsg_worker_timer_fn wfn; /* ... or a worker's (sv is then the worker's own) */
    void *arg;
    struct tcpmsg__served *sv; /* its owner's (NULL: an internal timer of a worker) */
    struct tcpmsg__utimer *next;
    bool internal; /* the server's own (a deadline), embedded in its owner: never freed here */
};

/* What the server keeps on each connection it serves: tcpmsg__conn_hook's argument, so that
 * tcpmsg_server_drop and the timer calls find it from the connection. */
struct tcpmsg__served {
    int drop; /* the reason given to tcpmsg_server_drop, 0 if none */
    void (*dropped)(struct tcpmsg__served *sv); /* tells the owner (EVENT), may be NULL */
    struct tcpmsg_conn *c;
    struct tcpmsg__timers *heap;   /* the serving loop's timers; NULL: no timers (dialog) */
    struct tcpmsg__utimer *timers; /* this connection's, armed */
    uint64_t handle;               /* tcpmsg_conn_handle (EVENT), 0: none */
    uint64_t dial_id;              /* tcpmsg_conn_dial_id (EVENT), 0: accepted */
    struct tcpmsg_worker *worker;  /* EVENT: its worker (c NULL: the worker's own timers) */
    int (*flow)(struct tcpmsg__served *sv, bool pause); /* EVENT: tcpmsg_server_pause/resume */
    int (*end)(struct tcpmsg__served *sv, int reason);  /* EVENT: tcpmsg_server_close */
    int (*shut)(struct tcpmsg__served *sv);             /* EVENT: tcpmsg_server_shutdown */
};

/* A connection served by a blocking worker thread, so that the server can shut its reading
 * side down when it stops (a dialog handler blocked in recv then sees the end). */
struct tcpmsg__slot {
    pthread_t thread;
    int fd;          /* the connection being served, -1 when none */
    bool used, done; /* a thread occupies the slot / it has finished and can be joined */
    struct tcpmsg_server *s;
};

struct tcpmsg_server {
    struct tcpmsg_server_config cfg; /* host/port/codec pointers replaced by our copies */
    char host[256], port[32];
    struct tcpmsg_codec codec;
    struct tcpmsg_handler h;
    int lfd;    /* the listener, non-blocking */
    bool shared_lfd; /* inherited: the EVENT workers share it (no SO_REUSEPORT group) */
    bool unix_file; /* the listener is a Unix socket file it made: removed at destroy, if the
                       file is still that one (dev, ino) and by the process that made it */
    dev_t unix_dev;
    ino_t unix_ino;
    pid_t unix_owner;
    int ready_fd; /* started by a hand-over: the pipe to say "serving" on at run (-1) */
    int wakefd; /* eventfd written once by stop and never read: readable for ever after,
                   in every thread and every forked process */
    atomic_int stopping;
    atomic_int serving_fd; /* ITERATIVE: the connection being served (-1: none), whose reading
                              side stop() shuts down for a dialog handler */
    struct tcpmsg__counters *n;
    struct tcpmsg_tls_ctx *tls;     /* TLS server context (a reference), NULL: plain TCP */
    _Atomic int64_t drain_deadline; /* set when the stop is noticed, read by every thread */
    bool in_child;          /* this copy runs in a forked worker process (FORK, POOL processes) */
    bool max_conns_set;     /* max_conns came from the user (POOL's default bound is workers) */
    _Atomic int *slot_flag; /* in a worker process (FORK executor, POOL worker): its entry in
                               the watcher's shared table, 1 while it holds a connection
                               slot; whoever clears it gives the slot back, the worker
                               before it closes the connection or the watcher when it reaps
                               a worker that died holding one. NULL: threads */

    struct tcpmsg__clients *clients; /* per-client limits (NULL: none set) */
    struct tcpmsg__net *proxy_from; /* proxy_protocol's trusted balancers (NULL: any) */
    int nproxy_from;

    bool signals;
    struct sigaction old_int, old_term;

    pthread_t runner;
    bool started;
    int run_result;

    /* EVENT: the running workers, for tcpmsg_server_send/call from other threads (NULL
     * when the model does not run); senders hold ev_lock for reading, the model sets and
     * clears ev holding it for writing */
    pthread_rwlock_t ev_lock;
    struct tcpmsg__event_run *ev;

    /* blocking models with threads: one slot per connection (THREAD) or per worker (POOL) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct tcpmsg__slot *slots;
    int nslots;
};

/* An address prefix of proxy_from: family 4 or 6, the address's bytes, its length. */
struct tcpmsg__net {
    int family;
    uint8_t a[16];
    int prefix;
};

/* Defaults applied to the copy of the configuration. */
#define TCPMSG__DEFAULT_MAX_CONNS 1024
#define TCPMSG__DEFAULT_FORK_MAX_CONNS 64
#define TCPMSG__RESERVED_FDS 32 /* descriptors max_conns leaves to the process */
#define TCPMSG__DEFAULT_IDLE_MS 60000
#define TCPMSG__DEFAULT_FRAME_MS 10000
#define TCPMSG__DEFAULT_WRITE_MS 10000
#define TCPMSG__DEFAULT_DRAIN_MS 5000
#define TCPMSG__DEFAULT_HANDSHAKE_MS 10000
#define TCPMSG__KILL_GRACE_MS 1000 /* after drain_ms, before a worker process is killed */
#define TCPMSG__DEFAULT_HIGH ((size_t)1024 * 1024)
#define TCPMSG__DEFAULT_LOW ((size_t)256 * 1024)

/* True once the server stops: tcpmsg_server_stop was called in this process, a wait saw the
 * stop eventfd readable (a stop from another process of the server), or, in a worker
 * process, its own SIGTERM came. */
bool tcpmsg__stopping(struct tcpmsg_server *s);
/* A wait saw the stop eventfd (or the worker's own) readable: the server stops. */
void tcpmsg__notice_stop(struct tcpmsg_server *s);

/* In a forked worker process (FORK, POOL): what its SIGTERM handler needs, set up by the
 * child before it unblocks signals. -1 / 0 in the server's own process. */
struct tcpmsg__child_state {
    volatile sig_atomic_t fd;     /* the connection being served, -1 when none */
    volatile sig_atomic_t wakefd; /* this process's own stop eventfd, written by SIGTERM */
    volatile sig_atomic_t stop;   /* SIGTERM came: this worker finishes and exits */
    volatile sig_atomic_t dialog; /* the handler is a dialog: SIGTERM also shuts fd's
                                     reading side, so that a blocked recv returns */
};
extern struct tcpmsg__child_state tcpmsg__child;
/* Reports an event to the log callback, with fd's 4-tuple (fd < 0: none). */
void tcpmsg__log(const struct tcpmsg_server *s, enum tcpmsg_server_event ev, int code, int fd);
/* Logs with the 4-tuple given (kept from the open: once both sides have ended, or after a
 * reset, the socket has no peer any more), or the fd's when tuple is NULL. */
void tcpmsg__log_tuple(const struct tcpmsg_server *s, enum tcpmsg_server_event ev, int code, int fd,
                       const char *tuple);
/* proxy_protocol: 0 when fd's peer may send a header (proxy_from), else -EACCES. */
int tcpmsg__proxy_trusted(const struct tcpmsg_server *s, int fd);
/* Reports an event with c's 4-tuple (the client's address when a PROXY header gave it). */
void tcpmsg__log_conn(const struct tcpmsg_server *s, enum tcpmsg_server_event ev, int code,
                      const struct tcpmsg_conn *c);
/* Per-client limits for connection c, once its client's address is known (after its PROXY
 * header): 0 (admitted: *ref holds its place, given back by tcpmsg__client_release), or
 * TCPMSG_ELIMIT (counted in stats.limited; refuse it). Always 0 without limits. */
int tcpmsg__client_admit(struct tcpmsg_server *s, const struct tcpmsg_conn *c,
                         struct tcpmsg__client_ref *ref);
void tcpmsg__client_release(struct tcpmsg_server *s, struct tcpmsg__client_ref *ref);
/* The time a PROXY header has to arrive in: frame_timeout_ms, or handshake_timeout_ms. */
int tcpmsg__proxy_ms(const struct tcpmsg_server *s);
/* Adds a finished connection's counters and outcome. */
void tcpmsg__account(struct tcpmsg_server *s, const struct tcpmsg_conn *c, int reason);
/* Takes one of the max_conns connection slots for fd (true), or refuses fd: closed at once,
 * counted as refused, logged with TCPMSG_EFULL (false). tcpmsg__release gives a slot back;
 * tcpmsg__release_held gives back the slot this process holds (through slot_flag in a
 * worker process, at most once). */
bool tcpmsg__admit(struct tcpmsg_server *s, int fd);
void tcpmsg__release(struct tcpmsg_server *s);
void tcpmsg__release_held(struct tcpmsg_server *s);
/* Serves one admitted connection with the blocking loop; takes fd and the slot, which it
 * gives back before the peer can see the end (so that a client told "closed" can connect
 * again at once). `slot` (may be NULL) records the fd while it is served. */
void tcpmsg__serve_blocking(struct tcpmsg_server *s, int fd, struct tcpmsg__slot *slot);
/* Shuts down the reading side of every connection in a slot (threads' dialog handlers). */
void tcpmsg__shutdown_slots(struct tcpmsg_server *s, int how);
/* The options of a served connection: the user's, with TCPMSG_FLUSH_MANUAL (handlers only
 * queue) and room for the output watermarks. */
struct tcpmsg_conn_opts tcpmsg__conn_opts(const struct tcpmsg_server *s);
/* The drain deadline: drain_ms after the stop was first noticed in this process (the first
 * call fixes it). */
int64_t tcpmsg__drain_deadline(struct tcpmsg_server *s);

/* Cancels every timer of the connection (before its on_close, or when it is refused). */
void tcpmsg__timers_cancel(struct tcpmsg__served *sv);
/* A timer of sv (fn for a connection's, wfn for a worker's): see tcpmsg_timer_start. */
int tcpmsg__timer_add(struct tcpmsg__served *sv, int64_t delay_ms, int64_t period_ms,
                      tcpmsg_timer_fn fn, tcpmsg_worker_timer_fn wfn, void *arg, uint64_t *id);
int tcpmsg__timer_stop(struct tcpmsg__served *sv, uint64_t id);
/* Runs the callbacks of the timers of heap h due at `now` (periodic ones re-armed first),
 * in the calling thread. Returns how many ran. */
int tcpmsg__timers_run(struct tcpmsg__timers *h, int64_t now);

/* EVENT: queues a frame (fn NULL) or a call for the connection h names (see
 * tcpmsg_server_send / tcpmsg_server_call). */
int tcpmsg__event_post(struct tcpmsg_server *s, uint64_t h,
                       void (*fn)(struct tcpmsg_conn *, void *), void *arg, const void *data,
                       size_t len);

int tcpmsg__run_iterative(struct tcpmsg_server *s);
int tcpmsg__run_thread(struct tcpmsg_server *s);
int tcpmsg__run_fork(struct tcpmsg_server *s);
int tcpmsg__run_pool(struct tcpmsg_server *s);
int tcpmsg__run_event(struct tcpmsg_server *s);

#endif
