/* peer_nng: an echo server written idiomatically on NNG: a REP socket in raw mode, which
 * serves requests as they come, many in flight per connection (cooked REP answers one at a
 * time per context); each message goes back as it came, with its header (the backtrace
 * that routes the reply), the message object moved from receive to send. NNG frames by
 * itself (SP over TCP), so its clients are loadgen_mq's. Usage: peer_nng PORT (0: any;
 * prints the port). */
#define _GNU_SOURCE
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static nng_socket sock;

static void
on_term(int sig)
{
    (void)sig;
    _exit(0); /* nng_close is not async-signal-safe; the kernel closes the sockets */
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: peer_nng PORT\n");
        return 2;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    int r = nng_rep0_open_raw(&sock);
    if (r == 0) /* NNG refuses messages over 1 MiB by default; 0: no limit (as the others) */
        r = nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, 0);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%s", argv[1]);
    nng_listener l;
    if (r == 0)
        r = nng_listen(sock, url, &l, 0);
    int port = 0;
    if (r == 0)
        r = nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port);
    if (r != 0) {
        fprintf(stderr, "peer_nng: %s: %s\n", url, nng_strerror(r));
        return 1;
    }
    printf("%d\n", port);
    fflush(stdout);
    for (;;) {
        nng_msg *m;
        if ((r = nng_recvmsg(sock, &m, 0)) != 0)
            break;
        if ((r = nng_sendmsg(sock, m, 0)) != 0) {
            nng_msg_free(m);
            break;
        }
    }
    fprintf(stderr, "peer_nng: %s\n", nng_strerror(r));
    return 1;
}
