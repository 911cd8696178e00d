/* tcpmsg/wire.h against byte vectors written by hand and against Python's struct.pack. */
#include "testutil.h"

#include "tcpmsg/wire.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

START_TEST(hand_vectors)
{
    uint8_t b[16];
    /* The course's question: "did I receive 0x1234abcd or 0xcdab3412?" */
    ck_assert_ptr_eq(tcpmsg_wire_put_u32(b, 0x1234abcd), b + 4);
    ck_assert_mem_eq(b, "\x12\x34\xab\xcd", 4);
    ck_assert_uint_eq(tcpmsg_wire_get_u32(b), 0x1234abcd);
    ck_assert_uint_eq(tcpmsg_wire_get_u32_le(b), 0xcdab3412);

    ck_assert_ptr_eq(tcpmsg_wire_put_u8(b, 0xfe), b + 1);
    ck_assert_uint_eq(b[0], 0xfe);
    ck_assert_ptr_eq(tcpmsg_wire_put_u16(b, 0x0102), b + 2);
    ck_assert_mem_eq(b, "\x01\x02", 2);
    ck_assert_ptr_eq(tcpmsg_wire_put_u24(b, 0x010203), b + 3);
    ck_assert_mem_eq(b, "\x01\x02\x03", 3);
    ck_assert_uint_eq(tcpmsg_wire_get_u24(b), 0x010203);
    ck_assert_ptr_eq(tcpmsg_wire_put_u64(b, 0x0102030405060708ull), b + 8);
    ck_assert_mem_eq(b, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    ck_assert_uint_eq(tcpmsg_wire_get_u64(b), 0x0102030405060708ull);
    ck_assert_uint_eq(tcpmsg_wire_get_u64_le(b), 0x0807060504030201ull);

    /* Two's complement. */
    tcpmsg_wire_put_i32(b, -2);
    ck_assert_mem_eq(b, "\xff\xff\xff\xfe", 4);
    ck_assert_int_eq(tcpmsg_wire_get_i32(b), -2);
    tcpmsg_wire_put_i16(b, INT16_MIN);
    ck_assert_mem_eq(b, "\x80\x00", 2);
    ck_assert_int_eq(tcpmsg_wire_get_i16(b), INT16_MIN);
    tcpmsg_wire_put_i8(b, -128);
    ck_assert_int_eq(tcpmsg_wire_get_i8(b), -128);
    tcpmsg_wire_put_i64(b, INT64_MIN);
    ck_assert_mem_eq(b, "\x80\0\0\0\0\0\0\0", 8);
    ck_assert(tcpmsg_wire_get_i64(b) == INT64_MIN);

    /* IEEE 754. */
    tcpmsg_wire_put_f32(b, 1.0f);
    ck_assert_mem_eq(b, "\x3f\x80\x00\x00", 4);
    tcpmsg_wire_put_f64(b, -2.0);
    ck_assert_mem_eq(b, "\xc0\x00\0\0\0\0\0\0", 8);
    ck_assert(tcpmsg_wire_get_f64(b) == -2.0);

    /* Little endian. */
    tcpmsg_wire_put_u16_le(b, 0x0102);
    ck_assert_mem_eq(b, "\x02\x01", 2);
    tcpmsg_wire_put_u32_le(b, 0x01020304);
    ck_assert_mem_eq(b, "\x04\x03\x02\x01", 4);
    tcpmsg_wire_put_u64_le(b, 1);
    ck_assert_mem_eq(b, "\x01\0\0\0\0\0\0\0", 8);
    ck_assert_uint_eq(tcpmsg_wire_get_u16_le(b), 1);

    /* Generic widths. */
    for (unsigned n = 1; n <= 8; n++) {
        uint64_t v = 0x0102030405060708ull >> (8 * (8 - n));
        ck_assert_ptr_eq(tcpmsg_wire_put_uint(b, v, n), b + n);
        ck_assert_uint_eq(tcpmsg_wire_get_uint(b, n), v);
        ck_assert_uint_eq(b[0], 1); /* most significant first */
        ck_assert_ptr_eq(tcpmsg_wire_put_uint_le(b, v, n), b + n);
        ck_assert_uint_eq(tcpmsg_wire_get_uint_le(b, n), v);
        ck_assert_uint_eq(b[0], n); /* least significant first */
    }

    /* Byte strings. */
    ck_assert_ptr_eq(tcpmsg_wire_put_bytes16(b, "hey", 3), b + 5);
    ck_assert_mem_eq(b, "\0\3hey", 5);
    ck_assert_ptr_eq(tcpmsg_wire_put_bytes32(b, NULL, 0), b + 4);
    ck_assert_mem_eq(b, "\0\0\0\0", 4);
}
END_TEST

static void
unhex(const char *hex, uint8_t *out, size_t *n)
{
    *n = 0;
    if (strcmp(hex, "-") == 0)
        return;
    for (; hex[0] && hex[1]; hex += 2) {
        unsigned v;
        ck_assert_int_eq(sscanf(hex, "%2x", &v), 1);
        out[(*n)++] = (uint8_t)v;
    }
}

START_TEST(python_struct_vectors)
{
    FILE *f = popen("python3 " TCPMSG_TEST_SRCDIR "/wire_vectors.py", "r");
    ck_assert_ptr_nonnull(f);
    char kind[8], value[1024], hex[1100];
    uint8_t want[600], got[600];
    size_t wn, lines = 0;
    while (fscanf(f, "%7s %1023s %1099s", kind, value, hex) == 3) {
        lines++;
        unhex(hex, want, &wn);
        memset(got, 0xAA, sizeof got);
        uint8_t *end = got;
        if (kind[0] == 'u') {
            uint64_t v = strtoull(value, NULL, 10);
            if (!strcmp(kind, "u8")) {
                end = tcpmsg_wire_put_u8(got, (uint8_t)v);
                ck_assert_uint_eq(tcpmsg_wire_get_u8(want), v);
            } else if (!strcmp(kind, "u16")) {
                end = tcpmsg_wire_put_u16(got, (uint16_t)v);
                ck_assert_uint_eq(tcpmsg_wire_get_u16(want), v);
            } else if (!strcmp(kind, "u32")) {
                end = tcpmsg_wire_put_u32(got, (uint32_t)v);
                ck_assert_uint_eq(tcpmsg_wire_get_u32(want), v);
            } else {
                end = tcpmsg_wire_put_u64(got, v);
                ck_assert_uint_eq(tcpmsg_wire_get_u64(want), v);
            }
        } else if (kind[0] == 'i') {
            int64_t v = strtoll(value, NULL, 10);
            if (!strcmp(kind, "i8")) {
                end = tcpmsg_wire_put_i8(got, (int8_t)v);
                ck_assert_int_eq(tcpmsg_wire_get_i8(want), v);
            } else if (!strcmp(kind, "i16")) {
                end = tcpmsg_wire_put_i16(got, (int16_t)v);
                ck_assert_int_eq(tcpmsg_wire_get_i16(want), v);
            } else if (!strcmp(kind, "i32")) {
                end = tcpmsg_wire_put_i32(got, (int32_t)v);
                ck_assert_int_eq(tcpmsg_wire_get_i32(want), v);
            } else {
                end = tcpmsg_wire_put_i64(got, v);
                ck_assert(tcpmsg_wire_get_i64(want) == v);
            }
        } else if (!strcmp(kind, "f64")) {
            double v = strtod(value, NULL);
            end = tcpmsg_wire_put_f64(got, v);
            double back = tcpmsg_wire_get_f64(want);
            ck_assert(isnan(v) ? isnan(back) : back == v);
        } else if (!strcmp(kind, "f32")) {
            float v = (float)strtod(value, NULL);
            end = tcpmsg_wire_put_f32(got, v);
            float back = tcpmsg_wire_get_f32(want);
            ck_assert(isnan(v) ? isnan(back) : back == v);
        } else {
            uint8_t s[300];
            size_t sn;
            unhex(value, s, &sn);
            if (!strcmp(kind, "s16"))
                end = tcpmsg_wire_put_bytes16(got, s, (uint16_t)sn);
            else
                end = tcpmsg_wire_put_bytes32(got, s, (uint32_t)sn);
        }
        ck_assert_msg((size_t)(end - got) == wn && memcmp(got, want, wn) == 0,
                      "%s %s: bytes differ from struct.pack (%s)", kind, value, hex);
    }
    ck_assert_int_eq(pclose(f), 0);
    ck_assert_uint_gt(lines, 400); /* the script really ran */
}
END_TEST

START_TEST(reader_bounds)
{
    const uint8_t msg[] = "\x00\x07" "\x00\x03" "abc" "\x3f\x80\x00\x00" "\xff";
    struct tcpmsg_wire_reader r;
    tcpmsg_wire_reader_init(&r, msg, sizeof msg - 1);
    ck_assert_uint_eq(tcpmsg_wire_reader_left(&r), 12);
    ck_assert_uint_eq(tcpmsg_wire_read_u16(&r), 7);
    size_t n;
    const uint8_t *s = tcpmsg_wire_read_bytes16(&r, &n);
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(s, "abc", 3);
    ck_assert(tcpmsg_wire_read_f32(&r) == 1.0f);
    ck_assert_int_eq(tcpmsg_wire_read_i8(&r), -1);
    ck_assert(tcpmsg_wire_reader_ok(&r));
    ck_assert_uint_eq(tcpmsg_wire_reader_left(&r), 0);
    /* Past the end: zero values, sticky flag. */
    ck_assert_uint_eq(tcpmsg_wire_read_u32(&r), 0);
    ck_assert(!tcpmsg_wire_reader_ok(&r));
    ck_assert_uint_eq(tcpmsg_wire_read_u8(&r), 0);
    ck_assert(!tcpmsg_wire_reader_ok(&r));

    /* A byte string whose prefix lies about its length takes nothing. */
    const uint8_t *lie = tu_guard_place("\xff\xff" "ab", 4);
    tcpmsg_wire_reader_init(&r, lie, 4);
    ck_assert_ptr_null(tcpmsg_wire_read_bytes16(&r, &n));
    ck_assert_uint_eq(n, 0);
    ck_assert(!tcpmsg_wire_reader_ok(&r));
    lie = tu_guard_place("\xff\xff\xff\xff" "ab", 6);
    tcpmsg_wire_reader_init(&r, lie, 6);
    ck_assert_ptr_null(tcpmsg_wire_read_bytes32(&r, &n));
    ck_assert(!tcpmsg_wire_reader_ok(&r));

    /* A read that does not fit leaves the bytes for nobody: 3 bytes, read a u32. */
    const uint8_t *three = tu_guard_place("abc", 3);
    tcpmsg_wire_reader_init(&r, three, 3);
    ck_assert_uint_eq(tcpmsg_wire_read_u32(&r), 0);
    ck_assert_uint_eq(tcpmsg_wire_reader_left(&r), 0);
    ck_assert_ptr_null(tcpmsg_wire_read_raw(&r, 0)); /* sticky, even for 0 bytes */
}
END_TEST

START_TEST(writer_bounds)
{
    uint8_t buf[10];
    struct tcpmsg_wire_writer w;
    tcpmsg_wire_writer_init(&w, buf, sizeof buf);
    ck_assert(tcpmsg_wire_write_u16(&w, 0x0102));
    ck_assert(tcpmsg_wire_write_i32(&w, -1));
    ck_assert(tcpmsg_wire_write_bytes16(&w, "ab", 2));
    ck_assert_uint_eq(tcpmsg_wire_writer_len(&w), 10);
    ck_assert_mem_eq(buf, "\x01\x02\xff\xff\xff\xff\x00\x02" "ab", 10);
    ck_assert(tcpmsg_wire_writer_ok(&w));
    ck_assert(!tcpmsg_wire_write_u8(&w, 1));
    ck_assert(!tcpmsg_wire_writer_ok(&w));
    ck_assert_uint_eq(tcpmsg_wire_writer_len(&w), 10);

    tcpmsg_wire_writer_init(&w, buf, 4);
    ck_assert(!tcpmsg_wire_write_f64(&w, 1.0)); /* does not fit: nothing written */
    ck_assert_uint_eq(tcpmsg_wire_writer_len(&w), 0);
    ck_assert(!tcpmsg_wire_write_u8(&w, 1)); /* sticky */

    tcpmsg_wire_writer_init(&w, buf, sizeof buf);
    ck_assert(!tcpmsg_wire_write_bytes16(&w, buf, 70000)); /* over the u16 prefix */
    ck_assert(!tcpmsg_wire_writer_ok(&w));
    tcpmsg_wire_writer_init(&w, buf, sizeof buf);
    ck_assert(tcpmsg_wire_write_bytes32(&w, "abcdef", 6));
    ck_assert_mem_eq(buf, "\0\0\0\6abcdef", 10);
    ck_assert(tcpmsg_wire_write_u64(&w, 0) == false);

    /* Write then read back every type. */
    uint8_t big[64];
    tcpmsg_wire_writer_init(&w, big, sizeof big);
    tcpmsg_wire_write_u8(&w, 200);
    tcpmsg_wire_write_u32(&w, 4000000000u);
    tcpmsg_wire_write_u64(&w, UINT64_MAX);
    tcpmsg_wire_write_i16(&w, -300);
    tcpmsg_wire_write_i64(&w, INT64_MIN + 1);
    tcpmsg_wire_write_f32(&w, -0.25f);
    tcpmsg_wire_write_f64(&w, 6.02214076e23);
    ck_assert(tcpmsg_wire_writer_ok(&w));
    struct tcpmsg_wire_reader r;
    tcpmsg_wire_reader_init(&r, big, tcpmsg_wire_writer_len(&w));
    ck_assert_uint_eq(tcpmsg_wire_read_u8(&r), 200);
    ck_assert_uint_eq(tcpmsg_wire_read_u32(&r), 4000000000u);
    ck_assert_uint_eq(tcpmsg_wire_read_u64(&r), UINT64_MAX);
    ck_assert_int_eq(tcpmsg_wire_read_i16(&r), -300);
    ck_assert(tcpmsg_wire_read_i64(&r) == INT64_MIN + 1);
    ck_assert(tcpmsg_wire_read_f32(&r) == -0.25f);
    ck_assert(tcpmsg_wire_read_f64(&r) == 6.02214076e23);
    ck_assert(tcpmsg_wire_reader_ok(&r));
    ck_assert_uint_eq(tcpmsg_wire_reader_left(&r), 0);
}
END_TEST

static Suite *
make_suite(void)
{
    Suite *s = suite_create("wire");
    TCase *t = tcase_create("wire");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, hand_vectors);
    tcase_add_test(t, python_struct_vectors);
    tcase_add_test(t, reader_bounds);
    tcase_add_test(t, writer_bounds);
    suite_add_tcase(s, t);
    return s;
}

int
main(void)
{
    return tu_run(make_suite());
}
