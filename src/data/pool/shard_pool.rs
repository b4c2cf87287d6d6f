//! The pool of backends for one shard.
//!
//! Hand-written rather than bb8/deadpool: the proxy needs the in-use, idle
//! and waiting counts per shard for `SHOW POOLS` and metrics, a synchronous
//! return path (a `Lease` dropped anywhere closes its backend), and the
//! 08006/53300 errors named after the shard; the code is small.

use super::addr::BackendAddr;
use super::backend::Backend;
use super::stats::ShardStats;
use crate::data::codec::error::sqlstate;
use crate::data::codec::SqlError;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Pool limits and timeouts (from `[pool]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub size: usize,
    pub connect_timeout: Duration,
    pub checkout_timeout: Duration,
    pub idle_timeout: Duration,
}

impl PoolSettings {
    pub fn from_config(c: &crate::config::PoolConfig) -> PoolSettings {
        PoolSettings {
            size: c.size,
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            checkout_timeout: Duration::from_millis(c.checkout_timeout_ms),
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
        }
    }
}

/// Backends for one shard.
#[derive(Debug)]
pub struct ShardPool {
    pub name: String,
    pub addr: BackendAddr,
    pub settings: PoolSettings,
    /// Boxed so checkout and release move a pointer, not the whole
    /// connection state.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<Backend>>>,
    permits: Arc<Semaphore>,
    pub stats: ShardStats,
    /// Two-phase commit on this shard: 0 not checked yet, 1 possible, 2 not
    /// (`max_prepared_transactions = 0`).
    pub twophase: std::sync::atomic::AtomicU8,
}

impl ShardPool {
    pub fn new(name: &str, addr: BackendAddr, settings: PoolSettings) -> Arc<ShardPool> {
        Arc::new(ShardPool {
            name: name.to_string(),
            addr,
            permits: Arc::new(Semaphore::new(settings.size)),
            settings,
            idle: Mutex::new(Vec::new()),
            stats: ShardStats::new(name),
            twophase: std::sync::atomic::AtomicU8::new(0),
        })
    }

    /// Takes an idle backend or opens a new one, waiting for a free slot up
    /// to the checkout timeout.
    pub async fn checkout(self: &Arc<Self>) -> Result<Lease, SqlError> {
        let permit =
            match self.permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    self.stats.waiting.fetch_add(1, Relaxed);
                    let r = tokio::time::timeout(
                        self.settings.checkout_timeout,
                        self.permits.clone().acquire_owned(),
                    )
                    .await;
                    self.stats.waiting.fetch_sub(1, Relaxed);
                    match r {
                        Ok(Ok(p)) => p,
                        _ => return Err(SqlError::new(
                            sqlstate::TOO_MANY_CONNECTIONS,
                            format!(
                                "no connection to shard \"{}\" became free within {:?}",
                                self.name, self.settings.checkout_timeout
                            ),
                        )
                        .with_hint(
                            "Raise pool.size or pool.checkout_timeout_ms, or shorten transactions.",
                        )),
                    }
                }
            };
        let backend = loop {
            let candidate = self.idle.lock().map(|mut v| v.pop()).unwrap_or(None);
            match candidate {
                Some(b) => {
                    self.stats.idle.fetch_sub(1, Relaxed);
                    // The server may have closed it meanwhile (shutdown,
                    // restart, pg_terminate_backend), even a moment ago: its
                    // FATAL must not reach the next client. One non-blocking
                    // read, far cheaper than the query that follows.
                    if b.is_alive() {
                        break b;
                    }
                }
                None => {
                    self.stats.connects.fetch_add(1, Relaxed);
                    match Backend::connect(&self.addr, &self.name, self.settings.connect_timeout)
                        .await
                    {
                        Ok(b) => {
                            self.stats.up.store(true, Relaxed);
                            break Box::new(b);
                        }
                        Err(e) => {
                            self.stats.up.store(false, Relaxed);
                            self.stats.connect_errors.fetch_add(1, Relaxed);
                            self.stats.errors.fetch_add(1, Relaxed);
                            return Err(e);
                        }
                    }
                }
            }
        };
        self.stats.in_use.fetch_add(1, Relaxed);
        Ok(Lease {
            pool: self.clone(),
            backend: Some(backend),
            _permit: permit,
        })
    }

    fn give_back(&self, mut b: Box<Backend>) {
        // No clock read per release: the reaper stamps it on its next round.
        b.idle_since = None;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(b);
            self.stats.idle.fetch_add(1, Relaxed);
        }
    }

    /// Closes idle backends unused for longer than the idle timeout. A
    /// backend returned since the last round is stamped now, so one is
    /// closed between the timeout and the timeout plus the reaper's period.
    pub fn reap_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            let before = idle.len();
            let limit = self.settings.idle_timeout;
            let now = Instant::now();
            idle.retain_mut(|b| {
                let since = *b.idle_since.get_or_insert(now);
                now.duration_since(since) < limit
            });
            self.stats.idle.fetch_sub(before - idle.len(), Relaxed);
        }
    }

    /// Closes every idle backend (on shutdown or when the shard is removed).
    pub fn close_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            self.stats.idle.fetch_sub(idle.len(), Relaxed);
            idle.clear();
        }
    }

    /// Backends currently handed out.
    pub fn in_use(&self) -> usize {
        self.stats.in_use.load(Relaxed)
    }
}

/// A backend checked out of a pool. Dropping a lease closes its backend;
/// [`Lease::release`] returns it for reuse (only when it is clean).
#[derive(Debug)]
pub struct Lease {
    pool: Arc<ShardPool>,
    backend: Option<Box<Backend>>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// The leased backend.
    #[inline]
    pub fn backend(&mut self) -> &mut Backend {
        // Invariant: `backend` is Some until release/drop consume the lease.
        self.backend
            .as_mut()
            .expect("lease holds a backend until consumed")
    }

    pub fn pool(&self) -> &Arc<ShardPool> {
        &self.pool
    }

    /// Returns a clean backend (idle, no open transaction) to the pool.
    pub fn release(mut self) {
        if let Some(b) = self.backend.take() {
            self.pool.give_back(b);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.stats.in_use.fetch_sub(1, Relaxed);
        // A backend still here was not released clean: closing it is the safe choice.
        self.backend.take();
    }
}
