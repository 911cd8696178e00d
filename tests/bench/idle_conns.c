/* idle_conns: what idle connections cost a server. Opens N connections to a len32 echo
 * server, makes one 64-byte exchange on each (so that every connection has used its
 * buffers), then reads the server's resident memory (VmRSS of its pid). With -s, soaks:
 * one message per connection per second for SECONDS, sampling VmRSS every 5 s.
 *
 *   idle_conns -p PORT -P SERVER_PID [-n CONNS] [-s SOAK_SECONDS]
 *
 * One JSON object on stdout: rss before, after, bytes per connection, and the soak's
 * samples. The server needs a file limit above N (ulimit -n) and --max-conns above N. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

static long
rss_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static void
die(const char *what)
{
    fprintf(stderr, "idle_conns: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void
exchange(int fd)
{
    uint8_t frame[68] = {0, 0, 0, 64}, back[68];
    memset(frame + 4, 'i', 64);
    if (send(fd, frame, sizeof frame, MSG_NOSIGNAL) != (ssize_t)sizeof frame)
        die("send");
    size_t got = 0;
    while (got < sizeof back) {
        ssize_t r = recv(fd, back + got, sizeof back - got, 0);
        if (r <= 0)
            die("recv");
        got += (size_t)r;
    }
}

int
main(int argc, char **argv)
{
    int port = 0, pid = 0, n = 10000, soak = 0, opt;
    while ((opt = getopt(argc, argv, "p:P:n:s:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'P': pid = atoi(optarg); break;
        case 'n': n = atoi(optarg); break;
        case 's': soak = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: idle_conns -p PORT -P PID [-n CONNS] [-s SECONDS]\n");
            return 2;
        }
    }
    if (!port || !pid || n < 1)
        return 2;
    struct rlimit rl = {(rlim_t)n + 64, (rlim_t)n + 64};
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("setrlimit (run as root, or raise ulimit -n)");
    int *fds = calloc((size_t)n, sizeof *fds);
    long before = rss_kib(pid);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof a) < 0)
            die("connect");
        exchange(fds[i]);
    }
    long after = rss_kib(pid);
    printf("{\"bench\": \"idle\", \"conns\": %d, \"rss_before_kib\": %ld, \"rss_after_kib\": %ld, "
           "\"bytes_per_conn\": %.0f, \"soak\": [",
           n, before, after, (double)(after - before) * 1024.0 / n);
    fflush(stdout);
    for (int s = 0; s < soak; s++) {
        for (int i = 0; i < n; i++)
            exchange(fds[i]);
        if (s % 5 == 4)
            printf("%s%ld", s == 4 ? "" : ", ", rss_kib(pid));
        fflush(stdout);
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL); /* the soak's pace: one message per connection per second */
    }
    printf("]}\n");
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return 0;
}
