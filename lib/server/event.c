/* The EVENT model: each worker thread runs an epoll loop over non-blocking use of its
 * connections; with several workers, each has its own SO_REUSEPORT listener on the same port
 * so that the kernel spreads connections over the cores.
 *
 * Level-triggered: a connection whose handler stops early (backpressure) or that has more
 * input than one pass takes is simply reported again, with no bookkeeping of "must read until
 * EAGAIN" that edge-triggering needs; and the interest set is changed only when a
 * connection's state changes (output pending or not, paused or not), not on every event. */
#include "server_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define ACCEPT_BATCH 64
#define TAG_LISTEN ((void *)1)
#define TAG_WAKE ((void *)2)
#define TAG_POST ((void *)3)
/* A watched descriptor's entry and a dialler are tagged with the low bit (they are
 * malloc'ed), and say which they are in their first byte. */
#define TAG_OF(p) ((void *)((uintptr_t)(p) | 1))
#define IS_TAGGED(tag) ((uintptr_t)(tag) > 3 && ((uintptr_t)(tag)&1))
#define UNTAG(tag) ((void *)((uintptr_t)(tag) & ~(uintptr_t)1))
enum { KIND_WATCH = 1, KIND_DIAL = 2 };

/* A caller's descriptor watched in the loop (tcpmsg_worker_watch). */
struct watch {
    uint8_t kind; /* KIND_WATCH */
    int fd, events;
    tcpmsg_watch_fn fn;
    void *arg;
    bool dead; /* unwatched: freed at the end of the turn (its event may still be in hand) */
    struct watch *next;
};

/* What other threads post to a worker (tcpmsg_server_send / tcpmsg_server_call). */
#define POST_MAX_ITEMS 65536              /* queued per worker, then -EAGAIN */
#define POST_MAX_BYTES ((size_t)64 << 20) /* ... or this many bytes of frames */
#define HANDLE_SLOT_BITS 24               /* connections per worker in a handle */

/* A post is a record in the worker's post buffer: this header, then len bytes of frame,
 * padded to the header's alignment. Posters append under mu; the worker swaps the buffer
 * for its empty spare and walks it outside the lock: no allocation per post (the buffers
 * grow to the largest batch and are kept), one copy of the frame on each side. */
struct post {
    uint32_t slot, gen;
    void (*fn)(struct tcpmsg_conn *c, void *arg); /* NULL: a frame to send */
    void *arg;
    size_t len;
};
#define POST_ALIGN _Alignof(struct post)
#define POST_SIZE(len) ((sizeof(struct post) + (len) + POST_ALIGN - 1) & ~(POST_ALIGN - 1))
#define POST_KEEP ((size_t)1 << 20) /* a spare buffer larger than this is given back */

struct postbuf {
    uint8_t *p;
    size_t len, cap;
};

/* A connection's entry in its worker's registry: gen changes when the connection ends, so
 * a handle (gen, worker, slot) outlives it safely and is never given to another. */
struct reg {
    struct econn *e; /* NULL: free */
    uint32_t gen;
    uint32_t next_free;
};

struct econn {
    struct tcpmsg__served sv; /* first: tcpmsg_server_drop's pointer is the econn's */
    struct tcpmsg_worker *w;
    struct tcpmsg_conn *c;
    int fd;
    uint32_t events;  /* the interest registered with epoll */
    bool paused;      /* output passed the high watermark: not reading */
    bool user_paused; /* tcpmsg_server_pause: not reading ... */
    bool resumed;     /* ... until resumed: the frames already buffered come first */
    bool above_low;   /* its output was above output_low: on_drain when it falls back */
    int end_reason;   /* tcpmsg_server_close: begins to close at the end of the callback */
    bool peer_ended;  /* the peer's end of stream came and on_eof kept c: not read */
    bool shut_wanted; /* tcpmsg_server_shutdown: half-closes once its output is written */
    bool shut_done;   /* ... done: when the peer has ended too, c closes (TCPMSG_EOF) */
    bool hung_up;     /* epoll reports a hang-up while c is not read: out of the interest
                         set until it reads again (a hang-up is always reported) */
    bool handshaking; /* its opening (the PROXY header, the TLS handshake) is in
                         progress: not opened yet (no on_open) */
    struct tcpmsg__proxy_rd *prd;     /* ... the PROXY header being read (NULL: not, or done) */
    struct tcpmsg__client_ref client; /* its place under the per-client limits */
    int64_t hs_deadline;              /* ... and when it must have completed */
    int closing; /* != 0: the reason; not reading, closes once output is written */
    int64_t closing_since;
    int64_t last_rx;                /* last time bytes arrived */
    int64_t partial_since;          /* since when a started frame waits for its end (0: none) */
    struct tcpmsg__utimer deadline; /* the next of the above deadlines, or earlier: when it
                                       fires, the real one is checked (reads move the idle
                                       deadline without touching the heap) */
    uint64_t seen_in;               /* bytes_in at the last check */
    struct econn *prev, *next;
    bool pending; /* on the worker's pending list */
    struct econn *next_pending;
    uint32_t slot;     /* in the worker's registry */
    struct dial *dial; /* the dialler that opened it (NULL: accepted) */
    int refusal;       /* why it was refused (on_open's code, a handshake's failure) */
    char *tuple;       /* with a log: its 4-tuple text, kept from the open for the close */
};

struct tcpmsg_worker {
    struct tcpmsg_server *s;
    int ep, lfd, reserve;
    bool own_lfd;
    bool listen_off; /* out of descriptors and of the reserve: listener not polled until
                        relisten fires (a level-triggered listener would spin) */
    struct tcpmsg__utimer relisten;
    struct econn *conns;
    int nconns;
    struct econn *current; /* the connection whose callback runs */
    struct econn *pending; /* connections a callback sent to or dropped, other than current */
    struct tcpmsg__timers timers; /* its connections' (tcpmsg_timer_start), their deadlines,
                                     its own */
    struct tcpmsg__served wsv;    /* the owner of its own timers (c NULL) */
    struct watch *watches;
    struct dial *dials;
    uint64_t rng; /* the diallers' jitter (xorshift) */
    bool stopping;
    pthread_t thread;
    int index;
    /* Posts from other threads: a queue under mu, an eventfd written when it stops being
     * empty (the worker takes the whole queue after reading it, so no wake-up is lost);
     * the registry is written by the worker under mu and read by posters under mu. */
    pthread_mutex_t mu;
    bool mu_init;
    struct postbuf posts, spare; /* posts under mu; spare: the worker's */
    size_t pitems, pbytes;
    int postfd;
    struct reg *reg;
    uint32_t nreg, free_slot; /* free_slot: head of the free list, UINT32_MAX: none */
};

struct tcpmsg__event_run {
    struct tcpmsg_worker *w;
    int n;
};

struct dial;
static void dials_stop(struct tcpmsg_worker *w);
static void watch_ready(struct tcpmsg_worker *w, struct watch *wt, uint32_t got);
static void dial_ready(struct dial *d);
static void dial_conn_ended(struct dial *d, int reason);
static void reap_watches(struct tcpmsg_worker *w);

/* Gives e a registry entry and its handle; false when out of memory or of slots. */
static bool
register_conn(struct tcpmsg_worker *w, struct econn *e)
{
    pthread_mutex_lock(&w->mu);
    uint32_t slot = w->free_slot;
    if (slot == UINT32_MAX) {
        if (w->nreg == (1u << HANDLE_SLOT_BITS)) {
            pthread_mutex_unlock(&w->mu);
            return false;
        }
        uint32_t ncap = w->nreg ? 2 * w->nreg : 64;
        if (ncap > (1u << HANDLE_SLOT_BITS))
            ncap = 1u << HANDLE_SLOT_BITS;
        struct reg *r = realloc(w->reg, ncap * sizeof *r);
        if (!r) {
            pthread_mutex_unlock(&w->mu);
            return false;
        }
        for (uint32_t i = w->nreg; i < ncap; i++)
            r[i] = (struct reg){NULL, 1, i + 1 < ncap ? i + 1 : UINT32_MAX};
        w->reg = r;
        w->free_slot = w->nreg;
        w->nreg = ncap;
        slot = w->free_slot;
    }
    w->free_slot = w->reg[slot].next_free;
    w->reg[slot].e = e;
    e->slot = slot;
    e->sv.handle = (uint64_t)w->reg[slot].gen << 32 | (uint64_t)w->index << HANDLE_SLOT_BITS | slot;
    pthread_mutex_unlock(&w->mu);
    return true;
}

