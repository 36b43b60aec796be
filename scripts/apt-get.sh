#!/usr/bin/env bash
# apt-get, one at a time: `make test` runs the toolchain, Kubernetes and workspace builds side
# by side, and each may install packages. dpkg's own lock has a timeout option, but the lists
# lock that `apt-get update` takes has none, so a second update fails at once; this lock
# queues every Sluice script's apt-get behind the others instead.
set -euo pipefail
exec flock /var/lock/sluice-apt-get.lock env DEBIAN_FRONTEND=noninteractive \
  apt-get -o DPkg::Lock::Timeout=900 "$@"
