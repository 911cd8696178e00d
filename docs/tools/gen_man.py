#!/usr/bin/env python3
"""Generates libtcpmsg's man pages from the public headers (the one source of truth).

    gen_man.py INCLUDE_DIR OUT_DIR VERSION [--check LIBRARY.so]

Writes OUT_DIR/man3/NAME.3 for every documented function or family (the other members of
a family get a one-line page that sources the family's), OUT_DIR/man3/tcpmsg_wire.3 for
the inline wire helpers, and OUT_DIR/man7/tcpmsg.7, the overview. With --check, fails if a
function the library exports (nm -D) or a header declares has no page, or if groff warns
about a page (the generated ones and the hand-written docs/man/*.1).
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import headerdoc  # noqa: E402

MANUAL = "libtcpmsg Manual"


def esc(text):
    """Text for roff: backslashes escaped, no line starting with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line
                     for line in text.split("\n"))


def prose(text):
    """A comment as roff: paragraphs filled, indented lines (code, tables) kept as they are."""
    out, para, code = [], [], []

    def flush_para():
        if para:
            out.append(".PP")
            out.append(esc(" ".join(para)))
            para.clear()

    def flush_code():
        if code:
            out.append(".PP\n.RS 4\n.nf")
            out.append(esc("\n".join(code)))
            out.append(".fi\n.RE")
            code.clear()

    for line in text.split("\n"):
        if not line.strip():
            flush_para()
            flush_code()
        elif line.startswith("  ") or re.match(r"\s*(- |\d+\. )", line) and not para:
            flush_para()
            code.append(line)
        elif code and line.startswith(" "):
            code.append(line)
        else:
            flush_code()
            para.append(line.strip())
    flush_para()
    flush_code()
    return "\n".join(out)


def th(name, section, version):
    return f'.TH {name.upper()} {section} "" "libtcpmsg {version}" "{MANUAL}"'


def synopsis(header, code):
    code = re.sub(r"\n {11}", "\n", code)  # continuation lines were aligned after TCPMSG_API
    code = re.sub(r"\bTCPMSG_API\s+", "", code)
    code = re.sub(r"\bstatic inline\s+", "static inline ", code)
    return ".SH SYNOPSIS\n.nf\n" + esc(f"#include <{header}>\n\n{code}") + "\n.fi"


def see_also(names):
    return ".SH SEE ALSO\n" + ",\n".join(f".BR {n} ({s})" for n, s in names)


def types_section(blk, types):
    """The definitions of the library's structs and enums the declarations use."""
    used = []
    for m in re.finditer(r"\b(struct|enum)\s+(tcpmsg_\w+)", blk.code):
        key = f"{m.group(1)} {m.group(2)}"
        if key in types and key not in used:
            used.append(key)
    if not used:
        return ""
    return ".SH TYPES\n.nf\n" + esc("\n\n".join(types[k] for k in used)) + "\n.fi"


def function_page(h, blk, version, family, types):
    names = ", ".join(blk.functions)
    others = [(b.functions[0], 3) for b in family if b is not blk][:12]
    return "\n".join([
        th(blk.functions[0], 3, version),
        ".SH NAME",
        esc(f"{names} - {blk.summary()}"),
        synopsis(h.name, blk.code),
        ".SH DESCRIPTION",
        prose(blk.comment),
        types_section(blk, types),
        ".PP",
        esc(f"Declared in <{h.name}>, which describes the whole module ({h.title}): see "
            "tcpmsg(7)."),
        see_also([("tcpmsg", 7)] + others),
        ""])


def wire_page(h, version):
    body = [th("tcpmsg_wire", 3, version), ".SH NAME",
            esc("tcpmsg_wire - " + h.title), ".SH SYNOPSIS", ".nf",
            esc(f"#include <{h.name}>"), ".fi", ".SH DESCRIPTION", prose(h.overview),
            ".SH FUNCTIONS"]
    for blk in h.blocks:
        body += [".PP\n.nf", "\\fB" + esc(re.sub(r"\bstatic inline\s+", "", blk.code)) + "\\fR",
                 ".fi", ".RS 4", prose(blk.comment), ".RE"]
    rest = [f for f in h.functions if f not in {x for b in h.blocks for x in b.functions}]
    body += [".PP", esc("Also, with the same shape: " + ", ".join(rest) + ".")]
    body += [see_also([("tcpmsg", 7)]), ""]
    return "\n".join(body)


