//! `shardproxy demo`: N durable local shards, the shop schema on each, and a
//! generated proxy config, all under one directory that a later run reuses.
//!
//! The generated `shardproxy.toml` is also the demo's memory: a re-run reads the
//! shard ports back from it, so data, ports and any shard-map edits survive.
//! The CLI and the proxy itself live elsewhere; this module only prepares.

use super::local::{free_port, ClusterOptions, LocalCluster};
use super::process;
use crate::config::Config;
use crate::data::pool::BackendAddr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use super::demo_data::{generate, load_data, DemoCounts, DemoData, HOT_CUSTOMER};

/// The database the demo's tables live in, on every shard and through the proxy.
pub const DEMO_DB: &str = "shop";

/// The shop schema, created on every shard. `customers`, `orders` and
/// `payments` are sharded by `customer_id` and co-located; `products` is a
/// reference table (a full copy on every shard). Idempotent. The same file
/// initialises the shards of docker-compose.yml.
pub const DEMO_SCHEMA: &str = include_str!("shop_schema.sql");

/// `shardproxy demo [--shards N] [--port P] [--data-dir DIR]`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub shards: usize,
    /// The proxy's client port; shards default to P+1.., metrics to P+1000.
    pub port: u16,
    pub data_dir: PathBuf,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            shards: 3,
            port: 6432,
            data_dir: PathBuf::from("./shardproxy-demo"),
        }
    }
}

/// Running shards plus the config the proxy should serve.
#[derive(Debug)]
pub struct DemoSetup {
    pub config: Config,
    pub config_path: PathBuf,
    /// Stopped when dropped (call `detach()` on each to leave them running).
    pub clusters: Vec<LocalCluster>,
    /// True when the `shop` database was just created: load the data.
    pub fresh: bool,
}

/// Starts (or restarts) the demo's shards under `opts.data_dir`, creates the
/// `shop` database and schema on each, and writes `shardproxy.toml` there.
pub fn prepare(opts: &DemoOptions) -> Result<DemoSetup, String> {
    if opts.shards == 0 {
        return Err("demo: --shards must be at least 1".into());
    }
    let dir = std::path::absolute(&opts.data_dir)
        .map_err(|e| format!("cannot resolve {}: {e}", opts.data_dir.display()))?;
    if !dir.exists() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("cannot chmod {}: {e}", dir.display()))?;
    }
    check_pg_can_enter(&dir)?;

    let config_path = dir.join("shardproxy.toml");
    let existing = if config_path.exists() {
        Some(Config::load(&config_path).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let ports = match &existing {
        Some(cfg) => remembered_ports(cfg, opts.shards, &config_path)?,
        None => pick_shard_ports(opts.port, opts.shards),
    };

    // Start the shards in parallel; each is a directory copy plus a server start.
    let started: Vec<Result<LocalCluster, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = ports
            .iter()
            .enumerate()
            .map(|(i, &port)| {
                let data = dir.join(format!("shard-{i}"));
                s.spawn(move || LocalCluster::start_with(&data, port, &ClusterOptions::durable()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("shard start thread panicked".into()))
            })
            .collect()
    });
    let clusters = started.into_iter().collect::<Result<Vec<_>, _>>()?;

    let mut fresh = false;
    for c in &clusters {
        let exists = psql(
            c,
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{DEMO_DB}'"),
        )?;
        if exists == "0" {
            psql(c, "postgres", &format!("CREATE DATABASE {DEMO_DB}"))?;
            fresh = true;
        }
        psql(c, DEMO_DB, DEMO_SCHEMA)?;
    }

    let config = match existing {
        Some(cfg) => update_listen(cfg, opts.port, &config_path)?,
        None => {
            let ports: Vec<u16> = clusters.iter().map(LocalCluster::port).collect();
            let text = config_text(opts.port, &ports);
            std::fs::write(&config_path, &text)
                .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
            Config::load(&config_path).map_err(|e| e.to_string())?
        }
    };
    Ok(DemoSetup {
        config,
        config_path,
        clusters,
        fresh,
    })
}

/// What to tell the person who ran `shardproxy demo`.
pub fn print_banner(setup: &DemoSetup) -> String {
    let cfg = &setup.config;
    let listen = &cfg.proxy.listen;
    let mut s = format!(
        "shardproxy demo: {} shards, config {}\n\n",
        setup.clusters.len(),
        setup.config_path.display()
    );
    if let Some(u) = cfg.users.first() {
        s.push_str(&format!(
            "  app:     psql \"postgres://{}:{}@{listen}/{DEMO_DB}\"\n",
            u.name, u.password
        ));
    }
    s.push_str(&format!(
        "  admin:   psql \"postgres://{}:{}@{listen}/shardproxy\"\n",
        cfg.admin.user, cfg.admin.password
    ));
    if let Some(m) = &cfg.metrics.listen {
        s.push_str(&format!("  metrics: http://{m}/metrics\n"));
    }
    s.push_str("\n  shards (direct, bypassing the proxy):\n");
    for shard in &cfg.shards {
        s.push_str(&format!("    {:<8} psql \"{}\"\n", shard.name, shard.url));
    }
    let tries = [
        (
            "SELECT count(*) FROM orders;".to_string(),
            "fans out to every shard",
        ),
        (
            format!("SELECT * FROM orders WHERE customer_id = {HOT_CUSTOMER} LIMIT 5;"),
            "one shard (the hot customer)",
        ),
    ];
    s.push_str("\n  try:\n");
    for (sql, what) in tries {
        s.push_str(&format!("    {sql:<56} -- {what}\n"));
    }
    s
}

