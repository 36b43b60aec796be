# The two commands a user needs: `make run` and `make test`. See README.md.
CARGO ?= cargo
SHELL := /bin/bash

.PHONY: run test setup functions fmt lint check crds bench-e2e chart fuzz

## run: the main job: build the example handlers, then `sluice dev functions/examples` on
## 127.0.0.1:8080 (it prints a ready-to-paste `sluice publish` and curl line).
run: setup
	$(MAKE) -C functions rust
	$(CARGO) run --quiet --bin sluice -- dev functions/examples

## test: install what the tests need, then formatting, lints, the whole test suite and the
## cluster end-to-end test (e2e-cluster).
## The slow builds (handler toolchains and examples, Kubernetes from source, the workspace) are
## independent and run side by side: on a fresh machine each leaves cores idle while it waits
## on downloads, links or one large crate. apt-get runs one at a time (scripts/apt-get.sh).
## The suite climbs three rungs (docs/architecture.md#tests), each runnable alone once built:
## test-unit (pure, in-crate), test-component (one crate against a real local part: the
## journal on disk, one nats-server, one API server), test-system (the sluice processes, then
## the one-node cluster).
test: setup
	$(MAKE) --no-print-directory -j3 -O functions control-plane test-build
	$(MAKE) --no-print-directory test-unit test-component test-system

.PHONY: test-unit test-component test-system
test-unit:
	$(CARGO) test --workspace --lib --bins
	$(CARGO) test --workspace --doc
test-component:
	$(CARGO) test --workspace --exclude sluice-tests --test '*'
	$(MAKE) --no-print-directory fuzz
## The system rung runs in two lanes side by side: the sluice processes' suites, and the
## cluster walkthrough, which spends most of its minutes waiting on pods and cooldowns. Every
## test executable is built first; the cluster lane runs its executable without cargo, which
## holds the target directory's lock while tests run. Nothing is shared between the lanes:
## the suites use loopback ports they pick and private nats-servers, the cluster its node.
test-system:
	SLUICE_PREBUILT_BINS=1 $(CARGO) test -p sluice-tests --no-run
	$(MAKE) --no-print-directory cluster-test-exe
	$(MAKE) --no-print-directory -j2 system-suites system-cluster
.PHONY: system-suites system-cluster cluster-test-exe
cluster-test-exe:
	mkdir -p target
	./scripts/test-exe.sh -p sluice-tests --features cluster --test cluster > target/cluster-test.exe
system-suites:
	SLUICE_PREBUILT_BINS=1 $(CARGO) test -p sluice-tests
	# The NATS side of the conformance and fault suites again on Debian's nats-server 2.9.10
	# (the run above uses 2.15.1).
	SLUICE_PREBUILT_BINS=1 SLUICE_NATS_SERVER=/usr/sbin/nats-server \
	  $(CARGO) test -p sluice-tests --test conformance nats
	SLUICE_PREBUILT_BINS=1 SLUICE_NATS_SERVER=/usr/sbin/nats-server \
	  $(CARGO) test -p sluice-tests --test nats
# Each line marked, as it interleaves with the other lane's.
system-cluster:
	set -o pipefail; cd tests && SLUICE_PREBUILT_BINS=1 SLUICE_IMAGE=$(IMAGE) \
	  "$$(cat ../target/cluster-test.exe)" --nocapture 2>&1 | tee ../target/e2e-cluster.log | sed -u 's/^/cluster| /'

.PHONY: test-build
test-build:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features sluice-tests/cluster -- -D warnings
	$(CARGO) build --workspace --bins

setup:
	./scripts/setup.sh

## functions: install the pinned handler toolchains, then build every example in functions/.
functions:
	./scripts/toolchains.sh
	$(MAKE) -C functions all

