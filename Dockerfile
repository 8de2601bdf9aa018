# syntax=docker/dockerfile:1
# Build: a release binary with the machine's Rust toolchain image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin sts-guard \
 && strip target/release/sts-guard

# Run: distroless with glibc, no shell, non-root (uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/sts-guard /usr/local/bin/sts-guard
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/sts-guard"]
CMD ["serve", "--help"]