static void
unregister_conn(struct tcpmsg_worker *w, struct econn *e)
{
    if (!e->sv.handle)
        return;
    pthread_mutex_lock(&w->mu);
    struct reg *r = &w->reg[e->slot];
    r->e = NULL;
    r->gen = r->gen == UINT32_MAX ? 1 : r->gen + 1; /* 2^32 lives before a handle repeats */
    r->next_free = w->free_slot;
    w->free_slot = e->slot;
    pthread_mutex_unlock(&w->mu);
    e->sv.handle = 0;
}

#define NOT_POLLED UINT32_MAX /* econn.events: not in the epoll set */

static int
set_interest(struct tcpmsg_worker *w, struct econn *e)
{
    uint32_t want = 0;
    if (!e->paused && !e->user_paused && !e->closing && !e->peer_ended)
        want |= EPOLLIN;
    if (tcpmsg_conn_output(e->c, NULL) > 0)
        want |= EPOLLOUT;
    int op = EPOLL_CTL_MOD;
    if (e->hung_up && !want) {
        if (e->events == NOT_POLLED)
            return 0;
        op = EPOLL_CTL_DEL;
        want = NOT_POLLED;
    } else if (e->events == NOT_POLLED) {
        op = EPOLL_CTL_ADD;
    }
    if (want == e->events)
        return 0;
    struct epoll_event ev = {.events = want, .data.ptr = e};
    if (epoll_ctl(w->ep, op, e->fd, &ev) < 0)
        return -errno;
    e->events = want;
    return 0;
}

/* A callback queued output on e, or dropped it, while serving another connection: e is
 * looked at when the loop turn ends. */
static void
mark_pending(struct econn *e)
{
    struct tcpmsg_worker *w = e->w;
    if (e->pending || (e == w->current && !e->sv.drop))
        return;
    e->pending = true;
    e->next_pending = w->pending;
    w->pending = e;
}

static void
wake(void *arg)
{
    mark_pending(arg);
}

static void
dropped(struct tcpmsg__served *sv)
{
    mark_pending((struct econn *)sv);
}

static void
destroy_conn(struct tcpmsg_worker *w, struct econn *e, bool reset)
{
    tcpmsg__timers_cancel(&e->sv); /* refused by on_open, or started by on_close */
    tcpmsg__timers_disarm(&w->timers, &e->deadline.node);
    unregister_conn(w, e);
    if (e->pending) {
        struct econn **p = &w->pending;
        while (*p && *p != e)
            p = &(*p)->next_pending;
        if (*p) /* always: a pending connection is on the list */
            *p = e->next_pending;
    }
    epoll_ctl(w->ep, EPOLL_CTL_DEL, e->fd, NULL);
    /* The slot is given back before the peer can see the end: a client told "closed" that
     * connects again at once must not meet max_conns (another worker may accept it). The
     * log says "closed" once it is back. */
    tcpmsg__client_release(w->s, &e->client);
    tcpmsg__release(w->s);
    if (e->closing)
        tcpmsg__log_tuple(w->s, TCPMSG_EV_CLOSE, e->closing, e->fd, e->tuple);
    free(e->tuple);
    free(e->prd);
    if (reset)
        tcpmsg_conn_reset(e->c);
    else
        tcpmsg_conn_close(e->c, TCPMSG_NOWAIT);
    if (w->conns == e)
        w->conns = e->next;
    else
        e->prev->next = e->next;
    if (e->next)
        e->next->prev = e->prev;
    w->nconns--;
    struct dial *d = e->dial;
    int why = e->closing ? e->closing : e->refusal;
    free(e);
    if (d)
        dial_conn_ended(d, why);
}

/* ---- deadlines: one timer per connection, on the worker's heap --------------------------
 * The handshake, idle, frame and write deadlines of a connection are kept as times; its
 * timer is armed at the earliest one or before it, never later. A read moves the idle
 * deadline later without touching the heap: the timer fires at the old time, finds the
 * real deadline still ahead and re-arms for it, so a busy connection costs one timer event
 * per idle period and an idle server costs nothing between deadlines (no sweep over the
 * connections). A deadline that moves earlier (a frame started, the end began) re-arms. */

static int64_t
conn_deadline(const struct tcpmsg_worker *w, const struct econn *e)
{
    const struct tcpmsg_server_config *cfg = &w->s->cfg;
    if (e->handshaking)
        return e->hs_deadline;
    if (e->closing)
        return e->closing_since + cfg->write_timeout_ms;
    if (e->user_paused)
        return INT64_MAX; /* its silence is ours */
    int64_t d = INT64_MAX;
    if (cfg->frame_timeout_ms >= 0 && e->partial_since)
        d = e->partial_since + cfg->frame_timeout_ms;
    if (cfg->idle_timeout_ms >= 0 && e->last_rx + cfg->idle_timeout_ms < d)
        d = e->last_rx + cfg->idle_timeout_ms;
    return d;
}

static void begin_close(struct tcpmsg_worker *w, struct econn *e, int reason);

/* Arms e's timer if its deadline is earlier than the armed time (or none is armed). */
static void
watch_deadline(struct tcpmsg_worker *w, struct econn *e)
{
    int64_t d = conn_deadline(w, e);
    if (d == INT64_MAX || (tcpmsg__timer_armed(&e->deadline.node) && e->deadline.node.due <= d))
        return;
    if (tcpmsg__timers_arm(&w->timers, &e->deadline.node, d) < 0 && !e->closing)
        begin_close(w, e, -ENOMEM); /* no connection goes without its deadlines */
}

static bool settle(struct tcpmsg_worker *w, struct econn *e);
static void refuse(struct tcpmsg_worker *w, struct econn *e, int reason);

/* e's timer fired: the deadline that is really due, if any, is applied; else it re-arms. */
static void
deadline_due(struct tcpmsg_conn *c, uint64_t id, void *arg)
{
    (void)c, (void)id;
    struct econn *e = arg;
    struct tcpmsg_worker *w = e->w;
    const struct tcpmsg_server_config *cfg = &w->s->cfg;
    int64_t now = tcpmsg_now_ms();
    if (e->handshaking) {
        if (now >= e->hs_deadline) {
            refuse(w, e, -ETIMEDOUT);
            return;
        }
    } else if (e->closing) {
        if (now - e->closing_since >= cfg->write_timeout_ms) {
            destroy_conn(w, e, true);
            return;
        }
    } else if (e->user_paused) {
        return; /* re-armed when resumed */
    } else if (cfg->frame_timeout_ms >= 0 && e->partial_since &&
               now - e->partial_since >= cfg->frame_timeout_ms) {
        begin_close(w, e, TCPMSG_ESLOW);
        settle(w, e);
        return;
    } else if (cfg->idle_timeout_ms >= 0 && now - e->last_rx >= cfg->idle_timeout_ms) {
        begin_close(w, e, TCPMSG_EIDLE);
        settle(w, e);
        return;
    }
    watch_deadline(w, e);
}

/* Starts the end of a connection: the handler hears the reason now, queued replies are
 * written as the socket takes them, then it is closed. */
static void
begin_close(struct tcpmsg_worker *w, struct econn *e, int reason)
{
    if (e->closing)
        return;
    e->closing = reason;
    e->closing_since = tcpmsg_now_ms();
    struct tcpmsg_server *s = w->s;
    tcpmsg__timers_cancel(&e->sv); /* none fires once on_close has run */
    watch_deadline(w, e);          /* its replies have write_timeout_ms */
    if (s->h.on_close)
        s->h.on_close(e->c, reason, s->h.user);
    tcpmsg__account(s, e->c, reason);
}

