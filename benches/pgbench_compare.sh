#!/usr/bin/env bash
# End-to-end benchmark: shardproxy side by side with direct Postgres and
# pgbouncer, then a 4-shard run, then the memory of 1,000 idle clients.
# docs/benchmarks.md records the figures and the machine; what it printed
# goes in docs/bench-runs/ (one file per run):
#
#   cargo build --release &&
#     sudo bash benches/pgbench_compare.sh | tee docs/bench-runs/pgbench-compare-$(date -u +%F)-<letter>.txt
#
# With a profile-guided build (`bash benches/pgo_build.sh`, which writes
# target/pgo/release/shardproxy, laid out by BOLT when llvm-bolt is
# installed) the comparison part runs it too, as "shardproxy-pgo", in the
# same rounds as the plain build.
#
# Environment:
#   DURATION=15   seconds per pgbench run
#   ROUNDS=2      rounds per mode (round 2 runs the targets in reverse order)
#   SHARDS=4      shard clusters in the sharded part (2 on a small machine)
#   IDLE=1000     idle clients in the memory part
#   PARTS="compare sharded idle overhead"   which parts to run
#
# Runs as root on a Debian-like machine with Postgres 15 (initdb, pg_ctl,
# pgbench): clusters and pgbouncer run as the `postgres` user. Everything
# lives in one temporary directory; a trap stops what it started, by PID or
# `pg_ctl -D <dir> stop`, never by process name.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-2}
SHARDS=${SHARDS:-4}
IDLE=${IDLE:-1000}
PARTS=${PARTS:-"compare sharded idle overhead"}
declare -A LAT
CLIENTS=16
THREADS=2
SCALE=10
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | tail -1)}
PROXY_BIN=${PROXY_BIN:-target/release/shardproxy}
PGO_BIN=${PGO_BIN:-target/pgo/release/shardproxy}

[ "$(id -u)" = 0 ] || { echo "run as root (clusters and pgbouncer run as the postgres user)" >&2; exit 1; }
[ -x "$PROXY_BIN" ] || { echo "$PROXY_BIN missing: run cargo build --release first" >&2; exit 1; }
command -v pgbench >/dev/null || { echo "pgbench missing (apt-get install postgresql-contrib)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 missing" >&2; exit 1; }
if ! command -v pgbouncer >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null
fi
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

WORK=$(mktemp -d /tmp/shardproxy-bench.XXXXXX)
chown postgres "$WORK"
CLUSTERS=()   # data directories to stop
PIDS=()       # other processes (pgbouncer, shardproxy, helpers) to stop

cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null && for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
    done
    for d in "${CLUSTERS[@]}"; do
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1
    done
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

load() { cut -d' ' -f1-3 /proc/loadavg; }

# start_cluster NAME PORT: a fresh Postgres cluster with database "bench".
start_cluster() {
    local dir="$WORK/$1"
    runuser -u postgres -- "$PGBIN/initdb" -D "$dir" -A trust -U postgres --no-sync -E UTF8 >/dev/null
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir" -l "$dir.log" -w -o \
        "-p $2 -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=300 \
         -c max_prepared_transactions=100 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c shared_buffers=128MB" start >/dev/null
    CLUSTERS+=("$dir")
    psql -q -h 127.0.0.1 -p "$2" -U postgres -d postgres -c "CREATE DATABASE bench" >/dev/null
}

# start_proxy CONFIG PORT [BIN]: shardproxy in the background, waits until it accepts.
# The proxy gets its own session, as a service would and as pgbouncer -d
# does: with the kernel's autogroup scheduling (sched_autogroup_enabled=1)
# a proxy left in the shell's session shares one CPU group with pgbench and
# is preempted about twice as often as the daemonized pgbouncer.
start_proxy() {
    RUST_LOG=warn setsid "${3:-$PROXY_BIN}" serve --config "$1" >"$1.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "shardproxy did not start; log:" >&2
    cat "$1.log" >&2
    exit 1
}

