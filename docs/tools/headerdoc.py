"""Reads libtcpmsg's public headers: the one source of the reference manual.

A header documents itself in plain C comments (docs/design.md, "Headers"):
  - the comment at the top of the file describes the module;
  - a comment at the start of a line, followed directly (no blank line) by declarations,
    documents those declarations: one function, or a family of them;
  - a comment followed by a blank line is a section title or a note;
  - a comment after code on the same line documents that field, constant or macro.

parse() returns, for one header, its overview and its documentation blocks. gen_man.py
turns them into man pages, doxygen_filter.py into Doxygen comments.
"""
import os
import re

FUNC = re.compile(r"\b(tcpmsg_\w+)\s*\(")


class Block:
    """A documentation comment and the declarations it documents."""

    def __init__(self, comment, code, line):
        self.comment = comment  # text, without the comment markers and leading " * "
        self.code = code        # the declarations, as written (bodies of inline functions cut)
        self.line = line
        self.functions = []     # the functions declared, in order

    def summary(self):
        """The first sentence, without the leading "name - "."""
        text = " ".join(self.comment.split())
        m = re.match(r"(tcpmsg_\w+)(\s*/\s*tcpmsg_\w+)*(/\w+)*\s+-\s+", text)
        if m:
            text = text[m.end():]
        depth, end = 0, len(text)
        for k, ch in enumerate(text):  # the first '.', ':' or ';' outside parentheses
            depth += (ch == "(") - (ch == ")")
            if depth == 0 and ch in ".:;" and (k + 1 == len(text) or text[k + 1] == " ") \
                    and not text[max(0, k - 3):k + 1] in ("e.g.", "i.e."):
                end = k
                break
        s = text[:end]
        if len(s) > 80 and s.find(" (") > 15:  # a NAME line, not a paragraph
            s = s[:s.find(" (")].rstrip(" ,")
        return s[:1].lower() + s[1:] if s[:2] != s[:2].upper() else s


class Header:
    def __init__(self, path, name):
        self.path = path
        self.name = name          # "tcpmsg/conn.h"
        self.overview = ""        # the top comment, without its "tcpmsg/x.h - " title line
        self.title = ""           # what follows "tcpmsg/x.h - " on the first line
        self.blocks = []          # Block, in order
        self.functions = []       # every function declared or defined, in order
        self.types = {}           # "struct tcpmsg_x" / "enum tcpmsg_x": its definition


def comment_text(lines):
    """The text of a /* ... */ comment given as its source lines."""
    out = []
    for i, line in enumerate(lines):
        s = line.rstrip()
        if i == 0:
            s = s.lstrip()[2:]
        if i == len(lines) - 1:
            s = s[:s.rindex("*/")]
        st = s.lstrip()
        if i > 0 and st.startswith("*"):
            s = st[1:]
            if s.startswith(" "):
                s = s[1:]
        elif i > 0:
            s = st
        out.append(s.rstrip())
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    if out and out[0].startswith(" "):
        out[0] = out[0].lstrip()
    return "\n".join(out)


def open_comment(line):
    """True if the line leaves a /* comment open."""
    return line.rfind("/*") > line.rfind("*/")


def strip_bodies(code):
    """Declarations with the bodies of inline functions replaced by ';'."""
    out, depth, i = [], 0, 0
    while i < len(code):
        c = code[i]
        if c == "{" and depth == 0 and re.search(r"\)\s*$", "".join(out)):
            depth = 1
            while out and out[-1] in " \n":
                out.pop()
            out.append(";")
        elif depth:
            depth += c == "{"
            depth -= c == "}"
        else:
            out.append(c)
        i += 1
    return re.sub(r"\n{2,}", "\n", "".join(out)).strip()


