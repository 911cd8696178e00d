"""tcpmsg-echo-server and tcpmsg-echo-client, run as programs: every mode with every framing,
the limits, the log, the signals, the command line, and the client against hostile servers."""
import fcntl
import os
import re
import select
import signal
import socket
import struct
import tempfile
import termios
import time
import unittest

from harness import (WAIT, OneShotPeer, Server, connect, len32, main, recv_exactly,
                     recv_until_closed, reset, run)

MODES = ["iterative", "fork", "thread", "pool", "event"]
FRAMINGS = {
    "len32": b"hello\n\nworld of frames\n",
    "line": b"hello\n\nworld of frames\n",
    "fixed:8": b"12345678\nabcdefgh\n",
}
TUPLE = r"\S+:\d+ \S+:\d+"


def wait_acked(sock):
    """Waits (bounded) until the peer's kernel acknowledged everything sent on sock: the
    bytes are in the peer's socket, whether the peer process runs or not."""
    deadline = time.monotonic() + WAIT
    while struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]:
        if time.monotonic() > deadline:
            raise AssertionError("the peer's kernel did not acknowledge the data")
        select.select([], [], [], 0.002)  # polling the queue, not timing anything


class EchoPair(unittest.TestCase):
    def test_every_mode_with_every_framing(self):
        for mode in MODES:
            for framing, lines in FRAMINGS.items():
                with self.subTest(mode=mode, framing=framing):
                    with Server("tcpmsg-echo-server", "--mode", mode, "--framing", framing,
                                "--workers", "2", "0") as srv:
                        r = run("tcpmsg-echo-client", "--framing", framing, "127.0.0.1",
                                str(srv.port), input=lines)
                        self.assertEqual(r.returncode, 0, r.stderr)
                        self.assertEqual(r.stdout, lines)
                        self.assertEqual(r.stderr, b"")
                        status, log = srv.stop()
                        self.assertEqual(status, 0, log)
                        # One line per connection opened and closed, with the 4-tuple.
                        self.assertRegex(log, TUPLE + " open\n")
                        self.assertRegex(log, TUPLE + " closed: end of stream\n")

    def test_ipv6_and_the_last_line_without_newline(self):
        with Server("tcpmsg-echo-server", "0") as srv:
            r = run("tcpmsg-echo-client", "::1", str(srv.port), input=b"one\r\ntwo")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, b"one\ntwo\n")
            srv.stop()

    def test_pipelined_ten_thousand_lines(self):
        lines = b"".join(b"message number %d\n" % i for i in range(10000))
        for mode in ["event", "thread"]:
            with self.subTest(mode=mode), Server("tcpmsg-echo-server", "-m", mode, "0") as srv:
                r = run("tcpmsg-echo-client", "localhost", str(srv.port), input=lines)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout, lines)
                srv.stop()

    def test_oversized_header_closes_only_that_connection(self):
        for mode in MODES:
            with self.subTest(mode=mode), Server("tcpmsg-echo-server", "-m", mode,
                                                 "--max-frame", "100", "0") as srv:
                with connect(srv.port) as s:
                    s.sendall(struct_len(0xFFFFFFFF))
                    data, how = recv_until_closed(s)
                    self.assertEqual(data, b"")
                with connect(srv.port) as s:  # max + 1
                    s.sendall(len32(b"x" * 101))
                    self.assertEqual(recv_until_closed(s)[0], b"")
                with connect(srv.port) as s:  # exactly the limit is fine
                    s.sendall(len32(b"y" * 100))
                    self.assertEqual(recv_exactly(s, 104), len32(b"y" * 100))
                status, log = srv.stop()
                self.assertEqual(status, 0)
                self.assertIn("closed: frame larger than the configured limit", log)

    def test_line_framing_limits_and_crlf(self):
        with Server("tcpmsg-echo-server", "-f", "line", "-s", "10", "0") as srv:
            with connect(srv.port) as s:
                s.sendall(b"crlf\r\nlf\n")
                self.assertEqual(recv_exactly(s, 8), b"crlf\nlf\n")  # replies end with \n
                s.sendall(b"x" * 11 + b"\n")  # longer than --max-frame
                self.assertEqual(recv_until_closed(s)[0], b"")
            with connect(srv.port) as s:  # the others go on
                s.sendall(b"0123456789\n")
                self.assertEqual(recv_exactly(s, 11), b"0123456789\n")
            self.assertEqual(srv.stop()[0], 0)

    def test_sigint_and_sigterm_during_traffic_exit_0(self):
        for sig in [signal.SIGINT, signal.SIGTERM]:
            for mode in MODES:
                with self.subTest(sig=sig, mode=mode), Server("tcpmsg-echo-server", "-m", mode,
                                                              "0") as srv:
                    with connect(srv.port) as s:
                        s.sendall(len32(b"served"))
                        self.assertEqual(recv_exactly(s, 10), len32(b"served"))
                        s.sendall(b"".join(len32(b"%d" % i) for i in range(50)))
                        # Wait until the replies of all 50 are coming back: received.
                        want = b"".join(len32(b"%d" % i) for i in range(50))
                        got = recv_exactly(s, len(want))
                        self.assertEqual(got, want)
                        srv.proc.send_signal(sig)
                        # The server ends the connection cleanly, then exits 0.
                        self.assertEqual(recv_until_closed(s), (b"", "eof"))
                    status, log = srv.stop(None)
                    self.assertEqual(status, 0, log)
                    self.assertIn("closed: server stopped", log)

    def test_a_half_frame_held_at_the_stop_does_not_delay_the_exit(self):
        """One stop behaviour for every mode: a client holding a header and 3 of its 10
        payload bytes is closed at once; the server exits long before its 5 s drain time."""
        for mode in MODES:
            with self.subTest(mode=mode), Server("tcpmsg-echo-server", "-m", mode, "0") as srv:
                with connect(srv.port) as s:
                    s.sendall(len32(b"served"))
                    self.assertEqual(recv_exactly(s, 10), len32(b"served"))
                    s.sendall(struct.pack("!I", 10) + b"abc")
                    wait_acked(s)
                    start = time.monotonic()
                    srv.proc.send_signal(signal.SIGTERM)
                    status, log = srv.stop(None)
                    took = time.monotonic() - start
                    self.assertEqual(status, 0, log)
                    self.assertLess(took, 2.5, f"{mode}: exit {took:.2f} s after SIGTERM")
                    self.assertEqual(recv_until_closed(s), (b"", "eof"))
                    self.assertIn("closed: server stopped", log)

    def test_frames_that_arrived_while_the_server_was_stopped_are_answered(self):
        """The whole process group is stopped (SIGSTOP), a client writes 50 frames, then the
        group gets SIGTERM (as a service manager sends it) and SIGCONT: every frame that
        arrived before the stop is answered, then the connection ends and the exit is 0."""
        for mode in MODES:
            with self.subTest(mode=mode), Server("tcpmsg-echo-server", "-m", mode, "0") as srv:
                with connect(srv.port) as s:
                    s.sendall(len32(b"served"))
                    self.assertEqual(recv_exactly(s, 10), len32(b"served"))
                    os.killpg(srv.proc.pid, signal.SIGSTOP)
                    frames = b"".join(len32(b"frame %d" % i) for i in range(50))
                    s.sendall(frames)
                    wait_acked(s)  # all 50 are in the server's socket
                    os.killpg(srv.proc.pid, signal.SIGTERM)
                    os.killpg(srv.proc.pid, signal.SIGCONT)
                    self.assertEqual(recv_exactly(s, len(frames)), frames)
                    self.assertEqual(recv_until_closed(s), (b"", "eof"))
                status, log = srv.stop(None)
                self.assertEqual(status, 0, log)

    def test_max_conns_in_every_mode(self):
        """An explicit --max-conns is honoured the same way by every mode: the connection
        past it is closed at once (pool: a fourth client with 4 workers and --max-conns 3).
        ITERATIVE serves one at a time: the next client waits, it is not refused."""
        for mode in MODES:
            with self.subTest(mode=mode), Server("tcpmsg-echo-server", "-m", mode,
                                                 "--workers", "4", "--max-conns", "3",
                                                 "0") as srv:
                held = []
                for i in range(1 if mode == "iterative" else 3):
                    c = connect(srv.port)
                    held.append(c)
                    c.sendall(len32(b"in"))
                    self.assertEqual(recv_exactly(c, 6), len32(b"in"))
                with connect(srv.port) as extra:
                    if mode == "iterative":
                        extra.sendall(len32(b"later"))
                        held[0].sendall(len32(b"busy"))
                        self.assertEqual(recv_exactly(held[0], 8), len32(b"busy"))
                        held.pop().close()
                        self.assertEqual(recv_exactly(extra, 9), len32(b"later"))
                    else:
                        self.assertEqual(recv_until_closed(extra)[0], b"")
                for c in held:
                    c.close()
                status, log = srv.stop()
                self.assertEqual(status, 0, log)
                if mode == "iterative":
                    self.assertNotIn("refused", log)
                else:
                    self.assertEqual(log.count("refused: server at its connection limit"), 1,
                                     log)

    def test_idle_timeout_and_max_conns(self):
        with Server("tcpmsg-echo-server", "--idle-timeout", "0.2", "--max-conns", "1",
                    "0") as srv:
            with connect(srv.port) as quiet:
                start = time.monotonic()
                self.assertEqual(recv_until_closed(quiet)[0], b"")  # closed by the server
                self.assertLess(time.monotonic() - start, WAIT)
            with connect(srv.port) as a:
                a.sendall(len32(b"first"))
                self.assertEqual(recv_exactly(a, 9), len32(b"first"))
                with connect(srv.port) as b:  # over --max-conns: closed at once
                    self.assertEqual(recv_until_closed(b)[0], b"")
            status, log = srv.stop()
            self.assertIn("closed: connection idle for too long", log)
            self.assertIn("refused: server at its connection limit", log)

    def test_command_line(self):
        for prog in ["tcpmsg-echo-server", "tcpmsg-echo-client"]:
            r = run(prog, "--help")
            self.assertEqual(r.returncode, 0)
            self.assertIn(b"Usage: " + prog.encode(), r.stdout)
            r = run(prog, "--version")
            self.assertEqual(r.returncode, 0)
            self.assertRegex(r.stdout, rb"^" + prog.encode() + rb" \(libtcpmsg\) \d+\.\d+\.\d+\n$")
            for bad in [[], ["--bogus", "1", "2"], ["-f", "len13", "1", "2"], ["--framing"],
                        ["1", "2", "3"]]:
                r = run(prog, *bad)
                self.assertEqual(r.returncode, 2, (prog, bad))
                self.assertEqual(r.stdout, b"")
                self.assertEqual(r.stderr.count(b"\n"), 1, r.stderr)  # one line
        r = run("tcpmsg-echo-server", "--mode", "bogus", "0")
        self.assertEqual(r.returncode, 2)
        r = run("tcpmsg-echo-server", "-s", "0", "0")
        self.assertEqual(r.returncode, 2)

    def test_runtime_failures_exit_1(self):
        with Server("tcpmsg-echo-server", "--bind", "127.0.0.1", "0") as srv:
            r = run("tcpmsg-echo-server", "--bind", "127.0.0.1", str(srv.port))
            self.assertEqual(r.returncode, 1)
            self.assertIn(b"in use", r.stderr)
            srv.stop()
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
        free.close()  # nobody listens there now
        r = run("tcpmsg-echo-client", "127.0.0.1", str(port), input=b"x\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"refused", r.stderr)
        with Server("tcpmsg-echo-server", "-f", "fixed:4", "0") as srv:
            r = run("tcpmsg-echo-client", "-f", "fixed:4", "localhost", str(srv.port),
                    input=b"1234\n12345\n")
            self.assertEqual(r.returncode, 1)
            self.assertIn(b"line 2", r.stderr)
            srv.stop()


def struct_len(n):
    return n.to_bytes(4, "big")


class UnixSockets(unittest.TestCase):
    """The echo pair over a Unix socket file and an abstract one: every mode, the file's
    mode, Python's AF_UNIX client, the log's address, the file removed at the stop."""

    def test_every_mode_over_a_socket_file(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "echo.sock")
            for mode in ["iterative", "fork", "thread", "pool", "event"]:
                with self.subTest(mode=mode):
                    with Server("tcpmsg-echo-server", "-m", mode, "--socket-mode", "660",
                                "unix:" + path) as srv:
                        self.assertEqual(srv.address, "unix:" + path)
                        self.assertEqual(os.stat(path).st_mode & 0o777, 0o660)
                        r = run("tcpmsg-echo-client", "unix:" + path, input=b"one\ntwo\n")
                        self.assertEqual((r.returncode, r.stdout), (0, b"one\ntwo\n"), r.stderr)
                        py = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                        py.settimeout(WAIT)
                        py.connect(path)
                        py.sendall(len32(b"from python"))
                        self.assertEqual(recv_exactly(py, 15), len32(b"from python"))
                        py.close()
                        status, log = srv.stop()
                    self.assertEqual(status, 0, log)
                    self.assertIn("unix:%s unix:pid=" % path, log)
                    self.assertFalse(os.path.exists(path), "the socket file outlived its server")

    def test_abstract_name_and_a_live_socket_is_not_taken(self):
        name = "unix:@tcpmsg-echo-test-%d" % os.getpid()
        with Server("tcpmsg-echo-server", name) as srv:
            r = run("tcpmsg-echo-client", name, input=b"abstract\n")
            self.assertEqual((r.returncode, r.stdout), (0, b"abstract\n"), r.stderr)
            second = run("tcpmsg-echo-server", name)
            self.assertEqual(second.returncode, 1)
            self.assertIn(b"in use", second.stderr)
            self.assertEqual(srv.stop()[0], 0)
        r = run("tcpmsg-echo-client", name, input=b"x\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"cannot connect to " + name.encode(), r.stderr)

    def test_command_line(self):
        for args in (["--socket-mode", "660", "0"], ["--socket-mode", "9z", "unix:/tmp/x"],
                     ["--bind", "127.0.0.1", "unix:/tmp/x"]):
            self.assertEqual(run("tcpmsg-echo-server", *args).returncode, 2, args)
        self.assertEqual(run("tcpmsg-echo-client", "unix:/tmp/x", "1").returncode, 2)
        long_path = "unix:/" + "p" * 107
        r = run("tcpmsg-echo-server", long_path)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"too long", r.stderr)


class HostileServer(unittest.TestCase):
    """The client meets servers that lie, cut, go silent or reset: one clear line on stderr,
    exit status 1, never a crash or a hang past the timeout."""

    def client_against(self, behave, *args, input=b"hello\n"):
        peer = OneShotPeer(behave)
        start = time.monotonic()
        r = run("tcpmsg-echo-client", *args, "127.0.0.1", str(peer.port), input=input)
        elapsed = time.monotonic() - start
        peer.close()
        self.assertEqual(r.returncode, 1, r)
        self.assertEqual(r.stderr.count(b"\n"), 1, r.stderr)
        self.assertTrue(r.stderr.startswith(b"tcpmsg-echo-client: "), r.stderr)
        return r, elapsed

    def test_oversized_length(self):
        def behave(s):
            recv_exactly(s, 9)
            s.sendall(b"\xff\xff\xff\xff")
            recv_until_closed(s)
        r, _ = self.client_against(behave)
        self.assertIn(b"over the limit", r.stderr)

    def test_truncated_frame(self):
        def behave(s):
            recv_exactly(s, 9)
            s.sendall(struct_len(10) + b"abc")
            s.shutdown(socket.SHUT_WR)
            recv_until_closed(s)
        r, _ = self.client_against(behave)
        self.assertIn(b"inside a frame", r.stderr)

    def test_silence_past_the_timeout(self):
        def behave(s):
            recv_exactly(s, 9)
            recv_until_closed(s)  # reads, never answers, until the client gives up
        r, elapsed = self.client_against(behave, "--timeout", "0.5")
        self.assertIn(b"no reply", r.stderr)
        self.assertLess(elapsed, WAIT)

    def test_reset(self):
        def behave(s):
            recv_exactly(s, 9)
            reset(s)
        r, _ = self.client_against(behave)
        self.assertRegex(r.stderr, rb"reset|closed")

    def test_closed_with_replies_missing(self):
        def behave(s):
            recv_exactly(s, 18)
            s.sendall(len32(b"hello"))
            s.shutdown(socket.SHUT_WR)
            recv_until_closed(s)
        r, _ = self.client_against(behave, input=b"hello\nworld\n")
        self.assertEqual(r.stdout, b"hello\n")
        self.assertIn(b"1 replies missing", r.stderr)

    def test_unasked_frames(self):
        def behave(s):
            recv_exactly(s, 9)
            s.sendall(len32(b"hello") + len32(b"extra"))
            recv_until_closed(s)
        r, _ = self.client_against(behave)
        self.assertIn(b"nobody asked for", r.stderr)


if __name__ == "__main__":
    main()