/* Finishes what can be finished now: a closing connection whose output is written (or that
 * can write no more) is closed. Returns true when e was destroyed. */
static void pump(struct tcpmsg_worker *w, struct econn *e);

/* Before a write: whether e's output is above output_low, so that a drain below it is seen
 * even when the write takes everything at once (the edge must not fall between two looks). */
static void
note_output(const struct tcpmsg_worker *w, struct econn *e)
{
    if (tcpmsg_conn_output(e->c, NULL) > w->s->cfg.output_low)
        e->above_low = true;
}

/* on_drain, once each time e's output falls back to output_low after being above it. */
static void
drained(struct tcpmsg_worker *w, struct econn *e)
{
    const struct tcpmsg_server *s = w->s;
    if (!s->h.on_drain || e->closing || e->handshaking || e->sv.drop)
        return;
    bool above = tcpmsg_conn_output(e->c, NULL) > s->cfg.output_low;
    if (above || !e->above_low) {
        e->above_low = above;
        return;
    }
    e->above_low = false;
    struct econn *was = w->current;
    w->current = e;
    s->h.on_drain(e->c, s->h.user);
    w->current = was;
}

/* tcpmsg_server_close. */
static int
econn_end(struct tcpmsg__served *sv, int reason)
{
    struct econn *e = (struct econn *)sv;
    if (e->closing || e->sv.drop || e->end_reason)
        return 0;
    e->end_reason = reason;
    mark_pending(e); /* the current connection's pump sees it when the callback returns */
    return 0;
}

/* tcpmsg_server_shutdown. */
static int
econn_shut(struct tcpmsg__served *sv)
{
    struct econn *e = (struct econn *)sv;
    if (e->closing || e->sv.drop || e->end_reason || e->shut_wanted)
        return 0;
    e->shut_wanted = true;
    mark_pending(e); /* half-closed at the end of the callback once its output is out */
    return 0;
}

/* The half-close asked for, once e's output is written; when the peer has ended its side
 * too, nothing is left to do in either direction: e ends cleanly. */
static void
half_close(struct tcpmsg_worker *w, struct econn *e)
{
    if (e->closing || !e->shut_wanted)
        return;
    if (!e->shut_done) {
        if (tcpmsg_conn_output(e->c, NULL) > 0)
            return; /* after EPOLLOUT took the rest */
        int r = tcpmsg_conn_shutdown(e->c, TCPMSG_NOWAIT);
        if (r == -ETIMEDOUT)
            return;
        if (r < 0) {
            begin_close(w, e, r);
            return;
        }
        e->shut_done = true;
    }
    if (e->peer_ended)
        begin_close(w, e, TCPMSG_EOF);
}

/* tcpmsg_server_pause / resume. */
static int
econn_flow(struct tcpmsg__served *sv, bool pause)
{
    struct econn *e = (struct econn *)sv;
    if (e->user_paused == pause)
        return 0;
    e->user_paused = pause;
    if (!pause) {
        e->resumed = true;
        e->last_rx = tcpmsg_now_ms(); /* its idle time starts again now */
        if (e->partial_since)
            e->partial_since = e->last_rx;
        watch_deadline(e->w, e);
    }
    mark_pending(e); /* its interest changes at the end of the turn (at once if current) */
    return 0;
}

static bool
settle(struct tcpmsg_worker *w, struct econn *e)
{
    /* Backpressure released (the output drained below the low watermark, by EPOLLOUT or
     * because one write took it all): read again, starting with the frames already here. */
    while (!e->closing && e->paused && tcpmsg_conn_output(e->c, NULL) <= w->s->cfg.output_low) {
        e->paused = false;
        pump(w, e); /* may pause again on the next large reply, and write it at once */
    }
    if (e->resumed && !e->closing && !e->user_paused && !e->paused) {
        e->resumed = false;
        pump(w, e);
    }
    drained(w, e);
    half_close(w, e);
    if (!e->closing) {
        if (set_interest(w, e) < 0)
            begin_close(w, e, -EIO);
        else
            return false;
    }
    int r = tcpmsg_conn_flush(e->c, TCPMSG_NOWAIT);
    if (r == -ETIMEDOUT) {
        set_interest(w, e);
        return false;
    }
    destroy_conn(w, e, r < 0 && r != -ETIMEDOUT);
    return true;
}

/* epoll reports an error or a hang-up on e while it is not read (paused, or its peer's end
 * was kept by on_eof) and its output is written: a reset ends it with its error; a clean
 * hang-up (both sides have ended their streams) takes e out of the epoll set until it reads
 * again, since epoll would report it on every turn. */
static void
hang_up(struct tcpmsg_worker *w, struct econn *e)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err) {
        begin_close(w, e, -err);
        return;
    }
    if (e->peer_ended) {
        begin_close(w, e, e->shut_done ? TCPMSG_EOF : -ECONNRESET);
        return;
    }
    e->hung_up = true;
}

/* Delivers the frames that arrived, until input runs out, the handler or the peer ends the
 * connection, or the output passes the high watermark; then writes what it can. */
static void
pump(struct tcpmsg_worker *w, struct econn *e)
{
    struct tcpmsg_server *s = w->s;
    const struct tcpmsg_handler *h = &s->h;
    int reason = 0;
    w->current = e;
    tcpmsg__conn_readable(e->c);
    while (!e->closing && !e->user_paused && !e->end_reason && !e->peer_ended) {
        if (tcpmsg_conn_output(e->c, NULL) >= s->cfg.output_high) {
            e->paused = true;
            break;
        }
        struct tcpmsg_frame m;
        int r = tcpmsg_conn_recv(e->c, &m, TCPMSG_NOWAIT);
        if (r == 0) {
            e->partial_since = 0;
            if (h->on_message && (r = h->on_message(e->c, &m, h->user)) < 0) {
                reason = r;
                break;
            }
            if (e->sv.drop)
                break;
            continue;
        }
        if (r == TCPMSG_EOF && h->on_eof) {
            /* The peer is done sending; the handler may keep c to finish its side. */
            int k = h->on_eof(e->c, h->user);
            if (k < 0) {
                reason = k;
            } else {
                e->peer_ended = true;
                if (e->shut_done)
                    reason = TCPMSG_EOF;
            }
            break;
        }
        if (r != -ETIMEDOUT)
            reason = r;
        break;
    }
    w->current = NULL;
    int64_t now = tcpmsg_now_ms();
    struct tcpmsg_conn_stats st;
    tcpmsg_conn_stats(e->c, &st);
    if (st.bytes_in != e->seen_in) {
        e->seen_in = st.bytes_in;
        e->last_rx = now;
    }
    if (tcpmsg_conn_buffered(e->c) && !e->partial_since) {
        e->partial_since = now;
        watch_deadline(w, e); /* earlier than the idle one, when frame_timeout_ms is */
    }
    if (e->sv.drop)
        return; /* reset at the end of the turn, output discarded */
    if (!reason && e->end_reason)
        reason = e->end_reason;
    note_output(w, e);
    int fr = tcpmsg_conn_flush(e->c, TCPMSG_NOWAIT);
    if (!reason && fr < 0 && fr != -ETIMEDOUT)
        reason = fr;
    if (reason)
        begin_close(w, e, reason);
}

/* A connection that is not opened (or not any more) is refused: counted, logged with the
 * reason, closed without on_close. */
static void
refuse(struct tcpmsg_worker *w, struct econn *e, int reason)
{
    atomic_fetch_add(&w->s->n->refused, 1);
    tcpmsg__log(w->s, TCPMSG_EV_REFUSED, reason, e->fd);
    e->refusal = reason;
    destroy_conn(w, e, false);
}

/* The connection is the handler's from now on: on_open, which may refuse it or greet.
 * Returns false when e is gone. */
