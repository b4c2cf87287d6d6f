//! Per-shard counters, shared by the sessions (which bump them), the admin
//! console (`SHOW STATS`) and the Prometheus exporter. Pool counts and
//! health are per server ([`super::ServerStats`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Counters for one shard. Relaxed atomics: these are statistics, not locks.
#[derive(Debug)]
pub struct ShardStats {
    pub queries: AtomicU64,
    pub transactions: AtomicU64,
    pub errors: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Sum of query latencies in microseconds (avg = sum / queries).
    pub latency_us_total: AtomicU64,
    /// `shardproxy_query_duration_seconds{shard}`, resolved once here so a
    /// query never builds labels (a no-op handle when metrics are off).
    latency: metrics::Histogram,
}

impl ShardStats {
    /// Fresh counters for the shard called `shard`.
    pub fn new(shard: &str) -> ShardStats {
        ShardStats {
            queries: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            latency_us_total: AtomicU64::new(0),
            latency: crate::metrics::query_duration_histogram(shard),
        }
    }

    /// Records one query's latency: the running sum for `SHOW STATS` and the
    /// Prometheus histogram (one atomic add plus the histogram's bucket push).
    #[inline]
    pub fn record_latency(&self, d: Duration) {
        self.latency_us_total
            .fetch_add(d.as_micros() as u64, Relaxed);
        self.latency.record(d.as_secs_f64());
    }

    pub fn avg_latency_us(&self) -> u64 {
        let q = self.queries.load(Relaxed);
        self.latency_us_total
            .load(Relaxed)
            .checked_div(q)
            .unwrap_or(0)
    }
}
