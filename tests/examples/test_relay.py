"""tcpmsg-relay between real peers nobody here wrote the framing of: Python clients in front,
Python servers behind (OneShotPeer). Every byte is checked both ways and across framings; a
slow upstream bounds the relay's memory while 1 GiB is offered; each side's end (clean, a
reset, a refusal) ends the other with its reason; the command line as documented."""
import hashlib
import os
import re
import socket
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (WAIT, OneShotPeer, Server, connect, len32, main, recv_exactly,  # noqa
                     recv_until_closed, reset, run, undocumented_options)


def frame(sock):
    n = struct.unpack("!I", recv_exactly(sock, 4))[0]
    return recv_exactly(sock, n)


def line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise EOFError(f"closed after {data!r}")
        data += chunk
    return data


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith(field + ":"):
                return int(ln.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class Relay(unittest.TestCase):
    def relay(self, up_port, *opts):
        return Server("tcpmsg-relay", *opts, "0", "127.0.0.1", str(up_port))

    def test_every_byte_both_ways_across_framings(self):
        """Line clients in front, a len32 server behind that greets first, then answers each
        frame reversed: the relay re-frames each way, in order."""
        def upstream(conn):
            conn.sendall(len32(b"welcome"))
            while True:
                try:
                    data = frame(conn)
                except EOFError:
                    return  # the relay ended it: the client ended first
                conn.sendall(len32(data[::-1]))

        peer = OneShotPeer(upstream)
        with self.relay(peer.port, "--framing", "line", "--upstream-framing", "len32") as r:
            c = connect(r.port)
            self.assertEqual(line(c), b"welcome\n")  # from upstream, unasked
            lines = [(b"line %d " % i) + os.urandom(50).hex().encode() for i in range(2000)]
            c.sendall(b"".join(ln + b"\n" for ln in lines))  # pipelined
            for ln in lines:
                self.assertEqual(line(c), ln[::-1] + b"\n")
            c.shutdown(socket.SHUT_WR)  # the client's end ends the upstream's
            self.assertEqual(recv_until_closed(c), (b"", "eof"))
            c.close()
            peer.close()
            self.assertIsNone(peer.error)
            status, log = r.stop()
        self.assertEqual(status, 0, log)
        self.assertEqual(log.count("closed: end of stream"), 2, log)

    def test_a_client_that_half_closes_gets_every_reply(self):
        """The client sends its requests and ends its stream at once; the upstream answers
        only after it read that end (then closes): every answer still reaches the client,
        then the end of stream, and the relay logs two clean ends."""
        def upstream(conn):
            got = []
            while True:
                try:
                    got.append(frame(conn))
                except EOFError:
                    break  # the client's end, passed on as a half-close
            for data in got:
                conn.sendall(len32(data.upper()))
            conn.shutdown(socket.SHUT_WR)

        peer = OneShotPeer(upstream)
        with self.relay(peer.port, "--framing", "line", "--upstream-framing", "len32") as r:
            c = connect(r.port)
            lines = [b"request %d" % i for i in range(500)]
            c.sendall(b"".join(ln + b"\n" for ln in lines))
            c.shutdown(socket.SHUT_WR)
            data, how = recv_until_closed(c)
            self.assertEqual(how, "eof")
            self.assertEqual(data, b"".join(ln.upper() + b"\n" for ln in lines))
            c.close()
            peer.close()
            self.assertIsNone(peer.error)
            status, log = r.stop()
        self.assertEqual(status, 0, log)
        self.assertEqual(log.count("closed: end of stream"), 2, log)
        for ln in log.splitlines():  # a close line keeps its 4-tuple once the socket has none
            if "closed:" in ln:
                self.assertRegex(ln, r": \S+:\d+ \S+:\d+ closed: ", ln)

    def test_a_slow_upstream_bounds_the_relay_memory(self):
        """1 GiB offered by the client to an upstream that reads slower than the relay can
        pass it on (Python, hashing every byte): the relay's peak
        resident memory grows by 32 MiB at most, and every byte arrives in order."""
        total, piece = 1 << 30, 1 << 20
        got = {}

        def upstream(conn):
            h, n = hashlib.sha256(), 0
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            while n < total:
                data = frame(conn)
                h.update(data)
                n += len(data)
            got["n"], got["sha"] = n, h.hexdigest()

        peer = OneShotPeer(upstream)
        with self.relay(peer.port) as r:
            base = status_kb(r.proc.pid, "VmRSS")
            c = connect(r.port)
            want = hashlib.sha256()
            block = os.urandom(piece)
            for i in range(total // piece):
                chunk = block[i % 7:] + block[:i % 7]  # each frame differs
                want.update(chunk)
                c.sendall(len32(chunk))
            peer.close()
            self.assertIsNone(peer.error)
            self.assertEqual((got["n"], got["sha"]), (total, want.hexdigest()))
            peak = status_kb(r.proc.pid, "VmHWM")
            print(f"relay: 1 GiB through a slow upstream: peak RSS {peak // 1024} MiB, "
                  f"{(peak - base) // 1024} MiB over the start", file=sys.stderr)
            if not os.environ.get("TCPMSG_SANITIZER"):  # ASan's quarantine holds what is freed
                self.assertLess(peak - base, 32 * 1024)
            c.close()
            r.stop()

    def test_an_upstream_reset_closes_its_client_with_the_reason(self):
        def upstream(conn):
            frame(conn)
            reset(conn)

        peer = OneShotPeer(upstream)
        with self.relay(peer.port) as r:
            c = connect(r.port)
            c.sendall(len32(b"then reset"))
            data, how = recv_until_closed(c)
            self.assertEqual(data, b"")
            self.assertIn(how, ("eof", "reset"))
            # The relay logs a connection's end before its socket closes.
            self.assertIn("closed: connection reset", r.log())
            peer.close()
            c.close()
            status, log = r.stop()
        self.assertEqual(status, 0, log)

    def test_an_upstream_that_refuses_closes_the_client(self):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))  # bound, not listening: refused
        port = holder.getsockname()[1]
        with self.relay(port) as r:
            c = connect(r.port)
            self.assertEqual(recv_until_closed(c), (b"", "eof"))
            c.close()
            # Said before the client was closed (on_down, then the close).
            self.assertIn(f"upstream 127.0.0.1 port {port}: connection refused", r.log())
            status, log = r.stop()
        holder.close()
        self.assertEqual(status, 0, log)
        self.assertIn("closed: connection refused", log)

    def test_the_client_address_goes_upstream_in_a_proxy_header(self):
        """--send-proxy: the upstream (an echo server with --proxy-protocol) logs the relay's
        client, not the relay; with --proxy-protocol too, the client a balancer named in
        front of the relay is the one passed on."""
        with Server("tcpmsg-echo-server", "--bind", "127.0.0.1", "--proxy-from", "127.0.0.1",
                    "0") as echo:
            with self.relay(echo.port, "--send-proxy") as r:
                c = connect(r.port)
                c.sendall(len32(b"who am I"))
                self.assertEqual(frame(c), b"who am I")
                me = "%s:%d" % c.getsockname()[:2]
                c.close()
                self.assertEqual(r.stop()[0], 0)
            with self.relay(echo.port, "--proxy-protocol", "--send-proxy") as r:
                c = connect(r.port)
                c.sendall(b"PROXY TCP4 203.0.113.9 192.0.2.1 5555 7000\r\n" + len32(b"via"))
                self.assertEqual(frame(c), b"via")
                c.close()
                status, rlog = r.stop()
                self.assertEqual(status, 0, rlog)
                self.assertIn(" 203.0.113.9:5555 open", rlog)
            status, log = echo.stop()
        self.assertEqual(status, 0, log)
        self.assertRegex(log, r"127\.0\.0\.1:\d+ %s open" % re.escape(me))
        self.assertIn(" 203.0.113.9:5555 open", log)
        self.assertNotIn("refused", log)

    def test_the_command_line(self):
        r = run("tcpmsg-relay", "--help")
        self.assertEqual(r.returncode, 0)
        for opt in (b"--framing", b"--upstream-framing", b"--bind", b"LISTEN_PORT",
                    b"UPSTREAM_HOST", b"UPSTREAM_PORT"):
            self.assertIn(opt, r.stdout)
        for args in (["0", "127.0.0.1"], ["0", "h", "1", "extra"], ["--framing", "nope", "0",
                                                                    "h", "1"]):
            r = run("tcpmsg-relay", *args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertEqual(r.stderr.count(b"\n"), 1 + (b"--help" in r.stderr and 0), r.stderr)

    def test_the_man_page_documents_every_option(self):
        self.assertEqual(undocumented_options("tcpmsg-relay"), [])
        r = run("tcpmsg-relay", "--version")
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"tcpmsg-relay (libtcpmsg)", r.stdout)


if __name__ == "__main__":
    main()
