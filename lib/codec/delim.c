/* Delimiter-terminated frames: [payload][delimiter].
 *
 * The decoder keeps in d->scanned how many bytes it has already searched, and resumes
 * there (less the delimiter's length minus one, so a delimiter split across two feeds is
 * found): a peer sending one byte at a time costs O(n) in total, not O(n^2). Searches use
 * memchr for one byte and memmem for longer delimiters, and never look past the limit: a
 * peer that never sends the delimiter is refused after max_len + delimiter bytes. */
#include "codec_internal.h"

#include <string.h>

int
tcpmsg__delim_init(struct tcpmsg_codec *c, const struct tcpmsg_delim_config *cfg)
{
    static const struct tcpmsg_delim_config defaults = {0};
    if (!cfg)
        cfg = &defaults;

    const uint8_t *delim;
    size_t dlen;
    /* Zero-initialised configs that name delimiter bytes mean those bytes. */
    enum tcpmsg_delim_mode mode = cfg->mode;
    if (mode == TCPMSG_DELIM_LF && cfg->delim)
        mode = TCPMSG_DELIM_BYTES;
    switch (mode) {
    case TCPMSG_DELIM_BYTES:
        if (!cfg->delim || cfg->delim_len == 0 || cfg->delim_len > TCPMSG_CODEC_DELIM_MAX)
            return -EINVAL;
        delim = cfg->delim;
        dlen = cfg->delim_len;
        break;
    case TCPMSG_DELIM_LF:
    case TCPMSG_DELIM_ANY_EOL:
        delim = (const uint8_t *)"\n";
        dlen = 1;
        break;
    case TCPMSG_DELIM_CRLF:
        delim = (const uint8_t *)"\r\n";
        dlen = 2;
        break;
    default:
        return -EINVAL;
    }
    if (mode != TCPMSG_DELIM_BYTES && (cfg->delim || cfg->delim_len))
        return -EINVAL; /* a preset and explicit bytes contradict each other */

    uint64_t max = cfg->max_len ? cfg->max_len : TCPMSG_CODEC_DEFAULT_MAX;
    if (max > (uint64_t)PTRDIFF_MAX - 2 * (uint64_t)TCPMSG_CODEC_DELIM_MAX)
        return -EINVAL;

    memset(c, 0, sizeof *c);
    c->kind = TCPMSG_CODEC_DELIM;
    c->mode = (uint8_t)mode;
    c->flags = (uint8_t)((cfg->keep_delim ? TCPMSG_CODEC__F_KEEP : 0) |
                         (cfg->eof_partial ? TCPMSG_CODEC__F_EOF_PARTIAL : 0));
    memcpy(c->delim, delim, dlen);
    c->delim_len = (uint8_t)dlen;
    c->max = max;
    return 0;
}

/* The longest delimiter a frame can end with (ANY_EOL: "\r\n"). */
size_t
tcpmsg__delim_tail_len(const struct tcpmsg_codec *c)
{
    return c->mode == TCPMSG_DELIM_ANY_EOL ? 2 : c->delim_len;
}

static ptrdiff_t
deliver(const struct tcpmsg_codec *c, struct tcpmsg_decoder *d, const uint8_t *p, size_t payload,
        size_t total, struct tcpmsg_frame *out)
{
    d->scanned = 0;
    d->need = 0;
    out->raw = p;
    out->raw_len = total;
    out->data = p;
    out->len = (c->flags & TCPMSG_CODEC__F_KEEP) ? total : payload;
    return (ptrdiff_t)total;
}

/* Strict CRLF: a line ends at "\r\n"; any other "\r" or "\n" is a protocol error, found as
 * soon as the byte after it (or the byte itself, for "\n") has arrived. */
static ptrdiff_t
decode_crlf(const struct tcpmsg_codec *c, struct tcpmsg_decoder *d, const uint8_t *p, size_t len,
            size_t from, size_t end, struct tcpmsg_frame *out)
{
    const uint8_t *lf = memchr(p + from, '\n', end - from);
    size_t stop = lf ? (size_t)(lf - p) : end;
    const uint8_t *cr = memchr(p + from, '\r', stop - from);
    if (cr) {
        size_t q = (size_t)(cr - p);
        if (q > c->max)
            return tcpmsg__decoder_fail(d, -EMSGSIZE);
        if (q + 1 == len) {
            d->scanned = q; /* the "\n" may be next: look at this "\r" again */
            return 0;
        }
        if (p[q + 1] != '\n')
            return tcpmsg__decoder_fail(d, -EPROTO); /* bare CR */
        return deliver(c, d, p, q, q + 2, out);
    }
    if (lf)
        return tcpmsg__decoder_fail(d, -EPROTO); /* bare LF */
    if (len >= c->max + 2)
        return tcpmsg__decoder_fail(d, -EMSGSIZE);
    d->scanned = end;
    return 0;
}

