/*
 * tcpmsg/codec.h - sans-I/O message framing.
 *
 * TCP delivers a byte stream; applications exchange messages. A codec cuts the stream into
 * frames and builds the bytes that delimit outgoing frames. Three codecs share one shape:
 *
 *   length-prefixed  [offset bytes][length field][suffix bytes][payload]
 *   delimiter        [payload][delimiter]            (lines, or any 1..16 byte marker)
 *   fixed-size       [record of exactly N bytes]
 *
 * The codecs never touch a file descriptor, never call the system and never allocate: the
 * caller supplies the bytes, so the same code frames messages for libtcpmsg's connections,
 * for a libuv or libevent read callback, or for a file. This header needs only the C
 * standard <stddef.h>, <stdint.h> and <stdbool.h> (plus the library's own dependency-free
 * version.h and error.h).
 *
 * Use:
 *   struct tcpmsg_codec codec;                       // immutable once initialised
 *   tcpmsg_codec_init_length(&codec, NULL);          // 4-byte big-endian length, 16 MiB max
 *   struct tcpmsg_decoder dec = TCPMSG_DECODER_INIT; // one per stream, embeddable
 *   struct tcpmsg_frame f;
 *   ptrdiff_t n = tcpmsg_codec_decode(&codec, &dec, buf, len, &f);
 *   // n > 0: a frame is ready (f.data, f.len point into buf); n bytes of buf are consumed.
 *   // n == 0: the bytes in buf are not a whole frame yet; call again with buf extended.
 *   // n < 0: an error (-EMSGSIZE, -EPROTO); it is sticky until tcpmsg_decoder_init().
 *
 * Decoder contract: each call gets the stream's unconsumed bytes from their start. After a
 * call returns 0, the next call must get the same bytes again, possibly followed by more
 * (the decoder remembers how far it has already searched). After a call returns n > 0, the
 * next call starts at the byte after the frame.
 *
 * Errors (negated errno values, see tcpmsg/error.h; <errno.h> defines them):
 *   -EINVAL    impossible configuration or argument (never an assert)
 *   -EMSGSIZE  a frame over the configured limit, detected before anything is reserved
 *   -EPROTO    malformed framing, or end of stream inside a frame
 *   TCPMSG_EOF clean end of stream at a frame boundary (tcpmsg_codec_finish only)
 *
 * Thread safety: a codec is immutable after init and may be shared by any number of
 * threads; a decoder belongs to one stream and one thread at a time.
 */
#ifndef TCPMSG_CODEC_H
#define TCPMSG_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tcpmsg/error.h"
#include "tcpmsg/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default largest payload of every codec: 16 MiB. */
#define TCPMSG_CODEC_DEFAULT_MAX ((uint64_t)16 * 1024 * 1024)
/* Largest header of the length-prefixed codec (offset + field + suffix). */
#define TCPMSG_CODEC_HEAD_MAX 64
/* Largest delimiter of the delimiter codec. */
#define TCPMSG_CODEC_DELIM_MAX 16
/* Largest LEB128 varint length field (a 64-bit value). */
#define TCPMSG_CODEC_VARINT_MAX 10

enum tcpmsg_codec_kind {
    TCPMSG_CODEC_LENGTH = 1, /* length-prefixed */
    TCPMSG_CODEC_DELIM = 2,  /* delimiter-terminated */
    TCPMSG_CODEC_FIXED = 3   /* fixed-size records */
};

/* ---- configurations (zero-initialised = sensible defaults) ------------------------------ */

/* What the length field of a length-prefixed frame counts. */
enum tcpmsg_length_counts {
    TCPMSG_LENGTH_COUNTS_PAYLOAD = 0, /* the payload bytes only (default) */
    TCPMSG_LENGTH_COUNTS_FRAME = 1    /* the whole frame: offset + field + suffix + payload */
};

/*
 * Length-prefixed frames:  [offset bytes][length field][suffix bytes][payload]
 *
 * The offset and suffix bytes are opaque to the codec (a message type, a version, flags):
 * the decoder delivers them in the frame's raw bytes, the encoder leaves them zero for the
 * caller to fill. A zero-initialised config is the common "4-byte big-endian payload length,
 * 16 MiB max" protocol.
 */
