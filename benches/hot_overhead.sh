#!/usr/bin/env bash
# What load accounting costs: `pgbench -S` through two proxies of the same
# binary in front of the same cluster, one with `[hot] enabled = true` (the
# default: every keyed statement's key is noted, merged once a second) and
# one with it off, alternating in the same rounds. pgbench_accounts is a
# sharded table with key aid, so every statement is keyed and accounted.
#
#   cargo build --release &&
#     sudo bash benches/hot_overhead.sh | tee docs/bench-runs/hot-overhead-$(date -u +%F)-<letter>.txt
#
# Environment: DURATION=10 seconds per run, ROUNDS=4, MODES="simple extended",
# CLIENTS=16, PROXY_BIN=target/release/shardproxy.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib/cluster.sh

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-4}
MODES=${MODES:-"simple extended"}
CLIENTS=${CLIENTS:-16}
SCALE=10

PG=$(free_port)
ON=$(free_port)
OFF=$(free_port)
echo "== load accounting overhead, $(date -u '+%F %H:%M UTC'), $(nproc) cores, $(uname -r)"
echo "== $PROXY_BIN built $(date -u -r "$PROXY_BIN" '+%F %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== DURATION=$DURATION ROUNDS=$ROUNDS CLIENTS=$CLIENTS; load at start: $(load)"
start_cluster pg "$PG"
pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG" -U postgres bench >/dev/null 2>&1

for side in on off; do
    port=$ON
    enabled=true
    if [ "$side" = off ]; then port=$OFF; enabled=false; fi
    {
        proxy_head "$port"
        printf '[pool]\nsize = 16\n\n[hot]\nenabled = %s\n\n' "$enabled"
        printf '[[shards]]\nname = "s0"\nurl = "postgres://postgres@127.0.0.1:%s/bench"\n\n' "$PG"
        printf '[[tables]]\nname = "pgbench_accounts"\nshard_key = "aid"\nkey_type = "integer"\n'
    } >"$WORK/$side.toml"
    start_proxy "$WORK/$side.toml" "$port"
done

SCRIPT="$WORK/select_only.sql"
printf '\\set aid random(1, %d)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n' $((100000 * SCALE)) >"$SCRIPT"
chmod 644 "$SCRIPT"

# tps PORT MODE: one pgbench run's TPS.
tps() {
    pgbench -h 127.0.0.1 -p "$1" -U postgres -n -c "$CLIENTS" -j 2 -T "$DURATION" -M "$2" \
        -f "$SCRIPT" bench 2>&1 | awk '/^tps = / {print $3; exit}'
}

for mode in $MODES; do
    # Warm both up (backends, plan caches).
    pgbench -h 127.0.0.1 -p "$ON" -U postgres -n -c "$CLIENTS" -j 2 -T 2 -M "$mode" -f "$SCRIPT" bench >/dev/null 2>&1
    pgbench -h 127.0.0.1 -p "$OFF" -U postgres -n -c "$CLIENTS" -j 2 -T 2 -M "$mode" -f "$SCRIPT" bench >/dev/null 2>&1
    ratios=()
    for r in $(seq "$ROUNDS"); do
        if [ $((r % 2)) = 1 ]; then order="on off"; else order="off on"; fi
        declare -A t=()
        for side in $order; do
            port=$ON
            [ "$side" = off ] && port=$OFF
            t[$side]=$(tps "$port" "$mode")
            echo "   round $r  $mode  accounting $side: tps ${t[$side]} (load $(load))"
        done
        ratio=$(python3 -c "print(f'{${t[on]} / ${t[off]}:.4f}')")
        ratios+=("$ratio")
        echo "   round $r  $mode  on / off: $ratio"
    done
    python3 - "$mode" "${ratios[@]}" <<'PY'
import sys
mode, rs = sys.argv[1], [float(x) for x in sys.argv[2:]]
mean = sum(rs) / len(rs)
print(f"{mode}: accounting on / off per round: {', '.join(f'{r:.3f}' for r in rs)}; mean {mean:.3f} (overhead {100 * (1 - mean):+.1f}%)")
PY
done
echo "load at the end: $(load)"
