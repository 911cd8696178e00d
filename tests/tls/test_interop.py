"""TLS against peers nobody here wrote: OpenSSL's s_client and s_server, Python's ssl module,
as client and as server, TLS 1.2 and 1.3, mutual TLS; and the programs' TLS options with
every verification failure a user meets. Every byte is checked. The test PKI is made by
tests/tls/make_certs.sh (TCPMSG_TLS_CERTS); exits 77 (a CTest skip) when the programs were
built without TLS."""
import os
import re
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from harness import WAIT, Server, argv, len32, main, prog, recv_exactly, run  # noqa: E402

PKI = os.environ.get("TCPMSG_TLS_CERTS", "")
MODES = ["iterative", "fork", "thread", "pool", "event"]
KTLS = os.environ.get("TCPMSG_TEST_KTLS") == "1"  # harness.argv adds --tls-ktls

if os.environ.get("TCPMSG_HAVE_TLS") != "1":
    print("tls_interop: skipped: libtcpmsg was built without TLS", file=sys.stderr)
    sys.exit(77)


def ktls_said(err, who):
    """stderr without the line that --tls-ktls adds (required there): who encrypts and who
    decrypts, the kernel or OpenSSL (on a kernel without kTLS, OpenSSL)."""
    if not KTLS:
        return err
    m = re.match(rb"%s: TLS: kTLS: (the kernel|OpenSSL) encrypts, (the kernel|OpenSSL) "
                 rb"decrypts\n" % who.encode(), err)
    if not m:
        raise AssertionError(f"{who} --tls-ktls did not say who encrypts: {err!r}")
    return err[m.end():]


def pem(name):
    return os.path.join(PKI, name)


def tls_server(*extra, mode="event", cert="server"):
    return Server("tcpmsg-echo-server", "-m", mode, "--tls-cert", pem(cert + ".pem"),
                  "--tls-key", pem(cert + ".key"), *extra, "0")


