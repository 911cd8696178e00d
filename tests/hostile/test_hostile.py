"""Hostile peers against the real tcpmsg-echo-server, under every model.

A table of named cases; each asserts what the server did with the hostile peer AND that it
still serves the next client. Memory is the server's resident set (summed over its
process tree for the models with processes), file descriptors are counted in /proc,
zombies are looked for among its children while it runs, and leftover processes in its
process group once it exited. No case sleeps to synchronise: a case waits for
an event (the connection's end, a reply) under a bound.
"""
import os
import random
import resource
import select
import signal
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from harness import (WAIT, Server, connect, len32, main, recv_exactly,  # noqa: E402
                     recv_until_closed, reset)

MODES = os.environ.get("TCPMSG_HOSTILE_MODES", "iterative,fork,thread,pool,event").split(",")
CONCURRENT = {"fork", "thread", "event"}  # serve many connections at once
COMMON = ["--max-frame", "100000", "--frame-timeout", "1", "--idle-timeout", "5",
          "--workers", "3", "--max-conns", "3000"]


def proc_children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    kids.append((int(d), fields[0]))
            except OSError:
                pass
    return kids


def group_members(pgid):
    """The processes of process group pgid (the server runs in its own session and group,
    so its workers are in it even once they were reparented)."""
    members = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid:
                    members.append((int(d), fields[0]))
            except OSError:
                pass
    return members


def assert_reaps_its_children(test, srv):
    """While the server runs: a child that ended is reaped (it may be a zombie for the
    instant between its exit and the watcher's wait: a zombie that lasts is the failure)."""
    deadline = time.monotonic() + WAIT
    while True:
        zombies = [pid for pid, state in proc_children(srv.proc.pid) if state == "Z"]
        if not zombies:
            return
        if time.monotonic() > deadline:
            test.fail(f"zombies not reaped by the running server: {zombies}")
        select.select([], [], [], 0.01)  # polling a state, not timing anything


def assert_left_nothing(test, srv):
    """After the server exited: no process of its group is left (a worker it did not end,
    or one it did not reap, would be)."""
    test.assertEqual(group_members(srv.proc.pid), [])


def tree_rss_kib(pid):
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
        todo += [k for k, _ in proc_children(p)]
    return total


def settled_rss_kib(srv, mode):
    """The server's resident set once it runs: every pool worker started (COMMON asks for
    3; under ASan each process adds megabytes), then a value that held for 0.3 s."""
    deadline = time.monotonic() + WAIT
    if mode == "pool":
        while len(proc_children(srv.proc.pid)) < 3 and time.monotonic() < deadline:
            select.select([], [], [], 0.01)  # polling a count, not timing anything
    rss, since = tree_rss_kib(srv.proc.pid), time.monotonic()
    while time.monotonic() - since < 0.3 and time.monotonic() < deadline:
        select.select([], [], [], 0.01)  # sampling a size, not timing anything
        now = tree_rss_kib(srv.proc.pid)
        if abs(now - rss) > 64:
            rss, since = now, time.monotonic()
    return rss


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fd_count(pid):
    """The server's own descriptors once it runs (a spare for EMFILE is opened when it
    starts serving; the pool's watcher may still be starting workers; the last client's
    socket may not be closed yet): call after one exchange; a count that held for 0.5 s."""
    before, since = fd_count(pid), time.monotonic()
    deadline = since + WAIT
    while time.monotonic() - since < 0.5 and time.monotonic() < deadline:
        select.select([], [], [], 0.01)  # sampling a count, not timing anything
        n = fd_count(pid)
        if n != before:
            before, since = n, time.monotonic()
    return before


def fd_list(pid):
    out = []
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            out.append(f"{fd}:{os.readlink(f'/proc/{pid}/fd/{fd}')}")
        except OSError:
            pass
    return " ".join(out)


def wait_closed(s, timeout=WAIT):
    """Waits for the server to end the connection; returns how ('eof' or 'reset')."""
    s.settimeout(timeout)
    return recv_until_closed(s)[1]


def still_serves(test, srv):
    with connect(srv.port) as s:
        s.sendall(len32(b"next client"))
        test.assertEqual(recv_exactly(s, 15), len32(b"next client"))


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, 10000):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 10000), hard))


