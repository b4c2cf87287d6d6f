//! Prometheus metrics: names in one place so the README and the code agree.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `shardproxy_clients_connected` | gauge | | client connections open now (admin console included) |
//! | `shardproxy_clients_refused_total` | counter | | connections refused because `proxy.max_clients` was reached |
//! | `shardproxy_queries_total` | counter | `shard` | statements relayed to the shard |
//! | `shardproxy_transactions_total` | counter | `shard` | backend leases returned (transactions, or single statements outside one) |
//! | `shardproxy_errors_total` | counter | `shard` | errors from the shard, failed connects and lost connections |
//! | `shardproxy_bytes_sent_total` | counter | `shard` | bytes sent to the shard |
//! | `shardproxy_bytes_received_total` | counter | `shard` | bytes received from the shard |
//! | `shardproxy_pool_in_use` | gauge | `shard` | backends leased to clients (including connections being opened for them), all servers of the shard |
//! | `shardproxy_pool_idle` | gauge | `shard` | idle backends kept open, all servers of the shard |
//! | `shardproxy_pool_waiting` | gauge | `shard` | clients waiting for a free backend |
//! | `shardproxy_shard_up` | gauge | `shard` | 1 unless the last connect to (or health check of) the shard's primary failed |
//! | `shardproxy_query_duration_seconds` | histogram | `shard` | time from sending a statement to the shard's ReadyForQuery; buckets 50µs … 5s |
//! | `shardproxy_failovers_total` | counter | `shard` | times the health checker found a new primary for the shard |
//! | `shardproxy_server_up` | gauge | `shard`, `server` | 1 unless the last connect to (or check of) the server failed |
//! | `shardproxy_server_primary` | gauge | `shard`, `server` | 1 for the server taking the shard's writes |
//! | `shardproxy_server_in_rotation` | gauge | `shard`, `server` | 1 for a replica reads may go to |
//! | `shardproxy_replica_lag_seconds` | gauge | `shard`, `server` | replay lag measured by the proxy (0 for the primary, -1 not known yet) |
//! | `shardproxy_server_checkouts_total` | counter | `shard`, `server` | backends handed out on the server (reads routed to a replica) |
//! | `shardproxy_shard_load_share` | gauge | `shard` | the shard's share of all statements over `hot.window_secs` (what `SHOW HOT` lists) |
//! | `shardproxy_load_imbalance` | gauge | | the busiest shard's statements over the mean, over the window (1 = even) |
//! | `shardproxy_shard_rows_total` | counter | `shard` | rows returned or changed by single-shard statements (CommandComplete counts; `hot.enabled`) |
//! | `shardproxy_keyed_statements_total` | counter | `group`, `bucket` | statements routed by one key, by sixteenth of the hash circle (`bucket` 0 … f, the hash's top hex digit; `hot.enabled`) |
//! | `shardproxy_hot_key_share` | gauge | `group` | the heaviest shard-key value's share of all statements over the window (the key itself is in `SHOW HOT`, never a label) |
//!
//! How values get there:
//! - The latency histogram is recorded by the session on every query through a
//!   handle cached in [`ShardStats`](crate::data::pool::ShardStats), so the
//!   data path never builds label sets. The handle binds to the recorder that
//!   exists when the pool is created: [`start_exporter`] must run before the
//!   first `Proxy` is built (`app::bind` does so), otherwise those pools record
//!   into a no-op handle.
//! - Everything else is sampled from the per-shard atomics by [`record_gauges`],
//!   once a second by a task [`install`] starts (the listener's housekeeping
//!   also calls it every 5 s). The exporter crate renders a scrape without a
//!   hook we could use to sample first, so a 1 s sampler keeps values at most a
//!   second old for about 10 handle updates per shard per second. Counters are
//!   advanced by the delta since the last sample, so a pool replaced by RELOAD
//!   (its atomics start at 0) never makes a counter go backwards.
//! - Series of a shard removed by RELOAD disappear a minute after their last
//!   sample (the recorder's idle timeout, gauges and counters only: histogram
//!   handles are cached for the pool's lifetime and must stay registered).
//!
//! One endpoint per process: the recorder is process-global, and the HTTP
//! endpoint runs on its own small runtime thread so it outlives the runtime
//! that installed it (tests run several). A second proxy in the same process
//! asking for another address gets a warning and shares the first endpoint;
//! the most recently installed proxy is the one sampled.

