#!/bin/sh
# The flake hunt: the whole suite, exactly as the README runs it (cmake --workflow --preset
# default: configure, build, CTest's parallel run with the valgrind entries), RUNS times in
# a row, optionally while another build loops beside it so that timing is stressed (a
# clean rebuild of the clang preset, again and again, on the same 2 cores).
#
# Usage: tests/tools/flake_hunt.sh RUNS [--load] [LOG]
# Prints one line per run (number, load, result, seconds, failed tests) and appends it to
# LOG [build/flake-hunt.log], with the output of every failed run in LOG.run-N. Exit 1 if
# any run failed. Run it in a clone of its own: it uses build/default and build/clang.
set -u
runs=${1:?usage: flake_hunt.sh RUNS [--load] [LOG]}
load=no
[ "${2:-}" = "--load" ] && { load=yes; shift; }
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
log=${2:-$top/build/flake-hunt.log}
mkdir -p "$(dirname "$log")"

loader=
stop_loader() {
    [ -n "$loader" ] && kill "$loader" 2>/dev/null && wait "$loader" 2>/dev/null
    loader=
}
trap stop_loader EXIT INT TERM
if [ "$load" = yes ]; then
    cmake --preset clang >/dev/null
    (while :; do cmake --build --preset clang --clean-first >/dev/null 2>&1; done) &
    loader=$!
fi

failed=0
i=1
while [ "$i" -le "$runs" ]; do
    start=$(date +%s)
    out=$log.run-$i
    if cmake --workflow --preset default >"$out" 2>&1; then
        result=pass
        rm -f "$out"
        bad=
    else
        result=FAIL
        failed=$((failed + 1))
        bad=$(sed -n 's/^[[:space:]]*[0-9]* - \([^ ]*\) (Failed).*/\1/p' "$out" | tr '\n' ' ')
    fi
    line="run $i load=$load $result $(( $(date +%s) - start ))s $(date -u +%FT%TZ) $bad"
    echo "$line"
    echo "$line" >>"$log"
    i=$((i + 1))
done
stop_loader
echo "flake hunt: $runs runs (load=$load), $failed failed"
[ "$failed" -eq 0 ]
