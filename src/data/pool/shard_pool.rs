//! The pool of backends for one shard.
//!
//! Hand-written rather than bb8/deadpool: the proxy needs the in-use, idle
//! and waiting counts per shard for `SHOW POOLS` and metrics, a synchronous
//! return path (a `Lease` dropped anywhere closes its backend), and the
//! 08006/53300 errors named after the shard; the code is small.
//!
//! A checkout and a return each take one uncontended lock and nothing else
//! when a slot is free: slots and idle backends share that lock, so there is
//! no semaphore beside it (a tokio semaphore's release takes its own lock
//! every time). Only a checkout that finds the pool full waits, on a
//! [`Notify`] that returns signal while anyone is waiting.

use super::addr::BackendAddr;
use super::backend::Backend;
use super::stats::ShardStats;
use crate::data::codec::error::sqlstate;
use crate::data::codec::SqlError;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::MutexGuard;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

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
    slots: Mutex<Slots>,
    /// Signalled when a slot comes back while a checkout waits.
    freed: Notify,
    pub stats: ShardStats,
    /// Two-phase commit on this shard: 0 not checked yet, 1 possible, 2 not
    /// (`max_prepared_transactions = 0`).
    pub twophase: std::sync::atomic::AtomicU8,
}

/// What the pool's lock guards. `taken` counts leases (and connects in
/// progress); with the idle backends they never exceed `settings.size`,
/// because a backend is only opened for a taken slot with none idle.
#[derive(Debug, Default)]
struct Slots {
    taken: usize,
    /// Boxed so checkout and release move a pointer, not the whole
    /// connection state.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<Backend>>,
}

impl ShardPool {
    pub fn new(name: &str, addr: BackendAddr, settings: PoolSettings) -> Arc<ShardPool> {
        Arc::new(ShardPool {
            name: name.to_string(),
            addr,
            settings,
            slots: Mutex::new(Slots::default()),
            freed: Notify::new(),
            stats: ShardStats::new(name),
            twophase: std::sync::atomic::AtomicU8::new(0),
        })
    }

    /// The pool's state. Nothing panics while holding the lock, so a
    /// poisoned one is still consistent.
    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the in-use and idle counts (plain stores under the lock).
    fn publish(&self, s: &Slots) {
        self.stats.in_use.store(s.taken, Relaxed);
        self.stats.idle.store(s.idle.len(), Relaxed);
    }

    /// Takes a slot if one is free, with the most recently returned idle
    /// backend if there is one.
    fn take_slot(&self) -> Option<Option<Box<Backend>>> {
        let mut s = self.slots();
        if s.taken >= self.settings.size {
            return None;
        }
        s.taken += 1;
        let b = s.idle.pop();
        self.publish(&s);
        Some(b)
    }

    /// Gives a slot back, with its backend when that is clean.
    fn return_slot(&self, backend: Option<Box<Backend>>) {
        {
            let mut s = self.slots();
            s.taken = s.taken.saturating_sub(1);
            if let Some(mut b) = backend {
                // No clock read per release: the reaper stamps it on its next round.
                b.idle_since = None;
                s.idle.push(b);
            }
            self.publish(&s);
        }
        // A waiter counts itself before it looks for a slot, and looks under
        // the lock released above: either it saw this slot, or this load
        // sees it waiting (both SeqCst).
        if self.stats.waiting.load(SeqCst) > 0 {
            self.freed.notify_one();
        }
    }

    /// Waits up to the checkout timeout for a slot.
    async fn wait_for_slot(&self) -> Result<Option<Box<Backend>>, SqlError> {
        self.stats.waiting.fetch_add(1, SeqCst);
        let deadline = tokio::time::Instant::now() + self.settings.checkout_timeout;
        let r = loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a return in between is not missed.
            notified.as_mut().enable();
            if let Some(slot) = self.take_slot() {
                break Ok(slot);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break Err(SqlError::new(
                    sqlstate::TOO_MANY_CONNECTIONS,
                    format!(
                        "no connection to shard \"{}\" became free within {:?}",
                        self.name, self.settings.checkout_timeout
                    ),
                )
                .with_hint(
                    "Raise pool.size or pool.checkout_timeout_ms, or shorten transactions.",
                ));
            }
        };
        self.stats.waiting.fetch_sub(1, SeqCst);
        r
    }

    /// Takes an idle backend or opens a new one, waiting for a free slot up
    /// to the checkout timeout.
    pub async fn checkout(self: &Arc<Self>) -> Result<Lease, SqlError> {
        let mut candidate = match self.take_slot() {
            Some(c) => c,
            None => self.wait_for_slot().await?,
        };
        // From here the slot is the lease's: every early return gives it back.
        let mut lease = Lease {
            pool: self.clone(),
            backend: None,
            clean: false,
        };
        loop {
            match candidate.take() {
                // The server may have closed it meanwhile (shutdown,
                // restart, pg_terminate_backend), even a moment ago: its
                // FATAL must not reach the next client. One non-blocking
                // read, far cheaper than the query that follows.
                Some(b) if b.is_alive() => {
                    lease.backend = Some(b);
                    return Ok(lease);
                }
                Some(dead) => {
                    drop(dead);
                    let mut s = self.slots();
                    candidate = s.idle.pop();
                    self.publish(&s);
                }
                None => {
                    self.stats.connects.fetch_add(1, Relaxed);
                    let connected =
                        Backend::connect(&self.addr, &self.name, self.settings.connect_timeout)
                            .await;
                    match connected {
                        Ok(b) => {
                            self.stats.up.store(true, Relaxed);
                            lease.backend = Some(Box::new(b));
                            return Ok(lease);
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
        }
    }

    /// Closes idle backends unused for longer than the idle timeout. A
    /// backend returned since the last round is stamped now, so one is
    /// closed between the timeout and the timeout plus the reaper's period.
    pub fn reap_idle(&self) {
        let limit = self.settings.idle_timeout;
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut s = self.slots();
            let mut kept = Vec::with_capacity(s.idle.len());
            for mut b in s.idle.drain(..) {
                let since = *b.idle_since.get_or_insert(now);
                if now.duration_since(since) < limit {
                    kept.push(b);
                } else {
                    expired.push(b);
                }
            }
            s.idle = kept;
            self.publish(&s);
        }
        // Closed outside the lock.
        drop(expired);
    }

    /// Closes every idle backend (on shutdown or when the shard is removed).
    pub fn close_idle(&self) {
        let idle = {
            let mut s = self.slots();
            let idle = std::mem::take(&mut s.idle);
            self.publish(&s);
            idle
        };
        drop(idle);
    }

    /// Backends currently handed out.
    pub fn in_use(&self) -> usize {
        self.stats.in_use.load(Relaxed)
    }
}

/// A backend checked out of a pool: it holds one of the pool's slots.
/// Dropping a lease closes its backend; [`Lease::release`] returns it for
/// reuse (only when it is clean).
#[derive(Debug)]
pub struct Lease {
    pool: Arc<ShardPool>,
    backend: Option<Box<Backend>>,
    /// Set by [`Lease::release`]: the backend goes back to the idle list.
    clean: bool,
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
        self.clean = true;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let backend = self.backend.take();
        if self.clean {
            self.pool.return_slot(backend);
        } else {
            // Not released clean: closing it is the safe choice, and it is
            // closed before its slot can open another.
            drop(backend);
            self.pool.return_slot(None);
        }
    }
}
