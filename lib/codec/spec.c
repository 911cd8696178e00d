/* Framing specifications as text ("len32", "line", "fixed:512"), for command lines and
 * configuration files. */
#include "codec_internal.h"

#include <string.h>

/* Parses a decimal number of at most 19 digits (no sign, no spaces) covering all of s. */
static bool
parse_decimal(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t n = 0;
    for (; s[n]; n++) {
        if (s[n] < '0' || s[n] > '9' || n == 19)
            return false;
        v = v * 10 + (uint64_t)(s[n] - '0');
    }
    *out = v;
    return n > 0;
}

static int
hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static int
parse_length(struct tcpmsg_codec *c, const char *s, uint64_t max)
{
    struct tcpmsg_length_config lc = {.max_payload = max};
    if (strcmp(s, "varint") == 0) {
        lc.varint = true;
        return tcpmsg_codec_init_length(c, &lc);
    }
    static const struct {
        const char *name;
        unsigned width;
    } widths[] = {{"len8", 1}, {"len16", 2}, {"len24", 3}, {"len32", 4}, {"len64", 8}};
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
        size_t n = strlen(widths[i].name);
        if (strncmp(s, widths[i].name, n) != 0)
            continue;
        if (s[n] != '\0' && strcmp(s + n, "le") != 0)
            return -EINVAL;
        lc.width = widths[i].width;
        lc.little_endian = s[n] != '\0';
        return tcpmsg_codec_init_length(c, &lc);
    }
    return -EINVAL;
}

int
tcpmsg_codec_parse(struct tcpmsg_codec *c, const char *spec, uint64_t max)
{
    if (!c)
        return -EINVAL;
    c->kind = 0;
    if (!spec)
        return -EINVAL;
    if (max > SIZE_MAX)
        return -EINVAL;
    if (strncmp(spec, "len", 3) == 0 || strcmp(spec, "varint") == 0)
        return parse_length(c, spec, max);

    struct tcpmsg_delim_config dc = {.max_len = (size_t)max};
    if (strcmp(spec, "line") == 0) {
        dc.mode = TCPMSG_DELIM_ANY_EOL;
        return tcpmsg_codec_init_delim(c, &dc);
    }
    if (strcmp(spec, "lf") == 0)
        return tcpmsg_codec_init_delim(c, &dc);
    if (strcmp(spec, "crlf") == 0) {
        dc.mode = TCPMSG_DELIM_CRLF;
        return tcpmsg_codec_init_delim(c, &dc);
    }
    if (strncmp(spec, "delim:", 6) == 0) {
        const char *hex = spec + 6;
        size_t n = strlen(hex);
        uint8_t bytes[TCPMSG_CODEC_DELIM_MAX];
        if (n == 0 || n % 2 || n / 2 > sizeof bytes)
            return -EINVAL;
        for (size_t i = 0; i < n / 2; i++) {
            int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return -EINVAL;
            bytes[i] = (uint8_t)(hi << 4 | lo);
        }
        dc.mode = TCPMSG_DELIM_BYTES;
        dc.delim = bytes;
        dc.delim_len = n / 2;
        return tcpmsg_codec_init_delim(c, &dc);
    }
    if (strncmp(spec, "fixed:", 6) == 0) {
        uint64_t size;
        if (!parse_decimal(spec + 6, &size) || size == 0 || size > SIZE_MAX)
            return -EINVAL;
        if (max && size > max)
            return -EMSGSIZE;
        return tcpmsg_codec_init_fixed(c, &(struct tcpmsg_fixed_config){.size = (size_t)size});
    }
    return -EINVAL;
}