struct tcpmsg_length_config {
    unsigned width;       /* length field bytes: 1, 2, 3, 4 or 8; 0 means 4 (or varint) */
    bool little_endian;   /* little-endian field; default big endian (network byte order) */
    bool varint;          /* unsigned LEB128 field of 1..10 bytes; requires width 0 */
    size_t offset;        /* bytes before the length field */
    size_t suffix;        /* header bytes after the length field */
    enum tcpmsg_length_counts counts; /* what the field counts */
    bool keep_header;     /* frames deliver header + payload; default payload only */
    uint64_t max_payload; /* largest payload accepted and produced; 0 means the default
                             (16 MiB, or less if the field cannot express it). A value the
                             field cannot express is -EINVAL. */
};

/* How the delimiter codec finds the end of a frame. */
enum tcpmsg_delim_mode {
    TCPMSG_DELIM_LF = 0,      /* "\n" (the default) */
    TCPMSG_DELIM_ANY_EOL = 1, /* "\n" or "\r\n" (the "\r" is stripped too); encodes "\n" */
    TCPMSG_DELIM_CRLF = 2,    /* strict "\r\n": a bare "\r" or "\n" in a line is -EPROTO */
    TCPMSG_DELIM_BYTES = 3    /* the config's delimiter bytes (1..16, binary-safe) */
};

/* Delimiter-terminated frames:  [payload][delimiter] */
struct tcpmsg_delim_config {
    enum tcpmsg_delim_mode mode; /* default TCPMSG_DELIM_LF, or TCPMSG_DELIM_BYTES when
                                    `delim` is set */
    const void *delim;           /* TCPMSG_DELIM_BYTES only: the delimiter (copied at init) */
    size_t delim_len;            /* TCPMSG_DELIM_BYTES only: 1..TCPMSG_CODEC_DELIM_MAX */
    bool keep_delim;             /* frames deliver payload + delimiter; default payload only */
    bool eof_partial;            /* at end of stream, deliver an unterminated last frame
                                    instead of failing with -EPROTO */
    size_t max_len;              /* largest payload, delimiter excluded; 0 means 16 MiB */
};

/* Fixed-size records: every frame is exactly `size` bytes. */
struct tcpmsg_fixed_config {
    size_t size;      /* record size in bytes, > 0 (no default) */
    bool pad;         /* the encoder pads shorter payloads with pad_byte (decoding delivers
                         whole records, padding included) */
    uint8_t pad_byte; /* the padding byte */
};

/* ---- the codec and its per-stream state ------------------------------------------------- */

/*
 * An initialised codec. Caller storage (stack, static or embedded in a larger struct);
 * set only by the tcpmsg_codec_init_* functions, then immutable. Its fields are private:
 * read them through the functions below.
 */
struct tcpmsg_codec {
    uint8_t kind;      /* enum tcpmsg_codec_kind; 0 = not initialised */
    uint8_t flags;     /* private TCPMSG_CODEC__F_* bits */
    uint8_t width;     /* length: field bytes (0 for varint) */
    uint8_t offset;    /* length: bytes before the field */
    uint8_t suffix;    /* length: header bytes after the field */
    uint8_t delim_len; /* delim: delimiter bytes */
    uint8_t mode;      /* delim: enum tcpmsg_delim_mode */
    uint8_t pad_byte;  /* fixed: padding byte */
    uint64_t max;      /* largest payload (fixed: the record size) */
    uint8_t delim[TCPMSG_CODEC_DELIM_MAX];
};

/*
 * Per-stream decoding state: embed one per connection, no allocation. Initialise with
 * TCPMSG_DECODER_INIT or tcpmsg_decoder_init(). Fields are private.
 */
struct tcpmsg_decoder {
    size_t scanned; /* delim: bytes already searched without finding the delimiter */
    size_t need;    /* bytes the current frame needs in all, once known; 0 if unknown */
    size_t left;    /* after finish() failed: bytes of the incomplete frame */
    int err;        /* sticky error, 0 if none */
};

#define TCPMSG_DECODER_INIT {0, 0, 0, 0}

/* A decoded frame: views into the bytes given to decode, valid as long as those bytes. */
struct tcpmsg_frame {
    const uint8_t *data; /* what the codec delivers: the payload, or with keep_header /
                            keep_delim the payload with its header / delimiter */
    size_t len;          /* bytes at data */
    const uint8_t *raw;  /* the whole frame as it was in the stream (header, payload,
                            delimiter); the frame's header fields are read from here */
    size_t raw_len;      /* bytes at raw (equals the value decode returned) */
};

