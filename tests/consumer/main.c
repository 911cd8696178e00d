/* A program outside the project's tree: it sees libtcpmsg only as an installed package. */
#include <tcpmsg.h>

#include <stdio.h>
#include <string.h>

int
main(void)
{
    if (tcpmsg_version() != TCPMSG_VERSION) {
        fprintf(stderr, "header %s but library %s\n", TCPMSG_VERSION_STRING,
                tcpmsg_version_string());
        return 1;
    }
    struct tcpmsg_codec codec;
    if (tcpmsg_codec_init_length(&codec, NULL) < 0)
        return 1;
    unsigned char wire[64];
    ptrdiff_t n = tcpmsg_codec_write(&codec, "ping", 4, wire, sizeof wire);
    struct tcpmsg_decoder dec = TCPMSG_DECODER_INIT;
    struct tcpmsg_frame f;
    if (n != 8 || tcpmsg_codec_decode(&codec, &dec, wire, (size_t)n, &f) != n || f.len != 4 ||
        memcmp(f.data, "ping", 4) != 0) {
        fprintf(stderr, "round trip failed\n");
        return 1;
    }
    printf("consumer ok: libtcpmsg %s\n", tcpmsg_version_string());
    return 0;
}
