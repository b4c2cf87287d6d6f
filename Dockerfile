# shardproxy container image: build with the Rust toolchain, run on a slim Debian.
# Used by docker-compose.yml; the config is mounted at /etc/shardproxy/shardproxy.toml.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin shardproxy

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/shardproxy /usr/local/bin/shardproxy
COPY shardmap/docker.toml /etc/shardproxy/shardproxy.toml
USER nobody
# 6432: Postgres clients and the admin console; 9187: Prometheus /metrics.
EXPOSE 6432 9187
ENTRYPOINT ["/usr/local/bin/shardproxy"]
CMD ["serve", "--config", "/etc/shardproxy/shardproxy.toml"]