stop_pid() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
}

# proxy_config FILE PORT TWO_PHASE SHARD_PORT... : trust auth, user postgres,
# pool of 16 per shard, pgbench tables sharded by aid/bid/tid.
proxy_config() {
    local file=$1 port=$2 twophase=$3
    shift 3
    cat >"$file" <<EOF
[proxy]
listen = "127.0.0.1:$port"
auth = "trust"
# One event loop: the single-worker figures of docs/benchmarks.md (the
# default is one per core, which on 2 cores competes with Postgres).
workers = 1
max_clients = $((IDLE * 2 > 2000 ? IDLE * 2 : 2000))
two_phase_commit = $twophase

[[users]]
name = "postgres"
password = "unused-with-trust"

[pool]
size = 16
EOF
    local i=0
    for p in "$@"; do
        printf '\n[[shards]]\nname = "s%d"\nurl = "postgres://postgres@127.0.0.1:%d/bench"\n' "$i" "$p" >>"$file"
        i=$((i + 1))
    done
    cat >>"$file" <<'EOF'

[[tables]]
name = "pgbench_accounts"
shard_key = "aid"
key_type = "integer"

[[tables]]
name = "pgbench_branches"
shard_key = "bid"
key_type = "integer"

[[tables]]
name = "pgbench_tellers"
shard_key = "tid"
key_type = "integer"

[[tables]]
name = "pgbench_history"
shard_key = "aid"
key_type = "integer"
EOF
}

# The built-in select-only script with the scale fixed. Through a sharded proxy
# pgbench's scale detection (`select count(*) from pgbench_branches`) would read
# one shard's count, because fan-out aggregates are not merged yet; with -f the
# detection is skipped. Same statement as `pgbench -S`.
SELECT_ONLY="$WORK/select_only.sql"
cat >"$SELECT_ONLY" <<EOF
\set aid random(1, 100000 * $SCALE)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
EOF
chmod 644 "$SELECT_ONLY"

# run_pgbench LABEL PORT ARGS...: one run with per-transaction logs; prints
# "tps avg_ms p99_ms" and keeps the log under $WORK/logs/LABEL.*
run_pgbench() {
    local label=$1 port=$2
    shift 2
    mkdir -p "$WORK/logs"
    local out="$WORK/logs/$label.out"
    pgbench -h 127.0.0.1 -p "$port" -U postgres -n -c $CLIENTS -j $THREADS -T "$DURATION" \
        -l --log-prefix="$WORK/logs/$label" "$@" bench >"$out" 2>&1 || {
        echo "pgbench failed ($label):" >&2
        cat "$out" >&2
        return 1
    }
    local tps
    tps=$(awk '/^tps = / {print $3; exit}' "$out")
    # Log lines: client_id tx_no latency_us script_no epoch epoch_us
    cat "$WORK/logs/$label".[0-9]* | awk '{print $3}' | sort -n >"$WORK/logs/$label.lat"
    local n avg p99
    n=$(wc -l <"$WORK/logs/$label.lat")
    avg=$(awk '{s += $1} END {printf "%.3f", s / NR / 1000}' "$WORK/logs/$label.lat")
    p99=$(awk -v k=$(((n * 99 + 99) / 100)) 'NR == k {printf "%.3f", $1 / 1000; exit}' "$WORK/logs/$label.lat")
    echo "$tps $avg $p99 $n"
}

# cpu_ticks PID: the process's user and system CPU so far, in clock ticks.
cpu_ticks() {
    awk '{print $14, $15}' "/proc/$1/stat"
}

# warm PORT ARGS...: a short unlogged run so pools, caches and backends are warm.
warm() {
    local port=$1
    shift
    pgbench -h 127.0.0.1 -p "$port" -U postgres -n -c $CLIENTS -j $THREADS -T 2 "$@" bench >/dev/null 2>&1
}

