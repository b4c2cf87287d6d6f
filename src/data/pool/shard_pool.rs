//! The pool of backends for one shard: its primary's and its replicas'
//! (one [`ServerPool`] each), which of them is the primary now, and how a
//! read picks a replica.
//!
//! Hand-written rather than bb8/deadpool: the proxy needs the in-use, idle
//! and waiting counts per server for `SHOW POOLS` and metrics, a synchronous
//! return path (a `Lease` dropped anywhere closes its backend), and the
//! 08006/53300 errors named after the shard; the code is small.
//!
//! Writes, transactions and everything not known to be a plain read check
//! out from the primary ([`ShardPool::checkout`]). A read outside a
//! transaction asks [`ShardPool::checkout_read`], which picks a replica the
//! health checker ([`super::health`]) keeps in rotation, by the configured
//! policy, and falls back to the primary when none is. A failover (the
//! checker finding another server out of recovery on a newer timeline)
//! only changes which index [`ShardPool::checkout`] uses.

use super::backend::Backend;
use super::cancel_fence::CancelFence;
use super::endpoint::Endpoint;
use super::server_pool::{Role, ServerPool};
use super::stats::ShardStats;
use crate::data::codec::SqlError;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

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

/// How a read picks among the replicas in rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPolicy {
    /// Each in turn.
    RoundRobin,
    /// The one with the fewest backends in use (and waiting), ties in turn.
    LeastConnections,
}

/// Replica settings (from `[replicas]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSettings {
    pub policy: ReadPolicy,
    /// A replica whose replay lag passes this leaves rotation.
    pub max_lag: Duration,
    /// How often the health checker asks every server of the shard.
    pub check_interval: Duration,
}

impl ReplicaSettings {
    pub fn from_config(c: &crate::config::ReplicasConfig) -> ReplicaSettings {
        ReplicaSettings {
            policy: if c.read_policy == "least_connections" {
                ReadPolicy::LeastConnections
            } else {
                ReadPolicy::RoundRobin
            },
            max_lag: Duration::from_millis(c.max_replica_lag_ms),
            check_interval: Duration::from_millis(c.check_interval_ms),
        }
    }
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        ReplicaSettings::from_config(&crate::config::ReplicasConfig::default())
    }
}

/// Backends for one shard.
#[derive(Debug)]
pub struct ShardPool {
    pub name: String,
    pub settings: PoolSettings,
    pub replica_settings: ReplicaSettings,
    /// The configured primary first, then the replicas, in config order.
    servers: Vec<ServerPool>,
    /// Index into `servers` of the server taking writes.
    primary: AtomicUsize,
    /// Round-robin position among the replicas.
    next_replica: AtomicUsize,
    /// Replicas serve reads only once they have replayed up to this LSN
    /// (set when a move switches an interval to this shard, see
    /// [`ShardPool::require_replay`]).
    min_replay_lsn: AtomicU64,
    pub stats: ShardStats,
    /// Backends with a CancelRequest in flight: not reused until it is done.
    pub cancels: Arc<CancelFence>,
    /// Two-phase commit on this shard: 0 not checked yet, 1 possible, 2 not
    /// (`max_prepared_transactions = 0`).
    pub twophase: AtomicU8,
    /// Primaries replaced by the health checker.
    pub failovers: AtomicU64,
    /// The primary's WAL positions over time, for replica lag (health checker only).
    pub(super) lag: std::sync::Mutex<super::lag::LagHistory>,
}

impl ShardPool {
    /// A pool for a shard with one server (no replicas).
    pub fn new(name: &str, endpoint: Endpoint, settings: PoolSettings) -> Arc<ShardPool> {
        ShardPool::with_replicas(
            name,
            endpoint,
            Vec::new(),
            settings,
            ReplicaSettings::default(),
        )
    }

    /// A pool for a shard with a primary and `replicas`.
    pub fn with_replicas(
        name: &str,
        primary: Endpoint,
        replicas: Vec<Endpoint>,
        settings: PoolSettings,
        replica_settings: ReplicaSettings,
    ) -> Arc<ShardPool> {
        let mut servers = vec![ServerPool::new(primary, Role::Primary)];
        servers.extend(
            replicas
                .into_iter()
                .map(|e| ServerPool::new(e, Role::Replica)),
        );
        Arc::new(ShardPool {
            name: name.to_string(),
            settings,
            replica_settings,
            servers,
            primary: AtomicUsize::new(0),
            next_replica: AtomicUsize::new(0),
            min_replay_lsn: AtomicU64::new(0),
            stats: ShardStats::new(name),
            cancels: Arc::default(),
            twophase: AtomicU8::new(0),
            failovers: AtomicU64::new(0),
            lag: Default::default(),
        })
    }

