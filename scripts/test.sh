#!/usr/bin/env bash
# Runs every test, once per libtorch: Debian's libtorch 1.13 and the PyTorch 2 wheel this machine
# image carries (MDM_TEST_LIBTORCHES="debian wheel" by default; MDM_LIBTORCH=<one> runs that one).
# Each run installs what it needs (see setup.sh), builds the shim against that libtorch, takes its
# reference values from the same PyTorch, and ends with its own "N passed, N failed"; the last line
# sums them. MDM_DEVICE=cuda runs the suite with the CUDA device selected. Extra arguments go to
# `deno test` (for example a test file).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

libtorches=${MDM_TEST_LIBTORCHES:-${MDM_LIBTORCH:-debian wheel}}
total_passed=0 total_failed=0 status=0
for which in $libtorches; do
  # Without a wheel a user's run tests Debian's libtorch alone; CI (MDM_TEST_STRICT=1) requires both.
  if [ "$which" = wheel ] && [ -z "${MDM_TORCH_WHEEL:-}" ] && ! ls /opt/wheels/torch-*.whl >/dev/null 2>&1 &&
    [ -z "${MDM_TEST_STRICT:-}" ]; then
    echo "test: no PyTorch wheel on this machine (MDM_TORCH_WHEEL unset, /opt/wheels empty): libtorch 2 not tested"
    continue
  fi
  echo "test: ==== libtorch from MDM_LIBTORCH=$which ===="
  if ! deno=$(MDM_LIBTORCH=$which bash scripts/setup.sh --test); then
    echo "setup failed for MDM_LIBTORCH=$which"
    echo "0 passed, 1 failed"
    total_failed=$((total_failed + 1)) status=1
    continue
  fi
  # shellcheck source=/dev/null
  source build/setup.env
  echo "test: libtorch $MDM_TORCH_VERSION from $MDM_TORCH_FROM; references from $MDM_TORCH_PYTHON"
  junit="build/junit-$MDM_TORCH_VERSION.xml"
  rm -f "$junit"
  "$deno" test -A --junit-path="$junit" tests/ "$@" || status=1
  echo "test: libtorch $MDM_TORCH_VERSION:"
  line=$("$deno" run -A scripts/summary.ts "$junit") || status=1
  echo "$line"
  passed=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
  failed=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
  total_passed=$((total_passed + ${passed:-0})) total_failed=$((total_failed + ${failed:-1}))
done
[ $((total_passed + total_failed)) -gt 0 ] || { total_failed=1 status=1; }
echo "${total_passed} passed, ${total_failed} failed"
exit $status
