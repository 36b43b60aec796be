#!/usr/bin/env bash
# An OCI registry for Wasm modules (`oci` Function sources), plain HTTP on the node address
# 10.244.0.1:5000, so the host and the pods reach it alike (the operator needs
# `--oci-plain-http 10.244.0.1:5000`). Debian's docker-registry (distribution 2.8), run directly:
# no systemd, no auth, deletes allowed.
#   registry.sh start DIR   storage, config.yml, registry.pid and registry.log in DIR
#   registry.sh stop DIR    idempotent
# The node address belongs to the bridge start-node.sh creates: start the node first.
set -euo pipefail
ADDR=${SLUICE_REGISTRY_ADDR:-10.244.0.1:5000}
cmd=${1:-}; [ -n "${2:-}" ] || { echo "usage: registry.sh start|stop DIR" >&2; exit 2; }
log() { printf 'registry.sh: %s\n' "$*" >&2; }

# The pid file's process, only while it is still the registry (pids are reused).
running() {
  local p; p=$(cat "$1/registry.pid" 2>/dev/null) || return 1
  [ -n "$p" ] && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q '^/usr/bin/docker-registry serve' &&
    echo "$p"
}

case "$cmd" in
  start)
    D=$(mkdir -p "$2" && cd "$2" && pwd)
    if p=$(running "$D"); then log "already running (pid $p)"; exit 0; fi
    command -v docker-registry >/dev/null ||
      { "$(dirname "$0")/../apt-get.sh" update -qq && "$(dirname "$0")/../apt-get.sh" install -y -qq docker-registry >/dev/null; }
    ip -4 addr show | grep -q "inet ${ADDR%:*}/" || { log "${ADDR%:*} is no address of this machine: start the node first"; exit 1; }
    mkdir -p "$D/data"
    cat >"$D/config.yml" <<C
version: 0.1
log:
  level: info
  fields: {service: registry}
storage:
  filesystem: {rootdirectory: $D/data}
  delete: {enabled: true}
  cache: {blobdescriptor: inmemory}
http:
  addr: $ADDR
  headers:
    X-Content-Type-Options: [nosniff]
C
    # setsid: its own session, so the caller's Ctrl-C or exit does not take it down.
    setsid /usr/bin/docker-registry serve "$D/config.yml" >>"$D/registry.log" 2>&1 </dev/null &
    echo $! >"$D/registry.pid"
    for _ in $(seq 50); do curl -sf "http://$ADDR/v2/" >/dev/null && break; sleep 0.1; done
    curl -sf "http://$ADDR/v2/" >/dev/null || { tail -5 "$D/registry.log" >&2; exit 1; }
    echo "http://$ADDR"
    ;;
  stop)
    D=$2
    [ -d "$D" ] || exit 0
    if p=$(running "$D"); then
      kill "$p"
      for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$p" 2>/dev/null || true
    fi
    rm -f "$D/registry.pid"
    ;;
  *)
    echo "usage: registry.sh start|stop DIR" >&2; exit 2
    ;;
esac
