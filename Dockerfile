# syntax=docker/dockerfile:1
# stevedore's container image: a release build with the controller and the AWS provider,
# on a distroless runtime (glibc and CA certificates, no shell, no package manager),
# running as the unprivileged user 65532. The Helm chart expects exactly this:
#   ENTRYPOINT /usr/local/bin/stevedore, a read-only root filesystem, /tmp writable.
#
#   docker build -t stevedore:dev .
#   docker build --build-arg FEATURES=controller -t stevedore:fake .   # no AWS SDKs

ARG RUST_VERSION=1.94

# --- build ---------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG FEATURES="controller,aws"
WORKDIR /src

# Dependencies first, with stub sources, so a source change does not refetch and rebuild
# every crate: this layer only changes with Cargo.toml / Cargo.lock.
COPY Cargo.toml Cargo.lock ./
# Every target Cargo.toml names must exist for the manifest to load (benches, example).
RUN mkdir -p src benches examples \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/scheduling.rs \
 && echo 'fn main() {}' > benches/replay.rs \
 && echo 'fn main() {}' > examples/controller_figures.rs \
 && cargo fetch --locked \
 && cargo build --release --locked --no-default-features --features "${FEATURES}" \
 && rm -rf src benches examples

COPY src ./src
COPY config ./config
COPY benches ./benches
COPY examples ./examples
# Touch so cargo rebuilds the crate itself over the stub's artefacts.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --no-default-features --features "${FEATURES}" \
 && install -D -m 0755 target/release/stevedore /out/stevedore \
 && /out/stevedore --help > /dev/null

# --- runtime -------------------------------------------------------------------------
# distroless/cc: glibc and libgcc for the Rust binary, CA roots for the AWS and
# Kubernetes API endpoints (rustls reads the system roots), nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="stevedore" \
      org.opencontainers.image.description="Kubernetes node autoscaler" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/stevedore /usr/local/bin/stevedore
# The bundled catalog and default configuration are compiled into the binary; the chart
# mounts the Settings at /etc/stevedore/config.yaml.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/stevedore"]
CMD ["--help"]
