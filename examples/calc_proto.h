/* The protocol of tcpmsg-calc-server, tcpmsg-calc and python/calc_client.py: typed binary
 * requests and replies, every value in network byte order.
 *
 * Every frame is  [u16 type][u32 length][length bytes of body]  (big endian): the course's
 * "fixed header giving type and size", a length-prefixed codec with a 2-byte offset.
 * A number is  [u8 tag][8 bytes]:  tag 'i' is an int64 (two's complement), tag 'd' an
 * IEEE 754 binary64 (its bit pattern).
 *   request  CALC_ADD, CALC_SUB, CALC_MUL, CALC_DIV, CALC_MOD   body: two numbers
 *   reply    CALC_RESULT   body: one number
 *            CALC_ERROR    body: the reason, as text
 * Two integers give an integer (division truncates toward zero, as in C) or an error on
 * overflow or division by zero; a double on either side gives a double (IEEE rules).
 */
#ifndef TCPMSG_EXAMPLES_CALC_PROTO_H
#define TCPMSG_EXAMPLES_CALC_PROTO_H

#include <tcpmsg.h>

#include <stdbool.h>
#include <stdint.h>

enum {
    CALC_ADD = 1,
    CALC_SUB = 2,
    CALC_MUL = 3,
    CALC_DIV = 4,
    CALC_MOD = 5,
    CALC_RESULT = 0x8000,
    CALC_ERROR = 0x8001,
};

#define CALC_NUMBER_SIZE 9 /* tag + 8 bytes */

struct calc_number {
    bool is_double;
    int64_t i;
    double d;
};

static inline int
calc_codec(struct tcpmsg_codec *c)
{
    struct tcpmsg_length_config lc = {.offset = 2, .max_payload = 4096};
    return tcpmsg_codec_init_length(c, &lc);
}

static inline uint16_t
calc_type(const struct tcpmsg_frame *f)
{
    return f->raw_len >= 2 ? tcpmsg_wire_get_u16(f->raw) : 0;
}

static inline void
calc_write_number(struct tcpmsg_wire_writer *w, const struct calc_number *n)
{
    tcpmsg_wire_write_u8(w, n->is_double ? 'd' : 'i');
    if (n->is_double)
        tcpmsg_wire_write_f64(w, n->d);
    else
        tcpmsg_wire_write_i64(w, n->i);
}

/* Reads one number; false for an unknown tag or too few bytes (the reader is then not ok). */
static inline bool
calc_read_number(struct tcpmsg_wire_reader *r, struct calc_number *n)
{
    uint8_t tag = tcpmsg_wire_read_u8(r);
    *n = (struct calc_number){.is_double = tag == 'd'};
    if (n->is_double)
        n->d = tcpmsg_wire_read_f64(r);
    else
        n->i = tcpmsg_wire_read_i64(r);
    return tcpmsg_wire_reader_ok(r) && (tag == 'd' || tag == 'i');
}

#endif
