#!/usr/bin/env bash
# Builds {{module}}, a Wasm component (wasm32-wasip2), after the unit tests pass natively.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --quiet --lib
cargo build --quiet --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate}}.wasm" {{module}}
