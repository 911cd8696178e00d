"""Deployment with the real tools: tcpmsg-echo-server started by systemd's socket activation
(systemd-socket-activate, Debian's systemd package) on a TCP port and on a Unix socket, the
unit files of examples/systemd/ run the same way, and offers the server must refuse rather
than bind a socket of its own."""
import configparser
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import WAIT, len32, main, prog, recv_exactly, run  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
UNITS = os.path.join(HERE, "..", "..", "examples", "systemd")
ACTIVATE = "systemd-socket-activate"


def free_port():
    """A port nothing listens on now (systemd-socket-activate refuses port 0)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Activated:
    """systemd-socket-activate -l LISTEN [--fdname NAME] tcpmsg-echo-server ARGS...: it
    listens at once and starts the server on the first connection."""

    def __init__(self, listen, *args, fdname=None):
        extra = ["--fdname=" + fdname] if fdname else []
        self.proc = subprocess.Popen([ACTIVATE, "-l", listen, *extra, prog("tcpmsg-echo-server"),
                                      *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        # Its first line says it listens: the event to wait for before connecting.
        line = self.proc.stderr.readline().decode()
        if "Listening on" not in line:
            self.proc.kill()
            raise AssertionError(f"{ACTIVATE} did not listen: {line!r}")

    def stop(self):
        """SIGTERM to the server (it is the same process once exec'ed); its exit status,
        stdout and stderr."""
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=WAIT)
        return self.proc.returncode, out.decode(), err.decode()


def echo_over(sock, payload):
    sock.settimeout(WAIT)
    sock.sendall(len32(payload))
    return recv_exactly(sock, 4 + len(payload))[4:]


class SocketActivation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if subprocess.run(["sh", "-c", "command -v " + ACTIVATE],
                          capture_output=True).returncode != 0:
            raise AssertionError(f"{ACTIVATE} is missing: apt-get install systemd")

    def test_the_first_connection_starts_the_server_and_is_served(self):
        for _ in range(5):  # the free port may be taken between the probe and the bind
            port = free_port()
            try:
                act = Activated("127.0.0.1:%d" % port, fdname="echo")
                break
            except AssertionError:
                continue
        else:
            self.fail("no free port could be listened on in 5 tries")
        c = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.assertEqual(echo_over(c, b"activated"), b"activated")
        c.close()
        r = run("tcpmsg-echo-client", "127.0.0.1", str(port), input=b"again\n")
        self.assertEqual((r.returncode, r.stdout), (0, b"again\n"), r.stderr)
        status, out, err = act.stop()
        self.assertEqual(status, 0, err)
        self.assertEqual(out, "%d\n" % port)  # no PORT argument: it said the one it serves
        self.assertIn("listening on port %d (from systemd: echo)" % port, err)
        self.assertEqual(err.count(" open"), 2, err)

    def test_a_unix_socket_in_a_server_process_model(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "echo.sock")
            act = Activated(path, "--mode", "fork")
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(path)
            self.assertEqual(echo_over(c, b"over unix"), b"over unix")
            c.close()
            status, out, err = act.stop()
            self.assertEqual(status, 0, err)
            self.assertEqual(out, "unix:%s\n" % path)
            self.assertIn("unix:%s unix:pid=" % path, err)
            # The file is systemd's, not the server's: it is left for the next start.
            self.assertTrue(os.path.exists(path))

    def test_the_unit_files_as_shipped(self):
        """The .socket's ListenStream (moved to a free port: tests never use fixed ones)
        and FileDescriptorName, the .service's ExecStart options, run by systemd's own
        activation tool."""
        sock = configparser.ConfigParser(strict=False)
        sock.read(os.path.join(UNITS, "tcpmsg-echo-server.socket"))
        svc = configparser.ConfigParser(strict=False)
        svc.read(os.path.join(UNITS, "tcpmsg-echo-server.service"))
        self.assertEqual(sock["Socket"]["ListenStream"], "4321")
        name = sock["Socket"]["FileDescriptorName"]
        argv = shlex.split(svc["Service"]["ExecStart"])
        self.assertEqual(os.path.basename(argv[0]), "tcpmsg-echo-server")
        self.assertEqual(svc["Unit"]["Requires"], "tcpmsg-echo-server.socket")
        port = free_port()
        act = Activated("127.0.0.1:%d" % port, *argv[1:], fdname=name)
        c = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.assertEqual(echo_over(c, b"as shipped"), b"as shipped")
        c.close()
        status, _, err = act.stop()
        self.assertEqual(status, 0, err)
        self.assertIn("(from systemd: %s)" % name, err)

    def test_an_offer_it_cannot_use_is_an_error_not_a_port_of_its_own(self):
        # fd 3 is a file, not a listening socket; LISTEN_PID is the server's own (exec).
        r = subprocess.run(["sh", "-c", 'exec 3</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" 0',
                            prog("tcpmsg-echo-server")], capture_output=True, timeout=WAIT)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stdout, b"")  # it printed no port: it bound none
        self.assertIn(b"LISTEN_FDS", r.stderr)
        self.assertEqual(r.stderr.count(b"\n"), 1, r.stderr)

    def test_another_process_offer_is_not_taken(self):
        # LISTEN_PID names another process (the variables leaked from a parent): ignored,
        # and the PORT argument is served as usual.
        env = dict(os.environ, LISTEN_PID="1", LISTEN_FDS="1")
        p = subprocess.Popen([prog("tcpmsg-echo-server"), "0"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
        port = int(p.stdout.readline())
        c = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.assertEqual(echo_over(c, b"own port"), b"own port")
        c.close()
        p.terminate()
        _, err = p.communicate(timeout=WAIT)
        self.assertEqual(p.returncode, 0, err)
        self.assertNotIn(b"systemd", err)


if __name__ == "__main__":
    main()