use crate::data::pool::ShardPool;
use crate::runtime::Proxy;
use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use metrics_util::MetricKindMask;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

pub const CLIENTS_CONNECTED: &str = "shardproxy_clients_connected";
pub const CLIENTS_REFUSED: &str = "shardproxy_clients_refused_total";
pub const QUERIES: &str = "shardproxy_queries_total";
pub const TRANSACTIONS: &str = "shardproxy_transactions_total";
pub const ERRORS: &str = "shardproxy_errors_total";
pub const BYTES_SENT: &str = "shardproxy_bytes_sent_total";
pub const BYTES_RECEIVED: &str = "shardproxy_bytes_received_total";
pub const POOL_IN_USE: &str = "shardproxy_pool_in_use";
pub const POOL_IDLE: &str = "shardproxy_pool_idle";
pub const POOL_WAITING: &str = "shardproxy_pool_waiting";
pub const SHARD_UP: &str = "shardproxy_shard_up";
pub const QUERY_DURATION: &str = "shardproxy_query_duration_seconds";
pub const FAILOVERS: &str = "shardproxy_failovers_total";
pub const SERVER_UP: &str = "shardproxy_server_up";
pub const SERVER_PRIMARY: &str = "shardproxy_server_primary";
pub const SERVER_IN_ROTATION: &str = "shardproxy_server_in_rotation";
pub const REPLICA_LAG: &str = "shardproxy_replica_lag_seconds";
pub const SERVER_CHECKOUTS: &str = "shardproxy_server_checkouts_total";
pub const LOAD_SHARE: &str = "shardproxy_shard_load_share";
pub const LOAD_IMBALANCE: &str = "shardproxy_load_imbalance";
pub const SHARD_ROWS: &str = "shardproxy_shard_rows_total";
pub const KEYED_STATEMENTS: &str = "shardproxy_keyed_statements_total";
pub const HOT_KEY_SHARE: &str = "shardproxy_hot_key_share";

/// Every metric name, for docs and tests.
pub const ALL: &[&str] = &[
    CLIENTS_CONNECTED,
    CLIENTS_REFUSED,
    QUERIES,
    TRANSACTIONS,
    ERRORS,
    BYTES_SENT,
    BYTES_RECEIVED,
    POOL_IN_USE,
    POOL_IDLE,
    POOL_WAITING,
    SHARD_UP,
    QUERY_DURATION,
    FAILOVERS,
    SERVER_UP,
    SERVER_PRIMARY,
    SERVER_IN_ROTATION,
    REPLICA_LAG,
    SERVER_CHECKOUTS,
    LOAD_SHARE,
    LOAD_IMBALANCE,
    SHARD_ROWS,
    KEYED_STATEMENTS,
    HOT_KEY_SHARE,
];

/// Upper bounds of the latency histogram's buckets, in seconds (50µs … 5s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// How often [`install`]'s task samples the proxy.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Series not updated for this long are dropped (removed shards).
const IDLE_SERIES: Duration = Duration::from_secs(60);

/// Refusals so far; sampled into [`CLIENTS_REFUSED`] so they count even
/// before the recorder exists.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// The address the process-wide endpoint serves on, once started.
static EXPORTER: Mutex<Option<SocketAddr>> = Mutex::new(None);

/// The proxy whose state is sampled, and the handles it is sampled into.
static SAMPLER: Mutex<Sampler> = Mutex::new(Sampler {
    owner: Weak::new(),
    shards: None,
    load: None,
});

/// The latency histogram handle for `shard` (called once per pool).
pub fn query_duration_histogram(shard: &str) -> Histogram {
    metrics::histogram!(QUERY_DURATION, "shard" => shard.to_string())
}

/// A client was refused for `max_clients`.
pub fn client_refused() {
    REFUSED.fetch_add(1, Relaxed);
}

