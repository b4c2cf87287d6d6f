//! What the command-line verbs do, as library functions (so tests can run
//! the proxy in-process exactly as `shardproxy serve` does).

use crate::config::Config;
use crate::runtime::{listener, Proxy};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A proxy bound to its port, not yet serving.
pub struct Bound {
    pub proxy: Arc<Proxy>,
    pub listener: TcpListener,
    pub addr: std::net::SocketAddr,
}

/// Builds the proxy and binds its listener and metrics endpoint.
pub async fn bind(config: Config) -> Result<Bound, String> {
    let listen = config.proxy.listen.clone();
    let metrics = config.metrics.listen.clone();
    if let Some(m) = &metrics {
        // Before the pools exist, so their latency histograms bind to it.
        crate::metrics::start_exporter(m)?;
    }
    let proxy = Proxy::new(config)?;
    // Finishes two-phase commits a crashed proxy left prepared (now, then periodically).
    {
        use crate::control::twophase::{run_periodically, RECOVERY_INTERVAL, RECOVERY_MIN_AGE};
        let weak = Arc::downgrade(&proxy);
        tokio::spawn(run_periodically(weak, RECOVERY_INTERVAL, RECOVERY_MIN_AGE));
    }
    // Watches the servers of shards with replicas: rotation, lag, failover.
    tokio::spawn(crate::data::pool::health::run(Arc::downgrade(&proxy)));
    crate::data::load::spawn_ticker(Arc::downgrade(&proxy));
    crate::control::shard_checks::spawn_after_load(&proxy);
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if let Some(m) = metrics {
        crate::metrics::install(&m, proxy.clone())?;
    }
    Ok(Bound {
        proxy,
        listener,
        addr,
    })
}

/// `shardproxy serve`: runs until SIGTERM/SIGINT and the drain finish.
/// The calling thread's runtime is the first worker; `proxy.workers - 1`
/// more threads each run a single-threaded runtime accepting on the same
/// listening socket.
pub async fn serve(config: Config) -> Result<(), String> {
    let workers = config.proxy.workers.max(1);
    // Calibrate the TSC clock the data path times queries with now, not
    // during the first client's query.
    let _ = quanta::Instant::now();
    let b = bind(config).await?;
    listener::install_signal_handlers(b.proxy.clone()).map_err(|e| e.to_string())?;
    tracing::info!("shardproxy listening on {} ({workers} workers)", b.addr);
    let shared = b.listener.into_std().map_err(|e| e.to_string())?;
    let mut threads = Vec::new();
    for i in 1..workers {
        let socket = shared.try_clone().map_err(|e| e.to_string())?;
        let proxy = b.proxy.clone();
        let t = std::thread::Builder::new()
            .name(format!("shardproxy-worker-{i}"))
            .spawn(move || -> Result<(), String> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async move {
                    let l = TcpListener::from_std(socket).map_err(|e| e.to_string())?;
                    listener::serve(proxy, l).await.map_err(|e| e.to_string())
                })
            })
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        threads.push(t);
    }
    let main = TcpListener::from_std(shared).map_err(|e| e.to_string())?;
    let r = listener::serve(b.proxy, main)
        .await
        .map_err(|e| e.to_string());
    for t in threads {
        t.join()
            .map_err(|_| "a worker thread panicked".to_string())??;
    }
    r
}

/// `shardproxy check`: everything `serve` would build from the config
/// (credentials, TLS files, shard map) without connecting anywhere, then a
/// readable summary.
pub fn check(c: &Config) -> Result<String, String> {
    let file = c
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "config".into());
    crate::runtime::Runtime::build(c.clone(), None).map_err(|e| format!("{file}: {e}"))?;
    Ok(explain(c))
}

/// The part of `shardproxy check` that asks the shards: whether the id
/// sequences of sharded tables hand out ids unique across shards (see
/// [`crate::control::unique_ids`]). Shards that cannot be reached are named.
pub async fn check_shards(c: &Config) -> String {
    use crate::control::unique_ids::{report, survey, Cluster};
    let mut s = format!(
        "id sequences of sharded tables (sharding.unique_ids = {}, id_stride {}):\n",
        c.sharding.unique_ids, c.sharding.id_stride
    );
    let rows = match Cluster::of_config(c) {
        Ok(cluster) => report(&survey(&cluster).await, c.sharding.id_stride),
        Err(e) => return format!("{s}  {e}\n"),
    };
    if rows.is_empty() {
        s.push_str("  none (no serial, bigserial or identity columns on sharded tables)\n");
    }
    let mut collide = false;
    for [table, column, shard, slot, increment, next, status] in rows {
        if table.is_empty() {
            s.push_str(&format!("  shard {shard}: {status}\n"));
            continue;
        }
        collide |= status != "ok";
        s.push_str(&format!(
            "  {table}.{column} on {shard} (slot {}): increment {increment}, next {next}: {status}\n",
            if slot.is_empty() { "-" } else { &slot }
        ));
    }
    if collide {
        s.push_str(if c.sharding.unique_ids {
            "  these would hand out one id on several shards: the proxy interleaves them when it starts (or run FIX SEQUENCES in the admin console)\n"
        } else {
            "  these hand out one id on several shards (sharding.unique_ids = false: the proxy leaves them)\n"
        });
    }
    s
}