/* What must be sent around a payload: built by tcpmsg_codec_encode in caller storage, so
 * that head, payload, padding and tail can go out in one writev without copying the payload. */
struct tcpmsg_encoded {
    uint8_t head[TCPMSG_CODEC_HEAD_MAX];  /* bytes before the payload (length codec) */
    size_t head_len;
    uint8_t tail[TCPMSG_CODEC_DELIM_MAX]; /* bytes after the payload (delimiter codec) */
    size_t tail_len;
    size_t pad_len;                       /* fixed codec with pad: pad_len copies of */
    uint8_t pad_byte;                     /* pad_byte follow the payload */
};

/*
 * tcpmsg_codec_init_length - configures a length-prefixed codec.
 * `cfg` is copied (NULL means all defaults). Returns 0, or -EINVAL for an impossible
 * combination: width not in {0,1,2,3,4,8}; varint with a width; offset + field + suffix
 * over TCPMSG_CODEC_HEAD_MAX; counts == FRAME with a field too small for the header; an
 * explicit max_payload the field cannot express or over PTRDIFF_MAX minus the header.
 * On error *c is left not initialised (every other call on it returns -EINVAL).
 */
TCPMSG_API int tcpmsg_codec_init_length(struct tcpmsg_codec *c,
                                        const struct tcpmsg_length_config *cfg);

/*
 * tcpmsg_codec_init_delim - configures a delimiter codec.
 * `cfg` is copied, the delimiter bytes too (NULL means LF lines, 16 MiB max). Returns 0, or
 * -EINVAL: unknown mode; TCPMSG_DELIM_BYTES without delimiter or with a length outside
 * 1..TCPMSG_CODEC_DELIM_MAX; a delimiter given with a preset mode; max_len over PTRDIFF_MAX
 * minus the delimiter.
 */
TCPMSG_API int tcpmsg_codec_init_delim(struct tcpmsg_codec *c,
                                       const struct tcpmsg_delim_config *cfg);

/*
 * tcpmsg_codec_init_fixed - configures a fixed-size record codec.
 * `cfg` is copied and required. Returns 0, or -EINVAL for a NULL cfg, size 0 or a size over
 * PTRDIFF_MAX.
 */
TCPMSG_API int tcpmsg_codec_init_fixed(struct tcpmsg_codec *c,
                                       const struct tcpmsg_fixed_config *cfg);

/*
 * tcpmsg_codec_parse - configures a codec from a short text, for command lines and
 * configuration files:
 *   len8 len16 len24 len32 len64   payload length in 1, 2, 3, 4 or 8 bytes, big endian,
 *                                  then the payload ("len32le": little endian)
 *   varint                         payload length as an unsigned LEB128 varint
 *   line                           lines ending in "\n" or "\r\n"; encodes "\n"
 *   lf / crlf                      lines ending in exactly "\n" / strict "\r\n"
 *   delim:HEX                      frames ending in the bytes HEX ("delim:00", "delim:0d0a")
 *   fixed:N                        records of exactly N bytes
 * max is the largest payload (0: the codec's default, 16 MiB or what the field holds); it
 * is ignored by fixed:N except that N over a non-zero max is -EMSGSIZE.
 * Returns 0, or -EINVAL for an unknown or malformed spec or a max the framing cannot
 * express (len16 with max 100000); c is then left not initialised.
 */
TCPMSG_API int tcpmsg_codec_parse(struct tcpmsg_codec *c, const char *spec, uint64_t max);

/*
 * tcpmsg_decoder_init - puts a decoder in its initial state: no bytes seen, no error.
 * Use it once per stream, and again to reset a decoder after an error or between streams.
 */
TCPMSG_API void tcpmsg_decoder_init(struct tcpmsg_decoder *d);

/*
 * tcpmsg_codec_decode - finds the next frame at the start of buf.
 * buf/len: the stream's unconsumed bytes (borrowed; see the decoder contract above).
 * Returns > 0: a frame is ready in *out and that many bytes of buf are consumed;
 *         0: more bytes are needed (*out is zeroed);
 *         -EMSGSIZE: the frame announced (or accumulated) more than the limit;
 *         -EPROTO: malformed framing (a bad varint, a length field smaller than the header,
 *                  a bare CR or LF in strict CRLF mode);
 *         -EINVAL: c not initialised, or buf NULL with len > 0.
 * Framing errors are sticky: later calls return the same code until tcpmsg_decoder_init().
 * Limits are checked as soon as the length is known, before the payload arrives, and a
 * delimiter search stops at the limit: nothing a peer announces is ever reserved.
 */
