#!/usr/bin/env bash
# Runs the unit tests natively, then builds {{module}}, a wasm32-wasip1 command module. A 1 MiB
# stack instead of Zig's default 16 MiB keeps the smallest workable limits.memory small.
set -euo pipefail
cd "$(dirname "$0")"
zig test handler.zig 2>&1 | tail -1
zig build-exe -target wasm32-wasi -O ReleaseSmall -fstrip --stack 1048576 handler.zig \
  -femit-bin={{module}}
rm -f {{module}}.o
