/* The blocking models: ITERATIVE, THREAD, FORK and POOL (processes or threads). Each serves a
 * connection with tcpmsg__serve_blocking; they differ in who accepts and who serves. */
#include "server_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
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
        if (n > 0 && p[1].revents)
            tcpmsg__notice_stop(s);
        else if (n > 0)
            return true;
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
noticed_stop(struct tcpmsg_server *s)
{
    tcpmsg__drain_deadline(s); /* fixed now, unless a connection noticed first */
    tcpmsg__log(s, TCPMSG_EV_STOP, 0, -1);
}

/* ---- ITERATIVE -------------------------------------------------------------------------- */

int
tcpmsg__run_iterative(struct tcpmsg_server *s)
{
    int reserve = tcpmsg_sock_reserve();
    while (wait_listener(s)) {
        int fd = take(s, &reserve);
        if (fd >= 0 && tcpmsg__admit(s, fd)) {
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
        ts.tv_nsec += 50L * 1000000;
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

static void *
conn_thread(void *arg)
{
    struct tcpmsg__slot *t = arg;
    struct tcpmsg_server *s = t->s;
    tcpmsg__serve_blocking(s, t->fd, t);
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
        if (fd < 0 || !tcpmsg__admit(s, fd))
            continue;
        pthread_mutex_lock(&s->mu);
        /* admit let it in: fewer than max_conns connections are held, so a slot is free or
         * about to be (a thread gives the connection slot back just before it ends). */
        struct tcpmsg__slot *free_slot = NULL;
        for (;;) {
            reap_threads(s);
            for (int i = 0; i < s->nslots && !free_slot; i++)
                if (!s->slots[i].used)
                    free_slot = &s->slots[i];
            if (free_slot)
                break;
            pthread_cond_wait(&s->cv, &s->mu);
        }
        free_slot->used = true;
        free_slot->done = false;
        free_slot->fd = fd;
        if (pthread_create(&free_slot->thread, NULL, conn_thread, free_slot) != 0) {
            free_slot->used = false;
            free_slot->fd = -1;
            free_slot = NULL;
        }
        pthread_mutex_unlock(&s->mu);
        if (!free_slot) { /* no thread could be created */
            tcpmsg__log(s, TCPMSG_EV_ACCEPT, -EAGAIN, fd);
            tcpmsg_sock_close(fd);
            tcpmsg__release(s);
        }
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
    struct epoll_event ce = {.events = EPOLLIN, .data.u32 = 1};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->lfd, &le) < 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, s->wakefd, &we) < 0 ||
        (s->in_child && epoll_ctl(ep, EPOLL_CTL_ADD, tcpmsg__child.wakefd, &ce) < 0)) {
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
        if (stop) {
            tcpmsg__notice_stop(s);
            break;
        }
        if (!accept_now)
            continue;
        int fd = take(s, &reserve);
        if (fd < 0 || !tcpmsg__admit(s, fd))
            continue;
        /* POOL process: the flag says this worker holds a slot, so that the watcher gives it
         * back if the worker dies holding it; whoever clears the flag (atomic exchange)
         * gives the slot back, so it is given back once. A worker killed between admit and
         * here leaks a slot at worst. */
        if (s->slot_flag)
            atomic_store(s->slot_flag, 1);
        tcpmsg__serve_blocking(s, fd, slot); /* gives the slot back */
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

#ifdef TCPMSG_COVERAGE
void __gcov_dump(void); /* libgcov, in the coverage build only */
#endif

/* The end of a worker process. _exit, not exit: the parent's atexit handlers and stdio
 * buffers (copies of the application's) must not run twice. */
static _Noreturn void
worker_exit(int status)
{
#ifdef TCPMSG_COVERAGE
    __gcov_dump(); /* _exit skips gcov's own exit handler */
#endif
    _exit(status);
}

/* In a worker process, SIGTERM stops this worker as the server's stop does (a service
 * manager signals the whole group, and an operator may signal one worker): the frames that
 * arrived are handled, their replies written, the connection ended, the worker exits. The
 * handler writes the worker's own eventfd, which its waits watch beside the server's; for a
 * dialog handler blocked in recv, it also shuts the reading side of the connection (both
 * calls are async-signal-safe). */
static void
child_on_term(int sig)
{
    (void)sig;
    int e = errno;
    tcpmsg__child.stop = 1;
    int fd = tcpmsg__child.fd;
    if (fd >= 0 && tcpmsg__child.dialog)
        shutdown(fd, SHUT_RD);
    uint64_t one = 1;
    ssize_t r = write(tcpmsg__child.wakefd, &one, sizeof one);
    (void)r;
    errno = e;
}

/* Runs in the child with every signal blocked (fork_blocked): its own stop eventfd and
 * SIGTERM handler exist before any signal can be delivered. */
static void
child_setup(struct tcpmsg_server *s, const sigset_t *restore)
{
    s->in_child = true;
    tcpmsg__child.fd = -1;
    tcpmsg__child.stop = 0;
    tcpmsg__child.dialog = s->h.dialog != NULL;
    tcpmsg__child.wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (tcpmsg__child.wakefd < 0)
        worker_exit(EXIT_FAILURE); /* before any connection is taken: the parent logs and replaces */
    struct sigaction sa = {.sa_handler = child_on_term};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    (void)signal(SIGINT, SIG_IGN); /* a terminal's ^C reaches the whole group: the parent decides */
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
    int index; /* its entry in the slot table */
};

struct children {
    struct child *c;
    struct pollfd *p; /* one per child, then room for 2 more */
    int n, cap;
    _Atomic int *table; /* MAP_SHARED, one flag per child index: "holds a connection slot" */
    bool *taken;        /* the watcher's own: index given to a live child */
    int size;           /* entries of both */
};

/* The table of slot flags shared with the children (FORK: max_conns entries, POOL: one per
 * worker). */
static int
table_open(struct children *ch, int size)
{
    ch->table = mmap(NULL, (size_t)size * sizeof *ch->table, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ch->table == MAP_FAILED) {
        ch->table = NULL;
        return -ENOMEM;
    }
    ch->taken = calloc((size_t)size, sizeof *ch->taken);
    if (!ch->taken) {
        munmap(ch->table, (size_t)size * sizeof *ch->table);
        ch->table = NULL;
        return -ENOMEM;
    }
    for (int i = 0; i < size; i++)
        atomic_init(&ch->table[i], 0);
    ch->size = size;
    return 0;
}

static void
children_free(struct children *ch)
{
    if (ch->table)
        munmap(ch->table, (size_t)ch->size * sizeof *ch->table);
    free(ch->taken);
    free(ch->c);
    free(ch->p);
}

/* The poll set: each child's pidfd, followed by `extra` entries for the caller. */
static struct pollfd *
poll_set(struct children *ch)
{
    for (int i = 0; i < ch->n; i++)
        ch->p[i] = (struct pollfd){.fd = ch->c[i].pidfd, .events = POLLIN};
    return ch->p;
}

/* Collects exited children (pidfds that poll set `p` saw readable, or any child without a
 * pidfd that waitpid reports); calls on_exit with each one and its wait status. */
static void
collect(struct children *ch, struct pollfd *p, void (*on_exit)(void *, const struct child *, int),
        void *arg)
{
    for (int i = 0; i < ch->n;) {
        struct child k = ch->c[i];
        int st = 0;
        if (k.pidfd >= 0) {
            if (!p || !(p[i].revents & POLLIN)) {
                i++;
                continue;
            }
            while (waitpid(k.pid, &st, 0) < 0 && errno == EINTR)
                ;
            close(k.pidfd);
        } else if (waitpid(k.pid, &st, WNOHANG) != k.pid) {
            i++;
            continue;
        }
        ch->n--;
        ch->c[i] = ch->c[ch->n];
        if (p)
            p[i] = p[ch->n];
        on_exit(arg, &k, st);
    }
}

struct gone_ctx {
    struct tcpmsg_server *s;
    struct children *ch;
};

/* A child ended: the slot it still held (it died holding it) is given back, and its index
 * is free again. */
static void
child_gone(void *arg, const struct child *k, int status)
{
    const struct gone_ctx *g = arg;
    (void)status;
    if (atomic_exchange(&g->ch->table[k->index], 0))
        tcpmsg__release(g->s);
    g->ch->taken[k->index] = false;
}

/* Stops the children: the drain time to finish, then SIGKILL; reaps them all. A child keeps
 * its own drain deadline (it resets what it could not write, then exits): the watcher's
 * SIGKILL comes a grace period later, for a child stuck in a handler, so that it never cuts
 * short a child that was about to end its connections itself. */
static void
end_children(struct tcpmsg_server *s, struct children *ch)
{
    int64_t kill_at = s->drain_deadline + TCPMSG__KILL_GRACE_MS;
    /* The stop eventfd reaches every child; a dialog handler blocked in recv also needs its
     * reading side shut, which SIGTERM does in the child. */
    for (int i = 0; i < ch->n && s->h.dialog; i++)
        kill(ch->c[i].pid, SIGTERM);
    bool killed = false;
    while (ch->n > 0) {
        struct pollfd *p = poll_set(ch);
        int left = tcpmsg_deadline_left(kill_at);
        if (left == 0 && !killed) {
            for (int i = 0; i < ch->n; i++)
                kill(ch->c[i].pid, SIGKILL);
            killed = true;
        }
        poll(p, (nfds_t)ch->n, killed ? 50 : (left < 50 ? left : 50));
        struct gone_ctx g = {s, ch};
        collect(ch, p, child_gone, &g);
    }
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
add_child(struct children *ch, pid_t pid, int index)
{
    if (grow(ch) < 0)
        return -ENOMEM;
    ch->c[ch->n++] = (struct child){pid, pidfd_of(pid), index};
    ch->taken[index] = true;
    return 0;
}

/* Polls the children's pidfds and `extra` more entries (set by the caller after poll_set)
 * until one is ready; a stop eventfd among them marks the server stopping. */
static int
wait_children(struct tcpmsg_server *s, struct children *ch, int extra)
{
    bool no_pidfd = false;
    for (int i = 0; i < ch->n; i++)
        no_pidfd |= ch->c[i].pidfd < 0;
    int n = poll(ch->p, (nfds_t)ch->n + (nfds_t)extra, no_pidfd ? 100 : -1);
    if (n > 0 && ch->p[ch->n + extra - 1].revents)
        tcpmsg__notice_stop(s); /* the last entry is the stop eventfd */
    return n;
}

/* ---- FORK ------------------------------------------------------------------------------- */

/* A free index of the slot table, -1 if none. */
static int
free_index(const struct children *ch)
{
    for (int i = 0; i < ch->size; i++)
        if (!ch->taken[i])
            return i;
    return -1;
}

/* The watcher takes the connection slot when it accepts; the executor gives it back just
 * before it closes the connection, or the watcher does when it reaps an executor that died
 * holding it (its flag in the table says so), so that a crash cannot leak one. */
int
tcpmsg__run_fork(struct tcpmsg_server *s)
{
    struct children ch = {0};
    /* Room for max_conns executors and as many that gave their slot back and are still
     * ending: an index stays taken until its executor is reaped. */
    if (table_open(&ch, 2 * s->cfg.max_conns + 64) < 0)
        return -ENOMEM;
    int reserve = tcpmsg_sock_reserve();
    while (!tcpmsg__stopping(s)) {
        /* The watcher waits for a connection, the stop, or an executor's end. */
        if (grow(&ch) < 0) {
            tcpmsg__log(s, TCPMSG_EV_ACCEPT, -ENOMEM, -1);
            continue;
        }
        struct pollfd *p = poll_set(&ch);
        p[ch.n] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
        p[ch.n + 1] = (struct pollfd){.fd = s->wakefd, .events = POLLIN};
        if (wait_children(s, &ch, 2) < 0)
            continue;
        bool readable = p[ch.n].revents != 0;
        struct gone_ctx g = {s, &ch};
        collect(&ch, p, child_gone, &g);
        if (!readable || tcpmsg__stopping(s))
            continue;
        int fd = take(s, &reserve);
        if (fd < 0 || !tcpmsg__admit(s, fd))
            continue;
        int index = free_index(&ch);
        if (index < 0) { /* that many executors still ending: refused as over the limit */
            tcpmsg__release(s);
            atomic_fetch_add(&s->n->refused, 1);
            tcpmsg__log(s, TCPMSG_EV_REFUSED, TCPMSG_EFULL, fd);
            tcpmsg_sock_close(fd);
            continue;
        }
        atomic_store(&ch.table[index], 1);
        sigset_t old;
        pid_t pid = fork_blocked(&old);
        if (pid == 0) {
            /* The executor: serves this client and nothing else. */
            child_setup(s, &old);
            /* ch lives in this frame, which the executor never leaves (worker_exit). */
            // cppcheck-suppress autoVariables
            s->slot_flag = &ch.table[index];
            close(s->lfd);
            tcpmsg_sock_close(reserve);
            tcpmsg__serve_blocking(s, fd, NULL); /* gives the slot back */
            worker_exit(0);
        }
        int e = errno;
        tcpmsg_sock_close(fd); /* the executor has its copy */
        if (pid < 0 || add_child(&ch, pid, index) < 0) {
            if (pid > 0) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
            }
            if (atomic_exchange(&ch.table[index], 0))
                tcpmsg__release(s);
            tcpmsg__log(s, TCPMSG_EV_ACCEPT, pid < 0 ? -e : -ENOMEM, -1);
        }
    }
    noticed_stop(s);
    tcpmsg_sock_close(reserve);
    end_children(s, &ch);
    children_free(&ch);
    return 0;
}

/* ---- POOL ------------------------------------------------------------------------------- */

static pid_t
spawn_worker(struct tcpmsg_server *s, struct children *ch, int index)
{
    sigset_t old;
    pid_t pid = fork_blocked(&old);
    if (pid == 0) {
        child_setup(s, &old);
        s->slot_flag = &ch->table[index];
        pool_worker(s, NULL);
        worker_exit(0);
    }
    return pid;
}

struct replaced {
    struct gone_ctx g;
    int *died; /* table indexes of the workers to replace (n of them, at most workers) */
    int n;
};

static void
worker_died(void *arg, const struct child *k, int status)
{
    struct replaced *r = arg;
    child_gone(&r->g, k, status);
    r->died[r->n++] = k->index;
    atomic_fetch_add(&r->g.s->n->workers_replaced, 1);
    tcpmsg__log(r->g.s, TCPMSG_EV_WORKER, status, -1);
}

static int
run_pool_threads(struct tcpmsg_server *s)
{
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
        if (poll(&p, 1, -1) > 0)
            tcpmsg__notice_stop(s);
    noticed_stop(s);
    join_all(s);
    return 0;
}

int
tcpmsg__run_pool(struct tcpmsg_server *s)
{
    if (s->cfg.pool_threads)
        return run_pool_threads(s);

    /* One slot flag per worker, at the worker's index (a replacement takes its place). */
    int nw = s->cfg.workers;
    struct children ch = {0};
    int *died = malloc((size_t)nw * sizeof *died);
    if (!died || table_open(&ch, nw) < 0) {
        free(died);
        return -ENOMEM;
    }
    for (int i = 0; i < nw; i++) {
        pid_t pid = spawn_worker(s, &ch, i);
        if (pid < 0 || add_child(&ch, pid, i) < 0)
            break;
    }
    int result = ch.n == 0 ? -EAGAIN : 0;
    while (ch.n > 0 && !tcpmsg__stopping(s)) {
        struct pollfd *p = poll_set(&ch);
        p[ch.n] = (struct pollfd){.fd = s->wakefd, .events = POLLIN};
        wait_children(s, &ch, 1);
        if (tcpmsg__stopping(s))
            break;
        /* A dead worker is replaced in its place of the table, so the pool keeps its size. */
        struct replaced rep = {{s, &ch}, died, 0};
        collect(&ch, p, worker_died, &rep);
        for (int i = 0; i < rep.n; i++) {
            pid_t pid = spawn_worker(s, &ch, rep.died[i]);
            if (pid > 0 && add_child(&ch, pid, rep.died[i]) < 0) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
            }
        }
    }
    if (result == 0) {
        noticed_stop(s);
        end_children(s, &ch);
    }
    children_free(&ch);
    free(died);
    return result;
}
