"""Network faults between clients and the real tcpmsg-echo-server, under every model and
framing, injected by the user-space proxy (proxy.py): writes re-cut at arbitrary byte
boundaries (down to single bytes, inside headers and delimiters), held back so they
coalesce, stalls longer than the server's frame timeout, resets in the middle of a frame.

For every connection the test knows the plan (seeded: TCPMSG_FAULT_SEED replays one) and
checks what the client saw: every frame echoed is byte for byte one it sent, in order, with
none missing before it; an untouched connection gets all its frames back and a clean end;
a reset connection ends with a reset; a connection stalled inside a frame is closed by the
server (logged "peer too slow to complete a frame") and the client sees its end.
"""
import os
import random
import socket
import struct
import sys
import threading
import unittest
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, HERE)
from harness import WAIT, Server, main  # noqa: E402
from proxy import FaultProxy, Plan  # noqa: E402

MODES = os.environ.get("TCPMSG_FAULT_MODES", "iterative,fork,thread,pool,event").split(",")
SEED = int(os.environ.get("TCPMSG_FAULT_SEED", "20261201"))
FRAMES = 120


def encode(framing, payload):
    if framing == "len32":
        return struct.pack("!I", len(payload)) + payload
    if framing == "line":
        return payload + b"\n"
    return payload  # fixed:16


def payloads(framing, rng):
    out = []
    for i in range(FRAMES):
        if framing == "fixed:16":
            p = bytes(rng.randrange(256) for _ in range(16))
        else:
            n = rng.choice([0, 1, 2, 5, 40, 300, 2000])
            alphabet = b"abcdefghij" if framing == "line" else bytes(range(256))
            p = bytes(rng.choice(alphabet) for _ in range(n))
        out.append(p)
    return out


def decode_all(framing, data):
    """The frames in data, and the leftover bytes of an incomplete last one."""
    frames, i = [], 0
    while True:
        if framing == "len32":
            if len(data) - i < 4:
                break
            n = struct.unpack("!I", data[i:i + 4])[0]
            if len(data) - i - 4 < n:
                break
            frames.append(data[i + 4:i + 4 + n])
            i += 4 + n
        elif framing == "line":
            j = data.find(b"\n", i)
            if j < 0:
                break
            frames.append(data[i:j])
            i = j + 1
        else:
            if len(data) - i < 16:
                break
            frames.append(data[i:i + 16])
            i += 16
    return frames, data[i:]


class Client(threading.Thread):
    """Sends its frames through the proxy while reading the replies; records the outcome."""

    def __init__(self, port, stream):
        super().__init__(daemon=True)
        self.port, self.stream = port, stream
        self.received, self.ended, self.write_error = b"", None, None

    def run(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        writer = threading.Thread(target=self._write, args=(s,), daemon=True)
        writer.start()
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    self.ended = "eof"
                    break
                self.received += chunk
        except ConnectionResetError:
            self.ended = "reset"
        except socket.timeout:
            self.ended = "timeout"
        try:
            s.shutdown(socket.SHUT_RDWR)  # a writer blocked on a cut connection returns
        except OSError:
            pass
        writer.join(WAIT)
        s.close()

    def _write(self, s):
        try:
            for i in range(0, len(self.stream), 1000):
                s.sendall(self.stream[i:i + 1000])
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            self.write_error = type(e).__name__  # a reset is reported to one call only


class Faults(unittest.TestCase):
    def run_one(self, mode, framing, seed):
        rng = random.Random(seed)
        conns = []
        for k in range(9):
            frames = payloads(framing, rng)
            stream = b"".join(encode(framing, p) for p in frames)
            # Boundaries, to aim the faults inside a frame.
            bounds, at = [], 0
            for p in frames:
                bounds.append(at)
                at += len(encode(framing, p))
            inside = bounds[rng.randrange(10, FRAMES - 10)] + 1  # the 2nd byte of a frame
            kind = ["clean", "clean", "clean", "clean", "reset", "reset", "stall", "stall",
                    "clean"][k]
            plan = Plan()
            if kind == "reset":
                plan.reset_at = inside
            elif kind == "stall":
                # Until the server closes it (frame timeout 1 s): a stall of a fixed length
                # could end before a server that serves one connection at a time (ITERATIVE)
                # reached this one, which then saw no stall at all.
                plan.stall_at, plan.stall_until_closed = inside, True
            conns.append({"frames": frames, "stream": stream, "kind": kind, "plan": plan})
        with Server("tcpmsg-echo-server", "-m", mode, "-f", framing, "--frame-timeout", "1",
                    "--idle-timeout", "20", "--workers", "3", "0") as srv:
            proxy = FaultProxy(srv.port, seed, plan=lambda i: conns[i]["plan"])
            clients = []
            for c in conns:  # one at a time into the proxy, so that plan i is client i
                cl = Client(proxy.port, c["stream"])
                cl.start()
                while len(proxy.events) < len(clients) + 1 and cl.is_alive():
                    threading.Event().wait(0.001)  # waiting for the proxy's accept
                clients.append(cl)
            for cl in clients:
                cl.join(WAIT * 2)
            proxy.close()
            status, log = srv.stop()
            self.assertEqual(status, 0, log)
        for i, (c, cl) in enumerate(zip(conns, clients)):
            what = f"{mode} {framing} seed {seed} conn {i} ({c['kind']})"
            got, rest = decode_all(framing, cl.received)
            self.assertFalse(cl.is_alive(), f"{what}: the client hung")
            if c["kind"] != "reset":  # a reset may cut a reply in flight: not acknowledged
                self.assertEqual(rest, b"", f"{what}: a reply cut inside a frame")
            # Every frame that came back is the one sent at that place.
            self.assertEqual(got, c["frames"][:len(got)], f"{what}: echoed bytes differ")
            ev = proxy.events[i]
            if c["kind"] == "clean":
                self.assertEqual(len(got), FRAMES, f"{what}: frames missing")
                self.assertEqual(cl.ended, "eof", what)
            elif c["kind"] == "reset":
                self.assertTrue(ev.reset, what)
                # The kernel reports the reset once, to the reader or to the writer.
                self.assertTrue(cl.ended == "reset" or cl.write_error == "ConnectionResetError",
                                f"{what}: ended {cl.ended}, writer {cl.write_error}")
                self.assertLess(len(got), FRAMES, what)
            else:
                self.assertTrue(ev.stalled, what)
                self.assertIn(cl.ended, ("eof", "reset"), what)
                self.assertLess(len(got), FRAMES, f"{what}: the stall was not noticed")
        self.assertIn("peer too slow to complete a frame", log)
        pieces = sum(e.pieces for e in proxy.events.values())
        return pieces

    def test_every_model_and_framing_through_the_faulty_network(self):
        total = 0
        for mode in MODES:
            for framing in ["len32", "line", "fixed:16"]:
                with self.subTest(mode=mode, framing=framing):
                    total += self.run_one(mode, framing, SEED + zlib.crc32(f"{mode} {framing}".encode()) % 1000)
        print(f"faults: {total} pieces forwarded", file=sys.stderr)


if __name__ == "__main__":
    main()
