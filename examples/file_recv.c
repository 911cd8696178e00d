/* tcpmsg-file-recv: stores the files tcpmsg-file-send sends (protocol in file_proto.h) in
 * DIR. Each file is written to a hidden temporary file and renamed into place only once
 * its size and CRC-32 match what the sender announced; names with a path are refused.
 * A conversation with state (header, data, end) is the course's handle_dialog_with_client:
 * it is written as a blocking dialog handler and served one thread per connection.
 * stdout: the port, then the path of each file stored. */
#define _GNU_SOURCE /* POSIX and Linux interfaces under -std=c11 */
#include "common.h"
#include "file_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static _Noreturn void
usage(void)
{
    printf("Usage: %s [OPTION]... PORT DIR\n"
           "Receive files from tcpmsg-file-send into DIR (PORT 0: any free port; the port\n"
           "is printed on stdout, then the path of every file stored).\n"
           "\n"
           "  -b, --bind ADDR       address to listen on [all, IPv4 and IPv6]\n"
           "  -1, --once            exit after one transfer: 0 if the file was stored\n"
           "  -m, --max-size BYTES  refuse larger files [no limit]\n"
           "  -t, --timeout SEC     drop a sender silent for SEC seconds [30]\n"
           "  -h, --help            this help\n"
           "  -V, --version         the version\n",
           tool_name());
    exit(0);
}

static const char *dir;
static uint64_t max_size = UINT64_MAX;
static int timeout_ms = 30000;
static bool once;
static struct tcpmsg_server *server;
static volatile int once_result = EXIT_RUNTIME;
static mode_t file_mode; /* what open(2) would give a new file: 0666 less the umask */

/* Tells the sender why, logs it, and ends the conversation with `code`. */
static int
refuse(struct tcpmsg_conn *c, int code, const char *why)
{
    uint8_t type = FILE_REFUSED;
    struct iovec v = {(void *)(uintptr_t)why, strlen(why)};
    tcpmsg_conn_send_fields(c, &type, 1, &v, 1, tcpmsg_deadline_in(timeout_ms));
    tcpmsg_conn_flush(c, tcpmsg_deadline_in(timeout_ms));
    tool_warn("refused a file: %s", why);
    return code;
}

/* Records why a transfer failed, for refuse() once the temporary file is gone. */
static int
failed(const char **why, int code, const char *text)
{
    *why = text;
    return code;
}

/* Receives the data frames into fd until the end frame; checks size and checksum. On a
 * fault of the sender's or a write error, sets *why and returns the code without answering:
 * the sender hears of it only after the temporary file is removed. */
