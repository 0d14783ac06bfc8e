#!/usr/bin/env bash
# Installs what mdm needs on a Debian machine with Node, idempotently and quickly when already done:
# Debian's libtorch (plus the Python reference stack with --test), Deno from npm into .tools/, and
# the native library. Prints the path of the Deno binary as its last line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
DENO_VERSION=2.9.6

pkgs=(libtorch-dev g++)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(python3-torch python3-scipy python3-skimage python3-sklearn python3-pil)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

deno="$root/.tools/node_modules/deno/deno"
if ! "$deno" --version 2>/dev/null | grep -q "^deno $DENO_VERSION "; then
  echo "setup: installing deno $DENO_VERSION from npm into .tools/" >&2
  mkdir -p "$root/.tools"
  npm install --prefix "$root/.tools" --no-audit --no-fund --no-save --loglevel=error "deno@$DENO_VERSION" >&2
fi

bash "$root/native/build.sh" >&2
echo "$deno"
