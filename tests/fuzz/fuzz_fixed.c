/* Fuzz target: the fixed-size record decoder. */
#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct tcpmsg_codec c;
    if (fuzz_fixed_codec(&in, &c) < 0)
        return 0;
    size_t chunk = fuzz_byte(&in);
    fuzz_check_stream(&c, in.p, in.n, chunk);
    return 0;
}
