/* The server: configuration, life cycle, signals, and the blocking connection loop shared
 * by the ITERATIVE, FORK, THREAD and POOL models. */
#include "server_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* The server whose stop SIGINT/SIGTERM trigger. A signal handler has no argument, so this is
 * the one piece of process-wide state, and only with handle_signals. */
static _Atomic(struct tcpmsg_server *) signal_server;

static void
on_signal(int sig)
{
    (void)sig;
    struct tcpmsg_server *s = atomic_load(&signal_server);
    if (s)
        tcpmsg_server_stop(s);
}

struct tcpmsg__child_state tcpmsg__child = {-1, -1, 0, 0};

bool
tcpmsg__stopping(struct tcpmsg_server *s)
{
    return atomic_load_explicit(&s->stopping, memory_order_acquire) ||
           (s->in_child && tcpmsg__child.stop);
}

void
tcpmsg__notice_stop(struct tcpmsg_server *s)
{
    atomic_store_explicit(&s->stopping, 1, memory_order_release);
    tcpmsg__drain_deadline(s); /* from the first sight of the stop */
}

bool
tcpmsg__admit(struct tcpmsg_server *s, int fd)
{
    /* The slot is taken before the check, so that workers accepting at the same time (in
     * threads or processes: the counter is shared) cannot pass max_conns together. */
    if (atomic_fetch_add(&s->n->active, 1) < (uint64_t)s->cfg.max_conns) {
        /* Replies are coalesced by the connection already: Nagle's algorithm would only
         * hold a small write behind an unacknowledged one (a TLS server's ticket, then its
         * first reply, waited for the client's delayed ACK: 40 ms a handshake). */
        if (!s->cfg.nagle)
            (void)tcpmsg_sock_set_nodelay(fd, true);
        return true;
    }
    atomic_fetch_sub(&s->n->active, 1);
    atomic_fetch_add(&s->n->refused, 1);
    tcpmsg__log(s, TCPMSG_EV_REFUSED, TCPMSG_EFULL, fd);
    tcpmsg_sock_close(fd);
    return false;
}

void
tcpmsg__release(struct tcpmsg_server *s)
{
    atomic_fetch_sub(&s->n->active, 1);
}

void
tcpmsg__release_held(struct tcpmsg_server *s)
{
    if (!s->slot_flag || atomic_exchange(s->slot_flag, 0))
        tcpmsg__release(s);
}

void
tcpmsg_server_stop(struct tcpmsg_server *s)
{
    if (!s)
        return;
    int e = errno; /* may run in a signal handler */
    atomic_store_explicit(&s->stopping, 1, memory_order_release);
    /* A dialog handler of the ITERATIVE model blocks in this very process: end its reading.
     * (If the fd was closed and reused meanwhile, the stop ends that connection instead,
     * which the stop does anyway.) */
    int fd = atomic_load(&s->serving_fd);
    if (fd >= 0 && s->h.dialog)
        shutdown(fd, SHUT_RD);
    uint64_t one = 1;
    ssize_t r = write(s->wakefd, &one, sizeof one);
    (void)r; /* a full counter is still readable: nothing to do */
    errno = e;
}

void
tcpmsg__log(const struct tcpmsg_server *s, enum tcpmsg_server_event ev, int code, int fd)
{
    tcpmsg__log_tuple(s, ev, code, fd, NULL);
}

void
tcpmsg__log_tuple(const struct tcpmsg_server *s, enum tcpmsg_server_event ev, int code, int fd,
                  const char *tuple)
{
    if (!s->cfg.log)
        return;
    char buf[TCPMSG_TUPLE_STRLEN] = "";
    if (!tuple && fd >= 0 && tcpmsg_addr_tuple(fd, buf, sizeof buf) < 0)
        buf[0] = '\0';
    s->cfg.log(s->cfg.log_user, ev, code, tuple ? tuple : buf);
}

void
tcpmsg__log_conn(const struct tcpmsg_server *s, enum tcpmsg_server_event ev, int code,
                 const struct tcpmsg_conn *c)
{
    if (!s->cfg.log)
        return;
    char buf[TCPMSG_TUPLE_STRLEN];
    if (tcpmsg_conn_tuple(c, buf, sizeof buf) < 0)
        buf[0] = '\0';
    s->cfg.log(s->cfg.log_user, ev, code, buf);
}

/* ---- the PROXY protocol's trusted balancers ----------------------------------------------- */