def parse(path, name=None):
    name = name or "tcpmsg/" + os.path.basename(path)
    h = Header(path, name)
    lines = open(path, encoding="utf-8").read().split("\n")
    i, n = 0, len(lines)
    depth = 0  # braces: inside struct/enum/function bodies or extern "C"
    pending = None  # (comment, line) waiting for declarations
    macros = {}  # function-defining macro: (its parameters, the prototype it pastes)
    first = True
    while i < n:
        line = lines[i]
        st = line.strip()
        if st.startswith("/*") and (depth == 0 or line.startswith("/*")):
            j = i
            while "*/" not in lines[j]:
                j += 1
            text = comment_text(lines[i:j + 1])
            if first:
                first = False
                head, _, rest = text.partition("\n")
                m = re.match(r"tcpmsg/\w+\.h\s+-\s+(.*)", head)
                if m:
                    h.title = m.group(1).rstrip(".")
                    h.overview = rest.strip("\n")
                i = j + 1
                continue
            follows = j + 1 < n and lines[j + 1].strip() != "" and \
                not lines[j + 1].startswith("#if") and not lines[j + 1].startswith("#endif")
            pending = (text, i + 1) if follows else None
            i = j + 1
            continue
        first = False
        if not st:
            pending = None
            i += 1
            continue
        use = re.match(r"([A-Z_0-9]+)\((.*)\)\s*$", st)
        if use and use.group(1) in macros:
            params, proto = macros[use.group(1)]
            args = [a.strip() for a in use.group(2).split(",")]
            for p, a in zip(params, args):
                proto = re.sub(rf"\b{p}\b", a, proto)
            proto = proto.replace("##", "")
            f = FUNC.search(proto).group(1)
            h.functions.append(f)
            if pending:
                blk = h.blocks[-1] if h.blocks and h.blocks[-1].line == pending[1] else None
                if blk is None:
                    blk = Block(pending[0], "", pending[1])
                    h.blocks.append(blk)
                blk.functions.append(f)
                blk.code = (blk.code + "\n" + proto + ";").strip()
            i += 1
            continue
        if st.startswith("#"):
            # A macro: documented by its trailing comment or the comment above; not a page.
            # A macro that defines functions (name pasted with ##) is remembered, so that
            # its uses below declare them.
            m = re.match(r"#define\s+([A-Z_0-9]+)\(([^)]*)\)", st)
            first_line = i
            while lines[i].rstrip().endswith("\\"):
                i += 1
            if m:
                body = " ".join(ln.rstrip("\\ ") for ln in lines[first_line + 1:i + 1])
                proto = re.search(r"(static inline [^{]*?\btcpmsg_\w*##\w+\s*\([^)]*\))", body)
                if proto:
                    params = [a.strip() for a in m.group(2).split(",")]
                    macros[m.group(1)] = (params, " ".join(proto.group(1).split()))
            if open_comment(lines[i]):
                while "*/" not in lines[i + 1]:
                    i += 1
                i += 1
            i += 1
            continue
        # One declaration or definition: up to ';' at depth 0, or a closing '}' to depth 0.
        start, code, d, in_comment = i, [], depth, False
        while i < n:
            code.append(lines[i])
            cl = lines[i]
            if in_comment:
                if "*/" not in cl:
                    i += 1
                    continue
                cl, in_comment = cl[cl.index("*/") + 2:], False
            in_comment = open_comment(cl)
            cl = re.sub(r"/\*.*?(\*/|$)|//.*$", "", cl)
            d += cl.count("{") - cl.count("}")
            i += 1
            if d <= depth and (cl.rstrip().endswith(";") or cl.rstrip().endswith("}")):
                break
            if 'extern "C"' in cl and d > depth:  # the extern "C" wrapper: not a declaration
                break
        text = "\n".join(code)
        if 'extern "C"' in text:
            continue
        decl = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        funcs = []
        t = re.match(r"\s*(struct|enum)\s+(tcpmsg_\w+)\s*\{", decl)
        if t:
            h.types[f"{t.group(1)} {t.group(2)}"] = text.strip()
        if not re.match(r"\s*(struct|enum|union|typedef)\b[^(]*\{", decl):
            m = FUNC.search(decl)
            if m and not decl.lstrip().startswith("_Static_assert"):
                funcs = [f for f in FUNC.findall(decl.split("{")[0])
                         if f not in ("tcpmsg_handler",)][:1]
        h.functions += funcs
        if pending and funcs:
            blk = h.blocks[-1] if h.blocks and h.blocks[-1].line == pending[1] else None
            if blk is None:
                blk = Block(pending[0], "", pending[1])
                h.blocks.append(blk)
            blk.functions += funcs
            blk.code = (blk.code + "\n" + strip_bodies(text)).strip()
        elif pending and not funcs:
            pending = None
    return h


def headers(include_dir):
    out = []
    for f in sorted(os.listdir(os.path.join(include_dir, "tcpmsg"))):
        if f.endswith(".h"):
            out.append(parse(os.path.join(include_dir, "tcpmsg", f)))
    return out