/// The generated config: listen on P, metrics on P+1000, shop tables co-located
/// by customer_id, products a reference table.
pub(crate) fn config_text(port: u16, shard_ports: &[u16]) -> String {
    let mut s = format!(
        "# Generated by `shardproxy demo`; later runs keep this file (shard ports are read from it).\n\
         [proxy]\n\
         listen = \"127.0.0.1:{port}\"\n\
         auth = \"scram-sha-256\"\n\
         # The demo's shards allow prepared transactions, so a transaction may span shards.\n\
         two_phase_commit = true\n\n\
         [admin]\nuser = \"admin\"\npassword = \"admin\"\n\n\
         [[users]]\nname = \"app\"\npassword = \"app\"\n\n\
         [pool]\nsize = 10\n\n\
         [sharding]\nvnodes = 256\n\n"
    );
    if let Some(m) = metrics_port(port) {
        s.push_str(&format!("[metrics]\nlisten = \"127.0.0.1:{m}\"\n\n"));
    }
    for (i, p) in shard_ports.iter().enumerate() {
        s.push_str(&format!(
            "[[shards]]\nname = \"shard-{i}\"\nurl = \"postgres://postgres@127.0.0.1:{p}/{DEMO_DB}\"\n\n"
        ));
    }
    for t in ["customers", "orders", "payments"] {
        s.push_str(&format!(
            "[[tables]]\nname = \"{t}\"\nshard_key = \"customer_id\"\nkey_type = \"bigint\"\ncolocation = \"customer\"\n\n"
        ));
    }
    s.push_str("[[tables]]\nname = \"products\"\nreference = true\n\n");
    s.push_str("# The tables of `shardproxy bench --init`.\n");
    for t in ["bench_kv", "bench_log"] {
        s.push_str(&format!(
            "[[tables]]\nname = \"{t}\"\nshard_key = \"k\"\nkey_type = \"bigint\"\ncolocation = \"bench\"\n\n"
        ));
    }
    s
}

fn metrics_port(port: u16) -> Option<u16> {
    port.checked_add(1000).or_else(|| port.checked_sub(1000))
}

/// The shard ports a previous run wrote into the config.
fn remembered_ports(cfg: &Config, shards: usize, path: &Path) -> Result<Vec<u16>, String> {
    if cfg.shards.len() != shards {
        return Err(format!(
            "{} has {} shards but --shards {shards} was asked; pass --shards {} \
             or remove {} to start over",
            path.display(),
            cfg.shards.len(),
            cfg.shards.len(),
            path.parent().unwrap_or(path).display()
        ));
    }
    cfg.shards
        .iter()
        .map(|s| BackendAddr::parse(&s.url).map(|a| a.port))
        .collect()
}

/// P+1, P+2, ... where free, else any free port.
fn pick_shard_ports(port: u16, shards: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::new();
    for i in 0..shards {
        let wanted = port
            .checked_add(1 + i as u16)
            .filter(|p| Some(*p) != metrics_port(port));
        let p = match wanted {
            Some(p) if TcpListener::bind(("127.0.0.1", p)).is_ok() => p,
            _ => loop {
                let p = free_port();
                if !ports.contains(&p) {
                    break p;
                }
            },
        };
        ports.push(p);
    }
    ports
}

/// Points an existing config at the requested proxy/metrics ports, rewriting
/// the file only when something changed.
fn update_listen(mut cfg: Config, port: u16, path: &Path) -> Result<Config, String> {
    let listen = format!("127.0.0.1:{port}");
    let metrics = metrics_port(port).map(|m| format!("127.0.0.1:{m}"));
    if cfg.proxy.listen == listen && cfg.metrics.listen == metrics {
        return Ok(cfg);
    }
    cfg.proxy.listen = listen;
    cfg.metrics.listen = metrics;
    let text = toml::to_string(&cfg).map_err(|e| format!("cannot serialise config: {e}"))?;
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Config::load(path).map_err(|e| e.to_string())
}

/// The postgres user must be able to reach its data dirs under `dir`.
fn check_pg_can_enter(dir: &Path) -> Result<(), String> {
    if !process::is_root() {
        return Ok(());
    }
    let ok = Command::new("runuser")
        .args(["-u", process::PG_USER, "--", "test", "-x"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the '{}' user cannot enter {} (a parent directory is private); \
             pick another place, e.g. --data-dir /var/tmp/shardproxy-demo",
            process::PG_USER,
            dir.display()
        ))
    }
}

/// Runs `sql` on `database` of `cluster` with psql; stdout trimmed.
fn psql(cluster: &LocalCluster, database: &str, sql: &str) -> Result<String, String> {
    let out = process::run(
        Command::new(cluster.bin().join("psql"))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(cluster.url(database))
            .arg("-c")
            .arg(sql),
        &format!("psql on port {}", cluster.port()),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
