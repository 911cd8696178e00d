/* The protocol of tcpmsg-file-send and tcpmsg-file-recv: an opaque binary file as frames.
 *
 * Every frame is  [u8 type][u32 length, big endian][length bytes]  : a length-prefixed codec
 * whose header starts with a one-byte type field (the course's "fixed header giving type
 * and size"). A transfer is two exchanges:
 *
 *   sender                                   receiver
 *   'H' header  u64 file size, then the file name as a u16-prefixed byte string
 *               (1..255 bytes, no '/', no NUL, not "." or "..")
 *                                            'A' accepted   (empty: send the data)
 *                                         or 'X' refused    the reason, as text; it closes
 *   'D' data    the next bytes of the file, FILE_CHUNK at most; as many as needed
 *   'E' end     u32 CRC-32 of the whole file (IEEE 802.3, the value of Python's zlib.crc32)
 *                                            'K' ok         u64 bytes stored
 *                                         or 'X' refused    the reason, as text
 *
 * The sender waits for the verdict on the header before it sends any data: a refused file
 * costs one round trip and no data, and the refusal is always read (had the data been sent
 * first, a receiver that refused and closed would reset the connection under the data, and
 * the sender would see its write fail before it read why). A receiver may still refuse
 * during the data (a checksum or a write that fails); then it closes with data unread, the
 * sender's write fails, and the sender reads the refusal waiting in its receive queue
 * before it reports the write error. An accepted file costs one round trip more than a
 * protocol that never waits.
 */
#ifndef TCPMSG_EXAMPLES_FILE_PROTO_H
#define TCPMSG_EXAMPLES_FILE_PROTO_H

#include <tcpmsg.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum {
    FILE_HEADER = 'H',
    FILE_DATA = 'D',
    FILE_END = 'E',
    FILE_ACCEPTED = 'A',
    FILE_OK = 'K',
    FILE_REFUSED = 'X',
};

#define FILE_CHUNK ((size_t)256 * 1024)
#define FILE_NAME_MAX 255

/* The framing both sides use: a type byte, then a 4-byte length; frames up to a chunk. */
static inline int
file_codec(struct tcpmsg_codec *c)
{
    struct tcpmsg_length_config lc = {.offset = 1, .max_payload = FILE_CHUNK};
    return tcpmsg_codec_init_length(c, &lc);
}

/* A frame's type: the offset byte in front of the length field. */
static inline uint8_t
file_type(const struct tcpmsg_frame *f)
{
    return f->raw_len ? f->raw[0] : 0;
}

/* A name the receiver may create in its directory: no path, nothing hidden by the shell's
 * special names. */
static inline bool
file_name_ok(const uint8_t *name, size_t n)
{
    if (n == 0 || n > FILE_NAME_MAX || memchr(name, '/', n) || memchr(name, '\0', n))
        return false;
    return !(n == 1 && name[0] == '.') && !(n == 2 && name[0] == '.' && name[1] == '.');
}

/* CRC-32 (reflected polynomial 0xEDB88320), continued from crc (0 to start). */
static inline uint32_t
file_crc32(uint32_t crc, const void *data, size_t n)
{
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t v = i;
            for (int k = 0; k < 8; k++)
                v = v & 1 ? 0xEDB88320u ^ (v >> 1) : v >> 1;
            table[i] = v;
        }
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#endif
