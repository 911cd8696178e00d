#!/usr/bin/env python3
"""Runs the client/server pairs printed in docs/ against each other on loopback.

Each server is started on port 0 (it prints the port the kernel chose), the client is run
against it over IPv4 and IPv6, and the client's output is checked.
"""
import re
import subprocess
import sys

import signal
import socket

(echo_server, echo_client, whoami_server, whoami_client, upper_server, heartbeat_server,
 deferred_server, dial_client) = sys.argv[1:9]
failures = []


def start(server, *args, port="0"):
    p = subprocess.Popen([server, port, *args], stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    m = re.match(r"listening on port (\d+)", line)
    if not m:
        p.kill()
        sys.exit(f"{server}: unexpected first line {line!r}")
    return p, m.group(1)


def stop(p):
    p.kill()
    p.wait()


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


p, port = start(echo_server)
try:
    for host in ("127.0.0.1", "::1", "localhost"):
        r = run([echo_client, host, port, "hello", "world", ""])
        if r.returncode != 0 or r.stdout != "hello\nworld\n\n":
            failures.append(f"echo_client {host}: rc={r.returncode} out={r.stdout!r} err={r.stderr!r}")
    r = run([echo_client, "127.0.0.1"])
    if r.returncode != 2:
        failures.append(f"echo_client usage: rc={r.returncode}")
finally:
    stop(p)

# A port nobody listens on any more: the client reports the refusal.
r = run([echo_client, "127.0.0.1", port, "x"])
if r.returncode != 1 or "refused" not in r.stderr:
    failures.append(f"echo_client to a closed port: rc={r.returncode} err={r.stderr!r}")

p, port = start(whoami_server)
try:
    for host in ("127.0.0.1", "::1"):
        r = run([whoami_client, host, port])
        m = re.fullmatch(r"client sees (\S+) (\S+)\nserver sees (\S+) (\S+)\n", r.stdout)
        if r.returncode != 0 or not m:
            failures.append(f"whoami_client {host}: rc={r.returncode} out={r.stdout!r}")
            continue
        c_local, c_peer, s_local, s_peer = m.groups()
        port_of = lambda a: a.rsplit(":", 1)[1]
        if port_of(c_local) != port_of(s_peer) or port_of(c_peer) != port or port_of(s_local) != port:
            failures.append(f"whoami {host}: tuples do not mirror: {r.stdout!r}")
finally:
    stop(p)


def lines_exchange(host, port, payload):
    """Sends payload on a new connection, half-closes, returns everything received."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect((host, int(port)))
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        return got


# The server example under every model: answers, then SIGTERM drains and exits 0.
for model in ("iterative", "fork", "thread", "pool", "event"):
    p, port = start(upper_server, model)
    try:
        for host in ("127.0.0.1", "::1"):
            got = lines_exchange(host, port, b"hello\nworld\n")
            if got != b"HELLO\nWORLD\n":
                failures.append(f"upper_server {model} {host}: got {got!r}")
        # Many clients open at once (one at a time for iterative, which queues them).
        socks = []
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
            socks.append(s)
        for i, s in enumerate(socks):
            s.sendall(b"client %d\n" % i)
            s.shutdown(socket.SHUT_WR)
        for i, s in enumerate(socks):
            got = b""
            while chunk := s.recv(65536):
                got += chunk
            s.close()
            if got != b"CLIENT %d\n" % i:
                failures.append(f"upper_server {model} client {i}: got {got!r}")
        # A line over the codec's limit closes that connection only.
        try:
            got = lines_exchange("127.0.0.1", port, b"x" * 5000 + b"\n")
        except (ConnectionResetError, BrokenPipeError):
            got = b""  # closed with unread bytes in its buffer: a reset
        if got != b"":
            failures.append(f"upper_server {model}: oversized line answered {got[:20]!r}")
        if lines_exchange("127.0.0.1", port, b"again\n") != b"AGAIN\n":
            failures.append(f"upper_server {model}: not serving after an oversized line")
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = "hung"
        err = p.stderr.read()
    if rc != 0:
        failures.append(f"upper_server {model}: SIGTERM gave rc={rc} err={err!r}")
    if "done" not in err or "larger than the configured limit" not in err:
        failures.append(f"upper_server {model}: log lines missing: {err!r}")

# The heartbeat: three beats of 20 ms under every model, an answer between them.
def frame(sock):
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    n = int.from_bytes(head, "big")
    body = b""
    while len(body) < n:
        body += sock.recv(n - len(body))
    return body


for model in ("iterative", "fork", "thread", "pool", "event"):
    p = subprocess.Popen([heartbeat_server, "0", "20", model], stderr=subprocess.PIPE,
                         text=True)
    m = re.match(r"listening on port (\d+)", p.stderr.readline())
    try:
        with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=30) as sk:
            got = [frame(sk), frame(sk)]
            sk.sendall(b"\0\0\0\2hi")
            while True:  # beats may come before the answer
                f = frame(sk)
                got.append(f)
                if f == b"ack":
                    break
            got.append(frame(sk))
            if got[:2] != [b"beat", b"beat"] or got[-1] != b"beat" or b"ack" not in got:
                failures.append(f"heartbeat_server {model}: {got!r}")
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = "hung"
    if rc != 0:
        failures.append(f"heartbeat_server {model}: SIGTERM gave rc={rc}")

# The deferred replies: 200 frames pipelined on each of 3 clients, each answered reversed by
# the worker thread, in order.
p = subprocess.Popen([deferred_server, "0"], stderr=subprocess.PIPE, text=True)
m = re.match(r"listening on port (\d+)", p.stderr.readline())
try:
    socks = [socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=30)
             for _ in range(3)]
    for i, sk in enumerate(socks):
        sk.sendall(b"".join(len(f"c{i}m{n}").to_bytes(4, "big") + f"c{i}m{n}".encode()
                            for n in range(200)))
    for i, sk in enumerate(socks):
        got = [frame(sk) for _ in range(200)]
        want = [f"c{i}m{n}"[::-1].encode() for n in range(200)]
        if got != want:
            failures.append(f"deferred_server client {i}: {got[:3]!r}...")
        sk.close()
finally:
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = "hung"
if rc != 0:
    failures.append(f"deferred_server: SIGTERM gave rc={rc}")

# The dialling client (docs/loop.md): against a running echo server ...
p, port = start(echo_server)
try:
    r = run([dial_client, "127.0.0.1", port, "one", "two", "three"])
    if r.returncode != 0 or r.stdout != "one\ntwo\nthree\n":
        failures.append(f"dial_client: rc={r.returncode} out={r.stdout!r} err={r.stderr!r}")
finally:
    stop(p)
# ... and started first, while nothing listens there: it says so and tries again, until the
# server comes up on that port; then every word comes back.
c = subprocess.Popen([dial_client, "127.0.0.1", port, "late", "words"], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
first = c.stderr.readline()  # the first refusal (an event: the client's own line)
p, _ = start(echo_server, port=port)
try:
    out, err = c.communicate(timeout=30)
    if not first.startswith("down: connection refused; again in "):
        failures.append(f"dial_client before the server: first line {first!r}")
    if c.returncode != 0 or out != "late\nwords\n":
        failures.append(f"dial_client reconnecting: rc={c.returncode} out={out!r} err={err!r}")
finally:
    stop(p)

r = run([upper_server, "0", "nosuchmodel"])
if r.returncode != 2 or "unknown model" not in r.stderr:
    failures.append(f"upper_server unknown model: rc={r.returncode} err={r.stderr!r}")

for f in failures:
    print("FAIL:", f)
sys.exit(1 if failures else 0)
