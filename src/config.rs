//! The proxy's configuration: one TOML file, parsed strictly.
//!
//! Every section is `deny_unknown_fields` so a typo is an error naming the key,
//! and [`Config::validate`] checks what serde cannot (duplicate names, tables
//! naming unknown shards, ...). Errors always name the file, the key and why.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub proxy: ProxyConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub pool: PoolConfig,
    #[serde(default)]
    pub shards: Vec<ShardConfig>,
    #[serde(default)]
    pub tables: Vec<TableConfig>,
    #[serde(default)]
    pub sharding: ShardingConfig,
    #[serde(default)]
    pub lookup: Vec<LookupConfig>,
    #[serde(default)]
    pub hot: HotConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub replicas: ReplicasConfig,
    #[serde(default)]
    pub merge: MergeConfig,
    /// Where the file was read from (not part of the TOML).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[proxy]`: the client-facing listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Address to listen on, `host:port`.
    pub listen: String,
    /// Client connections beyond this get SQLSTATE 53300.
    pub max_clients: usize,
    /// A client that has not finished startup and auth by then is dropped.
    pub startup_timeout_ms: u64,
    /// On SIGTERM/SIGINT, how long open transactions may run before clients are closed with 57P01.
    pub shutdown_timeout_ms: u64,
    /// Client authentication: "scram-sha-256", "md5" or "trust".
    pub auth: String,
    /// PEM certificate chain; with `tls_key`, enables TLS for clients.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Largest message a client may send, in bytes.
    pub max_message_bytes: usize,
    /// Allow transactions spanning shards via two-phase commit.
    pub two_phase_commit: bool,
    /// Event-loop threads serving clients. Each is single-threaded (no task
    /// migration, no cross-thread wakeups on the hot path, as pgbouncer's
    /// process); several accept on the same listener and share the pools.
    /// Default: [`default_workers`].
    pub workers: usize,
}

/// Most workers the default gives (more must be asked for).
pub const MAX_DEFAULT_WORKERS: usize = 16;

/// `proxy.workers` when unset: the cores this process may run on
/// (`std::thread::available_parallelism`, which counts the CPU affinity
/// mask and cgroup quotas), at most [`MAX_DEFAULT_WORKERS`].
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_DEFAULT_WORKERS)
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: "127.0.0.1:6432".into(),
            max_clients: 1000,
            startup_timeout_ms: 10_000,
            shutdown_timeout_ms: 30_000,
            auth: "scram-sha-256".into(),
            tls_cert: None,
            tls_key: None,
            max_message_bytes: 64 << 20,
            two_phase_commit: true,
            workers: default_workers(),
        }
    }
}

/// `[admin]`: credentials for the admin console (`psql -d shardproxy`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub user: String,
    pub password: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            user: "admin".into(),
            password: "admin".into(),
        }
    }
}

/// `[[users]]`: an application user. `password` is plaintext, an
/// `SCRAM-SHA-256$...` verifier or an `md5...` hash.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub password: String,
    /// "primary" sends all of this user's statements to the primaries;
    /// unset follows `replicas.target_session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_session: Option<String>,
}

/// `[pool]`: backend pooling, per shard.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Most backend connections per shard.
    pub size: usize,
    /// Connecting to a shard fails after this long (08006).
    pub connect_timeout_ms: u64,
    /// Waiting for a free backend fails after this long (53300).
    pub checkout_timeout_ms: u64,
    /// Idle backends older than this are closed.
    pub idle_timeout_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            size: 20,
            connect_timeout_ms: 5_000,
            checkout_timeout_ms: 10_000,
            idle_timeout_ms: 600_000,
        }
    }
}

/// `[[shards]]`: one Postgres server holding part of the data.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    pub name: String,
    /// `postgres://user:password@host:port/database`; `host` may be a Unix
    /// socket directory. The primary (or the server first tried as one).
    pub url: String,
    /// Streaming replicas of this shard's primary, as URLs like `url`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
}

/// `[[tables]]`: a sharded table (`shard_key`) or a reference table (`reference = true`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    pub name: String,
    #[serde(default)]
    pub shard_key: Option<String>,
    /// SQL type of the shard key: smallint, integer, bigint, text, varchar or uuid.
    #[serde(default = "default_key_type")]
    pub key_type: String,
    /// Tables in the same co-location group share placement (default: "default").
    #[serde(default)]
    pub colocation: Option<String>,
    #[serde(default)]
    pub reference: bool,
}

