/* tcpmsg-codec-demo: why TCP needs framing, in one screen.
 *
 * Three messages are framed with each of the three codecs, the bytes are handed to the
 * decoder in arbitrary 3-byte pieces (as TCP may deliver them), and whole messages come
 * out. No socket needed: the codecs are sans-I/O. */
#include <tcpmsg.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void
show(const char *title, const struct tcpmsg_codec *codec, const char *const messages[3])
{
    unsigned char wire[256], inbox[256];
    size_t used = 0, have = 0;

    for (size_t i = 0; i < 3; i++) {
        ptrdiff_t n = tcpmsg_codec_write(codec, messages[i], strlen(messages[i]), wire + used,
                                         sizeof wire - used);
        if (n < 0) {
            fprintf(stderr, "encode: %s\n", tcpmsg_strerror((int)n));
            return;
        }
        used += (size_t)n;
    }
    printf("%s: %zu bytes on the wire:", title, used);
    for (size_t i = 0; i < used; i++)
        printf(" %02x", wire[i]);
    printf("\n");

    struct tcpmsg_decoder dec = TCPMSG_DECODER_INIT;
    for (size_t fed = 0; fed < used;) {
        size_t piece = used - fed < 3 ? used - fed : 3; /* TCP may split anywhere */
        memcpy(inbox + have, wire + fed, piece);
        have += piece;
        fed += piece;
        struct tcpmsg_frame f;
        ptrdiff_t n;
        while ((n = tcpmsg_codec_decode(codec, &dec, inbox, have, &f)) > 0) {
            printf("  frame of %zu bytes: \"%.*s\"\n", f.len, (int)f.len, (const char *)f.data);
            memmove(inbox, inbox + n, have - (size_t)n);
            have -= (size_t)n;
        }
        if (n < 0) {
            fprintf(stderr, "decode: %s\n", tcpmsg_strerror((int)n));
            return;
        }
    }
    struct tcpmsg_frame f;
    printf("  end of stream: %s\n",
           tcpmsg_errname((int)tcpmsg_codec_finish(codec, &dec, inbox, have, &f)));
}

int
main(void)
{
    struct tcpmsg_codec codec;

    tcpmsg_codec_init_length(&codec, NULL); /* 4-byte big-endian length, then the payload */
    static const char *const messages[] = {"hello", "", "framing survives any split"};
    static const char *const records[] = {"hello", "", "8 bytes!"}; /* padded to 8 */
    show("length-prefixed", &codec, messages);

    tcpmsg_codec_init_delim(&codec, &(struct tcpmsg_delim_config){.mode = TCPMSG_DELIM_CRLF});
    show("CRLF lines", &codec, messages);

    tcpmsg_codec_init_fixed(&codec,
                            &(struct tcpmsg_fixed_config){.size = 8, .pad = true, .pad_byte = '.'});
    show("fixed 8-byte records", &codec, records);

    /* A hostile peer announcing 4 GiB is refused before anything is reserved. */
    struct tcpmsg_decoder dec = TCPMSG_DECODER_INIT;
    struct tcpmsg_frame f;
    tcpmsg_codec_init_length(&codec, NULL);
    ptrdiff_t n = tcpmsg_codec_decode(&codec, &dec, "\xff\xff\xff\xff", 4, &f);
    printf("a header announcing 4 GiB: %s (%s)\n", tcpmsg_errname((int)n), tcpmsg_strerror((int)n));
    return n == -EMSGSIZE ? 0 : 1;
}
