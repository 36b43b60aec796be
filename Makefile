# The two commands a user needs: `make run` and `make test`. See README.md.
CARGO ?= cargo

.PHONY: run test setup functions fmt lint check crds bench-e2e chart

## run: the main job: build the example handlers, then `sluice dev functions/examples` on
## 127.0.0.1:8080 (it prints a ready-to-paste `sluice publish` and curl line).
run: setup
	$(MAKE) -C functions rust
	$(CARGO) run --quiet --bin sluice -- dev functions/examples

## test: install what the tests need, then formatting, lints and the whole test suite.
test: setup functions
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build --workspace --bins
	SLUICE_PREBUILT_BINS=1 $(CARGO) test --workspace

setup:
	./scripts/setup.sh

## functions: install the pinned handler toolchains, then build every example in functions/.
functions:
	./scripts/toolchains.sh
	$(MAKE) -C functions all

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

## control-plane: build once (cached outside the clone) the etcd + kube-apiserver +
## kube-controller-manager v1.20.2 the operator's integration tests start, and install kubectl.
.PHONY: control-plane
control-plane:
	./scripts/control-plane.sh build
test: control-plane
