/* The three codecs, case by case: tables of input bytes and the frames or error they must
 * give, each fed whole, one byte at a time and split in two at every offset, always placed
 * against a PROT_NONE page so that any over-read crashes. Plus configuration validation,
 * encoding, and the boundary cases of each codec. */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXF 6
struct ccase {
    const char *name;
    struct tu_bytes in;
    int nframes;
    struct tu_bytes frames[MAXF];
    ptrdiff_t end; /* TCPMSG_EOF or the error */
    size_t left;   /* bytes left at an -EPROTO end of stream */
};

static void
check_case(const struct tcpmsg_codec *c, const struct ccase *k)
{
    struct tu_decoded got;
    char what[160];

    /* Whole, byte by byte, and each two-piece split must give exactly the expected result. */
    for (size_t mode = 0; mode < k->in.n + 2; mode++) {
        size_t chunk = 0, split = 0;
        if (mode == 1)
            chunk = 1;
        else if (mode >= 2)
            split = mode - 1;
        if (split >= k->in.n && mode >= 2)
            break;
        tu_decode_stream(c, k->in.p, k->in.n, chunk, split, &got);
        snprintf(what, sizeof what, "case '%s' (%s %zu)", k->name,
                 mode == 0 ? "whole" : mode == 1 ? "bytewise" : "split at", split);
        ck_assert_msg(got.nframes == (size_t)k->nframes, "%s: %zu frames, expected %d", what,
                      got.nframes, k->nframes);
        for (int i = 0; i < k->nframes; i++) {
            ck_assert_msg(got.len[i] == k->frames[i].n, "%s: frame %d is %zu bytes, expected %zu",
                          what, i, got.len[i], k->frames[i].n);
            ck_assert_msg(memcmp(got.frame[i], k->frames[i].p, k->frames[i].n) == 0,
                          "%s: frame %d content", what, i);
        }
        ck_assert_msg(got.end == k->end, "%s: ended with %s, expected %s", what,
                      tcpmsg_errname((int)got.end), tcpmsg_errname((int)k->end));
        ck_assert_msg(got.left == k->left, "%s: left %zu, expected %zu", what, got.left, k->left);
        tu_decoded_free(&got);
    }
}

static void
run_table(const struct tcpmsg_codec *c, const struct ccase *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_case(c, &cases[i]);
}

#define NCASES(t) (sizeof(t) / sizeof((t)[0]))
#define EOF_OK TCPMSG_EOF

/* ---- length-prefixed -------------------------------------------------------------------- */

START_TEST(length_default)
{
    static const struct ccase cases[] = {
        {"one frame", B("\0\0\0\3abc"), 1, {B("abc")}, EOF_OK, 0},
        {"two frames", B("\0\0\0\3abc\0\0\0\0"), 2, {B("abc"), B("")}, EOF_OK, 0},
        {"empty payload", B("\0\0\0\0"), 1, {B("")}, EOF_OK, 0},
        {"empty stream", B(""), 0, {{0}}, EOF_OK, 0},
        {"binary payload", B("\0\0\0\4\0\n\r\xff"), 1, {B("\0\n\r\xff")}, EOF_OK, 0},
        {"eof mid-header", B("\0\0"), 0, {{0}}, -EPROTO, 2},
        {"eof mid-payload", B("\0\0\0\5ab"), 0, {{0}}, -EPROTO, 6},
        {"frame then eof mid-header", B("\0\0\0\1x\0\0"), 1, {B("x")}, -EPROTO, 2},
        {"max accepted, eof before payload", B("\x01\0\0\0"), 0, {{0}}, -EPROTO, 4},
        {"max+1 refused", B("\x01\0\0\x01"), 0, {{0}}, -EMSGSIZE, 0},
        {"0xFFFFFFFF refused", B("\xff\xff\xff\xff"), 0, {{0}}, -EMSGSIZE, 0},
        {"frame then oversize", B("\0\0\0\1z\x7f\0\0\0"), 1, {B("z")}, -EMSGSIZE, 0},
    };
    struct tcpmsg_codec c;
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, NULL), 0);
    ck_assert_uint_eq(tcpmsg_codec_max_payload(&c), 16u << 20);
    ck_assert_uint_eq(tcpmsg_codec_max_frame(&c), (16u << 20) + 4);
    run_table(&c, cases, NCASES(cases));
}
END_TEST

START_TEST(length_widths)
{
    struct tcpmsg_codec c;
    static const struct ccase w1[] = {
        {"w1", B("\x03" "abc\x00"), 2, {B("abc"), B("")}, EOF_OK, 0},
        {"w1 largest field value", B("\xff"), 0, {{0}}, -EPROTO, 1},
    };
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){.width = 1}), 0);
    ck_assert_uint_eq(tcpmsg_codec_max_payload(&c), 255);
    run_table(&c, w1, NCASES(w1));

    static const struct ccase w2[] = {
        {"w2", B("\0\2hi"), 1, {B("hi")}, EOF_OK, 0},
        {"w2 eof mid-field", B("\0"), 0, {{0}}, -EPROTO, 1},
    };
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){.width = 2}), 0);
    ck_assert_uint_eq(tcpmsg_codec_max_payload(&c), 65535);
    run_table(&c, w2, NCASES(w2));

    static const struct ccase w3[] = {
        {"w3", B("\0\0\2hi"), 1, {B("hi")}, EOF_OK, 0},
        {"w3 big endian order", B("\0\1\0"), 0, {{0}}, -EPROTO, 3},
    };
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){.width = 3}), 0);
    ck_assert_uint_eq(tcpmsg_codec_max_payload(&c), (1u << 24) - 1);
    run_table(&c, w3, NCASES(w3));

    static const struct ccase w8[] = {
        {"w8", B("\0\0\0\0\0\0\0\2hi"), 1, {B("hi")}, EOF_OK, 0},
        {"w8 2^63", B("\x80\0\0\0\0\0\0\0"), 0, {{0}}, -EMSGSIZE, 0},
        {"w8 2^64-1", B("\xff\xff\xff\xff\xff\xff\xff\xff"), 0, {{0}}, -EMSGSIZE, 0},
        {"w8 2^32", B("\0\0\0\1\0\0\0\0"), 0, {{0}}, -EMSGSIZE, 0},
    };
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){.width = 8}), 0);
    run_table(&c, w8, NCASES(w8));
}
END_TEST

