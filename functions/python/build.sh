#!/usr/bin/env bash
# Builds fraud.wasm, a Wasm component for the `handler` world of runtime/wit, with
# componentize-py (CPython compiled to Wasm plus fraud.py, pre-initialised).
# --stub-wasi: no WASI imports at all; the component imports only what the world names
# (sluice:function/log). The handler therefore never calls print(), open() or the clock.
set -euo pipefail
cd "$(dirname "$0")"
env_sh=${SLUICE_TOOLCHAINS:-/var/cache/sluice/toolchains}/env.sh
if [ -f "$env_sh" ]; then . "$env_sh"; fi
command -v componentize-py >/dev/null || { echo "python: componentize-py not found; run scripts/toolchains.sh" >&2; exit 1; }

componentize-py --wit-path ../../runtime/wit --world handler componentize --stub-wasi fraud \
  --output fraud.wasm >/dev/null
rm -rf __pycache__
