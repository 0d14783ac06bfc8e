#!/usr/bin/env bash
# The main job: installs what it needs (see setup.sh), then runs it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
deno=$(bash scripts/setup.sh)
exec "$deno" run -A demo.ts "$@"
