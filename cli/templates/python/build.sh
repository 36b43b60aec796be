#!/usr/bin/env bash
# Builds {{module}}, a Wasm component for the `handler` world in wit/, with componentize-py
# (CPython compiled to Wasm plus handler.py, pre-initialised). --stub-wasi: no WASI imports;
# the component imports only the world's `log`, so the handler never calls print() or open().
set -euo pipefail
cd "$(dirname "$0")"
componentize-py --wit-path wit --world handler componentize --stub-wasi handler \
  --output {{module}} >/dev/null
rm -rf __pycache__
