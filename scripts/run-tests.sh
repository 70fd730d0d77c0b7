#!/usr/bin/env bash
# The test suite as `make test` runs it, in two passes with one exit status:
#   1. every test but those marked `serial`, on WORKERS processes (pytest-xdist); the
#      browser and network-lab tests one at a time on one of them (tests/conftest.py);
#   2. the `serial` tests (they measure time on the machine), alone.
# Usage: run-tests.sh PYTHON WORKERS [pytest arguments...]; both passes get the
# arguments (a selection with no serial test skips pass 2; WORKERS=0: pass 1 in-process).
set -uo pipefail
py=$1 workers=$2
shift 2

"$py" -m pytest -n "$workers" --dist loadgroup --serial-tests=exclude "$@"
first=$?
echo
echo "=== tests marked serial, alone ==="
"$py" -m pytest --serial-tests=only "$@"
second=$?

# 5 is "no tests collected": a selection with nothing for one of the passes.
if [ "$first" = 5 ] && [ "$second" = 5 ]; then exit 5; fi
[ "$first" = 5 ] && first=0
[ "$second" = 5 ] && second=0
if [ "$first" != 0 ]; then exit "$first"; fi
exit "$second"
