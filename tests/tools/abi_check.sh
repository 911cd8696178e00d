#!/bin/sh
# The ABI of libtcpmsg.so against the baseline kept in tests/abi/ (abidiff, Debian package
# abigail-tools): a removed or changed function or variable, or a change of a public type
# they reach, fails unless the SONAME changed with it; an added function passes (the
# baseline is regenerated at a release: docs/design.md, "ABI"). Every exported symbol must
# carry a version of the version script (lib/tcpmsg.map). The opaque types are the
# library's business (tests/abi/suppressions.ini). Usage: abi_check.sh LIBRARY [SRC_DIR]
set -eu
lib=$1
src=${2:-$(cd "$(dirname "$0")/../.." && pwd)}
baseline="$src/tests/abi/libtcpmsg.so.0.abi"
command -v abidiff >/dev/null || { echo "abi: abidiff not found (apt-get install abigail-tools)" >&2; exit 1; }
[ -f "$lib" ] || { echo "abi: no library at $lib" >&2; exit 1; }

unversioned=$(objdump -T "$lib" | awk '$NF ~ /^tcpmsg_/ && $(NF-1) !~ /^TCPMSG_/ {print $NF}')
if [ -n "$unversioned" ]; then
    echo "abi: exported without a version (lib/tcpmsg.map): $unversioned" >&2
    exit 1
fi

old_soname=$(sed -n "1s/.*soname='\([^']*\)'.*/\1/p" "$baseline")
new_soname=$(objdump -p "$lib" | awk '$1 == "SONAME" {print $2}')
if [ "$old_soname" != "$new_soname" ]; then
    echo "abi: the SONAME changed ($old_soname -> $new_soname): any change is allowed;"
    echo "abi: record the new baseline (docs/design.md, \"ABI\")"
    exit 0
fi

report=$(mktemp)
trap 'rm -f "$report"' EXIT
set +e
abidiff --suppressions "$src/tests/abi/suppressions.ini" "$baseline" "$lib" >"$report"
rc=$?
set -e
cat "$report"
if [ $((rc & 3)) -ne 0 ]; then
    echo "abi: abidiff failed (status $rc)" >&2
    exit 1
fi
# "Functions changes summary: 0 Removed, 0 Changed (19 filtered out), 1 Added functions"
bad=$(grep -E "^(Functions|Variables) changes summary:" "$report" |
      grep -Ev "summary: 0 Removed, 0 Changed" || true)
if [ -n "$bad" ] || [ $((rc & 8)) -ne 0 ]; then
    echo "abi: an incompatible change of $new_soname (above): keep the ABI, or bump" >&2
    echo "abi: TCPMSG_SOVERSION and record a new baseline (docs/design.md, \"ABI\")" >&2
    exit 1
fi
if grep -q "Added function" "$report"; then
    echo "abi: compatible additions (above); the baseline is brought up to date at a release"
fi
echo "abi: $new_soname is compatible with the baseline"
