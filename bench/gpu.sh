#!/usr/bin/env bash
# The device check, in one run on a GPU machine: builds the shim against the CUDA libtorch inside
# the PyTorch wheel there, runs the whole test suite with the CUDA device selected, then the ops
# benchmark. Needs a Deno binary: an xz-compressed copy at .tools/deno.xz (the machine has no npm
# registry), or one already at .tools/node_modules/deno/deno.
#
#   bash bench/gpu.sh            (writes its log to $OUT/gpu.log when OUT is set)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log=${OUT:-$root/build}/gpu.log
mkdir -p "$(dirname "$log")"
exec > >(tee "$log") 2>&1

python=$(command -v python3)
torch_dir=$("$python" -c 'import os, torch; print(os.path.dirname(torch.__file__))') || {
  echo "gpu: no PyTorch on this machine"
  exit 1
}
"$python" -c 'import torch; print("gpu: torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'

deno=.tools/node_modules/deno/deno
if [ ! -x "$deno" ]; then
  mkdir -p .tools/bin
  xz -dc .tools/deno.xz > .tools/bin/deno && chmod +x .tools/bin/deno
  deno=.tools/bin/deno
fi

MDM_LIBTORCH="$torch_dir" bash native/build.sh || exit 1
export MDM_PYTHON="$python" MDM_DEVICE=cuda
"$deno" test -A --junit-path=build/junit.xml tests/
status=$?
"$deno" run -A scripts/summary.ts build/junit.xml
"$deno" run -A bench/ops.ts --threads 16 || status=1
exit $status
