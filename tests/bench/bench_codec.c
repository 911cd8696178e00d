/* bench_codec: decode and encode throughput of the three codecs, with memcpy and memchr over
 * the same bytes measured in the same run as the reference. One JSON object per line:
 *
 *   {"bench": "codec", "codec": "length", "op": "decode", "size": 1024, "gbps": ..,
 *    "frames_per_s": .., "ref": "memcpy", "ref_gbps": .., "ratio": ..}
 *
 * gbps counts the bytes of the stream (headers and delimiters included) per second.
 * decode: tcpmsg_codec_decode over a stream of frames, one call per frame, as a receive
 *   loop does; references: memcpy of the stream (length, fixed: what a receiver pays to
 *   move the bytes at all) and memchr for the delimiter over the same bytes (delim: what
 *   finding the line ends costs at the least).
 * encode: tcpmsg_codec_write of each frame into an output stream (header + payload copy);
 *   reference: memcpy of each payload to the same place (what building the stream costs
 *   without any framing).
 * Each measurement is the median of 5 runs of at least 0.2 s. Usage: bench_codec [SIZES...] */
#define _GNU_SOURCE
#include <tcpmsg.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"

#define STREAM ((size_t)32 * 1024 * 1024)
#define RUNS 5

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs fn(arg) repeatedly for at least 0.2 s, RUNS times; returns the median seconds per
 * call. */
static double
measure(void (*fn)(void *), void *arg)
{
    double t[RUNS];
    for (int r = 0; r < RUNS; r++) {
        int calls = 0;
        double start = now(), el;
        do {
            fn(arg);
            calls++;
            el = now() - start;
        } while (el < 0.2);
        t[r] = el / calls;
    }
    qsort(t, RUNS, sizeof t[0], cmp_double);
    return t[RUNS / 2];
}

struct job {
    const struct tcpmsg_codec *codec;
    uint8_t *stream, *out;
    size_t len, nframes, size;
    const uint8_t *payload;
    volatile size_t sink;
};

static void
run_decode(void *arg)
{
    struct job *j = arg;
    struct tcpmsg_decoder d = TCPMSG_DECODER_INIT;
    struct tcpmsg_frame f;
    size_t off = 0, frames = 0, bytes = 0;
    ptrdiff_t n;
    while ((n = tcpmsg_codec_decode(j->codec, &d, j->stream + off, j->len - off, &f)) > 0) {
        off += (size_t)n;
        bytes += f.len;
        frames++;
    }
    if (frames != j->nframes || n < 0) {
        fprintf(stderr, "bench_codec: decoded %zu frames of %zu (%s)\n", frames, j->nframes,
                tcpmsg_errname((int)n));
        exit(1);
    }
    j->sink = bytes;
}

static void
run_encode(void *arg)
{
    struct job *j = arg;
    size_t off = 0;
    for (size_t i = 0; i < j->nframes; i++)
        off += (size_t)tcpmsg_codec_write(j->codec, j->payload, j->size, j->out + off,
                                          j->len - off);
    j->sink = off;
}

static void
run_memcpy(void *arg)
{
    struct job *j = arg;
    memcpy(j->out, j->stream, j->len);
    j->sink = j->out[j->len / 2];
}

/* What encoding costs at the least: copying each payload to where its frame goes. */
static void
run_memcpy_frames(void *arg)
{
    struct job *j = arg;
    size_t frame = j->len / j->nframes, off = 0;
    for (size_t i = 0; i < j->nframes; i++, off += frame)
        memcpy(j->out + off, j->payload, j->size);
    j->sink = j->out[j->len / 2];
}

static void
run_memchr(void *arg)
{
    struct job *j = arg;
    size_t off = 0, found = 0;
    const uint8_t *p;
    while (off < j->len && (p = memchr(j->stream + off, '\n', j->len - off))) {
        off = (size_t)(p - j->stream) + 1;
        found++;
    }
    j->sink = found;
}

static void
report(const char *codec, const char *op, struct job *j, double secs, const char *ref,
       double ref_secs)
{
    double gbps = (double)j->len / secs / 1e9, ref_gbps = (double)j->len / ref_secs / 1e9;
    printf("{\"bench\": \"codec\", \"codec\": \"%s\", \"op\": \"%s\", \"size\": %zu, "
           "\"gbps\": %.3f, \"frames_per_s\": %.0f, \"ref\": \"%s\", \"ref_gbps\": %.3f, "
           "\"ratio\": %.3f}\n",
           codec, op, j->size, gbps, (double)j->nframes / secs, ref, ref_gbps, gbps / ref_gbps);
    fflush(stdout);
}

static void
bench(const char *name, const struct tcpmsg_codec *codec, size_t size)
{
    uint8_t *payload = malloc(size);
    for (size_t i = 0; i < size; i++)
        payload[i] = (uint8_t)('a' + i % 26); /* no "\n" inside: a valid line too */
    size_t frame = tcpmsg_codec_frame_size(codec, size);
    size_t n = STREAM / frame ? STREAM / frame : 1;
    struct job j = {.codec = codec, .size = size, .payload = payload, .nframes = n};
    j.len = n * frame;
    j.stream = malloc(j.len);
    j.out = malloc(j.len);
    size_t off = 0;
    for (size_t i = 0; i < n; i++)
        off += (size_t)tcpmsg_codec_write(codec, payload, size, j.stream + off, j.len - off);
    memset(j.out, 0, j.len); /* touch every page before timing */

    double t_copy = measure(run_memcpy, &j);
    double t_dec = measure(run_decode, &j);
    if (tcpmsg_codec_kind(codec) == TCPMSG_CODEC_DELIM)
        report(name, "decode", &j, t_dec, "memchr", measure(run_memchr, &j));
    else
        report(name, "decode", &j, t_dec, "memcpy", t_copy);
    report(name, "encode", &j, measure(run_encode, &j), "memcpy-frames",
           measure(run_memcpy_frames, &j));
    free(j.stream);
    free(j.out);
    free(payload);
}

int
main(int argc, char **argv)
{
    static const size_t defaults[] = {16, 64, 1024, 65536, 1048576};
    size_t sizes[16], nsizes = 0;
    for (int i = 1; i < argc && nsizes < 16; i++) {
        char *end;
        unsigned long long v = strtoull(argv[i], &end, 10);
        if (*end || v == 0 || v > STREAM) {
            fprintf(stderr, "usage: bench_codec [PAYLOAD_BYTES...] (1..%zu; default 16 64 "
                            "1024 65536 1048576)\n", STREAM);
            return 2;
        }
        sizes[nsizes++] = (size_t)v;
    }
    if (!nsizes)
        for (; nsizes < sizeof defaults / sizeof defaults[0]; nsizes++)
            sizes[nsizes] = defaults[nsizes];
    for (size_t i = 0; i < nsizes; i++) {
        struct tcpmsg_codec c;
        tcpmsg_codec_init_length(&c, NULL);
        bench("length", &c, sizes[i]);
        tcpmsg_codec_init_delim(&c, NULL);
        bench("delim", &c, sizes[i]);
        tcpmsg_codec_init_fixed(&c, &(struct tcpmsg_fixed_config){.size = sizes[i]});
        bench("fixed", &c, sizes[i]);
    }
    return 0;
}