/* "\n" or "\r\n": search for "\n"; a "\r" right before it belongs to the line end. */
static ptrdiff_t
decode_any_eol(const struct tcpmsg_codec *c, struct tcpmsg_decoder *d, const uint8_t *p,
               size_t len, size_t from, size_t end, struct tcpmsg_frame *out)
{
    const uint8_t *lf = memchr(p + from, '\n', end - from);
    if (lf) {
        size_t i = (size_t)(lf - p);
        size_t payload = (i > 0 && p[i - 1] == '\r') ? i - 1 : i;
        if (payload > c->max)
            return tcpmsg__decoder_fail(d, -EMSGSIZE);
        return deliver(c, d, p, payload, i + 1, out);
    }
    /* Past max bytes only a "\r\n" right at the limit can still end the line. */
    if (len >= c->max + 2 || (len > c->max && p[c->max] != '\r'))
        return tcpmsg__decoder_fail(d, -EMSGSIZE);
    d->scanned = end;
    return 0;
}

ptrdiff_t
tcpmsg__delim_decode(const struct tcpmsg_codec *c, struct tcpmsg_decoder *d, const uint8_t *p,
                     size_t len, struct tcpmsg_frame *out)
{
    const size_t dlen = c->delim_len;
    /* The delimiter must end within the first max + dlen bytes (ANY_EOL: max + 2). */
    const size_t limit = (size_t)c->max + tcpmsg__delim_tail_len(c);
    const size_t end = len < limit ? len : limit;
    size_t from = d->scanned;
    if (from > end)
        from = 0; /* the caller broke the contract; searching again is always correct */

    if (c->mode == TCPMSG_DELIM_CRLF)
        return decode_crlf(c, d, p, len, from, end, out);
    if (c->mode == TCPMSG_DELIM_ANY_EOL)
        return decode_any_eol(c, d, p, len, from, end, out);

    const uint8_t *hit = dlen == 1 ? memchr(p + from, c->delim[0], end - from)
                                   : memmem(p + from, end - from, c->delim, dlen);
    if (hit) {
        size_t i = (size_t)(hit - p);
        return deliver(c, d, p, i, i + dlen, out);
    }
    if (len >= limit)
        return tcpmsg__decoder_fail(d, -EMSGSIZE);
    /* A delimiter may start in the last dlen - 1 bytes and end in the next feed. */
    d->scanned = end >= dlen - 1 ? end - (dlen - 1) : 0;
    return 0;
}

ptrdiff_t
tcpmsg__delim_finish(const struct tcpmsg_codec *c, struct tcpmsg_decoder *d, const uint8_t *p,
                     size_t len, struct tcpmsg_frame *out)
{
    /* Called with len > 0 bytes that decode found no delimiter in. */
    if (!(c->flags & TCPMSG_CODEC__F_EOF_PARTIAL) ||
        (c->mode == TCPMSG_DELIM_CRLF && p[len - 1] == '\r')) {
        d->left = len;
        return tcpmsg__decoder_fail(d, -EPROTO);
    }
    if (len > c->max)
        return tcpmsg__decoder_fail(d, -EMSGSIZE);
    d->scanned = 0;
    d->need = 0;
    out->raw = out->data = p;
    out->raw_len = out->len = len;
    return (ptrdiff_t)len;
}

int
tcpmsg__delim_encode(const struct tcpmsg_codec *c, const uint8_t *payload, size_t len,
                     struct tcpmsg_encoded *out)
{
    if ((uint64_t)len > c->max)
        return -EMSGSIZE;
    if (len > 0 && !payload)
        return -EINVAL;

    switch (c->mode) {
    case TCPMSG_DELIM_CRLF:
        if (len && (memchr(payload, '\r', len) || memchr(payload, '\n', len)))
            return -EINVAL;
        memcpy(out->tail, "\r\n", 2);
        out->tail_len = 2;
        return 0;
    case TCPMSG_DELIM_ANY_EOL:
        /* A trailing "\r" would be read back as part of a "\r\n" line end. */
        if (len && (memchr(payload, '\n', len) || payload[len - 1] == '\r'))
            return -EINVAL;
        out->tail[0] = '\n';
        out->tail_len = 1;
        return 0;
    default:
        break;
    }

    const size_t dlen = c->delim_len;
    if (len == 0) {
        /* nothing to check */
    } else if (dlen == 1 ? memchr(payload, c->delim[0], len) != NULL
                         : memmem(payload, len, c->delim, dlen) != NULL) {
        return -EINVAL;
    }
    if (dlen > 1 && len > 0) {
        /* The payload's end and the delimiter must not form an earlier delimiter (with
         * "abab", the payload "ab" would be read back as ""): search the seam. */
        uint8_t seam[2 * TCPMSG_CODEC_DELIM_MAX];
        size_t keep = len < dlen - 1 ? len : dlen - 1;
        memcpy(seam, payload + len - keep, keep);
        memcpy(seam + keep, c->delim, dlen);
        const uint8_t *hit = memmem(seam, keep + dlen, c->delim, dlen);
        if (hit != seam + keep)
            return -EINVAL;
    }
    memcpy(out->tail, c->delim, dlen);
    out->tail_len = dlen;
    return 0;
}
