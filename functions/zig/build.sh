#!/usr/bin/env bash
# Runs the pricing unit tests natively, then builds shipping.wasm, a wasm32-wasip1 command
# module, with Zig from the PyPI `ziglang` wheel.
set -euo pipefail
cd "$(dirname "$0")"
env_sh=${SLUICE_TOOLCHAINS:-/var/cache/sluice/toolchains}/env.sh
if [ -f "$env_sh" ]; then . "$env_sh"; fi
command -v zig >/dev/null || { echo "zig: zig not found; run scripts/toolchains.sh" >&2; exit 1; }

zig test shipping.zig 2>&1 | tail -1
# A 1 MiB stack instead of the default 16 MiB keeps the initial memory (and so the
# smallest workable spec.limits.memory) small.
zig build-exe -target wasm32-wasi -O ReleaseSmall -fstrip --stack 1048576 shipping.zig \
  -femit-bin=shipping.wasm
rm -f shipping.wasm.o