static bool
open_conn(struct tcpmsg_worker *w, struct econn *e)
{
    struct tcpmsg_server *s = w->s;
    e->handshaking = false;
    watch_deadline(w, e); /* the idle and frame deadlines now: maybe before the opening's */
    if (s->cfg.log) {
        char tuple[TCPMSG_TUPLE_STRLEN];
        if (tcpmsg_conn_tuple(e->c, tuple, sizeof tuple) < 0)
            tuple[0] = '\0';
        e->tuple = strdup(tuple); /* NULL: the close logs what the socket still says */
        tcpmsg__log_tuple(s, TCPMSG_EV_OPEN, 0, e->fd, tuple);
    }
    int r = 0;
    w->current = e;
    if (s->h.on_open)
        r = s->h.on_open(e->c, s->h.user);
    w->current = NULL;
    if (r < 0) {
        refuse(w, e, r);
        return false;
    }
    if (tcpmsg_conn_output(e->c, NULL) > 0 && !e->sv.drop)
        return !settle(w, e); /* on_open greeted the client: written as the socket takes it */
    return true;
}

/* The handshake finished (h == 0: then the frames that came with it are served at once,
 * since no event may announce them) or failed (h < 0). */
static void
handshake_result(struct tcpmsg_worker *w, struct econn *e, int h)
{
    if (h < 0) {
        refuse(w, e, h);
        return;
    }
    e->last_rx = tcpmsg_now_ms();
    if (open_conn(w, e) && !e->closing && !e->sv.drop) {
        pump(w, e);
        settle(w, e);
    }
}

/* The TLS handshake of a connection (p NULL: none), to complete by `deadline`, then
 * on_open; or on_open now. */
static void
begin_opening(struct tcpmsg_worker *w, struct econn *e, const struct tcpmsg_tls_params *p,
              int64_t deadline)
{
    if (!p) {
        e->handshaking = false;
        watch_deadline(w, e);
        (void)open_conn(w, e);
        return;
    }
    e->handshaking = true;
    e->hs_deadline = deadline; /* later than the header's: the timer re-arms when it fires */
    watch_deadline(w, e);
    int h = tcpmsg_conn_start_tls(e->c, p, TCPMSG_NOWAIT);
    if (h != -ETIMEDOUT)
        handshake_result(w, e, h);
    else if (set_interest(w, e) < 0)
        refuse(w, e, -EIO);
}

/* The next step of an accepted connection's PROXY header: then its TLS handshake (or
 * on_open), its refusal, or a wait for more. */
static void
proxy_step(struct tcpmsg_worker *w, struct econn *e)
{
    struct tcpmsg_server *s = w->s;
    struct tcpmsg_proxy_info pi;
    int r = tcpmsg__proxy_step(e->fd, e->prd, &pi);
    if (r == -EAGAIN)
        return; /* still read: epoll says when more comes */
    free(e->prd);
    e->prd = NULL;
    if (r > 0)
        r = tcpmsg_conn_set_proxy(e->c, &pi);
    if (r == 0)
        r = tcpmsg__client_admit(s, e->c, &e->client); /* the real client's limits */
    if (r < 0) {
        refuse(w, e, r);
        return;
    }
    e->last_rx = tcpmsg_now_ms();
    struct tcpmsg_tls_params p = {.ctx = s->tls};
    begin_opening(w, e, s->tls ? &p : NULL, e->last_rx + s->cfg.handshake_timeout_ms);
}

/* An event on a connection whose opening is in progress. */
static void
handshake(struct tcpmsg_worker *w, struct econn *e)
{
    if (e->prd) {
        proxy_step(w, e);
        return;
    }
    int h = tcpmsg_conn_handshake(e->c, TCPMSG_NOWAIT);
    if (h != -ETIMEDOUT)
        handshake_result(w, e, h);
    else if (set_interest(w, e) < 0)
        refuse(w, e, -EIO);
}

/* A connected socket becomes one of w's connections (registered, watched by epoll, on its
 * list), or NULL (fd closed). Its socket stays blocking: with TCPMSG_NOWAIT every call of
 * the connection uses MSG_DONTWAIT, which saves two fcntl calls per connection. */
static struct econn *
adopt(struct tcpmsg_worker *w, int fd, const struct tcpmsg_codec *codec)
{
    struct tcpmsg_server *s = w->s;
    struct tcpmsg_conn_opts o = tcpmsg__conn_opts(s);
    struct econn *e = calloc(1, sizeof *e);
    if (!e || tcpmsg_conn_open(&e->c, fd, codec, &o) < 0) {
        free(e);
        tcpmsg_sock_close(fd);
        return NULL;
    }
    e->fd = fd;
    e->w = w;
    tcpmsg__timer_init(&e->deadline.node);
    e->deadline = (struct tcpmsg__utimer){
        .node = e->deadline.node, .fn = deadline_due, .arg = e, .sv = &e->sv, .internal = true};
    e->sv.dropped = dropped;
    e->sv.flow = econn_flow;
    e->sv.end = econn_end;
    e->sv.shut = econn_shut;
    e->sv.worker = w;
    e->sv.c = e->c;
    e->sv.heap = &w->timers;
    if (!register_conn(w, e)) {
        tcpmsg_conn_close(e->c, TCPMSG_NOWAIT);
        free(e);
        return NULL;
    }
    tcpmsg__conn_hook(e->c, wake, e);
    tcpmsg__conn_short_reads(e->c, true); /* level-triggered: safe */
    e->last_rx = tcpmsg_now_ms();
    e->events = EPOLLIN;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = e};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        unregister_conn(w, e);
        tcpmsg_conn_close(e->c, TCPMSG_NOWAIT);
        free(e);
        return NULL;
    }
    e->next = w->conns;
    if (w->conns)
        w->conns->prev = e;
    w->conns = e;
    w->nconns++;
    return e;
}

static void
accept_some(struct tcpmsg_worker *w)
{
    struct tcpmsg_server *s = w->s;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = tcpmsg_sock_accept(w->lfd, &w->reserve, NULL, TCPMSG_NOWAIT);
        if (fd < 0) {
            if (fd != -ETIMEDOUT)
                tcpmsg__log(s, TCPMSG_EV_ACCEPT, fd, -1);
            if ((fd == -EMFILE || fd == -ENFILE) && w->reserve < 0) {
                /* Another thread took the descriptor the reserve gave back: nothing to
                 * drop the queued connection with. Retry in a second (relisten_due). */
                struct epoll_event le = {.events = 0, .data.ptr = TAG_LISTEN};
                if (epoll_ctl(w->ep, EPOLL_CTL_MOD, w->lfd, &le) == 0) {
                    w->listen_off = true;
                    (void)tcpmsg__timers_arm(&w->timers, &w->relisten.node, tcpmsg_now_ms() + 1000);
                }
            }
            return;
        }
        atomic_fetch_add(&s->n->accepted, 1);
        if (!tcpmsg__admit(s, fd))
            continue;
        struct econn *e = adopt(w, fd, &s->codec);
        if (!e) {
            atomic_fetch_sub(&s->n->active, 1);
            continue;
        }
        if (s->cfg.proxy_protocol) {
            /* The balancer's header first, then the handshake, then on_open. */
            int t = tcpmsg__proxy_trusted(s, fd);
            if (t == 0 && !(e->prd = malloc(sizeof *e->prd)))
                t = -ENOMEM;
            if (t < 0) {
                refuse(w, e, t);
                continue;
            }
            e->prd->have = 0;
            e->handshaking = true;
            e->hs_deadline = e->last_rx + tcpmsg__proxy_ms(s);
            watch_deadline(w, e);
            proxy_step(w, e); /* it may have come with the connection */
            continue;
        }
        int lim = tcpmsg__client_admit(s, e->c, &e->client);
        if (lim < 0) {
            refuse(w, e, lim);
            continue;
        }
        /* The handshake first: on_open comes once it has completed (handshake()). */
        struct tcpmsg_tls_params p = {.ctx = s->tls};
        begin_opening(w, e, s->tls ? &p : NULL, e->last_rx + s->cfg.handshake_timeout_ms);
    }
}

/* The connections callbacks sent to or dropped during this turn, other than their own:
 * their output is written (or waits for EPOLLOUT), the dropped ones are reset. */
