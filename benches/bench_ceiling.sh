#!/usr/bin/env bash
# The ceiling of `shardproxy bench`: point reads per second one bench process
# drives against direct Postgres, next to `pgbench -S -M prepared` at the same
# connections, in alternating rounds, with the CPU each load generator used
# per operation. If the bench reached less than pgbench while using more CPU
# per read, it would be the bottleneck of its own measurements.
#
#   cargo build --release &&
#     sudo bash benches/bench_ceiling.sh | tee docs/bench-runs/bench-ceiling-$(date -u +%F)-<letter>.txt
#
# Environment: DURATION=10, ROUNDS=3, CLIENTS=16, THREADS=2 (pgbench -j and
# the bench's --threads), ROWS=100000.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib/cluster.sh

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-16}
THREADS=${THREADS:-2}
ROWS=${ROWS:-100000}

PG=$(free_port)
echo "== shardproxy bench ceiling, $(date -u '+%F %H:%M UTC'), $(nproc) cores, $(uname -r)"
echo "== $PROXY_BIN built $(date -u -r "$PROXY_BIN" '+%F %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== DURATION=$DURATION ROUNDS=$ROUNDS CLIENTS=$CLIENTS THREADS=$THREADS ROWS=$ROWS; load at start: $(load)"
start_cluster pg "$PG"
URL="postgres://postgres@127.0.0.1:$PG/bench"
# Same table size for both: pgbench's accounts and the bench's keys.
pgbench -i -q -s $((ROWS / 100000 > 0 ? ROWS / 100000 : 1)) -h 127.0.0.1 -p "$PG" -U postgres bench >/dev/null 2>&1
"$PROXY_BIN" bench --url "$URL" --init --rows "$ROWS" --duration 1 --warmup 0 --connections 2 --quiet >/dev/null
SCRIPT="$WORK/select_only.sql"
printf '\\set aid random(1, %d)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n' "$ROWS" >"$SCRIPT"
chmod 644 "$SCRIPT"

# cpu_of CMD...: runs CMD, prints its user+sys CPU seconds on fd 3.
cpu_of() {
    /usr/bin/time -f "%U %S" -o "$WORK/time" "$@"
    awk '{printf "%.2f", $1 + $2}' "$WORK/time" >&3
}

declare -a PG_TPS BENCH_TPS
for r in $(seq "$ROUNDS"); do
    for who in pgbench bench; do
        if [ "$who" = pgbench ]; then
            out=$( { cpu_of pgbench -h 127.0.0.1 -p "$PG" -U postgres -n -M prepared -c "$CLIENTS" -j "$THREADS" \
                -T "$DURATION" -f "$SCRIPT" bench 2>&1; } 3>"$WORK/cpu")
            ops=$(awk '/^tps = / {print $3; exit}' <<<"$out")
            PG_TPS+=("$ops")
        else
            out=$( { cpu_of "$PROXY_BIN" bench --url "$URL" --rows "$ROWS" --duration "$DURATION" --warmup 1 \
                --connections "$CLIENTS" --threads "$THREADS" --quiet --out "$WORK/bench.json" 2>&1; } 3>"$WORK/cpu")
            ops=$(python3 -c "import json; print(round(json.load(open('$WORK/bench.json'))['result']['ops_per_sec'], 1))")
            BENCH_TPS+=("$ops")
        fi
        cpu=$(cat "$WORK/cpu")
        # The bench runs one warm-up second more than it measures.
        secs=$DURATION
        [ "$who" = bench ] && secs=$((DURATION + 1))
        per=$(python3 -c "print(f'{$cpu / ($ops * $secs) * 1e6:.2f}')")
        echo "   round $r  $who: $ops reads/s, load generator CPU ${cpu} s (${per} µs per read) (load $(load))"
    done
done
python3 - "${PG_TPS[*]}" "${BENCH_TPS[*]}" <<'PY'
import sys
pg = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
mp, mb = sum(pg) / len(pg), sum(b) / len(b)
print(f"pgbench -S -M prepared: mean {mp:.0f} reads/s; shardproxy bench: mean {mb:.0f} reads/s; bench / pgbench {mb / mp:.3f}")
print("per round (bench / pgbench): " + ", ".join(f"{x / y:.3f}" for x, y in zip(b, pg)))
PY
echo "load at the end: $(load)"
