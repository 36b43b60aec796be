#!/usr/bin/env bash
# Runs the pricing unit tests natively, then builds shipping.wasm, a wasm32-wasip1 command
# module, with Zig from the PyPI `ziglang` wheel.
set -euo pipefail
cd "$(dirname "$0")"
env_sh=${SLUICE_TOOLCHAINS:-/var/cache/sluice/toolchains}/env.sh
if [ -f "$env_sh" ]; then . "$env_sh"; fi
command -v zig >/dev/null || { echo "zig: zig not found; run scripts/toolchains.sh" >&2; exit 1; }

zig test shipping.zig 2>&1 | tail -1
zig build-exe -target wasm32-wasi -O ReleaseSmall -fstrip shipping.zig -femit-bin=shipping.wasm
rm -f shipping.wasm.o
