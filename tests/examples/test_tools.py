"""tcpmsg-cat, the file transfer, the calculator (C and Python clients) and the chat room,
run as programs over loopback."""
import hashlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import zlib

from harness import (WAIT, OneShotPeer, Server, connect, len32, main, prog, recv_exactly,
                     recv_until_closed, reset, run, undocumented_options)

HERE = os.path.dirname(os.path.abspath(__file__))
PY_CALC = os.path.join(HERE, "..", "..", "examples", "python", "calc_client.py")


class Cat(unittest.TestCase):
    def test_lines_raw_hex_and_count(self):
        with Server("tcpmsg-echo-server", "0") as srv:
            p = str(srv.port)
            r = run("tcpmsg-cat", "localhost", p, input=b"a\nbb\n")
            self.assertEqual((r.returncode, r.stdout, r.stderr), (0, b"a\nbb\n", b""))
            r = run("tcpmsg-cat", "--hex", "localhost", p, input=b"\x00\x01\xff" * 6 + b"\n")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, b"18: 00 01 ff 00 01 ff 00 01 ff 00 01 ff 00 01 ff 00\n"
                                       b"    01 ff\n")
            blob = bytes(range(256)) * 100  # binary, newlines included: one frame
            r = run("tcpmsg-cat", "--raw", "localhost", p, input=blob)
            self.assertEqual((r.returncode, r.stdout), (0, blob))
            r = run("tcpmsg-cat", "--raw", "localhost", p, input=b"")  # one empty frame
            self.assertEqual((r.returncode, r.stdout), (0, b""))
            r = run("tcpmsg-cat", "--hex", "-r", "localhost", p, input=b"")
            self.assertEqual((r.returncode, r.stdout), (0, b"0:\n"))
            srv.stop()

    def test_count_stops_a_conversation_the_peer_keeps_open(self):
        def behave(s):
            s.sendall(len32(b"one") + len32(b"two") + len32(b"three"))
            recv_until_closed(s)
        peer = OneShotPeer(behave)
        sink = subprocess.Popen([prog("tcpmsg-cat"), "-n", "2", "127.0.0.1", str(peer.port)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out, _ = sink.communicate(timeout=WAIT)  # stdin stays open until then: -n ends it
        peer.close()
        self.assertEqual((sink.returncode, out), (0, b"one\ntwo\n"))

    def test_every_framing_between_two_cats(self):
        for framing, data in [("len8", b"x\n"), ("len16", b"xy\n"), ("len24", b"q\n"),
                              ("len64", b"big\n"), ("len32le", b"le\n"), ("varint", b"v\n"),
                              ("line", b"l\n"), ("crlf", b"c\n"), ("delim:00", b"z\n"),
                              ("fixed:3", b"abc\n")]:
            with self.subTest(framing=framing):
                listener = subprocess.Popen(
                    [prog("tcpmsg-cat"), "-l", "-f", framing, "127.0.0.1", "0"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                line = listener.stderr.readline().decode()
                self.assertIn("listening on port", line)
                port = line.split()[-1]
                r = run("tcpmsg-cat", "-f", framing, "127.0.0.1", port, input=data)
                out, _ = listener.communicate(timeout=WAIT)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual((listener.returncode, out), (0, data))

    def test_two_cats_over_a_unix_socket(self):
        with tempfile.TemporaryDirectory() as d:
            where = "unix:" + os.path.join(d, "cat.sock")
            listener = subprocess.Popen([prog("tcpmsg-cat"), "-l", "-f", "line", where],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
            self.assertEqual(listener.stderr.readline().decode().strip(),
                             "tcpmsg-cat: listening on " + where)
            r = run("tcpmsg-cat", "-f", "line", where, input=b"over unix\n")
            out, err = listener.communicate(timeout=WAIT)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual((listener.returncode, out), (0, b"over unix\n"))
            self.assertIn(b"connection from unix:pid=", err)
            self.assertFalse(os.path.exists(where[5:]))

    def test_wire_bytes_of_a_length_framing(self):
        got = []

        def behave(s):
            got.append(recv_until_closed(s)[0])
        peer = OneShotPeer(behave)
        r = run("tcpmsg-cat", "-f", "len16", "127.0.0.1", str(peer.port), input=b"hi\n\n")
        peer.close()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(got, [b"\x00\x02hi\x00\x00"])

    def test_errors(self):
        def oversized(s):
            s.sendall(b"\x00\x01\x00\x00")  # 65536 > --max-frame 1000
            recv_until_closed(s)
        peer = OneShotPeer(oversized)
        r = run("tcpmsg-cat", "-s", "1000", "127.0.0.1", str(peer.port))
        peer.close()
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"over the limit", r.stderr)

        done = threading.Event()

        def silent(s):  # reads the client's end of stream, then says nothing, ever
            recv_until_closed(s)
            done.wait(WAIT)
        peer = OneShotPeer(silent)
        sink = subprocess.Popen([prog("tcpmsg-cat"), "-t", "0.3", "127.0.0.1", str(peer.port)],
                                stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = sink.communicate(timeout=WAIT)
        done.set()
        peer.close()
        self.assertEqual(sink.returncode, 1)
        self.assertIn(b"nothing moved", err)
        for bad in [["-l"], ["host"], ["-f", "nope", "h", "1"], ["-n", "0", "h", "1"]]:
            self.assertEqual(run("tcpmsg-cat", *bad).returncode, 2, bad)
        self.assertEqual(run("tcpmsg-cat", "--help").returncode, 0)

    def test_man_page_documents_every_option(self):
        """Every long option --help lists (TLS ones included) is in tcpmsg-cat(1)."""
        self.assertIn(b"--tls-verify-peer", run("tcpmsg-cat", "--help").stdout)
        self.assertEqual(undocumented_options("tcpmsg-cat"), [])


class FileTransfer(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = os.path.join(self.tmp.name, "in")
        os.mkdir(self.dir)

    def tearDown(self):
        self.tmp.cleanup()

    def test_fifty_mib_with_checksum(self):
        src = os.path.join(self.tmp.name, "big.bin")
        with open(src, "wb") as f:
            f.write(os.urandom(50 * 1024 * 1024))
        with Server("tcpmsg-file-recv", "--once", "0", self.dir) as srv:
            r = run("tcpmsg-file-send", "127.0.0.1", str(srv.port), src, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(b"50%", r.stderr)  # progress for a large file
            self.assertEqual(srv.readline().strip(), os.path.join(self.dir, "big.bin"))
            status, log = srv.stop(None)  # --once: it ends by itself
            self.assertEqual(status, 0, log)
        with open(src, "rb") as a, open(os.path.join(self.dir, "big.bin"), "rb") as b:
            self.assertEqual(hashlib.sha256(a.read()).digest(), hashlib.sha256(b.read()).digest())
        self.assertEqual(os.listdir(self.dir), ["big.bin"])  # no temporary file left

    def test_small_and_empty_files_under_another_name(self):
        for content in [b"", b"x", b"hello\n" * 1000]:
            src = os.path.join(self.tmp.name, "f")
            with open(src, "wb") as f:
                f.write(content)
            with Server("tcpmsg-file-recv", "-1", "0", self.dir) as srv:
                r = run("tcpmsg-file-send", "-q", "-n", "renamed.txt", "localhost",
                        str(srv.port), src)
                self.assertEqual((r.returncode, r.stderr), (0, b""))
                self.assertEqual(srv.stop(None)[0], 0)
            with open(os.path.join(self.dir, "renamed.txt"), "rb") as f:
                self.assertEqual(f.read(), content)

    @staticmethod
    def frame(t, payload):
        return bytes([ord(t)]) + struct.pack("!I", len(payload)) + payload

    @staticmethod
    def read_frame(s):
        """(type, payload) of the next frame from s."""
        head = recv_exactly(s, 5)
        return chr(head[0]), recv_exactly(s, struct.unpack("!I", head[1:])[0])

    def raw_send(self, port, name, data, size=None, crc=None, wait=True):
        """A hand-made sender: says whatever the test wants; returns the receiver's answer
        (the verdict on the header when it is a refusal, else the verdict on the file).
        wait=False sends everything at once, without waiting for the verdict on the header,
        as a careless sender would."""
        size = len(data) if size is None else size
        crc = zlib.crc32(data) if crc is None else crc
        header = self.frame("H", struct.pack("!QH", size, len(name)) + name)
        rest = self.frame("D", data) + self.frame("E", struct.pack("!I", crc))
        with connect(port) as s:
            if not wait:
                s.sendall(header + rest)
                kind, why = self.read_frame(s)
                return self.read_frame(s) if kind == "A" else (kind, why)
            s.sendall(header)
            kind, why = self.read_frame(s)
            if kind != "A":
                self.assertEqual(recv_until_closed(s), (b"", "eof"))  # then it closes
                return kind, why
            self.assertEqual(why, b"")
            s.sendall(rest)
            return self.read_frame(s)

    def test_refusals_leave_nothing_behind(self):
        with Server("tcpmsg-file-recv", "--max-size", "100", "0", self.dir) as srv:
            for wait in [True, False]:
                for name in [b"../escape", b"a/b", b"..", b".", b"", b"x\0y", b"/etc/passwd"]:
                    with self.subTest(name=name, wait=wait):
                        kind, why = self.raw_send(srv.port, name, b"data", wait=wait)
                        self.assertEqual(kind, "X", why)
                        self.assertIn(b"name", why)
                kind, why = self.raw_send(srv.port, b"ok.bin", b"data", crc=1, wait=wait)
                self.assertEqual((kind, why), ("X", b"checksum mismatch"))
                kind, why = self.raw_send(srv.port, b"ok.bin", b"data", size=10, wait=wait)
                self.assertEqual((kind, why), ("X", b"fewer bytes than announced"))
                kind, why = self.raw_send(srv.port, b"ok.bin", b"data", size=2, wait=wait)
                self.assertEqual((kind, why), ("X", b"more bytes than announced"))
                kind, why = self.raw_send(srv.port, b"ok.bin", b"d" * 200, wait=wait)
                self.assertEqual((kind, why), ("X", b"the file is too large"))
                self.assertEqual(os.listdir(self.dir), [])
            self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "escape")))
            kind, _ = self.raw_send(srv.port, b"ok.bin", b"data")  # and it still works
            self.assertEqual(kind, "K")
            self.assertEqual(os.listdir(self.dir), ["ok.bin"])
            self.assertEqual(srv.stop()[0], 0)

    def big_file(self, mib):
        path = os.path.join(self.tmp.name, "big%d.bin" % mib)
        with open(path, "wb") as f:
            f.write(os.urandom(mib * 1024 * 1024))
        return path

    def test_a_large_file_refused_is_always_reported_as_refused(self):
        """The receiver refuses on the header and closes; the sender never sent the data
        behind it, so it always reads the refusal (before the fix, its data met the closed
        socket and it reported a reset nearly every time)."""
        src = self.big_file(20)
        with Server("tcpmsg-file-recv", "--max-size", "1", "0", self.dir) as srv:
            for i in range(50):
                r = run("tcpmsg-file-send", "-q", "127.0.0.1", str(srv.port), src)
                self.assertEqual((i, r.returncode, r.stderr),
                                 (i, 1, b"tcpmsg-file-send: the receiver refused big20.bin: "
                                        b"the file is too large\n"))
            self.assertEqual(os.listdir(self.dir), [])
            self.assertEqual(srv.stop()[0], 0)

    def test_the_sender_waits_for_the_verdict_and_needs_no_other(self):
        """Against a hand-made receiver: the sender sends the header alone and waits; a
        refusal gets no data at all; an accepted file needs no answer but the verdict on
        the header and the final one (one round trip more than sending blindly)."""
        src = self.big_file(3)
        with open(src, "rb") as f:
            content = f.read()
        seen = {}

        def refusing(conn):
            seen["header"] = self.read_frame(conn)
            conn.sendall(self.frame("X", b"not today"))
            conn.shutdown(socket.SHUT_WR)
            seen["after"] = recv_until_closed(conn)  # what the sender sent after the header

        peer = OneShotPeer(refusing)
        r = run("tcpmsg-file-send", "-q", "127.0.0.1", str(peer.port), src)
        peer.close()
        self.assertIsNone(peer.error)
        self.assertEqual((r.returncode, r.stderr),
                         (1, b"tcpmsg-file-send: the receiver refused big3.bin: not today\n"))
        self.assertEqual(seen["header"][0], "H")
        self.assertEqual(seen["after"], (b"", "eof"))  # no data frame, then its end

        def accepting(conn):
            frames = [self.read_frame(conn)]
            conn.sendall(self.frame("A", b""))
            while frames[-1][0] != "E":  # nothing more is said until the end frame
                frames.append(self.read_frame(conn))
            conn.sendall(self.frame("K", struct.pack("!Q", len(content))))
            seen["frames"] = frames
            seen["after"] = recv_until_closed(conn)

        peer = OneShotPeer(accepting)
        r = run("tcpmsg-file-send", "-q", "127.0.0.1", str(peer.port), src)
        peer.close()
        self.assertIsNone(peer.error)
        self.assertEqual((r.returncode, r.stderr), (0, b""))
        kinds = [k for k, _ in seen["frames"]]
        self.assertEqual(kinds, ["H"] + ["D"] * 12 + ["E"])
        self.assertEqual(b"".join(p for k, p in seen["frames"] if k == "D"), content)
        self.assertEqual(seen["after"], (b"", "eof"))

    def test_a_refusal_during_the_data_is_reported(self):
        """A receiver that refuses in the middle of the data and closes with data unread
        resets the connection; the sender's write fails, and it reports the reason that
        was waiting in its receive queue, not the reset."""
        src = self.big_file(20)

        def refusing_midway(conn):
            self.read_frame(conn)
            conn.sendall(self.frame("A", b""))
            self.read_frame(conn)  # the first data frame
            conn.sendall(self.frame("X", b"no space left"))
            reset(conn)  # as a close with unread data does

        for _ in range(5):
            peer = OneShotPeer(refusing_midway)
            r = run("tcpmsg-file-send", "-q", "127.0.0.1", str(peer.port), src)
            peer.close()
            self.assertIsNone(peer.error)
            self.assertEqual((r.returncode, r.stderr),
                             (1, b"tcpmsg-file-send: the receiver refused big20.bin: "
                                 b"no space left\n"))

    def test_sender_errors(self):
        r = run("tcpmsg-file-send", "127.0.0.1", "1", "/nonexistent/file")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"No such file", r.stderr)
        r = run("tcpmsg-file-send", "-n", "../x", "127.0.0.1", "1", "/etc/hostname")
        self.assertEqual(r.returncode, 2)
        with Server("tcpmsg-file-recv", "--max-size", "1", "0", self.dir) as srv:
            r = run("tcpmsg-file-send", "localhost", str(srv.port), "/etc/passwd")
            self.assertEqual(r.returncode, 1)
            self.assertIn(b"refused passwd: the file is too large", r.stderr)
            srv.stop()


class Calculator(unittest.TestCase):
    CASES = [("6 * 7", "42"), ("1.5 + 1", "2.5"), ("7 / 2", "3"), ("7.0 / 2", "3.5"),
             ("-3 % 2", "-1"), ("0.1 + 0.2", "0.30000000000000004"), ("2.0 * 1", "2.0"),
             ("9223372036854775806 + 1", "9223372036854775807"), ("1e300 * 1e300", "inf")]
    ERRORS = [("1 / 0", "division by zero"), ("9223372036854775807 + 1", "integer overflow"),
              ("-9223372036854775808 / -1", "integer overflow")]

    def test_c_and_python_clients_agree(self):
        for mode in ["event", "thread"]:
            with Server("tcpmsg-calc-server", "-m", mode, "0") as srv:
                for expr, want in self.CASES:
                    with self.subTest(mode=mode, expr=expr):
                        c = run("tcpmsg-calc", "127.0.0.1", str(srv.port), expr)
                        py = subprocess.run([sys.executable, PY_CALC, "127.0.0.1", str(srv.port),
                                             expr], capture_output=True, timeout=WAIT)
                        self.assertEqual((c.returncode, c.stdout), (0, want.encode() + b"\n"))
                        self.assertEqual((py.returncode, py.stdout), (0, want.encode() + b"\n"))
                for expr, why in self.ERRORS:
                    c = run("tcpmsg-calc", "::1", str(srv.port), expr)
                    py = subprocess.run([sys.executable, PY_CALC, "::1", str(srv.port), expr],
                                        capture_output=True, timeout=WAIT)
                    self.assertEqual(c.returncode, 1)
                    self.assertIn(why.encode(), c.stderr)
                    self.assertEqual(py.returncode, 1)
                    self.assertIn(why.encode(), py.stderr)
                self.assertEqual(srv.stop()[0], 0)

    def test_wire_format(self):
        """The bytes on the wire are the documented ones, so any language can speak it."""
        with Server("tcpmsg-calc-server", "0") as srv, connect(srv.port) as s:
            body = struct.pack("!cq", b"i", 6) + struct.pack("!cd", b"d", 0.5)
            s.sendall(struct.pack("!HI", 3, len(body)) + body)  # 6 * 0.5
            self.assertEqual(recv_exactly(s, 15), struct.pack("!HIcd", 0x8000, 9, b"d", 3.0))
            s.sendall(struct.pack("!HI", 1, 3) + b"bad")
            head = recv_exactly(s, 6)
            self.assertEqual(struct.unpack("!HI", head), (0x8001, 17))
            self.assertEqual(recv_exactly(s, 17), b"malformed request")
            srv.stop()

    def test_usage(self):
        for bad in [["h", "1"], ["h", "1", "6 ^ 7"], ["h", "1", "x + 1"], ["h", "1", "1 +"]]:
            self.assertEqual(run("tcpmsg-calc", *bad).returncode, 2, bad)


class Chat(unittest.TestCase):
    def member(self, port):
        s = connect(port)
        f = s.makefile("rb")
        return s, f

    def test_broadcast_with_sender_address_and_a_slow_member_dropped(self):
        with Server("tcpmsg-chat", "--max-output", "65536", "0") as srv:
            a, fa = self.member(srv.port)
            self.assertTrue(fa.readline().startswith(b"* welcome "))
            b, fb = self.member(srv.port)
            self.assertIn(b"1 other is here", fb.readline())
            self.assertRegex(fa.readline(), rb"^\* \S+ joined\n$")
            a.sendall(b"hello room\r\n")  # telnet's line end works too
            self.assertEqual(fb.readline(), b"127.0.0.1:%d: hello room\n" % a.getsockname()[1])
            # A member that never reads, with a small receive buffer.
            slow = socket.socket()
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.connect(("127.0.0.1", srv.port))
            self.assertRegex(fa.readline(), rb"joined")
            self.assertRegex(fb.readline(), rb"joined")
            line = b"x" * 1000 + b"\n"
            said = b"127.0.0.1:%d: " % a.getsockname()[1] + line
            left = None
            for _ in range(20000):  # until the room gives up on the slow one (20 MB at most)
                a.sendall(line)
                got = fb.readline()
                if got != said:
                    left = got
                    break
            # The slow one was dropped (reset); the others heard it leave, and go on.
            self.assertIsNotNone(left, "the slow member was never dropped")
            self.assertRegex(left, rb"^\* 127\.0\.0\.1:%d left" % slow.getsockname()[1])
            self.assertEqual(fb.readline(), said)  # the line that was being said
            _, how = recv_until_closed(slow)
            self.assertEqual(how, "reset")
            b.sendall(b"still here\n")
            got = fa.readline()
            while got.startswith(b"* "):  # a hears the slow one leave too
                got = fa.readline()
            self.assertEqual(got, b"127.0.0.1:%d: still here\n" % b.getsockname()[1])
            for f in (fa, fb, a, b, slow):
                f.close()
            status, log = srv.stop()
            self.assertEqual(status, 0)
            self.assertIn("too slow to read: dropped", log)


if __name__ == "__main__":
    main()
