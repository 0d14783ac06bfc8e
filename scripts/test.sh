#!/usr/bin/env bash
# Runs every test. Installs what the tests need first (see setup.sh). MDM_DEVICE=cuda runs the
# suite with the CUDA device selected. The last line of output is "N passed, N failed".
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
deno=$(bash scripts/setup.sh --test) || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }
mkdir -p build
"$deno" test -A --junit-path=build/junit.xml tests/ "$@"
status=$?
"$deno" run -A scripts/summary.ts build/junit.xml || status=1
exit $status
