/* Fuzz target: the length-prefixed decoder under every configuration. */
#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct tcpmsg_codec c;
    if (fuzz_length_codec(&in, &c) < 0)
        return 0;
    size_t chunk = fuzz_byte(&in);
    fuzz_check_stream(&c, in.p, in.n, chunk);
    return 0;
}
