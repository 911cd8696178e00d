/* Shared helpers of the Check test programs. */
#ifndef TCPMSG_TESTUTIL_H
#define TCPMSG_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "tcpmsg/codec.h"

/* Runs one suite (CK_NORMAL output, fork mode) and returns the process exit status. Each
 * test program defines make_suite() and calls this from main. */
int tu_run(Suite *s);

/* Deterministic PRNG (splitmix64). The seed comes from TCPMSG_TEST_SEED when set, so a
 * failing random test can be replayed; tu_seed() tells which seed is in use. */
void tu_rand_seed(uint64_t seed);
uint64_t tu_seed(void);
uint64_t tu_rand(void);
/* Uniform in [lo, hi]. */
uint64_t tu_range(uint64_t lo, uint64_t hi);

/* Guard-page placement: copies len bytes so that they end exactly where a PROT_NONE page
 * begins, and returns where they start. Any read past the end crashes the test. The copy
 * stays valid until the next call. */
const uint8_t *tu_guard_place(const void *data, size_t len);

/* Byte strings written as C literals: B("\x00\x03abc") keeps embedded NULs. */
struct tu_bytes {
    const uint8_t *p;
    size_t n;
};
#define B(s)                                                                                       \
    {                                                                                              \
        (const uint8_t *)(s), sizeof(s) - 1                                                        \
    }

/* What a stream decodes to. */
#define TU_MAX_FRAMES 2048
struct tu_decoded {
    size_t nframes;
    uint8_t *frame[TU_MAX_FRAMES]; /* copies of the delivered bytes (malloc) */
    size_t len[TU_MAX_FRAMES];
    uint8_t *raw[TU_MAX_FRAMES]; /* copies of the raw frame bytes */
    size_t raw_len[TU_MAX_FRAMES];
    ptrdiff_t end; /* the last result: TCPMSG_EOF, or the error code */
    size_t left;   /* tcpmsg_decoder_left() at the end */
};

/* Feeds `in` to a fresh decoder in chunks: chunk == 0 means all at once, chunk == 1 one
 * byte at a time, and so on; `split` > 0 instead cuts the input in two at that offset. Each
 * decode call sees the unconsumed bytes placed against a guard page. After the input,
 * calls tcpmsg_codec_finish until it returns TCPMSG_EOF or an error. Also checks the frame
 * invariants (raw at the start of the bytes given, data inside raw). */
void tu_decode_stream(const struct tcpmsg_codec *c, const uint8_t *in, size_t n, size_t chunk,
                      size_t split, struct tu_decoded *out);
void tu_decoded_free(struct tu_decoded *d);

/* Asserts that two decodings are identical (frames, end code, bytes left). */
void tu_assert_same(const struct tu_decoded *a, const struct tu_decoded *b, const char *what);

#endif