class Hostile(unittest.TestCase):
    """Every case of the table, for every model."""

    @classmethod
    def setUpClass(cls):
        raise_fd_limit()

    def server(self, mode, *extra):
        return Server("tcpmsg-echo-server", "--mode", mode, *COMMON, *extra, "0")

    def each_mode(self, fn, modes=None, extra=()):
        for mode in modes or MODES:
            with self.subTest(mode=mode), self.server(mode, *extra) as srv:
                fn(mode, srv)
                still_serves(self, srv)
                assert_reaps_its_children(self, srv)
                status, log = srv.stop()
                self.assertEqual(status, 0, log)
                assert_left_nothing(self, srv)

    # ---- the table -------------------------------------------------------------------------

    def test_huge_length_and_max_plus_one(self):
        def case(mode, srv):
            rss = settled_rss_kib(srv, mode)
            for header in [b"\xff\xff\xff\xff", struct.pack("!I", 100001)]:
                with connect(srv.port) as s:
                    s.sendall(header + b"x" * 100)
                    self.assertIn(wait_closed(s), ("eof", "reset"))
            # Nothing was reserved for the 4 GiB it announced.
            self.assertLess(tree_rss_kib(srv.proc.pid) - rss, 8 * 1024)
            with connect(srv.port) as s:  # exactly the limit is fine
                s.sendall(len32(b"y" * 100000))
                self.assertEqual(recv_exactly(s, 100004), len32(b"y" * 100000))
        self.each_mode(case)

    def test_random_garbage(self):
        rng = random.Random(7)

        def case(mode, srv):
            for _ in range(5):
                with connect(srv.port) as s:
                    s.sendall(bytes(rng.getrandbits(8) for _ in range(4096)))
                    s.shutdown(socket.SHUT_WR)  # a stream that ends inside a frame
                    self.assertIn(wait_closed(s), ("eof", "reset"))
        self.each_mode(case)

    def test_zero_length_frames(self):
        def case(mode, srv):
            with connect(srv.port) as s:
                s.sendall(b"\0\0\0\0" * 1000)
                self.assertEqual(recv_exactly(s, 4000), b"\0\0\0\0" * 1000)
        self.each_mode(case)

    def test_line_without_newline_past_the_limit(self):
        def case(mode, srv):
            with connect(srv.port) as s:
                s.sendall(b"z" * 1000)  # no "\n" within --max-frame 100
                self.assertIn(wait_closed(s), ("eof", "reset"))
            with connect(srv.port) as s:
                s.sendall(b"short line\n")
                self.assertEqual(recv_exactly(s, 11), b"short line\n")
        for mode in MODES:  # line framing: its own server; the next client speaks lines
            with self.subTest(mode=mode), Server("tcpmsg-echo-server", "-m", mode, "-f", "line",
                                                 "-s", "100", "0") as srv:
                case(mode, srv)
                self.assertEqual(srv.stop()[0], 0)

    def test_slowloris_is_closed_by_the_frame_timeout(self):
        def case(mode, srv):
            with connect(srv.port) as s:
                start = time.monotonic()
                closed = False
                # One byte of a header every 0.5 s (never idle): the 1 s frame timeout ends it.
                for b in b"\x00\x00\x00\x10" + b"s" * 15:
                    s.sendall(bytes([b]))
                    r, _, _ = select.select([s], [], [], 0.5)  # paces, and sees the end
                    if r and recv_until_closed(s)[0] == b"":
                        closed = True
                        break
                self.assertTrue(closed, "a slowloris peer was never closed")
                self.assertLess(time.monotonic() - start, 8)
        self.each_mode(case)

    def test_half_close_after_sending_gets_every_reply(self):
        def case(mode, srv):
            with connect(srv.port) as s:
                frames = b"".join(len32(b"%d" % i) for i in range(200))
                s.sendall(frames)
                s.shutdown(socket.SHUT_WR)
                data, how = recv_until_closed(s)
                self.assertEqual((data, how), (frames, "eof"))
        self.each_mode(case)

    def test_reset_in_the_middle_of_a_frame(self):
        def case(mode, srv):
            for _ in range(3):
                s = connect(srv.port)
                s.sendall(struct.pack("!I", 1000) + b"half")
                reset(s)
        self.each_mode(case)

    def test_client_that_sends_64_mib_and_never_reads(self):
        def case(mode, srv):
            rss = settled_rss_kib(srv, mode)
            s = connect(srv.port)
            s.setblocking(False)
            frame = len32(b"n" * 65532)
            sent = 0
            stalled_since = None
            while sent < 64 * 1024 * 1024:
                try:
                    sent += s.send(frame)
                    stalled_since = None
                except BlockingIOError:
                    # The server stopped taking: wait (bounded) for room or the end.
                    stalled_since = stalled_since or time.monotonic()
                    if time.monotonic() - stalled_since > 2:
                        break
                    select.select([], [s], [], 0.5)
                except (BrokenPipeError, ConnectionResetError):
                    break
            grown = tree_rss_kib(srv.proc.pid) - rss
            self.assertLess(grown, 16 * 1024, f"the server grew {grown} KiB ({sent} bytes sent)")
            reset(s)
        self.each_mode(case)

    def test_client_that_leaves_before_reading_its_replies(self):
        def case(mode, srv):
            for _ in range(20):
                s = connect(srv.port)
                s.sendall(len32(b"r" * 1000) * 500)
                s.close()  # unread replies: the server writes into a closed socket
            self.assertIsNone(srv.proc.poll(), "the server died (SIGPIPE?)")
        self.each_mode(case)

    def test_two_thousand_concurrent_connections(self):
        def case(mode, srv):
            socks = [connect(srv.port) for _ in range(2000)]
            for i, s in enumerate(socks):
                s.sendall(len32(b"%d" % i))
            for i, s in enumerate(socks):
                want = len32(b"%d" % i)
                self.assertEqual(recv_exactly(s, len(want)), want)
            for s in socks:
                s.close()
        self.each_mode(case, modes=[m for m in MODES if m in ("thread", "event")])

    def test_connection_flood_past_the_fd_limit(self):
        # Under 64 descriptors the server serves 64 - 32 connections at once (max_conns is
        # bounded by RLIMIT_NOFILE, as Redis bounds maxclients) and refuses the rest at once,
        # instead of running out of descriptors with connections queued behind.
        for mode in [m for m in MODES if m in CONCURRENT]:
            with self.subTest(mode=mode):
                srv = Server("tcpmsg-echo-server", "-m", mode, "--max-conns", "3000", "0",
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                                   (64, 64)))
                with srv:
                    flood = [connect(srv.port) for _ in range(200)]
                    served = 0
                    for s in flood:  # every one is served or closed: none hangs queued
                        try:
                            s.sendall(len32(b"f"))
                            s.settimeout(WAIT)
                            got = s.recv(5)
                        except (ConnectionResetError, BrokenPipeError):
                            got = b""
                        if got:
                            self.assertEqual(got + recv_exactly(s, 5 - len(got)), len32(b"f"))
                            served += 1
                    self.assertEqual(served, 64 - 32)
                    for s in flood:
                        s.close()
                    # The server learns of those ends at its own pace: until it has closed
                    # the 32 it served, a new client is over the limit and refused.
                    deadline = time.monotonic() + WAIT
                    while srv.log().count("closed: end of stream") < served:
                        self.assertLess(time.monotonic(), deadline, "the ends were not seen")
                        select.select([], [], [], 0.01)  # polling the log, not timing
                    still_serves(self, srv)
                    status, log = srv.stop()
                    self.assertEqual(status, 0, log[-2000:])
                    self.assertEqual(log.count("refused: server at its connection limit"),
                                     200 - served)

    def test_short_connections_leave_no_fd_behind(self):
        def case(mode, srv):
            still_serves(self, srv)
            before = settled_fd_count(srv.proc.pid)
            before_list = fd_list(srv.proc.pid)
            for i in range(1000):
                with connect(srv.port) as s:
                    s.sendall(len32(b"x"))
                    recv_exactly(s, 5)
            with connect(srv.port) as s:  # the last one is surely finished afterwards
                s.sendall(len32(b"x"))
                recv_exactly(s, 5)
            deadline = time.monotonic() + WAIT
            while fd_count(srv.proc.pid) != before and time.monotonic() < deadline:
                select.select([], [], [], 0.01)  # polling a count, not timing anything
            self.assertEqual(fd_count(srv.proc.pid), before,
                             f"before: {before_list}; after: {fd_list(srv.proc.pid)}")
        self.each_mode(case)

    def test_sigterm_during_traffic_drains_and_exits_0(self):
        for mode in MODES:
            with self.subTest(mode=mode), self.server(mode) as srv:
                with connect(srv.port) as s:
                    frames = b"".join(len32(b"%d" % i) for i in range(100))
                    s.sendall(frames)
                    got = recv_exactly(s, len(frames))
                    srv.proc.send_signal(signal.SIGTERM)
                    self.assertEqual(got, frames)
                    self.assertEqual(recv_until_closed(s), (b"", "eof"))
                self.assertEqual(srv.stop(None)[0], 0)
                assert_left_nothing(self, srv)

    def test_the_leftover_check_sees_a_worker_left_behind(self):
        """The check above can fail: a server killed without ending its workers leaves them
        in its process group, and the check sees them."""
        with self.server("pool") as srv:
            still_serves(self, srv)
            deadline = time.monotonic() + WAIT
            while len(proc_children(srv.proc.pid)) < 3 and time.monotonic() < deadline:
                select.select([], [], [], 0.01)  # polling a count, not timing anything
            srv.proc.kill()  # the watcher only: its workers go on
            srv.proc.wait()
            with self.assertRaises(AssertionError):
                assert_left_nothing(self, srv)

    def test_max_conns_refuses_the_extra_connection(self):
        # POOL too: 3 workers, one of them idle, takes the third connection and refuses it.
        for mode in [m for m in MODES if m in CONCURRENT or m == "pool"]:
            with self.subTest(mode=mode), Server("tcpmsg-echo-server", "-m", mode,
                                                 "--workers", "3", "--max-conns", "2",
                                                 "0") as srv:
                a, b = connect(srv.port), connect(srv.port)
                for s in (a, b):
                    s.sendall(len32(b"in"))
                    recv_exactly(s, 6)
                with connect(srv.port) as extra:
                    self.assertIn(wait_closed(extra), ("eof", "reset"))
                a.close()
                b.sendall(len32(b"still"))
                self.assertEqual(recv_exactly(b, 9), len32(b"still"))
                b.close()
                status, log = srv.stop()
                self.assertIn("refused: server at its connection limit", log)


if __name__ == "__main__":
    main()
