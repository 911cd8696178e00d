/* Connecting by a NAME that resolves to several addresses, where the first refuses.
 *
 * The machine's /etc/hosts is not ours to change, so the program moves into a private mount
 * namespace and bind-mounts its own hosts file there, visible to this process and its
 * children only. That needs CAP_SYS_ADMIN (root, as in CI); without it the program exits
 * with 77, which CTest reports as "Skipped" (never silently), and test_sock still covers
 * the same logic with an explicit address list. */
#include "nettest.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#define NAME "multi.tcpmsg.test"

static int
private_hosts(void)
{
    if (unshare(CLONE_NEWNS) < 0)
        return -errno;
    /* Make every mount private first, or the bind mount would propagate to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return -errno;
    char path[] = "/tmp/tcpmsg-hosts-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -errno;
    const char text[] = "::1 " NAME "\n127.0.0.1 " NAME "\n";
    if (write(fd, text, sizeof text - 1) != (ssize_t)(sizeof text - 1))
        return -EIO;
    close(fd);
    int r = mount(path, "/etc/hosts", NULL, MS_BIND, NULL) < 0 ? -errno : 0;
    unlink(path); /* the mount keeps the file alive */
    return r;
}

START_TEST(first_address_refuses)
{
    struct tcpmsg_addr a[4];
    ck_assert_int_eq(tcpmsg_addr_resolve(NAME, "1", TCPMSG_FAMILY_ANY, 0, a, 4), 2);
    /* Whatever order the resolver prefers, make its first choice refuse and its second
     * listen, on one port. */
    char first[64], second[64];
    tcpmsg_addr_set_port(&a[0], 0);
    tcpmsg_addr_set_port(&a[1], 0);
    int n1 = tcpmsg_addr_format(&a[0], first, sizeof first);
    int n2 = tcpmsg_addr_format(&a[1], second, sizeof second);
    first[n1 - 2] = '\0'; /* drop ":0" */
    second[n2 - 2] = '\0';
    int port;
    int lfd = nt_listen(second, &port);
    tcpmsg_addr_set_port(&a[0], (unsigned)port);
    int holder = socket(a[0].u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(bind(holder, &a[0].u.sa, a[0].len), 0); /* bound, not listening */

    int delays[] = {-1, 0};
    for (int i = 0; i < 2; i++) {
        struct tcpmsg_connect_opts o = {.attempt_delay_ms = delays[i]};
        int c = tcpmsg_sock_connect(NAME, nt_service(port), &o, tcpmsg_deadline_in(10000));
        ck_assert_int_ge(c, 0);
        struct tcpmsg_addr peer;
        ck_assert_int_eq(tcpmsg_addr_peer(c, &peer), 0);
        tcpmsg_addr_set_port(&a[1], (unsigned)port);
        ck_assert(tcpmsg_addr_equal(&peer, &a[1]));
        int s = tcpmsg_sock_accept(lfd, NULL, NULL, tcpmsg_deadline_in(10000));
        ck_assert_int_ge(s, 0);
        close(s);
        close(c);
    }
    /* Restricted to the refusing family: refused. */
    struct tcpmsg_connect_opts only = {.family = (enum tcpmsg_family)tcpmsg_addr_family(&a[0])};
    ck_assert_int_eq(tcpmsg_sock_connect(NAME, nt_service(port), &only, tcpmsg_deadline_in(10000)),
                     -ECONNREFUSED);
    close(holder);
    close(lfd);
}
END_TEST

int
main(void)
{
    int r = private_hosts();
    if (r < 0) {
        fprintf(stderr,
                "test_multiaddr: skipped: cannot set up a private /etc/hosts (%s); "
                "run as root to include this test\n",
                tcpmsg_strerror(r));
        return 77;
    }
    Suite *s = suite_create("multiaddr");
    TCase *t = tcase_create("multiaddr");
    tcase_add_checked_fixture(t, nt_fd_setup, nt_fd_teardown);
    tcase_add_test(t, first_address_refuses);
    suite_add_tcase(s, t);
    return tu_run(s);
}
