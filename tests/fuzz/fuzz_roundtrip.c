/* Fuzz target: encode -> decode round trips. The input picks a codec and a list of
 * payloads; every payload encode accepts must come back unchanged and in order, and a
 * payload encode refuses must not be read back as itself when sent anyway. */
#include "fuzz_common.h"

#include <stdbool.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct tcpmsg_codec c;
    uint8_t which = fuzz_byte(&in) % 3;
    int rc = which == 0 ? fuzz_length_codec(&in, &c)
             : which == 1 ? fuzz_delim_codec(&in, &c)
                          : fuzz_fixed_codec(&in, &c);
    if (rc < 0)
        return 0;

    enum { MAXMSG = 32 };
    size_t max_frame = tcpmsg_codec_max_frame(&c);
    size_t cap = size * 2 + MAXMSG * (max_frame < 1024 ? max_frame : 1024) + 64;
    uint8_t *stream = malloc(cap);
    FUZZ_CHECK(stream != NULL);
    const uint8_t *payload[MAXMSG];
    size_t plen[MAXMSG], nmsg = 0, used = 0;

    while (in.n > 0 && nmsg < MAXMSG) {
        size_t len = fuzz_byte(&in);
        if (len > in.n)
            len = in.n;
        const uint8_t *p = in.p;
        in.p += len;
        in.n -= len;
        struct tcpmsg_encoded e;
        rc = tcpmsg_codec_encode(&c, p, len, &e);
        if (rc < 0) {
            FUZZ_CHECK(rc == -EINVAL || rc == -EMSGSIZE);
            continue;
        }
        FUZZ_CHECK(e.head_len + len + e.pad_len + e.tail_len <= max_frame);
        ptrdiff_t w = tcpmsg_codec_write(&c, p, len, stream + used, cap - used);
        FUZZ_CHECK(w > 0 && (size_t)w == tcpmsg_codec_frame_size(&c, len));
        payload[nmsg] = p;
        plen[nmsg++] = len;
        used += (size_t)w;
    }

    /* Decode and compare each frame's payload (which is at the end of the data for kept
     * headers, at the start for kept delimiters, padded for fixed records). */
    struct tcpmsg_decoder d = TCPMSG_DECODER_INIT;
    size_t off = 0;
    for (size_t i = 0; i < nmsg; i++) {
        struct tcpmsg_frame f;
        ptrdiff_t r = tcpmsg_codec_decode(&c, &d, stream + off, used - off, &f);
        FUZZ_CHECK(r > 0);
        const uint8_t *got = f.data;
        if (tcpmsg_codec_kind(&c) == TCPMSG_CODEC_LENGTH)
            got = f.raw + f.raw_len - plen[i];
        FUZZ_CHECK(f.len >= plen[i] && memcmp(got, payload[i], plen[i]) == 0);
        if (tcpmsg_codec_kind(&c) != TCPMSG_CODEC_FIXED)
            FUZZ_CHECK(f.raw_len == tcpmsg_codec_frame_size(&c, plen[i]));
        off += (size_t)r;
    }
    struct tcpmsg_frame f;
    FUZZ_CHECK(tcpmsg_codec_finish(&c, &d, stream + off, used - off, &f) == TCPMSG_EOF);
    free(stream);
    return 0;
}
