//! Per-shard counters, shared by the sessions (which bump them), the admin
//! console (`SHOW STATS`, `SHOW POOLS`) and the Prometheus exporter.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Counters for one shard. Relaxed atomics: these are statistics, not locks.
#[derive(Debug, Default)]
pub struct ShardStats {
    pub queries: AtomicU64,
    pub transactions: AtomicU64,
    pub errors: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Sum of query latencies in microseconds (avg = sum / queries).
    pub latency_us_total: AtomicU64,
    pub connects: AtomicU64,
    pub connect_errors: AtomicU64,
    pub in_use: AtomicUsize,
    pub idle: AtomicUsize,
    pub waiting: AtomicUsize,
    /// False after a failed connect, true again after a successful one.
    pub up: AtomicBool,
}

impl ShardStats {
    pub fn new() -> ShardStats {
        ShardStats {
            up: AtomicBool::new(true),
            ..Default::default()
        }
    }

    pub fn avg_latency_us(&self) -> u64 {
        let q = self.queries.load(Relaxed);
        self.latency_us_total
            .load(Relaxed)
            .checked_div(q)
            .unwrap_or(0)
    }
}
