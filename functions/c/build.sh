#!/usr/bin/env bash
# Builds sensor.wasm, a wasm32-wasip1 command module, with clang and Debian's wasi-libc.
set -euo pipefail
cd "$(dirname "$0")"
env_sh=${SLUICE_TOOLCHAINS:-/var/cache/sluice/toolchains}/env.sh
if [ -f "$env_sh" ]; then . "$env_sh"; fi
command -v clang >/dev/null || { echo "c: clang not found; run scripts/toolchains.sh" >&2; exit 1; }
[ -d /usr/lib/wasm32-wasi ] || { echo "c: wasi-libc not found; run scripts/toolchains.sh" >&2; exit 1; }

clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -Wl,--strip-debug \
  -o sensor.wasm sensor.c json.c -lm
