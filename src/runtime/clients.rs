//! Connected clients: what `SHOW CLIENTS` lists and how a CancelRequest finds
//! the backend running that client's query.

use super::state::Runtime;
use crate::data::pool::{cancel_fence, CancelTarget, ShardPool};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{
    AtomicU64, AtomicU8, Ordering::Acquire, Ordering::Relaxed, Ordering::Release, Ordering::SeqCst,
};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What is known about one client connection.
#[derive(Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub peer: Option<SocketAddr>,
    pub user: Mutex<String>,
    pub database: Mutex<String>,
    pub application_name: Mutex<String>,
    pub connected_at: SystemTime,
    /// The key the client was given in BackendKeyData.
    pub pid: i32,
    pub secret: i32,
    /// 'I', 'T' or 'E' (Postgres' transaction status), or 'S' during startup.
    pub state: AtomicU8,
    /// The backend running this client's statement in the usual case of
    /// one: its BackendKeyData (pid in the high half, secret in the low;
    /// 0 for none) and its shard's index among the runtime's pools. Plain
    /// stores on every transaction, where a locked list of shared targets
    /// cost a lock round trip and two reference counts each time.
    running_key: AtomicU64,
    /// The shard index in the low half, the server's index among the
    /// shard's servers in the high half.
    running_shard: AtomicU64,
    /// The runtime snapshot the session works with (its shard indexes are
    /// into these pools); replaced when the session takes up a new one.
    session_runtime: Mutex<SessionRuntime>,
    /// Backends running a statement or transaction that spans shards, with
    /// their pools.
    pub running_on: Mutex<Vec<(Arc<ShardPool>, Arc<CancelTarget>)>>,
    pub queries: AtomicU64,
}

/// A session's runtime snapshot, held for its cancel keys (Debug without
/// printing the whole configuration).
struct SessionRuntime(Option<Arc<Runtime>>);

impl std::fmt::Debug for SessionRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionRuntime")
    }
}

impl ClientInfo {
    /// Records the runtime snapshot the session now works with (at its
    /// start and when it takes up a reloaded one).
    pub fn set_session_runtime(&self, rt: Arc<Runtime>) {
        if let Ok(mut r) = self.session_runtime.lock() {
            *r = SessionRuntime(Some(rt));
        }
    }

    /// Publishes the one backend (of server `server` of shard `shard`, with
    /// this BackendKeyData) now running the client's statements.
    #[inline]
    pub fn set_running_one(&self, shard: usize, server: usize, pid: i32, secret: i32) {
        // Stored before the key (see `running_one`).
        self.running_shard
            .store(((server as u64) << 32) | shard as u32 as u64, Release);
        self.running_key.store(packed_key(pid, secret), Release);
    }

    /// No backend is running the client's statements any more. SeqCst: it
    /// pairs with a canceller's fence (see [`ClientRegistry::cancel`]).
    #[inline]
    pub fn clear_running_one(&self) {
        self.running_key.store(0, SeqCst);
    }

    /// (shard index, pid, secret) of the one backend running the client's
    /// statements. The shard is read between two reads of the key: had it
    /// come from a later store, the clear before that store would show in
    /// the second read. (After a RELOAD the index may name the new
    /// runtime's pool; such a cancel reaches a server that ignores it, as
    /// pid and secret must both match: a lost cancel, which Postgres' own
    /// protocol allows for too.)
    fn running_one(&self) -> Option<(usize, usize, i32, i32)> {
        let key = self.running_key.load(SeqCst);
        if key == 0 {
            return None;
        }
        let at = self.running_shard.load(Acquire);
        if self.running_key.load(SeqCst) != key {
            return None; // the statement ended meanwhile
        }
        let (shard, server) = (at as u32 as usize, (at >> 32) as usize);
        Some((shard, server, (key >> 32) as u32 as i32, key as u32 as i32))
    }

    /// Whether the backend (pid, secret) still runs this client's statements.
    fn runs_on(&self, pid: i32, secret: i32) -> bool {
        self.running_key.load(SeqCst) == packed_key(pid, secret)
            || self
                .running_on
                .lock()
                .is_ok_and(|r| r.iter().any(|(_, t)| t.pid == pid && t.secret == secret))
    }

