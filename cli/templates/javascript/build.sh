#!/usr/bin/env bash
# Builds {{module}}, a Wasm component for the `handler` world in wit/, with
# `jco componentize --backend quickjs`. --backend-qjs-disable-async: a plain synchronous export.
# --backend-qjs-stub-wasi: no WASI imports; the component imports only the world's `log`.
set -euo pipefail
cd "$(dirname "$0")"
jco componentize handler.js --wit wit --world-name handler \
  --backend quickjs --backend-qjs-disable-async --backend-qjs-stub-wasi \
  --out {{module}} >/dev/null
