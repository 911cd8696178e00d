/* Internal interface between the generic codec entry points (codec.c) and the three codec
 * implementations. Not installed. */
#ifndef TCPMSG_CODEC_INTERNAL_H
#define TCPMSG_CODEC_INTERNAL_H

#include "tcpmsg/codec.h"

#include <errno.h>

/* struct tcpmsg_codec.flags */
enum {
    TCPMSG_CODEC__F_LE = 1 << 0,          /* length: little-endian field */
    TCPMSG_CODEC__F_VARINT = 1 << 1,      /* length: LEB128 field */
    TCPMSG_CODEC__F_COUNTS_FRAME = 1 << 2, /* length: the field counts the whole frame */
    TCPMSG_CODEC__F_KEEP = 1 << 3,        /* length/delim: deliver header / delimiter too */
    TCPMSG_CODEC__F_EOF_PARTIAL = 1 << 4, /* delim: deliver an unterminated last frame */
    TCPMSG_CODEC__F_PAD = 1 << 5          /* fixed: the encoder pads short payloads */
};

/* Records a framing error in the decoder, where it stays until tcpmsg_decoder_init(). */
static inline ptrdiff_t
tcpmsg__decoder_fail(struct tcpmsg_decoder *d, int code)
{
    d->err = code;
    return code;
}

int tcpmsg__length_init(struct tcpmsg_codec *c, const struct tcpmsg_length_config *cfg);
ptrdiff_t tcpmsg__length_decode(const struct tcpmsg_codec *c, struct tcpmsg_decoder *d,
                                const uint8_t *p, size_t len, struct tcpmsg_frame *out);
int tcpmsg__length_encode(const struct tcpmsg_codec *c, size_t len, struct tcpmsg_encoded *out);
size_t tcpmsg__length_head_max(const struct tcpmsg_codec *c);

int tcpmsg__delim_init(struct tcpmsg_codec *c, const struct tcpmsg_delim_config *cfg);
ptrdiff_t tcpmsg__delim_decode(const struct tcpmsg_codec *c, struct tcpmsg_decoder *d,
                               const uint8_t *p, size_t len, struct tcpmsg_frame *out);
ptrdiff_t tcpmsg__delim_finish(const struct tcpmsg_codec *c, struct tcpmsg_decoder *d,
                               const uint8_t *p, size_t len, struct tcpmsg_frame *out);
int tcpmsg__delim_encode(const struct tcpmsg_codec *c, const uint8_t *payload, size_t len,
                         struct tcpmsg_encoded *out);
size_t tcpmsg__delim_tail_len(const struct tcpmsg_codec *c);

int tcpmsg__fixed_init(struct tcpmsg_codec *c, const struct tcpmsg_fixed_config *cfg);
ptrdiff_t tcpmsg__fixed_decode(const struct tcpmsg_codec *c, const uint8_t *p, size_t len,
                               struct tcpmsg_frame *out);
int tcpmsg__fixed_encode(const struct tcpmsg_codec *c, size_t len, struct tcpmsg_encoded *out);

#endif