# p99 over every round of one mode/target.
p99_of() {
    cat "$WORK/logs/$1".r*.lat | sort -n | awk '{a[NR] = $1} END {k = int((NR * 99 + 99) / 100); printf "%.3f", a[k] / 1000}'
}
avg_of() {
    cat "$WORK/logs/$1".r*.lat | awk '{s += $1} END {printf "%.3f", s / NR / 1000}'
}

echo "== shardproxy pgbench comparison, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r)"
echo "== $("$PGBIN/postgres" --version), $("$PGBOUNCER" --version | head -1), $(pgbench --version)"
echo "== DURATION=$DURATION ROUNDS=$ROUNDS SHARDS=$SHARDS IDLE=$IDLE; load average at start: $(load)"

# ---------------------------------------------------------------------------
if [[ " $PARTS " == *" compare "* ]]; then
    PG_PORT=$(free_port)
    start_cluster direct "$PG_PORT"
    pgbench -i -s $SCALE -q -h 127.0.0.1 -p "$PG_PORT" -U postgres bench >"$WORK/init.log" 2>&1

    BOUNCER_PORT=$(free_port)
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
default_pool_size = 16
max_client_conn = 2000
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
EOF
    echo '"postgres" ""' >"$WORK/userlist.txt"
    chown postgres "$WORK/pgbouncer.ini" "$WORK/userlist.txt"
    runuser -u postgres -- "$PGBOUNCER" -d "$WORK/pgbouncer.ini"
    for _ in $(seq 50); do [ -s "$WORK/pgbouncer.pid" ] && break; sleep 0.1; done
    PIDS+=("$(cat "$WORK/pgbouncer.pid")")

    PROXY_PORT=$(free_port)
    proxy_config "$WORK/proxy1.toml" "$PROXY_PORT" false "$PG_PORT"
    start_proxy "$WORK/proxy1.toml" "$PROXY_PORT"

    declare -A PORT=([direct]=$PG_PORT [pgbouncer]=$BOUNCER_PORT [shardproxy]=$PROXY_PORT)
    # The processes in the middle, whose CPU per transaction is reported.
    declare -A MIDDLE=([pgbouncer]=$(cat "$WORK/pgbouncer.pid") [shardproxy]=$PROXY_PID)
    TARGETS="direct pgbouncer shardproxy"
    if [ -x "$PGO_BIN" ]; then
        PGO_PORT=$(free_port)
        proxy_config "$WORK/proxy-pgo.toml" "$PGO_PORT" false "$PG_PORT"
        PLAIN_PID=$PROXY_PID
        start_proxy "$WORK/proxy-pgo.toml" "$PGO_PORT" "$PGO_BIN"
        PGO_PID=$PROXY_PID
        PROXY_PID=$PLAIN_PID
        PORT[shardproxy-pgo]=$PGO_PORT
        MIDDLE[shardproxy-pgo]=$PGO_PID
        TARGETS="$TARGETS shardproxy-pgo"
        echo "== shardproxy: $PROXY_BIN, built $(date -u -r "$PROXY_BIN" '+%H:%M UTC')"
        LAYOUT="profile-guided"
        if command -v readelf >/dev/null && readelf -S "$PGO_BIN" 2>/dev/null | grep -q '\.note\.bolt_info'; then
            LAYOUT="profile-guided, laid out by BOLT"
        fi
        echo "== shardproxy-pgo: $PGO_BIN ($LAYOUT, benches/pgo_build.sh), built $(date -u -r "$PGO_BIN" '+%H:%M UTC')"
        if [ "$PGO_BIN" -ot "$PROXY_BIN" ]; then
            echo "== WARNING: the profile-guided build is older than the plain one; rerun benches/pgo_build.sh if the code changed"
        fi
    fi
    REVERSED=$(echo "$TARGETS" | tr ' ' '\n' | tac | tr '\n' ' ')
    declare -A TPS RTPS CPU_US CPU_N
    TICK_US=$((1000000 / $(getconf CLK_TCK)))
    for t in $TARGETS; do warm "${PORT[$t]}" -S; done
    for mode in simple extended; do
        for r in $(seq "$ROUNDS"); do
            order=$TARGETS
            [ $((r % 2)) = 0 ] && order=$REVERSED
            for t in $order; do
                mid=${MIDDLE[$t]:-}
                if [ -n "$mid" ]; then
                    read -r u0 s0 < <(cpu_ticks "$mid") || { echo "$t (PID $mid) is gone" >&2; exit 1; }
                fi
                res=$(run_pgbench "$mode.$t.r$r" "${PORT[$t]}" -S -M "$mode")
                read -r tps avg p99 n <<<"$res"
                cpu=""
                if [ -n "$mid" ]; then
                    read -r u1 s1 < <(cpu_ticks "$mid") || { echo "$t (PID $mid) is gone" >&2; exit 1; }
                    cpu=$(awk -v u=$(((u1 - u0) * TICK_US)) -v s=$(((s1 - s0) * TICK_US)) -v n="$n" \
                        'BEGIN {printf ", cpu/txn user %.2f us sys %.2f us", u / n, s / n}')
                    CPU_US[$mode.$t]="${CPU_US[$mode.$t]:-0 0}"
                    read -r cu cs <<<"${CPU_US[$mode.$t]}"
                    CPU_US[$mode.$t]="$((cu + (u1 - u0) * TICK_US)) $((cs + (s1 - s0) * TICK_US))"
                    CPU_N[$mode.$t]=$((${CPU_N[$mode.$t]:-0} + n))
                fi
                echo "   round $r  $mode  $t: tps $tps, avg ${avg} ms, p99 ${p99} ms$cpu (load $(load))"
                TPS[$mode.$t]=$(awk -v a="${TPS[$mode.$t]:-0}" -v b="$tps" 'BEGIN {print a + b}')
                RTPS[$mode.$t.$r]=$tps
            done
        done
    done

    echo
    echo "pgbench -S -c $CLIENTS -j $THREADS -T $DURATION, scale $SCALE, mean TPS of $ROUNDS rounds; latency over all rounds' transactions"
    printf '%-9s %-14s %10s %9s %10s %10s\n' mode target TPS vs_direct avg_ms p99_ms
    for mode in simple extended; do
        direct=$(awk -v s="${TPS[$mode.direct]}" -v n="$ROUNDS" 'BEGIN {print s / n}')
        for t in $TARGETS; do
            tps=$(awk -v s="${TPS[$mode.$t]}" -v n="$ROUNDS" 'BEGIN {printf "%.0f", s / n}')
            ratio=$(awk -v a="$tps" -v d="$direct" 'BEGIN {printf "%.2f", a / d}')
            printf '%-9s %-14s %10s %9s %10s %10s\n' "$mode" "$t" "$tps" "$ratio" "$(avg_of "$mode.$t")" "$(p99_of "$mode.$t")"
        done
    done
    echo
    echo "CPU of the process in the middle per transaction (utime/stime from /proc, all rounds):"
    for mode in simple extended; do
        for t in $TARGETS; do
            [ -n "${MIDDLE[$t]:-}" ] || continue
            read -r cu cs <<<"${CPU_US[$mode.$t]}"
            awk -v m="$mode" -v t="$t" -v u="$cu" -v s="$cs" -v n="${CPU_N[$mode.$t]}" \
                'BEGIN {printf "   %-9s %-14s user %.2f us, sys %.2f us, total %.2f us\n", m, t, u / n, s / n, (u + s) / n}'
        done
    done
    for t in $TARGETS; do
        [[ $t == shardproxy* ]] || continue
        for mode in simple extended; do
            awk -v t="$t" -v m="$mode" -v a="$(p99_of "$mode.$t")" -v b="$(p99_of "$mode.direct")" -v c="$(p99_of "$mode.pgbouncer")" \
                'BEGIN {printf "%s p99 overhead (%s): %+.0f us vs direct, %+.0f us vs pgbouncer\n", t, m, (a - b) * 1000, (a - c) * 1000}'
            printf '%s / pgbouncer TPS per round (%s):' "$t" "$mode"
            for r in $(seq "$ROUNDS"); do
                printf ' %s' "$(awk -v a="${RTPS[$mode.$t.$r]}" -v b="${RTPS[$mode.pgbouncer.$r]}" 'BEGIN {printf "%.2f", a / b}')"
            done
            echo
        done
    done
    echo "load average after part 1: $(load)"
    stop_pid "$PROXY_PID"
    [ -n "${PGO_PID:-}" ] && stop_pid "$PGO_PID"
