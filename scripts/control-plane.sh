#!/usr/bin/env bash
# The Kubernetes control plane of the operator's integration tests: etcd, kube-apiserver and
# kube-controller-manager v1.20.2 on loopback (no kubelet: pods are created, never run).
#   control-plane.sh build       build (once, cached in /var/cache/sluice/k8s-v1.20.2) + kubectl
#   control-plane.sh start DIR   start one; prints DIR/kubeconfig. Stop: kill $(cat DIR/pids)
# Wraps scripts/cluster/ (build-control-plane.sh, start-control-plane.sh).
set -euo pipefail
cluster=$(cd "$(dirname "$0")/cluster" && pwd)
bin=${SLUICE_K8S_BIN:-/var/cache/sluice/k8s-v1.20.2}

case "${1:-}" in
  build)
    # Every node binary in one `make` (the cluster test needs them all; a second make costs minutes).
    "$cluster/build-node.sh" "$bin" >/dev/null
    if ! command -v kubectl >/dev/null; then
      "$(dirname "$0")/apt-get.sh" update -qq && "$(dirname "$0")/apt-get.sh" install -y -qq kubernetes-client >/dev/null
    fi
    command -v etcd >/dev/null || "$(dirname "$0")/apt-get.sh" install -y -qq etcd-server >/dev/null
    echo "$bin"
    ;;
  start)
    [ -n "${2:-}" ] || { echo "usage: control-plane.sh start DIR" >&2; exit 2; }
    out=$("$cluster/start-control-plane.sh" "$2" "$bin")
    # kube-controller-manager 1.20 also binds the fixed insecure port 10252, so a second control
    # plane on the machine would lose its controller manager (and garbage collection): run it
    # again without that port.
    kcm=$(tail -1 "$2/pids")
    kill "$kcm" 2>/dev/null || true
    while kill -0 "$kcm" 2>/dev/null; do sleep 0.1; done
    sed -i '$d' "$2/pids"
    "$bin/kube-controller-manager" --kubeconfig="$2/kubeconfig" --bind-address=127.0.0.1 --secure-port=0 \
      --port=0 --leader-elect=false --service-account-private-key-file="$2/sa.key" >"$2/kcm.log" 2>&1 &
    echo $! >> "$2/pids"
    echo "$out"
    ;;
  *)
    echo "usage: control-plane.sh build | start DIR" >&2; exit 2
    ;;
esac
