"""Restarts that lose nothing: tcpmsg-echo-server is restarted 10 times with SIGHUP (each time
a new copy of the program takes the listening socket over, and the old one finishes its
connections) while 50 Python clients pipeline frames. No connect is refused; a client whose
server ended its connection (after answering what it had read) reconnects and sends again
the frames that were not answered; every frame is echoed exactly once; and the servers'
exit summaries add up to exactly what the clients received (no echo written and lost, no
frame read twice). Under the event model (two workers) and the fork model (processes)."""
import collections
import ctypes
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import WAIT, Server, eventually, len32, main  # noqa: E402

CLIENTS = 50
RESTARTS = 10
WINDOW = 4


def become_subreaper():
    """The servers' successors outlive their parents: they are reparented to this process,
    which can then reap them (PR_SET_CHILD_SUBREAPER)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def gone(pid):
    """True once pid has exited (reaped here if it is a child of this process by now)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True




class Client(threading.Thread):
    """Pipelines frames with unique ids; when its server ends the connection, reconnects
    and sends the unanswered ones again."""

    def __init__(self, port, idx):
        super().__init__(daemon=True)
        self.port, self.idx = port, idx
        self.next_id = 0
        self.answered = collections.Counter()
        self.replies = 0
        self.reconnects = 0
        self.stop = threading.Event()
        self.error = None

    def connect(self):
        try:
            return socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        except ConnectionRefusedError as e:
            raise AssertionError(f"client {self.idx}: a connect was refused") from e

    def run(self):
        try:
            self.serve()
        except Exception as e:  # reported by the test
            self.error = e

    def serve(self):
        resend = collections.deque()
        while True:
            sock = self.connect()
            self.buf = b""
            inflight = collections.deque()
            can_send = True
            try:
                while True:
                    stopping = self.stop.is_set()
                    while can_send and len(inflight) < WINDOW and (resend or not stopping):
                        fid = resend.popleft() if resend else self.new_id()
                        try:
                            sock.sendall(len32(fid))
                        except (BrokenPipeError, ConnectionResetError):
                            resend.appendleft(fid)  # the echoes already sent still come
                            can_send = False
                            break
                        inflight.append(fid)
                    if can_send and not inflight and stopping and not resend:
                        sock.shutdown(socket.SHUT_WR)
                        if self.frame(sock) is not None:
                            raise AssertionError(f"client {self.idx}: an echo not asked for")
                        return
                    if not inflight:
                        break  # it ended with nothing owed
                    got = self.frame(sock)
                    if got is None:
                        break  # the server ended it
                    want = inflight.popleft()
                    if got != want:
                        raise AssertionError(f"client {self.idx}: {got!r}, not {want!r}")
                    self.answered[got] += 1
                    self.replies += 1
            finally:
                sock.close()
            if self.buf:
                raise AssertionError(f"client {self.idx}: a cut echo at the end of a connection")
            # The server ended this connection after answering what it read: what it did not
            # answer it did not read, and goes again on the next connection.
            resend.extendleft(reversed(inflight))
            self.reconnects += 1

    def frame(self, sock):
        """The next echo, or None once the connection has ended."""
        while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack("!I", self.buf[:4])[0]:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk
        n = struct.unpack("!I", self.buf[:4])[0]
        got, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return got

    def new_id(self):
        fid = f"client {self.idx} frame {self.next_id}".encode()
        self.next_id += 1
        return fid


def summaries(log):
    return [(int(a), int(b)) for a, b in
            re.findall(r"stopped: \d+ connections, (\d+) frames in, (\d+) frames out", log)]


class Restart(unittest.TestCase):
    def setUp(self):
        become_subreaper()

    def restarts_lose_nothing(self, *args):
        self.last_log = ""
        try:
            self.run_restarts(*args)
        except BaseException:
            print("\n".join(ln for ln in self.last_log.splitlines()
                            if not ln.endswith(" open") and " closed: " not in ln),
                  file=sys.stderr)
            raise

    def run_restarts(self, *args):
        figures = []
        with Server("tcpmsg-echo-server", *args, "0") as srv:
            try:
                clients = self.load(srv, figures)
            finally:
                self.last_log = srv.log()
            if srv.proc.poll() is None:
                srv.proc.wait(WAIT)
            status = srv.proc.returncode
        log = self.last_log
        self.assertEqual(status, 0, log)
        self.assertNotIn("failed", log)
        for c in clients:
            sent = {f"client {c.idx} frame {i}".encode() for i in range(c.next_id)}
            self.assertEqual(set(c.answered), sent, f"client {c.idx}: frames never echoed")
            self.assertEqual(max(c.answered.values()), 1, f"client {c.idx}: echoed twice")
        sums = summaries(log)
        self.assertEqual(len(sums), RESTARTS + 1, "one summary per server")
        for fin, fout in sums:
            self.assertEqual(fin, fout, "a server did not answer a frame it read")
        total = sum(c.replies for c in clients)
        self.assertEqual(sum(fout for _, fout in sums), total,
                         "the servers wrote echoes the clients did not receive")
        print(f"{' '.join(args)}: {RESTARTS} restarts, {CLIENTS} clients, {total} frames, "
              f"{sum(c.reconnects for c in clients)} reconnections, 0 refused; hand-over "
              f"(SIGHUP to the new copy serving) max {max(h for h, _ in figures) * 1000:.0f} ms, "
              f"old copy gone max {max(g for _, g in figures) * 1000:.0f} ms", file=sys.stderr)

    def load(self, srv, figures):
        clients = [Client(srv.port, i) for i in range(CLIENTS)]
        for c in clients:
            c.start()
        pid = srv.proc.pid
        pids = [pid]
        for k in range(RESTARTS):
            # Load is flowing: every client has had echoes since the last restart.
            marks = [c.replies for c in clients]
            eventually(lambda: all(c.replies > m or c.error for c, m in zip(clients, marks)),
                       "echoes to every client")
            for c in clients:
                self.assertIsNone(c.error)
            t0 = time.monotonic()
            os.kill(pid, signal.SIGHUP)
            eventually(lambda: len(re.findall(r"handed over to pid (\d+)", srv.log())) > k,
                       f"hand-over {k + 1}")
            handed = time.monotonic() - t0
            new = int(re.findall(r"handed over to pid (\d+)", srv.log())[k])
            self.assertNotIn(new, pids)
            eventually(lambda: gone(pid), f"the end of server {k + 1}")
            figures.append((handed, time.monotonic() - t0))
            pid = new
            pids.append(pid)
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(WAIT)
            self.assertFalse(c.is_alive(), f"client {c.idx} did not finish")
            self.assertIsNone(c.error)
        os.kill(pid, signal.SIGTERM)
        eventually(lambda: gone(pid), "the end of the last server")
        return clients

    def test_event_model(self):
        self.restarts_lose_nothing("--mode", "event", "--workers", "2")

    def test_fork_model(self):
        self.restarts_lose_nothing("--mode", "fork")


if __name__ == "__main__":
    main()