START_TEST(length_little_endian)
{
    static const struct ccase cases[] = {
        {"le16", B("\2\0hi"), 1, {B("hi")}, EOF_OK, 0},
        {"le16 order", B("\0\1"), 0, {{0}}, -EMSGSIZE, 0}, /* 256 > max 100 */
    };
    struct tcpmsg_codec c;
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){
                                                      .width = 2, .little_endian = true,
                                                      .max_payload = 100}),
                     0);
    run_table(&c, cases, NCASES(cases));

    static const struct ccase le3[] = {{"le24", B("\2\0\0hi"), 1, {B("hi")}, EOF_OK, 0}};
    ck_assert_int_eq(tcpmsg_codec_init_length(
                         &c, &(struct tcpmsg_length_config){.width = 3, .little_endian = true}),
                     0);
    run_table(&c, le3, NCASES(le3));
}
END_TEST

START_TEST(length_offset_suffix_keep)
{
    /* The course's "fixed header giving type and size": u16 type, then u32 length. */
    static const struct ccase typed[] = {
        {"typed", B("\0\7\0\0\0\2hi\0\x09\0\0\0\0"), 2, {B("hi"), B("")}, EOF_OK, 0},
        {"typed eof inside type", B("\0"), 0, {{0}}, -EPROTO, 1},
        {"typed oversize", B("\0\7\x7f\0\0\0"), 0, {{0}}, -EMSGSIZE, 0},
    };
    struct tcpmsg_codec c;
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){.offset = 2}), 0);
    run_table(&c, typed, NCASES(typed));

    /* The type is read from the raw frame. */
    struct tcpmsg_decoder d = TCPMSG_DECODER_INIT;
    struct tcpmsg_frame f;
    const uint8_t *in = tu_guard_place("\x12\x34\0\0\0\2hi", 8);
    ck_assert_int_eq(tcpmsg_codec_decode(&c, &d, in, 8, &f), 8);
    ck_assert_ptr_eq(f.raw, in);
    ck_assert_ptr_eq(f.data, in + 6);
    ck_assert_uint_eq(f.len, 2);
    ck_assert_uint_eq((unsigned)(f.raw[0] << 8 | f.raw[1]), 0x1234);

    static const struct ccase keep[] = {
        {"keep", B("\0\7\0\0\0\2hi\xAA"), 1, {B("\0\7\0\0\0\2hi\xAA")}, EOF_OK, 0},
    };
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){
                                                      .offset = 2, .suffix = 1,
                                                      .keep_header = true}),
                     0);
    ck_assert_uint_eq(tcpmsg_codec_max_frame(&c), (16u << 20) + 7);
    run_table(&c, keep, NCASES(keep));
}
END_TEST

START_TEST(length_counts_frame)
{
    static const struct ccase cases[] = {
        {"whole frame", B("\0\0\0\6hi"), 1, {B("hi")}, EOF_OK, 0},
        {"header only", B("\0\0\0\4"), 1, {B("")}, EOF_OK, 0},
        {"smaller than header", B("\0\0\0\3"), 0, {{0}}, -EPROTO, 0},
        {"zero", B("\0\0\0\0"), 0, {{0}}, -EPROTO, 0},
        {"max", B("\0\0\0\x0e"), 0, {{0}}, -EPROTO, 4},  /* 10 payload bytes announced */
        {"max+1", B("\0\0\0\x0f"), 0, {{0}}, -EMSGSIZE, 0},
    };
    struct tcpmsg_codec c;
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){
                                                      .counts = TCPMSG_LENGTH_COUNTS_FRAME,
                                                      .max_payload = 10}),
                     0);
    run_table(&c, cases, NCASES(cases));

    /* With an offset and suffix the header is 2 + 2 + 1 bytes. */
    static const struct ccase hdr[] = {
        {"typed whole frame", B("\xAB\xCD\0\7\x01hi"), 1, {B("hi")}, EOF_OK, 0},
        {"typed too small", B("\xAB\xCD\0\4\x01"), 0, {{0}}, -EPROTO, 0},
    };
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){
                                                      .width = 2, .offset = 2, .suffix = 1,
                                                      .counts = TCPMSG_LENGTH_COUNTS_FRAME}),
                     0);
    ck_assert_uint_eq(tcpmsg_codec_max_payload(&c), 65535 - 5);
    run_table(&c, hdr, NCASES(hdr));
}
END_TEST

START_TEST(length_varint)
{
    static const struct ccase cases[] = {
        {"one byte", B("\x03" "abc"), 1, {B("abc")}, EOF_OK, 0},
        {"zero", B("\x00"), 1, {B("")}, EOF_OK, 0},
        /* A continuation byte promises at least 128 more: over this limit, whatever the
         * (here overlong) rest says. */
        {"overlong zero", B("\x80\x00"), 0, {{0}}, -EMSGSIZE, 0},
        {"overlong one", B("\x81\x00"), 0, {{0}}, -EMSGSIZE, 0},
        {"limit", B("\x64"), 0, {{0}}, -EPROTO, 1}, /* 100 = max: waits for the payload */
        {"over the limit", B("\x65"), 0, {{0}}, -EMSGSIZE, 0},
        {"incomplete and already too big", B("\x80\x80"), 0, {{0}}, -EMSGSIZE, 0},
    };
    struct tcpmsg_codec c;
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){
                                                      .varint = true, .max_payload = 200}),
                     0);
    /* With max 200, a continuation byte means at least 128 more: 0xe3 (99 + 128 = 227) is
     * refused at once, 0xc8 (72 + 128 = 200) may still fit. */
    static const struct ccase m200[] = {
        {"two bytes", B("\x80\x01"), 0, {{0}}, -EPROTO, 2}, /* 128 announced, none sent */
        {"two bytes too big", B("\xc9\x01"), 0, {{0}}, -EMSGSIZE, 0}, /* 201 */
        {"continuation already too big", B("\xe3"), 0, {{0}}, -EMSGSIZE, 0},
        {"continuation may fit", B("\xc8"), 0, {{0}}, -EPROTO, 1}, /* 72 + 128 = 200 */
    };
    run_table(&c, m200, NCASES(m200));

    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){
                                                      .varint = true, .max_payload = 100}),
                     0);
    run_table(&c, cases, NCASES(cases));

    /* Default limit: a 10-byte field that overflows 64 bits, one with 11 bytes. */
    static const struct ccase huge[] = {
        {"64-bit overflow", B("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02"), 0, {{0}},
         -EMSGSIZE, 0},
        {"128 bytes", B("\x80\x01"), 0, {{0}}, -EPROTO, 2},
    };
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){.varint = true}),
                     0);
    run_table(&c, huge, NCASES(huge));

    /* Even with the largest limit, a payload fits 63 bits, so 9 continuation bytes (at
     * least 2^63) are over it whatever follows: such fields never reach the 64-bit check. */
    ck_assert_int_eq(tcpmsg_codec_init_length(
                         &c, &(struct tcpmsg_length_config){.varint = true,
                                                            .max_payload = (uint64_t)PTRDIFF_MAX -
                                                                           10}),
                     0);
    static const struct ccase raw[] = {
        {"10th byte > 1", B("\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02"), 0, {{0}}, -EMSGSIZE,
         0},
        {"11 bytes", B("\x80\x80\x80\x80\x80\x80\x80\x80\x80\x81\x00"), 0, {{0}}, -EMSGSIZE,
         0},
        {"overlong 10 bytes", B("\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00"), 0, {{0}},
         -EMSGSIZE, 0},
        {"overlong 2 bytes", B("\xff\x00"), 0, {{0}}, -EPROTO, 0},
        {"largest 9-byte field", B("\xff\xff\xff\xff\xff\xff\xff\xff\x7f"), 0, {{0}},
         -EMSGSIZE, 0},
    };
    run_table(&c, raw, NCASES(raw));
}
END_TEST

