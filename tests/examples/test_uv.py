"""tcpmsg-uv-echo: the codec inside libuv's loop, against the library's own echo client.
Built only where libuv is installed; elsewhere this exits 77, which CTest reports as a skip
(with the reason on stderr), never as a pass."""
import os
import sys
import unittest

from harness import Server, connect, main, recv_until_closed, run

if os.environ.get("TCPMSG_HAVE_UV") != "1":
    print("examples_uv: skipped: libuv is not installed (apt-get install libuv1-dev), so "
          "tcpmsg-uv-echo is not built", file=sys.stderr)
    sys.exit(77)


class UvEcho(unittest.TestCase):
    """The codec inside libuv's loop answers the echo client like the library's own server."""

    def test_echo_client_against_the_libuv_server(self):
        lines = b"".join(b"line %d\n" % i for i in range(5000)) + b"\n"
        for framing in ["len32", "line", "varint"]:
            with self.subTest(framing=framing), Server("tcpmsg-uv-echo", "-f", framing,
                                                       "0") as srv:
                r = run("tcpmsg-echo-client", "-f", framing, "::1", str(srv.port), input=lines)
                self.assertEqual((r.returncode, r.stderr), (0, b""))
                self.assertEqual(r.stdout, lines)
                if framing != "line":  # a length over the limit closes that client
                    with connect(srv.port) as s:
                        s.sendall(b"\xff\xff\xff\xff")
                        self.assertEqual(recv_until_closed(s)[0], b"")
                status, log = srv.stop()
                self.assertEqual(status, 0, log)


if __name__ == "__main__":
    main()