fi

# ---------------------------------------------------------------------------
if [[ " $PARTS " == *" sharded "* ]]; then
    echo
    echo "== sharded: $SHARDS shards vs 1 shard, both initialised through the proxy (load $(load))"
    SHARD_PORTS=()
    for i in $(seq 0 $((SHARDS - 1))); do
        p=$(free_port)
        start_cluster "shard$i" "$p"
        SHARD_PORTS+=("$p")
    done
    ONE_PORT=$(free_port)
    start_cluster one "$ONE_PORT"

    # Plain `pgbench -i` through the proxy: DDL fans out, branches/tellers
    # are keyed INSERTs inside pgbench's transaction (joining shards under
    # two_phase_commit), and pgbench_accounts' COPY is split by key.
    init_through_proxy() {
        pgbench -i -s $SCALE -h 127.0.0.1 -p "$1" -U postgres bench
    }

    declare -A STPS
    for setup in one many; do
        port=$(free_port)
        if [ $setup = one ]; then
            proxy_config "$WORK/proxy-$setup.toml" "$port" true "$ONE_PORT"
        else
            proxy_config "$WORK/proxy-$setup.toml" "$port" true "${SHARD_PORTS[@]}"
        fi
        start_proxy "$WORK/proxy-$setup.toml" "$port"
        t0=$(date +%s.%N)
        init_through_proxy "$port" >"$WORK/init-$setup.log" 2>&1 || {
            echo "initialising through the proxy failed ($setup):" >&2
            cat "$WORK/init-$setup.log" >&2
            exit 1
        }
        t1=$(date +%s.%N)
        echo "   pgbench tables (scale $SCALE) created and loaded through the proxy ($setup): $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s"
        if [ $setup = many ]; then
            for i in "${!SHARD_PORTS[@]}"; do
                n=$(psql -At -h 127.0.0.1 -p "${SHARD_PORTS[$i]}" -U postgres -d bench -c "SELECT count(*) FROM pgbench_accounts")
                echo "   shard s$i holds $n pgbench_accounts rows"
            done
            echo "   through the proxy, SELECT count(*) FROM pgbench_accounts returns: $(psql -At -h 127.0.0.1 -p "$port" -U postgres -d bench -c 'SELECT count(*) FROM pgbench_accounts' | tr '\n' ' ')"
        fi
        warm "$port" -f "$SELECT_ONLY"
        for r in $(seq "$ROUNDS"); do
            res=$(run_pgbench "sharded.$setup.r$r" "$port" -f "$SELECT_ONLY" -M simple)
            read -r tps avg p99 _ <<<"$res"
            echo "   round $r  $setup: tps $tps, avg ${avg} ms, p99 ${p99} ms (load $(load))"
            STPS[$setup]=$(awk -v a="${STPS[$setup]:-0}" -v b="$tps" 'BEGIN {print a + b}')
        done
        stop_pid "$PROXY_PID"
    done
    one=$(awk -v s="${STPS[one]}" -v n="$ROUNDS" 'BEGIN {printf "%.0f", s / n}')
    many=$(awk -v s="${STPS[many]}" -v n="$ROUNDS" 'BEGIN {printf "%.0f", s / n}')
    echo
    echo "select-only (-f, same statement as -S) -M simple -c $CLIENTS -j $THREADS -T $DURATION through shardproxy, mean of $ROUNDS rounds"
    printf '%-8s %10s %10s %10s\n' shards TPS avg_ms p99_ms
    printf '%-8s %10s %10s %10s\n' 1 "$one" "$(avg_of sharded.one)" "$(p99_of sharded.one)"
    printf '%-8s %10s %10s %10s\n' "$SHARDS" "$many" "$(avg_of sharded.many)" "$(p99_of sharded.many)"
    echo "$SHARDS-shard / 1-shard throughput: $(awk -v a="$many" -v b="$one" 'BEGIN {printf "%.2f", a / b}') (all shards share the same $(nproc) cores)"
    echo "load average after part 2: $(load)"
