#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (FUZZ_SECONDS each, default 20): the pattern
# parser and matcher, the CloudEvents parser in its three HTTP modes, the journal decoder.
# cargo-fuzz is installed from crates.io into /var/cache/sluice/toolchains, keyed by version.
# The targets need nightly flags (sanitizers); RUSTC_BOOTSTRAP lets the stable toolchain take
# them. New coverage goes to target/fuzz/corpus (the repository's corpus/ stays the seeds); a
# failure leaves its input in target/fuzz/artifacts: keep it under the crate's
# fuzz/regressions/TARGET/, where `cargo test` replays it from then on.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
SECONDS_EACH=${FUZZ_SECONDS:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLCHAINS=${SLUICE_TOOLCHAINS:-/var/cache/sluice/toolchains}
FUZZ_ROOT=$TOOLCHAINS/cargo-fuzz-$CARGO_FUZZ_VERSION
# Sanitizer builds share nothing with the workspace's; keep them apart, and cached.
export CARGO_TARGET_DIR=${SLUICE_FUZZ_TARGET_DIR:-/var/cache/sluice/target/fuzz-$(rustc -V | cut -d' ' -f2)}
export RUSTC_BOOTSTRAP=1

log() { printf 'fuzz: %s\n' "$*"; }

if [ ! -x "$FUZZ_ROOT/bin/cargo-fuzz" ]; then
  log "cargo install cargo-fuzz $CARGO_FUZZ_VERSION into $FUZZ_ROOT"
  cargo install --quiet --locked --version "$CARGO_FUZZ_VERSION" --root "$FUZZ_ROOT" cargo-fuzz
fi
export PATH=$FUZZ_ROOT/bin:$PATH

# crate dir : targets
TARGETS=(
  "runtime/pattern:parse_match"
  "runtime/event:structured binary batch"
  "runtime/bus:journal"
)
for entry in "${TARGETS[@]}"; do
  crate=${entry%%:*}
  for t in ${entry#*:}; do
    corpus=$ROOT/target/fuzz/corpus/${crate##*/}-$t
    artifacts=$ROOT/target/fuzz/artifacts/${crate##*/}-$t/
    mkdir -p "$corpus" "$artifacts"
    log "$crate $t for ${SECONDS_EACH}s"
    out=$ROOT/target/fuzz/${crate##*/}-$t.log
    rc=0
    (cd "$ROOT/$crate" && cargo fuzz run --release "$t" "$corpus" "fuzz/corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" -artifact_prefix="$artifacts" -print_final_stats=1) \
      >"$out" 2>&1 || rc=$?
    grep -E '^stat::number_of_executed_units' "$out" | sed "s/^/fuzz: $t: /" || true
    if [ "$rc" != 0 ] || [ -n "$(ls -A "$artifacts")" ]; then
      tail -n 40 "$out"
      log "FAILED: $crate $t (exit $rc); inputs found: $(ls "$artifacts")"
      log "keep each under $crate/fuzz/regressions/$t/ once fixed: cargo test replays them"
      exit 1
    fi
  done
done
log ok