TCPMSG_API ptrdiff_t tcpmsg_codec_decode(const struct tcpmsg_codec *c, struct tcpmsg_decoder *d,
                                         const void *buf, size_t len, struct tcpmsg_frame *out);

/*
 * tcpmsg_codec_finish - decodes at end of stream: buf/len are the bytes left when the peer
 * stopped sending. Returns > 0 with a frame in *out when buf starts with a whole frame (or,
 * for a delimiter codec with eof_partial, an unterminated last frame: it is delivered
 * without a delimiter); call again with the rest. Returns TCPMSG_EOF when len is 0: the
 * stream ended cleanly at a frame boundary. Returns -EPROTO when buf holds only part of a
 * frame; tcpmsg_decoder_left() then tells how many bytes were left. Other errors as decode.
 */
TCPMSG_API ptrdiff_t tcpmsg_codec_finish(const struct tcpmsg_codec *c, struct tcpmsg_decoder *d,
                                         const void *buf, size_t len, struct tcpmsg_frame *out);

/*
 * tcpmsg_decoder_error - the decoder's sticky error, 0 if none.
 * tcpmsg_decoder_left - after tcpmsg_codec_finish failed with -EPROTO, the bytes of the
 * incomplete last frame; 0 otherwise.
 */
TCPMSG_API int tcpmsg_decoder_error(const struct tcpmsg_decoder *d);
TCPMSG_API size_t tcpmsg_decoder_left(const struct tcpmsg_decoder *d);

/*
 * tcpmsg_codec_encode - builds the bytes that frame a payload of `len` bytes.
 * payload: the payload (borrowed, read only by the delimiter codec, which must check it
 * does not contain the delimiter; may be NULL for the other codecs or when len is 0).
 * *out receives the head (length codec: offset bytes zeroed for the caller to fill, the
 * length, suffix bytes zeroed), the tail (delimiter) and the padding; send head, payload,
 * pad_len pad bytes and tail, in this order.
 * Returns 0, or -EMSGSIZE (len over the limit or the field), -EINVAL (fixed codec: len !=
 * size without pad; delimiter codec: the payload contains the delimiter, or in ANY_EOL /
 * CRLF mode a "\r" or "\n" the decoder would read as a line end), -EINVAL for a codec not
 * initialised. Whatever encode accepts, decode delivers unchanged.
 */
TCPMSG_API int tcpmsg_codec_encode(const struct tcpmsg_codec *c, const void *payload, size_t len,
                                   struct tcpmsg_encoded *out);

/*
 * tcpmsg_codec_write - encodes a whole frame (head, payload, padding, tail) into dst.
 * dst/cap: caller storage; payload may overlap nothing in dst. Returns the frame's size in
 * bytes, -ENOBUFS if cap is too small (dst untouched), or the errors of tcpmsg_codec_encode.
 * tcpmsg_codec_frame_size() tells the size needed.
 */
TCPMSG_API ptrdiff_t tcpmsg_codec_write(const struct tcpmsg_codec *c, const void *payload,
                                        size_t len, void *dst, size_t cap);

/*
 * tcpmsg_codec_frame_size - bytes on the wire of a frame with a `len`-byte payload, or 0 if
 * such a payload cannot be encoded (over the limit, wrong fixed size, codec not initialised).
 */
TCPMSG_API size_t tcpmsg_codec_frame_size(const struct tcpmsg_codec *c, size_t len);

/*
 * tcpmsg_codec_max_payload - the largest payload the codec accepts (fixed: the record
 * size); 0 for a codec not initialised.
 * tcpmsg_codec_max_frame - the largest frame on the wire (payload plus header, delimiter);
 * what a receiver may have to buffer for one frame. 0 for a codec not initialised.
 * tcpmsg_codec_kind - the codec's enum tcpmsg_codec_kind, 0 if not initialised.
 */
TCPMSG_API uint64_t tcpmsg_codec_max_payload(const struct tcpmsg_codec *c);
TCPMSG_API size_t tcpmsg_codec_max_frame(const struct tcpmsg_codec *c);
TCPMSG_API int tcpmsg_codec_kind(const struct tcpmsg_codec *c);

#ifdef __cplusplus
}
#endif

#endif /* TCPMSG_CODEC_H */
