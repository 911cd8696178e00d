"""What the tests of the example programs share: the programs' directory, starting a
server program and reading the port it prints, running a client with a bounded wait, and
small raw-socket peers. No fixed ports (every server binds port 0), no sleeps as
synchronisation: a test waits for an event (a line, an exit, a connection) under a bound.
"""
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BIN = os.environ.get("TCPMSG_EXAMPLES_DIR", "")
WAIT = 30  # seconds: the bound on any single wait; tests finish far sooner when all is well


def argv(name, *args):
    """The command line of a program. Under TCPMSG_TEST_KTLS=1 (the suites' second run) a
    program given TLS options also gets --tls-ktls: the same tests then run with OpenSSL on
    the socket, handing the records to the kernel where it has kTLS."""
    args = list(args)
    if os.environ.get("TCPMSG_TEST_KTLS") == "1" and any(
            a == "--tls" or a.startswith("--tls-cert") for a in args):
        args.insert(0, "--tls-ktls")
    return [prog(name), *args]


def prog(name):
    path = os.path.join(BIN, name)
    if not os.access(path, os.X_OK):
        raise AssertionError(f"{path} is not built (set TCPMSG_EXAMPLES_DIR)")
    return path


class Server:
    """A server program started with argv (its PORT argument "0"); .port is the port it
    printed on its first line of stdout (.address: that line, "unix:..." for a Unix one)."""

    def __init__(self, name, *args, preexec_fn=None):
        # stderr goes to a file, not a pipe: a server logging thousands of connections
        # would otherwise block once the pipe is full.
        self.err = tempfile.TemporaryFile()
        # Its own process group, so that a failed test can kill it with its workers (which
        # hold its stdout open: waiting for that pipe's end would wait for ever).
        self.proc = subprocess.Popen(argv(name, *args), stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, preexec_fn=preexec_fn,
                                     start_new_session=True)
        line = self.readline()
        self.address = line.strip()  # a Unix server prints its address instead
        if not self.address.isdigit() and not self.address.startswith("unix:"):
            self.kill()
            raise AssertionError(f"{name} printed {line!r} instead of its port: {self.log()}")
        self.port = int(self.address) if self.address.isdigit() else None

    def readline(self, timeout=WAIT):
        """The next line of the server's stdout (bounded wait)."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError("the server printed nothing in time")
        return self.proc.stdout.readline()

    def stop(self, sig=signal.SIGTERM):
        """Stops the server with sig (None: it was signalled already, or ends by itself);
        returns (exit status, stderr)."""
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the server did not stop on {sig!r}: {self.log()}")
        return self.proc.returncode, self.log()

    def kill(self):
        """Kills the server and every process of its group."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def log(self):
        """What the server wrote on stderr so far. Read with pread: the file's offset is
        the one the server's processes write at (they share its description), and a seek
        here would make them write over what they wrote."""
        return read_shared(self.err)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.kill()
        else:  # workers left behind by a server that exited are killed too
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.stdout.close()
        self.err.close()


def eventually(cond, what, timeout=WAIT):
    """Polls cond() until it holds (the condition another process or thread makes true:
    a log line, an exit, replies counted), within timeout seconds; times nothing."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def read_shared(f):
    """The whole content of a file other processes append to through the same open file
    description, without moving its offset."""
    data, off = b"", 0
    while True:
        chunk = os.pread(f.fileno(), 1 << 20, off)
        if not chunk:
            return data.decode(errors="replace")
        data += chunk
        off += len(chunk)


def run(name, *args, input=b"", timeout=WAIT):
    """Runs a program to its end; returns CompletedProcess (bytes)."""
    return subprocess.run(argv(name, *args), input=input, capture_output=True,
                          timeout=timeout)


def undocumented_options(name):
    """The long options NAME's --help lists that its page docs/man/NAME.1 does not name."""
    import re
    r = run(name, "--help")
    options = set(re.findall(r"(--[a-z][a-z-]+)", (r.stdout + r.stderr).decode()))
    assert options, "no option in %s --help" % name
    page = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "man",
                        name + ".1")
    with open(page) as f:
        text = f.read().replace("\\-", "-")
    return sorted(o for o in options if o not in text)


def len32(payload):
    return struct.pack("!I", len(payload)) + payload


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def recv_until_closed(sock, limit=1 << 26):
    """Reads until the peer ends (EOF or reset); returns (bytes, how it ended)."""
    data = b""
    try:
        while len(data) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                return data, "eof"
            data += chunk
    except ConnectionResetError:
        return data, "reset"
    return data, "limit"


def connect(port, timeout=WAIT):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


class OneShotPeer:
    """A raw TCP server on 127.0.0.1 port 0 that runs behave(sock) for one client in a
    thread: a misbehaving server for the client programs to meet."""

    def __init__(self, behave):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.behave = behave
        self.error = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            self.lsock.settimeout(WAIT)
            conn, _ = self.lsock.accept()
            with conn:
                conn.settimeout(WAIT)
                self.behave(conn)
        except Exception as e:  # reported by close()
            self.error = e

    def close(self):
        self.thread.join(WAIT)
        self.lsock.close()


def reset(sock):
    """Closes sock with a RST instead of an orderly end."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def main():
    unittest.main(verbosity=2)
