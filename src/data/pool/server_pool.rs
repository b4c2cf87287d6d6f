//! The backends of one server of a shard (its primary, or one replica):
//! slots, idle backends and waiting checkouts under one lock, plus what the
//! health checker last learnt about the server.
//!
//! A checkout and a return each take one uncontended lock and nothing else
//! when a slot is free: slots, idle backends and the queue of waiting
//! checkouts share that lock, so there is no semaphore beside it (a tokio
//! semaphore's release takes its own lock every time). A checkout that
//! finds the pool full queues; a return hands its slot (and its backend, if
//! clean) to the oldest waiter, so waiters are served in order and a new
//! checkout never takes a slot from under one.

use super::backend::Backend;
use super::endpoint::Endpoint;
use super::shard_pool::PoolSettings;
use crate::data::codec::error::sqlstate;
use crate::data::codec::SqlError;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::oneshot;

/// A slot handed to a waiting checkout, with the backend that held it if
/// that one is clean.
pub(super) type Handoff = Option<Box<Backend>>;

/// What a server is to its shard, as the health checker last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// Takes the shard's writes (and reads when no replica is in rotation).
    Primary = 0,
    /// In recovery, streaming from the primary: may serve reads.
    Replica = 1,
    /// Out of recovery but not the shard's primary (an old primary that
    /// came back after a failover, on an older timeline): used for nothing.
    Diverged = 2,
}

impl Role {
    fn from_u8(v: u8) -> Role {
        match v {
            0 => Role::Primary,
            1 => Role::Replica,
            _ => Role::Diverged,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Diverged => "diverged",
        }
    }
}

/// Counters and health of one server. Relaxed atomics: statistics and
/// hints, never locks.
#[derive(Debug)]
pub struct ServerStats {
    pub in_use: AtomicUsize,
    pub idle: AtomicUsize,
    pub waiting: AtomicUsize,
    pub connects: AtomicU64,
    pub connect_errors: AtomicU64,
    /// Backends handed out (reads routed here, for a replica).
    pub checkouts: AtomicU64,
    /// False after a failed connect or health check, true after a good one.
    pub up: AtomicBool,
    role: AtomicU8,
    /// The last check found it in recovery.
    pub in_recovery: AtomicBool,
    /// A replica the read policy may pick (healthy, in recovery, lag within
    /// `max_replica_lag_ms`); set by the health checker.
    pub in_rotation: AtomicBool,
    /// Replay position (replicas) or WAL write position (primary) at the
    /// last check.
    pub lsn: AtomicU64,
    /// Replay lag measured by the proxy, in ms (`u64::MAX`: not known).
    pub lag_ms: AtomicU64,
}

impl ServerStats {
    fn new(role: Role) -> ServerStats {
        ServerStats {
            in_use: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            connects: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            checkouts: AtomicU64::new(0),
            up: AtomicBool::new(true),
            role: AtomicU8::new(role as u8),
            in_recovery: AtomicBool::new(role == Role::Replica),
            in_rotation: AtomicBool::new(false),
            lsn: AtomicU64::new(0),
            lag_ms: AtomicU64::new(if role == Role::Primary { 0 } else { u64::MAX }),
        }
    }

    pub fn role(&self) -> Role {
        Role::from_u8(self.role.load(Relaxed))
    }

    pub(super) fn set_role(&self, r: Role) {
        self.role.store(r as u8, Relaxed);
    }
}

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

/// The backends of one server.
#[derive(Debug)]
pub struct ServerPool {
    pub endpoint: Arc<Endpoint>,
    slots: Mutex<Slots>,
    pub stats: ServerStats,
    /// The health checker's own connection (not a pool slot).
    pub(super) monitor: tokio::sync::Mutex<Option<Backend>>,
    /// Its shard's pool was replaced by a RELOAD: backends coming back are
    /// closed, not kept.
    pub(super) retired: AtomicBool,
}

impl ServerPool {
    pub(super) fn new(endpoint: Endpoint, role: Role) -> ServerPool {
        ServerPool {
            endpoint: Arc::new(endpoint),
            slots: Mutex::new(Slots::default()),
            stats: ServerStats::new(role),
            monitor: tokio::sync::Mutex::new(None),
            retired: AtomicBool::new(false),
        }
    }

    /// Its health in a word, for `SHOW SHARDS` and logs: `down`, `up` or
    /// `read-only` (a primary found in recovery), `in rotation`, `lagging`
    /// or `catching up` (a replica kept from reads until it replays past
    /// `replay_floor`, see `ShardPool::require_replay`), `diverged`.
    pub fn state(&self, replay_floor: u64) -> &'static str {
        let st = &self.stats;
        if !st.up.load(Relaxed) {
            return "down";
        }
        match st.role() {
            Role::Primary if st.in_recovery.load(Relaxed) => "read-only",
            Role::Primary => "up",
            Role::Replica if st.lsn.load(Relaxed) < replay_floor => "catching up",
            Role::Replica if st.in_rotation.load(Relaxed) => "in rotation",
            Role::Replica if st.lag_ms.load(Relaxed) == u64::MAX => "not checked",
            Role::Replica => "lagging",
            Role::Diverged => "diverged",
        }
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
    pub(super) fn return_slot(&self, mut backend: Option<Box<Backend>>) {
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
    fn take_idle(s: &mut Slots, fenced: bool) -> Option<Box<Backend>> {
        if fenced {
            if let Some(i) = s.idle.iter().rposition(|b| b.is_unfenced()) {
                return Some(s.idle.remove(i));
            }
        }
        s.idle.pop()
    }

    /// Another idle backend after one turned out dead (see `ShardPool::checkout`).
    pub(super) fn next_idle(&self, fenced: bool) -> Option<Box<Backend>> {
        let mut s = self.slots();
        let b = Self::take_idle(&mut s, fenced);
        self.publish(&s);
        b
    }

    /// A slot: at once if one is free and nobody waits, else after the
    /// waiters before this one, up to the checkout timeout.
    pub(super) async fn take_slot(
        &self,
        settings: &PoolSettings,
        shard: &str,
        fenced: bool,
    ) -> Result<Handoff, SqlError> {
        let (id, rx) = {
            let mut s = self.slots();
            if s.taken < settings.size && s.waiters.is_empty() {
                s.taken += 1;
                let b = Self::take_idle(&mut s, fenced);
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
        let handed = tokio::time::timeout(settings.checkout_timeout, &mut wait.rx).await;
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
                        "no connection to shard \"{shard}\" ({}) became free within {:?}",
                        self.endpoint.addr.display(),
                        settings.checkout_timeout
                    ),
                )
                .with_hint(
                    "Raise pool.size or pool.checkout_timeout_ms, or shorten transactions.",
                )),
            },
        }
    }

    /// Closes idle backends unused for longer than `limit`. A backend
    /// returned since the last round is stamped now, so one is closed
    /// between the timeout and the timeout plus the reaper's period.
    /// Doomed ones (a cancel never confirmed) are closed too.
    pub(super) fn reap_idle(&self, limit: std::time::Duration) {
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

    /// Closes every idle backend.
    pub fn close_idle(&self) {
        let idle = {
            let mut s = self.slots();
            let idle = std::mem::take(&mut s.idle);
            self.publish(&s);
            idle
        };
        drop(idle);
    }
}

/// A checkout in the waiters' queue.
struct Waiting<'a> {
    pool: &'a ServerPool,
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
