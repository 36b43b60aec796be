#!/usr/bin/env bash
# Assembles handler.wat into {{module}} with wabt's wat2wasm, then checks it with wasm-validate.
set -euo pipefail
cd "$(dirname "$0")"
wat2wasm handler.wat -o {{module}}
wasm-validate {{module}}
