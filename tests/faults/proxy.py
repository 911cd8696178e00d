"""A fault-injecting TCP proxy, in user space (the kernels of these machines have no netem).

    proxy = FaultProxy(upstream_port, seed, plan)   # listens on 127.0.0.1, port .port
    ...
    proxy.close()

Every byte goes through it in both directions, re-chunked by seeded random choice: pieces
of 1 byte up to a few KiB (cuts fall anywhere, inside headers and delimiters), sometimes
held back a few milliseconds so that pieces coalesce on the other side. plan(i) tells, for
the i-th connection accepted, what else to do to it (a Plan): reset both ends once `reset_at`
bytes of the client's stream have been forwarded, or stop forwarding the client's stream
for `stall_s` seconds (or until the server ends the connection) once `stall_at` bytes have
gone through. proxy.events[i] records what
was done, for the test to compare with what the client saw.

Standalone: python3 proxy.py UPSTREAM_PORT [SEED]  (prints its port; splits and delays only)
"""
import random
import select
import socket
import struct
import sys
import threading
from dataclasses import dataclass, field


@dataclass
class Plan:
    reset_at: int = -1  # client->server bytes after which both ends are reset
    stall_at: int = -1  # client->server bytes after which forwarding pauses ...
    stall_s: float = 0  # ... for this long
    stall_until_closed: bool = False  # ... or until the server ends the connection: a stall
    # the server must notice, however long the connection waited before it was served


@dataclass
class Events:
    forwarded_up: int = 0
    forwarded_down: int = 0
    reset: bool = False
    stalled: bool = False
    pieces: int = 0
    notes: list = field(default_factory=list)


def _rst(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


class FaultProxy:
    def __init__(self, upstream_port, seed=1, plan=lambda i: Plan(), host="127.0.0.1"):
        self.upstream = (host, upstream_port)
        self.seed = seed
        self.plan = plan
        self.events = {}
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.closing = False
        self.wake = threading.Event()  # set by close(): ends stalls and delays at once
        self.server_gone = []  # per connection: set when the server's side has ended
        self.threads = []
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept_loop(self):
        i = 0
        while not self.closing:
            r, _, _ = select.select([self.lsock], [], [], 0.1)
            if not r:
                continue
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            up = socket.create_connection(self.upstream)
            for s in (client, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ev = Events()
            self.events[i] = ev
            plan = self.plan(i)
            lock = threading.Lock()
            state = {"dead": False, "server_gone": threading.Event()}
            self.server_gone.append(state["server_gone"])
            rng_up = random.Random(self.seed * 1000003 + 2 * i)
            rng_down = random.Random(self.seed * 1000003 + 2 * i + 1)
            for src, dst, rng, up_dir in ((client, up, rng_up, True), (up, client, rng_down, False)):
                t = threading.Thread(target=self._pump,
                                     args=(src, dst, rng, up_dir, plan, ev, lock, state, client, up),
                                     daemon=True)
                t.start()
                self.threads.append(t)
            i += 1

    def _pump(self, src, dst, rng, up_dir, plan, ev, lock, state, client, up):
        while True:
            try:
                data = src.recv(rng.choice([1, 7, 64, 512, 4096, 65536]))
            except OSError:
                data = None
            if not data:
                if not up_dir:
                    state["server_gone"].set()
                with lock:
                    if state["dead"]:
                        return
                    if data is None:  # reset by that side: pass the reset on
                        state["dead"] = True
                        _rst(dst)
                        _rst(src)
                        return
                    try:
                        dst.shutdown(socket.SHUT_WR)  # an orderly end travels as one
                    except OSError:
                        pass
                return
            while data:
                n = min(len(data), rng.choice([1, 2, 3, 5, 17, 100, 1000, 8192]))
                piece, data = data[:n], data[n:]
                with lock:
                    done = ev.forwarded_up if up_dir else ev.forwarded_down
                if up_dir and plan.reset_at >= 0 and done + len(piece) > plan.reset_at:
                    piece = piece[: plan.reset_at - done]
                    self._send(dst, piece, ev, up_dir, lock)
                    with lock:
                        ev.reset = True
                        state["dead"] = True
                    _rst(client)
                    _rst(up)
                    return
                if up_dir and plan.stall_at >= 0 and not ev.stalled and \
                        done + len(piece) > plan.stall_at:
                    first = piece[: plan.stall_at - done]
                    self._send(dst, first, ev, up_dir, lock)
                    piece = piece[len(first):]
                    with lock:
                        ev.stalled = True
                    if plan.stall_until_closed:  # the fault: a network that stops ...
                        state["server_gone"].wait()  # ... until the server gives up
                    else:
                        self.wake.wait(plan.stall_s)
                if rng.random() < 0.05:
                    self.wake.wait(rng.random() * 0.003)  # held back: pieces coalesce
                if not self._send(dst, piece, ev, up_dir, lock):
                    return

    @staticmethod
    def _send(dst, piece, ev, up_dir, lock):
        if not piece:
            return True
        try:
            dst.sendall(piece)
        except OSError:
            return False
        with lock:
            ev.pieces += 1
            if up_dir:
                ev.forwarded_up += len(piece)
            else:
                ev.forwarded_down += len(piece)
        return True

    def close(self):
        self.closing = True
        self.wake.set()
        for gone in self.server_gone:
            gone.set()
        self.lsock.close()


if __name__ == "__main__":
    p = FaultProxy(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    print(p.port, flush=True)
    threading.Event().wait()