START_TEST(length_varint_counts_frame)
{
    static const struct ccase cases[] = {
        {"frame of 3", B("\x03" "ab"), 1, {B("ab")}, EOF_OK, 0},
        {"header only", B("\x01"), 1, {B("")}, EOF_OK, 0},
        {"smaller than the header", B("\x00"), 0, {{0}}, -EPROTO, 0},
    };
    struct tcpmsg_codec c;
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){
                                                      .varint = true,
                                                      .counts = TCPMSG_LENGTH_COUNTS_FRAME}),
                     0);
    run_table(&c, cases, NCASES(cases));

    /* The field counts itself: 126 payload bytes + 1 = 127 fits one byte; 127 + 1 = 128
     * needs two, so the total is 129. */
    struct tcpmsg_encoded e;
    ck_assert_int_eq(tcpmsg_codec_encode(&c, NULL, 126, &e), 0);
    ck_assert_uint_eq(e.head_len, 1);
    ck_assert_uint_eq(e.head[0], 127);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, NULL, 127, &e), 0);
    ck_assert_uint_eq(e.head_len, 2);
    ck_assert_uint_eq(e.head[0], 0x81);
    ck_assert_uint_eq(e.head[1], 0x01);
}
END_TEST

START_TEST(length_config_invalid)
{
    struct tcpmsg_codec c;
    const struct tcpmsg_length_config bad[] = {
        {.width = 5},
        {.width = 9},
        {.width = 16},
        {.varint = true, .width = 4},
        {.varint = true, .little_endian = true},
        {.offset = 61},                                  /* 61 + 4 > 64 */
        {.offset = 30, .suffix = 31},                    /* 30 + 4 + 31 > 64 */
        {.varint = true, .offset = 30, .suffix = 25},    /* 30 + 10 + 25 > 64 */
        {.offset = (size_t)-1},                          /* no wrap-around */
        {.width = 1, .max_payload = 256},                /* the field cannot say 256 */
        {.width = 2, .max_payload = 65536},
        {.width = 1, .counts = TCPMSG_LENGTH_COUNTS_FRAME, .max_payload = 255},
        {.width = 1, .offset = 10, .counts = TCPMSG_LENGTH_COUNTS_FRAME, .max_payload = 245},
        {.width = 8, .max_payload = UINT64_MAX},
        {.counts = 7},
    };
    for (size_t i = 0; i < NCASES(bad); i++) {
        c.kind = 99;
        ck_assert_msg(tcpmsg_codec_init_length(&c, &bad[i]) == -EINVAL, "bad config %zu", i);
        ck_assert_int_eq(tcpmsg_codec_kind(&c), 0); /* left unusable */
        struct tcpmsg_decoder d = TCPMSG_DECODER_INIT;
        struct tcpmsg_frame f;
        ck_assert_int_eq(tcpmsg_codec_decode(&c, &d, "x", 1, &f), -EINVAL);
        struct tcpmsg_encoded e;
        ck_assert_int_eq(tcpmsg_codec_encode(&c, "x", 1, &e), -EINVAL);
    }
    ck_assert_int_eq(tcpmsg_codec_init_length(NULL, NULL), -EINVAL);

    /* The largest legal values are accepted. */
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){
                                                      .width = 1, .max_payload = 255}),
                     0);
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){
                                                      .width = 1, .offset = 62, .suffix = 1}),
                     0);
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){
                                                      .width = 1,
                                                      .counts = TCPMSG_LENGTH_COUNTS_FRAME}),
                     0);
    ck_assert_uint_eq(tcpmsg_codec_max_payload(&c), 254);
}
END_TEST

