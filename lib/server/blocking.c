/* The blocking models: ITERATIVE, THREAD, FORK and POOL (processes or threads). Each serves a
 * connection with tcpmsg__serve_blocking; they differ in who accepts and who serves. */
#include "server_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Waits until the listener is readable or the server stops. Returns true to accept. */
static bool
wait_listener(struct tcpmsg_server *s)
{
    struct pollfd p[2] = {{.fd = s->lfd, .events = POLLIN}, {.fd = s->wakefd, .events = POLLIN}};
    while (!tcpmsg__stopping(s)) {
        int n = poll(p, 2, -1);
        if (n > 0)
            return !p[1].revents;
    }
    return false;
}

/* Accepts one connection from the (non-blocking) listener; -1 when there is none. */
static int
take(struct tcpmsg_server *s, int *reserve)
{
    int fd = tcpmsg_sock_accept(s->lfd, reserve, NULL, TCPMSG_NOWAIT);
    if (fd >= 0) {
        atomic_fetch_add(&s->n->accepted, 1);
        return fd;
    }
    if (fd != -ETIMEDOUT)
        tcpmsg__log(s, TCPMSG_EV_ACCEPT, fd, -1);
    return -1;
}

static void
refuse(struct tcpmsg_server *s, int fd)
{
    atomic_fetch_add(&s->n->refused, 1);
    tcpmsg__log(s, TCPMSG_EV_REFUSED, TCPMSG_EFULL, fd);
    tcpmsg_sock_close(fd);
}

static void
noticed_stop(struct tcpmsg_server *s)
{
    s->drain_deadline = tcpmsg_deadline_in(s->cfg.drain_ms);
    tcpmsg__log(s, TCPMSG_EV_STOP, 0, -1);
}

/* ---- ITERATIVE -------------------------------------------------------------------------- */

int
tcpmsg__run_iterative(struct tcpmsg_server *s)
{
    int reserve = tcpmsg_sock_reserve();
    while (wait_listener(s)) {
        int fd = take(s, &reserve);
        if (fd >= 0) {
            atomic_store(&s->serving_fd, fd);
            if (tcpmsg__stopping(s) && s->h.dialog)
                shutdown(fd, SHUT_RD); /* the stop came between accept and here */
            tcpmsg__serve_blocking(s, fd, NULL);
            atomic_store(&s->serving_fd, -1);
        }
    }
    noticed_stop(s);
    tcpmsg_sock_close(reserve);
    return 0;
}

/* ---- THREAD and POOL threads: slots ------------------------------------------------------- */

static int
alloc_slots(struct tcpmsg_server *s, int n)
{
    s->slots = calloc((size_t)n, sizeof *s->slots);
    if (!s->slots)
        return -ENOMEM;
    s->nslots = n;
    for (int i = 0; i < n; i++) {
        s->slots[i].fd = -1;
        s->slots[i].s = s;
    }
    return 0;
}

/* Joins the threads that finished; returns how many are still running. Caller holds mu. */
static int
reap_threads(struct tcpmsg_server *s)
{
    int running = 0;
    for (int i = 0; i < s->nslots; i++) {
        struct tcpmsg__slot *t = &s->slots[i];
        if (t->used && t->done) {
            pthread_join(t->thread, NULL);
            t->used = t->done = false;
        }
        running += t->used;
    }
    return running;
}

/* After a stop: lets the threads finish until the drain deadline, then forces their sockets
 * shut so that they finish anyway, and joins every one of them. */