    /// Every server of the shard, the configured primary first.
    pub fn servers(&self) -> &[ServerPool] {
        &self.servers
    }

    /// The URLs this pool was built from (primary, then replicas).
    pub fn configured_urls(&self) -> impl Iterator<Item = &str> {
        self.servers.iter().map(|s| s.endpoint.url.as_str())
    }

    /// Whether the shard has replicas (and so a health checker).
    pub fn has_replicas(&self) -> bool {
        self.servers.len() > 1
    }

    /// Index of the server taking writes now.
    #[inline]
    pub fn primary_index(&self) -> usize {
        self.primary.load(Relaxed)
    }

    /// The server taking writes now.
    pub fn primary(&self) -> &ServerPool {
        &self.servers[self.primary_index()]
    }

    /// Makes server `i` the primary (a failover); idle backends of the old
    /// one are closed (it may still be up, but it is not the primary).
    pub(super) fn set_primary(&self, i: usize) {
        let old = self.primary.swap(i, Relaxed);
        if old != i {
            self.failovers.fetch_add(1, Relaxed);
            self.servers[old].close_idle();
        }
    }

    /// Takes an idle backend of the primary or opens a new one, waiting for
    /// a free slot up to the checkout timeout.
    #[inline]
    pub async fn checkout(self: &Arc<Self>) -> Result<Lease, SqlError> {
        self.checkout_server(self.primary_index()).await
    }

    /// A backend for a read outside a transaction: from a replica in
    /// rotation, picked by the read policy, else from the primary. A
    /// replica that cannot be connected to leaves rotation and the read goes
    /// to the primary (nothing was sent yet).
    pub async fn checkout_read(self: &Arc<Self>) -> Result<Lease, SqlError> {
        if self.servers.len() == 1 {
            return self.checkout().await;
        }
        let Some(i) = self.pick_replica() else {
            return self.checkout().await;
        };
        match self.checkout_server(i).await {
            Ok(lease) => Ok(lease),
            Err(e) if e.code == crate::data::codec::error::sqlstate::CONNECTION_FAILURE => {
                let st = &self.servers[i].stats;
                st.in_rotation.store(false, Relaxed);
                tracing::warn!(
                    "shard {}: replica {} left rotation: {}",
                    self.name,
                    self.servers[i].endpoint.addr.display(),
                    e.message
                );
                super::health::wake();
                self.checkout().await
            }
            Err(e) => Err(e),
        }
    }

    /// The replica a read goes to, if any is in rotation and has replayed
    /// past [`ShardPool::require_replay`]'s mark.
    fn pick_replica(&self) -> Option<usize> {
        let n = self.servers.len();
        let primary = self.primary_index();
        let floor = self.min_replay_lsn.load(Relaxed);
        let usable = |i: usize| {
            let st = &self.servers[i].stats;
            i != primary && st.in_rotation.load(Relaxed) && st.lsn.load(Relaxed) >= floor
        };
        let start = self.next_replica.fetch_add(1, Relaxed);
        let in_turn = (0..n).map(|k| (start + k) % n).filter(|&i| usable(i));
        match self.replica_settings.policy {
            ReadPolicy::RoundRobin => in_turn.take(1).next(),
            ReadPolicy::LeastConnections => in_turn.min_by_key(|&i| {
                let st = &self.servers[i].stats;
                st.in_use.load(Relaxed) + st.waiting.load(Relaxed)
            }),
        }
    }

    /// Replicas serve reads again only once they have replayed up to `lsn`
    /// (and the health checker has seen it). A move calls this (through
    /// [`ShardPool::fence_replica_reads`]) with the target's WAL position
    /// taken after the moved rows are there and before the switch is
    /// published, so no read of a moved interval reaches a replica that
    /// lacks its rows. Takes effect at once for reads picked from now on.
    pub fn require_replay(&self, lsn: u64) {
        self.min_replay_lsn.fetch_max(lsn, Relaxed);
        if self.has_replicas() {
            super::health::wake();
        }
    }

    /// The LSN replicas must have replayed before they serve reads (0: none).
    pub fn replay_floor(&self) -> u64 {
        self.min_replay_lsn.load(Relaxed)
    }