START_TEST(length_encode)
{
    struct tcpmsg_codec c;
    struct tcpmsg_encoded e;
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, NULL), 0);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "abc", 3, &e), 0);
    ck_assert_uint_eq(e.head_len, 4);
    ck_assert_mem_eq(e.head, "\0\0\0\3", 4);
    ck_assert_uint_eq(e.tail_len, 0);
    ck_assert_uint_eq(e.pad_len, 0);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, NULL, 16u << 20, &e), 0);
    ck_assert_mem_eq(e.head, "\x01\0\0\0", 4);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, NULL, (16u << 20) + 1, &e), -EMSGSIZE);
    ck_assert_uint_eq(tcpmsg_codec_frame_size(&c, 3), 7);
    ck_assert_uint_eq(tcpmsg_codec_frame_size(&c, (16u << 20) + 1), 0);

    uint8_t buf[16];
    ck_assert_int_eq(tcpmsg_codec_write(&c, "abc", 3, buf, sizeof buf), 7);
    ck_assert_mem_eq(buf, "\0\0\0\3abc", 7);
    ck_assert_int_eq(tcpmsg_codec_write(&c, "abc", 3, buf, 6), -ENOBUFS);
    ck_assert_int_eq(tcpmsg_codec_write(&c, NULL, 3, buf, sizeof buf), -EINVAL);

    /* Little endian, offset and suffix are zeroed for the caller. */
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){
                                                      .width = 2, .little_endian = true,
                                                      .offset = 1, .suffix = 2}),
                     0);
    memset(&e, 0xEE, sizeof e);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, NULL, 0x0102, &e), 0);
    ck_assert_uint_eq(e.head_len, 5);
    ck_assert_mem_eq(e.head, "\0\x02\x01\0\0", 5);

    /* Counting the whole frame. */
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){
                                                      .width = 3, .offset = 2,
                                                      .counts = TCPMSG_LENGTH_COUNTS_FRAME}),
                     0);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, NULL, 10, &e), 0);
    ck_assert_mem_eq(e.head, "\0\0\0\0\x0f", 5);

    /* The widest field with values past 32 bits. */
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){
                                                      .width = 8,
                                                      .max_payload = (uint64_t)1 << 40}),
                     0);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, NULL, (size_t)1 << 40, &e), 0);
    ck_assert_mem_eq(e.head, "\0\0\x01\0\0\0\0\0", 8);

    /* Varint: 300 = 0xAC 0x02. */
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){.varint = true}),
                     0);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, NULL, 300, &e), 0);
    ck_assert_uint_eq(e.head_len, 2);
    ck_assert_mem_eq(e.head, "\xac\x02", 2);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, NULL, 0, &e), 0);
    ck_assert_uint_eq(e.head_len, 1);
    ck_assert_uint_eq(e.head[0], 0);
}
END_TEST

/* ---- delimiter ------------------------------------------------------------------------- */

START_TEST(delim_bytes)
{
    static const struct ccase cases[] = {
        {"two frames", B("a\r\n\r\nb\r\n\r\n"), 2, {B("a"), B("b")}, EOF_OK, 0},
        {"delimiter at start", B("\r\n\r\nxy\r\n\r\n"), 2, {B(""), B("xy")}, EOF_OK, 0},
        {"lookalikes inside", B("a\r\nb\r\n\rc\r\n\r\n"), 1, {B("a\r\nb\r\n\rc")}, EOF_OK, 0},
        {"eof mid-delimiter", B("a\r\n\r"), 0, {{0}}, -EPROTO, 4},
        {"eof without delimiter", B("abc"), 0, {{0}}, -EPROTO, 3},
        {"exactly max", B("0123456789\r\n\r\n"), 1, {B("0123456789")}, EOF_OK, 0},
        {"max+1", B("0123456789X\r\n\r\n"), 0, {{0}}, -EMSGSIZE, 0},
        {"limit without delimiter", B("01234567890123"), 0, {{0}}, -EMSGSIZE, 0},
        {"just under the limit", B("0123456789012"), 0, {{0}}, -EPROTO, 13},
        {"max then partial delimiter", B("0123456789\r\n\r"), 0, {{0}}, -EPROTO, 13},
    };
    struct tcpmsg_codec c;
    ck_assert_int_eq(tcpmsg_codec_init_delim(&c, &(struct tcpmsg_delim_config){
                                                     .delim = "\r\n\r\n", .delim_len = 4,
                                                     .max_len = 10}),
                     0);
    ck_assert_uint_eq(tcpmsg_codec_max_frame(&c), 14);
    run_table(&c, cases, NCASES(cases));

    /* Binary-safe delimiter with NUL bytes. */
    static const struct ccase bin[] = {
        {"binary", B("a\0b\0\xff" "\0\xff"), 2, {B("a\0b"), B("")}, EOF_OK, 0},
        {"binary partial", B("\xff\0"), 0, {{0}}, -EPROTO, 2},
    };
    ck_assert_int_eq(tcpmsg_codec_init_delim(
                         &c, &(struct tcpmsg_delim_config){.delim = "\0\xff", .delim_len = 2}),
                     0);
    run_table(&c, bin, NCASES(bin));

    /* Self-overlapping delimiter: the first occurrence wins. */
    static const struct ccase ov[] = {
        {"overlapping", B("ababab"), 1, {B("")}, -EPROTO, 2},
        {"aab", B("xaaab"), 1, {B("xa")}, EOF_OK, 0},
    };
    ck_assert_int_eq(tcpmsg_codec_init_delim(
                         &c, &(struct tcpmsg_delim_config){.delim = "abab", .delim_len = 4}),
                     0);
    run_table(&c, ov, 1);
    ck_assert_int_eq(tcpmsg_codec_init_delim(
                         &c, &(struct tcpmsg_delim_config){.delim = "aab", .delim_len = 3}),
                     0);
    run_table(&c, ov + 1, 1);

    /* Keep the delimiter; the longest delimiter (16 bytes). */
    static const struct ccase keep[] = {{"keep", B("ab\0\xff"), 1, {B("ab\0\xff")}, EOF_OK, 0}};
    ck_assert_int_eq(tcpmsg_codec_init_delim(&c, &(struct tcpmsg_delim_config){
                                                     .delim = "\0\xff", .delim_len = 2,
                                                     .keep_delim = true}),
                     0);
    run_table(&c, keep, NCASES(keep));
    static const struct ccase d16[] = {
        {"16-byte delimiter", B("x0123456789abcdefy0123456789abcdef"), 2, {B("x"), B("y")},
         EOF_OK, 0},
    };
    ck_assert_int_eq(tcpmsg_codec_init_delim(&c, &(struct tcpmsg_delim_config){
                                                     .delim = "0123456789abcdef",
                                                     .delim_len = 16}),
                     0);
    run_table(&c, d16, NCASES(d16));
}
END_TEST

