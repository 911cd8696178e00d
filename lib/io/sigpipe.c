/* A write that OpenSSL makes on a socket it runs on (kTLS: its socket BIO calls write(),
 * without MSG_NOSIGNAL) would raise SIGPIPE on a connection the peer broke, and the library
 * promises no SIGPIPE. Around such calls SIGPIPE is blocked in the calling thread, and one
 * it raised is taken back before the mask is restored: the call returns EPIPE instead. The
 * only file of the io layer that touches signals (tests/tools/check_layers.py). */
#include "io_internal.h"

#include <signal.h>
#include <time.h>

_Static_assert(sizeof(sigset_t) <= sizeof(((struct tcpmsg__nosigpipe *)0)->old),
               "struct tcpmsg__nosigpipe holds a sigset_t");

void
tcpmsg__nosigpipe_enter(struct tcpmsg__nosigpipe *g)
{
    g->blocked = false;
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
        return; /* the program ignores it already: nothing to do */
    sigset_t pipe, pending, *old = (sigset_t *)(void *)g->old;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    if (pthread_sigmask(SIG_BLOCK, &pipe, old) != 0)
        return;
    g->blocked = true;
    /* One already pending (raised elsewhere, blocked by the caller) is not ours to take. */
    g->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
}

void
tcpmsg__nosigpipe_leave(struct tcpmsg__nosigpipe *g)
{
    if (!g->blocked)
        return;
    sigset_t pipe, pending;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    if (!g->was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
        const struct timespec now = {0, 0};
        (void)sigtimedwait(&pipe, NULL, &now);
    }
    (void)pthread_sigmask(SIG_SETMASK, (sigset_t *)(void *)g->old, NULL);
}
