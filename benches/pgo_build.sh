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
#    builds the optimized binary,
# 4. when LLVM's post-link optimizer is installed (`apt-get install bolt-16`),
#    instruments that binary with llvm-bolt, trains it the same way and lets
#    BOLT lay out its machine code by the measured paths (hot code together,
#    cold blocks split off), into target/pgo/release/shardproxy. Without
#    llvm-bolt (or with BOLT=0) the profile-guided binary is installed as is.
#
# Why: the proxy's own CPU per pgbench transaction is mostly branchy glue
# (tokio's reactor and task polls, the session's state machines). With the
# profile, LLVM lays the hot path out straight and inlines along it: about
# 0.8 µs less user CPU per transaction here (docs/benchmarks.md). BOLT then
# packs the hot path into fewer cache lines and pages, which the compiler
# cannot do across crates and the standard library. The plain
# `cargo build --release` binary behaves the same, only slower.
#
# Runs as root on a Debian-like machine with Postgres (initdb, pg_ctl,
# pgbench); the cluster runs as the `postgres` user in a temporary directory
# and is stopped with `pg_ctl -D <dir> stop` at the end. Takes two release
# builds (about 10 minutes on 2 cores) and half a minute of training.
#
# Environment: TRAIN_SECONDS=5 (per pgbench run), PGBIN (Postgres binaries),
# BOLT=0 (skip step 4), LLVM_BOLT (path of llvm-bolt; found in PATH or
# /usr/lib/llvm-*/bin otherwise).
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

BOLT_BIN=
if [ "${BOLT:-1}" != 0 ]; then
    BOLT_BIN=${LLVM_BOLT:-$(command -v llvm-bolt || ls /usr/lib/llvm-*/bin/llvm-bolt 2>/dev/null | sort -V | tail -1 || true)}
    if [ -z "$BOLT_BIN" ] || [ ! -x "$BOLT_BIN" ]; then
        echo "note: llvm-bolt not found (apt-get install bolt-16): building profile-guided only" >&2
        BOLT_BIN=
    fi
fi
STEPS=3
[ -n "$BOLT_BIN" ] && STEPS=4

# `--target` keeps the flags off build scripts and proc macros (they run on
# the build machine, not in the proxy); the fixed default profile directory
# keeps the instrumented build's flags, and so its cache, the same every run.
echo "== 1/$STEPS instrumented build (target/pgo-gen)"
CARGO_TARGET_DIR=target/pgo-gen RUSTFLAGS="-Cprofile-generate=$PWD/target/pgo-gen/default-profiles" \
    cargo build --release --locked --bin shardproxy --target "$HOST"

echo "== 2/$STEPS training"
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
# One event loop: the single-worker figures of docs/benchmarks.md (the
# default is one per core, which on 2 cores competes with Postgres).
workers = 1
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

bench() {
    pgbench -h 127.0.0.1 -p "$PROXY_PORT" -U postgres -n -c 8 -j 2 -T "$TRAIN_SECONDS" "$@" train0 \
        >"$WORK/bench.log" 2>&1 || {
        echo "pgbench $* through the proxy failed:" >&2
        cat "$WORK/bench.log" "$WORK/proxy.log" >&2
        exit 1
    }
    grep -q '^number of failed transactions: 0 ' "$WORK/bench.log" || {
        echo "pgbench $* through the proxy had failed transactions:" >&2
        cat "$WORK/bench.log" >&2
        exit 1
    }
    awk -v what="$*" '/^tps = / {printf "   pgbench %s: %s tps\n", what, $3}' "$WORK/bench.log"
}

# Runs the proxy binary $1 through the training workload. Both kinds of
# instrumentation write their profile when the proxy exits normally (SIGTERM
# drains, then main returns).
train() {
    LLVM_PROFILE_FILE="$WORK/profiles/shardproxy-%p.profraw" RUST_LOG=warn \
        "$1" serve --config "$WORK/proxy.toml" >"$WORK/proxy.log" 2>&1 &
    PROXY_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && break
        sleep 0.1
    done
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
}
train "target/pgo-gen/$HOST/release/shardproxy"

echo "== 3/$STEPS optimized build (target/pgo/$HOST/release/shardproxy)"
compgen -G "$WORK/profiles/*.profraw" >/dev/null || {
    echo "the instrumented proxy wrote no profile; its log:" >&2
    cat "$WORK/proxy.log" >&2
    exit 1
}
"$PROFDATA" merge -o "$WORK/shardproxy.profdata" "$WORK"/profiles/*.profraw
# BOLT can move whole functions only when the link keeps its relocations.
RELOCS=
[ -n "$BOLT_BIN" ] && RELOCS=" -Clink-arg=-Wl,--emit-relocs"
CARGO_TARGET_DIR=target/pgo RUSTFLAGS="-Cprofile-use=$WORK/shardproxy.profdata$RELOCS" \
    cargo build --release --locked --bin shardproxy --target "$HOST"
PGO_OUT="target/pgo/$HOST/release/shardproxy"

if [ -z "$BOLT_BIN" ]; then
    install -D "$PGO_OUT" target/pgo/release/shardproxy
    echo "built target/pgo/release/shardproxy (profile-guided)"
    exit 0
fi

echo "== 4/$STEPS post-link layout ($BOLT_BIN)"
"$BOLT_BIN" "$PGO_OUT" -instrument -o "$WORK/shardproxy-bolt-inst" \
    --instrumentation-file="$WORK/bolt.fdata" --instrumentation-file-append-pid=false \
    >"$WORK/bolt.log" 2>&1 || { cat "$WORK/bolt.log" >&2; exit 1; }
train "$WORK/shardproxy-bolt-inst"
[ -s "$WORK/bolt.fdata" ] || { echo "the BOLT-instrumented proxy wrote no profile" >&2; exit 1; }
"$BOLT_BIN" "$PGO_OUT" -o "$WORK/shardproxy-bolt" -data="$WORK/bolt.fdata" \
    -reorder-blocks=ext-tsp -reorder-functions=hfsort -split-functions -split-all-cold \
    -split-eh -icf=1 -use-gnu-stack >"$WORK/bolt.log" 2>&1 || { cat "$WORK/bolt.log" >&2; exit 1; }
# The rewritten binary must still do all of it, with no failed transaction.
echo "   checking the rewritten binary:"
train "$WORK/shardproxy-bolt"
install -D "$WORK/shardproxy-bolt" target/pgo/release/shardproxy
echo "built target/pgo/release/shardproxy (profile-guided, laid out by BOLT)"