START_TEST(delim_lf)
{
    static const struct ccase cases[] = {
        {"lines", B("hello\nworld\n"), 2, {B("hello"), B("world")}, EOF_OK, 0},
        {"empty lines", B("\n\n"), 2, {B(""), B("")}, EOF_OK, 0},
        {"cr is data", B("abc\r\n"), 1, {B("abc\r")}, EOF_OK, 0},
        {"too long", B("hello!\n"), 0, {{0}}, -EMSGSIZE, 0},
        {"too long, no newline", B("hello!"), 0, {{0}}, -EMSGSIZE, 0},
        {"unterminated last line", B("a\nb"), 1, {B("a")}, -EPROTO, 1},
    };
    struct tcpmsg_codec c;
    ck_assert_int_eq(tcpmsg_codec_init_delim(&c, &(struct tcpmsg_delim_config){.max_len = 5}), 0);
    run_table(&c, cases, NCASES(cases));

    static const struct ccase partial[] = {
        {"unterminated delivered", B("a\nbc"), 2, {B("a"), B("bc")}, EOF_OK, 0},
        {"unterminated max", B("hello"), 1, {B("hello")}, EOF_OK, 0},
        {"terminated", B("a\n"), 1, {B("a")}, EOF_OK, 0},
    };
    ck_assert_int_eq(tcpmsg_codec_init_delim(&c, &(struct tcpmsg_delim_config){
                                                     .max_len = 5, .eof_partial = true}),
                     0);
    run_table(&c, partial, NCASES(partial));

    /* NULL config: LF lines, 16 MiB. */
    ck_assert_int_eq(tcpmsg_codec_init_delim(&c, NULL), 0);
    ck_assert_uint_eq(tcpmsg_codec_max_payload(&c), 16u << 20);
}
END_TEST

START_TEST(delim_any_eol)
{
    static const struct ccase cases[] = {
        {"crlf", B("abc\r\n"), 1, {B("abc")}, EOF_OK, 0},
        {"lf", B("abc\n"), 1, {B("abc")}, EOF_OK, 0},
        {"mixed", B("a\r\nb\nc\r\n"), 3, {B("a"), B("b"), B("c")}, EOF_OK, 0},
        {"lone cr is data", B("a\rb\n"), 1, {B("a\rb")}, EOF_OK, 0},
        {"cr cr lf", B("hell\r\r\n"), 1, {B("hell\r")}, EOF_OK, 0},
        {"empty crlf", B("\r\n"), 1, {B("")}, EOF_OK, 0},
        {"max with crlf", B("hello\r\n"), 1, {B("hello")}, EOF_OK, 0},
        {"max+1 with crlf", B("hello!\r\n"), 0, {{0}}, -EMSGSIZE, 0},
        {"max+1 with lf", B("hello!\n"), 0, {{0}}, -EMSGSIZE, 0},
        {"max+1, no eol yet", B("hello!"), 0, {{0}}, -EMSGSIZE, 0},
        {"max, cr pending", B("hello\r"), 0, {{0}}, -EPROTO, 6},
        {"eof mid crlf", B("ab\r"), 0, {{0}}, -EPROTO, 3},
    };
    struct tcpmsg_codec c;
    ck_assert_int_eq(tcpmsg_codec_init_delim(&c, &(struct tcpmsg_delim_config){
                                                     .mode = TCPMSG_DELIM_ANY_EOL, .max_len = 5}),
                     0);
    ck_assert_uint_eq(tcpmsg_codec_max_frame(&c), 7);
    run_table(&c, cases, NCASES(cases));

    static const struct ccase keep[] = {
        {"keep crlf", B("a\r\nb\n"), 2, {B("a\r\n"), B("b\n")}, EOF_OK, 0},
    };
    ck_assert_int_eq(tcpmsg_codec_init_delim(&c, &(struct tcpmsg_delim_config){
                                                     .mode = TCPMSG_DELIM_ANY_EOL,
                                                     .keep_delim = true}),
                     0);
    run_table(&c, keep, NCASES(keep));
}
END_TEST

START_TEST(delim_crlf_strict)
{
    static const struct ccase cases[] = {
        {"crlf", B("abc\r\ndef\r\n"), 2, {B("abc"), B("def")}, EOF_OK, 0},
        {"empty", B("\r\n"), 1, {B("")}, EOF_OK, 0},
        {"bare lf", B("abc\n"), 0, {{0}}, -EPROTO, 0},
        {"bare lf at start", B("\nabc\r\n"), 0, {{0}}, -EPROTO, 0},
        {"bare cr", B("a\rb\r\n"), 0, {{0}}, -EPROTO, 0},
        {"cr cr lf", B("a\r\r\n"), 0, {{0}}, -EPROTO, 0},
        {"line then bare lf", B("ok\r\nx\ny"), 1, {B("ok")}, -EPROTO, 0},
        {"max", B("hello\r\n"), 1, {B("hello")}, EOF_OK, 0},
        {"max+1", B("hello!\r\n"), 0, {{0}}, -EMSGSIZE, 0},
        {"limit without eol", B("hello!!"), 0, {{0}}, -EMSGSIZE, 0},
        {"eof mid crlf", B("abc\r"), 0, {{0}}, -EPROTO, 4},
        {"eof in line", B("abc"), 0, {{0}}, -EPROTO, 3},
    };
    struct tcpmsg_codec c;
    ck_assert_int_eq(tcpmsg_codec_init_delim(&c, &(struct tcpmsg_delim_config){
                                                     .mode = TCPMSG_DELIM_CRLF, .max_len = 5}),
                     0);
    run_table(&c, cases, NCASES(cases));

    /* eof_partial delivers an unterminated line, but not a line cut inside its CRLF. */
    static const struct ccase partial[] = {
        {"partial delivered", B("ok\r\nabc"), 2, {B("ok"), B("abc")}, EOF_OK, 0},
        {"partial cut in crlf", B("abc\r"), 0, {{0}}, -EPROTO, 4},
    };
    ck_assert_int_eq(tcpmsg_codec_init_delim(&c, &(struct tcpmsg_delim_config){
                                                     .mode = TCPMSG_DELIM_CRLF, .max_len = 5,
                                                     .eof_partial = true}),
                     0);
    run_table(&c, partial, NCASES(partial));
}
END_TEST

