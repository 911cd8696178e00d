/* Property tests of the codecs: random configurations, random payloads (empty and
 * maximum-size included), random chunking. Whatever encode accepts, decode must give back
 * unchanged, whatever the chunking; whatever encode refuses, decode must not read back as
 * that payload; a stream cut inside its last frame must end in -EPROTO with the exact
 * number of bytes left. Replay a failure with TCPMSG_TEST_SEED=<seed printed>. */
#include "testutil.h"

#include "codec/codec_internal.h" /* white-box: the flag bits */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A small alphabet makes delimiter collisions frequent; sometimes all 256 values. */
static uint8_t
rand_byte(int alphabet)
{
    static const uint8_t small[] = {'a', 'b', '\n', '\r', 0, 0xff};
    return alphabet ? small[tu_range(0, sizeof small - 1)] : (uint8_t)tu_rand();
}

static void
random_codec(struct tcpmsg_codec *c, char *desc, size_t desc_len)
{
    for (;;) {
        int kind = (int)tu_range(1, 3);
        int rc;
        if (kind == TCPMSG_CODEC_LENGTH) {
            static const unsigned widths[] = {0, 1, 2, 3, 4, 8};
            struct tcpmsg_length_config cfg = {0};
            cfg.varint = tu_range(0, 4) == 0;
            cfg.width = cfg.varint ? 0 : widths[tu_range(0, 5)];
            cfg.little_endian = !cfg.varint && tu_range(0, 1);
            cfg.offset = tu_range(0, 3);
            cfg.suffix = tu_range(0, 2);
            cfg.counts = tu_range(0, 1) ? TCPMSG_LENGTH_COUNTS_FRAME : TCPMSG_LENGTH_COUNTS_PAYLOAD;
            cfg.keep_header = tu_range(0, 1);
            cfg.max_payload = tu_range(0, 3) ? tu_range(1, 400) : 0;
            rc = tcpmsg_codec_init_length(c, &cfg);
            snprintf(desc, desc_len, "length w%u%s%s off%zu suf%zu %s%s max%llu", cfg.width,
                     cfg.varint ? " varint" : "", cfg.little_endian ? " le" : "", cfg.offset,
                     cfg.suffix, cfg.counts ? "frame" : "payload", cfg.keep_header ? " keep" : "",
                     (unsigned long long)cfg.max_payload);
        } else if (kind == TCPMSG_CODEC_DELIM) {
            struct tcpmsg_delim_config cfg = {0};
            uint8_t delim[4];
            cfg.mode = (enum tcpmsg_delim_mode)tu_range(0, 3);
            if (cfg.mode == TCPMSG_DELIM_BYTES) {
                cfg.delim_len = tu_range(1, sizeof delim);
                for (size_t i = 0; i < cfg.delim_len; i++)
                    delim[i] = rand_byte(1);
                cfg.delim = delim;
            }
            cfg.keep_delim = tu_range(0, 1);
            cfg.eof_partial = tu_range(0, 3) == 0;
            cfg.max_len = tu_range(0, 3) ? tu_range(1, 400) : 0;
            rc = tcpmsg_codec_init_delim(c, &cfg);
            snprintf(desc, desc_len, "delim mode%d len%zu%s%s max%zu", (int)cfg.mode,
                     cfg.delim_len, cfg.keep_delim ? " keep" : "",
                     cfg.eof_partial ? " eof_partial" : "", cfg.max_len);
        } else {
            struct tcpmsg_fixed_config cfg = {.size = tu_range(1, 64), .pad = tu_range(0, 1),
                                              .pad_byte = rand_byte(0)};
            rc = tcpmsg_codec_init_fixed(c, &cfg);
            snprintf(desc, desc_len, "fixed size%zu%s", cfg.size, cfg.pad ? " pad" : "");
        }
        if (rc == 0)
            return;
        ck_assert_int_eq(rc, -EINVAL); /* some random length configs are impossible */
    }
}