/// Installs the process-wide Prometheus recorder and starts its HTTP endpoint
/// on `listen` (`GET /metrics`). Idempotent; see the module docs for a second
/// address in one process.
pub fn start_exporter(listen: &str) -> Result<(), String> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| format!("metrics.listen: '{listen}' is not host:port"))?;
    let mut running = EXPORTER
        .lock()
        .map_err(|_| "metrics exporter state poisoned".to_string())?;
    if let Some(existing) = *running {
        if existing != addr {
            tracing::warn!(
                "metrics are already served on {existing} in this process; not also on {addr}"
            );
        }
        return Ok(());
    }
    let builder = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full(QUERY_DURATION.into()), LATENCY_BUCKETS)
        .map_err(|e| format!("metrics: {e}"))?
        .idle_timeout(
            MetricKindMask::COUNTER | MetricKindMask::GAUGE,
            Some(IDLE_SERIES),
        );
    // Its own runtime thread (what `PrometheusBuilder::install` does outside
    // a runtime): the endpoint must not die with the runtime that started it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("metrics: cannot create a runtime: {e}"))?;
    let (recorder, exporter) = {
        let _entered = rt.enter();
        builder
            .build()
            .map_err(|e| format!("metrics.listen {addr}: {e}"))?
    };
    metrics::set_global_recorder(recorder)
        .map_err(|e| format!("metrics: cannot install the recorder: {e}"))?;
    std::thread::Builder::new()
        .name("shardproxy-metrics".into())
        .spawn(move || {
            if let Err(e) = rt.block_on(exporter) {
                tracing::error!("metrics endpoint stopped: {e:?}");
            }
        })
        .map_err(|e| format!("metrics: cannot start the endpoint thread: {e}"))?;
    describe();
    *running = Some(addr);
    tracing::info!("metrics on http://{addr}/metrics");
    Ok(())
}

/// Starts the Prometheus endpoint on `listen` (if [`start_exporter`] has not
/// yet) and samples `proxy` into it every second until the proxy is dropped.
pub fn install(listen: &str, proxy: Arc<Proxy>) -> Result<(), String> {
    start_exporter(listen)?;
    if let Ok(mut s) = SAMPLER.lock() {
        s.owner = Arc::downgrade(&proxy);
        s.shards = None;
        s.load = None;
    }
    record_gauges(&proxy);
    let weak = Arc::downgrade(&proxy);
    drop(proxy);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            match weak.upgrade() {
                Some(p) => record_gauges(&p),
                None => break,
            }
        }
    });
    Ok(())
}

/// Samples clients, pools and per-shard counters of `proxy` into the
/// recorder. A no-op unless `proxy` is the one [`install`] was given.
pub fn record_gauges(proxy: &Proxy) {
    let Ok(mut s) = SAMPLER.lock() else {
        return;
    };
    if !std::ptr::eq(s.owner.as_ptr(), proxy) {
        return;
    }
    s.sample(proxy);
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(CLIENTS_CONNECTED, "Client connections open now.");
    describe_counter!(
        CLIENTS_REFUSED,
        "Connections refused because proxy.max_clients was reached."
    );
    describe_counter!(QUERIES, "Statements relayed to the shard.");
    describe_counter!(TRANSACTIONS, "Backend leases returned to the shard's pool.");
    describe_counter!(
        ERRORS,
        "Errors from the shard, failed connects and lost connections."
    );
    describe_counter!(BYTES_SENT, Unit::Bytes, "Bytes sent to the shard.");
    describe_counter!(
        BYTES_RECEIVED,
        Unit::Bytes,
        "Bytes received from the shard."
    );
    describe_gauge!(POOL_IN_USE, "Backends leased to clients.");
    describe_gauge!(POOL_IDLE, "Idle backends kept open.");
    describe_gauge!(POOL_WAITING, "Clients waiting for a free backend.");
    describe_gauge!(
        SHARD_UP,
        "1 unless the last connect to (or check of) the shard's primary failed."
    );
    describe_counter!(
        FAILOVERS,
        "Times the health checker found a new primary for the shard."
    );
    describe_gauge!(
        SERVER_UP,
        "1 unless the last connect to (or check of) the server failed."
    );
    describe_gauge!(
        SERVER_PRIMARY,
        "1 for the server taking the shard's writes."
    );
    describe_gauge!(
        SERVER_IN_ROTATION,
        "1 for a replica that reads may go to (healthy, lag within max_replica_lag_ms)."
    );
    describe_gauge!(
        REPLICA_LAG,
        Unit::Seconds,
        "Replay lag of a replica measured by the proxy (-1: not known yet)."
    );
    describe_counter!(SERVER_CHECKOUTS, "Backends handed out on the server.");
    describe_histogram!(
        QUERY_DURATION,
        Unit::Seconds,
        "Time from sending a statement to the shard's ReadyForQuery."
    );
    describe_gauge!(
        LOAD_SHARE,
        "The shard's share of all statements over hot.window_secs."
    );
    describe_gauge!(
        LOAD_IMBALANCE,
        "The busiest shard's statements over the mean, over hot.window_secs."
    );
    describe_counter!(
        SHARD_ROWS,
        "Rows returned or changed by single-shard statements."
    );
    describe_counter!(
        KEYED_STATEMENTS,
        "Statements routed by one key, by sixteenth of the hash circle."
    );
    describe_gauge!(
        HOT_KEY_SHARE,
        "The heaviest shard-key value's share of all statements over hot.window_secs."
    );
}

