/*
 * tcpmsg/wire.h - portable encoding of integers, floats and byte strings.
 *
 * The course's interoperability rules as code: every field has an exact size and an exact
 * encoding, and multi-byte values travel in network byte order (big endian), whatever the
 * host. Signed integers are two's complement; floats are IEEE 754 binary32/binary64 sent
 * as their bit pattern. The output is byte-for-byte what Python's struct.pack('!...')
 * produces, so a Python, Java or Go peer can read it.
 *
 * Everything here is static inline, needs no library and never allocates. Three levels:
 *   - put/get on raw pointers: tcpmsg_wire_put_u32(p, v) writes 4 bytes at p and returns
 *     p + 4; tcpmsg_wire_get_u32(p) reads 4 bytes. The caller guarantees the room.
 *   - little-endian variants (_le) for protocols that need them.
 *   - bounds-checked cursors: struct tcpmsg_wire_reader / tcpmsg_wire_writer never read or
 *     write past their buffer; an overrun sets a sticky flag, reads then return 0, and the
 *     caller checks tcpmsg_wire_reader_ok() once at the end. Use these on bytes from a peer.
 */
#ifndef TCPMSG_WIRE_H
#define TCPMSG_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

_Static_assert(sizeof(float) == 4 && sizeof(double) == 8, "IEEE 754 binary32/binary64 required");

/* ---- unsigned, big endian (network byte order) -------------------------------------- */

/* Writes the low `nbytes` (1..8) bytes of v at p, most significant first; returns p+nbytes. */
static inline uint8_t *
tcpmsg_wire_put_uint(uint8_t *p, uint64_t v, unsigned nbytes)
{
    for (unsigned i = nbytes; i-- > 0; v >>= 8)
        p[i] = (uint8_t)v;
    return p + nbytes;
}

/* Reads an `nbytes` (1..8) big-endian unsigned integer at p. */
static inline uint64_t
tcpmsg_wire_get_uint(const uint8_t *p, unsigned nbytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < nbytes; i++)
        v = (v << 8) | p[i];
    return v;
}

static inline uint8_t *
tcpmsg_wire_put_u8(uint8_t *p, uint8_t v)
{
    p[0] = v;
    return p + 1;
}

static inline uint8_t *
tcpmsg_wire_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

/* 24-bit unsigned (the low 24 bits of v), as used by some length fields. */
static inline uint8_t *
tcpmsg_wire_put_u24(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 16);
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)v;
    return p + 3;
}

static inline uint8_t *
tcpmsg_wire_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

static inline uint8_t *
tcpmsg_wire_put_u64(uint8_t *p, uint64_t v)
{
    tcpmsg_wire_put_u32(p, (uint32_t)(v >> 32));
    return tcpmsg_wire_put_u32(p + 4, (uint32_t)v);
}

static inline uint8_t
tcpmsg_wire_get_u8(const uint8_t *p)
{
    return p[0];
}