## fuzz: every fuzz target (patterns, the CloudEvents parser's three HTTP modes, the journal
## decoder) for FUZZ_SECONDS each; a failure names the input to keep under fuzz/regressions/.
FUZZ_SECONDS ?= 20
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./scripts/fuzz.sh

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## bench-e2e: HTTP ingress → match → Wasm handler → ack, throughput, latency and cold path.
bench-e2e: setup
	cd tests/guests && $(CARGO) build --quiet --release --target wasm32-wasip1 --target-dir ../../target/guests
	$(CARGO) run --quiet --release --bin sluice -- bench e2e --module target/guests/wasm32-wasip1/release/tester.wasm

## crds: regenerate crds/ from the Rust types (never edit crds/ by hand), and the chart's copy.
crds:
	$(CARGO) run --quiet --bin sluice -- crds --out crds
	cp crds/*.yaml charts/sluice/crds/

## chart: only the Helm chart's tests (lint, kubernetes-validate, schema, install into a local
## API server with the operator reconciling the cluster example, uninstall).
chart: setup
	$(MAKE) -C functions rust
	$(CARGO) test -p sluice-tests --test chart

## control-plane: build once (cached outside the clone, /var/cache/sluice/k8s-v1.20.2) the
## Kubernetes v1.20.2 binaries the tests start (the operator's API-server tests and the cluster
## test's node), install containerd, runc, the CNI plugins, etcd and kubectl.
.PHONY: control-plane
control-plane:
	./scripts/control-plane.sh build

## image: the image the chart runs, without a container engine: the built `sluice` (debug;
## PROFILE=release for release) with its glibc, as an OCI archive target/image/sluice.tar
## tagged $(IMAGE). `docker build -t $(IMAGE) .` makes the same layout from the Dockerfile.
VERSION := $(shell sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
IMAGE ?= ghcr.io/sluice-dev/sluice:$(VERSION)
PROFILE ?= debug
.PHONY: image
image:
	$(CARGO) build $(if $(filter release,$(PROFILE)),--release) -p sluice-cli --bin sluice
	SLUICE_IMAGE=$(IMAGE) SLUICE_PROFILE=$(PROFILE) ./scripts/image.sh

## cluster-up / cluster-down: a one-node Kubernetes v1.20.2 cluster in $(CLUSTER_DIR) where pods
## run, with the Sluice image, NATS JetStream (nats://nats.nats.svc.cluster.local:4222) and an
## OCI registry (http://10.244.0.1:5000). kubectl --kubeconfig $(CLUSTER_DIR)/kubeconfig.
CLUSTER_DIR ?= /tmp/sluice-node
.PHONY: cluster-up cluster-down
cluster-up:
	$(CARGO) build $(if $(filter release,$(PROFILE)),--release) -p sluice-cli --bin sluice
	SLUICE_IMAGE=$(IMAGE) SLUICE_PROFILE=$(PROFILE) ./scripts/cluster/up.sh $(CLUSTER_DIR)
cluster-down:
	./scripts/cluster/down.sh $(CLUSTER_DIR)

## e2e-cluster: the README's cluster walkthrough as a test on a real one-node cluster (node,
## image, NATS, registry started and stopped by the test): helm install, Functions from a
## ConfigMap, a URL and an OCI registry, replies, dead letters, scaling 0→N→0, faults, bad input,
## helm uninstall. Prints FIGURE lines (bench-cluster). Needs root.
.PHONY: e2e-cluster e2e-cluster-run bench-cluster
e2e-cluster: setup control-plane
	./scripts/toolchains.sh
	$(MAKE) -C functions rust
	$(CARGO) build -p sluice-cli --bin sluice
	$(MAKE) --no-print-directory e2e-cluster-run
e2e-cluster-run: cluster-test-exe
	$(MAKE) --no-print-directory system-cluster

## bench-cluster: the cluster test's figures (install → Ready, cold start from zero pods,
## scale-up reaction, events/s through ingress → worker pods → replies), from a fresh run.
bench-cluster: e2e-cluster
	@grep '^FIGURE' target/e2e-cluster.log
