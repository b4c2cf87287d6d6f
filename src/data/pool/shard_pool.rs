//! The pool of backends for one shard.
//!
//! Hand-written rather than bb8/deadpool: the proxy needs the in-use, idle
//! and waiting counts per shard for `SHOW POOLS` and metrics, a synchronous
//! return path (a `Lease` dropped anywhere closes its backend), and the
//! 08006/53300 errors named after the shard; the code is small.
//!
//! A checkout and a return each take one uncontended lock and nothing else
//! when a slot is free: slots, idle backends and the queue of waiting
//! checkouts share that lock, so there is no semaphore beside it (a tokio
//! semaphore's release takes its own lock every time). A checkout that
//! finds the pool full queues; a return hands its slot (and its backend, if
//! clean) to the oldest waiter, so waiters are served in order and a new
//! checkout never takes a slot from under one.

use super::backend::Backend;
use super::cancel_fence::CancelFence;
use super::endpoint::Endpoint;
use super::stats::ShardStats;
use crate::data::codec::error::sqlstate;
use crate::data::codec::SqlError;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

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
    pub endpoint: Arc<Endpoint>,
    pub settings: PoolSettings,
    slots: Mutex<Slots>,
    pub stats: ShardStats,
    /// Backends with a CancelRequest in flight: not reused until it is done.
    pub cancels: Arc<CancelFence>,
    /// Replaced by a RELOAD: backends coming back are closed, not kept.
    retired: std::sync::atomic::AtomicBool,
    /// Two-phase commit on this shard: 0 not checked yet, 1 possible, 2 not
    /// (`max_prepared_transactions = 0`).
    pub twophase: std::sync::atomic::AtomicU8,
}

/// A slot handed to a waiting checkout, with the backend that held it if
/// that one is clean.
type Handoff = Option<Box<Backend>>;

/// What the pool's lock guards. `taken` counts leases (and connects in
/// progress); with the idle backends they never exceed `settings.size`,
/// because a backend is only opened for a taken slot with none idle.
/// While anyone waits, every slot is taken: returns hand slots over.
#[derive(Debug, Default)]
struct Slots {
    taken: usize,
    /// Boxed so checkout and release move a pointer, not the whole
    /// connection state.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<Backend>>,
    /// Waiting checkouts, oldest first, each with an id to leave the queue.
    waiters: VecDeque<(u64, oneshot::Sender<Handoff>)>,
    next_waiter: u64,
}

impl ShardPool {
    pub fn new(name: &str, endpoint: Endpoint, settings: PoolSettings) -> Arc<ShardPool> {
        Arc::new(ShardPool {
            name: name.to_string(),
            endpoint: Arc::new(endpoint),
            settings,
            slots: Mutex::new(Slots::default()),
            stats: ShardStats::new(name),
            cancels: Arc::default(),
            retired: std::sync::atomic::AtomicBool::new(false),
            twophase: std::sync::atomic::AtomicU8::new(0),
        })
    }

    /// The pool's state. Nothing panics while holding the lock, so a
    /// poisoned one is still consistent.
    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the counts (plain stores under the lock).
    fn publish(&self, s: &Slots) {
        self.stats.in_use.store(s.taken, Relaxed);
        self.stats.idle.store(s.idle.len(), Relaxed);
        self.stats.waiting.store(s.waiters.len(), Relaxed);
    }

    /// Gives a slot back, with its backend when that is clean: to the oldest
    /// waiter if any, else to the pool.
    fn return_slot(&self, mut backend: Option<Box<Backend>>) {
        // Declared before the guard, so it is dropped (closed) after the
        // lock is released.
        let _closing;
        let mut s = self.slots();
        // A retired pool closes what comes back; a waiter still gets the slot.
        _closing = if self.retired.load(Relaxed) {
            backend.take()
        } else {
            None
        };
        while let Some((_, waiter)) = s.waiters.pop_front() {
            // Cannot fail: a waiter leaves the queue under this lock before
            // its receiver goes. Handled anyway: the slot goes on.
            match waiter.send(backend) {
                Ok(()) => {
                    self.publish(&s);
                    return;
                }
                Err(b) => backend = b,
            }
        }
        debug_assert!(s.taken > 0, "a slot returned that was never taken");
        s.taken = s.taken.saturating_sub(1);
        if let Some(mut b) = backend {
            // No clock read per release: the reaper stamps it on its next round.
            b.idle_since = None;
            s.idle.push(b);
        }
        self.publish(&s);
    }

    /// The most recently returned idle backend, passing over those with a
    /// cancel in flight (the one just returned is often the one just
    /// cancelled, and its next statement would wait for the cancel).
    fn take_idle(&self, s: &mut Slots) -> Option<Box<Backend>> {
        if self.cancels.is_raised() {
            if let Some(i) = s.idle.iter().rposition(|b| b.is_unfenced()) {
                return Some(s.idle.remove(i));
            }
        }
        s.idle.pop()
    }

