#!/usr/bin/env bash
# Builds invoice.wasm, a Wasm component for the `handler` world of runtime/wit, with
# `jco componentize --backend quickjs` (componentize-js's QuickJS backend, componentize-qjs).
# --backend-qjs-disable-async: a plain synchronous export, no component-model async ABI.
# --backend-qjs-stub-wasi: no WASI imports at all; the component imports only what the
# world names (sluice:function/log), so it needs nothing from the host beyond the world.
set -euo pipefail
cd "$(dirname "$0")"
env_sh=${SLUICE_TOOLCHAINS:-/var/cache/sluice/toolchains}/env.sh
if [ -f "$env_sh" ]; then . "$env_sh"; fi
command -v jco >/dev/null || { echo "javascript: jco not found; run scripts/toolchains.sh" >&2; exit 1; }

jco componentize invoice.js --wit ../../runtime/wit --world-name handler \
  --backend quickjs --backend-qjs-disable-async --backend-qjs-stub-wasi \
  --out invoice.wasm >/dev/null