def python_client(port, version=None, cert=None, name="localhost"):
    ctx = ssl.create_default_context(cafile=pem("ca.pem"))
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    if cert:
        ctx.load_cert_chain(pem(cert + ".pem"), pem(cert + ".key"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    return ctx.wrap_socket(raw, server_hostname=name)


def read_exactly(stream, n, timeout=WAIT):
    """n bytes from a subprocess's stdout (bounded wait)."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([stream], [], [], left)[0]:
            raise AssertionError(f"{len(data)} of {n} bytes in time: {data!r}")
        chunk = os.read(stream.fileno(), n - len(data))
        if not chunk:
            raise AssertionError(f"end after {len(data)} of {n} bytes: {data!r}")
        data += chunk
    return data


class PythonClient(unittest.TestCase):
    def test_every_model_and_version(self):
        frames = [b"", b"x", b"hello over tls", os.urandom(100000), os.urandom(3 * 16384 + 7)]
        for mode in MODES:
            for version in [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]:
                with self.subTest(mode=mode, version=version), tls_server(mode=mode) as srv:
                    with python_client(srv.port, version) as s:
                        self.assertEqual(s.version(), "TLSv1.2" if version ==
                                         ssl.TLSVersion.TLSv1_2 else "TLSv1.3")
                        s.sendall(b"".join(len32(f) for f in frames))  # pipelined
                        for f in frames:
                            self.assertEqual(recv_exactly(s, 4 + len(f)), len32(f))
                        s.unwrap().close()  # close_notify, then the end
                    status, log = srv.stop()
                    self.assertEqual(status, 0, log)
                    self.assertIn("closed: end of stream", log)

    def test_mutual_tls_required(self):
        with tls_server("--tls-ca", pem("ca.pem"), "--tls-verify-peer") as srv:
            with python_client(srv.port, cert="client") as s:
                s.sendall(len32(b"with a certificate"))
                self.assertEqual(recv_exactly(s, 22), len32(b"with a certificate"))
            with self.assertRaises((ssl.SSLError, ConnectionError)):
                with python_client(srv.port) as s:  # none: refused
                    s.sendall(len32(b"x"))
                    s.recv(10)
            status, log = srv.stop()
            self.assertIn("refused", log)
            self.assertIn("required but not sent", log)

    def test_the_server_refuses_plaintext_and_silence(self):
        with tls_server() as srv, socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(len32(b"plain"))
            s.settimeout(WAIT)
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
            status, log = srv.stop()
            self.assertIn("refused: TLS handshake or protocol failure", log)


class OpenSSLClient(unittest.TestCase):
    def s_client(self, port, *extra):
        return subprocess.Popen(["openssl", "s_client", "-quiet", "-verify_return_error",
                                 "-CAfile", pem("ca.pem"), "-connect", f"127.0.0.1:{port}",
                                 "-servername", "localhost", "-verify_hostname", "localhost",
                                 *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    def test_s_client_against_every_model(self):
        for mode in MODES:
            for version in ["-tls1_2", "-tls1_3"]:
                with self.subTest(mode=mode, version=version), tls_server(mode=mode) as srv:
                    c = self.s_client(srv.port, version)
                    payload = os.urandom(50000)
                    c.stdin.write(len32(payload) + len32(b"second"))
                    c.stdin.flush()
                    self.assertEqual(read_exactly(c.stdout, 4 + 50000), len32(payload))
                    self.assertEqual(read_exactly(c.stdout, 10), len32(b"second"))
                    c.kill()
                    c.communicate()
                    self.assertEqual(srv.stop()[0], 0)

    def test_s_client_with_a_client_certificate(self):
        with tls_server("--tls-ca", pem("ca.pem"), "--tls-verify-peer") as srv:
            c = self.s_client(srv.port, "-cert", pem("client.pem"), "-key", pem("client.key"))
            c.stdin.write(len32(b"mtls"))
            c.stdin.flush()
            self.assertEqual(read_exactly(c.stdout, 8), len32(b"mtls"))
            c.kill()
            c.communicate()
            srv.stop()


class OpenSSLServer(unittest.TestCase):
    """openssl s_server as the peer of the client programs: what it receives is read from
    its stdout and the reply written to its stdin."""

    def s_server(self, *extra, cert="server"):
        p = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:0", "-naccept", "1",
                              "-cert", pem(cert + ".pem"), "-key", pem(cert + ".key"), *extra],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            line = p.stdout.readline().decode(errors="replace")
            m = re.match(r"ACCEPT .*:(\d+)", line)
            if m:
                return p, int(m.group(1))
        p.kill()
        raise AssertionError("s_server printed no port")

    def test_cat_against_s_server(self):
        for version in ["-tls1_2", "-tls1_3"]:
            with self.subTest(version=version):
                srv, port = self.s_server(version)
                cat = subprocess.Popen(argv("tcpmsg-cat", "--tls", "--tls-ca", pem("ca.pem"),
                                        "--tls-name", "localhost", "-n", "1", "127.0.0.1",
                                        str(port)), stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                cat.stdin.write(b"question\n")
                cat.stdin.flush()
                # s_server prints the handshake's lines, then the bytes it received.
                seen = b""
                while len32(b"question") not in seen:
                    seen += read_exactly(srv.stdout, 1)
                srv.stdin.write(len32(b"answer"))
                srv.stdin.flush()
                out, err = cat.communicate(timeout=WAIT)
                self.assertEqual((cat.returncode, out, ktls_said(err, "tcpmsg-cat")),
                                 (0, b"answer\n", b""))
                srv.kill()
                srv.communicate()

    def test_echo_client_against_s_server_with_mutual_tls(self):
        srv, port = self.s_server("-CAfile", pem("ca.pem"), "-Verify", "1")
        cl = subprocess.Popen(argv("tcpmsg-echo-client", "--tls", "--tls-ca", pem("ca.pem"),
                               "--tls-cert", pem("client.pem"), "--tls-key", pem("client.key"),
                               "localhost", str(port)), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        cl.stdin.write(b"ping\n")
        cl.stdin.flush()
        seen = b""
        while len32(b"ping") not in seen:
            seen += read_exactly(srv.stdout, 1)
        self.assertIn(b"client1", seen)  # s_server printed the client certificate's subject
        srv.stdin.write(len32(b"ping"))
        srv.stdin.flush()
        out, err = cl.communicate(timeout=WAIT)
        self.assertEqual((cl.returncode, out), (0, b"ping\n"), err)
        srv.kill()
        srv.communicate()


class PythonServer(unittest.TestCase):
    """Python's ssl as the server: it echoes frames; the echo client must get every byte."""

    def serve(self, cert="server", version=None, ends_cleanly=True):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pem(cert + ".pem"), pem(cert + ".key"))
        if version:
            ctx.minimum_version = ctx.maximum_version = version
        lsock = socket.create_server(("127.0.0.1", 0))
        self.errors = []

        def loop():
            try:
                lsock.settimeout(WAIT)
                raw, _ = lsock.accept()
                with ctx.wrap_socket(raw, server_side=True) as s:
                    s.settimeout(WAIT)
                    while True:
                        head = s.recv(4)
                        if not head:
                            break
                        head += recv_exactly(s, 4 - len(head))
                        body = recv_exactly(s, struct.unpack("!I", head)[0])
                        s.sendall(head + body)
                    if ends_cleanly:
                        s.unwrap()  # close_notify (without it: a truncation, to the client)
            except (ssl.SSLError, OSError) as e:
                self.errors.append(e)
            finally:
                lsock.close()

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        return lsock.getsockname()[1], t

    def test_echo_client_against_python(self):
        lines = b"".join(b"line %d\n" % i for i in range(3000))
        for version in [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]:
            with self.subTest(version=version):
                port, t = self.serve(version=version)
                r = run("tcpmsg-echo-client", "--tls", "--tls-ca", pem("ca.pem"), "127.0.0.1",
                        str(port), input=lines)
                self.assertEqual((r.returncode, ktls_said(r.stderr, "tcpmsg-echo-client")),
                                 (0, b""))
                self.assertEqual(r.stdout, lines)
                t.join(WAIT)

    def test_verification_failures_are_one_line_and_exit_1(self):
        cases = [("expired", "localhost", "expired"), ("other", "localhost", "another name"),
                 ("rogue", "localhost", "not trusted"), ("server", "wrong.example",
                                                         "another name")]
        for cert, name, words in cases:
            with self.subTest(cert=cert, name=name):
                port, t = self.serve(cert=cert)
                r = run("tcpmsg-echo-client", "--tls", "--tls-ca", pem("ca.pem"), "--tls-name",
                        name, "127.0.0.1", str(port), input=b"never sent\n")
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertEqual(r.stderr.count(b"\n"), 1, r.stderr)
                self.assertIn(words.encode(), r.stderr)
                self.assertEqual(r.stdout, b"")
                t.join(WAIT)

    def test_insecure_says_so(self):
        port, t = self.serve(cert="rogue", ends_cleanly=False)  # and a truncation at the end
        r = run("tcpmsg-echo-client", "--tls", "--tls-insecure", "127.0.0.1", str(port),
                input=b"anyway\n")
        self.assertEqual((r.returncode, r.stdout), (0, b"anyway\n"), r.stderr)
        self.assertIn(b"insecure", r.stderr)
        t.join(WAIT)

    def test_tls_options_misused(self):
        for args in [["--tls-ca", pem("ca.pem"), "h", "1"],  # without --tls
                     ["--tls", "--tls-cert", pem("client.pem"), "h", "1"]]:  # no key
            r = run("tcpmsg-echo-client", *args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
        r = run("tcpmsg-echo-server", "--tls-cert", pem("server.pem"), "0")
        self.assertEqual(r.returncode, 2, r.stderr)
        r = run("tcpmsg-echo-server", "--tls-cert", pem("server.pem"), "--tls-key",
                pem("client.key"), "0")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"does not match", r.stderr)


if __name__ == "__main__":
    main()
