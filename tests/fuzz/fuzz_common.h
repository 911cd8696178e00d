/* Shared by the fuzz targets: configuration from the first input bytes, and the checks
 * every decoding must pass. A failed check calls abort(), which libFuzzer reports. */
#ifndef TCPMSG_FUZZ_COMMON_H
#define TCPMSG_FUZZ_COMMON_H

#include "tcpmsg/codec.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* Consumes bytes of the input for configuration; returns 0 when exhausted. */
struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

static inline uint8_t
fuzz_byte(struct fuzz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

/* What a stream decoded to, as a digest that two decodings can be compared on. */
struct fuzz_result {
    size_t frames;
    uint64_t hash; /* over every frame's data and raw lengths */
    ptrdiff_t end;
    size_t left;
};

static inline uint64_t
fuzz_mix(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return (h ^ n) * 0x100000001b3ull;
}

/* Decodes `n` bytes fed in chunks of `chunk` bytes (0: all at once), then finishes. The
 * bytes given to each call are copied to an exactly-sized heap block so that ASan catches
 * any over-read. Checks the frame invariants on the way. */
static inline void
fuzz_decode(const struct tcpmsg_codec *c, const uint8_t *data, size_t n, size_t chunk,
            struct fuzz_result *res)
{
    struct tcpmsg_decoder d = TCPMSG_DECODER_INIT;
    size_t start = 0, avail = 0;
    ptrdiff_t r = 0;
    memset(res, 0, sizeof *res);
    res->hash = 0xcbf29ce484222325ull;
    while (start + avail < n) {
        size_t more = chunk ? chunk : n, fed = start + avail;
        avail += n - fed < more ? n - fed : more;
        for (;;) {
            uint8_t *copy = malloc(avail ? avail : 1);
            FUZZ_CHECK(copy != NULL);
            memcpy(copy, data + start, avail);
            struct tcpmsg_frame f;
            r = tcpmsg_codec_decode(c, &d, copy, avail, &f);
            if (r > 0) {
                FUZZ_CHECK((size_t)r <= avail);
                FUZZ_CHECK(f.raw == copy && f.raw_len == (size_t)r);
                FUZZ_CHECK(f.data >= f.raw && f.data + f.len <= f.raw + f.raw_len);
                FUZZ_CHECK(f.raw_len <= tcpmsg_codec_max_frame(c));
                res->hash = fuzz_mix(res->hash, f.data, f.len) ^ f.raw_len;
                res->frames++;
                start += (size_t)r;
                avail -= (size_t)r;
            } else {
                FUZZ_CHECK(f.data == NULL && f.len == 0);
            }
            free(copy);
            if (r <= 0)
                break;
        }
        if (r < 0)
            break;
    }
    /* End of stream. */
    for (;;) {
        uint8_t *copy = malloc(avail ? avail : 1);
        FUZZ_CHECK(copy != NULL);
        memcpy(copy, data + start, avail);
        struct tcpmsg_frame f;
        r = tcpmsg_codec_finish(c, &d, copy, avail, &f);
        if (r > 0) {
            FUZZ_CHECK((size_t)r <= avail && f.raw == copy);
            FUZZ_CHECK(f.data >= f.raw && f.data + f.len <= f.raw + f.raw_len);
            res->hash = fuzz_mix(res->hash, f.data, f.len) ^ f.raw_len;
            res->frames++;
            start += (size_t)r;
            avail -= (size_t)r;
        }
        free(copy);
        if (r <= 0)
            break;
    }
    FUZZ_CHECK(r == TCPMSG_EOF || r == -EPROTO || r == -EMSGSIZE);
    FUZZ_CHECK(r != TCPMSG_EOF || avail == 0);
    res->end = r;
    res->left = tcpmsg_decoder_left(&d);
}

/* The decoding must not depend on how the stream is cut: whole, one byte at a time and in
 * chunks of `chunk` bytes all give the same frames and the same end. */
static inline void
fuzz_check_stream(const struct tcpmsg_codec *c, const uint8_t *data, size_t n, size_t chunk)
{
    struct fuzz_result whole, bytewise, chunked;
    fuzz_decode(c, data, n, 0, &whole);
    fuzz_decode(c, data, n, 1, &bytewise);
    fuzz_decode(c, data, n, chunk ? chunk : 1, &chunked);
    FUZZ_CHECK(whole.frames == bytewise.frames && whole.hash == bytewise.hash);
    FUZZ_CHECK(whole.end == bytewise.end && whole.left == bytewise.left);
    FUZZ_CHECK(whole.frames == chunked.frames && whole.hash == chunked.hash);
    FUZZ_CHECK(whole.end == chunked.end && whole.left == chunked.left);
}

/* Codec configurations from input bytes. Invalid combinations are part of the test: init
 * must refuse them with -EINVAL, never crash. */
static inline int
fuzz_length_codec(struct fuzz_in *in, struct tcpmsg_codec *c)
{
    static const unsigned widths[] = {0, 1, 2, 3, 4, 8, 5, 0};
    uint8_t a = fuzz_byte(in), b = fuzz_byte(in), m = fuzz_byte(in);
    struct tcpmsg_length_config cfg = {
        .width = widths[a & 7],
        .varint = (a >> 3) & 1,
        .little_endian = (a >> 4) & 1,
        .counts = (a >> 5) & 1 ? TCPMSG_LENGTH_COUNTS_FRAME : TCPMSG_LENGTH_COUNTS_PAYLOAD,
        .keep_header = (a >> 6) & 1,
        .offset = b & 7,
        .suffix = (b >> 3) & 7,
        .max_payload = (b >> 6) ? ((uint64_t)m << (8 * ((b >> 6) - 1))) : 0,
    };
    int rc = tcpmsg_codec_init_length(c, &cfg);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL);
    return rc;
}

static inline int
fuzz_delim_codec(struct fuzz_in *in, struct tcpmsg_codec *c)
{
    uint8_t a = fuzz_byte(in), m = fuzz_byte(in);
    uint8_t delim[TCPMSG_CODEC_DELIM_MAX + 1];
    size_t dl = (a >> 4) & 15;
    dl = dl == 0 ? 1 : dl;
    for (size_t i = 0; i < dl; i++)
        delim[i] = fuzz_byte(in);
    struct tcpmsg_delim_config cfg = {
        .mode = (enum tcpmsg_delim_mode)(a & 3),
        .keep_delim = (a >> 2) & 1,
        .eof_partial = (a >> 3) & 1,
        .max_len = m,
    };
    if (cfg.mode == TCPMSG_DELIM_BYTES) {
        cfg.delim = delim;
        cfg.delim_len = dl;
    }
    int rc = tcpmsg_codec_init_delim(c, &cfg);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL);
    return rc;
}

static inline int
fuzz_fixed_codec(struct fuzz_in *in, struct tcpmsg_codec *c)
{
    uint8_t a = fuzz_byte(in);
    struct tcpmsg_fixed_config cfg = {.size = a >> 1, .pad = a & 1, .pad_byte = '.'};
    int rc = tcpmsg_codec_init_fixed(c, &cfg);
    FUZZ_CHECK(rc == 0 || (rc == -EINVAL && cfg.size == 0));
    return rc;
}

#endif
