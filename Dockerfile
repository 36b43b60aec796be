# syntax=docker/dockerfile:1
# One image with both binaries: /usr/local/bin/sluice (ingress, router, worker, CLI) and
# /usr/local/bin/sluice-operator. The Helm chart (charts/sluice) runs every component from it.
#
#   docker build -t ghcr.io/sluice-dev/sluice:0.1.0 .
#   (or: podman build / buildah bud -t … .; BuildKit caches the cargo registry and target dir)
#
# These machines have no container engine, so the image is not built by `make test`.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The wasmtime-based worker links against glibc, hence distroless/cc rather than static.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice-runtime --bin sluice -p sluice-operator --bin sluice-operator \
 && install -D -m 0755 target/release/sluice target/release/sluice-operator -t /out/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sluice /out/sluice-operator /usr/local/bin/
# 65532:65532 is distroless's nonroot; the chart also sets runAsUser and a read-only root.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sluice"]
