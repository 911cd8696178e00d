/* What the example programs share: messages and exit statuses, option values, the log
 * line of a server, and stdin cut into the frames to send. Only the public API is used, so
 * a program and this file can be copied out and built with
 *     cc prog.c common.c $(pkg-config --cflags --libs tcpmsg)
 *
 * Conventions of every program: data on stdout, diagnostics on stderr (one line each),
 * exit status 0 on success, 1 on a runtime failure, 2 on bad usage. */
#ifndef TCPMSG_EXAMPLES_COMMON_H
#define TCPMSG_EXAMPLES_COMMON_H

#include <tcpmsg.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* Remembers the program's name (argv[0] without its directory) for messages. */
void tool_init(const char *argv0);
const char *tool_name(void);

/* "name: message" on stderr. die exits 1, usage exits 2 (and points to --help). */
void tool_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void tool_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void tool_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* For getopt_long's ':' (a missing value; optstrings start with ':') and '?' (unknown). */
_Noreturn void tool_bad_option(int opt, char **argv);
/* Prints "name (libtcpmsg) X.Y.Z" on stdout and exits 0. */
_Noreturn void tool_version(void);

/* Option values; each exits with status 2 and names the option when the text is invalid. */
uint64_t tool_uint(const char *opt, const char *text, uint64_t min, uint64_t max);
int tool_seconds_ms(const char *opt, const char *text); /* decimal seconds, as ms (>= 0) */
/* A framing specification (tcpmsg_codec_parse); max 0: the framing's default limit. */
void tool_framing(const char *opt, const char *spec, uint64_t max, struct tcpmsg_codec *out);

/* Prints the port a server listens on, alone on a line of stdout, and flushes: a script
 * started the server with port 0 reads the port chosen from there. */
void tool_print_port(int port);
/* A server's log callback: one line per connection opened or closed, with the 4-tuple. */
void tool_log_server(void *user, enum tcpmsg_server_event ev, int code, const char *tuple);

/* Standard input as frames to send: one per line ("\n" or "\r\n" removed), or with raw
 * the whole input as one frame. */
struct tool_input {
    struct tcpmsg_conn *lines; /* a connection without a socket: the line codec's buffer */
    bool raw, eof, taken;
    uint8_t *all; /* raw: the whole input */
    size_t all_len, all_cap, max;
    uint64_t line_no;
};
void tool_input_open(struct tool_input *in, bool raw, uint64_t max);
/* Reads once from fd 0 (it may block if fd 0 is not ready); exits 1 on a read error or a
 * line (an input) longer than max. */
void tool_input_read(struct tool_input *in);
/* The next frame to send, as a view valid until the next call: true, or false when none
 * is ready (more input is needed, or in->eof and everything was taken). */
bool tool_input_next(struct tool_input *in, const uint8_t **data, size_t *len);
void tool_input_close(struct tool_input *in);

/* Writes a received frame to stdout: the bytes and a newline; raw: the bytes alone;
 * hex: "LEN: hh hh ..." lines of 16 bytes. */
void tool_print_frame(const uint8_t *data, size_t len, bool raw, bool hex);

/* A one-line explanation of a receive error on a connection to a peer: "the server sent a
 * frame over the limit", "connection reset by the server"... */
const char *tool_recv_error(int code);

/* TLS options, the same in every program (getopt_long values above 255):
 *   servers: --tls-cert FILE --tls-key FILE [--tls-ca FILE] [--tls-verify-peer]
 *   clients: --tls [--tls-ca FILE] [--tls-name NAME] [--tls-cert FILE --tls-key FILE]
 *            [--tls-insecure]
 *   both:    [--tls-ktls] (records to the kernel after the handshake, where it can)   */
enum {
    TOOL_OPT_TLS = 256,
    TOOL_OPT_TLS_CERT,
    TOOL_OPT_TLS_KEY,
    TOOL_OPT_TLS_CA,
    TOOL_OPT_TLS_NAME,
    TOOL_OPT_TLS_VERIFY_PEER,
    TOOL_OPT_TLS_INSECURE,
    TOOL_OPT_TLS_HANDSHAKE_TIMEOUT,
    TOOL_OPT_TLS_KTLS
};
#define TOOL_TLS_SERVER_OPTIONS                                                                \
    {"tls-cert", required_argument, NULL, TOOL_OPT_TLS_CERT},                                  \
        {"tls-key", required_argument, NULL, TOOL_OPT_TLS_KEY},                                \
        {"tls-ca", required_argument, NULL, TOOL_OPT_TLS_CA},                                  \
        {"tls-verify-peer", no_argument, NULL, TOOL_OPT_TLS_VERIFY_PEER},                      \
        {"tls-handshake-timeout", required_argument, NULL, TOOL_OPT_TLS_HANDSHAKE_TIMEOUT},      \
        {"tls-ktls", no_argument, NULL, TOOL_OPT_TLS_KTLS}