START_TEST(delim_config_invalid)
{
    struct tcpmsg_codec c;
    const struct tcpmsg_delim_config bad[] = {
        {.mode = TCPMSG_DELIM_BYTES, .delim = NULL, .delim_len = 1},
        {.mode = TCPMSG_DELIM_BYTES, .delim = "x", .delim_len = 0},
        {.mode = TCPMSG_DELIM_BYTES, .delim = "0123456789abcdefg", .delim_len = 17},
        {.mode = TCPMSG_DELIM_ANY_EOL, .delim = "x", .delim_len = 1},
        {.mode = TCPMSG_DELIM_LF, .delim_len = 1},
        {.mode = TCPMSG_DELIM_CRLF, .delim_len = 2},
        {.mode = (enum tcpmsg_delim_mode)42},
        {.mode = TCPMSG_DELIM_LF, .max_len = (size_t)-1},
    };
    for (size_t i = 0; i < NCASES(bad); i++)
        ck_assert_msg(tcpmsg_codec_init_delim(&c, &bad[i]) == -EINVAL, "bad delim config %zu", i);
    ck_assert_int_eq(tcpmsg_codec_init_delim(NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(delim_encode)
{
    struct tcpmsg_codec c;
    struct tcpmsg_encoded e;

    ck_assert_int_eq(tcpmsg_codec_init_delim(&c, &(struct tcpmsg_delim_config){.max_len = 5}), 0);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "hello", 5, &e), 0);
    ck_assert_uint_eq(e.head_len, 0);
    ck_assert_uint_eq(e.tail_len, 1);
    ck_assert_uint_eq(e.tail[0], '\n');
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "hello!", 6, &e), -EMSGSIZE);
    ck_assert_uint_eq(tcpmsg_codec_frame_size(&c, 5), 6);
    ck_assert_uint_eq(tcpmsg_codec_frame_size(&c, 6), 0); /* over the limit */
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "a\nb", 3, &e), -EINVAL);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "a\rb", 3, &e), 0); /* LF mode: CR is data */
    ck_assert_int_eq(tcpmsg_codec_encode(&c, NULL, 0, &e), 0);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, NULL, 1, &e), -EINVAL);

    ck_assert_int_eq(tcpmsg_codec_init_delim(
                         &c, &(struct tcpmsg_delim_config){.mode = TCPMSG_DELIM_ANY_EOL}),
                     0);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "a\rb", 3, &e), 0);
    ck_assert_uint_eq(e.tail_len, 1); /* replies end with "\n" */
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "ab\r", 3, &e), -EINVAL);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "a\nb", 3, &e), -EINVAL);

    ck_assert_int_eq(tcpmsg_codec_init_delim(
                         &c, &(struct tcpmsg_delim_config){.mode = TCPMSG_DELIM_CRLF}),
                     0);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "ab", 2, &e), 0);
    ck_assert_uint_eq(e.tail_len, 2);
    ck_assert_mem_eq(e.tail, "\r\n", 2);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "a\rb", 3, &e), -EINVAL);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "a\nb", 3, &e), -EINVAL);
    uint8_t buf[8];
    ck_assert_int_eq(tcpmsg_codec_write(&c, "ab", 2, buf, sizeof buf), 4);
    ck_assert_mem_eq(buf, "ab\r\n", 4);

    /* A multi-byte delimiter: inside the payload, and across the seam. */
    ck_assert_int_eq(tcpmsg_codec_init_delim(
                         &c, &(struct tcpmsg_delim_config){.delim = "abab", .delim_len = 4}),
                     0);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "xababy", 6, &e), -EINVAL);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "ab", 2, &e), -EINVAL);  /* "ab"+"abab" */
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "xab", 3, &e), -EINVAL); /* "xab"+"abab" */
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "aba", 3, &e), 0);       /* "abaabab": first at 3 */
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "b", 1, &e), 0);
    ck_assert_int_eq(tcpmsg_codec_init_delim(
                         &c, &(struct tcpmsg_delim_config){.delim = "aab", .delim_len = 3}),
                     0);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "xa", 2, &e), 0); /* "xaaab": first at 2 */
    ck_assert_uint_eq(tcpmsg_codec_frame_size(&c, 2), 5);
}
END_TEST

/* ---- fixed-size records ----------------------------------------------------------------- */

START_TEST(fixed_records)
{
    static const struct ccase cases[] = {
        {"two records", B("abcdefgh"), 2, {B("abcd"), B("efgh")}, EOF_OK, 0},
        {"binary", B("\0\0\0\0"), 1, {B("\0\0\0\0")}, EOF_OK, 0},
        {"partial record", B("abcde"), 1, {B("abcd")}, -EPROTO, 1},
        {"empty stream", B(""), 0, {{0}}, EOF_OK, 0},
    };
    struct tcpmsg_codec c;
    ck_assert_int_eq(tcpmsg_codec_init_fixed(&c, &(struct tcpmsg_fixed_config){.size = 4}), 0);
    ck_assert_uint_eq(tcpmsg_codec_max_frame(&c), 4);
    run_table(&c, cases, NCASES(cases));

    static const struct ccase one[] = {{"size 1", B("xyz"), 3, {B("x"), B("y"), B("z")}, EOF_OK, 0}};
    ck_assert_int_eq(tcpmsg_codec_init_fixed(&c, &(struct tcpmsg_fixed_config){.size = 1}), 0);
    run_table(&c, one, NCASES(one));
}
END_TEST

START_TEST(fixed_encode)
{
    struct tcpmsg_codec c;
    struct tcpmsg_encoded e;
    ck_assert_int_eq(tcpmsg_codec_init_fixed(&c, NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_codec_init_fixed(NULL, &(struct tcpmsg_fixed_config){.size = 4}),
                     -EINVAL);
    ck_assert_int_eq(tcpmsg_codec_init_fixed(&c, &(struct tcpmsg_fixed_config){.size = 0}),
                     -EINVAL);
    ck_assert_int_eq(tcpmsg_codec_init_fixed(&c, &(struct tcpmsg_fixed_config){.size = 4}), 0);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "abcd", 4, &e), 0);
    ck_assert_uint_eq(e.head_len + e.tail_len + e.pad_len, 0);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "abc", 3, &e), -EINVAL);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "abcde", 5, &e), -EMSGSIZE);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "abcd", 4, NULL), -EINVAL);
    uint8_t four[4];
    ck_assert_int_eq(tcpmsg_codec_write(&c, "abcde", 5, four, sizeof four), -EMSGSIZE);
    ck_assert_uint_eq(tcpmsg_codec_frame_size(&c, 3), 0);

    /* Padding, including an empty record. */
    ck_assert_int_eq(tcpmsg_codec_init_fixed(
                         &c, &(struct tcpmsg_fixed_config){.size = 4, .pad = true, .pad_byte = '.'}),
                     0);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "ab", 2, &e), 0);
    ck_assert_uint_eq(e.pad_len, 2);
    ck_assert_uint_eq(e.pad_byte, '.');
    uint8_t buf[8];
    ck_assert_int_eq(tcpmsg_codec_write(&c, "ab", 2, buf, sizeof buf), 4);
    ck_assert_mem_eq(buf, "ab..", 4);
    ck_assert_int_eq(tcpmsg_codec_write(&c, NULL, 0, buf, sizeof buf), 4);
    ck_assert_mem_eq(buf, "....", 4);
    ck_assert_uint_eq(tcpmsg_codec_frame_size(&c, 0), 4);
    ck_assert_int_eq(tcpmsg_codec_encode(&c, "abcde", 5, &e), -EMSGSIZE);
}
END_TEST

