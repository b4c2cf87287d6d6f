#!/usr/bin/env bash
# User-space instructions per `pgbench -S` transaction, counted by callgrind,
# for shardproxy and pgbouncer in simple and extended mode: a figure that
# does not move with the machine's load (TPS on a shared 2-core host varies
# by ±8% from round to round; these counts repeat to within 0.1%).
#
#   cargo build --release &&
#     sudo bash benches/callgrind_per_txn.sh | tee docs/bench-runs/callgrind-$(date -u +%F)-<letter>.txt
#
# One pgbench client, so each transaction is one wake-up of the event loop
# (the per-transaction cost is higher than under 16 clients, where one
# wake-up serves several). Each target runs under valgrind: 500 warm-up
# transactions, then the counters are zeroed (callgrind_control -z), N
# transactions run, and the counters are dumped (-d): start-up, warm-up and
# shutdown are left out.
#
# Environment: N=10000 transactions, PROXY_BIN=target/release/shardproxy,
# MODES="simple extended", TARGETS="shardproxy pgbouncer".
# Runs as root on a Debian-like machine with Postgres 15; the cluster and
# pgbouncer run as the `postgres` user, and are stopped by PID or pg_ctl.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}
PROXY_BIN=${PROXY_BIN:-target/release/shardproxy}
MODES=${MODES:-"simple extended"}
TARGETS=${TARGETS:-"shardproxy pgbouncer"}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | tail -1)}

[ "$(id -u)" = 0 ] || { echo "run as root (the cluster and pgbouncer run as the postgres user)" >&2; exit 1; }
[ -x "$PROXY_BIN" ] || { echo "$PROXY_BIN missing: run cargo build --release first" >&2; exit 1; }
for pkg in valgrind pgbouncer; do
    command -v "$pkg" >/dev/null || [ -x "/usr/sbin/$pkg" ] ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null
done
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

WORK=$(mktemp -d /tmp/shardproxy-callgrind.XXXXXX)
chown postgres "$WORK"
PIDS=()
cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PG_PORT=$(free_port)
PROXY_PORT=$(free_port)
BOUNCER_PORT=$(free_port)

runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres --no-sync -E UTF8 >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w -o \
    "-p $PG_PORT -k $WORK -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" \
    start >/dev/null
psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE bench" >/dev/null
pgbench -i -s 1 -q -h 127.0.0.1 -p "$PG_PORT" -U postgres bench >/dev/null 2>&1

cat >"$WORK/proxy.toml" <<EOF
[proxy]
listen = "127.0.0.1:$PROXY_PORT"
auth = "trust"
# One event loop: the single-worker figures of docs/benchmarks.md (the
# default is one per core, which on 2 cores competes with Postgres).
workers = 1

[[users]]
name = "postgres"
password = "unused-with-trust"

[[shards]]
name = "s0"
url = "postgres://postgres@127.0.0.1:$PG_PORT/bench"

[[tables]]
name = "pgbench_accounts"
shard_key = "aid"
key_type = "integer"
EOF
echo '"postgres" ""' >"$WORK/userlist.txt"
cat >"$WORK/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = transaction
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
EOF
chown postgres "$WORK"/*

wait_port() {
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

# count TARGET MODE: instructions of N transactions under callgrind, after
# 500 warm-up ones.
count() {
    local target=$1 mode=$2 port pid as=() out="$WORK/cg.$1.$2"
    if [ "$target" = shardproxy ]; then
        port=$PROXY_PORT
        RUST_LOG=warn setsid valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$PROXY_BIN" serve --config "$WORK/proxy.toml" >"$out.log" 2>&1 &
        pid=$!
    else
        # pgbouncer refuses to run as root; callgrind_control must then be
        # the same user to reach it.
        port=$BOUNCER_PORT
        as=(runuser -u postgres --)
        "${as[@]}" valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$PGBOUNCER" "$WORK/pgbouncer.ini" >"$out.log" 2>&1 &
        pid=$!
    fi
    PIDS+=("$pid")
    wait_port "$port"
    local vg
    vg=$(pgrep -n -f "callgrind-out-file=$out")
    pgbench -h 127.0.0.1 -p "$port" -U postgres -n -S -M "$mode" -c1 -j1 -t 500 bench >/dev/null
    "${as[@]}" callgrind_control -z "$vg" >/dev/null 2>&1
    pgbench -h 127.0.0.1 -p "$port" -U postgres -n -S -M "$mode" -c1 -j1 -t "$N" bench >/dev/null
    "${as[@]}" callgrind_control -d "$vg" >/dev/null 2>&1
    kill "$vg"
    wait "$pid" 2>/dev/null || true
    awk '/^summary:/ {print $2}' "$out.1"
}

echo "instructions per transaction (callgrind, 1 client, $N transactions; $PROXY_BIN)"
for mode in $MODES; do
    for target in $TARGETS; do
        echo "$mode $target $(($(count "$target" "$mode") / N))"
    done
done