/// A readable summary of a valid config.
pub fn explain(c: &Config) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "config OK{}\n",
        c.source
            .as_ref()
            .map(|p| format!(": {}", p.display()))
            .unwrap_or_default()
    ));
    s.push_str(&format!(
        "listen {} (max {} clients, auth {}, TLS {})\n",
        c.proxy.listen,
        c.proxy.max_clients,
        c.proxy.auth,
        if c.proxy.tls_cert.is_some() {
            "on"
        } else {
            "off"
        }
    ));
    s.push_str(&format!(
        "admin console: psql -h <host> -p <port> -U {} -d shardproxy\n",
        c.admin.user
    ));
    s.push_str(&format!(
        "{} users: {}\n",
        c.users.len(),
        c.users
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s.push_str(&format!(
        "{} shards (pool of {} backends each):\n",
        c.shards.len(),
        c.pool.size
    ));
    let server = |url: &str| {
        crate::data::pool::BackendAddr::parse(url)
            .map(|a| {
                let tls = if a.tries_tls() {
                    a.ssl.mode.as_str()
                } else {
                    "off"
                };
                format!(
                    "{} db {} as {}, sslmode {tls}",
                    a.display(),
                    a.database,
                    a.user
                )
            })
            .unwrap_or_default()
    };
    for sh in &c.shards {
        s.push_str(&format!("  {}: {}\n", sh.name, server(&sh.url)));
        for r in &sh.replicas {
            s.push_str(&format!("    replica {}\n", server(r)));
        }
    }
    if c.shards.iter().any(|sh| !sh.replicas.is_empty()) {
        let r = &c.replicas;
        s.push_str(&format!(
            "replicas: reads {} ({}), out of rotation past {} ms lag, checked every {} ms\n",
            r.target_session, r.read_policy, r.max_replica_lag_ms, r.check_interval_ms
        ));
    }
    s.push_str(&format!("{} tables:\n", c.tables.len()));
    for t in &c.tables {
        match &t.shard_key {
            Some(k) => s.push_str(&format!(
                "  {}: sharded by {} ({}), co-location group {}\n",
                t.name,
                k,
                t.key_type,
                t.colocation.as_deref().unwrap_or("default")
            )),
            None => s.push_str(&format!(
                "  {}: reference table (copied to every shard)\n",
                t.name
            )),
        }
    }
    if let Some(m) = &c.metrics.listen {
        s.push_str(&format!("metrics: http://{m}/metrics\n"));
    }
    s
}

/// `shardproxy demo`: starts local shards, serves in front of them, loads the
/// demo data through the proxy on the first run, and stops the shards on Ctrl-C.
pub async fn demo(shards: usize, port: u16, data_dir: PathBuf) -> Result<(), String> {
    use crate::control::cluster::demo;
    let opts = demo::DemoOptions {
        shards,
        port,
        data_dir,
    };
    let setup = tokio::task::spawn_blocking(move || demo::prepare(&opts))
        .await
        .map_err(|e| format!("demo setup failed: {e}"))??;
    let b = bind(setup.config.clone()).await?;
    listener::install_signal_handlers(b.proxy.clone()).map_err(|e| e.to_string())?;
    let serving = tokio::spawn(listener::serve(b.proxy.clone(), b.listener));
    if setup.fresh {
        let user = setup
            .config
            .users
            .first()
            .ok_or("demo config has no [[users]]")?;
        let url = format!(
            "postgres://{}:{}@{}/{}",
            user.name,
            user.password,
            b.addr,
            demo::DEMO_DB
        );
        let counts = demo::load_data(&url).await?;
        eprintln!("loaded demo data through the proxy: {counts:?}");
    }
    println!("{}", demo::print_banner(&setup));
    println!("Ctrl-C stops the proxy and the shards.");
    let r = serving.await;
    // Dropping the setup stops the shard clusters (by PID).
    drop(setup);
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}
