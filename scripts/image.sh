#!/usr/bin/env bash
# The Sluice container image without a container engine: the `sluice` binary already built on
# this machine, packed with the glibc it links against into an OCI archive that containerd
# imports (`ctr images import`). Same layout as the Dockerfile's distroless/cc:nonroot image.
#   image.sh [SLUICE_BINARY]   default: cargo's target dir ($CARGO_TARGET_DIR, target/)/$SLUICE_PROFILE/sluice
# Env: SLUICE_PROFILE (debug | release, default debug), SLUICE_IMAGE (the reference, default
# ghcr.io/sluice-dev/sluice:<workspace version>), SLUICE_IMAGE_OUT (default target/image/sluice.tar).
# Prints the archive's path.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml")
# Where cargo puts binaries: CARGO_TARGET_DIR, else what cargo says (a .cargo/config.toml may move it).
target=${CARGO_TARGET_DIR:-$(cd "$repo" && cargo metadata --no-deps --format-version 1 2>/dev/null |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null || echo "$repo/target")}
bin=${1:-$target/${SLUICE_PROFILE:-debug}/sluice}
ref=${SLUICE_IMAGE:-ghcr.io/sluice-dev/sluice:$version}
out=${SLUICE_IMAGE_OUT:-$repo/target/image/sluice.tar}

log() { printf 'image.sh: %s\n' "$*" >&2; }
[ -x "$bin" ] || { log "$bin: no such binary (cargo build -p sluice-cli --bin sluice)"; exit 1; }

root=$(mktemp -d -t sluice-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"  # mktemp made it 0700: uid 65532 could not walk in
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
chmod 1777 "$root/tmp"
# Debug info is most of a debug build (271 MB → 94 MB, 25 MB gzipped); symbols stay for backtraces.
objcopy --strip-debug "$bin" "$root/usr/local/bin/sluice"

# Every shared object the loader maps, at the path it maps it from, and the loader itself
# (the ELF interpreter, /lib64/ld-linux-x86-64.so.2). `cp -L`: the file, not the symlink.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
ldd "$bin" | grep -q 'not found' && { log "$bin: $(ldd "$bin" | grep 'not found')"; exit 1; }

cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
cat >"$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin
P
cat >"$root/etc/group" <<'G'
root:x:0:
nonroot:x:65532:
G
# glibc's default without this file puts DNS before /etc/hosts (which the kubelet writes).
echo 'hosts: files dns' >"$root/etc/nsswitch.conf"

# The image must run on its own: no library missing, as the user the pods run as.
chroot --userspec=65532:65532 "$root" /usr/local/bin/sluice --version >/dev/null ||
  { log "the packed binary does not run in its rootfs"; exit 1; }

mkdir -p "$(dirname "$out")"
python3 "$repo/scripts/cluster/oci-image.py" "$root" "$ref" "$out" \
  --entrypoint /usr/local/bin/sluice --user 65532:65532 >/dev/null
log "$ref: $(du -h "$out" | cut -f1) ($(du -sh "$root" | cut -f1) unpacked)"
echo "$out"
