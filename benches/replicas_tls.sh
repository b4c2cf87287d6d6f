#!/usr/bin/env bash
# Figures of issue 16 (shards as they run in production), in one run:
#
#  1. read throughput of `pgbench -S` through one shard with 0, 1 and 2
#     streaming replicas (rounds alternate between the three proxies);
#  2. TLS overhead per statement: the same shard reached with
#     sslmode=disable and sslmode=require (alternating rounds, 1 client for
#     latency, 16 for throughput);
#  3. failover: the time from the primary's loss (an immediate shutdown) to
#     the first successful write through the proxy on the promoted replica,
#     with the replica promoted at once (`pg_ctl promote -w`, as an HA
#     manager would after its own detection delay, which is not counted).
#
#   cargo build --release --bin shardproxy --example failover_probe
#   sudo flock /work/wt/NOTES/bench.lock bash benches/replicas_tls.sh
#
# Environment: T=15 seconds per pgbench round, ROUNDS=3, CLIENTS=16,
# FAILOVERS=3, SCALE=10, PROXY_BIN, PROBE_BIN. Runs as root on a
# Debian-like machine with Postgres 15; clusters run as the postgres user
# and are stopped by pg_ctl, proxies by PID. Every server shares the same
# cores, so the replica figures are ratios on one machine, not scale-out.
set -euo pipefail
cd "$(dirname "$0")/.."

T=${T:-15}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-16}
FAILOVERS=${FAILOVERS:-3}
SCALE=${SCALE:-10}
PROXY_BIN=${PROXY_BIN:-target/release/shardproxy}
PROBE_BIN=${PROBE_BIN:-target/release/examples/failover_probe}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | tail -1)}

[ "$(id -u)" = 0 ] || { echo "run as root (the clusters run as the postgres user)" >&2; exit 1; }
for b in "$PROXY_BIN" "$PROBE_BIN"; do
    [ -x "$b" ] || { echo "$b missing: cargo build --release --bin shardproxy --example failover_probe" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/shardproxy-replicas.XXXXXX)
chown postgres "$WORK"
PIDS=()
DIRS=()
cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for d in "${DIRS[@]}"; do
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
pg() { runuser -u postgres -- "$@"; }

# A self-signed certificate for the servers (sslmode=require checks none).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$WORK/server.key" -out "$WORK/server.crt" >/dev/null 2>&1
chown postgres "$WORK/server.key" "$WORK/server.crt"
chmod 600 "$WORK/server.key"

# start_pg DIR PORT: a server on DIR (initdb'd or a base backup).
start_pg() {
    local dir=$1 port=$2
    DIRS+=("$dir")
    pg "$PGBIN/pg_ctl" -D "$dir" -l "$dir.log" -w -o \
        "-p $port -k $WORK -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 \
         -c wal_level=replica -c max_wal_senders=10 -c hot_standby=on \
         -c ssl=on -c ssl_cert_file=$WORK/server.crt -c ssl_key_file=$WORK/server.key" \
        start >/dev/null
}
# new_primary DIR PORT
new_primary() {
    pg "$PGBIN/initdb" -D "$1" -A trust -U postgres --no-sync -E UTF8 >/dev/null
    start_pg "$1" "$2"
}
# new_replica PRIMARY_PORT DIR PORT
new_replica() {
    pg "$PGBIN/pg_basebackup" -D "$2" -h 127.0.0.1 -p "$1" -U postgres -X stream -R -c fast \
        -C -S "r$3" --no-sync
    start_pg "$2" "$3"
}

