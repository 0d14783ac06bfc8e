#!/usr/bin/env bash
# The GPU check, in one run of at most 8 minutes on a CUDA machine whose python3 has PyTorch (2.11 +
# CUDA 13 on the H200 machines; no npm, no network): builds the shim against that PyTorch's libtorch
# (CUDA libraries linked so that they load), runs the CUDA-relevant tests with MDM_DEVICE=cuda, then
# the UNet training step at the paper's size (256², 192 channels, batch 8) in float32 and with a
# bfloat16 torso, mdm against PyTorch eager (and torch.compile while time remains), and pre-training
# throughput. Needs a Deno binary: .tools/deno.xz (xz-compressed), or .tools/node_modules/deno/deno.
# Everything goes to $OUT/gpu.log (or build/gpu.log) as well as the terminal.
#
#   bash bench/gpu.sh                          on the GPU machine
#   MDM_GPU_SMOKE=1 bash bench/gpu.sh          the same steps on this CPU machine, at tiny sizes
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log=${OUT:-$root/build}/gpu.log
mkdir -p "$(dirname "$log")" build
exec > >(tee "$log") 2>&1
start=$(date +%s)
elapsed() { echo $(($(date +%s) - start)); }
smoke=${MDM_GPU_SMOKE:-0}
device=cuda
[ "$smoke" = 1 ] && device=cpu

deno=.tools/node_modules/deno/deno
if [ ! -x "$deno" ]; then
  mkdir -p .tools/bin
  xz -dc .tools/deno.xz >.tools/bin/deno && chmod +x .tools/bin/deno || { echo "gpu: no Deno (.tools/deno.xz)"; exit 1; }
  deno=.tools/bin/deno
fi

# The machine's own PyTorch: its libtorch for the build, itself for reference values.
export MDM_LIBTORCH=${MDM_LIBTORCH:-python}
# shellcheck source=../scripts/setup.sh
source scripts/setup.sh
set +e
find_libtorch || exit 1
PYTHONPATH=$TORCH_PYTHONPATH "$TORCH_PYTHON" -c 'import torch; print("gpu: torch", torch.__version__, "cuda",
  torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "(no GPU)")'
lib=$(bash native/build.sh) || { echo "gpu: native build failed"; exit 1; }
echo "gpu: built $lib in $(elapsed) s since start"
export MDM_NATIVE_LIB=$lib MDM_TORCH_PYTHON=$TORCH_PYTHON MDM_TORCH_PYTHONPATH=$TORCH_PYTHONPATH
export MDM_TORCH_INCLUDE=$TORCH_INCLUDE MDM_TORCH_LIBDIR=$TORCH_LIBDIR MDM_TORCH_VERSION=$TORCH_VERSION
export MDM_TORCH_ABI=$TORCH_ABI MDM_TORCH_CXX_STD=$TORCH_CXX_STD
threads=$(nproc)
[ "$smoke" = 1 ] && threads=2
status=0

# Ops, gradients, nn, UNet parity, masking and SSIM, features: with tensors on the GPU, references
# from the same PyTorch on its CPU.
MDM_DEVICE=$device "$deno" test -A --junit-path=build/junit-gpu.xml \
  tests/ops_elementwise_test.ts tests/ops_reduce_test.ts tests/ops_shape_test.ts tests/nn_ops_test.ts \
  tests/grad_test.ts tests/unet_test.ts tests/mdm_test.ts tests/features_test.ts tests/contract_test.ts || status=1
"$deno" run -A scripts/summary.ts build/junit-gpu.xml || status=1
echo "gpu: tests done at $(elapsed) s"

config=paper
[ "$smoke" = 1 ] && config=gd-small
"$deno" run -A bench/unet.ts --only $config --device $device --precision both --threads "$threads" || status=1
echo "gpu: UNet step done at $(elapsed) s"
"$deno" run -A bench/pretrain.ts --only $config --device $device --threads "$threads" --rounds 1 || status=1
echo "gpu: pre-training done at $(elapsed) s"
# torch.compile last: its first steps compile for minutes; skipped when little time is left.
if [ "$(elapsed)" -lt 330 ]; then
  timeout $((450 - $(elapsed))) "$deno" run -A bench/unet.ts --only $config --device $device --precision fp32 \
    --threads "$threads" --compile || echo "gpu: torch.compile did not finish in time"
fi
echo "gpu: finished in $(elapsed) s, status $status"
exit $status