/* "ADDR" or "ADDR/PREFIX" into *n. */
static int
parse_net(const char *text, struct tcpmsg__net *n)
{
    char addr[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(text, '/');
    size_t len = slash ? (size_t)(slash - text) : strlen(text);
    if (len == 0 || len >= sizeof addr)
        return -EINVAL;
    memcpy(addr, text, len);
    addr[len] = '\0';
    memset(n, 0, sizeof *n);
    if (inet_pton(AF_INET, addr, n->a) == 1)
        n->family = 4;
    else if (inet_pton(AF_INET6, addr, n->a) == 1)
        n->family = 6;
    else
        return -EINVAL;
    int max = n->family == 4 ? 32 : 128;
    n->prefix = max;
    if (slash) {
        const char *p = slash + 1;
        int v = 0;
        if (!*p || strlen(p) > 3)
            return -EINVAL;
        for (; *p; p++) {
            if (*p < '0' || *p > '9')
                return -EINVAL;
            v = v * 10 + (*p - '0');
        }
        if (v > max)
            return -EINVAL;
        n->prefix = v;
    }
    return 0;
}

static int
copy_proxy_from(struct tcpmsg_server *s, const char *const *list)
{
    if (!list)
        return 0;
    if (!s->cfg.proxy_protocol)
        return -EINVAL; /* a list of balancers without their header means a mistake */
    int n = 0;
    while (list[n])
        if (++n > 4096)
            return -EINVAL;
    if (n == 0)
        return -EINVAL;
    s->proxy_from = calloc((size_t)n, sizeof *s->proxy_from);
    if (!s->proxy_from)
        return -ENOMEM;
    for (int i = 0; i < n; i++)
        if (parse_net(list[i], &s->proxy_from[i]) < 0)
            return -EINVAL;
    s->nproxy_from = n;
    return 0;
}

static bool
in_net(const struct tcpmsg__net *n, int family, const uint8_t *a)
{
    if (n->family != family)
        return false;
    int full = n->prefix / 8, rest = n->prefix % 8;
    if (memcmp(n->a, a, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xFF << (8 - rest));
    return (n->a[full] & mask) == (a[full] & mask);
}

int
tcpmsg__proxy_trusted(const struct tcpmsg_server *s, int fd)
{
    if (!s->proxy_from)
        return 0;
    struct tcpmsg_addr peer;
    int r = tcpmsg_addr_peer(fd, &peer);
    if (r < 0)
        return r == -ENOTCONN ? -ECONNRESET : r; /* reset before it was accepted */
    tcpmsg_addr_unmap(&peer);
    int family = tcpmsg_addr_family(&peer);
    const uint8_t *a = family == TCPMSG_FAMILY_V4   ? (const uint8_t *)&peer.u.in4.sin_addr
                       : family == TCPMSG_FAMILY_V6 ? (const uint8_t *)&peer.u.in6.sin6_addr
                                                    : NULL;
    for (int i = 0; a && i < s->nproxy_from; i++)
        if (in_net(&s->proxy_from[i], family, a))
            return 0;
    return -EACCES;
}

/* ---- per-client limits ----------------------------------------------------------------- */

static int
clients_init(struct tcpmsg_server *s)
{
    const struct tcpmsg_server_config *c = &s->cfg;
    if (c->max_conns_per_client < 0 || c->conn_rate_per_client < 0 ||
        c->conn_burst_per_client < 0 || (c->conn_burst_per_client && !c->conn_rate_per_client))
        return -EINVAL;
    if (!c->max_conns_per_client && !c->conn_rate_per_client)
        return 0;
    if (!c->conn_burst_per_client)
        s->cfg.conn_burst_per_client = c->conn_rate_per_client;
    s->clients =
        mmap(NULL, sizeof *s->clients, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s->clients == MAP_FAILED) {
        s->clients = NULL;
        return -ENOMEM;
    }
    memset(s->clients, 0, sizeof *s->clients);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST); /* a worker killed holding it */
    int r = pthread_mutex_init(&s->clients->mu, &a);
    pthread_mutexattr_destroy(&a);
    return -r;
}

static void
clients_lock(struct tcpmsg__clients *t)
{
    if (pthread_mutex_lock(&t->mu) == EOWNERDEAD)
        pthread_mutex_consistent(&t->mu); /* the entries are plain counts: still usable */
}

/* The table's key of an address, false for one that is not limited (Unix). */
static bool
client_key(const struct tcpmsg_addr *addr, uint8_t key[17])
{
    struct tcpmsg_addr a = *addr;
    tcpmsg_addr_unmap(&a);
    memset(key, 0, 17);
    if (tcpmsg_addr_family(&a) == TCPMSG_FAMILY_V4) {
        key[0] = 4;
        memcpy(key + 1, &a.u.in4.sin_addr, 4);
    } else if (tcpmsg_addr_family(&a) == TCPMSG_FAMILY_V6) {
        key[0] = 6;
        memcpy(key + 1, &a.u.in6.sin6_addr, 16);
    } else {
        return false;
    }
    return true;
}

/* FNV-1a over the key: where its probe sequence starts. */
static size_t
client_slot(const uint8_t key[17])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 17; i++)
        h = (h ^ key[i]) * 16777619u;
    return h % TCPMSG__CLIENTS;
}

/* The entry of key, made if need be (reusing an idle one: no connection, a full bucket);
 * NULL when the table is full of busy addresses. Caller holds the lock. */
static struct tcpmsg__client *
client_entry(struct tcpmsg_server *s, const uint8_t key[17], int64_t now, bool make)
{
    struct tcpmsg__clients *t = s->clients;
    int64_t full = (int64_t)s->cfg.conn_burst_per_client * 1000;
    struct tcpmsg__client *spare = NULL;
    size_t i = client_slot(key);
    for (size_t n = 0; n < TCPMSG__CLIENTS; n++, i = (i + 1) % TCPMSG__CLIENTS) {
        struct tcpmsg__client *e = &t->e[i];
        if (e->key[0] && memcmp(e->key, key, 17) == 0)
            return e;
        bool idle = !e->key[0] ||
                    (e->conns == 0 &&
                     (!full ||
                      e->tokens_milli + (now - e->refilled) * s->cfg.conn_rate_per_client >= full));
        if (idle && !spare)
            spare = e;
        if (!e->key[0])
            break; /* the end of this probe sequence: key is not in the table */
    }
    if (!make || !spare)
        return NULL;
    memcpy(spare->key, key, 17);
    spare->conns = 0;
    spare->tokens_milli = full;
    spare->refilled = now;
    return spare;
}

int
tcpmsg__client_admit(struct tcpmsg_server *s, const struct tcpmsg_conn *c,
                     struct tcpmsg__client_ref *ref)
{
    ref->held = false;
    if (!s->clients)
        return 0;
    struct tcpmsg_addr a;
    if (tcpmsg_conn_peer(c, &a) < 0 || !client_key(&a, ref->key))
        return 0;
    int64_t now = tcpmsg_now_ms();
    int r = 0;
    clients_lock(s->clients);
    struct tcpmsg__client *e = client_entry(s, ref->key, now, true);
    if (e) {
        const struct tcpmsg_server_config *cfg = &s->cfg;
        if (cfg->conn_rate_per_client) {
            int64_t full = (int64_t)cfg->conn_burst_per_client * 1000;
            e->tokens_milli += (now - e->refilled) * cfg->conn_rate_per_client;
            if (e->tokens_milli > full)
                e->tokens_milli = full;
            e->refilled = now;
        }
        bool over = (cfg->max_conns_per_client && e->conns >= cfg->max_conns_per_client) ||
                    (cfg->conn_rate_per_client && e->tokens_milli < 1000);
        if (over)
            r = TCPMSG_ELIMIT;
        if (r == 0) {
            e->conns++;
            if (cfg->conn_rate_per_client)
                e->tokens_milli -= 1000;
            ref->held = true;
        }
    } /* else: the table is full of busy addresses; this one is not limited */
    pthread_mutex_unlock(&s->clients->mu);
    if (r < 0)
        atomic_fetch_add(&s->n->limited, 1);
    return r;
}

void
tcpmsg__client_release(struct tcpmsg_server *s, struct tcpmsg__client_ref *ref)
{
    if (!ref->held || !s->clients)
        return;
    ref->held = false;
    clients_lock(s->clients);
    struct tcpmsg__client *e = client_entry(s, ref->key, tcpmsg_now_ms(), false);
    if (e && e->conns > 0)
        e->conns--;
    pthread_mutex_unlock(&s->clients->mu);
}

int
tcpmsg__proxy_ms(const struct tcpmsg_server *s)
{
    return s->cfg.frame_timeout_ms > 0 ? s->cfg.frame_timeout_ms : s->cfg.handshake_timeout_ms;
}

