/* Length-prefixed frames: [offset bytes][length field][suffix bytes][payload].
 *
 * The decoder reads the whole field in one go from the caller's buffer (no byte-by-byte
 * state machine) and checks the announced size against the limit the moment the field is
 * complete, before a single payload byte has to be buffered. All size arithmetic is done in
 * 64 bits and bounded by the limits validated at init, so no peer value can overflow it. */
#include "codec_internal.h"

#include "tcpmsg/wire.h"

#include <string.h>

/* Largest value a fixed-width field can hold. */
static uint64_t
field_capacity(unsigned width)
{
    return width >= 8 ? UINT64_MAX : ((uint64_t)1 << (8 * width)) - 1;
}

int
tcpmsg__length_init(struct tcpmsg_codec *c, const struct tcpmsg_length_config *cfg)
{
    static const struct tcpmsg_length_config defaults = {0};
    if (!cfg)
        cfg = &defaults;

    unsigned width = cfg->width;
    if (cfg->varint) {
        if (width != 0)
            return -EINVAL;
    } else if (width == 0) {
        width = 4;
    } else if (width != 1 && width != 2 && width != 3 && width != 4 && width != 8) {
        return -EINVAL;
    }
    if (cfg->counts != TCPMSG_LENGTH_COUNTS_PAYLOAD && cfg->counts != TCPMSG_LENGTH_COUNTS_FRAME)
        return -EINVAL;
    if (cfg->little_endian && cfg->varint)
        return -EINVAL; /* LEB128 has its own byte order */

    size_t field_max = cfg->varint ? TCPMSG_CODEC_VARINT_MAX : width;
    if (cfg->offset > TCPMSG_CODEC_HEAD_MAX || cfg->suffix > TCPMSG_CODEC_HEAD_MAX ||
        cfg->offset + field_max + cfg->suffix > TCPMSG_CODEC_HEAD_MAX)
        return -EINVAL;
    size_t head_max = cfg->offset + field_max + cfg->suffix;

    /* The largest payload the field can describe. When the field counts the whole frame, the
     * header takes its share; with a varint the header may be up to 10 bytes long. */
    uint64_t cap = cfg->varint ? UINT64_MAX : field_capacity(width);
    if (cfg->counts == TCPMSG_LENGTH_COUNTS_FRAME)
        cap -= head_max; /* never below 0: a field says at least 255, a head is <= 64 bytes */
    /* Frames must be addressable and their size must fit the ptrdiff_t decode returns. */
    if (cap > (uint64_t)PTRDIFF_MAX - head_max)
        cap = (uint64_t)PTRDIFF_MAX - head_max;

    uint64_t max = cfg->max_payload;
    if (max == 0)
        max = cap < TCPMSG_CODEC_DEFAULT_MAX ? cap : TCPMSG_CODEC_DEFAULT_MAX;
    else if (max > cap)
        return -EINVAL;

    memset(c, 0, sizeof *c);
    c->kind = TCPMSG_CODEC_LENGTH;
    c->flags =
        (uint8_t)((cfg->little_endian ? TCPMSG_CODEC__F_LE : 0) |
                  (cfg->varint ? TCPMSG_CODEC__F_VARINT : 0) |
                  (cfg->counts == TCPMSG_LENGTH_COUNTS_FRAME ? TCPMSG_CODEC__F_COUNTS_FRAME : 0) |
                  (cfg->keep_header ? TCPMSG_CODEC__F_KEEP : 0));
    c->width = (uint8_t)(cfg->varint ? 0 : width);
    c->offset = (uint8_t)cfg->offset;
    c->suffix = (uint8_t)cfg->suffix;
    c->max = max;
    return 0;
}

size_t
tcpmsg__length_head_max(const struct tcpmsg_codec *c)
{
    return (size_t)c->offset + (c->width ? c->width : TCPMSG_CODEC_VARINT_MAX) + c->suffix;
}

/* Parses a canonical unsigned LEB128 value from p[0..len).
 * Returns the field's size in bytes, 0 if incomplete, -EPROTO if it is longer than needed
 * (a trailing zero group) or does not fit 64 bits. `bound` is the smallest value that is
 * certainly too large: a field whose first bytes already imply a value >= bound fails with
 * -EMSGSIZE without waiting for its last byte. The verdict depends only on the bytes, never
 * on how they were split across calls. */
static int
varint_get(const uint8_t *p, size_t len, uint64_t bound, uint64_t *value)
{
    uint64_t v = 0;
    for (size_t i = 0; i < TCPMSG_CODEC_VARINT_MAX; i++) {
        /* After i continuation bytes, a non-zero group at position i is still to come. */
        if (i > 0 && v + ((uint64_t)1 << (7 * i)) >= bound)
            return -EMSGSIZE;
        if (i == len)
            return 0;
        uint8_t b = p[i];
        if (i == TCPMSG_CODEC_VARINT_MAX - 1 && b > 1)
            return -EPROTO; /* bits beyond 64, or a continuation past 10 bytes */
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if (b == 0 && i > 0)
                return -EPROTO; /* overlong: the encoder never writes these */
            *value = v;
            return (int)i + 1;
        }
    }
    return -EPROTO; /* not reached: the tenth byte either ends the field or fails above */
}