static void
run_pending(struct tcpmsg_worker *w)
{
    while (w->pending) {
        struct econn *e = w->pending;
        w->pending = e->next_pending;
        e->pending = false;
        if (e->sv.drop) {
            begin_close(w, e, e->sv.drop); /* on_close may send to others: they queue up */
            destroy_conn(w, e, true);
            continue;
        }
        if (e->end_reason && !e->closing)
            begin_close(w, e, e->end_reason); /* its replies are written, then it closes */
        if (!e->closing) {
            note_output(w, e);
            int r = tcpmsg_conn_flush(e->c, TCPMSG_NOWAIT);
            if (r < 0 && r != -ETIMEDOUT)
                begin_close(w, e, r);
        }
        settle(w, e);
    }
}

/* The listener was set aside for want of descriptors: polled again. */
static void
relisten_due(struct tcpmsg_conn *c, uint64_t id, void *arg)
{
    (void)c, (void)id;
    struct tcpmsg_worker *w = arg;
    if (!w->listen_off || tcpmsg__stopping(w->s))
        return;
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = TAG_LISTEN};
    if (w->reserve < 0)
        w->reserve = tcpmsg_sock_reserve();
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, w->lfd, &le) == 0)
        w->listen_off = false;
    else
        (void)tcpmsg__timers_arm(&w->timers, &w->relisten.node, tcpmsg_now_ms() + 1000);
}

/* Takes what other threads posted and delivers it: a frame is sent on its connection as if
 * a callback had sent it, a call runs as a callback of it; for a connection that has ended
 * (or is ending) a frame is discarded and a call runs with c NULL, so that it can free arg. */
static void
deliver_posts(struct tcpmsg_worker *w)
{
    uint64_t v;
    ssize_t got;
    do
        got = read(w->postfd, &v, sizeof v); /* non-blocking: EAGAIN if already read */
    while (got < 0 && errno == EINTR);
    pthread_mutex_lock(&w->mu);
    struct postbuf b = w->posts;
    w->posts = w->spare; /* empty */
    w->pitems = w->pbytes = 0;
    pthread_mutex_unlock(&w->mu);
    for (size_t off = 0; off < b.len;) {
        struct post *p = (struct post *)(void *)(b.p + off);
        off += POST_SIZE(p->len);
        /* Only this thread changes the registry: read without the lock. */
        struct econn *e = w->reg[p->slot].gen == p->gen ? w->reg[p->slot].e : NULL;
        if (e && (e->closing || e->sv.drop || e->handshaking))
            e = NULL;
        if (p->fn) {
            p->fn(e ? e->c : NULL, p->arg);
        } else if (e && tcpmsg_conn_send(e->c, p + 1, p->len, TCPMSG_FOREVER) < 0) {
            (void)tcpmsg_server_drop(e->c, -ENOBUFS); /* as a callback's send would */
        }
    }
    b.len = 0;
    if (b.cap > POST_KEEP) { /* a burst: not kept for ever */
        free(b.p);
        b = (struct postbuf){0};
    }
    w->spare = b;
}

static void
discard_posts(struct tcpmsg_worker *w)
{
    for (size_t off = 0; off < w->posts.len;) {
        struct post *p = (struct post *)(void *)(w->posts.p + off);
        off += POST_SIZE(p->len);
        if (p->fn)
            p->fn(NULL, p->arg);
    }
    free(w->posts.p);
    free(w->spare.p);
    w->posts = w->spare = (struct postbuf){0};
}