void
tcpmsg__account(struct tcpmsg_server *s, const struct tcpmsg_conn *c, int reason)
{
    struct tcpmsg_conn_stats st;
    tcpmsg_conn_stats(c, &st);
    atomic_fetch_add(&s->n->msgs_in, st.msgs_in);
    atomic_fetch_add(&s->n->msgs_out, st.msgs_out);
    atomic_fetch_add(&s->n->bytes_in, st.bytes_in);
    atomic_fetch_add(&s->n->bytes_out, st.bytes_out);
    if (reason != TCPMSG_EOF && reason != -ESHUTDOWN)
        atomic_fetch_add(&s->n->closed_error, 1);
}

struct tcpmsg_conn_opts
tcpmsg__conn_opts(const struct tcpmsg_server *s)
{
    struct tcpmsg_conn_opts o = s->cfg.conn;
    o.flush = TCPMSG_FLUSH_MANUAL;
    if (o.max_output < s->cfg.output_high * 4)
        o.max_output = s->cfg.output_high * 4;
    return o;
}

int64_t
tcpmsg__drain_deadline(struct tcpmsg_server *s)
{
    /* Fixed by the first part of this process that asks (the thread that noticed the stop
     * first), then the same for every connection. */
    int64_t dl = atomic_load(&s->drain_deadline);
    if (dl == 0) {
        int64_t mine = tcpmsg_deadline_in(s->cfg.drain_ms);
        dl = atomic_compare_exchange_strong(&s->drain_deadline, &dl, mine) ? mine : dl;
    }
    return dl;
}

/* ---- the blocking connection loop ------------------------------------------------------- */

static int64_t
after(int64_t from, int ms)
{
    return ms < 0 ? TCPMSG_FOREVER : from + ms;
}

/* ---- timers of connections ---------------------------------------------------------- */

static _Atomic uint64_t last_timer_id; /* ids are never reused within the process */

int
tcpmsg_timer_start(struct tcpmsg_conn *c, int64_t delay_ms, int64_t period_ms, tcpmsg_timer_fn fn,
                   void *arg, uint64_t *id)
{
    if (id)
        *id = 0;
    struct tcpmsg__served *sv = c ? tcpmsg__conn_hook_arg(c) : NULL;
    if (!sv || !fn)
        return -EINVAL;
    return tcpmsg__timer_add(sv, delay_ms, period_ms, fn, NULL, arg, id);
}

int
tcpmsg__timer_add(struct tcpmsg__served *sv, int64_t delay_ms, int64_t period_ms,
                  tcpmsg_timer_fn fn, tcpmsg_worker_timer_fn wfn, void *arg, uint64_t *id)
{
    if (id)
        *id = 0;
    if (delay_ms < 0 || period_ms < 0)
        return -EINVAL;
    if (!sv->heap)
        return -ENOTSUP;
    struct tcpmsg__utimer *u = calloc(1, sizeof *u);
    if (!u)
        return -ENOMEM;
    tcpmsg__timer_init(&u->node);
    int64_t now = tcpmsg_now_ms();
    int64_t due = delay_ms > INT64_MAX - now ? INT64_MAX : now + delay_ms;
    if (tcpmsg__timers_arm(sv->heap, &u->node, due) < 0) {
        free(u);
        return -ENOMEM;
    }
    u->id = atomic_fetch_add(&last_timer_id, 1) + 1;
    u->period = period_ms;
    u->fn = fn;
    u->wfn = wfn;
    u->arg = arg;
    u->sv = sv;
    u->next = sv->timers;
    sv->timers = u;
    if (id)
        *id = u->id;
    return 0;
}

/* Unlinks u from its connection's list and frees it (disarmed first). */
static void
timer_free(struct tcpmsg__utimer *u)
{
    struct tcpmsg__served *sv = u->sv;
    tcpmsg__timers_disarm(sv->heap, &u->node);
    struct tcpmsg__utimer **p = &sv->timers;
    while (*p && *p != u)
        p = &(*p)->next;
    if (*p) /* always: an armed timer is on its connection's list */
        *p = u->next;
    free(u);
}

int
tcpmsg_timer_stop(struct tcpmsg_conn *c, uint64_t id)
{
    struct tcpmsg__served *sv = c ? tcpmsg__conn_hook_arg(c) : NULL;
    if (!sv)
        return -EINVAL;
    return tcpmsg__timer_stop(sv, id);
}

int
tcpmsg__timer_stop(struct tcpmsg__served *sv, uint64_t id)
{
    for (struct tcpmsg__utimer *u = sv->timers; u; u = u->next) {
        if (u->id == id) {
            timer_free(u);
            return 0;
        }
    }
    return -ENOENT;
}

void
tcpmsg__timers_cancel(struct tcpmsg__served *sv)
{
    while (sv->timers) {
        struct tcpmsg__utimer *u = sv->timers;
        sv->timers = u->next;
        tcpmsg__timers_disarm(sv->heap, &u->node);
        free(u);
    }
}

int
tcpmsg__timers_run(struct tcpmsg__timers *h, int64_t now)
{
    int ran = 0;
    struct tcpmsg__timer *t;
    /* Only what was due when the run began: a callback that starts a timer due at once does
     * not run it in the same pass (a 0 ms periodic timer cannot starve the loop). */
    uint64_t last = h->seq;
    while ((t = tcpmsg__timers_pop_due(h, now))) {
        struct tcpmsg__utimer *u = (struct tcpmsg__utimer *)t;
        if (t->seq > last) { /* armed during this pass: next time */
            if (tcpmsg__timers_arm(h, t, t->due) < 0 && !u->internal)
                timer_free(u);
            break;
        }
        if (u->internal) { /* popped, so disarmed: its owner re-arms it if it wants */
            u->fn(u->sv ? u->sv->c : NULL, u->id, u->arg);
            ran++;
            continue;
        }
        if (!u->sv)
            continue; /* never: the handler's timers always have their owner */
        struct tcpmsg_conn *c = u->sv->c;
        struct tcpmsg_worker *wk = u->sv->worker;
        tcpmsg_timer_fn fn = u->fn;
        tcpmsg_worker_timer_fn wfn = u->wfn;
        void *arg = u->arg;
        uint64_t id = u->id;
        if (u->period > 0) {
            int64_t due = t->due + u->period;
            if (due <= now) /* fell behind: the missed periods are skipped */
                due = now + u->period;
            if (tcpmsg__timers_arm(h, t, due) < 0)
                timer_free(u);
        } else {
            timer_free(u); /* gone before its callback: stopping it there says -ENOENT */
        }
        if (wfn)
            wfn(wk, id, arg);
        else
            fn(c, id, arg);
        ran++;
    }
    return ran;
}

/* ---- handles: other threads reach a connection ---------------------------------------- */

uint64_t
tcpmsg_conn_handle(const struct tcpmsg_conn *c)
{
    const struct tcpmsg__served *sv = c ? tcpmsg__conn_hook_arg(c) : NULL;
    return sv ? sv->handle : 0;
}

