#!/bin/sh
# Static analysis of the library, zero findings allowed (the check list and the reasons for
# what is left out: lib/.clang-tidy and docs/design.md, "Static analysis"):
#   1. clang-tidy: clang-analyzer-*, bugprone-*, cert-* over every lib/ file (through a
#      compile_commands.json of a clang Debug configuration, so that assert() is seen)
#   2. cppcheck: warning, style, performance and portability checks over lib/
#   3. gcc -fanalyzer: the library built with gcc's static analyzer, warnings as errors
# Usage: tests/tools/static_analysis.sh [WORKDIR]   (Debian: clang-tidy cppcheck gcc)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$top/build/static-analysis}
rm -rf "$work"
mkdir -p "$work"
status=0

echo "== clang-tidy ($(clang-tidy --version | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -n 1))"
cmake -S "$top" -B "$work/tidy" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DTCPMSG_BUILD_TESTS=OFF -DTCPMSG_BUILD_EXAMPLES=OFF \
    >"$work/tidy-configure.log"
if ! run-clang-tidy -p "$work/tidy" -quiet "$top/lib/" >"$work/tidy.log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$work/tidy.log" | grep -E "(warning|error):" | sort -u >&2
    echo "clang-tidy: findings above" >&2
    status=1
fi
echo "clang-tidy: $(ls "$top"/lib/*/*.c | wc -l) files"

echo "== cppcheck ($(cppcheck --version))"
if ! cppcheck --enable=warning,style,performance,portability --std=c11 --inline-suppr \
    --error-exitcode=1 -q -D_GNU_SOURCE -I"$top/include" -I"$top/lib" \
    --suppress=missingIncludeSystem "$top/lib"; then
    echo "cppcheck: findings above" >&2
    status=1
fi

echo "== gcc -fanalyzer ($(gcc -dumpfullversion))"
cmake -S "$top" -B "$work/analyzer" -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_C_FLAGS=-fanalyzer -DTCPMSG_WERROR=ON -DTCPMSG_BUILD_TESTS=OFF \
    -DTCPMSG_BUILD_EXAMPLES=OFF >"$work/analyzer-configure.log"
if ! cmake --build "$work/analyzer" -j2 --target tcpmsg >"$work/analyzer.log" 2>&1; then
    grep -E "warning|error" -A3 "$work/analyzer.log" >&2 || cat "$work/analyzer.log" >&2
    echo "gcc -fanalyzer: findings above" >&2
    status=1
fi

[ "$status" -eq 0 ] && echo "static analysis: no finding"
exit "$status"
