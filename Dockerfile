# The image the chart deploys: one static binary (x86_64 or aarch64 musl, mimalloc linked in),
# its CycloneDX SBOM, nothing else — no shell, no libc, no package manager, no passwd file.
#
# Build it with `scripts/image`, not `docker build .`: this file is FROM scratch and COPYs a
# binary that the script has already compiled (`cargo build --release --locked --target
# <arch>-unknown-linux-musl`, stripped) and staged with its SBOM under target/image/context/.
# There is no build stage on a Rust toolchain image because the machines this project is built
# and tested on reach no container registry: a `FROM rust:…` or distroless base cannot be
# pulled there, while a scratch image builds offline. By hand, after the script has staged the
# files:
#   buildah bud --platform linux/amd64 -f Dockerfile -t localhost/sts-guard:0.1.0 target/image/context
#
# Runs as uid/gid 65532 (the chart's runAsUser/runAsGroup), on a read-only root filesystem:
# the binary writes nothing but its log lines to stderr.
FROM scratch

# Set by buildah from --platform (amd64, arm64): picks the binary staged for that platform.
ARG TARGETARCH
# Filled in by scripts/image from Cargo.toml and git (see its header).
ARG VERSION
ARG REVISION
ARG SOURCE
ARG LICENSES
ARG CREATED

LABEL org.opencontainers.image.title="sts-guard" \
      org.opencontainers.image.description="Admission webhook that keeps StatefulSets honest" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="${LICENSES}" \
      org.opencontainers.image.created="${CREATED}"

COPY linux-${TARGETARCH}/sts-guard /usr/local/bin/sts-guard
# The crate graph the binary was built from (CycloneDX JSON), for scanners that read SBOMs out
# of images; scripts/image also leaves it beside the image under target/image/.
COPY linux-${TARGETARCH}/sts-guard.cdx.json /usr/share/doc/sts-guard/sbom.cdx.json

USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/sts-guard"]
CMD ["serve", "--help"]
