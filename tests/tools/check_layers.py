#!/usr/bin/env python3
"""Checks the architecture rules of docs/design.md on the source tree.

- Each layer includes only its own headers and the public headers of the layers below:
  core < codec < tls < io < server.
- OpenSSL is included by the tls layer only, which makes no system call (the io layer
  moves its bytes; with kTLS, OpenSSL's own socket BIO reads the socket) and starts no
  thread: its one use of <pthread.h> is the fork guard
  (a lock that pthread_atfork takes, docs/design.md).
- include/tcpmsg/codec.h needs only <stddef.h> <stdint.h> <stdbool.h> (plus the library's
  dependency-free version.h and error.h): a libuv or libevent user can take it alone.
- The codec layer makes no system call and never allocates.
- The library never prints, aborts or exits: errors are returned.
- Signals stay out of the io layer but for lib/io/sigpipe.c, which holds SIGPIPE off around
  the writes OpenSSL makes itself on a socket it runs on (kTLS).
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
errors = []

LAYERS = ["core", "codec", "tls", "io", "server"]
PUBLIC = {
    "core": {"tcpmsg/version.h", "tcpmsg/error.h"},
    "codec": {"tcpmsg/codec.h", "tcpmsg/wire.h"},
    "tls": {"tcpmsg/tls.h"},
    "io": {"tcpmsg/deadline.h", "tcpmsg/addr.h", "tcpmsg/sock.h", "tcpmsg/conn.h",
           "tcpmsg/proxy.h"},
    "server": {"tcpmsg/server.h"},
}
# System headers a layer must not use: what belongs to the layers above it.
FORBIDDEN_SYS = {
    "core": re.compile(r"^(sys/|unistd|pthread|signal|netdb|netinet|arpa|poll|fcntl|stdlib)"),
    "codec": re.compile(r"^(sys/|unistd|pthread|signal|netdb|netinet|arpa|poll|fcntl|stdlib)"),
    "tls": re.compile(r"^(sys/|unistd|signal|netdb|netinet|arpa|poll|fcntl)"),
    "io": re.compile(r"^(pthread|signal|sys/wait|sys/signalfd|sys/epoll|spawn)"),
    "server": None,
}
include_re = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def allowed_public(layer):
    ok = set()
    for l in LAYERS[: LAYERS.index(layer) + 1]:
        ok |= PUBLIC[l]
    return ok


for layer in LAYERS:
    d = root / "lib" / layer
    if not d.is_dir():
        continue
    for f in sorted(d.glob("*.[ch]")):
        text = f.read_text()
        for kind, inc in include_re.findall(text):
            rel = f.relative_to(root)
            if inc.startswith("tcpmsg/") or inc == "tcpmsg.h":
                if inc not in allowed_public(layer):
                    errors.append(f"{rel}: {layer} layer includes {inc} (a layer above)")
            elif kind == '"':
                target = (f.parent / inc).resolve()
                if not target.exists():
                    errors.append(f"{rel}: includes missing {inc}")
                    continue
                tl = target.parent.name
                if tl in LAYERS and LAYERS.index(tl) > LAYERS.index(layer):
                    errors.append(f"{rel}: includes {inc} from the {tl} layer above")
            else:
                bad = FORBIDDEN_SYS[layer]
                # The one exception: SIGPIPE held off around OpenSSL's own socket writes.
                if f.name == "sigpipe.c" and layer == "io" and inc == "signal.h":
                    continue
                if bad and bad.search(inc):
                    errors.append(f"{rel}: {layer} layer includes <{inc}>")
        if layer != "tls":
            for kind, inc in include_re.findall(text):
                if inc.startswith("openssl/"):
                    errors.append(f"{f.relative_to(root)}: only the tls layer includes <{inc}>")
        if layer == "tls":
            code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
            for call in re.findall(r"\b(read|write|send|recv|recvmsg|sendmsg|poll|socket|close|pthread_create|fork)\s*\(", code):
                errors.append(f"{f.relative_to(root)}: the tls layer calls {call}() (no I/O)")
        if layer in ("core", "codec"):
            code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
            for call in re.findall(r"\b(malloc|calloc|realloc|free|read|write|send|recv|open|close)\s*\(", code):
                errors.append(f"{f.relative_to(root)}: {layer} layer calls {call}()")

for f in sorted((root / "lib").rglob("*.[ch]")):
    code = re.sub(r"/\*.*?\*/", "", f.read_text(), flags=re.S)
    # A process the server layer forked ends with _exit(); nothing else may end a process.
    ends = "exit" if f.parent.name == "server" else "exit|_exit"
    for call in re.findall(r"\b(printf|fprintf|puts|perror|abort|" + ends + r")\s*\(", code):
        errors.append(f"{f.relative_to(root)}: the library must not call {call}()")

codec_h = (root / "include/tcpmsg/codec.h").read_text()
for kind, inc in include_re.findall(codec_h):
    if inc not in {"stddef.h", "stdint.h", "stdbool.h", "tcpmsg/error.h", "tcpmsg/version.h"}:
        errors.append(f"include/tcpmsg/codec.h includes {inc}")
for dep in ("tcpmsg/error.h", "tcpmsg/version.h"):
    for kind, inc in include_re.findall((root / "include" / dep).read_text()):
        if not inc.startswith("tcpmsg/"):
            errors.append(f"include/{dep} (needed by codec.h) includes <{inc}>")

for e in errors:
    print(e)
print(f"layering: {len(errors)} violation(s)")
sys.exit(1 if errors else 0)