/// Cached handles, so sampling allocates no label sets after the first time.
struct Sampler {
    owner: Weak<Proxy>,
    /// None until the first sample (a `HashMap` cannot be built in a static).
    shards: Option<HashMap<String, ShardSeries>>,
    load: Option<LoadSeries>,
}

/// The load board's series (see [`crate::data::load`]).
#[derive(Default)]
struct LoadSeries {
    share: HashMap<String, Gauge>,
    /// Rows counter and the total already reported, per shard.
    rows: HashMap<String, (Counter, u64)>,
    /// Keyed-statement counters and totals reported, per (group, bucket).
    keyed: HashMap<(String, usize), (Counter, u64)>,
    hot_key: HashMap<String, Gauge>,
}

impl LoadSeries {
    fn sample(&mut self, proxy: &Proxy, map: &crate::data::router::ShardMap) {
        let load = proxy.load.snapshot(map);
        for s in &load.shards {
            self.share
                .entry(s.name.clone())
                .or_insert_with(|| metrics::gauge!(LOAD_SHARE, "shard" => s.name.clone()))
                .set(load.share(s.statements));
        }
        metrics::gauge!(LOAD_IMBALANCE).set(load.imbalance());
        for (g, name) in map.groups().iter().enumerate() {
            let top = load
                .keys
                .iter()
                .find(|k| k.group == g)
                .map_or(0.0, |k| load.share(k.count));
            self.hot_key
                .entry(name.clone())
                .or_insert_with(|| metrics::gauge!(HOT_KEY_SHARE, "group" => name.clone()))
                .set(top);
        }
        let (buckets, mut rows) = proxy.load.totals();
        // Every shard's and bucket's series exists from the first sample on,
        // at 0 until something is counted.
        for s in &load.shards {
            if !rows.iter().any(|(n, _)| n == &s.name) {
                rows.push((s.name.clone(), 0));
            }
        }
        for (shard, total) in rows {
            let (c, last) = self
                .rows
                .entry(shard.clone())
                .or_insert_with(|| (metrics::counter!(SHARD_ROWS, "shard" => shard.clone()), 0));
            c.increment(total.saturating_sub(*last));
            *last = (*last).max(total);
        }
        for (g, group) in map.groups().iter().enumerate() {
            let per = buckets.get(g).copied().unwrap_or_default();
            for (b, &total) in per.iter().enumerate() {
                let (c, last) = self.keyed.entry((group.clone(), b)).or_insert_with(|| {
                    let bucket = format!("{b:x}");
                    (
                        metrics::counter!(KEYED_STATEMENTS, "group" => group.clone(), "bucket" => bucket),
                        0,
                    )
                });
                c.increment(total.saturating_sub(*last));
                *last = (*last).max(total);
            }
        }
    }
}

