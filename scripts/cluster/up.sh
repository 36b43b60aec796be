#!/usr/bin/env bash
# A one-node Kubernetes v1.20.2 cluster ready for the Sluice chart: the node (start-node.sh),
# the Sluice image and NATS imported into its containerd, NATS JetStream running in namespace
# `nats` (nats://nats.nats.svc.cluster.local:4222), and an OCI registry at 10.244.0.1:5000.
# Usage: up.sh DIR   then: kubectl --kubeconfig DIR/kubeconfig …   Stop with down.sh DIR (also
# after a failed up.sh). Prints the time of each step.
# Env: SLUICE_IMAGE_TAR, an archive from scripts/image.sh to import instead of packing the
# built `sluice` now (image.sh's own env, SLUICE_PROFILE, SLUICE_IMAGE…, applies otherwise);
# SLUICE_K8S_BIN, the Kubernetes binaries (default /var/cache/sluice/k8s-v1.20.2).
set -euo pipefail
[ -n "${1:-}" ] || { echo "usage: up.sh DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$HERE/../.." && pwd)
D=$(mkdir -p "$1" && cd "$1" && pwd)
BIN=${SLUICE_K8S_BIN:-/var/cache/sluice/k8s-v1.20.2}
KC=(kubectl --kubeconfig "$D/kubeconfig")

start=$(date +%s.%N); t=$start
step() {  # step NAME: the time since the previous step, then since up.sh started
  local now; now=$(date +%s.%N)
  awk -v n="$1" -v a="$t" -v b="$now" -v s="$start" \
    'BEGIN { printf "up.sh: %-22s %6.1f s   (total %6.1f s)\n", n, b - a, b - s }' >&2
  t=$now
}
failed() { local s=$?; [ "$s" -eq 0 ] || echo "up.sh: failed (exit $s); logs in $D, clean up with: $HERE/down.sh $D" >&2; }
trap failed EXIT

# One node per machine: it owns cni0, 10.244.0.1:6443 and the registry port.
alive() {
  local p
  [ -f "$D/pids" ] || return 1
  while read -r p; do kill -0 "$p" 2>/dev/null && return 0; done <"$D/pids"
  return 1
}
if alive; then
  echo "up.sh: a node is already running in $D; run down.sh $D first" >&2; exit 1
fi
if ss -ltnH 'sport = :6443' | grep -q .; then
  echo "up.sh: something listens on port 6443 (another node?): stop it first" >&2; exit 1
fi

"$HERE/build-node.sh" "$BIN" >/dev/null
step "build-node (cached)"

mkdir -p "$D/img"
if [ -n "${SLUICE_IMAGE_TAR:-}" ]; then
  cp "$SLUICE_IMAGE_TAR" "$D/img/sluice.tar"
else
  SLUICE_IMAGE_OUT=$D/img/sluice.tar "$repo/scripts/image.sh" >/dev/null
fi
step "sluice image"
"$HERE/nats-image.sh" "$D/img/nats.tar" >/dev/null
step "nats image"

T0=$(date -u +%FT%TZ)
"$HERE/start-node.sh" "$D" "$BIN" >/dev/null
step "start-node"

for img in sluice nats; do
  ctr -a "$D/containerd.sock" -n k8s.io images import "$D/img/$img.tar" >/dev/null
done
step "import images"

# The volume nats.yaml's claim binds to (no provisioner on this node): a directory under DIR.
mkdir -p "$D/nats-data" && chown 65532:65532 "$D/nats-data"
"${KC[@]}" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: nats-data-0
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: sluice-node-local
  claimRef: {namespace: nats, name: data-nats-0}
  hostPath: {path: "$D/nats-data", type: Directory}
EOF
"${KC[@]}" apply -f "$HERE/nats.yaml" >/dev/null
# rollout status, not `wait pod/nats-0`: on a restarted DIR the old pod comes back Ready before
# a changed nats.yaml has replaced it.
"${KC[@]}" -n nats rollout status statefulset/nats --timeout=120s >/dev/null
# That status may still be the last run's, from etcd: wait for Ready as posted since this start,
# then ask the server itself.
nats_ready() {
  "${KC[@]}" -n nats get pod nats-0 -o jsonpath='{.status.podIP} {range .status.conditions[?(@.type=="Ready")]}{.status} {.lastTransitionTime}{end}' |
    { read -r ip st tt; [ "$st" = True ] && [[ ! "$tt" < "$T0" ]] && curl -sf "http://$ip:8222/healthz?js-enabled-only=true" >/dev/null; }
}
for _ in $(seq 600); do nats_ready && break; sleep 0.2; done
nats_ready || { echo "up.sh: nats-0 not Ready: kubectl --kubeconfig $D/kubeconfig -n nats describe pod nats-0" >&2; exit 1; }
step "nats ready"

"$HERE/registry.sh" start "$D/registry" >/dev/null
step "registry"

trap - EXIT
echo "up.sh: ready: kubectl --kubeconfig $D/kubeconfig; NATS nats://nats.nats.svc.cluster.local:4222; registry http://10.244.0.1:5000" >&2
echo "$D/kubeconfig"
