# syntax=docker/dockerfile:1
# The one image the Helm chart (charts/sluice) runs for every component: /usr/local/bin/sluice
# (ingress, router, worker, `sluice operator`, the CLI), as uid 65532.
#
#   docker build -t ghcr.io/sluice-dev/sluice:0.1.0 .
#   (or: podman build / buildah bud -t … .; BuildKit caches the cargo registry and target dir)
#
# These machines have no container engine: `make image` (scripts/image.sh) packs the binary
# built here into the same layout (sluice, its glibc, CA certificates, nonroot 65532, /tmp) as
# an OCI archive that containerd imports.

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The wasmtime-based worker links against glibc, hence distroless/cc rather than static.
# --strip-debug: the release profile keeps line tables for backtraces, the image needs symbols only.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice-cli --bin sluice \
 && mkdir -p /out \
 && objcopy --strip-debug target/release/sluice /out/sluice

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sluice /usr/local/bin/sluice
# 65532:65532 is distroless's nonroot; the chart also sets runAsUser and a read-only root.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sluice"]
