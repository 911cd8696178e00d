#!/usr/bin/env python3
"""Checks what libtcpmsg.so exports (nm -D) against the public headers.

Every function declared with TCPMSG_API is exported; nothing else is: no internal
tcpmsg__ symbol, no helper without the tcpmsg_ prefix. The SONAME is libtcpmsg.so.<major>."""
import pathlib
import re
import subprocess
import sys

lib, incdir = sys.argv[1], pathlib.Path(sys.argv[2])

out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True, capture_output=True,
                     text=True).stdout
exported = set()
for line in out.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "TWDBR":
        exported.add(parts[2].split("@")[0])

declared = set()
for h in incdir.rglob("*.h"):
    text = re.sub(r"/\*.*?\*/", "", h.read_text(), flags=re.S)
    for m in re.finditer(r"TCPMSG_API\b[^;{]*?\b(tcpmsg_\w+)\s*\(", text):
        declared.add(m.group(1))

errors = []
for s in sorted(exported - declared):
    errors.append(f"exported but not declared TCPMSG_API in a public header: {s}")
for s in sorted(declared - exported):
    errors.append(f"declared in a public header but not exported: {s}")

dyn = subprocess.run(["readelf", "-d", lib], check=True, capture_output=True, text=True).stdout
m = re.search(r"\(SONAME\)\s+Library soname: \[(.*?)\]", dyn)
if not m or not re.fullmatch(r"libtcpmsg\.so\.\d+", m.group(1)):
    errors.append(f"unexpected SONAME: {m.group(1) if m else 'none'}")

for e in errors:
    print(e)
print(f"exports: {len(exported)} symbols, {len(declared)} declared, {len(errors)} problem(s)")
sys.exit(1 if errors else 0)