static size_t
varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *
varint_put(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* A big-endian field of the codec's width. */
static inline uint64_t
get_be(const uint8_t *p, unsigned width)
{
    switch (width) {
    case 4:
        return tcpmsg_wire_get_u32(p);
    case 2:
        return tcpmsg_wire_get_u16(p);
    case 1:
        return p[0];
    default:
        return tcpmsg_wire_get_uint(p, width);
    }
}

ptrdiff_t
tcpmsg__length_decode(const struct tcpmsg_codec *c, struct tcpmsg_decoder *d, const uint8_t *p,
                      size_t len, struct tcpmsg_frame *out)
{
    /* The common protocol, a big-endian payload length and nothing else, on a short path:
     * it is most of the cost of a small message. */
    if (c->flags == 0 && c->offset == 0 && c->suffix == 0) {
        const size_t w = c->width;
        if (len < w) {
            d->need = w;
            return 0;
        }
        uint64_t v = get_be(p, c->width);
        if (v > c->max)
            return tcpmsg__decoder_fail(d, -EMSGSIZE);
        const size_t total = w + (size_t)v;
        if (len < total) {
            d->need = total;
            return 0;
        }
        d->need = 0;
        out->raw = p;
        out->raw_len = total;
        out->data = p + w;
        out->len = (size_t)v;
        return (ptrdiff_t)total;
    }

    const size_t off = c->offset;
    const bool counts_frame = c->flags & TCPMSG_CODEC__F_COUNTS_FRAME;
    uint64_t v;
    size_t field;

    if (c->flags & TCPMSG_CODEC__F_VARINT) {
        if (len <= off) {
            d->need = off + 1;
            return 0;
        }
        /* The smallest field value that is surely over the limit; in frame-counting mode
         * the longest possible header is allowed for, so the early check never misfires. */
        uint64_t bound = c->max + 1 + (counts_frame ? tcpmsg__length_head_max(c) : 0);
        int r = varint_get(p + off, len - off, bound, &v);
        if (r < 0)
            return tcpmsg__decoder_fail(d, r);
        if (r == 0) {
            d->need = len + 1;
            return 0;
        }
        field = (size_t)r;
    } else {
        field = c->width;
        if (len < off + field) {
            d->need = off + field;
            return 0;
        }
        v = (c->flags & TCPMSG_CODEC__F_LE) ? tcpmsg_wire_get_uint_le(p + off, c->width)
                                            : get_be(p + off, c->width);
    }

    const size_t head = off + field + c->suffix;
    uint64_t payload = v;
    if (counts_frame) {
        if (v < head)
            return tcpmsg__decoder_fail(d, -EPROTO);
        payload = v - head;
    }
    if (payload > c->max)
        return tcpmsg__decoder_fail(d, -EMSGSIZE);

    const size_t total = head + (size_t)payload; /* <= PTRDIFF_MAX, validated at init */
    if (len < total) {
        d->need = total;
        return 0;
    }
    d->need = 0;
    out->raw = p;
    out->raw_len = total;
    if (c->flags & TCPMSG_CODEC__F_KEEP) {
        out->data = p;
        out->len = total;
    } else {
        out->data = p + head;
        out->len = (size_t)payload;
    }
    return (ptrdiff_t)total;
}

int
tcpmsg__length_encode(const struct tcpmsg_codec *c, size_t len, struct tcpmsg_encoded *out)
{
    if ((uint64_t)len > c->max)
        return -EMSGSIZE;

    uint8_t *h = out->head;
    if (c->flags == 0 && c->offset == 0 && c->suffix == 0) { /* as in decode */
        if (c->width == 4)
            tcpmsg_wire_put_u32(h, (uint32_t)len);
        else
            tcpmsg_wire_put_uint(h, len, c->width);
        out->head_len = c->width;
        return 0;
    }
    memset(h, 0, c->offset);
    h += c->offset;
    const size_t fixed = (size_t)c->offset + c->suffix;

    if (c->flags & TCPMSG_CODEC__F_VARINT) {
        uint64_t v = len;
        if (c->flags & TCPMSG_CODEC__F_COUNTS_FRAME) {
            /* The field counts itself: find the field size n with n == varint_len(total).
             * The total grows with n and varint_len grows with the total, so iterating
             * from n = 1 reaches the fixed point in at most a few steps. */
            size_t n = 1;
            while (varint_len(fixed + n + (uint64_t)len) != n)
                n = varint_len(fixed + n + (uint64_t)len);
            v = fixed + n + (uint64_t)len;
        }
        h = varint_put(h, v);
    } else {
        uint64_t v = len;
        if (c->flags & TCPMSG_CODEC__F_COUNTS_FRAME)
            v += fixed + c->width;
        h = (c->flags & TCPMSG_CODEC__F_LE) ? tcpmsg_wire_put_uint_le(h, v, c->width)
                                            : tcpmsg_wire_put_uint(h, v, c->width);
    }
    memset(h, 0, c->suffix);
    h += c->suffix;
    out->head_len = (size_t)(h - out->head);
    return 0;
}
