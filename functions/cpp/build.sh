#!/usr/bin/env bash
# Builds summary.wasm, a wasm32-wasip1 command module, with clang++ and Debian's wasm32 libc++
# (built without exceptions, hence -fno-exceptions).
set -euo pipefail
cd "$(dirname "$0")"
env_sh=${SLUICE_TOOLCHAINS:-/var/cache/sluice/toolchains}/env.sh
if [ -f "$env_sh" ]; then . "$env_sh"; fi
command -v clang++ >/dev/null || { echo "cpp: clang++ not found; run scripts/toolchains.sh" >&2; exit 1; }
[ -d /usr/lib/wasm32-wasi ] || { echo "cpp: wasi-libc not found; run scripts/toolchains.sh" >&2; exit 1; }

clang++ --target=wasm32-wasi -std=c++17 -O2 -fno-exceptions -Wall -Wextra -Werror \
  -Wl,--strip-debug -o summary.wasm summary.cpp
