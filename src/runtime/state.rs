//! The proxy's shared state. Everything a statement needs (config, pools,
//! users, TLS, later the shard map and planner) sits in one immutable
//! [`Runtime`] snapshot behind `ArcSwap`: RELOAD builds a new one and swaps it
//! in; sessions pick it up at their next statement, and statements already
//! running finish on the snapshot they started with.

use super::clients::ClientRegistry;
use crate::config::Config;
use crate::data::auth::{Credential, ScramVerifier};
use crate::data::planner::Planner;
use crate::data::pool::{Endpoint, PoolSettings, ReplicaSettings, ShardPool};
use crate::data::router::ShardMap;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_rustls::TlsAcceptor;

/// A user who may log in, with the SCRAM verifier computed once.
#[derive(Debug)]
pub struct UserAuth {
    pub name: String,
    pub credential: Credential,
    pub scram: Option<ScramVerifier>,
}

impl UserAuth {
    /// A stand-in for a user that does not exist: no password matches.
    pub fn unknown(name: &str) -> UserAuth {
        let verifier = crate::data::auth::ScramVerifier::mock(name);
        UserAuth {
            name: name.to_string(),
            credential: Credential::Scram(verifier.clone()),
            scram: Some(verifier),
        }
    }

    fn new(name: &str, password: &str) -> Result<UserAuth, String> {
        let credential = Credential::parse(password)?;
        let scram = credential.scram_verifier();
        Ok(UserAuth {
            name: name.to_string(),
            credential,
            scram,
        })
    }
}

/// One consistent view of the configuration and what was built from it.
pub struct Runtime {
    pub config: Arc<Config>,
    /// One pool per shard, in `config.shards` order.
    pub pools: Vec<Arc<ShardPool>>,
    pub users: HashMap<String, UserAuth>,
    pub admin: UserAuth,
    pub tls: Option<TlsAcceptor>,
    /// Where every key lives (epoch-versioned; swapped with the runtime).
    pub map: ShardMap,
    /// Plans statements against `map`'s tables, caching per statement text.
    pub planner: Arc<Planner>,
}

impl Runtime {
    /// Builds a runtime, reusing pools from `previous` whose shard URLs
    /// (primary and replicas) and pool and replica settings did not change
    /// (so RELOAD keeps warm backends).
    pub fn build(config: Config, previous: Option<&Runtime>) -> Result<Runtime, String> {
        let settings = PoolSettings::from_config(&config.pool);
        let replica_settings = ReplicaSettings::from_config(&config.replicas);
        let mut pools = Vec::with_capacity(config.shards.len());
        for s in &config.shards {
            let urls =
                || std::iter::once(s.url.as_str()).chain(s.replicas.iter().map(String::as_str));
            // Kept with its failover state: a RELOAD of the same servers
            // does not send writes back to a primary that was replaced.
            let reused = previous.and_then(|p| {
                p.pools
                    .iter()
                    .find(|pool| {
                        pool.name == s.name
                            && pool.configured_urls().eq(urls())
                            && pool.settings == settings
                            && pool.replica_settings == replica_settings
                    })
                    .cloned()
            });
            let pool = match reused {
                Some(p) => p,
                None => {
                    let endpoint =
                        |u: &str| Endpoint::new(u).map_err(|e| format!("shard {}: {e}", s.name));
                    let replicas = s
                        .replicas
                        .iter()
                        .map(|u| endpoint(u))
                        .collect::<Result<_, _>>()?;
                    ShardPool::with_replicas(
                        &s.name,
                        endpoint(&s.url)?,
                        replicas,
                        settings.clone(),
                        replica_settings.clone(),
                    )
                }
            };
            pools.push(pool);
        }
        let mut users = HashMap::new();
        for u in &config.users {
            let auth = UserAuth::new(&u.name, &u.password)
                .map_err(|e| format!("users.{}: {e}", u.name))?;
            users.insert(u.name.clone(), auth);
        }
        let admin = UserAuth::new(&config.admin.user, &config.admin.password)
            .map_err(|e| format!("admin.password: {e}"))?;
        let tls = match (&config.proxy.tls_cert, &config.proxy.tls_key) {
            (Some(c), Some(k)) => Some(crate::data::auth::tls_acceptor(c, k)?),
            _ => None,
        };
        let map = ShardMap::from_config(&config)?;
        let planner = Arc::new(Planner::new(Arc::new(map.clone())));
        Ok(Runtime {
            config: Arc::new(config),
            pools,
            users,
            admin,
            tls,
            map,
            planner,
        })
    }

    /// The pool of the shard called `name`.
    pub fn pool_named(&self, name: &str) -> Option<(usize, &Arc<ShardPool>)> {
        self.pools.iter().enumerate().find(|(_, p)| p.name == name)
    }
}

/// The whole running proxy, shared by every task.
pub struct Proxy {
    runtime: ArcSwap<Runtime>,
    /// Bumped after every swap of `runtime`: sessions compare it with the
    /// generation of their snapshot, one plain load per message instead of
    /// an `ArcSwap` load (which takes and returns a debt slot).
    generation: AtomicU64,
    pub clients: ClientRegistry,
    /// Set on SIGTERM/SIGINT: no new clients, sessions finish their transaction and leave.
    pub draining: AtomicBool,
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// ParameterStatus values reported to clients (learned from the first shard).
    pub server_params: Mutex<Option<Vec<(String, String)>>>,
    pub started: Instant,
    /// Measured load per shard, interval and key (`SHOW HOT`, advice).
    pub load: crate::data::load::LoadBoard,
}

impl Proxy {
    pub fn new(config: Config) -> Result<Arc<Proxy>, String> {
        let runtime = Runtime::build(config, None)?;
        let load = crate::data::load::LoadBoard::new(&runtime.config.hot);
        Ok(Arc::new(Proxy {
            load,
            runtime: ArcSwap::from_pointee(runtime),
            generation: AtomicU64::new(0),
            clients: ClientRegistry::default(),
            draining: AtomicBool::new(false),
            shutdown: tokio::sync::watch::channel(false).0,
            server_params: Mutex::new(None),
            started: Instant::now(),
        }))
    }

    /// The current snapshot.
    #[inline]
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// The snapshot's generation: it changes after each swap, and a
    /// snapshot loaded after reading generation `g` is at least that new.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Re-reads the config file the proxy was started with and swaps it in.
    /// On any error the running configuration stays untouched.
    pub fn reload(&self) -> Result<String, String> {
        let current = self.runtime();
        let path = current
            .config
            .source
            .clone()
            .ok_or("the proxy was not started from a config file; nothing to reload")?;
        let config = Config::load(&path).map_err(|e| e.to_string())?;
        if config.proxy.listen != current.config.proxy.listen {
            return Err(format!(
                "proxy.listen changed ({} -> {}): restart the proxy to move the listener",
                current.config.proxy.listen, config.proxy.listen
            ));
        }
        let next = Runtime::build(config, Some(&current))?;
        // Pools of shards that are gone (or changed) keep serving the leases
        // they handed out; their backends close now (idle) or on return.
        for old in &current.pools {
            if !next.pools.iter().any(|p| Arc::ptr_eq(p, old)) {
                old.retire();
            }
        }
        let summary = format!(
            "reloaded {}: {} shards, {} users, {} tables",
            path.display(),
            next.pools.len(),
            next.users.len(),
            next.config.tables.len()
        );
        self.runtime.store(Arc::new(next));
        self.generation.fetch_add(1, Ordering::Release);
        tracing::info!("{summary}");
        Ok(summary)
    }
}
