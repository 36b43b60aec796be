#!/usr/bin/env bash
# Builds the test target that `cargo test ARGS` would run and prints its executable's path, so
# a caller can run it without cargo: `cargo test` holds the target directory's lock while its
# tests run, which would stop a second lane of tests from even starting (make test-system).
# Usage: test-exe.sh ARGS   e.g. test-exe.sh -p sluice-tests --features cluster --test cluster
set -euo pipefail
cargo test "$@" --no-run --message-format=json-render-diagnostics | python3 -c '
import json, sys
exes = [m["executable"] for m in map(json.loads, sys.stdin)
        if m.get("reason") == "compiler-artifact" and m.get("executable")
        and m["profile"]["test"]]
if len(exes) != 1:
    sys.exit("test-exe.sh: expected one test executable, got %r" % exes)
print(exes[0])'
