#!/bin/sh
# Line and branch coverage of lib/ by the whole test suite (the valgrind entries aside: they
# run the same programs again), with gcov and gcovr (Debian: gcovr). Prints the table per
# file and fails when the line coverage of lib/ drops below the floor: the figure reached
# (docs/reliability.md, "Coverage"), so that CI notices a change that leaves code untested.
# Usage: tests/tools/coverage.sh      (builds build/coverage from scratch)
set -eu
FLOOR=93
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
rm -rf build/coverage
cmake --workflow --preset coverage
gcovr -r "$top" build/coverage --filter 'lib/' --exclude-unreachable-branches \
    --output build/coverage/lines.txt --print-summary --fail-under-line "$FLOOR" |
    tee build/coverage/summary.txt
gcovr -r "$top" build/coverage --filter 'lib/' --exclude-unreachable-branches --branches \
    --output build/coverage/branches.txt
cat build/coverage/lines.txt
echo "coverage: floor $FLOOR% of the lines of lib/ (reports in build/coverage/)"