static inline uint16_t
tcpmsg_wire_get_u16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline uint32_t
tcpmsg_wire_get_u24(const uint8_t *p)
{
    return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static inline uint32_t
tcpmsg_wire_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t
tcpmsg_wire_get_u64(const uint8_t *p)
{
    return (uint64_t)tcpmsg_wire_get_u32(p) << 32 | tcpmsg_wire_get_u32(p + 4);
}

/* ---- unsigned, little endian ---------------------------------------------------------- */

static inline uint8_t *
tcpmsg_wire_put_uint_le(uint8_t *p, uint64_t v, unsigned nbytes)
{
    for (unsigned i = 0; i < nbytes; i++, v >>= 8)
        p[i] = (uint8_t)v;
    return p + nbytes;
}

static inline uint64_t
tcpmsg_wire_get_uint_le(const uint8_t *p, unsigned nbytes)
{
    uint64_t v = 0;
    for (unsigned i = nbytes; i-- > 0;)
        v = (v << 8) | p[i];
    return v;
}

static inline uint8_t *
tcpmsg_wire_put_u16_le(uint8_t *p, uint16_t v)
{
    return tcpmsg_wire_put_uint_le(p, v, 2);
}

static inline uint8_t *
tcpmsg_wire_put_u32_le(uint8_t *p, uint32_t v)
{
    return tcpmsg_wire_put_uint_le(p, v, 4);
}

static inline uint8_t *
tcpmsg_wire_put_u64_le(uint8_t *p, uint64_t v)
{
    return tcpmsg_wire_put_uint_le(p, v, 8);
}

static inline uint16_t
tcpmsg_wire_get_u16_le(const uint8_t *p)
{
    return (uint16_t)tcpmsg_wire_get_uint_le(p, 2);
}

static inline uint32_t
tcpmsg_wire_get_u32_le(const uint8_t *p)
{
    return (uint32_t)tcpmsg_wire_get_uint_le(p, 4);
}

static inline uint64_t
tcpmsg_wire_get_u64_le(const uint8_t *p)
{
    return tcpmsg_wire_get_uint_le(p, 8);
}

/* ---- signed, two's complement, big endian ---------------------------------------------- */
/* The conversions below are exact for every value and compile to nothing: C11 leaves the
 * conversion of an out-of-range unsigned value to a signed type implementation-defined, so
 * the negative half is rebuilt arithmetically instead of cast. */

static inline uint8_t *
tcpmsg_wire_put_i8(uint8_t *p, int8_t v)
{
    return tcpmsg_wire_put_u8(p, (uint8_t)v);
}

static inline uint8_t *
tcpmsg_wire_put_i16(uint8_t *p, int16_t v)
{
    return tcpmsg_wire_put_u16(p, (uint16_t)v);
}

static inline uint8_t *
tcpmsg_wire_put_i32(uint8_t *p, int32_t v)
{
    return tcpmsg_wire_put_u32(p, (uint32_t)v);
}

static inline uint8_t *
tcpmsg_wire_put_i64(uint8_t *p, int64_t v)
{
    return tcpmsg_wire_put_u64(p, (uint64_t)v);
}

static inline int8_t
tcpmsg_wire_get_i8(const uint8_t *p)
{
    uint8_t u = p[0];
    if (u <= INT8_MAX)
        return (int8_t)u;
    return (int8_t)(-(int)(UINT8_MAX - u) - 1);
}

static inline int16_t
tcpmsg_wire_get_i16(const uint8_t *p)
{
    uint16_t u = tcpmsg_wire_get_u16(p);
    if (u <= INT16_MAX)
        return (int16_t)u;
    return (int16_t)(-(int32_t)(UINT16_MAX - u) - 1);
}

static inline int32_t
tcpmsg_wire_get_i32(const uint8_t *p)
{
    uint32_t u = tcpmsg_wire_get_u32(p);
    return u <= INT32_MAX ? (int32_t)u : -(int32_t)(UINT32_MAX - u) - 1;
}

static inline int64_t
tcpmsg_wire_get_i64(const uint8_t *p)
{
    uint64_t u = tcpmsg_wire_get_u64(p);
    return u <= INT64_MAX ? (int64_t)u : -(int64_t)(UINT64_MAX - u) - 1;
}

/* ---- IEEE 754 floats, big endian -------------------------------------------------------- */

static inline uint8_t *
tcpmsg_wire_put_f32(uint8_t *p, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return tcpmsg_wire_put_u32(p, u);
}

static inline uint8_t *
tcpmsg_wire_put_f64(uint8_t *p, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return tcpmsg_wire_put_u64(p, u);
}

static inline float
tcpmsg_wire_get_f32(const uint8_t *p)
{
    uint32_t u = tcpmsg_wire_get_u32(p);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static inline double
tcpmsg_wire_get_f64(const uint8_t *p)
{
    uint64_t u = tcpmsg_wire_get_u64(p);
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* ---- length-prefixed byte strings --------------------------------------------------------
 * A byte string is a big-endian u16 (or u32) byte count followed by that many bytes; no
 * terminator, no character-set interpretation. The caller guarantees room for 2 + n (4 + n)
 * bytes and n <= UINT16_MAX (UINT32_MAX). Returns the pointer past the written bytes. */

static inline uint8_t *
tcpmsg_wire_put_bytes16(uint8_t *p, const void *s, uint16_t n)
{
    p = tcpmsg_wire_put_u16(p, n);
    if (n)
        memcpy(p, s, n);
    return p + n;
}

static inline uint8_t *
tcpmsg_wire_put_bytes32(uint8_t *p, const void *s, uint32_t n)
{
    p = tcpmsg_wire_put_u32(p, n);
    if (n)
        memcpy(p, s, n);
    return p + n;
}

/* ---- bounds-checked reader --------------------------------------------------------------- */

/* A read cursor over borrowed bytes. Initialise with tcpmsg_wire_reader_init(). */
struct tcpmsg_wire_reader {
    const uint8_t *p;   /* next byte to read */
    const uint8_t *end; /* one past the last readable byte */
    bool overrun;       /* sticky: a read wanted more bytes than were left */
};

/* Starts reading `len` bytes at `buf` (borrowed; must outlive the reader). */
static inline void
tcpmsg_wire_reader_init(struct tcpmsg_wire_reader *r, const void *buf, size_t len)
{
    r->p = (const uint8_t *)buf;
    r->end = r->p + len;
    r->overrun = false;
}

/* True while no read has overrun the buffer. */
static inline bool
tcpmsg_wire_reader_ok(const struct tcpmsg_wire_reader *r)
{
    return !r->overrun;
}

/* Bytes not yet read (0 after an overrun). */
static inline size_t
tcpmsg_wire_reader_left(const struct tcpmsg_wire_reader *r)
{
    return r->overrun ? 0 : (size_t)(r->end - r->p);
}

/* Takes n bytes: returns a pointer to them and advances, or returns NULL and marks the
 * reader overrun (it then stays overrun) when fewer than n bytes are left. */
static inline const uint8_t *
tcpmsg_wire_read_raw(struct tcpmsg_wire_reader *r, size_t n)
{
    if (r->overrun || (size_t)(r->end - r->p) < n) {
        r->overrun = true;
        return NULL;
    }
    const uint8_t *at = r->p;
    r->p += n;
    return at;
}

/* tcpmsg_wire_read_u8/u16/u32/u64/i8/i16/i32/i64/f32/f64 - reads one big-endian value and
 * advances; on overrun returns 0 (0.0) and leaves the reader overrun. */
#define TCPMSG_WIRE__READER(type, name, n)                                                         \
    static inline type tcpmsg_wire_read_##name(struct tcpmsg_wire_reader *r)                       \
    {                                                                                              \
        const uint8_t *at = tcpmsg_wire_read_raw(r, n);                                            \
        return at ? tcpmsg_wire_get_##name(at) : (type)0;                                          \
    }
TCPMSG_WIRE__READER(uint8_t, u8, 1)
TCPMSG_WIRE__READER(uint16_t, u16, 2)
TCPMSG_WIRE__READER(uint32_t, u32, 4)
TCPMSG_WIRE__READER(uint64_t, u64, 8)
TCPMSG_WIRE__READER(int8_t, i8, 1)
TCPMSG_WIRE__READER(int16_t, i16, 2)
TCPMSG_WIRE__READER(int32_t, i32, 4)
TCPMSG_WIRE__READER(int64_t, i64, 8)
TCPMSG_WIRE__READER(float, f32, 4)
TCPMSG_WIRE__READER(double, f64, 8)
#undef TCPMSG_WIRE__READER

/* Reads a u16-prefixed byte string: returns a pointer to its bytes inside the reader's
 * buffer and stores the count in *n; on overrun returns NULL with *n = 0. The count is
 * checked against what is left before anything is taken, so a lying prefix is harmless. */
static inline const uint8_t *
tcpmsg_wire_read_bytes16(struct tcpmsg_wire_reader *r, size_t *n)
{
    size_t len = tcpmsg_wire_read_u16(r);
    const uint8_t *at = tcpmsg_wire_read_raw(r, len);
    *n = at ? len : 0;
    return at;
}

/* Same with a u32 prefix. */
static inline const uint8_t *
tcpmsg_wire_read_bytes32(struct tcpmsg_wire_reader *r, size_t *n)
{
    size_t len = tcpmsg_wire_read_u32(r);
    const uint8_t *at = tcpmsg_wire_read_raw(r, len);
    *n = at ? len : 0;
    return at;
}

/* ---- bounds-checked writer --------------------------------------------------------------- */

/* A write cursor over borrowed storage. Initialise with tcpmsg_wire_writer_init(). */
struct tcpmsg_wire_writer {
    uint8_t *start; /* first byte of the storage */
    uint8_t *p;     /* next byte to write */
    uint8_t *end;   /* one past the last writable byte */
    bool overflow;  /* sticky: a write did not fit; nothing was written by it */
};

/* Starts writing into `cap` bytes at `buf` (borrowed; must outlive the writer). */
static inline void
tcpmsg_wire_writer_init(struct tcpmsg_wire_writer *w, void *buf, size_t cap)
{
    w->start = w->p = (uint8_t *)buf;
    w->end = w->p + cap;
    w->overflow = false;
}

/* True while every write has fitted. */
static inline bool
tcpmsg_wire_writer_ok(const struct tcpmsg_wire_writer *w)
{
    return !w->overflow;
}

/* Bytes written so far. */
static inline size_t
tcpmsg_wire_writer_len(const struct tcpmsg_wire_writer *w)
{
    return (size_t)(w->p - w->start);
}

/* Reserves n bytes: returns where to write them and advances, or returns NULL and marks the
 * writer overflowed (it then stays so) when fewer than n bytes of room are left. */
static inline uint8_t *
tcpmsg_wire_write_raw(struct tcpmsg_wire_writer *w, size_t n)
{
    if (w->overflow || (size_t)(w->end - w->p) < n) {
        w->overflow = true;
        return NULL;
    }
    uint8_t *at = w->p;
    w->p += n;
    return at;
}

/* tcpmsg_wire_write_u8/u16/u32/u64/i8/i16/i32/i64/f32/f64 - writes one big-endian value and
 * advances; returns false (and writes nothing) when it does not fit. */
#define TCPMSG_WIRE__WRITER(type, name, n)                                                         \
    static inline bool tcpmsg_wire_write_##name(struct tcpmsg_wire_writer *w, type v)              \
    {                                                                                              \
        uint8_t *at = tcpmsg_wire_write_raw(w, n);                                                 \
        if (at)                                                                                    \
            tcpmsg_wire_put_##name(at, v);                                                         \
        return at != NULL;                                                                         \
    }
TCPMSG_WIRE__WRITER(uint8_t, u8, 1)
TCPMSG_WIRE__WRITER(uint16_t, u16, 2)
TCPMSG_WIRE__WRITER(uint32_t, u32, 4)
TCPMSG_WIRE__WRITER(uint64_t, u64, 8)
TCPMSG_WIRE__WRITER(int8_t, i8, 1)
TCPMSG_WIRE__WRITER(int16_t, i16, 2)
TCPMSG_WIRE__WRITER(int32_t, i32, 4)
TCPMSG_WIRE__WRITER(int64_t, i64, 8)
TCPMSG_WIRE__WRITER(float, f32, 4)
TCPMSG_WIRE__WRITER(double, f64, 8)
#undef TCPMSG_WIRE__WRITER

/* Writes a u16-prefixed byte string; fails (false, overflow set) if n > UINT16_MAX or it
 * does not fit. */
static inline bool
tcpmsg_wire_write_bytes16(struct tcpmsg_wire_writer *w, const void *s, size_t n)
{
    uint8_t *at = n <= UINT16_MAX ? tcpmsg_wire_write_raw(w, 2 + n) : NULL;
    if (!at) {
        w->overflow = true;
        return false;
    }
    tcpmsg_wire_put_bytes16(at, s, (uint16_t)n);
    return true;
}

/* Writes a u32-prefixed byte string; fails if n > UINT32_MAX or it does not fit. */
static inline bool
tcpmsg_wire_write_bytes32(struct tcpmsg_wire_writer *w, const void *s, size_t n)
{
    uint8_t *at = (uint64_t)n <= UINT32_MAX ? tcpmsg_wire_write_raw(w, 4 + n) : NULL;
    if (!at) {
        w->overflow = true;
        return false;
    }
    tcpmsg_wire_put_bytes32(at, s, (uint32_t)n);
    return true;
}

#ifdef __cplusplus
}
#endif

#endif /* TCPMSG_WIRE_H */
