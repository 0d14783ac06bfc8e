#!/usr/bin/env bash
# Compiles native/*.cpp into build/libmdm_torch.so, only when the sources, flags or libtorch change.
# libtorch comes from Debian's libtorch-dev by default, or from MDM_LIBTORCH=<dir> holding include/
# and lib/ (for example the torch/ folder of a PyTorch wheel, CUDA builds included).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/build"
lib="$out/libmdm_torch.so"
mkdir -p "$out"
# Serialise concurrent builds (parallel test runs, editors) on one lock.
exec 9>"$out/.lock"
flock 9

if [ -n "${MDM_LIBTORCH:-}" ]; then
  tdir=$(cd "$MDM_LIBTORCH" && pwd)
  includes=(-I"$tdir/include" -I"$tdir/include/torch/csrc/api/include")
  libdir="$tdir/lib"
  abi=0
  if grep -q '_GLIBCXX_USE_CXX11_ABI=1' "$tdir/share/cmake/Torch/TorchConfig.cmake" 2>/dev/null; then abi=1; fi
  version_h="$tdir/include/torch/csrc/api/include/torch/version.h"
else
  includes=(-I/usr/include/torch/csrc/api/include)
  libdir=/usr/lib/x86_64-linux-gnu
  abi=1
  version_h=/usr/include/torch/csrc/api/include/torch/version.h
fi
[ -f "$version_h" ] || { echo "native build: libtorch headers not found ($version_h); install libtorch-dev or set MDM_LIBTORCH" >&2; exit 1; }
part() { sed -n "s/^#define TORCH_VERSION_$1 \([0-9]*\)/\1/p" "$version_h"; }
version="$(part MAJOR).$(part MINOR).$(part PATCH)"

libs=(-ltorch -ltorch_cpu -lc10)
# A CUDA libtorch registers its kernels from libtorch_cuda's static initialisers: nothing references
# it by symbol, so --no-as-needed is what makes the loader really load it.
for cuda in torch_cuda c10_cuda; do
  [ -e "$libdir/lib$cuda.so" ] && libs+=("-l$cuda")
done

# -fopenmp (compiling only) makes ATen's header-inline at::parallel_for use OpenMP, as libtorch's own
# kernels do. The link below names no OpenMP library: the GOMP calls bind at load time to the OpenMP
# runtime libtorch_cpu depends on, so libtorch and the shim share one thread pool.
flags=(-std=c++17 -O2 -fPIC -fvisibility=hidden -fopenmp -D_GLIBCXX_USE_CXX11_ABI=$abi -Wall -Wno-unused-variable "${includes[@]}")
stamp=$( (cat "$root"/native/*.cpp "$root"/native/*.h; echo "${flags[*]} ${libs[*]} $libdir $version") | sha256sum | cut -c1-16)
if [ -f "$lib" ] && [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "native build: up to date (libtorch $version from $libdir)"
  exit 0
fi

echo "native build: compiling against libtorch $version from $libdir"
objs=()
pids=()
for src in "$root"/native/*.cpp; do
  obj="$out/$(basename "${src%.cpp}").o"
  objs+=("$obj")
  g++ "${flags[@]}" -c "$src" -o "$obj" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
g++ -shared -o "$lib.tmp" "${objs[@]}" -L"$libdir" -Wl,--no-as-needed "${libs[@]}" -Wl,--as-needed \
  -Wl,-rpath,"$libdir"
mv "$lib.tmp" "$lib"
echo "$stamp" > "$out/.stamp"
echo "native build: wrote $lib"