/// The series of one shard and the counter values already reported.
struct ShardSeries {
    /// The pool last sampled under this name; another pool (after RELOAD)
    /// starts its counters from 0.
    pool: Weak<ShardPool>,
    /// queries, transactions, errors, bytes_sent, bytes_received.
    last: [u64; 5],
    counters: [Counter; 5],
    in_use: Gauge,
    idle: Gauge,
    waiting: Gauge,
    up: Gauge,
    failovers: Counter,
    last_failovers: u64,
    /// One per server of the pool, in its order.
    servers: Vec<ServerSeries>,
}

/// The series of one server of a shard.
struct ServerSeries {
    up: Gauge,
    primary: Gauge,
    in_rotation: Gauge,
    lag: Gauge,
    checkouts: Counter,
    last_checkouts: u64,
}

impl ServerSeries {
    fn new(shard: &str, server: &str) -> ServerSeries {
        let labels = || [("shard", shard.to_string()), ("server", server.to_string())];
        ServerSeries {
            up: metrics::gauge!(SERVER_UP, &labels()),
            primary: metrics::gauge!(SERVER_PRIMARY, &labels()),
            in_rotation: metrics::gauge!(SERVER_IN_ROTATION, &labels()),
            lag: metrics::gauge!(REPLICA_LAG, &labels()),
            checkouts: metrics::counter!(SERVER_CHECKOUTS, &labels()),
            last_checkouts: 0,
        }
    }
}

impl ShardSeries {
    fn new(pool: &Arc<ShardPool>) -> ShardSeries {
        let label = |name: &'static str| metrics::counter!(name, "shard" => pool.name.clone());
        let gauge = |name: &'static str| metrics::gauge!(name, "shard" => pool.name.clone());
        ShardSeries {
            pool: Arc::downgrade(pool),
            last: [0; 5],
            counters: [
                label(QUERIES),
                label(TRANSACTIONS),
                label(ERRORS),
                label(BYTES_SENT),
                label(BYTES_RECEIVED),
            ],
            in_use: gauge(POOL_IN_USE),
            idle: gauge(POOL_IDLE),
            waiting: gauge(POOL_WAITING),
            up: gauge(SHARD_UP),
            failovers: label(FAILOVERS),
            last_failovers: 0,
            servers: ShardSeries::server_series(pool),
        }
    }

    fn server_series(pool: &ShardPool) -> Vec<ServerSeries> {
        pool.servers()
            .iter()
            .map(|s| ServerSeries::new(&pool.name, &s.endpoint.addr.display()))
            .collect()
    }
}

