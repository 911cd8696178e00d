/* tcpmsg-file-send: sends one file to tcpmsg-file-recv (protocol in file_proto.h) and exits
 * 0 once the receiver has stored it and confirmed its size and checksum. */
#define _GNU_SOURCE /* POSIX and Linux interfaces under -std=c11 */
#include "common.h"
#include "file_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static _Noreturn void
usage(void)
{
    printf("Usage: %s [OPTION]... HOST PORT FILE\n"
           "Send FILE to a tcpmsg-file-recv listening on HOST PORT.\n"
           "\n"
           "  -n, --name NAME     the name to store it under [FILE's own name]\n"
           "  -t, --timeout SEC   give up when the receiver takes nothing for SEC [30]\n"
           "  -q, --quiet         no progress lines on stderr\n"
           "  -h, --help          this help\n"
           "  -V, --version       the version\n",
           tool_name());
    exit(0);
}

static const char *name; /* the name the receiver stores the file under */
static int timeout_ms = 30000;

/* Reads the receiver's next answer and exits 1 if it is a refusal (with its reason) or not
 * of type `want`; what says what the answer is awaited for. */
static void
expect(struct tcpmsg_conn *c, uint8_t want, struct tcpmsg_frame *f, const char *what)
{
    int r = tcpmsg_conn_recv(c, f, tcpmsg_deadline_in(timeout_ms));
    if (r < 0)
        tool_die("waiting for the receiver's %s: %s", what, tool_recv_error(r));
    if (file_type(f) == FILE_REFUSED)
        tool_die("the receiver refused %s: %.*s", name, (int)f->len, (const char *)f->data);
    if (file_type(f) != want)
        tool_die("the receiver answered something unexpected to the %s", what);
}

/* Sends one frame. When the write fails because the receiver closed, the reason it gave
 * may be waiting in the receive queue (a refusal during the data): that is reported. */
static void
send_or_die(struct tcpmsg_conn *c, uint8_t type, const void *data, size_t len)
{
    struct iovec v = {(void *)(uintptr_t)data, len};
    int r = tcpmsg_conn_send_fields(c, &type, 1, &v, 1, tcpmsg_deadline_in(timeout_ms));
    if (r == 0)
        return;
    if (r == -EPIPE || r == -ECONNRESET) {
        struct tcpmsg_frame f;
        if (tcpmsg_conn_recv(c, &f, TCPMSG_NOWAIT) == 0 && file_type(&f) == FILE_REFUSED)
            tool_die("the receiver refused %s: %.*s", name, (int)f.len, (const char *)f.data);
    }
    tool_die("sending: %s", tool_recv_error(r));
}

int
main(int argc, char **argv)
{
    tool_init(argv[0]);
    static const struct option longopts[] = {
        {"name", required_argument, NULL, 'n'}, {"timeout", required_argument, NULL, 't'},
        {"quiet", no_argument, NULL, 'q'},      {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},    {NULL, 0, NULL, 0}};
    bool quiet = false;
    int opt;
    while ((opt = getopt_long(argc, argv, ":n:t:qhV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'n':
            name = optarg;
            break;
        case 't':
            timeout_ms = tool_seconds_ms("--timeout", optarg);
            break;
        case 'q':
            quiet = true;
            break;
        case 'h':
            usage();
        case 'V':
            tool_version();
        default:
            tool_bad_option(opt, argv);
        }
    }
    if (argc - optind != 3)
        tool_usage(argc - optind < 3 ? "missing HOST, PORT or FILE" : "too many arguments");
    const char *host = argv[optind], *port = argv[optind + 1], *path = argv[optind + 2];
    char *path_copy = strdup(path);
    if (!name)
        name = basename(path_copy);
    if (!file_name_ok((const uint8_t *)name, strlen(name)))
        tool_usage("'%s' cannot be a file name on the receiver (1 to %d bytes, no '/')", name,
                   FILE_NAME_MAX);

    int in = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (in < 0 || fstat(in, &sb) < 0)
        tool_die("%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        tool_die("%s: not a regular file", path);
    uint64_t size = (uint64_t)sb.st_size;

    struct tcpmsg_codec codec;
    file_codec(&codec);
    struct tcpmsg_conn *c;
    int r = tcpmsg_conn_connect(&c, host, port, &codec, NULL, tcpmsg_deadline_in(timeout_ms));
    if (r < 0)
        tool_die("cannot connect to %s port %s: %s", host, port, tcpmsg_strerror(r));

    /* The header: size and name, in network byte order through the wire helpers. */
    uint8_t head[8 + 2 + FILE_NAME_MAX];
    struct tcpmsg_wire_writer w;
    tcpmsg_wire_writer_init(&w, head, sizeof head);
    tcpmsg_wire_write_u64(&w, size);
    tcpmsg_wire_write_bytes16(&w, name, strlen(name));
    send_or_die(c, FILE_HEADER, head, tcpmsg_wire_writer_len(&w));
    struct tcpmsg_frame f;
    expect(c, FILE_ACCEPTED, &f, "verdict on the header"); /* no data before it */

    /* The data, FILE_CHUNK at a time; progress every tenth for files of 1 MiB or more. */
    static uint8_t chunk[FILE_CHUNK];
    uint64_t done = 0;
    uint32_t crc = 0;
    int shown = 0;
    for (;;) {
        ssize_t n = read(in, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            tool_die("%s: %s", path, strerror(errno));
        if (n == 0)
            break;
        crc = file_crc32(crc, chunk, (size_t)n);
        send_or_die(c, FILE_DATA, chunk, (size_t)n);
        done += (uint64_t)n;
        int tenth = size ? (int)(done * 10 / size) : 10;
        if (!quiet && size >= 1024 * 1024 && tenth > shown && tenth <= 10) {
            shown = tenth;
            tool_warn("%s: %d%% (%.1f of %.1f MiB)", name, tenth * 10, done / 1048576.0,
                      size / 1048576.0);
        }
    }
    close(in);
    if (done != size)
        tool_die("%s changed while it was sent (%llu bytes instead of %llu)", path,
                 (unsigned long long)done, (unsigned long long)size);
    uint8_t end[4];
    tcpmsg_wire_put_u32(end, crc);
    send_or_die(c, FILE_END, end, sizeof end);

    /* The receiver's verdict on the file. */
    expect(c, FILE_OK, &f, "confirmation");
    if (f.len != 8 || tcpmsg_wire_get_u64(f.data) != size)
        tool_die("the receiver confirmed another size than %llu bytes",
                 (unsigned long long)size);
    tcpmsg_conn_close(c, tcpmsg_deadline_in(timeout_ms));
    if (!quiet)
        tool_warn("sent %s: %llu bytes, crc32 %08x", name, (unsigned long long)size, crc);
    free(path_copy);
    return 0;
}