/* The tail a delimiter codec's decoder recognises, for forcing refused payloads. */
static size_t
natural_tail(const struct tcpmsg_codec *c, uint8_t *tail)
{
    switch (c->mode) {
    case TCPMSG_DELIM_CRLF:
        memcpy(tail, "\r\n", 2);
        return 2;
    case TCPMSG_DELIM_LF:
    case TCPMSG_DELIM_ANY_EOL:
        tail[0] = '\n';
        return 1;
    default:
        memcpy(tail, c->delim, c->delim_len);
        return c->delim_len;
    }
}

struct expect {
    size_t n;
    uint8_t *data[TU_MAX_FRAMES];
    size_t len[TU_MAX_FRAMES];
    size_t raw_len[TU_MAX_FRAMES];
};

static void
one_round(int round)
{
    struct tcpmsg_codec c;
    char desc[160];
    random_codec(&c, desc, sizeof desc);
    const uint64_t max = tcpmsg_codec_max_payload(&c);
    const bool keep = c.flags & TCPMSG_CODEC__F_KEEP;

    size_t cap = 64 * (tcpmsg_codec_max_frame(&c) < 4096 ? tcpmsg_codec_max_frame(&c) : 4096);
    uint8_t *stream = malloc(cap);
    uint8_t *payload = malloc(4096);
    ck_assert_ptr_nonnull(stream);
    ck_assert_ptr_nonnull(payload);
    size_t used = 0;
    struct expect ex = {0};
    int alphabet = (int)tu_range(0, 1);
    size_t nmsg = tu_range(1, 20);

    for (size_t m = 0; m < nmsg && ex.n < TU_MAX_FRAMES; m++) {
        uint64_t hi = max < 4096 ? max : 4096;
        size_t len;
        switch (tu_range(0, 4)) {
        case 0:
            len = 0;
            break;
        case 1:
            len = (size_t)hi;
            break;
        default:
            len = (size_t)tu_range(0, hi < 300 ? hi : 300);
        }
        for (size_t i = 0; i < len; i++)
            payload[i] = rand_byte(alphabet);

        struct tcpmsg_encoded e;
        int rc = tcpmsg_codec_encode(&c, payload, len, &e);
        if (rc == -EINVAL && c.kind == TCPMSG_CODEC_DELIM) {
            /* Symmetry: a refused payload, sent anyway, is not read back as itself. */
            uint8_t forced[4096 + 4];
            memcpy(forced, payload, len);
            size_t fl = len + natural_tail(&c, forced + len);
            struct tu_decoded got;
            tu_decode_stream(&c, forced, fl, 0, 0, &got);
            bool same = got.nframes == 1 && got.end == TCPMSG_EOF && !keep &&
                        got.len[0] == len && memcmp(got.frame[0], payload, len) == 0;
            ck_assert_msg(!same, "seed %llu round %d [%s]: refused payload decodes as itself",
                          (unsigned long long)tu_seed(), round, desc);
            tu_decoded_free(&got);
            continue;
        }
        if (rc == -EINVAL && c.kind == TCPMSG_CODEC_FIXED) {
            ck_assert(len != max);
            continue;
        }
        ck_assert_msg(rc == 0, "seed %llu round %d [%s]: encode %zu bytes: %s",
                      (unsigned long long)tu_seed(), round, desc, len, tcpmsg_errname(rc));

        ptrdiff_t w = tcpmsg_codec_write(&c, payload, len, stream + used, cap - used);
        ck_assert_int_gt(w, 0);
        ck_assert_uint_eq((size_t)w, tcpmsg_codec_frame_size(&c, len));
        ck_assert_uint_eq((size_t)w, e.head_len + len + e.pad_len + e.tail_len);

        /* What decode must deliver: the payload (with padding for fixed records), or the
         * whole frame when the codec keeps its header or delimiter. */
        size_t i = ex.n++;
        ex.raw_len[i] = (size_t)w;
        if (keep) {
            ex.data[i] = malloc((size_t)w);
            memcpy(ex.data[i], stream + used, (size_t)w);
            ex.len[i] = (size_t)w;
        } else {
            size_t dl = len + e.pad_len;
            ex.data[i] = malloc(dl ? dl : 1);
            memcpy(ex.data[i], stream + used + e.head_len, dl);
            ex.len[i] = dl;
        }
        used += (size_t)w;
    }

    /* Decode with a random chunking and compare. */
    size_t chunk = tu_range(0, 3) ? tu_range(1, used + 1) : 1;
    struct tu_decoded got;
    tu_decode_stream(&c, stream, used, chunk, 0, &got);
    ck_assert_msg(got.nframes == ex.n, "seed %llu round %d [%s]: %zu frames, expected %zu",
                  (unsigned long long)tu_seed(), round, desc, got.nframes, ex.n);
    for (size_t i = 0; i < ex.n; i++) {
        ck_assert_msg(got.len[i] == ex.len[i] && memcmp(got.frame[i], ex.data[i], ex.len[i]) == 0,
                      "seed %llu round %d [%s]: frame %zu differs", (unsigned long long)tu_seed(),
                      round, desc, i);
        ck_assert_uint_eq(got.raw_len[i], ex.raw_len[i]);
    }
    ck_assert_int_eq(got.end, TCPMSG_EOF);
    tu_decoded_free(&got);

    /* Cut the stream inside its last frame. */
    bool partial_ok = c.kind == TCPMSG_CODEC_DELIM && (c.flags & TCPMSG_CODEC__F_EOF_PARTIAL);
    if (ex.n > 0 && ex.raw_len[ex.n - 1] > 1 && !partial_ok) {
        size_t last = ex.raw_len[ex.n - 1];
        size_t cut = tu_range(1, last - 1);
        tu_decode_stream(&c, stream, used - cut, chunk, 0, &got);
        ck_assert_msg(got.nframes == ex.n - 1 && got.end == -EPROTO && got.left == last - cut,
                      "seed %llu round %d [%s]: truncated stream gave %zu frames, %s, left %zu",
                      (unsigned long long)tu_seed(), round, desc, got.nframes,
                      tcpmsg_errname((int)got.end), got.left);
        tu_decoded_free(&got);
    }

    for (size_t i = 0; i < ex.n; i++)
        free(ex.data[i]);
    free(stream);
    free(payload);
}

