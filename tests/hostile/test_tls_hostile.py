"""Hostile peers against the TLS echo server (tcpmsg-echo-server --tls-cert ...), under every
model: plaintext, a ClientHello trickled a byte a second, a truncated handshake, garbage
records after the handshake, an end without close_notify, resets in the middle of the
handshake, a crowd that connects and never says hello. Each case asserts what the server
did (its log line names the reason) and that the next TLS client is served; descriptors and
memory are checked where a leak would show. Exits 77 (a CTest skip) without TLS."""
import os
import select
import socket
import ssl
import struct
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, HERE)
KTLS = os.environ.get("TCPMSG_TEST_KTLS") == "1"  # harness.argv adds --tls-ktls
from harness import WAIT, Server, len32, main, recv_exactly, recv_until_closed, reset  # noqa
from test_hostile import (fd_count, fd_list, raise_fd_limit, settled_fd_count,  # noqa: E402
                          settled_rss_kib)

PKI = os.environ.get("TCPMSG_TLS_CERTS", "")
MODES = os.environ.get("TCPMSG_HOSTILE_MODES", "iterative,fork,thread,pool,event").split(",")
CONCURRENT = {"fork", "thread", "event"}

if os.environ.get("TCPMSG_HAVE_TLS") != "1":
    print("tls_hostile: skipped: libtcpmsg was built without TLS", file=sys.stderr)
    sys.exit(77)


def pem(name):
    return os.path.join(PKI, name)


def client_context():
    return ssl.create_default_context(cafile=pem("ca.pem"))


def tls_connect(port):
    raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    return client_context().wrap_socket(raw, server_hostname="localhost")


def still_serves(test, srv):
    with tls_connect(srv.port) as s:
        s.sendall(len32(b"next client"))
        test.assertEqual(recv_exactly(s, 15), len32(b"next client"))


def client_hello():
    """The first flight of a real TLS client, taken from Python's ssl without a socket."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context().wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def wait_log(srv, words, n=1):
    deadline = time.monotonic() + WAIT
    while srv.log().count(words) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"never logged {words!r}: {srv.log()[-2000:]}")
        select.select([], [], [], 0.01)  # polling the log, not timing anything


class TlsHostile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        raise_fd_limit()

    def server(self, mode, *extra):
        return Server("tcpmsg-echo-server", "--mode", mode, "--tls-cert", pem("server.pem"),
                      "--tls-key", pem("server.key"), "--workers", "3", "--max-conns", "3000",
                      *extra, "0")

    def each_mode(self, fn, extra=(), modes=None):
        for mode in modes or MODES:
            with self.subTest(mode=mode), self.server(mode, *extra) as srv:
                fn(mode, srv)
                still_serves(self, srv)
                status, log = srv.stop()
                self.assertEqual(status, 0, log[-2000:])

    def test_plaintext_is_refused_at_once(self):
        def case(mode, srv):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as s:
                s.sendall(len32(b"hello in the clear") * 10)
                self.assertEqual(recv_until_closed(s)[0][:1] in (b"", b"\x15"), True)
            wait_log(srv, "refused: TLS handshake or protocol failure")
        self.each_mode(case)

    def test_client_hello_a_byte_a_second_meets_the_handshake_deadline(self):
        def case(mode, srv):
            hello = client_hello()
            start = time.monotonic()
            with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as s:
                try:
                    for b in hello:  # never completes within the 1 s deadline
                        s.sendall(bytes([b]))
                        select.select([], [], [], 0.2)  # the slow peer itself
                        if time.monotonic() - start > 5:
                            break
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.assertIn(recv_until_closed(s)[1], ("eof", "reset"))
            wait_log(srv, "refused: deadline passed")
        self.each_mode(case, extra=("--tls-handshake-timeout", "1"))

    def test_truncated_handshake_and_resets_in_the_middle(self):
        def case(mode, srv):
            hello = client_hello()
            with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as s:
                s.sendall(hello[: len(hello) // 2])
                s.shutdown(socket.SHUT_WR)  # and then the end
                recv_until_closed(s)
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)
            s.sendall(hello)
            recv_exactly(s, 5)  # the server's first flight has started
            reset(s)
            wait_log(srv, "refused", 2)
        self.each_mode(case)

    def test_garbage_records_after_the_handshake(self):
        def case(mode, srv):
            with tls_connect(srv.port) as s:
                s.sendall(len32(b"fine"))
                self.assertEqual(recv_exactly(s, 8), len32(b"fine"))
                raw = socket.socket(fileno=os.dup(s.fileno()))
                # An application-data record of random bytes: fails authentication.
                raw.sendall(b"\x17\x03\x03" + struct.pack("!H", 64) + os.urandom(64))
                raw.close()
                try:
                    while s.recv(4096):
                        pass
                except (ssl.SSLError, ConnectionResetError):
                    pass
            wait_log(srv, "closed: TLS handshake or protocol failure")
        self.each_mode(case)

    def test_an_end_without_close_notify_is_logged_as_truncated(self):
        def case(mode, srv):
            s = tls_connect(srv.port)
            s.sendall(len32(b"then gone"))
            self.assertEqual(recv_exactly(s, 13), len32(b"then gone"))
            raw = socket.socket(fileno=os.dup(s.fileno()))
            raw.shutdown(socket.SHUT_WR)  # TCP's end, without TLS's
            raw.close()
            if KTLS:
                # OpenSSL on the socket answers the truncation with its decode_error alert
                # before the end (over the buffers' BIO, the end comes alone).
                with self.assertRaisesRegex(ssl.SSLError, "DECODE_ERROR"):
                    recv_until_closed(s)
            else:
                recv_until_closed(s)
            s.close()
            wait_log(srv, "closed: TLS stream ended without close_notify")
        self.each_mode(case)

    def test_two_thousand_silent_clients_do_not_stop_the_others(self):
        """2,000 connections that never say hello: memory stays bounded, fds come back,
        a real client is served meanwhile, every silent one is closed by the deadline."""
        def case(mode, srv):
            still_serves(self, srv)
            before_fds = settled_fd_count(srv.proc.pid)
            rss0 = settled_rss_kib(srv, mode)
            crowd = [socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)
                     for _ in range(2000)]
            still_serves(self, srv)  # served while the crowd waits
            grown = settled_rss_kib(srv, mode) - rss0
            print(f"tls_hostile: {mode}: 2000 silent clients: +{grown} KiB", file=sys.stderr)
            # Measured (docs/limits.md): about 9.5 KiB each under EVENT (the OpenSSL session
            # object; no buffer until a byte arrives), 19 KiB under THREAD (its stack too).
            # Under a sanitizer the memory is mostly its runtime's (ASan: some 180 KiB per
            # thread): printed above, not bounded.
            bound = {"event": 32, "thread": 64}[mode] * 1024
            if not os.environ.get("TCPMSG_SANITIZER"):
                self.assertLess(grown, bound, f"{mode}: {grown} KiB for 2000 silent clients")
            for s in crowd:
                recv_until_closed(s)  # each is closed by the handshake deadline
                s.close()
            deadline = time.monotonic() + WAIT
            while fd_count(srv.proc.pid) != before_fds and time.monotonic() < deadline:
                select.select([], [], [], 0.01)  # polling a count, not timing anything
            self.assertEqual(fd_count(srv.proc.pid), before_fds,
                             f"{fd_list(srv.proc.pid)}\n{srv.log()[-3000:]}")
        self.each_mode(case, extra=("--tls-handshake-timeout", "2"),
                       modes=[m for m in MODES if m in ("thread", "event")])


if __name__ == "__main__":
    main()
