#!/usr/bin/env bash
# Profile-guided release build of shardproxy:
#
#   sudo bash benches/pgo_build.sh      # -> target/pgo/release/shardproxy
#
# 1. builds an instrumented binary (target/pgo-gen),
# 2. trains it: a local Postgres cluster with two databases as two shards,
#    `pgbench -i` through the proxy (DDL fan-out, split COPY, 2PC), then
#    `pgbench -S` in simple, extended and prepared mode, a write workload and
#    a few fanned-out reads,
# 3. merges the profile (llvm-profdata from rustup's llvm-tools component) and
#    builds the optimized binary into target/pgo/release/shardproxy.
#
# Why: the proxy's own CPU per pgbench transaction is mostly branchy glue
# (tokio's reactor and task polls, the session's state machines). With the
# profile, LLVM lays the hot path out straight and inlines along it: about
# 0.8 µs less user CPU per transaction here (docs/benchmarks.md). The plain
# `cargo build --release` binary behaves the same, only slower.
#
# Runs as root on a Debian-like machine with Postgres (initdb, pg_ctl,
# pgbench); the cluster runs as the `postgres` user in a temporary directory
# and is stopped with `pg_ctl -D <dir> stop` at the end. Takes two release
# builds (about 10 minutes on 2 cores) and half a minute of training.
#
# Environment: TRAIN_SECONDS=5 (per pgbench run), PGBIN (Postgres binaries).
set -euo pipefail
cd "$(dirname "$0")/.."

TRAIN_SECONDS=${TRAIN_SECONDS:-5}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)}
[ "$(id -u)" = 0 ] || { echo "run as root (the training cluster runs as the postgres user)" >&2; exit 1; }
[ -x "$PGBIN/initdb" ] || { echo "no Postgres binaries (apt-get install postgresql postgresql-contrib)" >&2; exit 1; }
command -v pgbench >/dev/null || { echo "pgbench missing (apt-get install postgresql-contrib)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 missing" >&2; exit 1; }

# llvm-profdata must match rustc's LLVM: the one rustup ships with it.
command -v rustup >/dev/null || { echo "rustup missing: llvm-profdata comes from its llvm-tools component" >&2; exit 1; }
HOST=$(rustc -vV | awk '/^host:/ {print $2}')
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
if [ ! -x "$PROFDATA" ]; then
    rustup component add llvm-tools >&2
fi
[ -x "$PROFDATA" ] || { echo "llvm-profdata not found at $PROFDATA (rustup component add llvm-tools)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/shardproxy-pgo.XXXXXX)
CLUSTER="$WORK/pg"
PROXY_PID=
cleanup() {
    set +e
    if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null; fi
    [ -d "$CLUSTER" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$CLUSTER" -m immediate stop >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chown postgres "$WORK"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# `--target` keeps the flags off build scripts and proc macros (they run on
# the build machine, not in the proxy); the fixed default profile directory
# keeps the instrumented build's flags, and so its cache, the same every run.
echo "== 1/3 instrumented build (target/pgo-gen)"
CARGO_TARGET_DIR=target/pgo-gen RUSTFLAGS="-Cprofile-generate=$PWD/target/pgo-gen/default-profiles" \
    cargo build --release --locked --bin shardproxy --target "$HOST"

echo "== 2/3 training"
PG_PORT=$(free_port)
runuser -u postgres -- "$PGBIN/initdb" -D "$CLUSTER" -A trust -U postgres --no-sync -E UTF8 >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$CLUSTER" -l "$WORK/pg.log" -w -o \
    "-p $PG_PORT -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=200 \
     -c max_prepared_transactions=100 -c fsync=off -c synchronous_commit=off" start >/dev/null
for db in train0 train1; do
    psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE $db" >/dev/null
done
PROXY_PORT=$(free_port)
cat >"$WORK/proxy.toml" <<EOF
[proxy]
listen = "127.0.0.1:$PROXY_PORT"
auth = "trust"
two_phase_commit = true

[[users]]
name = "postgres"
password = "unused-with-trust"

[pool]
size = 8

[[shards]]
name = "s0"
url = "postgres://postgres@127.0.0.1:$PG_PORT/train0"

[[shards]]
name = "s1"
url = "postgres://postgres@127.0.0.1:$PG_PORT/train1"
EOF
for t in accounts:aid branches:bid tellers:tid history:aid; do
    printf '\n[[tables]]\nname = "pgbench_%s"\nshard_key = "%s"\nkey_type = "integer"\n' "${t%%:*}" "${t##*:}" >>"$WORK/proxy.toml"
done
mkdir -p "$WORK/profiles"
LLVM_PROFILE_FILE="$WORK/profiles/shardproxy-%p.profraw" RUST_LOG=warn \
    "target/pgo-gen/$HOST/release/shardproxy" serve --config "$WORK/proxy.toml" >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && break
    sleep 0.1
done
bench() {
    pgbench -h 127.0.0.1 -p "$PROXY_PORT" -U postgres -n -c 8 -j 2 -T "$TRAIN_SECONDS" "$@" train0 \
        >"$WORK/bench.log" 2>&1 || {
        echo "pgbench $* through the proxy failed:" >&2
        cat "$WORK/bench.log" "$WORK/proxy.log" >&2
        exit 1
    }
    awk -v what="$*" '/^tps = / {printf "   pgbench %s: %s tps\n", what, $3}' "$WORK/bench.log"
}
pgbench -i -s 2 -q -h 127.0.0.1 -p "$PROXY_PORT" -U postgres train0 >"$WORK/init.log" 2>&1 || {
    echo "pgbench -i through the proxy failed:" >&2
    cat "$WORK/init.log" "$WORK/proxy.log" >&2
    exit 1
}
# The hot path the benchmark measures gets most of the weight.
for mode in simple extended prepared; do
    bench -S -M "$mode"
done
bench -N -M prepared
psql -q -h 127.0.0.1 -p "$PROXY_PORT" -U postgres -d train0 \
    -c "SELECT count(*), sum(abalance) FROM pgbench_accounts" \
    -c "SELECT * FROM pgbench_branches" >/dev/null
kill "$PROXY_PID"
wait "$PROXY_PID" || true
PROXY_PID=

echo "== 3/3 optimized build (target/pgo/release/shardproxy)"
# The profile is written when the proxy exits normally (SIGTERM drains, then main returns).
compgen -G "$WORK/profiles/*.profraw" >/dev/null || {
    echo "the instrumented proxy wrote no profile; its log:" >&2
    cat "$WORK/proxy.log" >&2
    exit 1
}
"$PROFDATA" merge -o "$WORK/shardproxy.profdata" "$WORK"/profiles/*.profraw
CARGO_TARGET_DIR=target/pgo RUSTFLAGS="-Cprofile-use=$WORK/shardproxy.profdata" \
    cargo build --release --locked --bin shardproxy --target "$HOST"
install -D "target/pgo/$HOST/release/shardproxy" target/pgo/release/shardproxy
echo "built target/pgo/release/shardproxy"
