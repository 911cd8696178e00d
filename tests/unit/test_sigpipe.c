/* lib/io/sigpipe.c: SIGPIPE held off around a write() on a broken socket (what OpenSSL's
 * socket BIO does once the kernel encrypts, kTLS), with the default disposition that would
 * end this process; the thread's mask comes back as it was, and a SIGPIPE the caller's own
 * mask holds is left alone. */
#include "testutil.h"

#include "io/io_internal.h"

#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

/* A stream socket whose peer has gone: write() on it fails with EPIPE and raises SIGPIPE. */
static int
broken_socket(void)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    return sv[0];
}

static bool
pending_pipe(void)
{
    sigset_t p;
    ck_assert_int_eq(sigpending(&p), 0);
    return sigismember(&p, SIGPIPE) == 1;
}

static bool
blocked_pipe(void)
{
    sigset_t m;
    ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, NULL, &m), 0);
    return sigismember(&m, SIGPIPE) == 1;
}

START_TEST(a_broken_write_raises_nothing)
{
    signal(SIGPIPE, SIG_DFL);
    int fd = broken_socket();
    for (int i = 0; i < 3; i++) {
        struct tcpmsg__nosigpipe g = {{0}, false};
        tcpmsg__nosigpipe_enter(&g);
        ck_assert(blocked_pipe());
        errno = 0;
        ck_assert_int_eq(write(fd, "x", 1), -1);
        ck_assert_int_eq(errno, EPIPE);
        tcpmsg__nosigpipe_leave(&g);
        ck_assert(!blocked_pipe()); /* the mask as it was */
        ck_assert(!pending_pipe());
    }
    /* Nothing to take back when the call raised nothing. */
    struct tcpmsg__nosigpipe g = {{0}, false};
    tcpmsg__nosigpipe_enter(&g);
    tcpmsg__nosigpipe_leave(&g);
    ck_assert(!blocked_pipe());
    close(fd);
}
END_TEST

START_TEST(a_caller_that_blocks_sigpipe_keeps_its_own)
{
    signal(SIGPIPE, SIG_DFL);
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &pipe, NULL), 0);
    int fd = broken_socket();
    struct tcpmsg__nosigpipe g = {{0}, false};
    tcpmsg__nosigpipe_enter(&g);
    ck_assert_int_eq(write(fd, "x", 1), -1);
    tcpmsg__nosigpipe_leave(&g);
    ck_assert(blocked_pipe());
    ck_assert(pending_pipe()); /* the caller's to take, under the caller's own mask */
    const struct timespec now = {0, 0};
    ck_assert_int_eq(sigtimedwait(&pipe, NULL, &now), SIGPIPE);
    ck_assert_int_eq(pthread_sigmask(SIG_UNBLOCK, &pipe, NULL), 0);
    close(fd);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("sigpipe");
    TCase *t = tcase_create("sigpipe");
    tcase_add_test(t, a_broken_write_raises_nothing);
    tcase_add_test(t, a_caller_that_blocks_sigpipe_keeps_its_own);
    suite_add_tcase(s, t);
    return tu_run(s);
}
