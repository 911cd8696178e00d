/* Helpers of the network test programs: loopback only, port 0 only, no sleeps. */
#ifndef TCPMSG_NETTEST_H
#define TCPMSG_NETTEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"
#include "tcpmsg.h"

/* The server models every server suite loops over. */
struct nt_model {
    const char *name;
    enum tcpmsg_model model;
    bool pool_threads;
    int workers;
    bool concurrent; /* serves many connections at once (beyond `workers`) */
    bool processes;  /* handlers run in child processes */
};
/* The models to test: every one, or those TCPMSG_TEST_MODELS names (comma-separated: then
 * the restriction is said on stderr, with `who`). Returns how many; *out their table. */
int nt_models(const char *who, const struct nt_model **out);

/* Open file descriptors of this process (/proc/self/fd). */
int nt_fd_count(void);
/* Checked fixture: every test must leave as many fds open as it found. */
void nt_fd_setup(void);
void nt_fd_teardown(void);

/* A listener on host (e.g. "127.0.0.1", "::1", NULL = wildcard) and port 0; *port
 * receives the port chosen and *service its text (a static buffer per call slot 0..3). */
int nt_listen(const char *host, int *port);
const char *nt_service(int port);

/* A connected loopback pair over host ("127.0.0.1" or "::1"). */
void nt_pair(const char *host, int *client, int *server);
/* The same with the kernel's smallest send and receive buffers on both ends, set before
 * the handshake: every large write is partial. */
void nt_pair_tiny(const char *host, int *client, int *server);

/* Deterministic test bytes; the letters variant never contains '\r' or '\n'. */
void nt_fill(uint8_t *p, size_t n, uint32_t seed);
void nt_fill_letters(uint8_t *p, size_t n, uint32_t seed);

/* A thread running fn(arg); nt_join returns what fn returned. */
struct nt_thread {
    pthread_t t;
};
void nt_start(struct nt_thread *t, void *(*fn)(void *), void *arg);
void *nt_join(struct nt_thread *t);

/* Writes everything with plain blocking send(MSG_NOSIGNAL); false on error. */
bool nt_send_all(int fd, const void *p, size_t n);
/* Reads exactly n bytes; false on error or end of stream. */
bool nt_recv_all(int fd, void *p, size_t n);
/* Reads until end of stream; returns the byte count, or -errno. */
long nt_drain(int fd);

/* A listener nobody accepts from whose queue is full: connecting to it never completes
 * (the kernel drops the SYNs), the loopback stand-in for an address that does not
 * answer. *fds receives the connections that filled the queue (close them after). */
struct nt_blackhole {
    int lfd;
    int port;
    int fill[8];
    int nfill;
};
void nt_blackhole_open(struct nt_blackhole *b, const char *host);
void nt_blackhole_close(struct nt_blackhole *b);

/* A port on host on which connections are refused (a bound socket that does not listen;
 * keep *holder open for as long as the port must stay refused). */
int nt_refusing_port(const char *host, int *holder);

/* Polls cond(arg) every 2 ms until it holds (true) or 20 s pass (false): waiting for an
 * event another thread or process makes, never timing anything. */
bool nt_eventually(bool (*cond)(void *), void *arg);
/* A started server (tcpmsg_server_create + start, asserted); its end: stop, wait (0
 * asserted), destroy. A client connection to it on 127.0.0.1 with codec (60 s deadline). */
struct tcpmsg_server *nt_server(const struct tcpmsg_server_config *cfg,
                                const struct tcpmsg_handler *h);
void nt_server_end(struct tcpmsg_server *s);
struct tcpmsg_conn *nt_client(struct tcpmsg_server *s, const struct tcpmsg_codec *codec);

/* TCPMSG_TEST_KTLS=1: every TLS context a TLS test makes asks for kTLS (the engine then runs
 * on the socket; on a kernel without kTLS that is the fallback). The TLS suites run twice in
 * CTest, the second time so (test_tls_ktls, test_tls_server_ktls). */
bool nt_ktls(void);
static inline int
nt_tls_ctx_create(struct tcpmsg_tls_ctx **out, enum tcpmsg_tls_role role,
                  const struct tcpmsg_tls_config *cfg, char *why, size_t why_len)
{
    struct tcpmsg_tls_config c;
    if (cfg) {
        c = *cfg;
        c.ktls = c.ktls || nt_ktls();
    }
    return tcpmsg_tls_ctx_create(out, role, cfg ? &c : NULL, why, why_len);
}

#endif