int
tcpmsg_server_send(struct tcpmsg_server *s, uint64_t h, const void *data, size_t len)
{
    if (!s || (!data && len))
        return -EINVAL;
    if (len > tcpmsg_codec_max_payload(&s->codec))
        return -EMSGSIZE;
    return tcpmsg__event_post(s, h, NULL, NULL, data, len);
}

int
tcpmsg_server_call(struct tcpmsg_server *s, uint64_t h,
                   void (*fn)(struct tcpmsg_conn *c, void *arg), void *arg)
{
    if (!s || !fn)
        return -EINVAL;
    return tcpmsg__event_post(s, h, fn, arg, NULL, 0);
}

uint64_t
tcpmsg_conn_dial_id(const struct tcpmsg_conn *c)
{
    const struct tcpmsg__served *sv = c ? tcpmsg__conn_hook_arg(c) : NULL;
    return sv ? sv->dial_id : 0;
}

struct tcpmsg_worker *
tcpmsg_conn_worker(const struct tcpmsg_conn *c)
{
    const struct tcpmsg__served *sv = c ? tcpmsg__conn_hook_arg(c) : NULL;
    return sv ? sv->worker : NULL;
}

static int
flow(struct tcpmsg_conn *c, bool pause)
{
    struct tcpmsg__served *sv = c ? tcpmsg__conn_hook_arg(c) : NULL;
    if (!c)
        return -EINVAL;
    if (!sv || !sv->flow)
        return -ENOTSUP;
    return sv->flow(sv, pause);
}

int
tcpmsg_server_close(struct tcpmsg_conn *c, int reason)
{
    struct tcpmsg__served *sv = c ? tcpmsg__conn_hook_arg(c) : NULL;
    if (!c || reason >= 0)
        return -EINVAL;
    if (!sv || !sv->end)
        return -ENOTSUP;
    return sv->end(sv, reason);
}

int
tcpmsg_server_shutdown(struct tcpmsg_conn *c)
{
    struct tcpmsg__served *sv = c ? tcpmsg__conn_hook_arg(c) : NULL;
    if (!c)
        return -EINVAL;
    if (!sv || !sv->shut)
        return -ENOTSUP;
    return sv->shut(sv);
}

int
tcpmsg_server_pause(struct tcpmsg_conn *c)
{
    return flow(c, true);
}

int
tcpmsg_server_resume(struct tcpmsg_conn *c)
{
    return flow(c, false);
}

int
tcpmsg_server_drop(struct tcpmsg_conn *c, int reason)
{
    struct tcpmsg__served *sv = tcpmsg__conn_hook_arg(c);
    if (!sv || reason >= 0)
        return -EINVAL;
    if (sv->drop)
        return 0;
    sv->drop = reason;
    if (sv->dropped)
        sv->dropped(sv);
    return 0;
}

/* Writes c's queued output until `deadline`, watching for the stop meanwhile (a peer that
 * does not read must not keep a stopping server past drain_ms): once it is seen
 * (*stopping), the output has until the drain deadline at most. Returns as
 * tcpmsg_conn_flush. */
static int
flush_or_stop(struct tcpmsg_server *s, struct tcpmsg_conn *c, int64_t deadline, bool *stopping)
{
    for (;;) {
        int64_t dl =
            *stopping ? tcpmsg_deadline_min(deadline, tcpmsg__drain_deadline(s)) : deadline;
        int r = tcpmsg_conn_flush(c, TCPMSG_NOWAIT);
        if (r != -ETIMEDOUT)
            return r;
        if (tcpmsg_deadline_left(dl) == 0)
            return -ETIMEDOUT;
        struct pollfd p[3] = {
            {.fd = tcpmsg_conn_fd(c), .events = POLLOUT},
            {.fd = *stopping ? -1 : s->wakefd, .events = POLLIN},
            {.fd = *stopping || !s->in_child ? -1 : tcpmsg__child.wakefd, .events = POLLIN}};
        if (poll(p, 3, tcpmsg_deadline_left(dl)) < 0 && errno != EINTR)
            return -errno;
        if (p[1].revents)
            tcpmsg__notice_stop(s);
        if (p[1].revents || p[2].revents || tcpmsg__stopping(s))
            *stopping = true;
    }
}

/* Runs on_message over the connection until it ends; returns the reason. */
static int
message_loop(struct tcpmsg_server *s, struct tcpmsg_conn *c, struct tcpmsg__served *sv)
{
    const struct tcpmsg_handler *h = &s->h;
    int64_t last_rx = tcpmsg_now_ms(), partial_since = 0;
    uint64_t seen = 0;
    bool stopping = tcpmsg__stopping(s); /* then one pass over what already arrived */
    for (;;) {
        /* Backpressure: replies the peer does not read are written before another request
         * is read, so what a connection holds stays below output_high plus one reply. */
        if (tcpmsg_conn_output(c, NULL) >= s->cfg.output_high) {
            int w = flush_or_stop(s, c, tcpmsg_deadline_in(s->cfg.write_timeout_ms), &stopping);
            if (w < 0)
                return stopping && w == -ETIMEDOUT ? -ESHUTDOWN : w;
        }
        struct tcpmsg_frame m;
        int r = tcpmsg_conn_recv(c, &m, TCPMSG_NOWAIT);
        if (r == 0) {
            partial_since = 0;
            if (h->on_message && (r = h->on_message(c, &m, h->user)) < 0)
                return r;
            /* A peer that keeps the pipeline full does not starve the timers. */
            if (sv->heap->n && tcpmsg__timers_next(sv->heap) <= tcpmsg_now_ms())
                tcpmsg__timers_run(sv->heap, tcpmsg_now_ms());
            if (sv->drop)
                return sv->drop;
            continue;
        }
        if (r != -ETIMEDOUT)
            return r; /* the peer's end, or its error */

        /* Every whole frame received is handled: write the replies, then wait. When the
         * server stops, the replies have until the drain deadline, and the connection ends
         * without waiting for more from the peer (a half frame does not hold the stop). */
        r = flush_or_stop(s, c, tcpmsg_deadline_in(s->cfg.write_timeout_ms), &stopping);
        if (r < 0) /* at stop, replies not written within drain_ms: reset below */
            return stopping && r == -ETIMEDOUT ? -ESHUTDOWN : r;
        if (stopping)
            return -ESHUTDOWN;

        int64_t now = tcpmsg_now_ms();
        struct tcpmsg_conn_stats st;
        tcpmsg_conn_stats(c, &st);
        if (st.bytes_in != seen) {
            seen = st.bytes_in;
            last_rx = now;
        }
        size_t partial = tcpmsg_conn_buffered(c);
        if (partial && !partial_since)
            partial_since = now;
        int64_t idle_at = after(last_rx, s->cfg.idle_timeout_ms);
        int64_t slow_at = partial ? after(partial_since, s->cfg.frame_timeout_ms) : TCPMSG_FOREVER;
        /* The server's stop eventfd, and in a worker process its own (its SIGTERM); poll
         * ignores the -1 of the server's own process. */
        struct pollfd p[3] = {{.fd = tcpmsg_conn_fd(c), .events = POLLIN},
                              {.fd = s->wakefd, .events = POLLIN},
                              {.fd = s->in_child ? tcpmsg__child.wakefd : -1, .events = POLLIN}};
        int64_t next = tcpmsg__timers_next(sv->heap);
        int64_t timer_at = next == INT64_MAX ? TCPMSG_FOREVER : next;
        int64_t wake_at = tcpmsg_deadline_min(tcpmsg_deadline_min(idle_at, slow_at), timer_at);
        int n = poll(p, 3, tcpmsg_deadline_left(wake_at));
        if (n < 0 && errno != EINTR)
            return -errno;
        if (tcpmsg__timers_run(sv->heap, tcpmsg_now_ms()) > 0 && sv->drop)
            return sv->drop;
        /* Stopping: one more pass takes the frames that already arrived, then the end. */
        if (p[1].revents)
            tcpmsg__notice_stop(s);
        if (p[1].revents || p[2].revents || tcpmsg__stopping(s)) {
            stopping = true;
            continue;
        }
        if (n == 0) {
            now = tcpmsg_now_ms();
            if (slow_at >= 0 && now >= slow_at)
                return TCPMSG_ESLOW;
            if (idle_at >= 0 && now >= idle_at)
                return TCPMSG_EIDLE;
        }
    }
}

