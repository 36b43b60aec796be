#!/usr/bin/env bash
# Builds the Rust example handlers from source with the workspace's Rust toolchain:
#   invoice/invoice.wasm  component (wasm32-wasip2, wit-bindgen from runtime/wit)
#   restock/restock.wasm  WASI preview 1 command (wasm32-wasip1)
# into target/functions-rust of the repository, then copies each module next to its manifests.
set -euo pipefail
cd "$(dirname "$0")"
target_dir=../../target/functions-rust
for t in wasm32-wasip1 wasm32-wasip2; do
  rustup target list --installed | grep -qx "$t" || { echo "rust: target $t missing; run scripts/setup.sh" >&2; exit 1; }
done
cargo build --quiet --locked --release --target wasm32-wasip2 -p invoice --target-dir "$target_dir"
cargo build --quiet --locked --release --target wasm32-wasip1 -p restock --target-dir "$target_dir"
cp "$target_dir/wasm32-wasip2/release/invoice.wasm" invoice/invoice.wasm
cp "$target_dir/wasm32-wasip1/release/restock.wasm" restock/restock.wasm