/* Room for n more bytes in b (under the worker's lock). */
static bool
postbuf_reserve(struct postbuf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return true;
    size_t cap = b->cap ? 2 * b->cap : (size_t)64 * 1024;
    while (cap - b->len < n)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

int
tcpmsg__event_post(struct tcpmsg_server *s, uint64_t h, void (*fn)(struct tcpmsg_conn *, void *),
                   void *arg, const void *data, size_t len)
{
    uint32_t gen = (uint32_t)(h >> 32), slot = (uint32_t)h & ((1u << HANDLE_SLOT_BITS) - 1);
    int index = (int)((h >> HANDLE_SLOT_BITS) & 0xff);
    if (gen == 0)
        return -ENOENT;
    int r = 0;
    bool wake_it = false;
    pthread_rwlock_rdlock(&s->ev_lock);
    struct tcpmsg__event_run *ev = s->ev;
    if (!ev) {
        r = -ESHUTDOWN;
    } else if (index >= ev->n) {
        r = -ENOENT;
    } else {
        struct tcpmsg_worker *w = &ev->w[index];
        pthread_mutex_lock(&w->mu);
        if (slot >= w->nreg || w->reg[slot].gen != gen || !w->reg[slot].e) {
            r = -ENOENT;
        } else if (w->pitems >= POST_MAX_ITEMS || w->pbytes + len > POST_MAX_BYTES) {
            r = -EAGAIN;
        } else if (!postbuf_reserve(&w->posts, POST_SIZE(len))) {
            r = -ENOMEM;
        } else {
            wake_it = w->posts.len == 0;
            struct post *p = (struct post *)(void *)(w->posts.p + w->posts.len);
            *p = (struct post){slot, gen, fn, arg, len};
            if (len)
                memcpy(p + 1, data, len);
            w->posts.len += POST_SIZE(len);
            w->pitems++;
            w->pbytes += len;
        }
        pthread_mutex_unlock(&w->mu);
        if (r == 0 && wake_it) {
            uint64_t one = 1;
            ssize_t put;
            do
                put = write(w->postfd, &one, sizeof one);
            while (put < 0 && errno == EINTR);
        }
    }
    pthread_rwlock_unlock(&s->ev_lock);
    return r;
}

static void *
worker_main(void *arg)
{
    struct tcpmsg_worker *w = arg;
    struct tcpmsg_server *s = w->s;
    bool stopping = false;
    int64_t drain_end = 0;
    struct epoll_event ev[MAX_EVENTS];
    if (s->h.on_worker_start) {
        s->h.on_worker_start(w, s->h.user);
        run_pending(w);
        reap_watches(w);
    }
    for (;;) {
        int64_t now = tcpmsg_now_ms();
        if (!stopping && tcpmsg__stopping(s)) {
            /* Stop accepting; frames already received are handled, replies written, then
             * every connection ends (-ESHUTDOWN). */
            stopping = true;
            w->stopping = true;
            dials_stop(w); /* no more attempts; open connections end with the others */
            drain_end = now + s->cfg.drain_ms;
            epoll_ctl(w->ep, EPOLL_CTL_DEL, w->lfd, NULL);
            epoll_ctl(w->ep, EPOLL_CTL_DEL, s->wakefd, NULL); /* readable for ever now */
            for (struct econn *e = w->conns, *next; e; e = next) {
                next = e->next;
                if (e->handshaking)
                    refuse(w, e, -ESHUTDOWN); /* never opened: nothing to finish */
                else
                    pump(w, e);
            }
            run_pending(w);
            for (struct econn *e = w->conns, *next; e; e = next) {
                next = e->next;
                begin_close(w, e, -ESHUTDOWN);
                settle(w, e);
            }
            run_pending(w);
        }
        if (stopping && (!w->conns || now >= drain_end))
            break;
        int64_t wake_at = tcpmsg__timers_next(&w->timers);
        int timeout = wake_at == INT64_MAX      ? -1
                      : wake_at - now > INT_MAX ? INT_MAX
                      : wake_at <= now          ? 0
                                                : (int)(wake_at - now);
        if (stopping && (timeout < 0 || drain_end - now < timeout))
            timeout = drain_end > now ? (int)(drain_end - now) : 0;
        int n = epoll_wait(w->ep, ev, MAX_EVENTS, timeout);
        for (int i = 0; i < n; i++) {
            void *tag = ev[i].data.ptr;
            if (tag == TAG_LISTEN) {
                if (!stopping)
                    accept_some(w);
                continue;
            }
            if (tag == TAG_WAKE)
                continue; /* noticed at the top of the loop */
            if (tag == TAG_POST) {
                deliver_posts(w);
                continue;
            }
            if (IS_TAGGED(tag)) {
                const uint8_t *kind = UNTAG(tag);
                if (*kind == KIND_WATCH)
                    watch_ready(w, UNTAG(tag), ev[i].events);
                else
                    dial_ready(UNTAG(tag));
                continue;
            }
            struct econn *e = tag;
            if (e->handshaking) {
                handshake(w, e);
                continue;
            }
            if (!e->closing && !e->paused && !e->user_paused && !e->peer_ended &&
                (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                pump(w, e);
            else if (ev[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
                note_output(w, e);
                int r = tcpmsg_conn_flush(e->c, TCPMSG_NOWAIT);
                if (r < 0 && r != -ETIMEDOUT)
                    begin_close(w, e, r);
                else if (!e->closing && (ev[i].events & (EPOLLHUP | EPOLLERR)))
                    hang_up(w, e);
            }
            settle(w, e);
        }
        /* Timers (the handler's, the deadlines) run outside any connection's callback:
         * what they send or drop is handled by run_pending at the end of the turn. */
        now = tcpmsg_now_ms();
        if (tcpmsg__timers_next(&w->timers) <= now)
            tcpmsg__timers_run(&w->timers, now);
        run_pending(w);
        reap_watches(w);
    }
    /* Whatever did not finish within the drain time is reset. */
    while (w->conns) {
        if (!w->conns->closing)
            begin_close(w, w->conns, -ESHUTDOWN);
        destroy_conn(w, w->conns, true);
    }
    dials_stop(w);
    if (s->h.on_worker_stop)
        s->h.on_worker_stop(w, s->h.user);
    tcpmsg__timers_cancel(&w->wsv);
    for (struct watch *wt = w->watches; wt; wt = wt->next)
        if (!wt->dead)
            epoll_ctl(w->ep, EPOLL_CTL_DEL, wt->fd, NULL);
    for (struct watch *wt = w->watches, *next; wt; wt = next) {
        next = wt->next;
        free(wt);
    }
    w->watches = NULL;
    return NULL;
}

/* ---- the loop as a platform: the worker's own timers, watched descriptors ---------------- */

int
tcpmsg_worker_index(const struct tcpmsg_worker *w)
{
    return w ? w->index : -EINVAL;
}

struct tcpmsg_server *
tcpmsg_worker_server(const struct tcpmsg_worker *w)
{
    return w ? w->s : NULL;
}

int
tcpmsg_worker_timer_start(struct tcpmsg_worker *w, int64_t delay_ms, int64_t period_ms,
                          tcpmsg_worker_timer_fn fn, void *arg, uint64_t *id)
{
    if (id)
        *id = 0;
    if (!w || !fn)
        return -EINVAL;
    return tcpmsg__timer_add(&w->wsv, delay_ms, period_ms, NULL, fn, arg, id);
}

int
tcpmsg_worker_timer_stop(struct tcpmsg_worker *w, uint64_t id)
{
    return w ? tcpmsg__timer_stop(&w->wsv, id) : -EINVAL;
}

static struct watch *
find_watch(const struct tcpmsg_worker *w, int fd)
{
    for (struct watch *wt = w->watches; wt; wt = wt->next)
        if (wt->fd == fd && !wt->dead)
            return wt;
    return NULL;
}

static uint32_t
epoll_events(int events)
{
    return (events & TCPMSG_WATCH_IN ? EPOLLIN : 0) | (events & TCPMSG_WATCH_OUT ? EPOLLOUT : 0);
}

int
tcpmsg_worker_watch(struct tcpmsg_worker *w, int fd, int events, tcpmsg_watch_fn fn, void *arg)
{
    if (!w || !fn || fd < 0 || events == 0 || (events & ~(TCPMSG_WATCH_IN | TCPMSG_WATCH_OUT)) != 0)
        return -EINVAL;
    if (fd == w->ep || (w->lfd >= 0 && fd == w->lfd) || fd == w->postfd || fd == w->s->wakefd)
        return -EEXIST;
    struct watch *wt = find_watch(w, fd);
    struct epoll_event ev = {.events = epoll_events(events)};
    if (wt) {
        ev.data.ptr = TAG_OF(wt);
        if (epoll_ctl(w->ep, EPOLL_CTL_MOD, fd, &ev) < 0)
            return -errno;
        wt->events = events;
        wt->fn = fn;
        wt->arg = arg;
        return 0;
    }
    wt = malloc(sizeof *wt);
    if (!wt)
        return -ENOMEM;
    *wt = (struct watch){KIND_WATCH, fd, events, fn, arg, false, w->watches};
    ev.data.ptr = TAG_OF(wt);
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int r = -errno; /* EPERM: a regular file; EEXIST: one of the connections' */
        free(wt);
        return r;
    }
    w->watches = wt;
    return 0;
}

int
tcpmsg_worker_unwatch(struct tcpmsg_worker *w, int fd)
{
    if (!w)
        return -EINVAL;
    struct watch *wt = find_watch(w, fd);
    if (!wt)
        return -ENOENT;
    epoll_ctl(w->ep, EPOLL_CTL_DEL, fd, NULL);
    wt->dead = true; /* freed at the end of the turn: its event may be in hand */
    return 0;
}

/* A watched descriptor is ready: its callback, with what was asked for. */
static void
watch_ready(struct tcpmsg_worker *w, struct watch *wt, uint32_t got)
{
    if (wt->dead)
        return;
    bool broken = got & (EPOLLERR | EPOLLHUP);
    int ready =
        ((wt->events & TCPMSG_WATCH_IN) && (broken || (got & EPOLLIN)) ? TCPMSG_WATCH_IN : 0) |
        ((wt->events & TCPMSG_WATCH_OUT) && (broken || (got & EPOLLOUT)) ? TCPMSG_WATCH_OUT : 0);
    if (ready)
        wt->fn(w, wt->fd, ready, wt->arg);
}

/* ---- outbound connections (tcpmsg_worker_dial) -------------------------------------------
 * A dialler resolves its name, runs Happy Eyeballs over the addresses (tcpmsg__he: the
 * pending attempts are in the worker's epoll, tagged with the dialler, and its timer wakes it
 * for the next address and at the deadline), and adopts the winner as a connection of the
 * worker. With reconnect, a failure or an end schedules the next attempt after a jittered
 * wait that doubles up to the maximum; only a connection that stayed open healthy_ms starts
 * the waits over (never a bare connect: a server that accepts and closes at once gets
 * exponentially fewer attempts, not a storm). */

static _Atomic uint64_t last_dial_id;

struct dial {
    uint8_t kind; /* KIND_DIAL */
    uint64_t id;
    struct tcpmsg_worker *w;
    char host[256], port[64], tls_name[256];
    struct tcpmsg_dial_opts o;
    struct tcpmsg_codec codec; /* o.codec's copy */
    uint8_t *proxy_hdr;        /* o.proxy formatted (NULL: none) */
    size_t proxy_len;
    struct tcpmsg_addr addrs[16];
    struct tcpmsg__he he;
    int watched[TCPMSG__HE_INFLIGHT]; /* the attempts' fds in epoll */
    size_t nwatched;
    bool connecting, stopped;
    bool telling; /* in on_down: a dial_stop there is carried out after it */
    int64_t deadline, backoff, opened_at;
    struct econn *conn;
    struct tcpmsg__utimer timer; /* the next address, the deadline, or the next attempt */
    struct dial *next;
};

/* Keeps epoll in step with the pending attempts: new ones are added; those that ended were
 * closed (which took them out of epoll). */
static void
dial_sync(struct dial *d)
{
    size_t n = 0;
    for (size_t i = 0; i < d->he.npend; i++) {
        int fd = d->he.fds[i].fd;
        bool known = false;
        for (size_t k = 0; k < d->nwatched && !known; k++)
            known = d->watched[k] == fd;
        if (!known) {
            struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = TAG_OF(d)};
            (void)epoll_ctl(d->w->ep, EPOLL_CTL_ADD, fd, &ev); /* else seen at the deadline */
        }
        d->watched[n++] = fd;
    }
    d->nwatched = n;
}

static void
dial_unlink_free(struct dial *d)
{
    struct tcpmsg_worker *w = d->w;
    tcpmsg__timers_disarm(&w->timers, &d->timer.node);
    tcpmsg__he_abort(&d->he);
    tcpmsg_tls_ctx_destroy(d->o.tls); /* its reference */
    free(d->proxy_hdr);
    for (struct dial **p = &w->dials; *p; p = &(*p)->next) {
        if (*p == d) {
            *p = d->next;
            break;
        }
    }
    free(d);
}

/* The next wait: drawn in [b/2, b] for the current back-off b, which then doubles. */
static int64_t
dial_backoff(struct dial *d)
{
    struct tcpmsg_worker *w = d->w;
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    int64_t b = d->backoff;
    int64_t wait = b / 2 + (int64_t)(w->rng % (uint64_t)(b - b / 2 + 1));
    d->backoff = b > d->o.backoff_max_ms / 2 ? d->o.backoff_max_ms : 2 * b;
    return wait;
}

/* on_down; the dialler stays (a dial_stop inside only marks it, the caller frees it). */
static void
tell_down(struct dial *d, int reason, int64_t retry)
{
    if (!d->o.on_down)
        return;
    d->telling = true;
    d->o.on_down(d->w, d->id, reason, retry, d->o.arg);
    d->telling = false;
}

static bool
dial_again(const struct dial *d)
{
    return d->o.reconnect && !d->stopped && !d->w->stopping;
}

/* An attempt failed: the caller hears why, and when the next one starts (if any). */
static void
dial_failed(struct dial *d, int reason)
{
    d->connecting = false;
    tcpmsg__he_abort(&d->he);
    d->nwatched = 0;
    int64_t retry = -1;
    if (dial_again(d)) {
        retry = dial_backoff(d);
        (void)tcpmsg__timers_arm(&d->w->timers, &d->timer.node, tcpmsg_now_ms() + retry);
    }
    tell_down(d, reason, retry);
    if ((retry < 0 || d->stopped) && !d->conn)
        dial_unlink_free(d);
}

static void
dial_won(struct dial *d, int fd)
{
    struct tcpmsg_worker *w = d->w;
    struct tcpmsg_server *s = w->s;
    d->connecting = false;
    d->nwatched = 0;
    tcpmsg__timers_disarm(&w->timers, &d->timer.node);
    epoll_ctl(w->ep, EPOLL_CTL_DEL, fd, NULL);
    atomic_fetch_add(&s->n->active, 1); /* released with the connection, as accepted ones */
    if (!s->cfg.nagle)
        (void)tcpmsg_sock_set_nodelay(fd, true);
    (void)tcpmsg_sock_set_nonblocking(fd, false); /* as accepted sockets: MSG_DONTWAIT */
    struct econn *e = adopt(w, fd, d->o.codec ? &d->codec : &s->codec);
    if (!e) {
        atomic_fetch_sub(&s->n->active, 1);
        dial_failed(d, -ENOMEM);
        return;
    }
    e->dial = d;
    e->sv.dial_id = d->id;
    d->conn = e;
    d->opened_at = tcpmsg_now_ms();
    if (d->proxy_hdr) {
        /* The header goes first, before any TLS byte; a new socket's buffer takes 4 KiB. */
        ssize_t n = send(fd, d->proxy_hdr, d->proxy_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n != (ssize_t)d->proxy_len) {
            refuse(w, e, n < 0 ? -errno : -EIO);
            return;
        }
    }
    /* The handshake under the attempt's deadline; a failure refuses the connection, which
     * dial_conn_ended reports as a failed attempt, as is a refusal by on_open. */
    struct tcpmsg_tls_params p = {.ctx = d->o.tls, .name = d->tls_name};
    begin_opening(w, e, d->o.tls ? &p : NULL, d->deadline);
}

/* Runs the attempts as far as they go now; waits (epoll, the timer) for the rest. */
static void
dial_step(struct dial *d)
{
    for (;;) {
        int r = tcpmsg__he_advance(&d->he, 0);
        if (r >= 0) {
            dial_sync(d);
            dial_won(d, r);
            return;
        }
        if (r != TCPMSG__HE_PENDING) {
            dial_failed(d, r);
            return;
        }
        int64_t next = tcpmsg__he_next_start(&d->he);
        if (next == 0)
            continue; /* an address failed at once: the next one starts now */
        dial_sync(d);
        int64_t at = next < d->deadline ? next : d->deadline;
        (void)tcpmsg__timers_arm(&d->w->timers, &d->timer.node, at);
        return;
    }
}

/* An attempt starts: the name is resolved, the first address tried. */
static void
dial_begin(struct dial *d)
{
    int n = tcpmsg__resolve_ordered(d->host, d->port, TCPMSG_FAMILY_ANY, d->addrs, 16);
    if (n <= 0) {
        dial_failed(d, n < 0 ? n : TCPMSG_EAI_NONAME);
        return;
    }
    struct tcpmsg_connect_opts co = {.attempt_delay_ms = d->o.attempt_delay_ms};
    tcpmsg__he_begin(&d->he, d->addrs, (size_t)n, &co);
    d->connecting = true;
    d->deadline = tcpmsg_now_ms() + d->o.connect_timeout_ms;
    dial_step(d);
}

static void
dial_due(struct tcpmsg_conn *c, uint64_t id, void *arg)
{
    (void)c, (void)id;
    struct dial *d = arg;
    if (!d->connecting)
        dial_begin(d); /* the back-off is over */
    else if (tcpmsg_now_ms() >= d->deadline)
        dial_failed(d, -ETIMEDOUT);
    else
        dial_step(d); /* the next address's turn */
}

static void
dial_ready(struct dial *d)
{
    if (d->connecting)
        dial_step(d);
}

/* Its connection ended (on_close has run, if on_open had) for reason. */
static void
dial_conn_ended(struct dial *d, int reason)
{
    d->conn = NULL;
    int64_t retry = -1;
    if (dial_again(d)) {
        if (tcpmsg_now_ms() - d->opened_at >= d->o.healthy_ms)
            d->backoff = d->o.backoff_initial_ms; /* it was healthy: start over */
        retry = dial_backoff(d);
        (void)tcpmsg__timers_arm(&d->w->timers, &d->timer.node, tcpmsg_now_ms() + retry);
    }
    tell_down(d, reason, retry);
    if (retry < 0 || d->stopped)
        dial_unlink_free(d);
}

/* The worker stops: no more attempts. A dialler whose connection is open goes with it. */
static void
dials_stop(struct tcpmsg_worker *w)
{
    for (struct dial *d = w->dials, *next; d; d = next) {
        next = d->next;
        d->stopped = true;
        if (d->conn) {
            tcpmsg__timers_disarm(&w->timers, &d->timer.node);
            continue;
        }
        dial_unlink_free(d);
    }
}

int
tcpmsg_worker_dial(struct tcpmsg_worker *w, const char *host, const char *port,
                   const struct tcpmsg_dial_opts *opts, uint64_t *id)
{
    static const struct tcpmsg_dial_opts defaults;
    if (id)
        *id = 0;
    if (!opts)
        opts = &defaults;
    if (!port)
        port = "";
    if (!w || !host || (!*port && !tcpmsg__is_unix(host)) || opts->connect_timeout_ms < 0 ||
        opts->attempt_delay_ms < 0 || opts->backoff_initial_ms < 0 || opts->backoff_max_ms < 0 ||
        opts->healthy_ms < 0 || strlen(host) >= sizeof((struct dial *)0)->host ||
        strlen(port) >= sizeof((struct dial *)0)->port ||
        (opts->tls && tcpmsg_tls_ctx_role(opts->tls) != TCPMSG_TLS_CLIENT) ||
        strlen(opts->tls_name ? opts->tls_name : host) >= sizeof((struct dial *)0)->tls_name)
        return -EINVAL;
    if (w->stopping || tcpmsg__stopping(w->s))
        return -ESHUTDOWN;
    uint8_t hdr[TCPMSG_PROXY_MAX];
    int hlen = opts->proxy ? tcpmsg_proxy_format(hdr, sizeof hdr, opts->proxy) : 0;
    if (hlen < 0)
        return hlen;
    struct dial *d = calloc(1, sizeof *d);
    if (!d || (hlen && !(d->proxy_hdr = malloc((size_t)hlen)))) {
        free(d);
        return -ENOMEM;
    }
    if (hlen)
        memcpy(d->proxy_hdr, hdr, (size_t)hlen);
    d->proxy_len = (size_t)hlen;
    d->kind = KIND_DIAL;
    d->w = w;
    d->o = *opts;
    d->o.proxy = NULL;
    if (opts->codec) {
        d->codec = *opts->codec;
        d->o.codec = &d->codec; /* the caller's may go */
    }
    if (!d->o.connect_timeout_ms)
        d->o.connect_timeout_ms = 10000;
    if (!d->o.backoff_initial_ms)
        d->o.backoff_initial_ms = 100;
    if (!d->o.backoff_max_ms)
        d->o.backoff_max_ms = 30000;
    if (d->o.backoff_max_ms < d->o.backoff_initial_ms)
        d->o.backoff_max_ms = d->o.backoff_initial_ms;
    if (!d->o.healthy_ms)
        d->o.healthy_ms = 10000;
    d->backoff = d->o.backoff_initial_ms;
    memcpy(d->host, host, strlen(host) + 1);
    memcpy(d->port, port, strlen(port) + 1);
    const char *name = opts->tls_name ? opts->tls_name : host;
    memcpy(d->tls_name, name, strlen(name) + 1);
    d->o.tls_name = d->tls_name;
    d->o.tls = tcpmsg_tls_ctx_ref(opts->tls);
    d->id = atomic_fetch_add(&last_dial_id, 1) + 1;
    tcpmsg__timer_init(&d->timer.node);
    d->timer.fn = dial_due;
    d->timer.arg = d;
    d->timer.internal = true;
    d->next = w->dials;
    w->dials = d;
    if (id)
        *id = d->id;
    /* The first attempt starts in the loop's next turn, outside the caller's callback. */
    (void)tcpmsg__timers_arm(&w->timers, &d->timer.node, tcpmsg_now_ms());
    return 0;
}

int
tcpmsg_worker_dial_stop(struct tcpmsg_worker *w, uint64_t id)
{
    if (!w)
        return -EINVAL;
    for (struct dial *d = w->dials; d; d = d->next) {
        if (d->id != id || d->stopped)
            continue;
        d->stopped = true;
        if (d->conn || d->telling) { /* freed when it ends / after its on_down */
            tcpmsg__timers_disarm(&w->timers, &d->timer.node);
            tcpmsg__he_abort(&d->he);
        } else {
            dial_unlink_free(d);
        }
        return 0;
    }
    return -ENOENT;
}

/* Frees the unwatched entries, once no event of this turn can name them. */
static void
reap_watches(struct tcpmsg_worker *w)
{
    for (struct watch **p = &w->watches; *p;) {
        struct watch *wt = *p;
        if (wt->dead) {
            *p = wt->next;
            free(wt);
        } else {
            p = &wt->next;
        }
    }
}

static int
worker_init(struct tcpmsg_worker *w, struct tcpmsg_server *s, int index)
{
    memset(w, 0, sizeof *w);
    tcpmsg__timers_init(&w->timers);
    w->wsv.heap = &w->timers;
    w->wsv.worker = w;
    tcpmsg__timer_init(&w->relisten.node);
    w->relisten.fn = relisten_due;
    w->relisten.arg = w;
    w->relisten.internal = true;
    w->s = s;
    w->index = index;
    w->rng = (uint64_t)tcpmsg_now_ms() * 0x9e3779b97f4a7c15u + (uint64_t)index + 1;
    w->free_slot = UINT32_MAX;
    w->postfd = -1;
    pthread_mutex_init(&w->mu, NULL);
    w->mu_init = true;
    w->lfd = s->lfd;
    w->reserve = tcpmsg_sock_reserve();
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep < 0)
        return -errno;
    struct tcpmsg_addr la;
    bool shared = s->shared_lfd || s->cfg.handover ||
                  (s->lfd >= 0 && tcpmsg_addr_local(s->lfd, &la) == 0 &&
                   tcpmsg_addr_family(&la) == TCPMSG_FAMILY_UNIX);
    if (index > 0 && s->lfd >= 0 && !shared) {
        /* Another listener on the same port: the kernel spreads new connections. */
        struct tcpmsg_addr a;
        int r = tcpmsg_addr_local(s->lfd, &a);
        struct tcpmsg_listen_opts lo = s->cfg.listen;
        lo.reuseport = true;
        if (r == 0)
            r = tcpmsg_sock_listen_addr(&a, &lo);
        if (r < 0)
            return r;
        w->lfd = r;
        w->own_lfd = true;
        tcpmsg_sock_set_nonblocking(w->lfd, true);
    }
    w->postfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->postfd < 0)
        return -errno;
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = TAG_LISTEN};
    struct epoll_event we = {.events = EPOLLIN, .data.ptr = TAG_WAKE};
    struct epoll_event pe = {.events = EPOLLIN, .data.ptr = TAG_POST};
    if ((w->lfd >= 0 && epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &le) < 0) ||
        epoll_ctl(w->ep, EPOLL_CTL_ADD, s->wakefd, &we) < 0 ||
        epoll_ctl(w->ep, EPOLL_CTL_ADD, w->postfd, &pe) < 0)
        return -errno;
    return 0;
}

