#!/usr/bin/env bash
# Builds signup.wasm, a wasm32-wasip1 command module, with the AssemblyScript compiler and
# @assemblyscript/wasi-shim (asconfig.json extends the shim's config). Both npm packages come
# from the prefix scripts/toolchains.sh installs from package-lock.json; node_modules here is
# a symlink to it.
set -euo pipefail
cd "$(dirname "$0")"
env_sh=${SLUICE_TOOLCHAINS:-/var/cache/sluice/toolchains}/env.sh
if [ -f "$env_sh" ]; then . "$env_sh"; fi
if [ -z "${ASC_MODULES:-}" ] || [ ! -x "$ASC_MODULES/.bin/asc" ]; then
  echo "assemblyscript: asc not found; run scripts/toolchains.sh" >&2
  exit 1
fi

ln -sfn "$ASC_MODULES" node_modules
node_modules/.bin/asc --config asconfig.json
