#!/usr/bin/env bash
# Stop a node started by start-node.sh DIR: the kubelet first, then every container (through
# containerd, so no shim is left behind), then the rest of DIR/pids, newest first. Keeps DIR's logs.
# Safe on a node that started only halfway, and a second time: DIR/pids is emptied once its
# processes are gone, so a later run cannot kill a process that has since been given one of their ids.
set -uo pipefail
[ -d "${1:-}" ] || { echo "usage: stop-node.sh DIR (an existing directory)" >&2; exit 2; }
D=$(cd "$1" && pwd)
touch "$D/pids"
kill "$(sed -n '6p' "$D/pids")" 2>/dev/null  # kubelet, so it restarts nothing
C=(ctr -a "$D/containerd.sock" -n k8s.io)
if [ -S "$D/containerd.sock" ]; then
  for t in $("${C[@]}" tasks ls -q 2>/dev/null); do "${C[@]}" tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  sleep 1
  for t in $("${C[@]}" tasks ls -q 2>/dev/null); do "${C[@]}" tasks delete -f "$t" >/dev/null 2>&1; done
fi
# Waits until they are gone, not a fixed time: a killed kube-apiserver takes seconds to exit and
# holds 10.244.0.1:6443 until then, which an up.sh right after would find taken.
gone() { local p; while read -r p; do kill -0 "$p" 2>/dev/null && return 1; done <"$D/pids"; return 0; }
if [ -s "$D/pids" ]; then
  tac "$D/pids" | while read -r p; do kill "$p" 2>/dev/null; done
  for _ in $(seq 50); do gone && break; sleep 0.1; done
  tac "$D/pids" | while read -r p; do kill -9 "$p" 2>/dev/null; done
  for _ in $(seq 100); do gone && break; sleep 0.1; done
  gone || echo "stop-node.sh: still running after SIGKILL: $(tr '\n' ' ' <"$D/pids")" >&2
  : > "$D/pids"
fi
grep -o " $D/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
for n in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do ip netns delete "$n" 2>/dev/null; done
# What the node left outside DIR, since its pods were killed without a CNI teardown: the KUBE-*/CNI-*
# iptables chains (kube-proxy, kubelet, portmap) and the cni0 rules, the bridge (and its routes), IP
# leases, CNI result caches, the pods' cgroups and container logs.
iptables-save | grep -vE 'KUBE-|CNI-|cni0' | iptables-restore
ip link delete cni0 2>/dev/null
rm -rf "$D/cni-ipam" /var/lib/cni/results/{node,cni-loopback}-* /var/log/pods/* /var/log/containers/*
find /sys/fs/cgroup/*/kubepods -depth -type d -exec rmdir {} + 2>/dev/null || true
