//! Connected clients: what `SHOW CLIENTS` lists and how a CancelRequest finds
//! the backend running that client's query.

use crate::data::pool::CancelTarget;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
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
    /// Backends currently running this client's statements.
    pub running_on: Mutex<Vec<Arc<CancelTarget>>>,
    pub queries: AtomicU64,
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
        let m = match self.clients.lock() {
            Ok(m) => m,
            Err(_) => return Vec::new(),
        };
        m.values()
            .find(|c| c.pid == pid && c.secret == secret)
            .and_then(|c| c.running_on.lock().ok().map(|r| r.clone()))
            .unwrap_or_default()
    }
}
