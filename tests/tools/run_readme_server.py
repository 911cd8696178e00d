#!/usr/bin/env python3
"""The README's server: listens where told, echoes len32 frames over IPv4 and IPv6, and
exits 0 on SIGTERM after finishing what it received."""
import select
import signal
import socket
import struct
import subprocess
import sys

server = sys.argv[1]
with socket.socket(socket.AF_INET6) as probe:  # a free port, chosen by the kernel
    probe.bind(("::", 0))
    port = probe.getsockname()[1]
p = subprocess.Popen([server, str(port)])
try:
    for host in ("127.0.0.1", "::1"):
        for _ in range(500):  # until it listens (bounded)
            try:
                s = socket.create_connection((host, port), timeout=10)
                break
            except ConnectionRefusedError:
                if p.poll() is not None:
                    sys.exit(f"the server exited with {p.returncode}")
                select.select([], [], [], 0.02)  # polling for the listener, not timing
        else:
            sys.exit("the server never listened")
        with s:
            frames = b"".join(struct.pack("!I", len(m)) + m for m in (b"hello", b"", b"x" * 70000))
            s.sendall(frames)
            got = b""
            while len(got) < len(frames):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            if got != frames:
                sys.exit(f"{host}: echoed {len(got)} bytes, expected {len(frames)}")
    p.send_signal(signal.SIGTERM)
    if p.wait(timeout=20) != 0:
        sys.exit(f"exit status {p.returncode} after SIGTERM")
finally:
    if p.poll() is None:
        p.kill()
print("ok: the README server echoes over IPv4 and IPv6 and stops cleanly")