/* ---- generic ------------------------------------------------------------------------------ */

START_TEST(decoder_sticky_and_reset)
{
    struct tcpmsg_codec c;
    struct tcpmsg_decoder d = TCPMSG_DECODER_INIT;
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_codec_init_length(&c, &(struct tcpmsg_length_config){
                                                      .width = 1, .max_payload = 3}),
                     0);
    ck_assert_int_eq(tcpmsg_codec_decode(&c, &d, "\x09", 1, &f), -EMSGSIZE);
    ck_assert_int_eq(tcpmsg_decoder_error(&d), -EMSGSIZE);
    /* Valid bytes afterwards do not clear it. */
    ck_assert_int_eq(tcpmsg_codec_decode(&c, &d, "\x01x", 2, &f), -EMSGSIZE);
    ck_assert_int_eq(tcpmsg_codec_finish(&c, &d, "", 0, &f), -EMSGSIZE);
    tcpmsg_decoder_init(&d);
    ck_assert_int_eq(tcpmsg_decoder_error(&d), 0);
    ck_assert_int_eq(tcpmsg_codec_decode(&c, &d, "\x01x", 2, &f), 2);
    ck_assert_uint_eq(f.len, 1);

    /* Bad arguments are not sticky. */
    ck_assert_int_eq(tcpmsg_codec_decode(&c, &d, NULL, 1, &f), -EINVAL);
    ck_assert_int_eq(tcpmsg_codec_decode(&c, &d, NULL, 0, &f), 0);
    ck_assert_int_eq(tcpmsg_codec_decode(&c, NULL, "x", 1, &f), -EINVAL);
    ck_assert_int_eq(tcpmsg_codec_decode(&c, &d, "x", 1, NULL), -EINVAL);
    ck_assert_int_eq(tcpmsg_decoder_error(&d), 0);

    /* The uninitialised codec. */
    struct tcpmsg_codec zero = {0};
    ck_assert_int_eq(tcpmsg_codec_decode(&zero, &d, "x", 1, &f), -EINVAL);
    ck_assert_uint_eq(tcpmsg_codec_max_frame(&zero), 0);
    ck_assert_uint_eq(tcpmsg_codec_frame_size(&zero, 1), 0);
    ck_assert_int_eq(tcpmsg_codec_kind(&zero), 0);
}
END_TEST

START_TEST(delim_one_byte_at_a_time_is_linear)
{
    /* A line arriving one byte at a time: the decoder resumes where it stopped, so the
     * total bytes searched stay ~n, not n^2/2. Measured through the scan position. */
    struct tcpmsg_codec c;
    struct tcpmsg_decoder d = TCPMSG_DECODER_INIT;
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_codec_init_delim(&c, &(struct tcpmsg_delim_config){
                                                     .delim = "END", .delim_len = 3}),
                     0);
    static char line[100003];
    memset(line, 'x', sizeof line);
    memcpy(line + 100000, "END", 3);
    for (size_t n = 1; n < sizeof line; n++) {
        ck_assert_int_eq(tcpmsg_codec_decode(&c, &d, line, n, &f), 0);
        /* Everything but the last delimiter-length-minus-one bytes is done with. */
        ck_assert_uint_eq(d.scanned, n >= 2 ? n - 2 : 0);
    }
    ck_assert_int_eq(tcpmsg_codec_decode(&c, &d, line, sizeof line, &f), (ptrdiff_t)sizeof line);
    ck_assert_uint_eq(f.len, 100000);

    /* Proof that searched bytes are not searched again: the contract says they do not
     * change, so a delimiter planted in them afterwards is not seen by a decoder that
     * resumes (a rescanning one would find it). The last dlen - 1 bytes are searched again,
     * since a delimiter may start there. */
    char buf[16];
    tcpmsg_decoder_init(&d);
    memcpy(buf, "xxxxxx", 6);
    ck_assert_int_eq(tcpmsg_codec_decode(&c, &d, buf, 6, &f), 0);
    memcpy(buf, "ENDxEN", 6); /* planted in the searched part, and a fresh start at 4 */
    buf[6] = 'D';
    ck_assert_int_eq(tcpmsg_codec_decode(&c, &d, buf, 7, &f), 7); /* found "END" at 4 */
    ck_assert_uint_eq(f.len, 4);

    struct tcpmsg_codec lf;
    ck_assert_int_eq(tcpmsg_codec_init_delim(&lf, NULL), 0);
    tcpmsg_decoder_init(&d);
    ck_assert_int_eq(tcpmsg_codec_decode(&lf, &d, "aaaa", 4, &f), 0);
    ck_assert_int_eq(tcpmsg_codec_decode(&lf, &d, "a\naaa", 5, &f), 0);
    ck_assert_int_eq(tcpmsg_codec_decode(&lf, &d, "a\naaa\n", 6, &f), 6);
}
END_TEST

/* ---- framing specifications as text ------------------------------------------------------ */