START_TEST(round_trip_random)
{
    tu_rand_seed(0x5eed0001);
    for (int round = 0; round < 1500; round++)
        one_round(round);
}
END_TEST

START_TEST(max_size_payload_16mib)
{
    /* The default length codec at its exact limit: 16 MiB in, 16 MiB out, in 64 KiB feeds;
     * one byte more is refused by both sides. */
    struct tcpmsg_codec c;
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, NULL), 0);
    size_t max = (size_t)tcpmsg_codec_max_payload(&c);
    uint8_t *stream = malloc(max + 4);
    ck_assert_ptr_nonnull(stream);
    for (size_t i = 0; i < max; i++)
        stream[4 + i] = (uint8_t)(i * 7);
    ck_assert_int_eq(tcpmsg_codec_write(&c, stream + 4, max, stream, 4), -ENOBUFS);
    struct tcpmsg_encoded e;
    ck_assert_int_eq(tcpmsg_codec_encode(&c, stream + 4, max, &e), 0);
    memcpy(stream, e.head, 4);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, stream + 4, max + 1, &e), -EMSGSIZE);

    struct tu_decoded got;
    tu_decode_stream(&c, stream, max + 4, 65536, 0, &got);
    ck_assert_uint_eq(got.nframes, 1);
    ck_assert_uint_eq(got.len[0], max);
    ck_assert_mem_eq(got.frame[0], stream + 4, max);
    ck_assert_int_eq(got.end, TCPMSG_EOF);
    tu_decoded_free(&got);
    free(stream);
}
END_TEST

static Suite *
make_suite(void)
{
    Suite *s = suite_create("codec_props");
    TCase *t = tcase_create("props");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, round_trip_random);
    tcase_add_test(t, max_size_payload_16mib);
    suite_add_tcase(s, t);
    return s;
}

int
main(void)
{
    return tu_run(make_suite());
}