wait_port() {
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

# proxy PORT SSLMODE PRIMARY_PORT DB [REPLICA_PORT...]: starts a proxy, sets PID.
proxy() {
    local port=$1 mode=$2 primary=$3 db=$4
    shift 4
    local reps=() r
    for r in "$@"; do reps+=("\"postgres://postgres@127.0.0.1:$r/$db?sslmode=$mode\""); done
    local list
    list=$(IFS=,; echo "${reps[*]:-}")
    cat >"$WORK/proxy-$port.toml" <<EOF
[proxy]
listen = "127.0.0.1:$port"
auth = "trust"
# One event loop, as in the single-worker figures of docs/benchmarks.md.
workers = 1

[[users]]
name = "postgres"
password = "unused-with-trust"

[pool]
size = 16

[[shards]]
name = "s0"
url = "postgres://postgres@127.0.0.1:$primary/$db?sslmode=$mode"
replicas = [$list]

[[tables]]
name = "pgbench_accounts"
shard_key = "aid"
key_type = "integer"
EOF
    RUST_LOG=warn setsid "$PROXY_BIN" serve --config "$WORK/proxy-$port.toml" >"$WORK/proxy-$port.log" 2>&1 &
    PIDS+=($!)
    wait_port "$port"
}

# wait_rotation PORT N: until N replicas are in rotation (SHOW SHARDS).
wait_rotation() {
    for _ in $(seq 200); do
        local n
        n=$(psql -X -h 127.0.0.1 -p "$1" -U admin -d shardproxy -Atc "SHOW SHARDS" 2>/dev/null |
            grep -c "|in rotation|" || true)
        [ "$n" -ge "$2" ] && return 0
        sleep 0.1
    done
    echo "proxy on $1: fewer than $2 replicas in rotation" >&2
    psql -X -h 127.0.0.1 -p "$1" -U admin -d shardproxy -c "SHOW SHARDS" >&2
    exit 1
}

tps() { awk '/^tps/ {print $3; exit}'; }
latency() { awk '/^latency average/ {print $4; exit}'; }

echo "# replicas_tls.sh: T=$T ROUNDS=$ROUNDS CLIENTS=$CLIENTS FAILOVERS=$FAILOVERS SCALE=$SCALE"
echo "# $(date -u +%FT%TZ) $(nproc) cores; load: $(uptime | sed 's/.*load average: //')"
echo "# proxy: $PROXY_BIN ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"

# --- 1 and 2: one primary, two replicas --------------------------------
P=$(free_port); R1=$(free_port); R2=$(free_port)
new_primary "$WORK/p" "$P"
psql -X -q -h 127.0.0.1 -p "$P" -U postgres -d postgres -c "CREATE DATABASE bench"
pgbench -i -s "$SCALE" -q -h 127.0.0.1 -p "$P" -U postgres bench >/dev/null 2>&1
new_replica "$P" "$WORK/r1" "$R1"
new_replica "$P" "$WORK/r2" "$R2"
X0=$(free_port); X1=$(free_port); X2=$(free_port); XT=$(free_port)
proxy "$X0" disable "$P" bench
proxy "$X1" disable "$P" bench "$R1"
proxy "$X2" disable "$P" bench "$R1" "$R2"
proxy "$XT" require "$P" bench
wait_rotation "$X1" 1
wait_rotation "$X2" 2
for x in "$X0" "$X1" "$X2" "$XT"; do
    pgbench -n -S -c 4 -j 2 -T 2 -h 127.0.0.1 -p "$x" -U postgres bench >/dev/null 2>&1
done

echo
echo "## read throughput, pgbench -S -c $CLIENTS -j 2 -T $T, one shard"
declare -A SUM=()
for round in $(seq "$ROUNDS"); do
    line="round $round:"
    for n in 0 1 2; do
        port_var="X$n"
        t=$(pgbench -n -S -c "$CLIENTS" -j 2 -T "$T" -h 127.0.0.1 -p "${!port_var}" -U postgres bench 2>&1 | tps)
        SUM[$n]=$(echo "${SUM[$n]:-0} + $t" | bc -l)
        line="$line ${n}r=$t"
    done
    echo "$line  (load $(uptime | sed 's/.*load average: //' | cut -d, -f1))"
done
for n in 0 1 2; do
    printf "mean tps %d replicas: %.0f  ratio to 0 replicas: %.3f\n" "$n" \
        "$(echo "${SUM[$n]} / $ROUNDS" | bc -l)" "$(echo "${SUM[$n]} / ${SUM[0]}" | bc -l)"
done
echo "reads per server at the end (SHOW POOLS checkouts, 2-replica proxy):"
psql -X -h 127.0.0.1 -p "$X2" -U admin -d shardproxy -Atc "SHOW POOLS" | awk -F'|' '{print "  " $8 " " $9 " " $10}'

echo
echo "## TLS to the shard: sslmode=disable vs require, pgbench -S"
SUM_LP=0; SUM_LT=0; SUM_TP=0; SUM_TT=0
for round in $(seq "$ROUNDS"); do
    lp=$(pgbench -n -S -c 1 -j 1 -T "$T" -h 127.0.0.1 -p "$X0" -U postgres bench 2>&1 | latency)
    lt=$(pgbench -n -S -c 1 -j 1 -T "$T" -h 127.0.0.1 -p "$XT" -U postgres bench 2>&1 | latency)
    tp=$(pgbench -n -S -c "$CLIENTS" -j 2 -T "$T" -h 127.0.0.1 -p "$X0" -U postgres bench 2>&1 | tps)
    tt=$(pgbench -n -S -c "$CLIENTS" -j 2 -T "$T" -h 127.0.0.1 -p "$XT" -U postgres bench 2>&1 | tps)
    echo "round $round: 1 client latency ms plain=$lp tls=$lt; $CLIENTS clients tps plain=$tp tls=$tt"
    SUM_LP=$(echo "$SUM_LP + $lp" | bc -l); SUM_LT=$(echo "$SUM_LT + $lt" | bc -l)
    SUM_TP=$(echo "$SUM_TP + $tp" | bc -l); SUM_TT=$(echo "$SUM_TT + $tt" | bc -l)
done
printf "1 client: +%.1f us per statement with TLS (%.3f ms vs %.3f ms)\n" \
    "$(echo "($SUM_LT - $SUM_LP) * 1000 / $ROUNDS" | bc -l)" \
    "$(echo "$SUM_LT / $ROUNDS" | bc -l)" "$(echo "$SUM_LP / $ROUNDS" | bc -l)"
printf "%d clients: TLS tps / plain tps = %.3f\n" "$CLIENTS" "$(echo "$SUM_TT / $SUM_TP" | bc -l)"
psql -X -h 127.0.0.1 -p "$P" -U postgres -d bench -Atc \
    "SELECT 'backends of the TLS proxy using TLS: ' || count(*) FROM pg_stat_ssl WHERE ssl"

echo
echo "## failover: primary stopped (immediate), replica promoted at once; a writer every 5 ms"
for f in $(seq "$FAILOVERS"); do
    FP=$(free_port); FR=$(free_port); XF=$(free_port)
    new_primary "$WORK/f$f" "$FP"
    psql -X -q -h 127.0.0.1 -p "$FP" -U postgres -d postgres -c "CREATE TABLE probe (id bigint PRIMARY KEY)"
    new_replica "$FP" "$WORK/f$f-r" "$FR"
    proxy "$XF" disable "$FP" postgres "$FR"
    wait_rotation "$XF" 1
    "$PROBE_BIN" "postgres://postgres@127.0.0.1:$XF/postgres" 8 >"$WORK/probe$f.log" &
    probe=$!
    sleep 3
    loss=$(date +%s%6N)
    pg "$PGBIN/pg_ctl" -D "$WORK/f$f" -m immediate stop >/dev/null
    stopped=$(date +%s%6N)
    pg "$PGBIN/pg_ctl" -D "$WORK/f$f-r" -w promote >/dev/null
    promoted=$(date +%s%6N)
    wait "$probe"
    first=$(awk -v t="$loss" '$1 > t && $2 == "ok" {print $1; exit}' "$WORK/probe$f.log")
    oks=$(grep -c " ok " "$WORK/probe$f.log")
    errs=$(awk -v t="$loss" '$1 > t && $2 == "err" {n++} END {print n+0}' "$WORK/probe$f.log")
    codes=$(awk -v t="$loss" '$1 > t && $2 == "err" {print $3}' "$WORK/probe$f.log" | sort | uniq -c | tr '\n' ' ')
    rows=$(psql -X -h 127.0.0.1 -p "$FR" -U postgres -d postgres -Atc "SELECT count(*) FROM probe")
    dup=$(psql -X -h 127.0.0.1 -p "$FR" -U postgres -d postgres -Atc \
        "SELECT count(*) - count(DISTINCT id) FROM probe")
    printf "failover %d: loss -> first write on the promoted replica %.0f ms (stop %.0f ms, promote %.0f ms, proxy after promote %.0f ms); %d failed writes (%s); %d acknowledged, %s rows on the new primary, %s duplicates\n" \
        "$f" "$(echo "($first - $loss) / 1000" | bc -l)" "$(echo "($stopped - $loss) / 1000" | bc -l)" \
        "$(echo "($promoted - $stopped) / 1000" | bc -l)" "$(echo "($first - $promoted) / 1000" | bc -l)" \
        "$errs" "$codes" "$oks" "$rows" "$dup"
done
echo "# end $(date -u +%FT%TZ); load: $(uptime | sed 's/.*load average: //')"
