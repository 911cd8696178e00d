#!/usr/bin/env python3
"""Runs the client/server pairs printed in docs/ against each other on loopback.

Each server is started on port 0 (it prints the port the kernel chose), the client is run
against it over IPv4 and IPv6, and the client's output is checked.
"""
import re
import subprocess
import sys

echo_server, echo_client, whoami_server, whoami_client = sys.argv[1:5]
failures = []


def start(server):
    p = subprocess.Popen([server, "0"], stderr=subprocess.PIPE, text=True)
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

for f in failures:
    print("FAIL:", f)
sys.exit(1 if failures else 0)
