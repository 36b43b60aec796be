# The two commands a user needs: `make run` and `make test`. See README.md.
CARGO ?= cargo

.PHONY: run test setup functions fmt lint check crds

## run: the main job. Until `sluice dev` lands, validate the bundled examples.
run:
	$(CARGO) run --quiet --bin sluice -- validate functions/examples

## test: install what the tests need, then formatting, lints and the whole test suite.
test: setup functions
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace

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

## crds: regenerate crds/ from the Rust types (never edit crds/ by hand).
crds:
	$(CARGO) run --quiet --bin sluice -- crds --out crds