static int
receive_data(struct tcpmsg_conn *c, int fd, uint64_t size, const char **why)
{
    uint64_t got = 0;
    uint32_t crc = 0;
    for (;;) {
        struct tcpmsg_frame f;
        int r = tcpmsg_conn_recv(c, &f, tcpmsg_deadline_in(timeout_ms));
        if (r < 0) {
            tool_warn("transfer cut short: %s", tool_recv_error(r));
            return r;
        }
        if (file_type(&f) == FILE_END) {
            if (got != size)
                return failed(why, -EPROTO, "fewer bytes than announced");
            if (f.len != 4 || tcpmsg_wire_get_u32(f.data) != crc)
                return failed(why, -EBADMSG, "checksum mismatch");
            return 0;
        }
        if (file_type(&f) != FILE_DATA)
            return failed(why, -EPROTO, "unexpected frame");
        if (f.len > size - got)
            return failed(why, -EPROTO, "more bytes than announced");
        for (size_t off = 0; off < f.len;) {
            ssize_t n = write(fd, f.data + off, f.len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return failed(why, -errno, strerror(errno));
            off += (size_t)n;
        }
        crc = file_crc32(crc, f.data, f.len);
        got += f.len;
    }
}

static int
dialog(struct tcpmsg_conn *c, void *user)
{
    (void)user;
    struct tcpmsg_frame f;
    int r = tcpmsg_conn_recv(c, &f, tcpmsg_deadline_in(timeout_ms));
    if (r < 0)
        return r;
    struct tcpmsg_wire_reader rd;
    tcpmsg_wire_reader_init(&rd, f.data, f.len);
    uint64_t size = tcpmsg_wire_read_u64(&rd);
    size_t name_len;
    const uint8_t *name = tcpmsg_wire_read_bytes16(&rd, &name_len);
    if (file_type(&f) != FILE_HEADER || !tcpmsg_wire_reader_ok(&rd) ||
        tcpmsg_wire_reader_left(&rd) != 0)
        return refuse(c, -EPROTO, "malformed header");
    if (!file_name_ok(name, name_len))
        return refuse(c, -EACCES, "the name is not a plain file name");
    if (size > max_size)
        return refuse(c, -EFBIG, "the file is too large");

    char final[4096], temp[4096];
    if (snprintf(final, sizeof final, "%s/%.*s", dir, (int)name_len, (const char *)name) >=
            (int)sizeof final ||
        snprintf(temp, sizeof temp, "%s/.%.*s.XXXXXX", dir, (int)name_len, (const char *)name) >=
            (int)sizeof temp)
        return refuse(c, -ENAMETOOLONG, "path too long");
    int fd = mkostemp(temp, O_CLOEXEC); /* mode 0600 until complete */
    if (fd < 0)
        return refuse(c, -errno, strerror(errno));
    /* The verdict on the header, before any data is sent (file_proto.h). */
    uint8_t type = FILE_ACCEPTED;
    r = tcpmsg_conn_send_fields(c, &type, 1, NULL, 0, tcpmsg_deadline_in(timeout_ms));
    if (r == 0)
        r = tcpmsg_conn_flush(c, tcpmsg_deadline_in(timeout_ms));
    const char *why = NULL;
    if (r == 0)
        r = receive_data(c, fd, size, &why);
    if (r == 0 && (fchmod(fd, file_mode) < 0 || fsync(fd) < 0 || rename(temp, final) < 0))
        r = failed(&why, -errno, strerror(errno));
    close(fd);
    if (r < 0) {
        unlink(temp); /* before the verdict: a refused sender finds nothing left behind */
        return why ? refuse(c, r, why) : r;
    }
    uint8_t ok[8];
    type = FILE_OK;
    tcpmsg_wire_put_u64(ok, size);
    struct iovec v = {ok, sizeof ok};
    r = tcpmsg_conn_send_fields(c, &type, 1, &v, 1, tcpmsg_deadline_in(timeout_ms));
    if (r == 0)
        r = tcpmsg_conn_flush(c, tcpmsg_deadline_in(timeout_ms));
    dprintf(STDOUT_FILENO, "%s\n", final); /* one write: lines of threads never mix */
    tool_warn("stored %s (%llu bytes)", final, (unsigned long long)size);
    if (once)
        once_result = 0;
    return r < 0 ? r : TCPMSG_EOF;
}

static void
on_close(struct tcpmsg_conn *c, int reason, void *user)
{
    (void)c, (void)reason, (void)user;
    if (once)
        tcpmsg_server_stop(server);
}

int
main(int argc, char **argv)
{
    tool_init(argv[0]);
    static const struct option longopts[] = {{"bind", required_argument, NULL, 'b'},
                                             {"once", no_argument, NULL, '1'},
                                             {"max-size", required_argument, NULL, 'm'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    struct tcpmsg_server_config cfg = {.model = TCPMSG_MODEL_THREAD, .handle_signals = true};
    int opt;
    while ((opt = getopt_long(argc, argv, ":b:1m:t:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            cfg.host = optarg;
            break;
        case '1':
            once = true;
            break;
        case 'm':
            max_size = tool_uint("--max-size", optarg, 0, UINT64_MAX);
            break;
        case 't':
            timeout_ms = tool_seconds_ms("--timeout", optarg);
            break;
        case 'h':
            usage();
        case 'V':
            tool_version();
        default:
            tool_bad_option(opt, argv);
        }
    }
    if (argc - optind != 2)
        tool_usage(argc - optind < 2 ? "missing PORT or DIR" : "too many arguments");
    cfg.port = argv[optind];
    dir = argv[optind + 1];
    if (access(dir, W_OK | X_OK) < 0)
        tool_die("%s: %s", dir, strerror(errno));
    if (once)
        cfg.max_conns = 1;
    file_crc32(0, NULL, 0); /* builds the table before any thread uses it */
    mode_t mask = umask(0);
    umask(mask);
    file_mode = 0666 & ~mask;

    struct tcpmsg_codec codec;
    file_codec(&codec);
    cfg.codec = &codec;
    struct tcpmsg_handler h = {.dialog = dialog, .on_close = on_close};
    int r = tcpmsg_server_create(&server, &cfg, &h);
    if (r < 0)
        tool_die("cannot listen on port %s: %s", cfg.port, tcpmsg_strerror(r));
    tool_print_port(tcpmsg_server_port(server));
    r = tcpmsg_server_run(server);
    tcpmsg_server_destroy(server);
    if (r < 0)
        tool_die("%s", tcpmsg_strerror(r));
    return once ? once_result : 0;
}
