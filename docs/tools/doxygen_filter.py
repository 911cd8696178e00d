#!/usr/bin/env python3
"""Doxygen INPUT_FILTER: the headers' plain comments as Doxygen comments.

The headers are written for people reading them (headerdoc.py says how they document
themselves); this filter shows Doxygen the same comments as documentation, so that the
HTML reference and the man pages come from one source:
  - the top comment becomes the file's documentation (@file);
  - a comment at the start of a line directly followed by code documents that code;
  - a comment after code on the same line (or continuing one) documents that member;
  - indented lines inside a comment (examples, tables) become code blocks.
Line numbers are kept, so Doxygen's messages point at the header's own lines.
"""
import re
import sys

SPECIAL = re.compile(r"([\\@<>&#%$])")


def doc_text(lines, first_prefix):
    """Comment lines, escaped for Doxygen, indented runs wrapped in @code / @endcode."""
    out, in_code = [], False
    for i, line in enumerate(lines):
        body = line
        indented = body.startswith("  ") and body.strip()
        if indented and not in_code:
            out.append("@code{.c}")
            in_code = True
        elif not indented and in_code and body.strip():
            out[-1] += " @endcode" if out else ""
            in_code = False
        out.append(body if in_code else SPECIAL.sub(r"\\\1", body).replace("::", "\\::"))
    if in_code:
        out[-1] += " @endcode"
    return out


def split_comment(src_lines):
    """The text lines of a comment (one per source line), without markers."""
    text = []
    for i, line in enumerate(src_lines):
        s = line
        if i == 0:
            s = s[s.index("/*") + 2:]
        if "*/" in s and i == len(src_lines) - 1:
            s = s[:s.rindex("*/")]
        st = s.strip()
        if i > 0 and st.startswith("*") and not st.startswith("*/"):
            s = st[1:]
            s = s[1:] if s.startswith(" ") else s
        elif i > 0:
            s = st
        elif s.startswith(" "):
            s = s[1:]
        text.append(s.rstrip())
    return text


def rewrite(lines, start, end, kind):
    """Rewrites lines[start..end] (one comment) as a Doxygen comment of `kind`."""
    text = split_comment(lines[start:end + 1])
    body = doc_text(text, "")
    if kind == "file":
        body[0] = "@file " + body[0].split(" - ")[0].strip() + " " if body[0].strip() else \
            "@file"
        # the title line "tcpmsg/x.h - what": keep "what" as the brief
        first = SPECIAL.sub(r"\\\1", text[0].partition(" - ")[2]) if " - " in text[0] else ""
        body[0] = f"@file\n@brief {first}" if first else "@file"
    opener = {"file": "/**", "doc": "/**", "member": "/**<"}[kind]
    prefix = lines[start][:lines[start].index("/*")]
    new = []
    for i, b in enumerate(body):
        b = b.replace("*/", "*\\/")
        if i == 0:
            new.append(f"{prefix}{opener} {b}")
        else:
            new.append(f" * {b}" if kind != "member" else " " * (len(prefix) + 4) + b)
    new[-1] += " */"
    # Keep the line count: a @file brief adds a line, folded into the next.
    joined = "\n".join(new).split("\n")
    while len(joined) > end - start + 1:
        joined[1] = joined[0] + " " + joined[1].lstrip(" *")
        joined.pop(0)
    while len(joined) < end - start + 1:
        joined.append("")
    lines[start:end + 1] = joined


def main():
    lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
    i, first, depth = 0, True, 0
    while i < len(lines):
        line = lines[i]
        pos = line.find("/*")
        code_before = line[:pos].strip() if pos >= 0 else ""
        if pos < 0 or line[pos:].startswith("/**"):
            depth += line.count("{") - line.count("}")
            i += 1
            continue
        j = i
        while "*/" not in lines[j][(pos + 2) if j == i else 0:]:
            j += 1
        nxt = lines[j + 1].strip() if j + 1 < len(lines) else ""
        if first and not code_before:
            rewrite(lines, i, j, "file")
            first = False
        elif code_before and not code_before.startswith("#if") and \
                not code_before.startswith("#endif") and "extern" not in code_before:
            rewrite(lines, i, j, "member")
        elif not code_before and nxt and not nxt.startswith("#if") and \
                not nxt.startswith("#endif") and not nxt.startswith("}") and \
                not lines[i].strip().startswith("/* ----"):
            rewrite(lines, i, j, "doc")
        depth += code_before.count("{") - code_before.count("}")
        first = False
        i = j + 1
    sys.stdout.write("\n".join(lines))


if __name__ == "__main__":
    main()
