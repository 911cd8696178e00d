"""Behind a real load balancer: HAProxy (Debian's haproxy package) in front of two
tcpmsg-echo-server backends with send-proxy-v2 and round-robin, run from the configuration of
examples/haproxy/haproxy.cfg (its addresses replaced by this run's: HAProxy's frontend is a
listening socket the test made and hands over as fd@N, the backends' ports are the ones they
printed). Real Python clients pipeline frames through it and check every echo; each backend
logs its clients by their real addresses; HAProxy's own health checks (a LOCAL header, then
a frame whose echo they expect) are served with HAProxy's address; one backend is stopped under load and every frame it read was
answered and reached its client (its exit summary against what the clients received)."""
import collections
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import WAIT, Server, eventually, len32, main, read_shared  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "..", "..", "examples", "haproxy", "haproxy.cfg")
CLIENTS = 20
WINDOW = 4  # frames in flight per client


def haproxy_binary():
    """haproxy is in /usr/sbin, which a user's PATH may not hold."""
    found = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.access(found, os.X_OK):
        raise AssertionError("haproxy is not installed (Debian package haproxy)")
    return found




class HAProxy:
    """haproxy -db with the example configuration, its frontend an inherited socket."""

    def __init__(self, backend_ports, tmp):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        with open(CONFIG) as f:
            text = f.read()
        text, n = re.subn(r"^(\s*bind\s+)\S+", rf"\g<1>fd@{self.lsock.fileno()}", text,
                          flags=re.M)
        assert n == 1, "the example has one bind line"
        ports = iter(backend_ports)
        text, n = re.subn(r"^(\s*server\s+\S+\s+)127\.0\.0\.1:\d+",
                          lambda m: f"{m.group(1)}127.0.0.1:{next(ports)}", text, flags=re.M)
        assert n == len(backend_ports), "the example has one server line per backend"
        self.cfg = os.path.join(tmp, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write(text)
        self.err = tempfile.TemporaryFile()
        check = subprocess.run([haproxy_binary(), "-c", "-f", self.cfg], capture_output=True,
                               pass_fds=[self.lsock.fileno()])
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen([haproxy_binary(), "-db", "-f", self.cfg],
                                     pass_fds=[self.lsock.fileno()], stdout=self.err,
                                     stderr=self.err, start_new_session=True)

    def log(self):
        return read_shared(self.err)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.lsock.close()
        self.err.close()


class Client(threading.Thread):
    """Pipelines frames (WINDOW in flight) and checks that each echo is the oldest frame not
    answered yet. Ends when the server ends the connection, or when told to: then it half-
    closes and reads the echoes of everything it sent."""

    def __init__(self, port, idx):
        super().__init__(daemon=True)
        self.idx = idx
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        host, cport = self.sock.getsockname()[:2]
        self.addr = f"{host}:{cport}"
        self.replies = 0
        self.sent = 0
        self.warm = threading.Event()  # 20 replies came
        self.stop = threading.Event()
        self.ended_by_server = False
        self.error = None
        self.buf = b""

    def frame(self):
        """The next frame's payload, or None at the end of the stream."""
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack("!I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    p, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return p
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                if self.buf:
                    raise AssertionError(f"client {self.idx}: a cut frame at the end")
                return None
            self.buf += chunk

    def payload(self, seq):
        return f"client {self.idx} frame {seq} ".encode() * 3

    def run(self):
        try:
            inflight = collections.deque()
            while not self.stop.is_set():
                while len(inflight) < WINDOW:
                    p = self.payload(self.sent)
                    try:
                        self.sock.sendall(len32(p))
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    inflight.append(p)
                    self.sent += 1
                got = self.frame()
                if got is None:
                    self.ended_by_server = True
                    return
                want = inflight.popleft()
                if got != want:
                    raise AssertionError(f"client {self.idx}: {got!r} instead of {want!r}")
                self.replies += 1
                if self.replies >= 20:
                    self.warm.set()
            # Told to stop: the end of its stream, then every echo still owed.
            self.sock.shutdown(socket.SHUT_WR)
            while inflight:
                got = self.frame()
                if got is None:
                    raise AssertionError(f"client {self.idx}: {len(inflight)} echoes missing")
                if got != inflight.popleft():
                    raise AssertionError(f"client {self.idx}: a wrong echo at the end")
                self.replies += 1
            if self.frame() is not None:
                raise AssertionError(f"client {self.idx}: more than it sent")
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            self.warm.set()
            self.sock.close()


def opens(log):
    """The peers of the 'open' lines of a backend's log: '<local> <peer> open'."""
    return [m.group(1) for m in re.finditer(r"^\S+: \S+ (\S+) open$", log, flags=re.M)]


def refusals(log):
    """Connections a backend refused for their header or their address. (A health check that
    arrives as a backend stops is refused for that reason: not counted.)"""
    return [line for line in log.splitlines() if " refused: " in line and
            ("PROXY" in line or "Permission denied" in line or "reset" in line)]


def summary(log):
    m = re.search(r"stopped: (\d+) connections, (\d+) frames in, (\d+) frames out", log)
    assert m, f"no summary in the backend's log:\n{log}"
    return int(m.group(2)), int(m.group(3))


class BehindHAProxy(unittest.TestCase):
    def test_two_backends_round_robin_real_addresses_and_a_graceful_stop(self):
        with tempfile.TemporaryDirectory() as tmp, \
                Server("tcpmsg-echo-server", "--bind", "127.0.0.1", "--proxy-from", "127.0.0.1", "0") as b1, \
                Server("tcpmsg-echo-server", "--bind", "127.0.0.1", "--proxy-from", "127.0.0.1", "0") as b2:
            hap = HAProxy([b1.port, b2.port], tmp)
            try:
                self.run_load(hap, b1, b2)
            except BaseException:
                print("haproxy:\n" + hap.log(), file=sys.stderr)
                raise
            finally:
                hap.close()

    def assert_reached(self, log, clients, replies, out):
        """The echoes a backend wrote are its clients' and its health checks' (one ping each):
        a check that ended cleanly had its echo; one the stop ended may or may not have."""
        answered = cut = 0
        for m in re.finditer(r"^\S+: \S+ (\S+) closed: (.*)$", log, flags=re.M):
            if m.group(1) in clients:
                continue
            if "server stopped" in m.group(2):
                cut += 1
            else:
                answered += 1
        self.assertLessEqual(replies + answered, out, "more echoes than the backend wrote")
        self.assertGreaterEqual(replies + answered + cut, out,
                                "an echo the backend wrote did not reach its client")

    def run_load(self, hap, b1, b2):
        # HAProxy's first health checks: LOCAL headers, accepted (no client yet, so every
        # connection a backend logs now is HAProxy's own).
        eventually(lambda: opens(b1.log()) and opens(b2.log()), "a health check on each backend")
        checker = opens(b1.log())[0]
        self.assertTrue(checker.startswith("127.0.0.1:"), checker)
        for b in (b1, b2):
            self.assertEqual(refusals(b.log()), [])

        clients = [Client(hap.port, i) for i in range(CLIENTS)]
        for c in clients:
            c.start()
        for c in clients:
            self.assertTrue(c.warm.wait(WAIT), f"client {c.idx} got no echoes")
            self.assertIsNone(c.error)
        # Round robin: each backend has clients, and logs them by their own addresses.
        addrs = {c.addr for c in clients}
        eventually(lambda: addrs <= set(opens(b1.log())) | set(opens(b2.log())),
                   "every client in a backend's log")
        on1 = addrs & set(opens(b1.log()))
        on2 = addrs & set(opens(b2.log()))
        self.assertFalse(on1 & on2)
        self.assertGreaterEqual(len(on1), CLIENTS // 2 - 1)
        self.assertGreaterEqual(len(on2), CLIENTS // 2 - 1)

        # Backend 1 stops under load: it answers what it read, its clients see the end.
        status, log1 = b1.stop(signal.SIGTERM)
        self.assertEqual(status, 0, log1)
        in1, out1 = summary(log1)
        mine = [c for c in clients if c.addr in on1]
        for c in mine:
            c.join(WAIT)
            self.assertFalse(c.is_alive(), f"client {c.idx} of the stopped backend still runs")
            self.assertIsNone(c.error)
            self.assertTrue(c.ended_by_server)
        self.assertEqual(in1, out1, "a frame backend 1 read was not answered")
        self.assert_reached(log1, addrs, sum(c.replies for c in mine), out1)

        # The others end their streams; every frame they sent comes back.
        rest = [c for c in clients if c.addr in on2]
        for c in rest:
            c.stop.set()
        for c in rest:
            c.join(WAIT)
            self.assertFalse(c.is_alive())
            self.assertIsNone(c.error)
            self.assertEqual(c.replies, c.sent)
        status, log2 = b2.stop(signal.SIGTERM)
        self.assertEqual(status, 0, log2)
        in2, out2 = summary(log2)
        self.assertEqual(in2, out2)
        self.assert_reached(log2, addrs, sum(c.replies for c in rest), out2)
        for log in (log1, log2):
            self.assertEqual(refusals(log), [])


if __name__ == "__main__":
    main()
