#!/usr/bin/env bash
# Compiles native/*.cpp into build/libtorch-<version>-<id>/libmdm_torch.so against the libtorch that
# scripts/setup.sh's find_libtorch chooses (MDM_LIBTORCH=<dir>|python|wheel|debian to pick one), only
# when the sources, flags or libtorch change; points build/libmdm_torch.so at it and prints its path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/setup.sh
source "$root/scripts/setup.sh"
find_libtorch

id=$(echo "$TORCH_LIBDIR" | sha256sum | cut -c1-8)
out="$root/build/libtorch-$TORCH_VERSION-$id"
lib="$out/libmdm_torch.so"
mkdir -p "$out"
# Serialise concurrent builds (parallel test runs, editors) on one lock.
exec 9>"$out/.lock"
flock 9

libs=(-ltorch -ltorch_cpu -lc10)
# A CUDA libtorch registers its kernels from libtorch_cuda's static initialisers: nothing references
# it by symbol, so --no-as-needed is what makes the loader really load it.
for cuda in torch_cuda c10_cuda; do
  [ -e "$TORCH_LIBDIR/lib$cuda.so" ] && libs+=("-l$cuda")
done

includes=(-I"$TORCH_INCLUDE" -I"$TORCH_INCLUDE/torch/csrc/api/include")
# The process groups (dist.cpp) include c10d's Gloo header, which includes Gloo's own: no libtorch
# ships those. Debian's libgloo-dev serves both its libtorch 1.13 (linked against that Gloo) and the
# wheels (which link theirs in statically): the shim only hands Gloo's devices through. Without the
# headers, or with a libtorch built without Gloo, the shim is built with its process groups failing
# by name (MDM_NO_GLOO).
dist=()
gloo=""
for dir in "$TORCH_INCLUDE" /usr/local/include /usr/include; do
  [ -f "$dir/gloo/context.h" ] && { gloo=$dir; break; }
done
if [ -z "$gloo" ]; then
  dist+=(-DMDM_NO_GLOO=1)
# (grep reads nm's output whole: with -q it would stop early and pipefail count nm's SIGPIPE.)
elif ! nm -D --defined-only "$TORCH_LIBDIR/libtorch_cpu.so" 2>/dev/null | grep ProcessGroupGloo >/dev/null; then
  dist+=(-DMDM_NO_GLOO=2)
fi
# NCCL process groups need a CUDA libtorch with c10d's NCCL backend, nccl.h and the CUDA headers
# (a CUDA toolkit at CUDA_HOME, or the nvidia-* wheels beside torch/).
if [ -e "$TORCH_LIBDIR/libtorch_cuda.so" ] &&
  nm -D --defined-only "$TORCH_LIBDIR/libtorch_cuda.so" 2>/dev/null | grep ProcessGroupNCCL >/dev/null; then
  cuda=() nccl=0 cudart=0
  for dir in "${CUDA_HOME:-/usr/local/cuda}/include" "$TORCH_LIBDIR"/../../nvidia/*/include /usr/include; do
    [ -d "$dir" ] || continue
    [ "$dir" = /usr/include ] || cuda+=(-I"$dir")
    [ -f "$dir/nccl.h" ] && nccl=1
    [ -f "$dir/cuda_runtime_api.h" ] && cudart=1
  done
  if [ $nccl = 1 ] && [ $cudart = 1 ]; then
    dist+=(-DMDM_WITH_NCCL -DUSE_C10D_NCCL "${cuda[@]}")
  fi
fi
# -fopenmp (compiling only) makes ATen's header-inline at::parallel_for use OpenMP, as libtorch's own
# kernels do. The link below names no OpenMP library: the GOMP calls bind at load time to the OpenMP
# runtime libtorch_cpu depends on, so libtorch and the shim share one thread pool.
# -fno-trapping-math and -fno-math-errno, as libtorch itself is built: they let the compiler vectorise
# loops with comparisons and math calls (fused.cpp), without changing any result.
flags=(-std=c++"$TORCH_CXX_STD" -O2 -fPIC -fvisibility=hidden -fopenmp -fno-trapping-math -fno-math-errno
  -D_GLIBCXX_USE_CXX11_ABI="$TORCH_ABI" -Wall -Wno-unused-variable "${includes[@]}" "${dist[@]}")
# Incremental: each object is rebuilt only when its source, the headers or the flags change (a stamp
# per object), and the library is relinked only when an object was.
common=$( (cat "$root"/native/*.h; echo "${flags[*]} $TORCH_LIBDIR $TORCH_VERSION") | sha256sum | cut -c1-16)
stale=()
objs=()
# The slowest files (the ones with libtorch's C++ API headers) first, so that they start at once.
for src in "$root/native/optim.cpp" "$root/native/bmm.cpp" "$root"/native/*.cpp; do
  obj="$out/$(basename "${src%.cpp}").o"
  case " ${objs[*]} " in *" $obj "*) continue ;; esac
  objs+=("$obj")
  want=$( (echo "$common"; cat "$src") | sha256sum | cut -c1-16)
  if [ ! -f "$obj" ] || [ "$(cat "$obj.stamp" 2>/dev/null)" != "$want" ]; then
    stale+=("$src")
    rm -f "$obj.stamp"
  fi
done
link=$( (printf '%s\n' "${objs[@]}"; echo "${libs[*]} $TORCH_LIBDIR") | sha256sum | cut -c1-16)
if [ ${#stale[@]} -gt 0 ] || [ ! -f "$lib" ] || [ "$(cat "$out/.stamp" 2>/dev/null)" != "$link" ]; then
  echo "native build: compiling ${#stale[@]} of ${#objs[@]} files against libtorch $TORCH_VERSION" \
    "(C++11 ABI $TORCH_ABI, C++$TORCH_CXX_STD) from $TORCH_FROM" >&2
  start=$(date +%s)
  # As many compilers as cores: each needs up to about 1 GiB, and more only contend.
  if [ ${#stale[@]} -gt 0 ]; then
    printf '%s\n' "${stale[@]}" | xargs -P "$(nproc 2>/dev/null || echo 2)" -I{} \
      sh -c 'src=$0 dir=$1 common=$2; shift 2; obj="$dir/$(basename "$src" .cpp).o"
        g++ "$@" -c "$src" -o "$obj" && { echo "$common"; cat "$src"; } | sha256sum | cut -c1-16 >"$obj.stamp"' \
      {} "$out" "$common" "${flags[@]}" >&2
  fi
  g++ -shared -o "$lib.tmp" "${objs[@]}" -L"$TORCH_LIBDIR" -Wl,--no-as-needed "${libs[@]}" -Wl,--as-needed \
    -Wl,-rpath,"$TORCH_LIBDIR"
  mv "$lib.tmp" "$lib"
  echo "$link" >"$out/.stamp"
  echo "native build: wrote $lib in $(($(date +%s) - start)) s" >&2
else
  echo "native build: up to date (libtorch $TORCH_VERSION from $TORCH_FROM)" >&2
fi
# The default path the library loads from (ffi/lib.ts) follows the latest build, unless MDM_BUILD_LINK=0
# (a build for MDM_NATIVE_LIB alone).
if [ "${MDM_BUILD_LINK:-1}" != 0 ]; then
  ln -sfn "libtorch-$TORCH_VERSION-$id/libmdm_torch.so" "$root/build/libmdm_torch.so.tmp"
  mv -T "$root/build/libmdm_torch.so.tmp" "$root/build/libmdm_torch.so"
fi
echo "$lib"