START_TEST(no_bytes_as_null)
{
    /* A connection with nothing buffered passes NULL and 0: every codec and every mode says
     * "need more" (decode) or "clean end" (finish), without touching the pointer. */
    static const char *specs[] = {"len32", "varint", "line", "lf", "crlf", "delim:0d0a", "fixed:4"};
    for (size_t i = 0; i < NCASES(specs); i++) {
        struct tcpmsg_codec c;
        struct tcpmsg_decoder d = TCPMSG_DECODER_INIT;
        struct tcpmsg_frame f;
        ck_assert_int_eq(tcpmsg_codec_parse(&c, specs[i], 0), 0);
        ck_assert_int_eq(tcpmsg_codec_decode(&c, &d, NULL, 0, &f), 0);
        ck_assert_int_eq(tcpmsg_codec_finish(&c, &d, NULL, 0, &f), TCPMSG_EOF);
    }
}
END_TEST

START_TEST(parse_specs)
{
    /* Each spec frames "ab" as exactly these bytes, and its limit is the expected one. */
    static const struct {
        const char *spec;
        uint64_t max;
        const char *wire;
        size_t wire_len;
        uint64_t max_payload;
    } ok[] = {
        /* clang-format off */
        {"len8",       0,    "\x02" "ab",                             3,  255},
        {"len16",      0,    "\x00\x02" "ab",                         4,  65535},
        {"len24",      1000, "\x00\x00\x02" "ab",                     5,  1000},
        {"len32",      0,    "\x00\x00\x00\x02" "ab",                 6,  16777216},
        {"len32le",    0,    "\x02\x00\x00\x00" "ab",                 6,  16777216},
        {"len64",      7,    "\x00\x00\x00\x00\x00\x00\x00\x02" "ab", 10, 7},
        {"varint",     0,    "\x02" "ab",                             3,  16777216},
        {"line",       0,    "ab\n",                                  3,  16777216},
        {"lf",         10,   "ab\n",                                  3,  10},
        {"crlf",       0,    "ab\r\n",                                4,  16777216},
        {"delim:00",   0,    "ab\0",                                  3,  16777216},
        {"delim:0D0a", 0,    "ab\r\n",                                4,  16777216},
        {"fixed:2",    0,    "ab",                                    2,  2},
        /* clang-format on */
    };
    for (size_t i = 0; i < NCASES(ok); i++) {
        struct tcpmsg_codec c;
        unsigned char w[32];
        ck_assert_msg(tcpmsg_codec_parse(&c, ok[i].spec, ok[i].max) == 0, "%s", ok[i].spec);
        ck_assert_int_eq(tcpmsg_codec_write(&c, "ab", 2, w, sizeof w), (ptrdiff_t)ok[i].wire_len);
        ck_assert_msg(memcmp(w, ok[i].wire, ok[i].wire_len) == 0, "%s: wire bytes", ok[i].spec);
        ck_assert_uint_eq(tcpmsg_codec_max_payload(&c), ok[i].max_payload);
    }
    /* "line" accepts CRLF as well as LF; "lf" keeps the CR. */
    struct tcpmsg_codec c;
    struct tcpmsg_decoder d = TCPMSG_DECODER_INIT;
    struct tcpmsg_frame f;
    ck_assert_int_eq(tcpmsg_codec_parse(&c, "line", 0), 0);
    ck_assert_int_eq(tcpmsg_codec_decode(&c, &d, "ab\r\n", 4, &f), 4);
    ck_assert_uint_eq(f.len, 2);
    ck_assert_int_eq(tcpmsg_codec_parse(&c, "lf", 0), 0);
    tcpmsg_decoder_init(&d);
    ck_assert_int_eq(tcpmsg_codec_decode(&c, &d, "ab\r\n", 4, &f), 4);
    ck_assert_uint_eq(f.len, 3);

    static const char *bad[] = {"",
                                "len",
                                "len12",
                                "len32be",
                                "len32lee",
                                "LEN32",
                                "lines",
                                "delim:",
                                "delim:0",
                                "delim:zz",
                                "delim:00112233445566778899aabbccddeeff00",
                                "fixed:",
                                "fixed:0",
                                "fixed:-1",
                                "fixed:1x",
                                "fixed: 1",
                                "fixed:99999999999999999999",
                                "varint:4"};
    for (size_t i = 0; i < NCASES(bad); i++) {
        c.kind = 7;
        ck_assert_msg(tcpmsg_codec_parse(&c, bad[i], 0) == -EINVAL, "'%s' accepted", bad[i]);
        ck_assert_int_eq(tcpmsg_codec_kind(&c), 0);
    }
    ck_assert_int_eq(tcpmsg_codec_parse(&c, "len16", 100000), -EINVAL); /* field too narrow */
    ck_assert_int_eq(tcpmsg_codec_parse(&c, "fixed:100", 10), -EMSGSIZE);
    ck_assert_int_eq(tcpmsg_codec_parse(&c, NULL, 0), -EINVAL);
    ck_assert_int_eq(tcpmsg_codec_parse(NULL, "len32", 0), -EINVAL);
}
END_TEST

static Suite *
make_suite(void)
{
    Suite *s = suite_create("codec");
    TCase *t = tcase_create("length");
    tcase_add_test(t, length_default);
    tcase_add_test(t, length_widths);
    tcase_add_test(t, length_little_endian);
    tcase_add_test(t, length_offset_suffix_keep);
    tcase_add_test(t, length_counts_frame);
    tcase_add_test(t, length_varint);
    tcase_add_test(t, length_varint_counts_frame);
    tcase_add_test(t, length_config_invalid);
    tcase_add_test(t, length_encode);
    suite_add_tcase(s, t);

    t = tcase_create("delim");
    tcase_add_test(t, delim_bytes);
    tcase_add_test(t, delim_lf);
    tcase_add_test(t, delim_any_eol);
    tcase_add_test(t, delim_crlf_strict);
    tcase_add_test(t, delim_config_invalid);
    tcase_add_test(t, delim_encode);
    tcase_add_test(t, delim_one_byte_at_a_time_is_linear);
    suite_add_tcase(s, t);

    t = tcase_create("fixed");
    tcase_add_test(t, fixed_records);
    tcase_add_test(t, fixed_encode);
    suite_add_tcase(s, t);

    t = tcase_create("generic");
    tcase_add_test(t, decoder_sticky_and_reset);
    tcase_add_test(t, parse_specs);
    tcase_add_test(t, no_bytes_as_null);
    suite_add_tcase(s, t);
    return s;
}

int
main(void)
{
    return tu_run(make_suite());
}