impl Sampler {
    fn sample(&mut self, proxy: &Proxy) {
        metrics::gauge!(CLIENTS_CONNECTED).set(proxy.clients.count() as f64);
        metrics::counter!(CLIENTS_REFUSED).absolute(REFUSED.load(Relaxed));
        let rt = proxy.runtime();
        self.load
            .get_or_insert_with(LoadSeries::default)
            .sample(proxy, &rt.map);
        let shards = self.shards.get_or_insert_with(HashMap::new);
        // Forget shards RELOAD removed, so a re-added one gets fresh handles
        // (its old series may have been dropped by the idle timeout).
        shards.retain(|name, _| rt.pools.iter().any(|p| &p.name == name));
        for pool in &rt.pools {
            let series = shards
                .entry(pool.name.clone())
                .or_insert_with(|| ShardSeries::new(pool));
            if !series.pool.upgrade().is_some_and(|p| Arc::ptr_eq(&p, pool)) {
                series.pool = Arc::downgrade(pool);
                series.last = [0; 5];
                series.last_failovers = 0;
                series.servers = ShardSeries::server_series(pool);
            }
            let st = &pool.stats;
            let now = [
                st.queries.load(Relaxed),
                st.transactions.load(Relaxed),
                st.errors.load(Relaxed),
                st.bytes_sent.load(Relaxed),
                st.bytes_received.load(Relaxed),
            ];
            for ((counter, last), now) in series.counters.iter().zip(&mut series.last).zip(now) {
                // increment(0) too: it marks the series as alive.
                counter.increment(now.saturating_sub(*last));
                *last = (*last).max(now);
            }
            let flag = |b: bool| if b { 1.0 } else { 0.0 };
            series.in_use.set(pool.in_use() as f64);
            series.idle.set(pool.idle() as f64);
            series.waiting.set(pool.waiting() as f64);
            series.up.set(flag(pool.primary().stats.up.load(Relaxed)));
            let failovers = pool.failovers.load(Relaxed);
            series
                .failovers
                .increment(failovers.saturating_sub(series.last_failovers));
            series.last_failovers = series.last_failovers.max(failovers);
            let primary = pool.primary_index();
            for (i, (server, s)) in pool.servers().iter().zip(&mut series.servers).enumerate() {
                let st = &server.stats;
                s.up.set(flag(st.up.load(Relaxed)));
                s.primary.set(flag(i == primary));
                s.in_rotation.set(flag(st.in_rotation.load(Relaxed)));
                let lag = st.lag_ms.load(Relaxed);
                s.lag.set(if lag == u64::MAX {
                    -1.0
                } else {
                    lag as f64 / 1000.0
                });
                let n = st.checkouts.load(Relaxed);
                s.checkouts.increment(n.saturating_sub(s.last_checkouts));
                s.last_checkouts = s.last_checkouts.max(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The value of the sample line `series value` in a Prometheus rendering.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn counters_follow_the_atomics_across_a_pool_replaced_by_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        let cfg = |size: usize| {
            format!(
                "[pool]\nsize = {size}\n[[shards]]\nname = \"s0\"\nurl = \"postgres://u@127.0.0.1:1/db\"\n"
            )
        };
        std::fs::write(&path, cfg(2)).unwrap();
        let proxy = Proxy::new(Config::load(&path).unwrap()).unwrap();
        // A private recorder: the global one belongs to whichever test binary installs it.
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let mut s = Sampler {
            owner: Weak::new(),
            shards: None,
            load: None,
        };
        let queries = "shardproxy_queries_total{shard=\"s0\"}";
        metrics::with_local_recorder(&recorder, || {
            let p0 = proxy.runtime().pools[0].clone();
            p0.stats.queries.store(5, Relaxed);
            p0.servers()[0].stats.idle.store(3, Relaxed);
            p0.servers()[0].stats.up.store(false, Relaxed);
            REFUSED.fetch_add(1, Relaxed);
            s.sample(&proxy);
            p0.stats.queries.store(7, Relaxed);
            s.sample(&proxy);
        });
        let text = handle.render();
        assert_eq!(value(&text, queries), Some(7.0), "{text}");
        assert_eq!(
            value(&text, "shardproxy_pool_idle{shard=\"s0\"}"),
            Some(3.0)
        );
        assert_eq!(value(&text, "shardproxy_shard_up{shard=\"s0\"}"), Some(0.0));
        assert_eq!(value(&text, "shardproxy_clients_connected"), Some(0.0));
        assert!(value(&text, "shardproxy_clients_refused_total").unwrap() >= 1.0);
        // New pool settings: RELOAD builds a new pool whose atomics start at 0;
        // the counter keeps counting up from where it was.
        std::fs::write(&path, cfg(3)).unwrap();
        proxy.reload().unwrap();
        metrics::with_local_recorder(&recorder, || {
            proxy.runtime().pools[0].stats.queries.store(2, Relaxed);
            s.sample(&proxy);
        });
        assert_eq!(value(&handle.render(), queries), Some(9.0));
    }

    #[test]
    fn only_the_installed_proxy_is_sampled() {
        let c = Config::parse(
            "[[shards]]\nname = \"x\"\nurl = \"postgres://u@127.0.0.1:1/db\"\n",
            "t.toml",
        )
        .unwrap();
        let proxy = Proxy::new(c).unwrap();
        record_gauges(&proxy);
        let s = SAMPLER.lock().unwrap();
        assert!(s.shards.is_none() || !s.shards.as_ref().unwrap().contains_key("x"));
    }
}
