/* The codec entry points: argument checks, sticky errors and dispatch to the three codecs. */
#include "codec_internal.h"

#include <string.h>

int
tcpmsg_codec_init_length(struct tcpmsg_codec *c, const struct tcpmsg_length_config *cfg)
{
    if (!c)
        return -EINVAL;
    c->kind = 0;
    return tcpmsg__length_init(c, cfg);
}

int
tcpmsg_codec_init_delim(struct tcpmsg_codec *c, const struct tcpmsg_delim_config *cfg)
{
    if (!c)
        return -EINVAL;
    c->kind = 0;
    return tcpmsg__delim_init(c, cfg);
}

int
tcpmsg_codec_init_fixed(struct tcpmsg_codec *c, const struct tcpmsg_fixed_config *cfg)
{
    if (!c)
        return -EINVAL;
    c->kind = 0;
    return tcpmsg__fixed_init(c, cfg);
}

void
tcpmsg_decoder_init(struct tcpmsg_decoder *d)
{
    if (d)
        memset(d, 0, sizeof *d);
}

int
tcpmsg_decoder_error(const struct tcpmsg_decoder *d)
{
    return d ? d->err : -EINVAL;
}

size_t
tcpmsg_decoder_left(const struct tcpmsg_decoder *d)
{
    return d ? d->left : 0;
}

static bool
valid(const struct tcpmsg_codec *c)
{
    return c && c->kind >= TCPMSG_CODEC_LENGTH && c->kind <= TCPMSG_CODEC_FIXED;
}

ptrdiff_t
tcpmsg_codec_decode(const struct tcpmsg_codec *c, struct tcpmsg_decoder *d, const void *buf,
                    size_t len, struct tcpmsg_frame *out)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    if (!valid(c) || !d || (!buf && len))
        return -EINVAL;
    if (d->err)
        return d->err;

    /* No bytes may come as NULL: give the codecs a real (empty) buffer, so that no pointer
     * arithmetic or memchr ever sees NULL. */
    const uint8_t *p = len ? buf : (const uint8_t *)"";
    switch (c->kind) {
    case TCPMSG_CODEC_LENGTH:
        return tcpmsg__length_decode(c, d, p, len, out);
    case TCPMSG_CODEC_DELIM:
        return tcpmsg__delim_decode(c, d, p, len, out);
    default:
        d->need = (size_t)c->max;
        return tcpmsg__fixed_decode(c, p, len, out);
    }
}

ptrdiff_t
tcpmsg_codec_finish(const struct tcpmsg_codec *c, struct tcpmsg_decoder *d, const void *buf,
                    size_t len, struct tcpmsg_frame *out)
{
    ptrdiff_t r = tcpmsg_codec_decode(c, d, buf, len, out);
    if (r != 0)
        return r;
    if (len == 0)
        return TCPMSG_EOF;
    if (c->kind == TCPMSG_CODEC_DELIM)
        return tcpmsg__delim_finish(c, d, buf, len, out);
    d->left = len;
    return tcpmsg__decoder_fail(d, -EPROTO);
}

int
tcpmsg_codec_encode(const struct tcpmsg_codec *c, const void *payload, size_t len,
                    struct tcpmsg_encoded *out)
{
    if (!out)
        return -EINVAL;
    out->head_len = out->tail_len = out->pad_len = 0;
    out->pad_byte = 0;
    if (!valid(c))
        return -EINVAL;
    switch (c->kind) {
    case TCPMSG_CODEC_LENGTH:
        return tcpmsg__length_encode(c, len, out);
    case TCPMSG_CODEC_DELIM:
        return tcpmsg__delim_encode(c, payload, len, out);
    default:
        return tcpmsg__fixed_encode(c, len, out);
    }
}

ptrdiff_t
tcpmsg_codec_write(const struct tcpmsg_codec *c, const void *payload, size_t len, void *dst,
                   size_t cap)
{
    struct tcpmsg_encoded e;
    int r = tcpmsg_codec_encode(c, payload, len, &e);
    if (r < 0)
        return r;
    if (len > 0 && !payload)
        return -EINVAL;
    /* Every term is bounded by the codec's limits, so the sum cannot overflow. */
    size_t total = e.head_len + len + e.pad_len + e.tail_len;
    if (!dst || cap < total)
        return -ENOBUFS;
    uint8_t *w = dst;
    memcpy(w, e.head, e.head_len);
    w += e.head_len;
    if (len)
        memcpy(w, payload, len);
    w += len;
    memset(w, e.pad_byte, e.pad_len);
    w += e.pad_len;
    memcpy(w, e.tail, e.tail_len);
    return (ptrdiff_t)total;
}

size_t
tcpmsg_codec_frame_size(const struct tcpmsg_codec *c, size_t len)
{
    struct tcpmsg_encoded e;
    if (!valid(c))
        return 0;
    switch (c->kind) {
    case TCPMSG_CODEC_LENGTH:
        if (tcpmsg__length_encode(c, len, &e) < 0)
            return 0;
        return e.head_len + len;
    case TCPMSG_CODEC_DELIM:
        if ((uint64_t)len > c->max)
            return 0;
        return len + (c->mode == TCPMSG_DELIM_CRLF ? 2 : c->delim_len);
    default:
        if (len > (size_t)c->max || (len < (size_t)c->max && !(c->flags & TCPMSG_CODEC__F_PAD)))
            return 0;
        return (size_t)c->max;
    }
}

uint64_t
tcpmsg_codec_max_payload(const struct tcpmsg_codec *c)
{
    return valid(c) ? c->max : 0;
}

size_t
tcpmsg_codec_max_frame(const struct tcpmsg_codec *c)
{
    if (!valid(c))
        return 0;
    switch (c->kind) {
    case TCPMSG_CODEC_LENGTH:
        return tcpmsg__length_head_max(c) + (size_t)c->max;
    case TCPMSG_CODEC_DELIM:
        return (size_t)c->max + tcpmsg__delim_tail_len(c);
    default:
        return (size_t)c->max;
    }
}

int
tcpmsg_codec_kind(const struct tcpmsg_codec *c)
{
    return valid(c) ? c->kind : 0;
}