static void
join_all(struct tcpmsg_server *s)
{
    if (s->h.dialog)
        tcpmsg__shutdown_slots(s, SHUT_RD); /* a dialog blocked in recv sees the end */
    pthread_mutex_lock(&s->mu);
    bool forced = false;
    while (reap_threads(s) > 0) {
        if (!forced && tcpmsg_deadline_left(s->drain_deadline) == 0) {
            pthread_mutex_unlock(&s->mu);
            tcpmsg__shutdown_slots(s, SHUT_RDWR);
            pthread_mutex_lock(&s->mu);
            forced = true;
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
}

static void
slot_done(struct tcpmsg__slot *t)
{
    struct tcpmsg_server *s = t->s;
    pthread_mutex_lock(&s->mu);
    t->done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- THREAD ----------------------------------------------------------------------------- */

struct conn_job {
    struct tcpmsg__slot *slot;
    int fd;
};

static void *
conn_thread(void *arg)
{
    struct tcpmsg__slot *t = arg;
    tcpmsg__serve_blocking(t->s, t->fd, t);
    slot_done(t);
    return NULL;
}

int
tcpmsg__run_thread(struct tcpmsg_server *s)
{
    int r = alloc_slots(s, s->cfg.max_conns);
    if (r < 0)
        return r;
    int reserve = tcpmsg_sock_reserve();
    while (wait_listener(s)) {
        int fd = take(s, &reserve);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&s->mu);
        reap_threads(s);
        struct tcpmsg__slot *free_slot = NULL;
        for (int i = 0; i < s->nslots && !free_slot; i++)
            if (!s->slots[i].used)
                free_slot = &s->slots[i];
        if (free_slot) {
            free_slot->used = true;
            free_slot->done = false;
            free_slot->fd = fd;
            if (pthread_create(&free_slot->thread, NULL, conn_thread, free_slot) != 0) {
                free_slot->used = false;
                free_slot->fd = -1;
                free_slot = NULL;
            }
        }
        pthread_mutex_unlock(&s->mu);
        if (!free_slot)
            refuse(s, fd);
    }
    noticed_stop(s);
    tcpmsg_sock_close(reserve);
    join_all(s);
    return 0;
}

/* ---- POOL: the worker, for threads and processes alike --------------------------------------- */

/* A worker waits for a connection with EPOLLEXCLUSIVE on the shared listener: the kernel
 * wakes one waiting worker per connection (no thundering herd), and only idle workers wait,
 * so a connection never queues behind a busy worker, which SO_REUSEPORT would do (it hashes
 * connections to sockets, busy or not). The stop eventfd is watched without EXCLUSIVE, so a
 * stop wakes them all. */
static void
pool_worker(struct tcpmsg_server *s, struct tcpmsg__slot *slot)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return;
    struct epoll_event le = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u32 = 0};
    struct epoll_event we = {.events = EPOLLIN, .data.u32 = 1};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->lfd, &le) < 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, s->wakefd, &we) < 0) {
        close(ep);
        return;
    }
    int reserve = tcpmsg_sock_reserve();
    while (!tcpmsg__stopping(s)) {
        struct epoll_event ev[2];
        int n = epoll_wait(ep, ev, 2, -1);
        bool accept_now = false, stop = false;
        for (int i = 0; i < n; i++) {
            accept_now |= ev[i].data.u32 == 0;
            stop |= ev[i].data.u32 == 1;
        }
        /* The eventfd, not the flag: in a worker process the flag is the parent's. */
        if (stop)
            break;
        if (!accept_now)
            continue;
        int fd = take(s, &reserve);
        if (fd >= 0)
            tcpmsg__serve_blocking(s, fd, slot);
    }
    tcpmsg_sock_close(reserve);
    close(ep);
}

static void *
pool_thread(void *arg)
{
    struct tcpmsg__slot *t = arg;
    pool_worker(t->s, t);
    slot_done(t);
    return NULL;
}

/* ---- processes: FORK executors and POOL workers --------------------------------------------- */

/* In a child process: SIGTERM shuts the reading side of the connection being served, so that
 * a dialog handler blocked in recv sees the end (shutdown() is async-signal-safe). */
static void
child_on_term(int sig)
{
    (void)sig;
    int e = errno;
    int fd = tcpmsg__child_fd;
    if (fd >= 0)
        shutdown(fd, SHUT_RD);
    errno = e;
}

static void
child_setup(struct tcpmsg_server *s, const sigset_t *restore)
{
    s->in_child = true;
    struct sigaction sa = {.sa_handler = child_on_term};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGINT, SIG_IGN); /* a terminal's ^C reaches the whole group: the parent decides */
    pthread_sigmask(SIG_SETMASK, restore, NULL);
}

/* fork() with every signal blocked across it: a signal arriving before the child has set its
 * own handlers would otherwise run the parent's handlers (the application's, a test
 * framework's) in the child. Returns fork's result; the child's mask is restored by
 * child_setup, the parent's here. */
