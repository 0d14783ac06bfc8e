#!/usr/bin/env bash
# Runs every benchmark against one libtorch (MDM_LIBTORCH=debian|wheel|python|<dir>, as setup.sh's
# find_libtorch chooses) with Python PyTorch on the same library and threads, and keeps the output in
# build/bench-<version>.log. Extra arguments go to bench/unet.ts (for example --only gd-medium).
#
#   MDM_LIBTORCH=wheel bash scripts/bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
deno=$(bash scripts/setup.sh --test)
# shellcheck source=/dev/null
source build/setup.env
# torch.compile (inductor) imports packages a bare python3 lacks (filelock, sympy, networkx, fsspec):
# from the machine image's local wheels (MDM_PY_WHEELS), installed once into .tools/pydeps.
wheels=${MDM_PY_WHEELS:-/opt/pypi/files}
compile=(--compile)
if ! PYTHONPATH="$MDM_TORCH_PYTHONPATH" "$MDM_TORCH_PYTHON" -c 'import filelock, sympy, networkx, fsspec' 2>/dev/null; then
  if [ -d "$wheels" ] && "$MDM_TORCH_PYTHON" -m pip install -q --no-index --find-links "$wheels" --target .tools/pydeps \
    filelock sympy networkx fsspec >&2; then
    export MDM_TORCH_PYTHONPATH="$MDM_TORCH_PYTHONPATH${MDM_TORCH_PYTHONPATH:+:}$root/.tools/pydeps"
  else
    echo "bench: torch.compile needs filelock, sympy, networkx and fsspec for $MDM_TORCH_PYTHON; its rows are skipped" >&2
    compile=()
  fi
fi
log="build/bench-$MDM_TORCH_VERSION.log"
threads=${MDM_BENCH_THREADS:-2}
{
  echo "bench: $(date -u +%FT%TZ), libtorch $MDM_TORCH_VERSION from $MDM_TORCH_FROM, $threads threads"
  "$deno" run -A bench/ops.ts --threads "$threads"
  "$deno" run -A bench/unet.ts --threads "$threads" --precision both "${compile[@]}" "$@"
  "$deno" run -A bench/pretrain.ts --threads "$threads"
  "$deno" run -A bench/segment.ts --threads "$threads"
} 2>&1 | tee "$log"
