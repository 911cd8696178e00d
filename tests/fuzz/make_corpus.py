#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into tests/fuzz/corpus/<target>/.

The first bytes of each input choose the codec configuration (see fuzz_common.h); the rest
is the stream (or, for roundtrip, a list of [length byte][payload] messages). Seeds cover
every codec option once so that fuzzing starts from valid frames of every shape."""
import pathlib
import struct

here = pathlib.Path(__file__).resolve().parent


def write(target, name, data):
    d = here / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(bytes(data))


def be(n, w):
    return n.to_bytes(w, "big")


def leb(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# length: a = width index | varint<<3 | le<<4 | frame<<5 | keep<<6 ; b = off | suf<<3 | sel<<6
WIDX = {4: 0, 1: 1, 2: 2, 3: 3, 8: 5}
seeds = {
    "default": (0, 0, 0, 3, be(3, 4) + b"abc" + be(0, 4) + be(5, 4) + b"hello"),
    "w1": (1, 0, 0, 1, b"\x02hi\x00\x01x"),
    "w2le": (2 | 16, 0, 0, 2, b"\x02\x00hi"),
    "w3": (3, 0, 0, 5, be(2, 3) + b"hi"),
    "w8": (5, 0, 0, 7, be(2, 8) + b"hi" + b"\xff" * 8),
    "varint": (8, 0, 0, 1, leb(3) + b"abc" + leb(130) + b"x" * 130),
    "varint_overlong": (8, 0, 0, 1, b"\x80\x00"),
    "frame": (32, 0, 0, 2, be(6, 4) + b"hi" + be(3, 4)),
    "typed": (0, 2, 0, 3, b"\x00\x07" + be(2, 4) + b"hi"),
    "typed_suffix_keep": (64, 2 | (1 << 3), 0, 1, b"\x00\x07" + be(2, 4) + b"\xaa" + b"hi"),
    "small_max": (0, 1 << 6, 10, 4, be(10, 4) + b"0123456789" + be(11, 4)),
    "truncated": (0, 0, 0, 1, be(100, 4) + b"abc"),
}
for name, (a, b, m, chunk, stream) in seeds.items():
    write("length", name, [a, b, m, chunk] + list(stream))

LF, ANY, CRLF, BYTES = 0, 1, 2, 3  # enum tcpmsg_delim_mode

# delim: a = mode | keep<<2 | eof_partial<<3 | dlen<<4 ; m = max ; delim bytes ; chunk
def delim_seed(mode, keep, partial, delim, mx, chunk, stream):
    dl = len(delim) or 1
    a = mode | keep << 2 | partial << 3 | (dl if delim else 0) << 4
    return bytes([a, mx]) + (delim or b"\x00") + bytes([chunk]) + stream

write("delim", "lf", delim_seed(LF, 0, 0, b"", 0, 2, b"hello\nworld\n\n"))
write("delim", "lf_partial", delim_seed(LF, 0, 1, b"", 0, 2, b"a\nbc"))
write("delim", "any_eol", delim_seed(ANY, 0, 0, b"", 8, 3, b"a\r\nb\nc\r\r\n"))
write("delim", "crlf", delim_seed(CRLF, 1, 0, b"", 8, 1, b"abc\r\ndef\r\nx\ry"))
write("delim", "bytes", delim_seed(BYTES, 0, 0, b"\r\n\r\n", 20, 5, b"a\r\n\r\nb\r\n\r"))
write("delim", "bytes_overlap", delim_seed(BYTES, 1, 0, b"abab", 20, 1, b"abababxab"))
write("delim", "too_long", delim_seed(LF, 0, 0, b"", 4, 1, b"0123456789\n"))

write("fixed", "four", bytes([4 << 1, 3]) + b"abcdefghij")
write("fixed", "one", bytes([1 << 1, 1]) + b"xyz")

def msgs(*ps):
    out = bytearray()
    for p in ps:
        out += bytes([len(p)]) + p
    return bytes(out)

write("roundtrip", "length", bytes([0, 0, 0, 0]) + msgs(b"abc", b"", b"x" * 40))
write("roundtrip", "varint_frame", bytes([0, 8 | 32, 0, 0]) + msgs(b"a" * 126, b"b" * 127))
write("roundtrip", "delim_bytes", bytes([1, BYTES | (2 << 4), 0, ord("a"), ord("b")]) + msgs(b"xa", b"ab", b"ba"))
write("roundtrip", "crlf", bytes([1, CRLF, 0, 0]) + msgs(b"line", b"a\rb", b""))
write("roundtrip", "fixed_pad", bytes([2, (8 << 1) | 1]) + msgs(b"abc", b"12345678", b""))


# The PROXY protocol header (the parser's input is the connection's first bytes as they are).
SIG = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])


def pp2(ver_cmd, fam, body):
    return SIG + bytes([ver_cmd, fam]) + be(len(body), 2) + body


def tlv(t, v):
    return bytes([t]) + be(len(v), 2) + v


write("proxy", "v1_tcp4", b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /")
write("proxy", "v1_tcp6", b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n")
write("proxy", "v1_unknown", b"PROXY UNKNOWN\r\n")
ip4 = bytes([192, 0, 2, 1, 198, 51, 100, 2, 0xDC, 0x04, 0x01, 0xBB])
write("proxy", "v2_inet", pp2(0x21, 0x11, ip4) + b"data")
write("proxy", "v2_inet6", pp2(0x21, 0x21, bytes(32) + b"\x30\x39\x00\x50"))
write("proxy", "v2_unix", pp2(0x21, 0x31, b"/run/c.sock".ljust(108, b"\0") + b"/run/h.sock".ljust(108, b"\0")))
write("proxy", "v2_local", pp2(0x20, 0x00, b""))
ssl = bytes([7, 0, 0, 0, 0]) + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"client1")
write("proxy", "v2_tlvs", pp2(0x21, 0x11, ip4 + tlv(0x01, b"h2") + tlv(0x02, b"api.example.org")
                              + tlv(0xE0, b"custom") + tlv(0x20, ssl)))
