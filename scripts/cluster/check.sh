#!/usr/bin/env bash
# Smoke test of a cluster from up.sh DIR, in namespace sluice-check (deleted afterwards):
# the Sluice image runs as the chart runs it (uid 65532, read-only root, no capabilities,
# seccomp RuntimeDefault); `sluice ingress` reaches NATS by its Service name and an event it
# accepts lands in JetStream; a module pushed to the registry from a pod is pulled back by
# another, by digest; and the registry answers the host.
# Usage: check.sh DIR   Env: SLUICE_IMAGE (default ghcr.io/sluice-dev/sluice:<workspace version>)
set -euo pipefail
[ -n "${1:-}" ] || { echo "usage: check.sh DIR" >&2; exit 2; }
D=$(cd "$1" && pwd)
repo=$(cd "$(dirname "$0")/../.." && pwd)
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml")
IMAGE=${SLUICE_IMAGE:-ghcr.io/sluice-dev/sluice:$version}
REGISTRY=10.244.0.1:5000
K=(kubectl --kubeconfig "$D/kubeconfig")
ok() { printf 'check.sh: ok: %s\n' "$*" >&2; }
fail() { printf 'check.sh: FAILED: %s\n' "$*" >&2; exit 1; }

curl -sf "http://$REGISTRY/v2/" >/dev/null || fail "registry http://$REGISTRY/v2/ does not answer"
ok "registry answers http://$REGISTRY/v2/ from the host"

# The smallest valid module: the magic number and version 1.
wasm=$(mktemp); trap 'rm -f "$wasm"' EXIT
printf '\0asm\1\0\0\0' >"$wasm"
sha=$(sha256sum "$wasm" | cut -d' ' -f1)

"${K[@]}" delete namespace sluice-check --ignore-not-found --wait >/dev/null
"${K[@]}" create namespace sluice-check >/dev/null
"${K[@]}" -n sluice-check create configmap module --from-file=module.wasm="$wasm" >/dev/null
# As the chart and the operator run every Sluice container.
pod_sc='{runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: {type: RuntimeDefault}}'
container_sc='{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}'
"${K[@]}" apply -f - >/dev/null <<Y
apiVersion: v1
kind: Pod
metadata: {name: ingress, namespace: sluice-check, labels: {app: ingress}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 5
  securityContext: $pod_sc
  containers:
    - name: sluice
      image: $IMAGE
      imagePullPolicy: Never
      args: [ingress, --nats, "nats://nats.nats.svc.cluster.local:4222", --listen, "0.0.0.0:8080"]
      ports: [{name: http, containerPort: 8080}]
      readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1}
      securityContext: $container_sc
---
apiVersion: v1
kind: Service
metadata: {name: ingress, namespace: sluice-check}
spec:
  selector: {app: ingress}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: module, namespace: sluice-check}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext: $pod_sc
  initContainers:
    - name: push
      image: $IMAGE
      imagePullPolicy: Never
      args: [module, push, --oci, "$REGISTRY/sluice-check/empty:1", --oci-plain-http, "$REGISTRY", /module/module.wasm]
      securityContext: $container_sc
      volumeMounts: [{name: module, mountPath: /module}]
  containers:
    - name: fetch
      image: $IMAGE
      imagePullPolicy: Never
      args: [module, fetch, --oci, "$REGISTRY/sluice-check/empty:1", --oci-plain-http, "$REGISTRY",
             --sha256, "$sha", --out, /out/module.wasm, --timeout-secs, "20"]
      securityContext: $container_sc
      volumeMounts: [{name: out, mountPath: /out}]
  volumes:
    - {name: module, configMap: {name: module}}
    - {name: out, emptyDir: {}}
Y

"${K[@]}" -n sluice-check wait pod/ingress --for=condition=Ready --timeout=60s >/dev/null ||
  fail "ingress not Ready: $("${K[@]}" -n sluice-check logs ingress --tail=5 2>&1)"
pid=$(pgrep -f 'sluice ingress --nats nats://nats.nats.svc.cluster.local' | head -1)
status=$(grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp):' "/proc/$pid/status" | tr -s '\t ' ' ' | tr '\n' ' ')
case $status in
  "Uid: 65532 65532 65532 65532 CapEff: 0000000000000000 NoNewPrivs: 1 Seccomp: 2 ") ;;
  *) fail "ingress process: $status" ;;
esac
ok "ingress Ready; its process: $status"

svc=$("${K[@]}" -n sluice-check get service ingress -o jsonpath='{.spec.clusterIP}')
id=check-$(date +%s%N)
# Retried: kube-proxy programs the new Service's rules up to a second or so after it exists.
publish() {
  curl -sf "http://$svc/buses/default/events" -H 'content-type: application/json' -H 'ce-specversion: 1.0' \
    -H "ce-id: $id" -H 'ce-source: https://check.sluice.dev' -H 'ce-type: dev.sluice.check' -d '{}' >/dev/null
}
published=
for _ in $(seq 50); do publish && { published=1; break; }; sleep 0.2; done
[ -n "$published" ] || fail "POST http://$svc/buses/default/events"
nats=$("${K[@]}" -n nats get pod nats-0 -o jsonpath='{.status.podIP}')
n=$(curl -sf "http://$nats:8222/jsz?streams=true" |
  jq '[.account_details[]?.stream_detail[]? | select(.name == "sluice_bus_default") | .state.messages] | add // 0')
[ "$n" -ge 1 ] || fail "stream sluice_bus_default holds no message"
ok "event $id accepted through Service $svc onto nats://nats.nats.svc.cluster.local:4222: stream sluice_bus_default holds $n"

for _ in $(seq 60); do
  phase=$("${K[@]}" -n sluice-check get pod module -o jsonpath='{.status.phase}')
  case $phase in Succeeded | Failed) break ;; esac
  sleep 1
done
[ "$phase" = Succeeded ] || fail "module pod $phase: $("${K[@]}" -n sluice-check logs module --all-containers 2>&1 | tail -5)"
ok "$("${K[@]}" -n sluice-check logs module -c fetch)"

"${K[@]}" delete namespace sluice-check --wait=false >/dev/null
ok "all"