/* Between two steps of a connection's opening (its PROXY header, its TLS handshake): waits
 * until its socket is ready, the deadline passes or the server stops (a client that never
 * says anything must not hold a stopping server). Returns 0 (step again), -ETIMEDOUT,
 * -ESHUTDOWN, or poll's error. */
static int
wait_opening(struct tcpmsg_server *s, struct tcpmsg_conn *c, int64_t dl)
{
    if (tcpmsg__stopping(s))
        return -ESHUTDOWN;
    if (tcpmsg_deadline_left(dl) == 0)
        return -ETIMEDOUT;
    short out = tcpmsg_conn_output(c, NULL) ? POLLOUT : 0;
    struct pollfd pf[3] = {{.fd = tcpmsg_conn_fd(c), .events = (short)(POLLIN | out)},
                           {.fd = s->wakefd, .events = POLLIN},
                           {.fd = s->in_child ? tcpmsg__child.wakefd : -1, .events = POLLIN}};
    if (poll(pf, 3, tcpmsg_deadline_left(dl)) < 0 && errno != EINTR)
        return -errno;
    if (pf[1].revents)
        tcpmsg__notice_stop(s);
    return 0;
}

/* The TLS handshake of a new connection, under handshake_timeout_ms. Returns 0, or why it
 * failed. */
static int
handshake_or_stop(struct tcpmsg_server *s, struct tcpmsg_conn *c)
{
    struct tcpmsg_tls_params p = {.ctx = s->tls};
    int64_t dl = tcpmsg_deadline_in(s->cfg.handshake_timeout_ms);
    int r = tcpmsg_conn_start_tls(c, &p, TCPMSG_NOWAIT);
    while (r == -ETIMEDOUT) {
        int w = wait_opening(s, c, dl);
        if (w < 0)
            return w;
        r = tcpmsg_conn_handshake(c, TCPMSG_NOWAIT);
    }
    return r;
}

/* proxy_protocol: the header of a new connection from a trusted balancer, read before
 * anything else and recorded on c. Returns 0, or why the connection is refused. */
static int
proxy_or_stop(struct tcpmsg_server *s, struct tcpmsg_conn *c)
{
    int fd = tcpmsg_conn_fd(c);
    int r = tcpmsg__proxy_trusted(s, fd);
    if (r < 0)
        return r;
    struct tcpmsg__proxy_rd *rd = malloc(sizeof *rd); /* 4 KiB: not on a worker's stack */
    if (!rd)
        return -ENOMEM;
    rd->have = 0;
    struct tcpmsg_proxy_info pi;
    int64_t dl = tcpmsg_deadline_in(tcpmsg__proxy_ms(s));
    while ((r = tcpmsg__proxy_step(fd, rd, &pi)) == -EAGAIN) {
        int w = wait_opening(s, c, dl);
        if (w < 0) {
            r = w;
            break;
        }
    }
    free(rd);
    return r < 0 ? r : tcpmsg_conn_set_proxy(c, &pi);
}

/* Records (fd) or forgets (-1) the connection a worker serves, for the stop's shutdown of
 * a dialog's reading side: in its slot (threads) or for its SIGTERM handler (processes). */
static void
mark_served(struct tcpmsg_server *s, struct tcpmsg__slot *slot, int fd)
{
    if (slot) {
        pthread_mutex_lock(&s->mu);
        slot->fd = fd;
        pthread_mutex_unlock(&s->mu);
    }
    if (s->in_child)
        tcpmsg__child.fd = fd;
}

