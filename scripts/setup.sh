#!/usr/bin/env bash
# Installs what mdm needs on a Debian machine with Node, idempotently and quickly when already done:
# a libtorch (found by find_libtorch below), Deno from npm into .tools/, the native library, and with
# --test the Python reference stack. Prints the path of the Deno binary as its last line and writes
# the chosen libtorch's settings to build/setup.env (sourced by scripts/test.sh).
#
#   bash scripts/setup.sh [--test]
#   source scripts/setup.sh && find_libtorch && echo "$TORCH_VERSION from $TORCH_FROM"
set -euo pipefail
MDM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DENO_VERSION=2.9.6

say() { echo "setup: $*" >&2; }
die() {
  echo "setup: $*" >&2
  return 1
}

apt_install() {
  local missing=() p sudo=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  say "installing ${missing[*]}"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The wheels this machine image carries (CPU builds first: a CUDA wheel needs CUDA libraries that
# a CPU machine lacks).
image_wheel() {
  local w
  for w in /opt/wheels/torch-*+cpu-*.whl /opt/wheels/torch-*.whl; do
    [ -f "$w" ] && { echo "$w"; return 0; }
  done
  return 1
}

# Unpacks a PyTorch wheel (torch/ and the packages it imports, torchgen among them) once into
# .tools/<wheel name>/ and prints that folder.
unpack_wheel() {
  local wheel=$1 name dest
  [ -f "$wheel" ] || die "MDM_TORCH_WHEEL=$wheel: no such file" || return 1
  name=$(basename "$wheel" .whl)
  dest="$MDM_ROOT/.tools/$name"
  if [ ! -f "$dest/.unpacked" ]; then
    say "unpacking $(basename "$wheel") into .tools/$name"
    rm -rf "$dest" && mkdir -p "$dest"
    if command -v unzip >/dev/null; then
      unzip -q -o "$wheel" -d "$dest" >&2 || die "cannot unpack $wheel" || return 1
    else
      python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); z.extractall(sys.argv[2])' \
        "$wheel" "$dest" || die "cannot unpack $wheel" || return 1
    fi
    touch "$dest/.unpacked"
  fi
  echo "$dest"
}

# The folder of the torch package a Python imports, when it has libtorch's headers and libraries.
python_torch_dir() {
  local py=$1 dir
  dir=$("$py" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null) || return 1
  [ -d "$dir/include" ] && [ -d "$dir/lib" ] && echo "$dir"
}

# The first Python that imports an unpacked wheel: a wheel imports only into the CPython it was built
# for (its cpXY tag), and that CPython needs the wheel's own dependencies (typing_extensions with
# `deprecated`, which Debian's python3.11 lacks). MDM_TORCH_PYTHON, then python3 and python3.X on
# PATH, then pyenv's and /usr/local's installs: CI's PATH need not hold the Python a shell has.
wheel_python() {
  local tag=$1 dir=$2 minor py
  minor=${tag#cp3}
  for py in ${MDM_TORCH_PYTHON:-} "$(command -v python3 || true)" "$(command -v "python3.$minor" || true)" \
    "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3."$minor".*/bin/python3 /usr/local/bin/python3."$minor" \
    /usr/bin/python3."$minor"; do
    [ -x "$py" ] || continue
    PYTHONPATH="$dir" "$py" -c 'import torch' >/dev/null 2>&1 && { echo "$py"; return 0; }
  done
  return 1
}

# Reads version, C++ ABI and C++ standard from a libtorch's own files and sets the TORCH_* variables.
# Arguments: include dir, library dir, a description of where it came from.
describe_libtorch() {
  TORCH_INCLUDE=$1 TORCH_LIBDIR=$2 TORCH_FROM=$3
  [ -e "$TORCH_LIBDIR/libtorch_cpu.so" ] || die "$TORCH_FROM: no libtorch_cpu.so in $TORCH_LIBDIR" || return 1
  local vh part
  # 1.x keeps version.h under torch/csrc/api/include, 2.x under torch/headeronly: find the one that
  # defines the numbers.
  vh=$(grep -rls --include=version.h '^#define TORCH_VERSION_MAJOR' "$TORCH_INCLUDE/torch" 2>/dev/null | head -1 || true)
  [ -n "$vh" ] || die "$TORCH_FROM: no torch version.h under $TORCH_INCLUDE/torch (headers missing?)" || return 1
  part() { sed -n "s/^#define TORCH_VERSION_$1 \([0-9]*\).*/\1/p" "$vh"; }
  TORCH_VERSION_MAJOR=$(part MAJOR) TORCH_VERSION_MINOR=$(part MINOR)
  TORCH_VERSION="$TORCH_VERSION_MAJOR.$TORCH_VERSION_MINOR.$(part PATCH)"
  # The ABI is what the library exports: std::string in a C++11-ABI build mangles as __cxx11.
  local cxx11
  cxx11=$(nm -D --defined-only "$TORCH_LIBDIR/libc10.so" 2>/dev/null | grep -c '__cxx11' || true)
  if [ "${cxx11:-0}" -gt 0 ]; then TORCH_ABI=1; else TORCH_ABI=0; fi
  local cfg flag
  cfg=$(ls "$TORCH_LIBDIR"/cmake/Torch/TorchConfig.cmake "$TORCH_LIBDIR"/../share/cmake/Torch/TorchConfig.cmake 2>/dev/null | head -1 || true)
  TORCH_CXX_STD=17
  if [ -n "$cfg" ]; then
    local std
    std=$(sed -n 's/.*CXX_STANDARD \([0-9][0-9]\).*/\1/p' "$cfg" | head -1 || true)
    [ -n "$std" ] && [ "$std" -gt "$TORCH_CXX_STD" ] && TORCH_CXX_STD=$std
    flag=$(sed -n 's/.*_GLIBCXX_USE_CXX11_ABI=\([01]\).*/\1/p' "$cfg" | head -1 || true)
    if [ -n "$flag" ] && [ "$flag" != "$TORCH_ABI" ]; then
      die "$TORCH_FROM: TorchConfig.cmake says _GLIBCXX_USE_CXX11_ABI=$flag but libc10.so exports the other ABI"
      return 1
    fi
  fi
  export TORCH_INCLUDE TORCH_LIBDIR TORCH_FROM TORCH_VERSION TORCH_VERSION_MAJOR TORCH_VERSION_MINOR TORCH_ABI TORCH_CXX_STD
}

# Where libtorch comes from, first match wins:
#   1. MDM_LIBTORCH=<dir> holding include/ and lib/ (a libtorch zip, or a wheel's torch/ folder);
#      MDM_LIBTORCH=python, =wheel or =debian picks one of the routes below by name;
#   2. the PyTorch installed for `python3` (its torch/ folder);
#   3. the wheel named by MDM_TORCH_WHEEL, else the one this machine image carries (/opt/wheels),
#      unpacked once into .tools/;
#   4. Debian's libtorch-dev (installed when missing).
# Sets TORCH_INCLUDE, TORCH_LIBDIR, TORCH_VERSION(_MAJOR/_MINOR), TORCH_ABI, TORCH_CXX_STD, TORCH_FROM,
# and TORCH_PYTHON/TORCH_PYTHONPATH: the Python whose `import torch` is the same PyTorch, for
# reference values (empty when there is none).
find_libtorch() {
  local choice=${MDM_LIBTORCH:-} dir wheel
  TORCH_PYTHON="" TORCH_PYTHONPATH=""
  case "$choice" in
    debian) ;;
    python)
      dir=$(python_torch_dir python3) || die "MDM_LIBTORCH=python: python3 has no PyTorch with include/ and lib/" || return 1
      TORCH_PYTHON=$(command -v python3)
      describe_libtorch "$dir/include" "$dir/lib" "PyTorch of $TORCH_PYTHON" || return 1
      export TORCH_PYTHON TORCH_PYTHONPATH
      return
      ;;
    wheel)
      wheel=${MDM_TORCH_WHEEL:-$(image_wheel)} || die "MDM_LIBTORCH=wheel: no MDM_TORCH_WHEEL and no wheel in /opt/wheels" || return 1
      ;;
    "")
      if dir=$(python_torch_dir python3); then
        TORCH_PYTHON=$(command -v python3)
        describe_libtorch "$dir/include" "$dir/lib" "PyTorch of $TORCH_PYTHON" || return 1
        export TORCH_PYTHON TORCH_PYTHONPATH
        return
      fi
      wheel=${MDM_TORCH_WHEEL:-$(image_wheel || true)}
      ;;
    *)
      [ -d "$choice/include" ] && [ -d "$choice/lib" ] ||
        die "MDM_LIBTORCH=$choice: expected a folder with include/ and lib/ (or python, wheel, debian)" || return 1
      dir=$(cd "$choice" && pwd)
      # A wheel's torch/ folder: its parent on PYTHONPATH imports the same PyTorch.
      if [ -f "$dir/__init__.py" ]; then
        TORCH_PYTHON=${MDM_TORCH_PYTHON:-$(command -v python3)} TORCH_PYTHONPATH=$(dirname "$dir")
      elif [ -n "${MDM_TORCH_PYTHON:-}" ]; then
        TORCH_PYTHON=$MDM_TORCH_PYTHON
      fi
      describe_libtorch "$dir/include" "$dir/lib" "MDM_LIBTORCH=$dir" || return 1
      export TORCH_PYTHON TORCH_PYTHONPATH
      return
      ;;
  esac
  if [ -n "${wheel:-}" ]; then
    dir=$(unpack_wheel "$wheel") || return 1
    local tag
    tag=$(basename "$wheel" | sed -n 's/.*-\(cp[0-9]*\)-cp[0-9]*-.*/\1/p')
    if TORCH_PYTHON=$(wheel_python "$tag" "$dir"); then TORCH_PYTHONPATH=$dir; else TORCH_PYTHON=""; fi
    describe_libtorch "$dir/torch/include" "$dir/torch/lib" "wheel $(basename "$wheel")" || return 1
    export TORCH_PYTHON TORCH_PYTHONPATH
    return
  fi
  apt_install libtorch-dev g++
  [ -x /usr/bin/python3 ] && TORCH_PYTHON=/usr/bin/python3
  describe_libtorch /usr/include /usr/lib/x86_64-linux-gnu "Debian's libtorch-dev" || return 1
  export TORCH_PYTHON TORCH_PYTHONPATH
}

