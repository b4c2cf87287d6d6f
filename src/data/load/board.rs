//! The proxy's load board: the sliding [`Window`] behind one mutex, the
//! one-second tick sessions compare against, and the task that advances it.
//!
//! Two things feed it. Sessions merge their [`super::SessionTally`]
//! (keys and rows) now and then, taking the mutex once per merge. The tick
//! task adds, every second, what each pool's counters say the shard did
//! since the last tick (statements and busy time: the counters the relay
//! keeps anyway for `SHOW STATS`), so per-shard load costs the data path
//! nothing extra.

use super::snapshot::LoadSnapshot;
use super::tally::Hit;
use super::window::{Window, WindowShape, METRIC_BUCKETS};
use crate::config::HotConfig;
use crate::data::pool::ShardPool;
use crate::data::router::ShardMap;
use crate::runtime::{Proxy, Runtime};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The pool counters seen at the last tick.
struct Seen {
    pool: Weak<ShardPool>,
    queries: u64,
    busy_us: u64,
}

pub struct LoadBoard {
    /// Seconds since the board started, advanced by [`LoadBoard::advance`].
    tick: AtomicU64,
    window: Mutex<Window>,
    seen: Mutex<Vec<Seen>>,
}

impl LoadBoard {
    pub fn new(hot: &HotConfig) -> LoadBoard {
        LoadBoard {
            tick: AtomicU64::new(0),
            window: Mutex::new(Window::new(WindowShape::from_config(hot))),
            seen: Mutex::new(Vec::new()),
        }
    }

    /// The current tick (one relaxed load: sessions call it per keyed statement).
    #[inline]
    pub fn tick(&self) -> u64 {
        self.tick.load(Relaxed)
    }

    /// A session's keyed statements and rows per shard index.
    pub fn merge(&self, hits: &[Hit], rows: &[u64], rt: &Runtime) {
        let tick = self.tick();
        let Ok(mut w) = self.window.lock() else {
            return;
        };
        w.add_hits(tick, &rt.map, hits);
        let epoch = rt.map.epoch();
        for (i, &r) in rows.iter().enumerate() {
            if let Some(p) = rt.pools.get(i) {
                w.add_rows(tick, epoch, &p.name, r);
            }
        }
    }

    /// One second passed: adds what the pools did since the last call,
    /// takes a changed `[hot]` window shape (starting the window afresh) and
    /// drops slots that left the window.
    pub fn advance(&self, rt: &Runtime) {
        let tick = self.tick.fetch_add(1, Relaxed) + 1;
        let shape = WindowShape::from_config(&rt.config.hot);
        let epoch = rt.map.epoch();
        let (Ok(mut w), Ok(mut seen)) = (self.window.lock(), self.seen.lock()) else {
            return;
        };
        if w.shape() != shape {
            *w = Window::new(shape);
        }
        seen.retain(|s| s.pool.strong_count() > 0);
        for pool in &rt.pools {
            let queries = pool.stats.queries.load(Relaxed);
            let busy_us = pool.stats.latency_us_total.load(Relaxed);
            let prev = match seen
                .iter_mut()
                .find(|s| s.pool.as_ptr() == Arc::as_ptr(pool))
            {
                Some(s) => s,
                None => {
                    // A pool seen for the first time counts from now on.
                    seen.push(Seen {
                        pool: Arc::downgrade(pool),
                        queries,
                        busy_us,
                    });
                    continue;
                }
            };
            w.add_shard_work(
                tick,
                epoch,
                &pool.name,
                queries.saturating_sub(prev.queries),
                busy_us.saturating_sub(prev.busy_us),
            );
            prev.queries = queries;
            prev.busy_us = busy_us;
        }
        w.expire(tick);
    }

    /// The window's load, measured and placed under `map`.
    pub fn snapshot(&self, map: &ShardMap) -> LoadSnapshot {
        let tick = self.tick();
        match self.window.lock() {
            Ok(w) => w.snapshot(tick, map),
            Err(_) => LoadSnapshot::default(),
        }
    }

    /// Keyed statements since start per group and sixteenth of the hash
    /// circle, and rows since start per shard name (for metrics).
    pub fn totals(&self) -> (Vec<[u64; METRIC_BUCKETS]>, Vec<(String, u64)>) {
        match self.window.lock() {
            Ok(w) => (
                w.bucket_hits.clone(),
                w.rows_total.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            ),
            Err(_) => Default::default(),
        }
    }
}

/// Advances `proxy`'s board every second until the proxy is dropped.
pub fn spawn_ticker(proxy: Weak<Proxy>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick fires at once: it only records the pools' counters.
        loop {
            tick.tick().await;
            match proxy.upgrade() {
                Some(p) => p.load.advance(&p.runtime()),
                None => break,
            }
        }
    });
}