void
tcpmsg__serve_blocking(struct tcpmsg_server *s, int fd, struct tcpmsg__slot *slot)
{
    struct tcpmsg_conn_opts o = tcpmsg__conn_opts(s);
    if (s->h.dialog)
        o.flush = TCPMSG_FLUSH_BATCH; /* the dialog's own sends write, under its deadlines */
    struct tcpmsg_conn *c;
    if (tcpmsg_conn_open(&c, fd, &s->codec, &o) < 0) {
        tcpmsg__release_held(s);
        tcpmsg_sock_close(fd);
        return;
    }
    struct tcpmsg__timers heap;
    tcpmsg__timers_init(&heap);
    struct tcpmsg__served sv = {.c = c, .heap = s->h.dialog ? NULL : &heap};
    tcpmsg__conn_hook(c, NULL, &sv);
    mark_served(s, slot, fd);
    struct tcpmsg__client_ref client;
    int hs = s->cfg.proxy_protocol ? proxy_or_stop(s, c) : 0;
    if (hs == 0)
        hs = tcpmsg__client_admit(s, c, &client); /* the client is known: its limits */
    else
        client.held = false;
    if (hs == 0 && s->tls)
        hs = handshake_or_stop(s, c);
    if (hs < 0) { /* not opened: no on_open, no on_close; refused, with the reason */
        tcpmsg__client_release(s, &client);
        atomic_fetch_add(&s->n->refused, 1);
        tcpmsg__release_held(s);
        tcpmsg__log(s, TCPMSG_EV_REFUSED, hs, fd);
        mark_served(s, slot, -1);
        tcpmsg_conn_close(c, TCPMSG_NOWAIT);
        return;
    }
    tcpmsg__log_conn(s, TCPMSG_EV_OPEN, 0, c);
    int reason = 0;
    bool served = true;
    if (s->h.on_open && (reason = s->h.on_open(c, s->h.user)) < 0) {
        tcpmsg__timers_cancel(&sv);
        atomic_fetch_add(&s->n->refused, 1);
        tcpmsg__log_conn(s, TCPMSG_EV_REFUSED, reason, c);
        served = false;
    } else {
        reason = s->h.dialog ? s->h.dialog(c, s->h.user) : message_loop(s, c, &sv);
        if (sv.drop)
            reason = sv.drop;
        tcpmsg__timers_cancel(&sv); /* none fires once on_close has run */
        if (s->h.on_close)
            s->h.on_close(c, reason, s->h.user);
        tcpmsg__account(s, c, reason);
    }
    mark_served(s, slot, -1);
    /* A peer that ended gets its replies and an orderly end. When the server stops, the
     * replies have until the drain deadline, then FIN, and the close does not wait for the
     * peer's end: what has arrived is read (so that the close sends no reset) and the
     * socket is closed, as under EVENT; replies that could not be written in time are
     * reset. A peer that misbehaved or stalled is not waited for either: what the socket
     * takes now is written, what has arrived is read, and it is closed (waiting would let
     * it push data at full speed into the close's drain). */
    tcpmsg__client_release(s, &client);
    tcpmsg__release_held(s); /* before the peer can see the end and connect again */
    if (served) /* after the slot is back: once "closed" is logged, it can be taken again */
        tcpmsg__log_conn(s, TCPMSG_EV_CLOSE, reason, c);
    if (sv.drop) {
        tcpmsg_conn_reset(c);
    } else if (reason == -ESHUTDOWN || tcpmsg__stopping(s)) {
        if (tcpmsg_conn_shutdown(c, tcpmsg__drain_deadline(s)) == 0)
            tcpmsg_conn_close(c, TCPMSG_NOWAIT);
        else
            tcpmsg_conn_reset(c);
    } else {
        tcpmsg_conn_close(c, reason == TCPMSG_EOF ? tcpmsg_deadline_in(s->cfg.write_timeout_ms)
                                                  : TCPMSG_NOWAIT);
    }
    tcpmsg__timers_cancel(&sv); /* on_close may have started one */
    tcpmsg__timers_fini(&heap);
}

void
tcpmsg__shutdown_slots(struct tcpmsg_server *s, int how)
{
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nslots; i++)
        if (s->slots[i].used && s->slots[i].fd >= 0)
            shutdown(s->slots[i].fd, how);
    pthread_mutex_unlock(&s->mu);
}

/* ---- life cycle ------------------------------------------------------------------------- */

static int
online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int
copy_config(struct tcpmsg_server *s, const struct tcpmsg_server_config *cfg)
{
    s->cfg = *cfg;
    if (cfg->host) {
        size_t n = strlen(cfg->host);
        if (n >= sizeof s->host)
            return -EINVAL;
        memcpy(s->host, cfg->host, n + 1);
    }
    if (cfg->port) {
        size_t n = strlen(cfg->port);
        if (n >= sizeof s->port)
            return -EINVAL;
        memcpy(s->port, cfg->port, n + 1);
    }
    s->cfg.host = s->host;
    s->cfg.port = s->port;
    if (cfg->codec) {
        if (tcpmsg_codec_kind(cfg->codec) == 0)
            return -EINVAL;
        s->codec = *cfg->codec;
    } else {
        tcpmsg_codec_init_length(&s->codec, NULL);
    }
    s->cfg.codec = &s->codec;

    struct tcpmsg_server_config *c = &s->cfg;
    if (c->model < TCPMSG_MODEL_EVENT || c->model > TCPMSG_MODEL_POOL || c->workers < 0 ||
        c->max_conns < 0 || c->write_timeout_ms < 0 || c->drain_ms < 0)
        return -EINVAL;
    if (c->workers == 0)
        c->workers = c->model == TCPMSG_MODEL_POOL ? 2 * online_cpus() : online_cpus();
    s->max_conns_set = c->max_conns > 0;
    if (c->max_conns == 0)
        c->max_conns = c->model == TCPMSG_MODEL_FORK        ? TCPMSG__DEFAULT_FORK_MAX_CONNS
                       : c->model == TCPMSG_MODEL_POOL      ? c->workers
                       : c->model == TCPMSG_MODEL_ITERATIVE ? 1
                                                            : TCPMSG__DEFAULT_MAX_CONNS;
    /* Like Redis's maxclients: never more connections than descriptors, keeping some for
     * the server itself and the handler, so that a flood is refused (TCPMSG_EFULL) instead
     * of running the process out of descriptors. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
        long budget = (long)nofile.rlim_cur - TCPMSG__RESERVED_FDS;
        if (budget < (long)nofile.rlim_cur / 2)
            budget = (long)nofile.rlim_cur / 2;
        if (budget < 1)
            budget = 1;
        if (c->max_conns > budget)
            c->max_conns = (int)budget;
    }
    if (c->idle_timeout_ms == 0)
        c->idle_timeout_ms = TCPMSG__DEFAULT_IDLE_MS;
    if (c->frame_timeout_ms == 0)
        c->frame_timeout_ms = TCPMSG__DEFAULT_FRAME_MS;
    if (c->write_timeout_ms == 0)
        c->write_timeout_ms = TCPMSG__DEFAULT_WRITE_MS;
    if (c->drain_ms == 0)
        c->drain_ms = TCPMSG__DEFAULT_DRAIN_MS;
    if (c->handshake_timeout_ms < 0 || (c->tls && c->tls_ctx))
        return -EINVAL;
    if (c->handshake_timeout_ms == 0)
        c->handshake_timeout_ms = TCPMSG__DEFAULT_HANDSHAKE_MS;
    if (c->output_high == 0)
        c->output_high = TCPMSG__DEFAULT_HIGH;
    if (c->output_low == 0)
        c->output_low =
            c->output_high < TCPMSG__DEFAULT_LOW ? c->output_high / 4 : TCPMSG__DEFAULT_LOW;
    if (c->output_low > c->output_high)
        return -EINVAL;
    int r = copy_proxy_from(s, cfg->proxy_from);
    s->cfg.proxy_from = NULL; /* parsed; the copy keeps no caller pointer */
    return r < 0 ? r : clients_init(s);
}

static int handover_ready_fd(void);