    /// Reads the primary's current WAL position and makes it the replicas'
    /// floor ([`ShardPool::require_replay`]); returns it. A no-op (0) for a
    /// shard without replicas.
    pub async fn fence_replica_reads(&self) -> Result<u64, SqlError> {
        if !self.has_replicas() {
            return Ok(0);
        }
        let mut be = self.connect_new().await?;
        let rows = be
            .query_rows("SELECT pg_current_wal_lsn()")
            .await
            .map_err(|e| SqlError::shard_unavailable(&self.name, e))?;
        let lsn = rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|t| super::health::parse_lsn(&t))
            .ok_or_else(|| {
                SqlError::shard_unavailable(&self.name, "no WAL position from the primary")
            })?;
        self.require_replay(lsn);
        Ok(lsn)
    }

    /// A backend of server `i`.
    async fn checkout_server(self: &Arc<Self>, i: usize) -> Result<Lease, SqlError> {
        let server = &self.servers[i];
        let fenced = self.cancels.is_raised();
        let mut candidate = server.take_slot(&self.settings, &self.name, fenced).await?;
        // From here the slot is the lease's: every early return gives it back.
        let mut lease = Lease {
            pool: self.clone(),
            server: i,
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
                    server.stats.checkouts.fetch_add(1, Relaxed);
                    lease.backend = Some(b);
                    return Ok(lease);
                }
                Some(dead) => {
                    drop(dead);
                    candidate = server.next_idle(self.cancels.is_raised());
                }
                None => {
                    server.stats.connects.fetch_add(1, Relaxed);
                    match self.connect_to(server).await {
                        Ok(b) => {
                            server.stats.up.store(true, Relaxed);
                            server.stats.checkouts.fetch_add(1, Relaxed);
                            lease.backend = Some(Box::new(b));
                            return Ok(lease);
                        }
                        Err(e) => {
                            server.stats.up.store(false, Relaxed);
                            server.stats.connect_errors.fetch_add(1, Relaxed);
                            self.stats.errors.fetch_add(1, Relaxed);
                            if self.has_replicas() {
                                // Perhaps a failover: look now, not at the next tick.
                                super::health::wake();
                            }
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// A new backend to this shard's primary, with the pool's settings and
    /// cancel fence; the caller owns it (it takes no slot).
    pub async fn connect_new(&self) -> Result<Backend, SqlError> {
        self.connect_to(self.primary()).await
    }

    async fn connect_to(&self, server: &ServerPool) -> Result<Backend, SqlError> {
        Backend::connect(
            &server.endpoint,
            &self.name,
            self.settings.connect_timeout,
            self.cancels.clone(),
        )
        .await
    }

    /// Closes idle backends unused for longer than the idle timeout (see
    /// [`ServerPool`]); doomed ones (a cancel never confirmed) too.
    pub fn reap_idle(&self) {
        for s in &self.servers {
            s.reap_idle(self.settings.idle_timeout);
        }
    }

    /// A RELOAD replaced this pool: its idle backends close now, and the
    /// ones its open leases bring back close as they come.
    pub fn retire(&self) {
        for s in &self.servers {
            s.retired.store(true, Relaxed);
        }
        self.close_idle();
    }

    /// Closes every idle backend (on shutdown; see also [`ShardPool::retire`]).
    pub fn close_idle(&self) {
        for s in &self.servers {
            s.close_idle();
        }
    }

    /// Backends currently handed out, on all servers.
    pub fn in_use(&self) -> usize {
        self.sum(|s| s.stats.in_use.load(Relaxed))
    }

    /// Idle backends kept open, on all servers.
    pub fn idle(&self) -> usize {
        self.sum(|s| s.stats.idle.load(Relaxed))
    }

    /// Checkouts waiting for a free backend, on all servers.
    pub fn waiting(&self) -> usize {
        self.sum(|s| s.stats.waiting.load(Relaxed))
    }

    /// Connections opened, on all servers.
    pub fn connects(&self) -> u64 {
        self.servers
            .iter()
            .map(|s| s.stats.connects.load(Relaxed))
            .sum()
    }

    fn sum(&self, f: impl Fn(&ServerPool) -> usize) -> usize {
        self.servers.iter().map(f).sum()
    }
}

/// A backend checked out of a pool: it holds one of its server's slots.
/// Dropping a lease closes its backend; [`Lease::release`] returns it for
/// reuse (only when it is clean).
#[derive(Debug)]
pub struct Lease {
    pool: Arc<ShardPool>,
    /// Index of the server in `pool.servers`.
    server: usize,
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

    /// Index of the backend's server among the pool's (see [`ShardPool::servers`]).
    #[inline]
    pub fn server(&self) -> usize {
        self.server
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
        let server = &self.pool.servers[self.server];
        if self.clean && reusable {
            server.return_slot(backend);
        } else {
            // Not released clean: closing it is the safe choice, and it is
            // closed before its slot can open another.
            drop(backend);
            server.return_slot(None);
        }
    }
}