# The reference PyTorch must be the libtorch the shim is built against: same version, same ABI.
check_torch_python() {
  [ -n "$TORCH_PYTHON" ] || die "no Python imports the PyTorch of $TORCH_FROM: set MDM_TORCH_PYTHON (and PYTHONPATH) for reference values" || return 1
  local got
  got=$(PYTHONPATH="$TORCH_PYTHONPATH${PYTHONPATH:+:$PYTHONPATH}" "$TORCH_PYTHON" -c \
    'import re, torch; print(re.match(r"\d+\.\d+\.\d+", torch.__version__).group(0), int(torch._C._GLIBCXX_USE_CXX11_ABI))' 2>/dev/null) ||
    die "$TORCH_PYTHON cannot import torch (PYTHONPATH=$TORCH_PYTHONPATH)" || return 1
  [ "$got" = "$TORCH_VERSION $TORCH_ABI" ] ||
    die "reference PyTorch of $TORCH_PYTHON is '$got' (version, C++11 ABI) but $TORCH_FROM is '$TORCH_VERSION $TORCH_ABI'" || return 1
}

setup_main() {
  local test=0
  [ "${1:-}" = "--test" ] && test=1
  if [ $test = 1 ]; then
    # Oracles: PIL, SciPy, scikit-image, scikit-learn; and Debian's PyTorch for the 1.13 run.
    apt_install python3-torch python3-scipy python3-skimage python3-sklearn python3-pil
  fi
  command -v g++ >/dev/null || apt_install g++
  # Gloo's headers, which no libtorch ships, for the process groups (native/dist.cpp).
  apt_install libgloo-dev || say "no libgloo-dev: mdm's process groups will fail, naming it"
  find_libtorch
  [ $test = 1 ] && check_torch_python

  local deno="$MDM_ROOT/.tools/node_modules/deno/deno"
  if ! "$deno" --version 2>/dev/null | grep -q "^deno $DENO_VERSION "; then
    say "installing deno $DENO_VERSION from npm into .tools/"
    mkdir -p "$MDM_ROOT/.tools"
    npm install --prefix "$MDM_ROOT/.tools" --no-audit --no-fund --no-save --loglevel=error "deno@$DENO_VERSION" >&2
  fi

  local lib
  lib=$(bash "$MDM_ROOT/native/build.sh")
  mkdir -p "$MDM_ROOT/build"
  {
    # %q quotes each value for the shell that sources the file (paths and descriptions may hold quotes).
    printf 'export MDM_NATIVE_LIB=%q MDM_TORCH_VERSION=%q MDM_TORCH_FROM=%q\n' "$lib" "$TORCH_VERSION" "$TORCH_FROM"
    printf 'export MDM_TORCH_PYTHON=%q MDM_TORCH_PYTHONPATH=%q\n' "$TORCH_PYTHON" "$TORCH_PYTHONPATH"
    printf 'export MDM_TORCH_INCLUDE=%q MDM_TORCH_LIBDIR=%q\n' "$TORCH_INCLUDE" "$TORCH_LIBDIR"
    printf 'export MDM_TORCH_ABI=%q MDM_TORCH_CXX_STD=%q\n' "$TORCH_ABI" "$TORCH_CXX_STD"
  } >"$MDM_ROOT/build/setup.env"
  echo "$deno"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  setup_main "$@"
fi
