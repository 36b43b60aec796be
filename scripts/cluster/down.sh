#!/usr/bin/env bash
# Undo up.sh DIR: stop the registry, then the node (every pod, containerd, the control plane,
# the bridge and iptables rules). Works after an up.sh that failed halfway, and run twice.
# Keeps DIR (logs, etcd, images) so up.sh DIR starts the same cluster again; rm -rf DIR after.
# Usage: down.sh DIR
set -uo pipefail
[ -n "${1:-}" ] || { echo "usage: down.sh DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
[ -d "$1" ] || { echo "down.sh: $1: nothing to stop" >&2; exit 0; }
D=$(cd "$1" && pwd)
start=$(date +%s.%N)
"$HERE/registry.sh" stop "$D/registry"
"$HERE/stop-node.sh" "$D"
awk -v s="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "down.sh: stopped in %.1f s\n", b - s }' >&2
