/* Once the kernel encrypts a connection's records (kTLS), OpenSSL's socket BIO writes them
 * with write(), which raises SIGPIPE on a connection the peer broke, and the library
 * promises no SIGPIPE. Around such calls SIGPIPE is blocked in the calling thread, and one
 * they raised is taken back before the mask is restored: the call sees EPIPE instead. The
 * only file of the io layer that touches signals (tests/tools/check_layers.py). */
#include "io_internal.h"

#include <signal.h>
#include <time.h>

_Static_assert(sizeof(sigset_t) <= sizeof(((struct tcpmsg__nosigpipe *)0)->old),
               "struct tcpmsg__nosigpipe holds a sigset_t");

void
tcpmsg__nosigpipe_enter(struct tcpmsg__nosigpipe *g)
{
    sigset_t pipe, *old = (sigset_t *)(void *)g->old;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    /* A thread that blocks SIGPIPE itself keeps what it gets. Otherwise none is pending
     * now (it would have been delivered, or discarded if ignored): one pending at the end
     * was raised by the call. */
    g->blocked = pthread_sigmask(SIG_BLOCK, &pipe, old) == 0 && sigismember(old, SIGPIPE) == 0;
}

void
tcpmsg__nosigpipe_leave(struct tcpmsg__nosigpipe *g)
{
    if (!g->blocked)
        return;
    sigset_t pipe, pending;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
        const struct timespec now = {0, 0};
        (void)sigtimedwait(&pipe, NULL, &now);
    }
    (void)pthread_sigmask(SIG_SETMASK, (sigset_t *)(void *)g->old, NULL);
}