#define TOOL_TLS_CLIENT_OPTIONS                                                                \
    {"tls", no_argument, NULL, TOOL_OPT_TLS}, {"tls-name", required_argument, NULL, TOOL_OPT_TLS_NAME}, \
        {"tls-insecure", no_argument, NULL, TOOL_OPT_TLS_INSECURE},                            \
        {"tls-ktls", no_argument, NULL, TOOL_OPT_TLS_KTLS}
#define TOOL_TLS_SERVER_HELP                                                                   \
    "      --tls-cert FILE      serve TLS only, with this PEM certificate chain ...\n"         \
    "      --tls-key FILE       ... and its PEM private key\n"                                 \
    "      --tls-ca FILE        CA (PEM) for client certificates: checked when sent\n"        \
    "      --tls-verify-peer    require a client certificate signed by --tls-ca\n"        \
    "      --tls-handshake-timeout SEC  close a client whose handshake takes longer [10]\n"      \
    "      --tls-ktls           let the kernel encrypt after the handshake (kTLS), where\n"   \
    "                           it can; else TLS stays in OpenSSL\n"
#define TOOL_TLS_CLIENT_HELP                                                                   \
    "      --tls                TLS: verify the server against --tls-ca (else the\n"          \
    "                           system's store) and the name HOST (or --tls-name)\n"         \
    "      --tls-ca FILE        the CA (PEM) that signs the server's certificate\n"           \
    "      --tls-name NAME      the name the server's certificate must carry [HOST]\n"        \
    "      --tls-cert FILE      a client certificate (PEM), for servers that ask ...\n"       \
    "      --tls-key FILE       ... and its private key\n"                                    \
    "      --tls-insecure       no verification at all (says so on stderr)\n"                \
    "      --tls-ktls           let the kernel encrypt after the handshake (kTLS), where\n"   \
    "                           it can; else TLS stays in OpenSSL\n"

struct tool_tls {
    bool on; /* a client's --tls, or any server TLS option */
    const char *cert, *key, *ca, *name;
    bool verify_peer, insecure, ktls;
    int handshake_ms; /* servers: --tls-handshake-timeout, 0: the default */
};
/* Takes opt (with optarg) if it is a TLS option: true, else false. */
bool tool_tls_option(struct tool_tls *t, int opt, const char *arg);
/* The server context for t (NULL: plain TCP); exits 2 on contradictory options, 1 (with
 * the reason) when the certificate or key cannot be used. */
struct tcpmsg_tls_ctx *tool_tls_server(const struct tool_tls *t);
/* The client context for t (NULL: plain TCP); says "insecure" on stderr for --tls-insecure. */
struct tcpmsg_tls_ctx *tool_tls_client(const struct tool_tls *t);
/* Puts TLS over c under the deadline (ctx NULL: nothing to do): a client verifies the name
 * (--tls-name, else host); exits 1 with one line naming what failed. */
void tool_tls_start(struct tcpmsg_conn *c, struct tcpmsg_tls_ctx *ctx, const struct tool_tls *t,
                    const char *host, int64_t deadline);
/* With --tls-ktls, says on stderr who encrypts and who decrypts c's records (the kernel or
 * OpenSSL), once its handshake is done. */
void tool_tls_say_ktls(const struct tcpmsg_conn *c, const struct tool_tls *t);
/* True for the TLS failures (TCPMSG_ETLS ... TCPMSG_ETLSTRUNC). */
bool tool_tls_error(int code);

/* ---- the clients on the library's event loop ----------------------------------------------
 * tcpmsg-echo-client and tcpmsg-cat run one EVENT worker: their connection is dialled from
 * it (or accepted by it), and stdin is read in the same loop. The tool_die calls of their
 * callbacks end the process from the loop's thread (stdout is flushed by exit). */

/* Reads stdin in w's loop and calls more(arg) after each read (frames may be ready with
 * tool_input_next, or in->eof set). A pipe, socket or terminal is watched; a regular file
 * or /dev/null, which epoll cannot watch and which are always ready, is read one chunk per
 * loop turn from a worker timer. Stops by itself at the end of the input. */
void tool_stdin_start(struct tool_input *in, struct tcpmsg_worker *w, void (*more)(void *arg),
                      void *arg);
/* Stops reading stdin (the connection's output is too long) / reads it again. */
void tool_stdin_pause(bool pause);
/* Stops reading stdin for good: the connection it fed has ended (call it in on_close, or a
 * read after it would feed a connection that is gone). */
void tool_stdin_stop(void);
/* Flushes stdout at the end of this loop turn (once for all the frames the turn printed:
 * a reader on a pipe sees each reply without a write per frame). */
void tool_stdout_flush_soon(struct tcpmsg_worker *w);

#endif