int
tcpmsg_server_create(struct tcpmsg_server **out, const struct tcpmsg_server_config *cfg,
                     const struct tcpmsg_handler *h)
{
    static const struct tcpmsg_server_config defaults;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cfg)
        cfg = &defaults;
    if (!h || (!h->on_message && !h->dialog) || (h->dialog && cfg->model == TCPMSG_MODEL_EVENT) ||
        (cfg->no_listener && cfg->model != TCPMSG_MODEL_EVENT))
        return -EINVAL;
    struct tcpmsg_server *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->lfd = s->wakefd = s->ready_fd = -1;
    atomic_init(&s->serving_fd, -1);
    s->n = MAP_FAILED;
    s->h = *h;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_rwlock_init(&s->ev_lock, NULL);
    int r = copy_config(s, cfg);
    if (r < 0)
        goto fail;
    s->n = mmap(NULL, sizeof *s->n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s->n == MAP_FAILED) {
        r = -ENOMEM;
        goto fail;
    }
    memset(s->n, 0, sizeof *s->n);
    if (s->cfg.tls) {
        r = tcpmsg_tls_ctx_create(&s->tls, TCPMSG_TLS_SERVER, s->cfg.tls, NULL, 0);
        if (r < 0)
            goto fail;
    } else if (s->cfg.tls_ctx) {
        if (tcpmsg_tls_ctx_role(s->cfg.tls_ctx) != TCPMSG_TLS_SERVER) {
            r = -EINVAL;
            goto fail;
        }
        s->tls = tcpmsg_tls_ctx_ref(s->cfg.tls_ctx);
    }
    s->cfg.tls = NULL; /* read; the copy keeps no caller pointer */
    s->cfg.tls_ctx = NULL;
    s->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->wakefd < 0) {
        r = -errno;
        goto fail;
    }
    struct tcpmsg_listen_opts lo = s->cfg.listen;
    if (s->cfg.no_listener)
        goto listening;         /* a pure client: its connections come from tcpmsg_worker_dial */
    if (s->cfg.listen_fd > 0) { /* inherited: checked, then the server's */
        int type = 0, acc = 0;
        socklen_t len = sizeof type;
        if (getsockopt(s->cfg.listen_fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
            type != SOCK_STREAM ||
            (len = sizeof acc,
             getsockopt(s->cfg.listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0) ||
            !acc) {
            r = -EBADF;
            goto fail;
        }
        if ((r = tcpmsg_sock_set_nonblocking(s->cfg.listen_fd, true)) < 0)
            goto fail;
        s->lfd = s->cfg.listen_fd;
        s->shared_lfd = true; /* not in a SO_REUSEPORT group: one for every worker */
        goto listening;
    }
    bool unix_listener = tcpmsg__is_unix(s->host);
    if (s->cfg.model == TCPMSG_MODEL_EVENT && s->cfg.workers > 1 && !lo.reuseport &&
        !unix_listener && !s->cfg.handover) {
        /* The workers' listeners form an SO_REUSEPORT group, which another process of the
         * same user could join, or already be: two servers would then split the traffic
         * silently. A plain socket bound first proves the port free (-EADDRINUSE if not). */
        if (s->port[0] && strcmp(s->port, "0") != 0) {
            r = tcpmsg_sock_listen(s->host[0] ? s->host : NULL, s->port, &lo);
            if (r < 0)
                goto fail;
            tcpmsg_sock_close(r);
        }
        lo.reuseport = true;
    }
    r = tcpmsg_sock_listen(s->host[0] ? s->host : NULL, s->port[0] ? s->port : "0", &lo);
    if (r < 0)
        goto fail;
    s->lfd = r;
    if ((r = tcpmsg_sock_set_nonblocking(s->lfd, true)) < 0)
        goto fail;
    struct stat st;
    if (unix_listener && s->host[5] != '@' && stat(s->host + 5, &st) == 0) {
        s->unix_file = true;
        s->unix_dev = st.st_dev;
        s->unix_ino = st.st_ino;
        s->unix_owner = getpid();
    }
listening:
    s->ready_fd = handover_ready_fd();
    if (s->cfg.handle_signals) {
        struct tcpmsg_server *none = NULL;
        if (!atomic_compare_exchange_strong(&signal_server, &none, s)) {
            r = -EBUSY;
            goto fail;
        }
        struct sigaction sa = {.sa_handler = on_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &s->old_int);
        sigaction(SIGTERM, &sa, &s->old_term);
        s->signals = true;
    }
    *out = s;
    return 0;
fail:
    if (s->shared_lfd)
        s->lfd = -1; /* the caller's still: it is ours only once create succeeded */
    tcpmsg_server_destroy(s);
    return r;
}

/* ---- hand-over: a new copy of the program takes the listener ------------------------------- */

#define READY_ENV "TCPMSG_READY_FD"

/* Started by a hand-over: the pipe on which to say "serving" (its variable is unset, so a
 * program this one starts does not write to it), else -1. */
static int
handover_ready_fd(void)
{
    const char *v = getenv(READY_ENV);
    if (!v)
        return -1;
    char *end;
    long fd = strtol(v, &end, 10);
    unsetenv(READY_ENV);
    struct stat st;
    if (*end || fd < 3 || fd > INT_MAX || fstat((int)fd, &st) < 0 || !S_ISFIFO(st.st_mode))
        return -1;
    (void)fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    return (int)fd;
}

/* The environment of the new copy: ours without the variables the protocol sets, then
 * LISTEN_FDS, LISTEN_FDNAMES, TCPMSG_READY_FD and LISTEN_PID (its value written by the
 * child, the only one who knows its pid, in pidvar). NULL-terminated; free the array. */
static char **
handover_env(char *pidvar)
{
    extern char **environ;
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 5, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LISTEN_", 7) != 0 &&
            strncmp(environ[i], READY_ENV "=", sizeof READY_ENV) != 0)
            env[k++] = environ[i];
    static char fds[] = "LISTEN_FDS=1", names[] = "LISTEN_FDNAMES=handover",
                ready[] = READY_ENV "=4";
    env[k++] = fds;
    env[k++] = names;
    env[k++] = ready;
    env[k++] = pidvar;
    env[k] = NULL;
    return env;
}

/* In the child, between fork and exec (async-signal-safe calls only): the listener on 3,
 * the pipe on 4, LISTEN_PID, a clean signal mask, then the program. */
static _Noreturn void
handover_child(int lfd, int wfd, char *pidvar, const char *path, char *const argv[], char **env)
{
    int l = fcntl(lfd, F_DUPFD, 10), w = fcntl(wfd, F_DUPFD, 10);
    if (l < 0 || w < 0 || dup2(l, 3) < 0 || dup2(w, 4) < 0)
        _exit(127);
    /* LISTEN_PID=<pid>: formatted by hand (no snprintf after fork). */
    char digits[16];
    int nd = 0;
    for (unsigned long v = (unsigned long)getpid(); v; v /= 10)
        digits[nd++] = (char)('0' + v % 10);
    char *p = pidvar + strlen("LISTEN_PID=");
    while (nd)
        *p++ = digits[--nd];
    *p = '\0';
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(path, argv, env);
    _exit(127);
}

