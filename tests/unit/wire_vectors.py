#!/usr/bin/env python3
"""Reference encodings for test_wire: what Python's struct.pack('!...') produces.

Prints one line per value: KIND VALUE HEX. test_wire runs this script and checks that
tcpmsg/wire.h writes exactly the same bytes and reads back the same values."""
import math
import random
import struct

FORMATS = {
    "u8": "!B", "u16": "!H", "u32": "!I", "u64": "!Q",
    "i8": "!b", "i16": "!h", "i32": "!i", "i64": "!q",
}
BITS = {"u8": 8, "u16": 16, "u32": 32, "u64": 64, "i8": 8, "i16": 16, "i32": 32, "i64": 64}

rng = random.Random(20191)
for kind, fmt in FORMATS.items():
    n = BITS[kind]
    if kind[0] == "u":
        lo, hi = 0, (1 << n) - 1
    else:
        lo, hi = -(1 << (n - 1)), (1 << (n - 1)) - 1
    values = {lo, hi, 0, 1, lo + 1, hi - 1, 0x12 if n == 8 else 0x1234abcd & hi}
    if lo < 0:
        values |= {-1, -2}
    values |= {rng.randint(lo, hi) for _ in range(40)}
    for v in sorted(values):
        print(kind, v, struct.pack(fmt, v).hex())

floats = [0.0, -0.0, 1.0, -1.0, 0.5, 3.141592653589793, 1e-300, -2.5e300, 5e-324,
          1.7976931348623157e308, math.inf, -math.inf, math.nan]
floats += [rng.uniform(-1e6, 1e6) for _ in range(30)]
for v in floats:
    print("f64", repr(v), struct.pack("!d", v).hex())
    # Round to binary32 first so that the printed value is exactly what is encoded.
    f = struct.unpack("!f", struct.pack("!f", v))[0] if abs(v) < 3.4e38 or math.isinf(v) \
        or math.isnan(v) else None
    if f is not None:
        print("f32", repr(f), struct.pack("!f", f).hex())

for s in [b"", b"a", b"hello", bytes(range(256)), b"\x00\xff\n"]:
    print("s16", s.hex() or "-", (struct.pack("!H", len(s)) + s).hex())
    print("s32", s.hex() or "-", (struct.pack("!I", len(s)) + s).hex())
