#!/usr/bin/env python3
"""A soak, run by hand: the event echo server under mixed load for a while, with clients
connecting, exchanging, misbehaving and leaving; the server's RSS and fd count sampled
every 10 s. Exits 1 if any well-behaved exchange failed, or if RSS or fds at the end are
above their level after the first minute (by more than a small margin).

    python3 tests/hostile/soak.py [--minutes 10] [--mode event] [--bin build/default/examples]
"""
import argparse
import os
import random
import socket
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
import harness  # noqa: E402
from test_hostile import fd_count, raise_fd_limit, tree_rss_kib  # noqa: E402


def len32(p):
    return struct.pack("!I", len(p)) + p


def exchange(port, rng):
    """A well-behaved client: a few pipelined frames, all echoed."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        frames = [bytes(rng.randrange(256) for _ in range(rng.choice([0, 10, 100, 5000])))
                  for _ in range(rng.randrange(1, 20))]
        s.sendall(b"".join(len32(f) for f in frames))
        want = b"".join(len32(f) for f in frames)
        got = harness.recv_exactly(s, len(want))
        if got != want:
            raise AssertionError("echo mismatch")


def misbehave(port, rng):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    kind = rng.choice(["huge", "garbage", "reset", "slow", "noread", "half"])
    try:
        if kind == "huge":
            s.sendall(b"\xff\xff\xff\xff")
            harness.recv_until_closed(s)
        elif kind == "garbage":
            s.sendall(bytes(rng.randrange(256) for _ in range(3000)))
            s.shutdown(socket.SHUT_WR)
            harness.recv_until_closed(s)
        elif kind == "reset":
            s.sendall(b"\x00\x00\x10\x00abc")
            harness.reset(s)
            return
        elif kind == "slow":
            for b in b"\x00\x00\x00\x05":
                s.sendall(bytes([b]))
                if threading.Event().wait(0.7):  # the slow peer's pace, not a sync
                    break
            harness.recv_until_closed(s)
        elif kind == "noread":
            s.setblocking(False)
            for _ in range(200):
                try:
                    s.send(len32(b"n" * 60000))
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    break
            harness.reset(s)
            return
        else:
            s.sendall(len32(b"half") * 10)
            s.shutdown(socket.SHUT_WR)
            harness.recv_until_closed(s)
    except OSError:
        pass
    s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--mode", default="event")
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "..", "build", "default",
                                                  "examples"))
    args = ap.parse_args()
    harness.BIN = args.bin
    raise_fd_limit()
    srv = harness.Server("tcpmsg-echo-server", "--mode", args.mode, "--frame-timeout", "1",
                         "--idle-timeout", "5", "--max-conns", "5000", "0")
    stop = time.monotonic() + args.minutes * 60
    failures, exchanges, hostile = [], [0], [0]

    def worker(seed, bad):
        rng = random.Random(seed)
        while time.monotonic() < stop:
            try:
                if bad:
                    misbehave(srv.port, rng)
                    hostile[0] += 1
                else:
                    exchange(srv.port, rng)
                    exchanges[0] += 1
            except Exception as e:  # a well-behaved client must never fail
                if not bad:
                    failures.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i, i % 3 == 0), daemon=True)
               for i in range(24)]
    for t in threads:
        t.start()
    samples = []
    t0 = time.monotonic()
    while time.monotonic() < stop:
        threading.Event().wait(10)  # the sampling period
        samples.append((round(time.monotonic() - t0), tree_rss_kib(srv.proc.pid),
                        fd_count(srv.proc.pid)))
        print(f"t={samples[-1][0]:4d}s rss={samples[-1][1]} KiB fds={samples[-1][2]} "
              f"exchanges={exchanges[0]} hostile={hostile[0]}", flush=True)
    for t in threads:
        t.join(60)
    threading.Event().wait(6)  # the idle timeout closes what the last clients left
    end = (tree_rss_kib(srv.proc.pid), fd_count(srv.proc.pid))
    status, _ = srv.stop()
    ref = samples[min(5, len(samples) - 1)]
    print(f"soak: {args.minutes} min, {exchanges[0]} good exchanges, {hostile[0]} hostile "
          f"clients, {len(failures)} failures; RSS {ref[1]} KiB at {ref[0]} s, {end[0]} KiB "
          f"at the end; fds {ref[2]} at {ref[0]} s, {end[1]} at the end; exit status {status}")
    ok = not failures and status == 0 and end[0] <= ref[1] + 2048 and end[1] <= ref[2]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