static pid_t
fork_blocked(sigset_t *old)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, old);
    pid_t pid = fork();
    if (pid != 0) {
        int e = errno;
        pthread_sigmask(SIG_SETMASK, old, NULL);
        errno = e;
    }
    return pid;
}

static int
pidfd_of(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

struct child {
    pid_t pid;
    int pidfd; /* readable once the child exited; -1 where pidfd_open is missing */
};

struct children {
    struct child *c;
    struct pollfd *p; /* one per child, then room for 2 more */
    int n, cap;
};

/* The poll set: each child's pidfd, followed by `extra` entries for the caller. */
static struct pollfd *
poll_set(struct children *ch)
{
    for (int i = 0; i < ch->n; i++)
        ch->p[i] = (struct pollfd){.fd = ch->c[i].pidfd, .events = POLLIN};
    return ch->p;
}

static void
reap(struct children *ch, int i, int *status)
{
    int st = 0;
    while (waitpid(ch->c[i].pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (status)
        *status = st;
    if (ch->c[i].pidfd >= 0)
        close(ch->c[i].pidfd);
    ch->c[i] = ch->c[--ch->n];
}

/* Collects exited children (pidfds that became readable, or any child without a pidfd that
 * waitpid reports); calls on_exit for each. */
static void
collect(struct children *ch, struct pollfd *p, void (*on_exit)(void *, int), void *arg)
{
    for (int i = 0; i < ch->n;) {
        bool gone = false;
        if (ch->c[i].pidfd >= 0) {
            gone = p && (p[i].revents & POLLIN);
        } else {
            int st;
            gone = waitpid(ch->c[i].pid, &st, WNOHANG) == ch->c[i].pid;
            if (gone) {
                ch->c[i] = ch->c[--ch->n];
                if (on_exit)
                    on_exit(arg, st);
                continue;
            }
        }
        if (gone) {
            int st;
            if (p)
                p[i] = p[ch->n - 1];
            reap(ch, i, &st);
            if (on_exit)
                on_exit(arg, st);
            continue;
        }
        i++;
    }
}

/* Stops the children: SIGTERM, the drain time to finish, then SIGKILL; reaps them all. */
static void
end_children(struct tcpmsg_server *s, struct children *ch)
{
    /* The stop eventfd reaches every child; a dialog handler blocked in recv also needs its
     * reading side shut, which SIGTERM does in the child. */
    for (int i = 0; i < ch->n && s->h.dialog; i++)
        kill(ch->c[i].pid, SIGTERM);
    bool killed = false;
    while (ch->n > 0) {
        struct pollfd *p = poll_set(ch);
        int left = tcpmsg_deadline_left(s->drain_deadline);
        if (left == 0 && !killed) {
            for (int i = 0; i < ch->n; i++)
                kill(ch->c[i].pid, SIGKILL);
            killed = true;
        }
        poll(p, (nfds_t)ch->n, killed ? 50 : (left < 50 ? left : 50));
        collect(ch, p, NULL, NULL);
    }
    free(ch->c);
    free(ch->p);
}

static int
grow(struct children *ch)
{
    if (ch->n == ch->cap) {
        int ncap = ch->cap ? 2 * ch->cap : 16;
        struct child *n = realloc(ch->c, (size_t)ncap * sizeof *n);
        if (!n)
            return -ENOMEM;
        ch->c = n;
        struct pollfd *p = realloc(ch->p, (size_t)(ncap + 2) * sizeof *p);
        if (!p)
            return -ENOMEM;
        ch->p = p;
        ch->cap = ncap;
    }
    return 0;
}

static int
add_child(struct children *ch, pid_t pid)
{
    if (grow(ch) < 0)
        return -ENOMEM;
    ch->c[ch->n++] = (struct child){pid, pidfd_of(pid)};
    return 0;
}

/* ---- FORK ------------------------------------------------------------------------------- */

int
tcpmsg__run_fork(struct tcpmsg_server *s)
{
    struct children ch = {0};
    int reserve = tcpmsg_sock_reserve();
    while (!tcpmsg__stopping(s)) {
        /* The watcher waits for a connection, the stop, or an executor's end. */
        if (grow(&ch) < 0) {
            tcpmsg__log(s, TCPMSG_EV_ACCEPT, -ENOMEM, -1);
            continue;
        }
        int np = ch.n + 2;
        struct pollfd *p = poll_set(&ch);
        p[ch.n] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
        p[ch.n + 1] = (struct pollfd){.fd = s->wakefd, .events = POLLIN};
        bool no_pidfd = false;
        for (int i = 0; i < ch.n; i++)
            no_pidfd |= ch.c[i].pidfd < 0;
        int n = poll(p, (nfds_t)np, no_pidfd ? 100 : -1);
        if (n < 0)
            continue;
        bool readable = p[ch.n].revents != 0;
        collect(&ch, p, NULL, NULL);
        if (!readable || tcpmsg__stopping(s))
            continue;
        int fd = take(s, &reserve);
        if (fd < 0)
            continue;
        if (ch.n >= s->cfg.max_conns) {
            refuse(s, fd);
            continue;
        }
        sigset_t old;
        pid_t pid = fork_blocked(&old);
        if (pid == 0) {
            /* The executor: serves this client and nothing else. */
            child_setup(s, &old);
            close(s->lfd);
            tcpmsg_sock_close(reserve);
            tcpmsg__serve_blocking(s, fd, NULL);
            _exit(0);
        }
        tcpmsg_sock_close(fd); /* the executor has its copy */
        if (pid < 0 || add_child(&ch, pid) < 0) {
            if (pid > 0) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
            }
            tcpmsg__log(s, TCPMSG_EV_ACCEPT, pid < 0 ? -errno : -ENOMEM, -1);
        }
    }
    noticed_stop(s);
    tcpmsg_sock_close(reserve);
    end_children(s, &ch);
    return 0;
}

/* ---- POOL ------------------------------------------------------------------------------- */

static pid_t
spawn_worker(struct tcpmsg_server *s)
{
    sigset_t old;
    pid_t pid = fork_blocked(&old);
    if (pid == 0) {
        child_setup(s, &old);
        pool_worker(s, NULL);
        _exit(0);
    }
    return pid;
}

struct replaced {
    struct tcpmsg_server *s;
    int died;
};

static void
worker_died(void *arg, int status)
{
    struct replaced *r = arg;
    r->died++;
    atomic_fetch_add(&r->s->n->workers_replaced, 1);
    tcpmsg__log(r->s, TCPMSG_EV_WORKER, status, -1);
}

int
tcpmsg__run_pool(struct tcpmsg_server *s)
{
    if (s->cfg.pool_threads) {
        int r = alloc_slots(s, s->cfg.workers);
        if (r < 0)
            return r;
        int started = 0;
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < s->nslots; i++) {
            s->slots[i].used = true;
            if (pthread_create(&s->slots[i].thread, NULL, pool_thread, &s->slots[i]) != 0)
                s->slots[i].used = false;
            else
                started++;
        }
        pthread_mutex_unlock(&s->mu);
        if (started == 0)
            return -EAGAIN;
        struct pollfd p = {.fd = s->wakefd, .events = POLLIN};
        while (!tcpmsg__stopping(s))
            poll(&p, 1, -1);
        noticed_stop(s);
        join_all(s);
        return 0;
    }

    struct children ch = {0};
    for (int i = 0; i < s->cfg.workers; i++) {
        pid_t pid = spawn_worker(s);
        if (pid < 0 || add_child(&ch, pid) < 0)
            break;
    }
    if (ch.n == 0) {
        free(ch.c);
        free(ch.p);
        return -EAGAIN;
    }
    while (!tcpmsg__stopping(s)) {
        struct pollfd *p = poll_set(&ch);
        p[ch.n] = (struct pollfd){.fd = s->wakefd, .events = POLLIN};
        bool no_pidfd = false;
        for (int i = 0; i < ch.n; i++)
            no_pidfd |= ch.c[i].pidfd < 0;
        poll(p, (nfds_t)ch.n + 1, no_pidfd ? 100 : -1);
        if (tcpmsg__stopping(s))
            break;
        /* A dead worker is replaced, so the pool keeps its size. */
        struct replaced rep = {s, 0};
        collect(&ch, p, worker_died, &rep);
        for (int i = 0; i < rep.died; i++) {
            pid_t pid = spawn_worker(s);
            if (pid > 0 && add_child(&ch, pid) < 0) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
            }
        }
    }
    noticed_stop(s);
    end_children(s, &ch);
    return 0;
}
