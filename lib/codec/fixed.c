/* Fixed-size records: every frame is exactly c->max bytes. */
#include "codec_internal.h"

#include <string.h>

int
tcpmsg__fixed_init(struct tcpmsg_codec *c, const struct tcpmsg_fixed_config *cfg)
{
    if (!cfg || cfg->size == 0 || (uint64_t)cfg->size > (uint64_t)PTRDIFF_MAX)
        return -EINVAL;
    memset(c, 0, sizeof *c);
    c->kind = TCPMSG_CODEC_FIXED;
    c->flags = cfg->pad ? TCPMSG_CODEC__F_PAD : 0;
    c->pad_byte = cfg->pad_byte;
    c->max = cfg->size;
    return 0;
}

ptrdiff_t
tcpmsg__fixed_decode(const struct tcpmsg_codec *c, const uint8_t *p, size_t len,
                     struct tcpmsg_frame *out)
{
    const size_t size = (size_t)c->max;
    if (len < size)
        return 0;
    out->raw = out->data = p;
    out->raw_len = out->len = size;
    return (ptrdiff_t)size;
}

int
tcpmsg__fixed_encode(const struct tcpmsg_codec *c, size_t len, struct tcpmsg_encoded *out)
{
    const size_t size = (size_t)c->max;
    if (len > size)
        return -EMSGSIZE;
    if (len < size) {
        if (!(c->flags & TCPMSG_CODEC__F_PAD))
            return -EINVAL;
        out->pad_len = size - len;
        out->pad_byte = c->pad_byte;
    }
    return 0;
}
