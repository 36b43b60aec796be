#!/usr/bin/env bash
# Runs the unit tests natively, then builds {{module}}, a wasip1 command module (Go 1.21 or
# later). GOTOOLCHAIN=local: use the installed Go, never download another.
set -euo pipefail
cd "$(dirname "$0")"
export GOTOOLCHAIN=local
go test ./...
GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags=-s -o {{module}} .
