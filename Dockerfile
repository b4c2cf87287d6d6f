# shardproxy container image: build with the Rust toolchain, run on a slim Debian.
# Used by docker-compose.yml; the config is mounted at /etc/shardproxy/shardproxy.toml.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# PGO=1 (`docker compose build --build-arg PGO=1`): a profile-guided build,
# trained on pgbench through the proxy against a Postgres started inside the
# build, then laid out by BOLT (benches/pgo_build.sh; about three times the
# build time, less CPU per query).
ARG PGO=0
# (The training cluster is the script's own: no default cluster is created.
# rustup downloads llvm-tools, so this build needs the network.)
RUN if [ "$PGO" = 1 ]; then \
        mkdir -p /etc/postgresql-common/createcluster.d \
        && echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/no-main-cluster.conf \
        && apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql postgresql-contrib python3 bolt-16 \
        && bash benches/pgo_build.sh \
        && cp target/pgo/release/shardproxy /src/shardproxy.bin; \
    else \
        cargo build --release --locked --bin shardproxy \
        && cp target/release/shardproxy /src/shardproxy.bin; \
    fi

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/shardproxy.bin /usr/local/bin/shardproxy
COPY shardmap/docker.toml /etc/shardproxy/shardproxy.toml
USER nobody
# 6432: Postgres clients and the admin console; 9187: Prometheus /metrics.
EXPOSE 6432 9187
ENTRYPOINT ["/usr/local/bin/shardproxy"]
CMD ["serve", "--config", "/etc/shardproxy/shardproxy.toml"]
