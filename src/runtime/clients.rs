//! Connected clients: what `SHOW CLIENTS` lists and how a CancelRequest finds
//! the backend running that client's query.

use super::state::Runtime;
use crate::data::pool::CancelTarget;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{
    AtomicU32, AtomicU64, AtomicU8, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
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
    running_shard: AtomicU32,
    /// The runtime snapshot the session works with (its shard indexes are
    /// into these pools); replaced when the session takes up a new one.
    session_runtime: Mutex<SessionRuntime>,
    /// Backends running a statement or transaction that spans shards.
    pub running_on: Mutex<Vec<Arc<CancelTarget>>>,
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

    /// Publishes the one backend (of shard `shard`, with this
    /// BackendKeyData) now running the client's statements.
    #[inline]
    pub fn set_running_one(&self, shard: usize, pid: i32, secret: i32) {
        self.running_shard.store(shard as u32, Relaxed);
        let key = (u64::from(pid as u32) << 32) | u64::from(secret as u32);
        // Never 0 for a real key (Postgres pids are positive).
        self.running_key.store(key, Release);
    }

    /// No backend is running the client's statements any more.
    #[inline]
    pub fn clear_running_one(&self) {
        self.running_key.store(0, Release);
    }

    /// (shard index, pid, secret) of the one backend running the client's
    /// statements. A read racing a new store may pair the new shard with
    /// the old key (or the index with a just-replaced runtime); such a
    /// cancel reaches a server that ignores it, as pid and secret must both
    /// match: a lost cancel, which Postgres' own protocol allows for too.
    fn running_one(&self) -> Option<(usize, i32, i32)> {
        let key = self.running_key.load(Acquire);
        if key == 0 {
            return None;
        }
        let shard = self.running_shard.load(Relaxed) as usize;
        Some((shard, (key >> 32) as u32 as i32, key as u32 as i32))
    }
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
            running_shard: AtomicU32::new(0),
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

    /// The backends to cancel for a CancelRequest carrying (pid, secret):
    /// empty unless both match a connected client.
    pub fn cancel_targets(&self, pid: i32, secret: i32) -> Vec<Arc<CancelTarget>> {
        let client = match self.clients.lock() {
            Ok(m) => m
                .values()
                .find(|c| c.pid == pid && c.secret == secret)
                .cloned(),
            Err(_) => return Vec::new(),
        };
        let Some(c) = client else {
            return Vec::new();
        };
        let mut targets = c.running_on.lock().map(|r| r.clone()).unwrap_or_default();
        if let Some((shard, pid, secret)) = c.running_one() {
            let addr = c.session_runtime.lock().ok().and_then(|rt| {
                rt.0.as_ref()
                    .and_then(|rt| rt.pools.get(shard))
                    .map(|p| p.addr.clone())
            });
            if let Some(addr) = addr {
                if !targets.iter().any(|t| t.pid == pid && t.secret == secret) {
                    targets.push(Arc::new(CancelTarget { addr, pid, secret }));
                }
            }
        }
        targets
    }
}
