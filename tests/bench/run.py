#!/usr/bin/env python3
"""Runs every benchmark side by side with its references, in one run, and reports ratios.

    python3 tests/bench/run.py [--build build/bench] [--repeat 5] [--seconds 3]
                               [--quick] [--write-docs] [--soak 60]

Build first with  cmake --workflow --preset bench  (Release, TCPMSG_BENCH=ON).

- Servers (len32 echo): libtcpmsg's tcpmsg-echo-server in each model, the hand-tuned raw
  epoll peer, and the idiomatic libevent and libuv peers (when built). All are started at
  once, each pinned to CPU 0 with one event thread; the load generator runs on CPU 1.
- Each scenario runs against every server in turn, REPEAT times, interleaved (server A,
  B, C, A, B, C, ...) so that drift of the machine hits all alike; the table gives the
  median and the spread (max - min) of messages/s, the median latency percentiles, and the
  ratio of libtcpmsg's median to each peer's.
- Codec micro-benchmarks (bench_codec) and the blocking connection against raw sockets
  (bench_conn: ping-pong latency and 1 MiB bulk, with allocation counts).
- The loop as a platform (bench_loop): cross-thread sends into one EVENT worker against
  libuv's uv_async_send with a queue, and the loop as the client of 1,000 connections
  against the raw-epoll load generator.
- Memory: RSS per idle connection of the event server at 10,000 connections, and its RSS
  during a soak of --soak seconds of traffic on all of them.
- Allocations per message of the event server in steady state: the server runs twice under
  valgrind with the same connections and a different number of messages; the difference of
  its "total heap usage" allocations, divided by the difference of messages.

Results: tests/bench/results/latest.json; with --write-docs, the tables in
docs/performance.md (between its results markers) and the plot
docs/perf/msgs_vs_conns.png (gnuplot). --quick is a smoke run (one short repetition of a
few scenarios) that checks the tools work; its numbers mean nothing.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER_CPU, CLIENT_CPU = "0", "1"

SCENARIOS = [
    # name, conns, depth, size, the servers it is meant for (None: all)
    ("pingpong-64B", 1, 1, 64, None),
    ("pipelined-64B-d64", 1, 64, 64, None),
    ("100conns-d8-64B", 100, 8, 64, ["event", "thread", "fork", "raw-epoll", "libevent", "libuv",
                                   "zmq", "nng"]),
    ("1000conns-d1-512B", 1000, 1, 512, ["event", "thread", "raw-epoll", "libevent", "libuv",
                                      "zmq", "nng"]),
    ("bulk-1MiB", 1, 1, 1 << 20, None),
    ("bulk-16MiB", 1, 1, 16 << 20, ["event", "thread", "raw-epoll", "libevent", "libuv", "zmq",
                                  "nng"]),
]
SWEEP = [1, 10, 100, 1000]  # connections, depth 4, 64 B: the plot
TLS_SCENARIOS = [
    # name, conns, depth, size: run against libtcpmsg over TLS, the raw OpenSSL peer, and
    # the same two over plain TCP (what encryption costs)
    ("tls-pingpong-64B", 1, 1, 64),
    ("tls-pipelined-64B-d64", 1, 64, 64),
    ("tls-100conns-d8-64B", 100, 8, 64),
    ("tls-bulk-1MiB", 1, 1, 1 << 20),
]
SWEEP_SERVERS = ["event", "thread", "raw-epoll", "libevent", "libuv", "zmq", "nng"]


def raise_fd_limit():
    """In a child before exec: as many file descriptors as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Server:
    def __init__(self, name, argv):
        self.name = name
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, *argv],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, preexec_fn=raise_fd_limit)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"{name}: no port printed ({line!r})")
        self.port = int(line)

    def cpu_ticks(self):
        """CPU time (user + system, clock ticks) of the server so far: its own threads, the
        children it has reaped (fork) and the children still running (fork, pool)."""
        return proc_ticks(self.proc.pid, children=True) + sum(
            proc_ticks(c) for c in children_of(self.proc.pid))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def proc_ticks(pid, children=False):
    try:
        with open(f"/proc/{pid}/stat") as f:
            # the fields after the command name, which is in parentheses and may hold spaces
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0  # a fork child that ended between the listing and the read: reaped later
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: reaped children
    return ticks


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def servers_to_run(build):
    ex = os.path.join(build, "examples", "tcpmsg-echo-server")
    bench = os.path.join(build, "tests", "bench")
    s = [
        ("event", [ex, "--mode", "event", "--workers", "1", "--max-conns", "20000", "0"]),
        ("thread", [ex, "--mode", "thread", "--max-conns", "2000", "0"]),
        ("fork", [ex, "--mode", "fork", "--max-conns", "200", "0"]),
        ("pool", [ex, "--mode", "pool", "--workers", "2", "0"]),
        ("iterative", [ex, "--mode", "iterative", "0"]),
        ("raw-epoll", [os.path.join(bench, "peer_epoll"), "0"]),
    ]
    for peer in ["libevent", "libuv", "zmq", "nng"]:
        path = os.path.join(bench, "peer_" + peer)
        if os.access(path, os.X_OK):
            s.append((peer, [path, "0"]))
        else:
            log(f"peer_{peer} not built: its column is missing")
    return s