static void
worker_fini(struct tcpmsg_worker *w)
{
    tcpmsg__timers_fini(&w->timers);
    discard_posts(w); /* posted after the worker ended: calls see c NULL */
    free(w->reg);
    if (w->postfd >= 0)
        close(w->postfd);
    if (w->mu_init)
        pthread_mutex_destroy(&w->mu);
    if (w->ep >= 0)
        close(w->ep);
    if (w->own_lfd)
        tcpmsg_sock_close(w->lfd);
    tcpmsg_sock_close(w->reserve);
}

int
tcpmsg__run_event(struct tcpmsg_server *s)
{
    int nw = s->cfg.workers;
    if (nw < 1)
        return -EINVAL; /* copy_config gives at least one */
    struct tcpmsg_worker *w = calloc((size_t)nw, sizeof *w);
    if (!w)
        return -ENOMEM;
    int r = 0, started = 0;
    for (int i = 0; i < nw && r == 0; i++) {
        w[i].ep = -1;
        r = worker_init(&w[i], s, i);
        if (r < 0) {
            worker_fini(&w[i]);
            break;
        }
        started++;
    }
    /* Other threads may post to the workers from now on, until they have all ended. */
    struct tcpmsg__event_run run = {w, started};
    if (r == 0) {
        pthread_rwlock_wrlock(&s->ev_lock);
        /* run lives in this frame until every worker has ended and ev is cleared below. */
        // cppcheck-suppress autoVariables
        s->ev = &run;
        pthread_rwlock_unlock(&s->ev_lock);
    }
    /* Workers 1.. run in their own threads, worker 0 in the caller's. */
    int threads = 1;
    for (int i = 1; r == 0 && i < started; i++, threads++)
        if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0)
            break;
    if (r == 0) {
        worker_main(&w[0]);
        s->drain_deadline = tcpmsg_deadline_in(s->cfg.drain_ms);
        tcpmsg__log(s, TCPMSG_EV_STOP, 0, -1);
    } else {
        tcpmsg_server_stop(s);
    }
    for (int i = 1; i < threads; i++)
        pthread_join(w[i].thread, NULL);
    pthread_rwlock_wrlock(&s->ev_lock);
    s->ev = NULL; /* posters now get -ESHUTDOWN */
    pthread_rwlock_unlock(&s->ev_lock);
    for (int i = 0; i < started; i++)
        worker_fini(&w[i]);
    free(w);
    return r;
}