fn default_key_type() -> String {
    "bigint".into()
}

/// `[sharding]`: how the hash space is laid out.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShardingConfig {
    /// Virtual nodes per shard on the consistent-hash ring.
    pub vnodes: usize,
    /// Optional file holding the persisted shard map (intervals, lookups, epoch).
    pub map_file: Option<PathBuf>,
    /// Keep serial/bigserial/identity ids of sharded tables unique across
    /// shards by interleaving each shard's sequences (see
    /// `control/unique_ids.rs`); false only reports tables whose ids collide.
    pub unique_ids: bool,
    /// The interleave: every shard's sequences count by this much, each from
    /// its own slot (so at most this many shards, ever, at one time).
    pub id_stride: u32,
}

impl Default for ShardingConfig {
    fn default() -> Self {
        ShardingConfig {
            vnodes: 256,
            map_file: None,
            unique_ids: true,
            id_stride: 64,
        }
    }
}

/// `[[lookup]]`: pin one shard-key value (a hot tenant) to a shard.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    pub key: String,
    pub shard: String,
    /// Co-location group the key belongs to (default: "default").
    #[serde(default)]
    pub colocation: Option<String>,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` to serve `/metrics` on; unset disables the endpoint.
    pub listen: Option<String>,
}

/// `[merge]`: limits of the cross-shard merge.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MergeConfig {
    /// Most memory one merge may hold for its groups or DISTINCT rows
    /// (estimated); past it the query fails with 54000.
    pub memory_limit_bytes: usize,
    /// Most rows an inner query planned on its own (a CTE or subquery that
    /// needs rows of several shards) may pass to the outer query.
    pub subquery_row_limit: usize,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            memory_limit_bytes: 64 << 20,
            subquery_row_limit: 10_000,
        }
    }
}

/// `[replicas]`: how reads use the shards' replicas and how their servers
/// are watched (for shards with `replicas`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicasConfig {
    /// Where reads outside a transaction go: "prefer-standby" (a replica
    /// in rotation, else the primary) or "primary".
    pub target_session: String,
    /// How a read picks a replica: "round_robin" or "least_connections".
    pub read_policy: String,
    /// A replica further behind than this leaves rotation until it catches up.
    pub max_replica_lag_ms: u64,
    /// How often every server of a shard with replicas is checked (role, lag).
    pub check_interval_ms: u64,
}

impl Default for ReplicasConfig {
    fn default() -> Self {
        ReplicasConfig {
            target_session: "prefer-standby".into(),
            read_policy: "round_robin".into(),
            max_replica_lag_ms: 1000,
            check_interval_ms: 500,
        }
    }
}

/// `[hot]`: load accounting (`SHOW HOT`, `SHOW REBALANCE ADVICE`, the load
/// metrics) and the opt-in automatic rebalancing that acts on its advice.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HotConfig {
    /// Count shard-key values, hash intervals and rows per statement (the
    /// per-shard statement and busy-time figures are kept either way).
    pub enabled: bool,
    /// The sliding window `SHOW HOT` and the advice look at, in seconds.
    pub window_secs: u64,
    /// The window is kept as this many slots; the oldest is dropped as a
    /// new one starts (every `window_secs / slots` seconds).
    pub slots: usize,
    /// Shard-key values the top-k sketch tracks per slot.
    pub top_keys: usize,
    /// Apply the advice's first move by itself when the thresholds below are met.
    pub auto: bool,
    /// Auto acts when the busiest shard's statements exceed the mean by this factor.
    pub auto_threshold: f64,
    /// ... and the window holds at least this many statements.
    pub auto_min_statements: u64,
    /// Seconds after a move (by auto or by hand) before auto acts again.
    pub auto_cooldown_secs: u64,
}

impl Default for HotConfig {
    fn default() -> Self {
        HotConfig {
            enabled: true,
            window_secs: 60,
            slots: 6,
            top_keys: 64,
            auto: false,
            auto_threshold: 1.5,
            auto_min_statements: 10_000,
            auto_cooldown_secs: 600,
        }
    }
}

/// Values of `target_session` (config and `SET shardproxy.target_session`).
pub const TARGET_SESSIONS: &[&str] = &["prefer-standby", "primary"];

/// A configuration problem, already phrased for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

/// Key types a shard key may have.
pub const KEY_TYPES: &[&str] = &["smallint", "integer", "bigint", "text", "varchar", "uuid"];

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        let mut cfg = Config::parse(&text, &path.display().to_string())?;
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parses and validates TOML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate().map_err(|message| ConfigError {
            file: file.to_string(),
            message,
        })?;
        Ok(cfg)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.proxy.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "proxy.listen: '{}' is not host:port (e.g. 127.0.0.1:6432)",
                self.proxy.listen
            ));
        }
        if !["scram-sha-256", "md5", "trust"].contains(&self.proxy.auth.as_str()) {
            return Err(format!(
                "proxy.auth: '{}' is not one of scram-sha-256, md5, trust",
                self.proxy.auth
            ));
        }
        if self.proxy.tls_cert.is_some() != self.proxy.tls_key.is_some() {
            return Err("proxy.tls_cert and proxy.tls_key must be set together".into());
        }
        if !(1..=256).contains(&self.proxy.workers) {
            return Err(format!(
                "proxy.workers: {} is not between 1 and 256",
                self.proxy.workers
            ));
        }
        if self.proxy.max_clients == 0 {
            return Err("proxy.max_clients: must be at least 1".into());
        }
        if self.merge.memory_limit_bytes < 1024 {
            return Err("merge.memory_limit_bytes: must be at least 1024".into());
        }
        if self.pool.size == 0 {
            return Err("pool.size: must be at least 1".into());
        }
        if self.admin.user.is_empty() {
            return Err("admin.user: must not be empty".into());
        }
        if self.sharding.vnodes == 0 {
            return Err("sharding.vnodes: must be at least 1".into());
        }
        if !(2..=65536).contains(&self.sharding.id_stride) {
            return Err(format!(
                "sharding.id_stride: {} is not between 2 and 65536",
                self.sharding.id_stride
            ));
        }
        if self.sharding.id_stride < self.shards.len() as u32 {
            return Err(format!(
                "sharding.id_stride: {} is less than the number of shards ({}): each shard needs its own id slot",
                self.sharding.id_stride,
                self.shards.len()
            ));
        }
        if self.shards.is_empty() {
            return Err("shards: at least one [[shards]] entry is needed".into());
        }
        let mut names = HashSet::new();
        for (i, s) in self.shards.iter().enumerate() {
            if s.name.is_empty() {
                return Err(format!("shards[{i}].name: must not be empty"));
            }
            if !names.insert(s.name.as_str()) {
                return Err(format!("shards[{i}].name: '{}' is used twice", s.name));
            }
            if let Err(e) = crate::data::pool::BackendAddr::parse(&s.url) {
                return Err(format!("shards[{i}].url: {e}"));
            }
            for (j, r) in s.replicas.iter().enumerate() {
                if let Err(e) = crate::data::pool::BackendAddr::parse(r) {
                    return Err(format!("shards[{i}].replicas[{j}]: {e}"));
                }
                if *r == s.url || s.replicas[..j].contains(r) {
                    return Err(format!("shards[{i}].replicas[{j}]: '{r}' is listed twice"));
                }
            }
        }
        let r = &self.replicas;
        if !TARGET_SESSIONS.contains(&r.target_session.as_str()) {
            return Err(format!(
                "replicas.target_session: '{}' is not one of {}",
                r.target_session,
                TARGET_SESSIONS.join(", ")
            ));
        }
        if !["round_robin", "least_connections"].contains(&r.read_policy.as_str()) {
            return Err(format!(
                "replicas.read_policy: '{}' is not one of round_robin, least_connections",
                r.read_policy
            ));
        }
        if r.check_interval_ms == 0 {
            return Err("replicas.check_interval_ms: must be at least 1".into());
        }
        let mut users = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if !users.insert(u.name.as_str()) {
                return Err(format!("users[{i}].name: '{}' is used twice", u.name));
            }
            if let Some(t) = &u.target_session {
                if !TARGET_SESSIONS.contains(&t.as_str()) {
                    return Err(format!(
                        "users[{i}].target_session: '{t}' is not one of {}",
                        TARGET_SESSIONS.join(", ")
                    ));
                }
            }
            if u.name == self.admin.user {
                return Err(format!(
                    "users[{i}].name: '{}' is the admin user; pick another name",
                    u.name
                ));
            }
        }
        let mut tables = HashSet::new();
        for (i, t) in self.tables.iter().enumerate() {
            if !tables.insert(t.name.to_lowercase()) {
                return Err(format!("tables[{i}].name: '{}' is used twice", t.name));
            }
            match (&t.shard_key, t.reference) {
                (Some(_), true) => {
                    return Err(format!(
                        "tables[{i}] ('{}'): set either shard_key or reference = true, not both",
                        t.name
                    ))
                }
                (None, false) => {
                    return Err(format!(
                        "tables[{i}] ('{}'): needs shard_key = \"column\" or reference = true",
                        t.name
                    ))
                }
                _ => {}
            }
            if !KEY_TYPES.contains(&t.key_type.as_str()) {
                return Err(format!(
                    "tables[{i}].key_type: '{}' is not one of {}",
                    t.key_type,
                    KEY_TYPES.join(", ")
                ));
            }
        }
        for (i, l) in self.lookup.iter().enumerate() {
            if !names.contains(l.shard.as_str()) {
                return Err(format!(
                    "lookup[{i}].shard: '{}' is not a shard in [[shards]]",
                    l.shard
                ));
            }
        }
        if let Some(m) = &self.metrics.listen {
            if m.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!("metrics.listen: '{m}' is not host:port"));
            }
        }
        self.hot.validate()
    }
}

impl HotConfig {
    fn validate(&self) -> Result<(), String> {
        if !(1..=360).contains(&self.slots) {
            return Err(format!(
                "hot.slots: {} is not between 1 and 360",
                self.slots
            ));
        }
        if self.window_secs < self.slots as u64
            || !self.window_secs.is_multiple_of(self.slots as u64)
        {
            return Err(format!(
                "hot.window_secs: {} must be a whole multiple of hot.slots ({}), e.g. {}",
                self.window_secs,
                self.slots,
                self.slots * 10
            ));
        }
        if !(1..=4096).contains(&self.top_keys) {
            return Err(format!(
                "hot.top_keys: {} is not between 1 and 4096",
                self.top_keys
            ));
        }
        if !(self.auto_threshold > 1.0 && self.auto_threshold.is_finite()) {
            return Err(format!(
                "hot.auto_threshold: {} must be above 1.0 (the busiest shard's load over the mean)",
                self.auto_threshold
            ));
        }
        if self.auto && !self.enabled {
            return Err(
                "hot.auto needs hot.enabled = true (advice comes from the load accounting)".into(),
            );
        }
        Ok(())
    }
}

impl Config {
    /// The table entry for `name` (case-insensitive, schema prefix ignored).
    pub fn table(&self, name: &str) -> Option<&TableConfig> {
        let bare = name.rsplit('.').next().unwrap_or(name);
        self.tables
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(bare))
    }

    /// The shard index for `name`.
    pub fn shard_index(&self, name: &str) -> Option<usize> {
        self.shards.iter().position(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[[shards]]
name = "s0"
url = "postgres://postgres@127.0.0.1:5432/postgres"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MIN, "t.toml").unwrap();
        assert_eq!(c.proxy.listen, "127.0.0.1:6432");
        assert_eq!(c.pool.size, 20);
        assert_eq!(c.shards.len(), 1);
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let e = Config::parse(&format!("[proxy]\nlistn = \"x\"\n{MIN}"), "t.toml").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("t.toml:"), "{s}");
        assert!(s.contains("listn"), "{s}");
    }

    #[test]
    fn bad_values_are_rejected_with_reason() {
        let e = Config::parse(&format!("[proxy]\nlisten = \"nope\"\n{MIN}"), "t.toml").unwrap_err();
        assert!(e.to_string().contains("proxy.listen"), "{e}");
        let e = Config::parse(
            &format!("{MIN}\n[[tables]]\nname = \"t\"\nshard_key = \"id\"\nkey_type = \"float\"\n"),
            "t.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("key_type"), "{e}");
        let e = Config::parse(&format!("{MIN}\n[[tables]]\nname = \"t\"\n"), "t.toml").unwrap_err();
        assert!(e.to_string().contains("reference = true"), "{e}");
        let e = Config::parse(&format!("{MIN}{MIN}"), "t.toml").unwrap_err();
        assert!(e.to_string().contains("used twice"), "{e}");
    }
}
