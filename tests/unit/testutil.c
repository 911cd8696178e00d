#include "testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int
tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

static uint64_t rng_state, rng_seed;
static int rng_ready;

void
tu_rand_seed(uint64_t seed)
{
    const char *env = getenv("TCPMSG_TEST_SEED");
    if (env && *env)
        seed = strtoull(env, NULL, 0);
    rng_seed = rng_state = seed;
    rng_ready = 1;
}

uint64_t
tu_seed(void)
{
    return rng_seed;
}

uint64_t
tu_rand(void)
{
    if (!rng_ready)
        tu_rand_seed(0x7c9e3779b97f4a7cull);
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t
tu_range(uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = hi - lo + 1;
    return span == 0 ? tu_rand() : lo + tu_rand() % span;
}

static uint8_t *guard_base;
static size_t guard_usable;

const uint8_t *
tu_guard_place(const void *data, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (len > guard_usable) {
        if (guard_base)
            munmap(guard_base, guard_usable + page);
        size_t usable = (len + page - 1) / page * page;
        if (usable == 0)
            usable = page;
        void *m = mmap(NULL, usable + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        ck_assert_ptr_ne(m, MAP_FAILED);
        guard_base = m;
        guard_usable = usable;
        ck_assert_int_eq(mprotect(guard_base + usable, page, PROT_NONE), 0);
    }
    uint8_t *at = guard_base + guard_usable - len;
    if (len)
        memmove(at, data, len);
    return at;
}

static uint8_t *
dup_bytes(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(d);
    if (n)
        memcpy(d, p, n);
    return d;
}

static void
record(struct tu_decoded *out, const struct tcpmsg_frame *f, const uint8_t *start, ptrdiff_t r)
{
    /* Frame invariants: the frame is the first r bytes given, data lies inside it. */
    ck_assert_ptr_eq(f->raw, start);
    ck_assert_uint_eq(f->raw_len, (size_t)r);
    ck_assert(f->data >= f->raw);
    ck_assert(f->data + f->len <= f->raw + f->raw_len);
    ck_assert_uint_lt(out->nframes, TU_MAX_FRAMES);
    size_t i = out->nframes++;
    out->frame[i] = dup_bytes(f->data, f->len);
    out->len[i] = f->len;
    out->raw[i] = dup_bytes(f->raw, f->raw_len);
    out->raw_len[i] = f->raw_len;
}

void
tu_decode_stream(const struct tcpmsg_codec *c, const uint8_t *in, size_t n, size_t chunk,
                 size_t split, struct tu_decoded *out)
{
    memset(out, 0, sizeof *out);
    struct tcpmsg_decoder d = TCPMSG_DECODER_INIT;
    uint8_t *pending = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(pending);
    size_t have = 0, fed = 0;
    ptrdiff_t r = 0;

    while (fed < n) {
        size_t take = n - fed;
        if (split)
            take = fed < split ? split - fed : n - fed;
        else if (chunk && take > chunk)
            take = chunk;
        memcpy(pending + have, in + fed, take);
        have += take;
        fed += take;
        for (;;) {
            struct tcpmsg_frame f;
            const uint8_t *at = tu_guard_place(pending, have);
            r = tcpmsg_codec_decode(c, &d, at, have, &f);
            if (r <= 0) {
                if (r == 0) {
                    ck_assert_ptr_null(f.data);
                    ck_assert_uint_eq(f.len, 0);
                }
                break;
            }
            record(out, &f, at, r);
            memmove(pending, pending + r, have - (size_t)r);
            have -= (size_t)r;
        }
        if (r < 0)
            break;
    }
    for (;;) {
        struct tcpmsg_frame f;
        const uint8_t *at = tu_guard_place(pending, have);
        r = tcpmsg_codec_finish(c, &d, at, have, &f);
        if (r <= 0)
            break;
        record(out, &f, at, r);
        memmove(pending, pending + r, have - (size_t)r);
        have -= (size_t)r;
    }
    /* Errors are sticky: asking again gives the same answer. */
    struct tcpmsg_frame f;
    const uint8_t *at = tu_guard_place(pending, have);
    ck_assert_int_eq(tcpmsg_codec_finish(c, &d, at, have, &f), r);
    out->end = r;
    out->left = tcpmsg_decoder_left(&d);
    free(pending);
}

void
tu_decoded_free(struct tu_decoded *d)
{
    for (size_t i = 0; i < d->nframes; i++) {
        free(d->frame[i]);
        free(d->raw[i]);
    }
    d->nframes = 0;
}

void
tu_assert_same(const struct tu_decoded *a, const struct tu_decoded *b, const char *what)
{
    ck_assert_msg(a->nframes == b->nframes, "%s: %zu frames vs %zu", what, a->nframes,
                  b->nframes);
    for (size_t i = 0; i < a->nframes; i++) {
        ck_assert_msg(a->len[i] == b->len[i], "%s: frame %zu length %zu vs %zu", what, i,
                      a->len[i], b->len[i]);
        ck_assert_msg(memcmp(a->frame[i], b->frame[i], a->len[i]) == 0, "%s: frame %zu differs",
                      what, i);
    }
    ck_assert_msg(a->end == b->end, "%s: end %td vs %td", what, a->end, b->end);
    ck_assert_msg(a->left == b->left, "%s: left %zu vs %zu", what, a->left, b->left);
}
