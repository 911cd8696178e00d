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
# A process that exits while another of its threads runs dumps counters the running thread
# is between updating (even with -fprofile-update=atomic: each counter is atomic, the set is
# not), and gcov then derives a fall-through count of -1 for a branch now and then; gcovr 5
# stops on that line unless told to skip it. Skipped lines are reported on stderr; they are
# branch lines only, so the line figure the floor checks is unchanged.
GCOVR_OPTS="--gcov-ignore-parse-errors"
gcovr $GCOVR_OPTS -r "$top" build/coverage --filter 'lib/' --exclude-unreachable-branches \
    --output build/coverage/lines.txt --print-summary --fail-under-line "$FLOOR" |
    tee build/coverage/summary.txt
gcovr $GCOVR_OPTS -r "$top" build/coverage --filter 'lib/' --exclude-unreachable-branches --branches \
    --output build/coverage/branches.txt
cat build/coverage/lines.txt
echo "coverage: floor $FLOOR% of the lines of lib/ (reports in build/coverage/)"
