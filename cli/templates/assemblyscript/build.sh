#!/usr/bin/env bash
# Builds {{module}}, a wasm32-wasip1 command module, with the AssemblyScript compiler and
# @assemblyscript/wasi-shim, installed into node_modules from package-lock.json on the first
# build. ASC_MODULES may name a node_modules that already holds these versions instead.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -e node_modules ]; then
  if [ -n "${ASC_MODULES:-}" ] && [ -x "$ASC_MODULES/.bin/asc" ]; then
    ln -s "$ASC_MODULES" node_modules
  else
    npm ci --no-audit --no-fund --loglevel=error
  fi
fi
node_modules/.bin/asc --config asconfig.json