    /// A slot: at once if one is free and nobody waits, else after the
    /// waiters before this one, up to the checkout timeout.
    async fn take_slot(&self) -> Result<Handoff, SqlError> {
        let (id, rx) = {
            let mut s = self.slots();
            if s.taken < self.settings.size && s.waiters.is_empty() {
                s.taken += 1;
                let b = self.take_idle(&mut s);
                self.publish(&s);
                return Ok(b);
            }
            let (tx, rx) = oneshot::channel();
            let id = s.next_waiter;
            s.next_waiter += 1;
            s.waiters.push_back((id, tx));
            self.publish(&s);
            (id, rx)
        };
        // Leaves the queue however the wait ends (timeout, or the checkout
        // dropped): a slot handed over meanwhile goes back, not astray.
        let mut wait = Waiting {
            pool: self,
            id,
            rx,
            done: false,
        };
        let handed = tokio::time::timeout(self.settings.checkout_timeout, &mut wait.rx).await;
        match handed {
            Ok(Ok(slot)) => {
                wait.done = true;
                Ok(slot)
            }
            // At the deadline a slot may have been handed over just now.
            _ => match wait.leave() {
                Some(slot) => Ok(slot),
                None => Err(SqlError::new(
                    sqlstate::TOO_MANY_CONNECTIONS,
                    format!(
                        "no connection to shard \"{}\" became free within {:?}",
                        self.name, self.settings.checkout_timeout
                    ),
                )
                .with_hint(
                    "Raise pool.size or pool.checkout_timeout_ms, or shorten transactions.",
                )),
            },
        }
    }

    /// Takes an idle backend or opens a new one, waiting for a free slot up
    /// to the checkout timeout.
    pub async fn checkout(self: &Arc<Self>) -> Result<Lease, SqlError> {
        let mut candidate = self.take_slot().await?;
        // From here the slot is the lease's: every early return gives it back.
        let mut lease = Lease {
            pool: self.clone(),
            backend: None,
            clean: false,
        };
        loop {
            match candidate.take() {
                // A cancel in flight for it is waited out first; one the
                // server never confirmed dooms it. Then, the server may
                // have closed it meanwhile (shutdown, restart,
                // pg_terminate_backend), even a moment ago: its FATAL must
                // not reach the next client. One non-blocking read, far
                // cheaper than the query that follows.
                Some(b) if b.cancel_settled().await && b.is_alive() => {
                    lease.backend = Some(b);
                    return Ok(lease);
                }
                Some(dead) => {
                    drop(dead);
                    let mut s = self.slots();
                    candidate = self.take_idle(&mut s);
                    self.publish(&s);
                }
                None => {
                    self.stats.connects.fetch_add(1, Relaxed);
                    match self.connect_new().await {
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

    /// A new backend to this pool's shard, with the pool's settings and
    /// cancel fence; the caller owns it (it takes no slot).
    pub async fn connect_new(&self) -> Result<Backend, SqlError> {
        Backend::connect(
            &self.endpoint,
            &self.name,
            self.settings.connect_timeout,
            self.cancels.clone(),
        )
        .await
    }

    /// Closes idle backends unused for longer than the idle timeout. A
    /// backend returned since the last round is stamped now, so one is
    /// closed between the timeout and the timeout plus the reaper's period.
    /// Doomed ones (a cancel never confirmed) are closed too.
    pub fn reap_idle(&self) {
        let limit = self.settings.idle_timeout;
        let now = Instant::now();
        let expired: Vec<_> = {
            let mut s = self.slots();
            let expired = s
                .idle
                .extract_if(.., |b| {
                    let since = *b.idle_since.get_or_insert(now);
                    now.duration_since(since) >= limit || b.is_doomed()
                })
                .collect();
            self.publish(&s);
            expired
        };
        // Closed outside the lock.
        drop(expired);
    }

    /// A RELOAD replaced this pool: its idle backends close now, and the
    /// ones its open leases bring back close as they come.
    pub fn retire(&self) {
        self.retired.store(true, Relaxed);
        self.close_idle();
    }

    /// Closes every idle backend (on shutdown; see also [`ShardPool::retire`]).
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

    /// The pool and the leased backend at once (a relay reads frames from
    /// one and counts them in the other's stats).
    #[inline]
    pub fn parts(&mut self) -> (&ShardPool, &mut Backend) {
        let backend = self
            .backend
            .as_mut()
            .expect("lease holds a backend until consumed");
        (&self.pool, backend)
    }

    /// Returns a clean backend (idle, no open transaction) to the pool.
    pub fn release(mut self) {
        self.clean = true;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let backend = self.backend.take();
        // A backend whose client turned standard_conforming_strings off
        // (by a route the planner cannot see) is never reused, nor one
        // whose cancel the server never confirmed.
        let reusable = backend
            .as_ref()
            .is_some_and(|b| !b.standard_strings_off && !b.is_doomed());
        if self.clean && reusable {
            self.pool.return_slot(backend);
        } else {
            // Not released clean: closing it is the safe choice, and it is
            // closed before its slot can open another.
            drop(backend);
            self.pool.return_slot(None);
        }
    }
}

/// A checkout in the waiters' queue.
struct Waiting<'a> {
    pool: &'a ShardPool,
    id: u64,
    rx: oneshot::Receiver<Handoff>,
    /// Out of the queue: a slot was received, or it left.
    done: bool,
}

impl Waiting<'_> {
    /// Leaves the queue; returns a slot handed over before it left.
    fn leave(&mut self) -> Option<Handoff> {
        if std::mem::replace(&mut self.done, true) {
            return None;
        }
        let mut s = self.pool.slots();
        // Under the lock no hand-over is in flight: the slot either came or
        // this waiter is still queued.
        if let Ok(slot) = self.rx.try_recv() {
            return Some(slot);
        }
        s.waiters.retain(|(id, _)| *id != self.id);
        self.pool.publish(&s);
        None
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.leave() {
            // The checkout was dropped after a slot came: pass it on.
            self.pool.return_slot(slot);
        }
    }
}