int
tcpmsg_server_handover(struct tcpmsg_server *s, const char *path, char *const argv[],
                       int timeout_ms)
{
    if (!s || !argv || !argv[0] || timeout_ms < 0)
        return -EINVAL;
    if (s->lfd < 0 || (s->cfg.model == TCPMSG_MODEL_EVENT && s->cfg.workers > 1 && !s->shared_lfd &&
                       !s->cfg.handover && !tcpmsg__is_unix(s->host)))
        return -ENOTSUP; /* no listener, or one per worker: only one can be passed on */
    if (tcpmsg__stopping(s))
        return -ESHUTDOWN;
    if (!path)
        path = "/proc/self/exe";
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -errno;
    char pidvar[32] = "LISTEN_PID=";
    char **env = handover_env(pidvar);
    if (!env) {
        close(pfd[0]);
        close(pfd[1]);
        return -ENOMEM;
    }
    pid_t pid = fork();
    if (pid == 0)
        handover_child(s->lfd, pfd[1], pidvar, path, argv, env);
    int saved = errno;
    free(env);
    close(pfd[1]);
    if (pid < 0) {
        close(pfd[0]);
        return -saved;
    }
    /* Until the new copy says it serves, this one goes on serving: a copy that fails to
     * start costs nothing. The listener is shared meanwhile: both accept. */
    struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
    int r;
    do
        r = poll(&pf, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    char b;
    ssize_t got = r > 0 ? read(pfd[0], &b, 1) : -1;
    close(pfd[0]);
    if (got != 1) {
        if (r == 0)
            kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return r == 0 ? -ETIMEDOUT : -ECHILD;
    }
    /* The new copy serves: the socket file is its own now, and this one stops as
     * tcpmsg_server_stop says (it finishes what it read, writes, closes). */
    s->unix_file = false;
    tcpmsg_server_stop(s);
    return (int)pid;
}

static const char *const model_names[] = {
    [TCPMSG_MODEL_EVENT] = "event", [TCPMSG_MODEL_ITERATIVE] = "iterative",
    [TCPMSG_MODEL_FORK] = "fork",   [TCPMSG_MODEL_THREAD] = "thread",
    [TCPMSG_MODEL_POOL] = "pool",
};

const char *
tcpmsg_model_name(enum tcpmsg_model m)
{
    unsigned i = (unsigned)m;
    return i < sizeof model_names / sizeof model_names[0] ? model_names[i] : "?";
}

int
tcpmsg_model_parse(const char *name, enum tcpmsg_model *out)
{
    for (unsigned i = 0; name && i < sizeof model_names / sizeof model_names[0]; i++)
        if (strcmp(name, model_names[i]) == 0) {
            *out = (enum tcpmsg_model)i;
            return 0;
        }
    return -EINVAL;
}

int
tcpmsg_server_port(const struct tcpmsg_server *s)
{
    return !s ? -EINVAL : s->lfd < 0 ? -ENOTCONN : tcpmsg_sock_port(s->lfd);
}

int
tcpmsg_server_run(struct tcpmsg_server *s)
{
    if (!s)
        return -EINVAL;
    if (s->ready_fd >= 0) { /* started by a hand-over: the old copy may stop now */
        ssize_t w;
        do
            w = write(s->ready_fd, "R", 1);
        while (w < 0 && errno == EINTR);
        close(s->ready_fd);
        s->ready_fd = -1;
    }
    switch (s->cfg.model) {
    case TCPMSG_MODEL_ITERATIVE:
        return tcpmsg__run_iterative(s);
    case TCPMSG_MODEL_FORK:
        return tcpmsg__run_fork(s);
    case TCPMSG_MODEL_THREAD:
        return tcpmsg__run_thread(s);
    case TCPMSG_MODEL_POOL:
        return tcpmsg__run_pool(s);
    case TCPMSG_MODEL_EVENT:
    default:
        return tcpmsg__run_event(s);
    }
}

static void *
runner_main(void *arg)
{
    struct tcpmsg_server *s = arg;
    s->run_result = tcpmsg_server_run(s);
    return NULL;
}

int
tcpmsg_server_start(struct tcpmsg_server *s)
{
    if (!s)
        return -EINVAL;
    if (s->started)
        return -EBUSY;
    int r = pthread_create(&s->runner, NULL, runner_main, s);
    if (r != 0)
        return -r;
    s->started = true;
    return 0;
}

int
tcpmsg_server_wait(struct tcpmsg_server *s)
{
    if (!s || !s->started)
        return -EINVAL;
    pthread_join(s->runner, NULL);
    s->started = false;
    return s->run_result;
}

void
tcpmsg_server_stats(const struct tcpmsg_server *s, struct tcpmsg_server_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!s || s->n == MAP_FAILED)
        return;
    out->accepted = atomic_load(&s->n->accepted);
    out->refused = atomic_load(&s->n->refused);
    out->active = atomic_load(&s->n->active);
    out->closed_error = atomic_load(&s->n->closed_error);
    out->msgs_in = atomic_load(&s->n->msgs_in);
    out->msgs_out = atomic_load(&s->n->msgs_out);
    out->bytes_in = atomic_load(&s->n->bytes_in);
    out->bytes_out = atomic_load(&s->n->bytes_out);
    out->workers_replaced = atomic_load(&s->n->workers_replaced);
    out->limited = atomic_load(&s->n->limited);
}

void
tcpmsg_server_destroy(struct tcpmsg_server *s)
{
    if (!s)
        return;
    if (s->started) {
        tcpmsg_server_stop(s);
        tcpmsg_server_wait(s);
    }
    if (s->signals) {
        sigaction(SIGINT, &s->old_int, NULL);
        sigaction(SIGTERM, &s->old_term, NULL);
        atomic_store(&signal_server, NULL);
    }
    struct stat st;
    if (s->unix_file && getpid() == s->unix_owner && stat(s->host + 5, &st) == 0 &&
        st.st_dev == s->unix_dev && st.st_ino == s->unix_ino)
        (void)unlink(s->host + 5); /* ours: another server's file is left alone */
    tcpmsg_sock_close(s->lfd);
    tcpmsg_sock_close(s->wakefd);
    if (s->n != MAP_FAILED)
        munmap(s->n, sizeof *s->n);
    tcpmsg_tls_ctx_destroy(s->tls);
    free(s->slots);
    free(s->proxy_from);
    if (s->clients) {
        pthread_mutex_destroy(&s->clients->mu);
        munmap(s->clients, sizeof *s->clients);
    }
    if (s->ready_fd >= 0)
        close(s->ready_fd);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_rwlock_destroy(&s->ev_lock);
    free(s);
}