fi

# ---------------------------------------------------------------------------
if [[ " $PARTS " == *" overhead "* ]]; then
    # Routing overhead without the cost of more Postgres: the "shards" are 4
    # databases of ONE cluster, with 4 backends each (16 in all, as the
    # 1-shard setup's pool of 16). Same data, same Postgres work per query;
    # what differs is the proxy routing each key to one of 4 pools.
    # Then the latency one hop adds: 1 client, direct vs through the proxy.
    echo
    echo "== routing overhead: 4 shards as 4 databases of one cluster vs 1 shard (load $(load))"
    OPORT=$(free_port)
    start_cluster overhead "$OPORT"
    for i in 0 1 2 3; do
        psql -q -h 127.0.0.1 -p "$OPORT" -U postgres -d postgres -c "CREATE DATABASE bench_s$i" >/dev/null
    done
    overhead_config() {
        local file=$1 port=$2 pool=$3
        shift 3
        proxy_config "$file" "$port" true
        sed -i "s/^size = 16$/size = $pool/" "$file"
        local i=0
        for db in "$@"; do
            printf '\n[[shards]]\nname = "s%d"\nurl = "postgres://postgres@127.0.0.1:%d/%s"\n' "$i" "$OPORT" "$db" >>"$file"
            i=$((i + 1))
        done
    }
    declare -A OTPS
    for setup in one four; do
        port=$(free_port)
        if [ $setup = one ]; then
            overhead_config "$WORK/overhead-$setup.toml" "$port" 16 bench
        else
            overhead_config "$WORK/overhead-$setup.toml" "$port" 4 bench_s0 bench_s1 bench_s2 bench_s3
        fi
        start_proxy "$WORK/overhead-$setup.toml" "$port"
        pgbench -i -s $SCALE -q -h 127.0.0.1 -p "$port" -U postgres bench >"$WORK/overhead-init-$setup.log" 2>&1 || {
            echo "pgbench -i through the proxy failed ($setup):" >&2
            cat "$WORK/overhead-init-$setup.log" >&2
            exit 1
        }
        warm "$port" -f "$SELECT_ONLY"
        for mode in simple prepared; do
            for r in $(seq "$ROUNDS"); do
                res=$(run_pgbench "overhead.$setup.$mode.r$r" "$port" -f "$SELECT_ONLY" -M $mode)
                read -r tps avg p99 _ <<<"$res"
                echo "   round $r  $setup  $mode: tps $tps, avg ${avg} ms, p99 ${p99} ms (load $(load))"
                OTPS[$setup.$mode]=$(awk -v a="${OTPS[$setup.$mode]:-0}" -v b="$tps" 'BEGIN {print a + b}')
            done
        done
        if [ $setup = one ]; then
            # One hop's latency: a single client, direct vs through the proxy.
            for target in direct proxy; do
                tport=$port
                [ $target = direct ] && tport=$OPORT
                res=$(CLIENTS=1 THREADS=1 run_pgbench "latency.$target" "$tport" -f "$SELECT_ONLY" -M prepared)
                read -r tps avg p99 _ <<<"$res"
                echo "   1 client, $target: tps $tps, avg ${avg} ms, p99 ${p99} ms"
                LAT[$target]="$avg $p99"
            done
        fi
        stop_pid "$PROXY_PID"
    done
    echo
    echo "select-only (-f) -c $CLIENTS -j $THREADS -T $DURATION, mean of $ROUNDS rounds, one cluster"
    for mode in simple prepared; do
        one=$(awk -v s="${OTPS[one.$mode]}" -v n="$ROUNDS" 'BEGIN {printf "%.0f", s / n}')
        four=$(awk -v s="${OTPS[four.$mode]}" -v n="$ROUNDS" 'BEGIN {printf "%.0f", s / n}')
        echo "   $mode: 1 shard $one tps, 4 shards $four tps, ratio $(awk -v a="$four" -v b="$one" 'BEGIN {printf "%.2f", a / b}')"
    done
    read -r davg dp99 <<<"${LAT[direct]}"
    read -r pavg pp99 <<<"${LAT[proxy]}"
    echo "   one hop, 1 client (-M prepared): avg +$(awk -v a="$pavg" -v b="$davg" 'BEGIN {printf "%.0f", (a - b) * 1000}') us, p99 +$(awk -v a="$pp99" -v b="$dp99" 'BEGIN {printf "%.0f", (a - b) * 1000}') us"
    echo "load average after the overhead part: $(load)"
