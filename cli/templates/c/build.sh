#!/usr/bin/env bash
# Builds {{module}}, a wasm32-wasip1 command module, with clang and wasi-libc.
set -euo pipefail
cd "$(dirname "$0")"
clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -Wl,--strip-debug \
  -o {{module}} handler.c json.c