MQ_PEERS = ("zmq", "nng")  # frame by themselves: loaded by loadgen_mq, not loadgen


def meant_for(server, allowed, conns, depth):
    if allowed is not None and server not in allowed:
        return False
    if server == "iterative":
        return conns == 1
    if server == "pool":
        return conns <= 2  # its concurrency is its workers
    return True


def loadgen(build, port, conns, depth, size, seconds, warmup, kind=None, server=None):
    """One load run. With server (a Server), the result also has the CPU time per message
    of each side, in µs: the server's from /proc (every thread and child process), the
    client's from the rusage of its process; both over the whole run (warmup included)
    divided by every reply received (total_msgs, warmup included)."""
    tool = ["loadgen_mq", "-k", kind] if kind in MQ_PEERS else ["loadgen"]
    s0 = server.cpu_ticks() if server else 0
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["taskset", "-c", CLIENT_CPU,
                          os.path.join(build, "tests", "bench", tool[0]), *tool[1:], "-p", str(port),
                          "-c", str(conns), "-d", str(depth), "-s", str(size),
                          "-t", str(seconds), "-w", str(warmup)],
                         capture_output=True, text=True, timeout=seconds + warmup + 120,
                         preexec_fn=raise_fd_limit)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr.strip()}")
    res = json.loads(out.stdout)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    n = max(res.get("total_msgs", 0), 1)
    res["client_cpu_us"] = ((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) * 1e6 / n
    if server:
        res["server_cpu_us"] = (server.cpu_ticks() - s0) * TICK_US / n
    return res


def summarize(runs):
    rates = [r["msgs_per_s"] for r in runs]
    return {
        "msgs_per_s": statistics.median(rates),
        "spread": max(rates) - min(rates),
        "mb_per_s": statistics.median(r["mb_per_s"] for r in runs),
        "p50_us": statistics.median(r["p50_us"] for r in runs),
        "p99_us": statistics.median(r["p99_us"] for r in runs),
        "p999_us": statistics.median(r["p999_us"] for r in runs),
        "server_cpu_us": statistics.median(r.get("server_cpu_us", 0) for r in runs),
        "client_cpu_us": statistics.median(r.get("client_cpu_us", 0) for r in runs),
        "runs": len(runs),
    }


def run_servers(args, build):
    started = {}
    wanted = set(args.servers.split(",")) if args.servers else None
    for name, argv in servers_to_run(build):
        if wanted is None or name in wanted:
            started[name] = Server(name, argv)
    results = {}
    scenarios = list(SCENARIOS)
    scenarios += [(f"sweep-{c}conns-d4-64B", c, 4, 64, SWEEP_SERVERS) for c in SWEEP]
    if args.quick:
        scenarios = [scenarios[0], scenarios[2], scenarios[4]]
    if args.scenario:
        scenarios = [sc for sc in scenarios if re.search(args.scenario, sc[0])]
    try:
        for name, conns, depth, size, allowed in scenarios:
            names = [s for s in started if meant_for(s, allowed, conns, depth)]
            runs = {s: [] for s in names}
            for rep in range(args.repeat):
                for s in names:
                    try:
                        runs[s].append(loadgen(build, started[s].port, conns, depth, size,
                                               args.seconds, args.warmup, kind=s,
                                               server=started[s]))
                    except RuntimeError as e:
                        if s not in MQ_PEERS:
                            raise
                        # NNG 1.5.2 panicked once (pthread_mutex_lock: EINVAL in
                        # nng_recvmsg) after 100 clients went away: a column of a third-party
                        # peer is left out of the scenario, said so, and the peer restarted
                        log(f"{name}: {s} failed ({e}); its column is left out, restarting it")
                        started[s].stop()
                        started[s] = Server(s, dict(servers_to_run(build))[s])
            results[name] = {s: summarize(r) for s, r in runs.items() if r}
            line = "  ".join(f"{s} {v['msgs_per_s']:.0f}" for s, v in results[name].items())
            log(f"{name}: {line}")
    finally:
        for s in started.values():
            s.stop()
    return results


def make_pki():
    d = os.path.join(ROOT, "build", "bench-pki")
    subprocess.run(["sh", os.path.join(ROOT, "tests", "tls", "make_certs.sh"), d], check=True,
                   capture_output=True)
    return d


def tls_loadgen(build, port, cafile, extra, seconds, warmup):
    out = subprocess.run(["taskset", "-c", CLIENT_CPU,
                          os.path.join(build, "tests", "bench", "loadgen"), "-p", str(port),
                          "-h", "localhost", "-S", cafile, *extra,
                          "-t", str(seconds), "-w", str(warmup)],
                         capture_output=True, text=True, timeout=seconds + warmup + 120,
                         preexec_fn=raise_fd_limit)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen (TLS) failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def run_tls(args, build):
    """TLS scenarios, interleaved like the others: libtcpmsg's EVENT server over TLS
    ("event-tls") against the hand-written OpenSSL epoll peer ("openssl"), both with one
    thread on the server core, the same certificate (ECDSA P-256), TLS 1.3, and the plain
    event server and raw epoll peer beside them; then handshakes per second, full and
    resumed."""
    bench = os.path.join(build, "tests", "bench")
    peer = os.path.join(bench, "peer_openssl")
    if not os.access(peer, os.X_OK):
        log("peer_openssl not built (no OpenSSL): no TLS results")
        return {}
    pki = make_pki()
    cert, key, ca = (os.path.join(pki, n) for n in ("server.pem", "server.key", "ca.pem"))
    ex = os.path.join(build, "examples", "tcpmsg-echo-server")
    tls_servers = {
        "event-tls": Server("event-tls", [ex, "--mode", "event", "--workers", "1", "--max-conns",
                                          "20000", "--tls-cert", cert, "--tls-key", key, "0"]),
        "openssl": Server("openssl", [peer, cert, key, "0"]),
        # OpenSSL on the socket, asking for kTLS (where the kernel has none: the fallback)
        "event-tls-ktls": Server("event-tls-ktls", [ex, "--mode", "event", "--workers", "1",
                                                    "--max-conns", "20000", "--tls-ktls",
                                                    "--tls-cert", cert, "--tls-key", key, "0"]),
    }
    plain = {
        "event": Server("event", [ex, "--mode", "event", "--workers", "1", "--max-conns",
                                  "20000", "0"]),
        "raw-epoll": Server("raw-epoll", [os.path.join(bench, "peer_epoll"), "0"]),
    }
    results = {}
    scenarios = TLS_SCENARIOS[:2] if args.quick else TLS_SCENARIOS
    try:
        for name, conns, depth, size in scenarios:
            runs = {s: [] for s in [*tls_servers, *plain]}
            extra = ["-c", str(conns), "-d", str(depth), "-s", str(size)]
            for rep in range(args.repeat):
                for s, srv in tls_servers.items():
                    runs[s].append(tls_loadgen(build, srv.port, ca, extra, args.seconds,
                                               args.warmup))
                for s, srv in plain.items():
                    runs[s].append(loadgen(build, srv.port, conns, depth, size, args.seconds,
                                           args.warmup))
            results[name] = {s: summarize(r) for s, r in runs.items()}
            line = "  ".join(f"{s} {v['msgs_per_s']:.0f}" for s, v in results[name].items())
            log(f"{name}: {line}")
        for mode in ["full", "resumed"]:
            runs = {s: [] for s in tls_servers}
            for rep in range(args.repeat):
                for s, srv in tls_servers.items():
                    runs[s].append(tls_loadgen(build, srv.port, ca, ["-H", mode], args.seconds,
                                               args.warmup))
            results[f"tls-handshakes-{mode}"] = {
                s: {"handshakes_per_s": statistics.median(r["handshakes_per_s"] for r in v),
                    "spread": max(r["handshakes_per_s"] for r in v) -
                    min(r["handshakes_per_s"] for r in v),
                    "resumed": sum(r["resumed"] for r in v), "total": sum(r["total"] for r in v)}
                for s, v in runs.items()}
            log(f"handshakes {mode}: " + "  ".join(
                f"{s} {v['handshakes_per_s']:.0f}" for s, v in results[f'tls-handshakes-{mode}'].items()))
    finally:
        for s in [*tls_servers.values(), *plain.values()]:
            s.stop()
    return results


def ktls_ratio(by, key):
    k = by.get("event-tls-ktls")
    return f"{k[key] / by['event-tls'][key]:.2f}x" if k else "-"


def tls_tables(res):
    t = res.get("tls") or {}
    if not t:
        return ""
    lines = ["| TLS scenario | libtcpmsg event TLS | OpenSSL peer | ratio | event plain | "
             "raw epoll plain | TLS / plain (event) | --tls-ktls / TLS (event) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for scen, by in t.items():
        if scen.startswith("tls-handshakes"):
            continue
        e, o, p, r = by["event-tls"], by["openssl"], by["event"], by["raw-epoll"]
        lines.append(f"| {scen} | {fmt_rate(e['msgs_per_s'])} (p50 {e['p50_us']:.0f} µs) "
                     f"| {fmt_rate(o['msgs_per_s'])} (p50 {o['p50_us']:.0f} µs) "
                     f"| {e['msgs_per_s'] / o['msgs_per_s']:.2f}x | {fmt_rate(p['msgs_per_s'])} "
                     f"| {fmt_rate(r['msgs_per_s'])} | {e['msgs_per_s'] / p['msgs_per_s']:.2f}x "
                     f"| {ktls_ratio(by, 'msgs_per_s')} |")
    lines.append("")
    lines.append("| handshakes per second (ECDSA P-256, TLS 1.3, one exchange each) | libtcpmsg "
                 "event TLS | OpenSSL peer | ratio | resumed |")
    lines.append("| --- | --- | --- | --- | --- |")
    for mode in ["full", "resumed"]:
        by = t.get(f"tls-handshakes-{mode}")
        if not by:
            continue
        e, o = by["event-tls"], by["openssl"]
        lines.append(f"| {mode} | {e['handshakes_per_s']:.0f} (spread {e['spread']:.0f}) "
                     f"[--tls-ktls / TLS: {ktls_ratio(by, 'handshakes_per_s')}] "
                     f"| {o['handshakes_per_s']:.0f} (spread {o['spread']:.0f}) "
                     f"| {e['handshakes_per_s'] / o['handshakes_per_s']:.2f}x "
                     f"| {e['resumed']}/{e['total']} and {o['resumed']}/{o['total']} |")
    return "\n".join(lines)


def run_json_lines(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {out.stderr.strip()}")
    return [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]


def run_loop(args, build):
    """The loop as a platform: cross-thread sends (libtcpmsg vs libuv, interleaved, both
    unpinned: producers, the loop and the reader need both CPUs) and the loop as the client
    of 1,000 connections at depth 4 against the raw-epoll peer (vs loadgen, interleaved)."""
    bench = os.path.join(build, "tests", "bench")
    frames = "50000" if args.quick else "500000"
    xthread = {}
    for producers in ["1", "4"]:
        runs = {}
        for rep in range(args.repeat):
            for row in run_json_lines([os.path.join(bench, "bench_loop"), "xthread", producers,
                                       frames]):
                runs.setdefault(row["impl"], []).append(row["frames_per_s"])
        xthread[producers] = {impl: {"frames_per_s": statistics.median(v),
                                     "spread": max(v) - min(v), "runs": len(v)}
                              for impl, v in runs.items()}
        log(f"xthread {producers} producers: " + "  ".join(
            f"{i} {v['frames_per_s']:.0f}" for i, v in xthread[producers].items()))
    conns = "100" if args.quick else "1000"
    peer = Server("raw-epoll", [os.path.join(bench, "peer_epoll"), "0"])
    dial = {"loop": [], "loadgen": []}
    try:
        for rep in range(args.repeat):
            row = run_json_lines(["taskset", "-c", CLIENT_CPU, os.path.join(bench, "bench_loop"),
                                  "dial", str(peer.port), conns, "4", "64", str(args.seconds),
                                  str(args.warmup)])[0]
            dial["loop"].append(row["msgs_per_s"])
            dial["loadgen"].append(loadgen(build, peer.port, int(conns), 4, 64, args.seconds,
                                           args.warmup)["msgs_per_s"])
    finally:
        peer.stop()
    out = {"conns": int(conns)}
    for k, v in dial.items():
        out[k] = {"msgs_per_s": statistics.median(v), "spread": max(v) - min(v), "runs": len(v)}
    log(f"dial: loop {out['loop']['msgs_per_s']:.0f}  loadgen {out['loadgen']['msgs_per_s']:.0f}")
    return {"xthread": xthread, "dial": out}


def loop_tables(res):
    loop = res.get("loop")
    if not loop:
        return ""
    lines = ["| the loop as a platform | libtcpmsg | reference | ratio |",
             "| --- | --- | --- | --- |"]
    for producers, by in loop["xthread"].items():
        mine, ref = by.get("libtcpmsg"), by.get("libuv")
        if not mine:
            continue
        refs = (f"{fmt_rate(ref['frames_per_s'])}/s (spread {fmt_rate(ref['spread'])}), libuv "
                "uv_async_send + queue" if ref else "libuv not built")
        ratio = f"{mine['frames_per_s'] / ref['frames_per_s']:.2f}x" if ref else ""
        lines.append(f"| cross-thread sends into one loop, {producers} producer thread(s), 64 B "
                     f"| {fmt_rate(mine['frames_per_s'])}/s (spread {fmt_rate(mine['spread'])}) "
                     f"| {refs} | {ratio} |")
    d = loop["dial"]
    lines.append(f"| the loop as a client: {d['conns']} dialled connections, depth 4, 64 B, "
                 f"against raw epoll | {fmt_rate(d['loop']['msgs_per_s'])} msgs/s (spread "
                 f"{fmt_rate(d['loop']['spread'])}) | {fmt_rate(d['loadgen']['msgs_per_s'])} "
                 f"msgs/s (spread {fmt_rate(d['loadgen']['spread'])}), raw-epoll loadgen | "
                 f"{d['loop']['msgs_per_s'] / d['loadgen']['msgs_per_s']:.2f}x |")
    return "\n".join(lines)


def run_micro(args, build):
    bench = os.path.join(build, "tests", "bench")
    sizes = ["64", "1024"] if args.quick else []
    codec = run_json_lines(["taskset", "-c", CLIENT_CPU, os.path.join(bench, "bench_codec"),
                            *sizes])
    peer = Server("raw-epoll", [os.path.join(bench, "peer_epoll"), "0"])
    try:
        ping = run_json_lines(["taskset", "-c", CLIENT_CPU, os.path.join(bench, "bench_conn"),
                               "pingpong", str(peer.port), "64",
                               "2000" if args.quick else "20000"])
    finally:
        peer.stop()
    bulk = run_json_lines([os.path.join(bench, "bench_conn"), "bulk", "1048576",
                           "128" if args.quick else "2048"])
    return {"codec": codec, "pingpong": ping, "bulk": bulk, "big_rtt": big_round_trips(args, build)}


BIG_RTT = [(1 << 20, 400), (16 << 20, 30)]  # size, rounds per bench_conn repetition


def big_round_trips(args, build):
    """The blocking connection's round trip with big messages (bench_conn pingpong against
    libtcpmsg's event server: libtcpmsg at both ends, beside the raw write/read loop
    bench_conn runs against the same server) and ZeroMQ's (loadgen_mq with one message in
    flight against the ROUTER peer: its mean round trip, 1 / messages per second), runs
    interleaved."""
    bench = os.path.join(build, "tests", "bench")
    ex = os.path.join(build, "examples", "tcpmsg-echo-server")
    ev = Server("event", [ex, "--mode", "event", "--workers", "1", "0"])
    zpath = os.path.join(bench, "peer_zmq")
    zmq = Server("zmq", [zpath, "0"]) if os.access(zpath, os.X_OK) else None
    out = []
    try:
        for size, rounds in BIG_RTT[:1] if args.quick else BIG_RTT:
            conn, raw, z = [], [], []
            for _ in range(1 if args.quick else args.repeat):
                r = run_json_lines(["taskset", "-c", CLIENT_CPU, os.path.join(bench, "bench_conn"),
                                    "pingpong", str(ev.port), str(size),
                                    str(20 if args.quick else rounds)])[0]
                conn.append(r["conn_rtt_us"])
                raw.append(r["raw_rtt_us"])
                if zmq:
                    m = loadgen(build, zmq.port, 1, 1, size, args.seconds, args.warmup, kind="zmq")
                    z.append(1e6 / m["msgs_per_s"] if m["msgs_per_s"] else 0)
            row = {"size": size, "conn_rtt_us": statistics.median(conn),
                   "raw_rtt_us": statistics.median(raw)}
            if z:
                row["zmq_rtt_us"] = statistics.median(z)
                row["zmq_over_conn"] = row["zmq_rtt_us"] / row["conn_rtt_us"]
            log(f"round trip {size} B: conn {row['conn_rtt_us']:.0f} µs, raw "
                f"{row['raw_rtt_us']:.0f} µs, zmq {row.get('zmq_rtt_us', 0):.0f} µs")
            out.append(row)
    finally:
        ev.stop()
        if zmq:
            zmq.stop()
    return out


def run_memory(args, build):
    n = 500 if args.quick else 10000
    soak = 0 if args.quick else args.soak
    srv = Server("event", [os.path.join(build, "examples", "tcpmsg-echo-server"), "--mode",
                           "event", "--workers", "1", "--max-conns", "20000",
                           "--idle-timeout", "0", "0"])
    try:
        out = run_json_lines([os.path.join(build, "tests", "bench", "idle_conns"),
                              "-p", str(srv.port), "-P", str(srv.proc.pid), "-n", str(n),
                              "-s", str(soak)])
    finally:
        srv.stop()
    return out[0]


def valgrind_allocs(build, seconds):
    """Total allocations of the event server under valgrind for one load of `seconds`."""
    vg = subprocess.Popen(["valgrind", "--trace-children=no",
                           os.path.join(build, "examples", "tcpmsg-echo-server"), "--workers",
                           "1", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = int(vg.stdout.readline())
    r = loadgen(build, port, 10, 4, 64, seconds, 0.5)
    vg.send_signal(signal.SIGTERM)
    _, err = vg.communicate(timeout=60)
    m = re.search(r"total heap usage: ([\d,]+) allocs", err)
    if not m:
        raise RuntimeError("no valgrind heap summary")
    return int(m.group(1).replace(",", "")), r["total_msgs"]


def callgrind_cost(build, argv, conns, depth, seconds):
    """User-space instructions per message of a server under callgrind (deterministic:
    it counts instructions, not time, so a noisy machine does not move it much)."""
    out = os.path.join("/tmp", f"tcpmsg-cg-{os.getpid()}.out")
    vg = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, *argv],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = int(vg.stdout.readline())
    r = loadgen(build, port, conns, depth, 64, seconds, 0.2)
    vg.send_signal(signal.SIGTERM)
    vg.wait(60)
    with open(out) as f:
        total = int(re.search(r"^summary:\s*(\d+)", f.read(), re.M).group(1))
    os.remove(out)
    return total / max(r["total_msgs"], 1)


def run_cpu_cost(args, build):
    if not shutil.which("valgrind"):
        return None
    bench = os.path.join(build, "tests", "bench")
    servers = [("event", [os.path.join(build, "examples", "tcpmsg-echo-server"), "--workers",
                          "1", "0"]),
               ("raw-epoll", [os.path.join(bench, "peer_epoll"), "0"])]
    for peer in ["libevent", "libuv"]:
        path = os.path.join(bench, "peer_" + peer)
        if os.access(path, os.X_OK):
            servers.append((peer, [path, "0"]))
    res = {}
    for scen, conns, depth in [("pipelined-64B-d64", 1, 64), ("100conns-d8-64B", 100, 8)]:
        res[scen] = {name: callgrind_cost(build, argv, conns, depth, 0.5 if args.quick else 2)
                     for name, argv in servers}
    return res


def run_allocs(args, build):
    if not shutil.which("valgrind"):
        return None
    a1, m1 = valgrind_allocs(build, 1 if not args.quick else 0.3)
    a2, m2 = valgrind_allocs(build, 4 if not args.quick else 0.6)
    return {"allocs_short": a1, "msgs_short": m1, "allocs_long": a2, "msgs_long": m2,
            "allocs_per_msg": (a2 - a1) / max(m2 - m1, 1)}


# ---- docs ----------------------------------------------------------------------------------

def fmt_rate(v):
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.1f} k"


def cpu_us(v):
    if v is None:
        return ""
    return f"{v:.0f}" if v >= 100 else f"{v:.2f}"


def tables(res):
    lines = []
    lines.append("| scenario | server | messages/s (median) | spread | MB/s | p50 µs | p99 µs "
                 "| p999 µs | CPU µs/msg server | CPU µs/msg client | libtcpmsg event / this |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for scen, by_server in res["servers"].items():
        ev = by_server.get("event")
        for s, v in by_server.items():
            ratio = f"{ev['msgs_per_s'] / v['msgs_per_s']:.2f}x" if ev and s != "event" and v["msgs_per_s"] else ""
            lines.append(f"| {scen} | {s} | {fmt_rate(v['msgs_per_s'])} | {fmt_rate(v['spread'])} "
                         f"| {v['mb_per_s']:.1f} | {v['p50_us']:.1f} | {v['p99_us']:.1f} "
                         f"| {v['p999_us']:.1f} | {cpu_us(v.get('server_cpu_us'))} "
                         f"| {cpu_us(v.get('client_cpu_us'))} | {ratio} |")
    lines.append("")
    lines.append("| codec | op | payload | GB/s | frames/s | reference | ref GB/s | ratio |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in res["micro"]["codec"]:
        lines.append(f"| {c['codec']} | {c['op']} | {c['size']} | {c['gbps']:.2f} "
                     f"| {fmt_rate(c['frames_per_s'])} | {c['ref']} | {c['ref_gbps']:.2f} "
                     f"| {c['ratio']:.2f} |")
    lines.append("")
    p = res["micro"]["pingpong"][0]
    b = res["micro"]["bulk"][0]
    lines.append("| connection | libtcpmsg | raw sockets | ratio | allocations per message |")
    lines.append("| --- | --- | --- | --- | --- |")
    lines.append(f"| ping-pong 64 B, round trip | {p['conn_rtt_us']:.2f} µs (spread "
                 f"{p['conn_spread_us']:.2f}) | {p['raw_rtt_us']:.2f} µs (spread "
                 f"{p['raw_spread_us']:.2f}) | {p['ratio']:.3f} | {p['allocs_per_msg']:g} |")
    lines.append(f"| bulk 1 MiB frames, one way | {b['conn_gbps']:.2f} GB/s (spread "
                 f"{b['conn_spread_gbps']:.2f}) | {b['plain_gbps']:.2f} GB/s (spread "
                 f"{b['plain_spread_gbps']:.2f}) | {b['ratio']:.3f} | {b['allocs_per_msg']:g} |")
    if res["micro"].get("big_rtt"):
        lines.append("")
        lines.append("| round trip, one connection | libtcpmsg (bench_conn against the event "
                     "server) | raw write/read, same server | ZeroMQ (DEALER to ROUTER) "
                     "| ZeroMQ / libtcpmsg |")
        lines.append("| --- | --- | --- | --- | --- |")
        for r in res["micro"]["big_rtt"]:
            z = r.get("zmq_rtt_us")
            zs = f"{z:.0f} µs" if z else "not built"
            ratio = f"{r['zmq_over_conn']:.2f}x" if z else ""
            lines.append(f"| {r['size'] >> 20} MiB | {r['conn_rtt_us']:.0f} µs | "
                         f"{r['raw_rtt_us']:.0f} µs | {zs} | {ratio} |")
    lines.append("")
    m = res["memory"]
    soak = m["soak"]
    growth = (max(soak) - min(soak)) if soak else 0
    lines.append("| memory (event model) | value |")
    lines.append("| --- | --- |")
    lines.append(f"| RSS per idle connection at {m['conns']} connections | "
                 f"{m['bytes_per_conn']:.0f} bytes |")
    lines.append(f"| server RSS before / after connecting | {m['rss_before_kib']} / "
                 f"{m['rss_after_kib']} KiB |")
    lines.append(f"| soak: RSS samples every 5 s (KiB) | {', '.join(map(str, soak)) or 'not run'} |")
    lines.append(f"| soak: growth (max - min) | {growth} KiB |")
    if res.get("allocs"):
        a = res["allocs"]
        lines.append(f"| allocations per message in steady state (valgrind, two loads) | "
                     f"{a['allocs_per_msg']:.5f} ({a['allocs_long'] - a['allocs_short']} allocations "
                     f"for {a['msgs_long'] - a['msgs_short']:.0f} more messages) |")
    if res.get("cpu"):
        lines.append("")
        names = list(next(iter(res["cpu"].values())).keys())
        lines.append("| user-space instructions per message (callgrind) | " + " | ".join(names) + " |")
        lines.append("| --- |" + " --- |" * len(names))
        for scen, by in res["cpu"].items():
            lines.append(f"| {scen} | " + " | ".join(f"{by[n]:.0f}" for n in names) + " |")
    tls = tls_tables(res)
    if tls:
        lines.append("")
        lines.append(tls)
    loop = loop_tables(res)
    if loop:
        lines.append("")
        lines.append(loop)
    return "\n".join(lines)


def plot(res, path):
    data = path + ".dat"
    servers = [s for s in SWEEP_SERVERS if any(s in res["servers"].get(f"sweep-{c}conns-d4-64B", {})
                                               for c in SWEEP)]
    with open(data, "w") as f:
        for c in SWEEP:
            row = res["servers"].get(f"sweep-{c}conns-d4-64B", {})
            f.write(f"{c} " + " ".join(f"{row[s]['msgs_per_s']:.0f}" if s in row else "?"
                                       for s in servers) + "\n")
    plots = ", ".join(f"'{data}' using 1:{i + 2} with linespoints lw 2 title '{s}'"
                      for i, s in enumerate(servers))
    script = f"""set terminal pngcairo size 1000,560 font ',11'
set output '{path}'
set title 'len32 echo, 64-byte frames, 4 in flight per connection, one server core'
set xlabel 'connections'
set ylabel 'messages per second'
set logscale x
set xtics (1, 10, 100, 1000)
set format y '%.1s%c'
set key outside right top
set grid
plot {plots}
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.remove(data)


def write_docs(res):
    perf = os.path.join(ROOT, "docs", "performance.md")
    with open(perf) as f:
        text = f.read()
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    i, j = text.index(begin) + len(begin), text.index(end)
    stamp = f"\nMeasured {res['date']} on {res['machine']}.\n\n"
    text = text[:i] + stamp + tables(res) + "\n\n" + text[j:]
    with open(perf, "w") as f:
        f.write(text)
    os.makedirs(os.path.join(ROOT, "docs", "perf"), exist_ok=True)
    if shutil.which("gnuplot"):
        plot(res, os.path.join(ROOT, "docs", "perf", "msgs_vs_conns.png"))
    else:
        log("gnuplot not installed: the plot is not redrawn (apt-get install gnuplot-nox)")


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1) if m else cpu
    except OSError:
        pass
    return f"{os.cpu_count()} x {cpu}, Linux {os.uname().release}"


PARTS = {
    "micro": ("micro-benchmarks", run_micro),
    "servers": ("servers", run_servers),
    "tls": ("TLS", run_tls),
    "loop": ("the loop as a platform", run_loop),
    "memory": ("memory", run_memory),
    "allocs": ("allocations (valgrind)", run_allocs),
    "cpu": ("instructions per message (callgrind)", run_cpu_cost),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "bench"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--soak", type=int, default=60)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--only", metavar="PARTS",
                    help="comma-separated parts to run, of: " + ",".join(PARTS) +
                    " (a look at one thing: not with --write-docs)")
    ap.add_argument("--scenario", metavar="REGEX",
                    help="servers part: only the scenarios whose name matches")
    ap.add_argument("--servers", metavar="NAMES",
                    help="servers part: only these servers (comma-separated)")
    args = ap.parse_args()
    parts = args.only.split(",") if args.only else list(PARTS)
    if any(p not in PARTS for p in parts):
        ap.error(f"--only: parts are {','.join(PARTS)}")
    if args.write_docs and (args.only or args.scenario or args.servers):
        ap.error("--write-docs needs the whole run")
    if args.quick:
        args.repeat, args.seconds, args.warmup = 1, 0.3, 0.1
    res = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "quick": args.quick}
    for part in PARTS:
        if part in parts:
            log(PARTS[part][0] + "...")
            res[part] = PARTS[part][1](args, args.build)
    out_dir = os.path.join(ROOT, "tests", "bench", "results")
    os.makedirs(out_dir, exist_ok=True)
    name = "quick.json" if args.quick else "latest.json" if not args.only else "partial.json"
    with open(os.path.join(out_dir, name), "w") as f:
        json.dump(res, f, indent=1)
    if args.only:
        print(json.dumps(res, indent=1))
    else:
        print(tables(res))
    if args.write_docs and not args.quick:
        write_docs(res)
    for scen in res.get("servers", {}).values():
        for v in scen.values():
            if not v["msgs_per_s"]:
                log("a server served nothing in a scenario")
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
