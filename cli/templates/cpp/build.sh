#!/usr/bin/env bash
# Builds {{module}}, a wasm32-wasip1 command module, with clang++ and the wasm32 libc++
# (built without exceptions, hence -fno-exceptions); json.c is compiled as C.
set -euo pipefail
cd "$(dirname "$0")"
clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror -c json.c -o json.o
clang++ --target=wasm32-wasi -std=c++17 -O2 -fno-exceptions -Wall -Wextra -Werror \
  -Wl,--strip-debug -o {{module}} handler.cpp json.o
rm -f json.o
