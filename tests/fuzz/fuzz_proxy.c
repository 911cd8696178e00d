/* Fuzz target: the PROXY protocol header parser. Whatever the bytes, it returns a length
 * within them, -EAGAIN only for a prefix shorter than the bound, or TCPMSG_EPROXY; a parsed
 * header parses the same with bytes after it, and every prefix of it asks for more. */
#include "fuzz_common.h"

#include "tcpmsg/proxy.h"

#include <errno.h>
#include <stdlib.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tcpmsg_proxy_info pi, again;
    int r = tcpmsg_proxy_parse(data, size, &pi);
    if (r == -EAGAIN) {
        if (size >= TCPMSG_PROXY_MAX)
            abort(); /* bounded: never "read more" past the limit */
        return 0;
    }
    if (r == TCPMSG_EPROXY)
        return 0;
    if (r <= 0 || (size_t)r > size || (size_t)r > TCPMSG_PROXY_MAX || (pi.version != 1 && pi.version != 2))
        abort();
    if (pi.alpn[sizeof pi.alpn - 1] || pi.authority[sizeof pi.authority - 1])
        abort(); /* always terminated */
    /* The same header alone, and each of its prefixes. */
    if (tcpmsg_proxy_parse(data, (size_t)r, &again) != r || again.src.len != pi.src.len)
        abort();
    for (size_t k = 0; k < (size_t)r; k += 1 + (size_t)r / 64)
        if (tcpmsg_proxy_parse(data, k, &again) != -EAGAIN)
            abort();
    return 0;
}
