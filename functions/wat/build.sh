#!/usr/bin/env bash
# Assembles measure.wat (hand-written) into measure.wasm with wabt's wat2wasm from Debian,
# then checks it with wasm-validate.
set -euo pipefail
cd "$(dirname "$0")"
command -v wat2wasm >/dev/null || { echo "wat: wat2wasm not found (Debian wabt); run scripts/toolchains.sh" >&2; exit 1; }

wat2wasm measure.wat -o measure.wasm
wasm-validate measure.wasm