    /// The backends running this client's statements, with their pools.
    fn running_targets(&self) -> Vec<(Arc<ShardPool>, Arc<CancelTarget>)> {
        let mut targets = self
            .running_on
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        if let Some((shard, server, pid, secret)) = self.running_one() {
            let pool = self
                .session_runtime
                .lock()
                .ok()
                .and_then(|rt| rt.0.as_ref().and_then(|rt| rt.pools.get(shard)).cloned());
            if let Some(pool) = pool {
                if !targets
                    .iter()
                    .any(|(_, t)| t.pid == pid && t.secret == secret)
                {
                    let Some(endpoint) = pool.servers().get(server).map(|s| s.endpoint.clone())
                    else {
                        return targets;
                    };
                    targets.push((
                        pool,
                        Arc::new(CancelTarget {
                            endpoint,
                            pid,
                            secret,
                        }),
                    ));
                }
            }
        }
        targets
    }
}

/// A BackendKeyData as one word: `running_key` is stored and compared in a
/// single atomic operation. Never 0 for a real key (Postgres pids are
/// positive).
fn packed_key(pid: i32, secret: i32) -> u64 {
    (u64::from(pid as u32) << 32) | u64::from(secret as u32)
}

/// All connected clients, by id.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    clients: Mutex<HashMap<u64, Arc<ClientInfo>>>,
}

impl ClientRegistry {
    /// Registers a new client and hands out its cancel key.
    pub fn register(&self, peer: Option<SocketAddr>) -> Arc<ClientInfo> {
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        let info = Arc::new(ClientInfo {
            id,
            peer,
            user: Mutex::new(String::new()),
            database: Mutex::new(String::new()),
            application_name: Mutex::new(String::new()),
            connected_at: SystemTime::now(),
            // The pid only needs to be unique; the secret is what authorizes a cancel.
            pid: (id & 0x7fff_ffff) as i32,
            secret: rand::random::<i32>(),
            state: AtomicU8::new(b'S'),
            running_key: AtomicU64::new(0),
            running_shard: AtomicU64::new(0),
            session_runtime: Mutex::new(SessionRuntime(None)),
            running_on: Mutex::new(Vec::new()),
            queries: AtomicU64::new(0),
        });
        if let Ok(mut m) = self.clients.lock() {
            m.insert(id, info.clone());
        }
        info
    }

    pub fn unregister(&self, id: u64) {
        if let Ok(mut m) = self.clients.lock() {
            m.remove(&id);
        }
    }

    pub fn count(&self) -> usize {
        self.clients.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn snapshot(&self) -> Vec<Arc<ClientInfo>> {
        let mut v: Vec<_> = self
            .clients
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Acts on a CancelRequest carrying (pid, secret): unless both match a
    /// connected client, nothing happens. Otherwise each backend running
    /// that client's statement gets a CancelRequest, and this returns once
    /// Postgres has acted on all of them. Meanwhile each backend is fenced:
    /// it runs no other statement until its cancel is done, so a late
    /// signal cannot cancel that statement (see [`cancel_fence`]).
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let client = match self.clients.lock() {
            Ok(m) => m
                .values()
                .find(|c| c.pid == pid && c.secret == secret)
                .cloned(),
            Err(_) => return,
        };
        let Some(client) = client else {
            return;
        };
        // One task a backend: the cancels run side by side, and a caller
        // dropping this future (a handshake timeout) does not stop them
        // (a dropped JoinHandle detaches its task).
        let mut sends = Vec::new();
        for (pool, target) in client.running_targets() {
            // The fence goes up first, then the backend must still be the
            // client's: returned meanwhile, it may be another client's now,
            // and the cancel is dropped (one that arrives as the statement
            // ends may be lost; Postgres' protocol allows for that). Either
            // the session's clear shows here, or this fence shows to the
            // next checkout of the backend.
            let fenced = cancel_fence::raise(&pool.cancels, target.pid, target.secret);
            if !client.runs_on(target.pid, target.secret) {
                continue;
            }
            let limit = pool.settings.connect_timeout;
            sends.push(tokio::spawn(async move {
                match target.cancel(limit).await {
                    Ok(()) => drop(fenced),
                    Err(e) => {
                        let addr = target.endpoint.addr.display();
                        tracing::warn!("cancel request to {addr} failed: {}", e.error);
                        if e.sent {
                            // Its signals may still come: close the backend.
                            fenced.doom();
                        }
                    }
                }
            }));
        }
        for send in sends {
            let _ = send.await;
        }
    }
}