def overview_page(hs, version):
    out = [th("tcpmsg", 7, version), ".SH NAME",
           esc("tcpmsg - TCP client/server programs with whole messages"),
           ".SH SYNOPSIS", ".nf", esc("#include <tcpmsg/server.h>  /* and the others below */"),
           "", esc("cc prog.c $(pkg-config --cflags --libs tcpmsg)"), ".fi",
           ".SH DESCRIPTION",
           prose("libtcpmsg is a C11 library for Linux for TCP clients and servers that "
                 "exchange messages. It resolves names, listens (one dual-stack socket for "
                 "the wildcard), accepts and connects with deadlines; it frames messages "
                 "with three sans-I/O codecs (a length prefix, a delimiter, fixed-size "
                 "records); it sends and receives whole messages over buffered connections; "
                 "and it runs one handler under five server models (iterative, one process "
                 "per connection, one thread per connection, a pool, epoll events). No call "
                 "raises SIGPIPE or returns EINTR, every descriptor is close-on-exec, and "
                 "every error is a negative return value (see tcpmsg_strerror(3)).\n\n"
                 "Each header below is one module; its functions have their own pages.")]
    for h in hs:
        out += [f".SS <{esc(h.name)}> \\- {esc(h.title)}", prose(h.overview)]
        names = [b.functions[0] for b in h.blocks] if h.name != "tcpmsg/wire.h" \
            else ["tcpmsg_wire"]
        out += [".PP", "Pages: " + ",\n".join(f"\\fB{esc(n)}\\fR(3)" for n in names) + "."]
    out += [see_also([("tcpmsg-cat", 1), ("tcpmsg_server_create", 3),
                      ("tcpmsg_conn_open", 3), ("tcpmsg_codec_init_length", 3)]), ""]
    return "\n".join(out)


def generate(include_dir, out_dir, version):
    hs = headerdoc.headers(include_dir)
    types = {k: v for h in hs for k, v in h.types.items()}
    pages = {}
    for h in hs:
        if h.name == "tcpmsg/wire.h":
            pages["man3/tcpmsg_wire.3"] = wire_page(h, version)
            for f in h.functions:
                pages[f"man3/{f}.3"] = ".so man3/tcpmsg_wire.3\n"
            continue
        for blk in h.blocks:
            pages[f"man3/{blk.functions[0]}.3"] = function_page(h, blk, version, h.blocks, types)
            for f in blk.functions[1:]:
                pages[f"man3/{f}.3"] = f".so man3/{blk.functions[0]}.3\n"
    pages["man7/tcpmsg.7"] = overview_page(hs, version)
    for rel, text in pages.items():
        path = os.path.join(out_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        old = open(path).read() if os.path.exists(path) else None
        if old != text:
            with open(path, "w") as f:
                f.write(text)
    return hs, pages


def check(hs, pages, out_dir, library):
    problems = []
    exported = subprocess.run(["nm", "-D", "--defined-only", library], capture_output=True,
                              text=True, check=True).stdout.split("\n")
    symbols = [ln.split()[2].split("@")[0] for ln in exported  # "name@@TCPMSG_0": versioned
               if len(ln.split()) == 3 and ln.split()[1] == "T"]
    declared = [f for h in hs for f in h.functions]
    for s in symbols:
        if f"man3/{s}.3" not in pages:
            problems.append(f"{s}: exported, but no man page (document it in its header)")
    for f in declared:
        if f"man3/{f}.3" not in pages:
            problems.append(f"{f}: declared, but no documentation comment above it")
    hand = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "man")
    written = [os.path.join(hand, f) for f in sorted(os.listdir(hand))]  # tcpmsg-cat(1)
    for rel in list(pages) + written:
        path = os.path.join(out_dir, rel)
        r = subprocess.run(["groff", "-man", "-ww", "-z", "-rCHECKSTYLE=3", path],
                           capture_output=True, text=True, cwd=out_dir)
        if r.returncode != 0 or r.stderr.strip():
            problems.append(f"{rel}: groff: {r.stderr.strip()}")
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{len(symbols)} exported functions, {len(declared)} declared, "
          f"{len(pages)} pages, {len(problems)} problems", file=sys.stderr)
    return not problems


def main():
    args = sys.argv[1:]
    lib = None
    if "--check" in args:
        i = args.index("--check")
        lib = args[i + 1]
        del args[i:i + 2]
    include_dir, out_dir, version = args
    hs, pages = generate(include_dir, out_dir, version)
    if lib and not check(hs, pages, out_dir, lib):
        sys.exit(1)


if __name__ == "__main__":
    main()