fi

if [[ " $PARTS " == *" idle "* ]]; then
    echo
    ulimit -n $((IDLE * 4 + 1024))
    if [ -z "${PG_PORT:-}" ]; then
        PG_PORT=$(free_port)
        start_cluster direct "$PG_PORT"
    fi
    port=$(free_port)
    proxy_config "$WORK/proxy-idle.toml" "$port" false "$PG_PORT"
    start_proxy "$WORK/proxy-idle.toml" "$port"
    # One query first, so the pool, the server parameters and the runtime are warm.
    psql -q -h 127.0.0.1 -p "$port" -U postgres -d bench -c "SELECT 1" >/dev/null
    sleep 1
    python3 - "$PROXY_PID" "$port" "$IDLE" <<'PY'
# Opens N client connections (trust auth: StartupMessage, then read up to
# ReadyForQuery) and keeps them idle while reading the proxy's VmRSS.
import socket, struct, sys, time

pid, port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

def rss_kb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def startup():
    s = socket.create_connection(("127.0.0.1", port))
    body = struct.pack("!i", 196608) + b"user\0postgres\0database\0bench\0\0"
    s.sendall(struct.pack("!i", len(body) + 4) + body)
    buf = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit(f"connection closed during startup: {buf!r}")
        buf += chunk
        # Walk whole messages; stop at ReadyForQuery, fail on ErrorResponse.
        i = 0
        while i + 5 <= len(buf):
            tag, ln = buf[i:i+1], struct.unpack("!i", buf[i+1:i+5])[0]
            if i + 1 + ln > len(buf):
                break
            if tag == b"E":
                raise SystemExit(f"startup refused: {buf[i:i+1+ln]!r}")
            if tag == b"Z":
                return s
            i += 1 + ln

before = rss_kb()
t0 = time.time()
socks = [startup() for _ in range(n)]
t1 = time.time()
time.sleep(2)
after = rss_kb()
print(f"   {n} idle clients connected in {t1 - t0:.2f} s")
print(f"shardproxy VmRSS idle: {before / 1024:.1f} MiB; with {n} idle clients: {after / 1024:.1f} MiB; "
      f"delta {(after - before) / 1024:.1f} MiB ({(after - before) / n:.1f} KiB per client)")
for s in socks:
    s.close()
PY
    echo "load average after part 3: $(load)"
    stop_pid "$PROXY_PID"
fi
