#!/usr/bin/env python3
"""A client for tcpmsg-calc-server in plain Python: only `socket` and `struct`.

The protocol (examples/calc_proto.h) fixes every size and every encoding, in network byte
order, so this program needs nothing of libtcpmsg:

    frame   = u16 type, u32 body length, body          struct format '!HI'
    number  = u8 tag, then int64 ('i', '!q') or IEEE 754 double ('d', '!d')
    request = type 1..5 (+ - * / %), body: two numbers
    reply   = 0x8000 and one number, or 0x8001 and the reason as text

Usage: calc_client.py HOST PORT 'NUMBER OP NUMBER'    e.g.  calc_client.py ::1 7000 '6 * 7'
Exit status: 0 with the result on stdout, 1 on an error (message on stderr), 2 on bad usage.
"""
import re
import socket
import struct
import sys

OPS = {"+": 1, "-": 2, "*": 3, "/": 4, "%": 5}
RESULT, ERROR = 0x8000, 0x8001
NUMBER = r"\s*([-+]?(?:inf|nan|[0-9.]+(?:[eE][-+]?[0-9]+)?))\s*"


def pack_number(text):
    if re.fullmatch(r"[-+]?[0-9]+", text) and -(2**63) <= int(text) < 2**63:
        return struct.pack("!cq", b"i", int(text))
    return struct.pack("!cd", b"d", float(text))


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


def main(argv):
    if len(argv) < 4:
        print("usage: calc_client.py HOST PORT EXPR", file=sys.stderr)
        return 2
    host, port, expr = argv[1], int(argv[2]), " ".join(argv[3:])
    m = re.fullmatch(NUMBER + r"([-+*/%])" + NUMBER, expr)
    if not m:
        print(f"calc_client.py: '{expr}': expected NUMBER OP NUMBER", file=sys.stderr)
        return 2
    body = pack_number(m.group(1)) + pack_number(m.group(3))
    try:
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(struct.pack("!HI", OPS[m.group(2)], len(body)) + body)
            rtype, length = struct.unpack("!HI", recv_exactly(sock, 6))
            if length > 4096:
                raise ValueError("reply over the protocol's 4096-byte limit")
            reply = recv_exactly(sock, length)
    except (OSError, ValueError) as e:
        print(f"calc_client.py: {e}", file=sys.stderr)
        return 1
    if rtype == ERROR:
        print(f"calc_client.py: {expr}: {reply.decode(errors='replace')}", file=sys.stderr)
        return 1
    if rtype != RESULT or len(reply) != 9:
        print("calc_client.py: unexpected reply", file=sys.stderr)
        return 1
    tag = reply[:1]
    value = struct.unpack("!q" if tag == b"i" else "!d", reply[1:])[0]
    print(value if tag == b"i" else repr(value))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
