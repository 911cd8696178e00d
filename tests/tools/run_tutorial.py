#!/usr/bin/env python3
"""Runs docs/tutorial.md: every code block in it is compiled (by CMake) and run (here).

    run_tutorial.py TUTORIAL.md BIN_DIR INCLUDE_DIR LIB_DIR

- Every ```c block must follow an <!-- example: tut_NAME --> marker (CMake builds it as
  BIN_DIR/tut_NAME), every ```sh block an <!-- shell: NAME --> marker: no block escapes.
- Each shell block runs in bash, exactly as printed, except that the port 4321 is replaced
  by a free one, with the tutorial's programs on PATH under their own names (resolve,
  echo_server, ...) and three helpers the text mentions: wait_port, wait_clients,
  hold_connection, wait_established. The block must exit 0 (so `kill -INT %1; wait %1`
  proves the server stopped cleanly) and print what the tutorial says it prints.
- The compile command of the introduction runs on the first program, with a pkg-config
  that answers for the build tree.
"""
import os
import re
import socket
import subprocess
import sys
import tempfile

md, bin_dir, include_dir, lib_dir = sys.argv[1:5]
text = open(md, encoding="utf-8").read()
failures = []

PRELUDE = r"""
set -e
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT  # a failed block leaves no server behind
wait_port() {  # until something listens on port $1
    for _ in $(seq 1 500); do
        ss -tlnH "sport = :$1" | grep -q . && return 0
        read -r -t 0.02 <> <(:) || true
    done
    echo "nothing listens on $1" >&2; return 1
}
wait_established() {
    for _ in $(seq 1 500); do
        ss -tnH state established "( sport = :$1 )" | grep -q . && return 0
        read -r -t 0.02 <> <(:) || true
    done
    echo "no connection on $1" >&2; return 1
}
wait_clients() {  # every background job but the first (the server)
    for pid in $(jobs -p | tail -n +2); do wait "$pid"; done
}
hold_connection() {
    python3 -c 'import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2]))); s.recv(1)' "$@"
}
"""


def free_port():
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::", 0))
        return s.getsockname()[1]


# ---- every block is marked ------------------------------------------------------------------
blocks = []
lines = text.split("\n")
i = 0
while i < len(lines):
    m = re.match(r"```(\w+)\s*$", lines[i])
    if m:
        j = i + 1
        while not lines[j].startswith("```"):
            j += 1
        marker = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        mm = re.match(r"<!-- (example|shell): (\w+) -->", marker)
        lang = m.group(1)
        if lang in ("c", "sh") and not mm:
            failures.append(f"{md}:{i + 1}: a ```{lang} block without a test marker")
        elif mm:
            blocks.append((mm.group(1), mm.group(2), lang, "\n".join(lines[i + 1:j]), i + 1))
        i = j
    i += 1
examples = [b for b in blocks if b[0] == "example"]
shells = [b for b in blocks if b[0] == "shell"]

# ---- the programs, under the names the text uses ---------------------------------------------
work = tempfile.mkdtemp(prefix="tcpmsg-tutorial-")
path_dir = os.path.join(work, "bin")
os.makedirs(path_dir)
for kind, name, lang, code, line in examples:
    exe = os.path.join(bin_dir, name)
    if not os.access(exe, os.X_OK):
        failures.append(f"{md}:{line}: {name} was not built")
        continue
    os.symlink(exe, os.path.join(path_dir, name[len("tut_"):]))
pc = os.path.join(path_dir, "pkg-config")
with open(pc, "w") as f:
    extra = os.environ.get("TCPMSG_TUTORIAL_CFLAGS", "")  # the sanitizer builds' runtime
    f.write(f"#!/bin/sh\necho {extra} -I{include_dir} -L{lib_dir} -Wl,-rpath,{lib_dir} -ltcpmsg\n")
os.chmod(pc, 0o755)
env = dict(os.environ, PATH=path_dir + os.pathsep + os.environ["PATH"])


def expect_exact(want):
    return lambda out, port: (out == want.replace("PORT", str(port)), want)


def expect_sorted(want):
    return lambda out, port: (sorted(out.split("\n")) == sorted(want.split("\n")), want)


def expect_listen_and_established(out, port):
    listen = re.findall(rf"^LISTEN .*:{port} ", out, re.M)
    conns = re.findall(rf"^0 +0 +\S+ +\S+ *$", out, re.M)
    ok = listen and len(conns) == 2 and all(str(port) in c for c in conns)
    return bool(ok), f"LISTEN lines and the two ends of one connection on port {port}"


EXPECT = {
    "compile": expect_exact(""),
    "resolve": expect_exact("127.0.0.1:PORT\n[::1]:PORT\nexit status 1\n"),
    "iterative": expect_exact("hello\nworld\nover\nIPv4\nover\nIPv6\n"),
    "framing": expect_exact("00 00 00 05 68 65 6c 6c 6f 00 00 00 03 54 43 50\n"
                            "message: hello\nmessage: TCP\n"),
    "codecs": expect_exact(
        "len32      00 00 00 08 74 63 70 20 6d 73 67 21\n"
        "len16le    08 00 74 63 70 20 6d 73 67 21\n"
        "varint     08 74 63 70 20 6d 73 67 21\n"
        "line       74 63 70 20 6d 73 67 21 0a\n"
        "crlf       74 63 70 20 6d 73 67 21 0d 0a\n"
        "delim:2a2a 74 63 70 20 6d 73 67 21 2a 2a\n"
        "fixed:8    74 63 70 20 6d 73 67 21\n"),
    "wire": expect_exact("10 e1 ff ff ff fe 3f f8 00 00 00 00 00 00 00 02 6f 6b\n"
                         "4321 -2 1.5 ok, overrun: yes\n"),
    "fork": expect_sorted("one\ntwo\n"),
    "pool": expect_exact("".join(f"client {i}\n" for i in range(1, 6))),
    "event": expect_sorted("".join(f"client {i}\n" for i in range(1, 21))),
    "ss": expect_listen_and_established,
}

# The compile command of the introduction, on the first program.
first = examples[0][3] if examples else ""
with open(os.path.join(work, "prog.c"), "w") as f:
    f.write(first)

for kind, name, lang, code, line in shells:
    if name == "compile":  # the introduction's command, on the first program, then run it
        code += "\n./prog 127.0.0.1 >/dev/null"
    port = free_port()
    script = PRELUDE + code.replace("4321", str(port))
    try:
        p = subprocess.Popen(["bash", "-c", script], cwd=work, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        out, err = p.communicate(timeout=60)
        r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        out, err = p.communicate()
        failures.append(f"{md}:{line}: shell block {name} hung\n--- stdout\n{out}"
                        f"--- stderr\n{err}")
        continue
    check = EXPECT.get(name)
    if check is None:
        failures.append(f"{md}:{line}: shell block {name} has no expected output here")
        continue
    ok, want = check(r.stdout, port)
    if r.returncode != 0 or not ok:
        failures.append(f"{md}:{line}: shell block {name}: status {r.returncode}\n"
                        f"--- stdout\n{r.stdout}--- expected\n{want}\n--- stderr\n{r.stderr}")
    else:
        print(f"ok: {name}")

for f in failures:
    print("FAIL:", f, file=sys.stderr)
print(f"{len(examples)} programs, {len(shells)} shell blocks, {len(failures)} failures")
sys.exit(1 if failures else 0)
