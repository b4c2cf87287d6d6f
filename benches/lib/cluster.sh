# Shared by the load-accounting benches and benches/scenarios/: throwaway
# Postgres clusters and shardproxy processes in one temporary directory, all
# stopped by PID (or `pg_ctl -D <dir> stop`) when the script exits, never by
# process name. Source it after `set -euo pipefail`; it needs root (clusters
# run as the postgres user) and sets WORK, PGBIN, PROXY_BIN.

PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | tail -1)}
PROXY_BIN=${PROXY_BIN:-target/release/shardproxy}

[ "$(id -u)" = 0 ] || { echo "run as root (clusters run as the postgres user)" >&2; exit 1; }
[ -x "$PROXY_BIN" ] || { echo "$PROXY_BIN missing: run cargo build --release first" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 missing" >&2; exit 1; }

WORK=$(mktemp -d /tmp/shardproxy-bench.XXXXXX)
chown postgres "$WORK"
CLUSTERS=()   # data directories to stop
PIDS=()       # processes to stop

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

# start_cluster NAME PORT: a fresh cluster (wal_level=logical, 2PC on, fsync
# off) with database "bench".
start_cluster() {
    local dir="$WORK/$1"
    runuser -u postgres -- "$PGBIN/initdb" -D "$dir" -A trust -U postgres --no-sync -E UTF8 >/dev/null
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir" -l "$dir.log" -w -o \
        "-p $2 -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=300 \
         -c max_prepared_transactions=100 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c shared_buffers=128MB -c wal_level=logical \
         -c max_replication_slots=16 -c max_wal_senders=16" start >/dev/null
    CLUSTERS+=("$dir")
    psql -q -h 127.0.0.1 -p "$2" -U postgres -d postgres -c "CREATE DATABASE bench" >/dev/null
}

# start_proxy CONFIG PORT: shardproxy in its own session (as a service
# would run; see docs/benchmarks.md), waiting until it accepts. Sets PROXY_PID.
start_proxy() {
    RUST_LOG=warn setsid "$PROXY_BIN" serve --config "$1" >"$1.log" 2>&1 &
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

# proxy_head PORT: the [proxy] and [[users]] part of a benchmark config
# (trust, user postgres, one worker as in docs/benchmarks.md).
proxy_head() {
    printf '[proxy]\nlisten = "127.0.0.1:%s"\nauth = "trust"\nworkers = 1\ntwo_phase_commit = true\n\n' "$1"
    printf '[[users]]\nname = "postgres"\npassword = "unused-with-trust"\n\n'
}

# cpu_ticks PID: user+system CPU of a process so far, in clock ticks.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}
