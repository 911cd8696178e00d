/* tcpmsg_server_handover: a new copy of the program (here this test program, started again
 * with "--copy") takes the listening socket over by systemd's protocol and says when it
 * serves; the old server then stops and its run returns; a client connected across the
 * hand-over is served by one or the other, and none is refused. A copy that exits or never
 * says it serves leaves the old server serving (-ECHILD, -ETIMEDOUT); a server with one
 * listener per EVENT worker cannot hand over (-ENOTSUP). */
#include "nettest.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define LONG_WAIT tcpmsg_deadline_in(60000)

static char self[4096];
/* argv strings the calls may not write to, as execve's prototype wants them */
static char a_copy[] = "--copy", a_false[] = "false", a_nowhere[] = "nowhere", a_sleep[] = "sleep",
            a_60[] = "60";
static struct tcpmsg_codec length4;

/* Echoes, and says which process served: "<pid>:<payload>". */
static int
tagged_echo(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    (void)user;
    char out[256];
    int n = snprintf(out, sizeof out, "%d:%.*s", (int)getpid(), (int)m->len, (const char *)m->data);
    return tcpmsg_conn_send(c, out, (size_t)n, TCPMSG_FOREVER);
}

static const struct tcpmsg_handler echo = {.on_message = tagged_echo};

/* The new copy: serves the inherited socket until a client says "stop". */
static struct tcpmsg_server *copy_server;

static int
stop_on_request(struct tcpmsg_conn *c, const struct tcpmsg_frame *m, void *user)
{
    if (m->len == 4 && memcmp(m->data, "stop", 4) == 0)
        tcpmsg_server_stop(copy_server);
    return tagged_echo(c, m, user);
}

static int
copy_main(void)
{
    int fds[1];
    char names[1][TCPMSG_FDNAME_MAX];
    if (tcpmsg_sock_inherited(fds, names, 1) != 1 || strcmp(names[0], "handover") != 0)
        return 3;
    struct tcpmsg_server_config cfg = {.listen_fd = fds[0], .workers = 1};
    struct tcpmsg_handler h = {.on_message = stop_on_request};
    if (tcpmsg_server_create(&copy_server, &cfg, &h) != 0)
        return 4;
    int r = tcpmsg_server_run(copy_server); /* says "serving" to the old one first */
    tcpmsg_server_destroy(copy_server);
    return r == 0 ? 0 : 5;
}

START_TEST(a_copy_takes_over)
{
    struct tcpmsg_server_config cfg = {.host = "127.0.0.1", .workers = 2, .handover = true};
    struct tcpmsg_server *s = nt_server(&cfg, &echo);
    int port = tcpmsg_server_port(s);
    struct tcpmsg_conn *before = nt_client(s, &length4);
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_send(before, "one", 3, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_recv(before, &f, LONG_WAIT), 0);
    char *argv[] = {self, a_copy, NULL};
    int pid = tcpmsg_server_handover(s, self, argv, 60000);
    ck_assert_msg(pid > 0, "handover: %s", tcpmsg_errname(pid));
    ck_assert_int_eq(tcpmsg_server_wait(s), 0); /* the old one stopped by itself */
    /* The connection open across it was ended after its answers; a new one is the copy's. */
    ck_assert_int_eq(tcpmsg_conn_recv(before, &f, LONG_WAIT), TCPMSG_EOF);
    tcpmsg_conn_close(before, TCPMSG_NOWAIT);
    struct tcpmsg_conn *after;
    ck_assert_int_eq(tcpmsg_conn_connect(&after, "127.0.0.1", nt_service(port), &length4, NULL,
                                         LONG_WAIT),
                     0);
    ck_assert_int_eq(tcpmsg_conn_send(after, "stop", 4, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_recv(after, &f, LONG_WAIT), 0);
    char want[64];
    int n = snprintf(want, sizeof want, "%d:stop", pid);
    ck_assert_uint_eq(f.len, (size_t)n);
    ck_assert_int_eq(memcmp(f.data, want, f.len), 0);
    tcpmsg_conn_close(after, LONG_WAIT);
    tcpmsg_server_destroy(s);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the copy's status: %d", st);
}
END_TEST

START_TEST(a_copy_that_fails_changes_nothing)
{
    struct tcpmsg_server_config cfg = {.host = "127.0.0.1", .workers = 1};
    struct tcpmsg_server *s = nt_server(&cfg, &echo);
    char *f_argv[] = {a_false, NULL};
    ck_assert_int_eq(tcpmsg_server_handover(s, "/bin/false", f_argv, 60000), -ECHILD);
    char *n_argv[] = {a_nowhere, NULL};
    ck_assert_int_eq(tcpmsg_server_handover(s, "/nonexistent/program", n_argv, 60000), -ECHILD);
    char *s_argv[] = {a_sleep, a_60, NULL};
    ck_assert_int_eq(tcpmsg_server_handover(s, "/bin/sleep", s_argv, 100), -ETIMEDOUT);
    /* Still serving. */
    struct tcpmsg_conn *c = nt_client(s, &length4);
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_conn_send(c, "x", 1, LONG_WAIT), 0);
    ck_assert_int_eq(tcpmsg_conn_recv(c, &f, LONG_WAIT), 0);
    tcpmsg_conn_close(c, LONG_WAIT);
    nt_server_end(s);
    errno = 0;
    ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1); /* every copy was reaped */
    ck_assert_int_eq(errno, ECHILD);
}
END_TEST

START_TEST(one_listener_per_worker_cannot_be_passed_on)
{
    struct tcpmsg_server_config cfg = {.host = "127.0.0.1", .workers = 2};
    struct tcpmsg_server *s = nt_server(&cfg, &echo);
    char *argv[] = {self, a_copy, NULL};
    ck_assert_int_eq(tcpmsg_server_handover(s, self, argv, 1000), -ENOTSUP);
    ck_assert_int_eq(tcpmsg_server_handover(s, self, NULL, 1000), -EINVAL);
    ck_assert_int_eq(tcpmsg_server_handover(NULL, self, argv, 1000), -EINVAL);
    nt_server_end(s);
}
END_TEST

int
main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--copy") == 0)
        return copy_main();
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 1;
    self[n] = '\0';
    tcpmsg_codec_init_length(&length4, NULL);
    Suite *su = suite_create("handover");
    TCase *t = tcase_create("handover");
    tcase_add_checked_fixture(t, nt_fd_setup, nt_fd_teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, a_copy_takes_over);
    tcase_add_test(t, a_copy_that_fails_changes_nothing);
    tcase_add_test(t, one_listener_per_worker_cannot_be_passed_on);
    suite_add_tcase(su, t);
    return tu_run(su);
}
