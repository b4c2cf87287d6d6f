//! The admin console and the Prometheus endpoint against a real Postgres:
//! every command's columns and values (psql and tokio-postgres), who may log
//! in where, RELOAD of a good and a broken file under live clients, SHUTDOWN,
//! and the metric names the endpoint serves.

mod common;

use common::proxy::{http_get, sample};
use common::*;
use shardproxy::control::cluster::{free_port, LocalCluster};
use shardproxy::runtime::Proxy;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

const ADMIN_PW: &str = "adminpw-9f3";
const APP_PW: &str = "apppw-4c1";
const SHARD_PW: &str = "shardpw-77e";

/// A config with one shard on `pg_port` (a password in its URL, which trust
/// auth ignores, so SHOW CONFIG has one to hide), users `app` (+ `extra_user`).
fn config_text(pg_port: u16, port: u16, metrics: Option<u16>, extra_user: Option<&str>) -> String {
    let mut s = format!(
        "[proxy]\nlisten = \"127.0.0.1:{port}\"\nmax_clients = 5\nshutdown_timeout_ms = 2000\n\n\
         [admin]\nuser = \"admin\"\npassword = \"{ADMIN_PW}\"\n\n\
         [[users]]\nname = \"app\"\npassword = \"{APP_PW}\"\n\n"
    );
    if let Some(u) = extra_user {
        s.push_str(&format!(
            "[[users]]\nname = \"{u}\"\npassword = \"{APP_PW}\"\n\n"
        ));
    }
    s.push_str(&format!(
        "[pool]\nsize = 4\n\n\
         [[shards]]\nname = \"s0\"\nurl = \"postgres://postgres:{SHARD_PW}@127.0.0.1:{pg_port}/postgres\"\n\n\
         [[tables]]\nname = \"orders\"\nshard_key = \"customer_id\"\n\n\
         [[tables]]\nname = \"countries\"\nreference = true\n\n"
    ));
    if let Some(m) = metrics {
        s.push_str(&format!("[metrics]\nlisten = \"127.0.0.1:{m}\"\n"));
    }
    s
}

struct Running {
    proxy: Arc<Proxy>,
    port: u16,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts the proxy in-process from the config file at `path`.
async fn start(path: &Path) -> Running {
    let config = shardproxy::config::Config::load(path).unwrap();
    let b = shardproxy::app::bind(config).await.unwrap();
    let serve = tokio::spawn(shardproxy::runtime::listener::serve(
        b.proxy.clone(),
        b.listener,
    ));
    Running {
        proxy: b.proxy,
        port: b.addr.port(),
        serve,
    }
}

fn url(port: u16, user: &str, pw: &str, db: &str) -> String {
    format!("postgres://{user}:{pw}@127.0.0.1:{port}/{db}")
}

fn admin_url(port: u16) -> String {
    url(port, "admin", ADMIN_PW, "shardproxy")
}

/// Columns and rows of each result set a simple query returned.
type Table = (Vec<String>, Vec<Vec<Option<String>>>);

async fn tables(c: &tokio_postgres::Client, sql: &str) -> Vec<Table> {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let mut out: Vec<Table> = Vec::new();
    for m in msgs {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                out.push((cols.iter().map(|c| c.name().to_string()).collect(), vec![]))
            }
            SimpleQueryMessage::Row(r) => {
                let row = (0..r.len()).map(|i| r.get(i).map(str::to_string)).collect();
                out.last_mut().expect("row before description").1.push(row);
            }
            _ => {}
        }
    }
    out
}

/// The single result set of `sql`, as maps from column name to value.
async fn rows(
    c: &tokio_postgres::Client,
    sql: &str,
    columns: &[&str],
) -> Vec<HashMap<String, String>> {
    let mut t = tables(c, sql).await;
    assert_eq!(t.len(), 1, "{sql}: one result set");
    let (cols, rows) = t.pop().unwrap();
    assert_eq!(cols, columns, "{sql}: columns");
    rows.into_iter()
        .map(|r| {
            cols.iter()
                .cloned()
                .zip(r.into_iter().map(|v| v.unwrap_or_default()))
                .collect()
        })
        .collect()
}

fn num(row: &HashMap<String, String>, col: &str) -> u64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?} is not a number", row[col]))
}

async fn db_error(
    r: Result<impl Sized, tokio_postgres::Error>,
) -> (SqlState, String, Option<String>) {
    let e = match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    };
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e:?}"));
    (
        db.code().clone(),
        db.message().to_string(),
        db.hint().map(str::to_string),
    )
}

async fn connect_err(u: &str) -> (SqlState, String) {
    match tokio_postgres::connect(u, tokio_postgres::NoTls).await {
        Ok(_) => panic!("{u}: connected, expected a refusal"),
        Err(e) => {
            let db = e
                .as_db_error()
                .unwrap_or_else(|| panic!("{u}: not a server error: {e:?}"));
            (db.code().clone(), db.message().to_string())
        }
    }
}

/// Runs psql on the admin console; returns (stdout, stderr), asserting success.
fn psql_admin(port: u16, sql: &str) -> (String, String) {
    let bin = LocalCluster::bin_dir().unwrap().join("psql");
    let out = std::process::Command::new(bin)
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &admin_url(port),
            "-c",
            sql,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "psql {sql:?}: {stderr}");
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_commands_report_the_running_proxy_and_metrics_are_served() {
    let pg = temp_cluster();
    let dir = temp_dir();
    let path = dir.path().join("proxy.toml");
    let (port, mport) = (free_port(), free_port());
    std::fs::write(&path, config_text(pg.port(), port, Some(mport), None)).unwrap();
    let p = start(&path).await;
    assert_eq!(p.port, port);

    // An application client: 5 good statements and one the shard rejects.
    let app_url = format!(
        "{}?application_name=admintest",
        url(port, "app", APP_PW, "postgres")
    );
    let app = connect(&app_url).await;
    for i in 0..5 {
        let r = app.simple_query(&format!("SELECT {i}")).await.unwrap();
        assert_eq!(r.len(), 3);
    }
    let (code, _, _) = db_error(app.simple_query("SELECT 1/0").await).await;
    assert_eq!(code, SqlState::DIVISION_BY_ZERO);

    // psql, as an operator would type it.
    let (out, _) = psql_admin(port, "show shards");
    let f: Vec<&str> = out.split('|').collect();
    assert_eq!(f.len(), 12, "{out}");
    assert_eq!(f[0], "s0");
    assert_eq!((f[8], f[9], f[10]), ("primary", "up", ""), "{out}");
    assert_eq!(f[1], format!("127.0.0.1:{}", pg.port()));
    assert_eq!(f[2], "postgres");
    assert_eq!(f[3], "up");
    assert_eq!((f[4], f[6], f[7]), ("0", "0", "4"));
    assert!(f[5].parse::<u32>().unwrap() >= 1, "{out}");
    let (out, _) = psql_admin(port, "SHOW HELP;");
    for cmd in [
        "SHOW HELP",
        "SHOW SHARDS",
        "SHOW POOLS",
        "SHOW CLIENTS",
        "SHOW STATS",
        "SHOW CONFIG",
        "SHOW VERSION",
        "RELOAD",
        "SHUTDOWN",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("{cmd}|"))),
            "{cmd} missing from:\n{out}"
        );
    }

    let admin = connect(&admin_url(port)).await;
    let help = rows(&admin, "show help", &["command", "description"]).await;
    assert_eq!(
        help.len(),
        shardproxy::control::admin::commands::COMMANDS.len()
    );

    let shards = rows(
        &admin,
        "SHOW SHARDS",
        &[
            "name",
            "address",
            "database",
            "status",
            "in_use",
            "idle",
            "waiting",
            "pool_size",
            "role",
            "state",
            "lag_ms",
            "lsn",
        ],
    )
    .await;
    assert_eq!(shards.len(), 1);
    assert_eq!(shards[0]["status"], "up");

    let pools = rows(
        &admin,
        "SHOW POOLS",
        &[
            "name",
            "in_use",
            "idle",
            "waiting",
            "size",
            "connects",
            "connect_errors",
            "server",
            "role",
            "checkouts",
        ],
    )
    .await;
    assert_eq!(pools[0]["name"], "s0");
    assert_eq!(pools[0]["role"], "primary");
    assert!(num(&pools[0], "checkouts") >= 6);
    assert_eq!(num(&pools[0], "size"), 4);
    assert_eq!(num(&pools[0], "in_use"), 0);
    assert!(num(&pools[0], "connects") >= 1);
    assert_eq!(num(&pools[0], "connect_errors"), 0);
    assert!(num(&pools[0], "idle") >= 1 && num(&pools[0], "idle") <= 4);

    let stats = rows(
        &admin,
        "Show Stats",
        &[
            "name",
            "queries",
            "transactions",
            "errors",
            "bytes_sent",
            "bytes_received",
            "avg_latency_us",
        ],
    )
    .await;
    let s0 = &stats[0];
    assert_eq!(s0["name"], "s0");
    assert!(num(s0, "queries") >= 6, "{s0:?}");
    assert!(num(s0, "transactions") >= 5, "{s0:?}");
    assert!(num(s0, "errors") >= 1, "{s0:?}");
    assert!(num(s0, "bytes_sent") >= 6 * 13, "{s0:?}");
    assert!(num(s0, "bytes_received") > num(s0, "bytes_sent"), "{s0:?}");
    assert!(num(s0, "avg_latency_us") > 0, "{s0:?}");

    let clients = rows(
        &admin,
        "SHOW CLIENTS",
        &[
            "id",
            "user",
            "database",
            "application_name",
            "address",
            "state",
            "connected_at",
            "queries",
        ],
    )
    .await;
    let app_row = clients
        .iter()
        .find(|c| c["user"] == "app")
        .unwrap_or_else(|| panic!("app client missing: {clients:?}"));
    assert_eq!(app_row["database"], "postgres");
    assert_eq!(app_row["application_name"], "admintest");
    assert_eq!(app_row["state"], "idle");
    assert_eq!(num(app_row, "queries"), 6);
    assert!(app_row["address"].starts_with("127.0.0.1:"), "{app_row:?}");
    let at = &app_row["connected_at"];
    assert!(
        at.len() == 20 && at.as_bytes()[10] == b'T' && at.ends_with('Z'),
        "{at}"
    );
    assert!(at.as_str() >= "2024-01-01", "{at}");
    let me = clients.iter().find(|c| c["user"] == "admin").unwrap();
    assert_eq!(me["database"], "shardproxy");
    assert!(num(me, "queries") >= 5, "{me:?}");

    let config = rows(&admin, "SHOW CONFIG", &["key", "value"]).await;
    let cfg: HashMap<&str, &str> = config
        .iter()
        .map(|r| (r["key"].as_str(), r["value"].as_str()))
        .collect();
    assert_eq!(cfg["config_file"], path.display().to_string());
    assert_eq!(cfg["proxy.listen"], format!("127.0.0.1:{port}"));
    assert_eq!(cfg["proxy.max_clients"], "5");
    assert_eq!(cfg["pool.size"], "4");
    assert_eq!(cfg["admin.user"], "admin");
    assert_eq!(cfg["users[0].name"], "app");
    assert_eq!(cfg["shards[0].name"], "s0");
    assert_eq!(
        cfg["shards[0].url"],
        format!(
            "postgres://postgres:********@127.0.0.1:{}/postgres",
            pg.port()
        )
    );
    assert_eq!(cfg["tables[0].shard_key"], "customer_id");
    assert_eq!(cfg["tables[1].reference"], "true");
    assert_eq!(cfg["sharding.vnodes"], "256");
    assert_eq!(cfg["metrics.listen"], format!("127.0.0.1:{mport}"));
    let everything = format!("{config:?}");
    for secret in [ADMIN_PW, APP_PW, SHARD_PW] {
        assert!(!everything.contains(secret), "SHOW CONFIG leaks {secret}");
    }

    let version = rows(&admin, "SHOW VERSION", &["version"]).await;
    assert_eq!(
        version[0]["version"],
        format!("shardproxy {}", env!("CARGO_PKG_VERSION"))
    );

    // Several commands in one Query: one result set each.
    let t = tables(&admin, "show version; SHOW POOLS;;show shards").await;
    assert_eq!(t.len(), 3);
    assert_eq!(t[1].0[0], "name");

    // Errors: unknown command (the batch stops there), then the session goes on.
    let (code, msg, hint) = db_error(
        admin
            .simple_query("SHOW VERSION; SHOW NOTHING; SHOW POOLS")
            .await,
    )
    .await;
    assert_eq!(code, SqlState::SYNTAX_ERROR);
    assert!(msg.contains("SHOW NOTHING"), "{msg}");
    assert_eq!(hint.as_deref(), Some("SHOW HELP lists the commands"));
    let (code, _, _) = db_error(admin.simple_query("SELECT 1").await).await;
    assert_eq!(code, SqlState::SYNTAX_ERROR);
    // The extended protocol is refused, and the session is still usable after Sync.
    let (code, msg, _) = db_error(admin.query("SHOW SHARDS", &[]).await).await;
    assert_eq!(code, SqlState::FEATURE_NOT_SUPPORTED);
    assert!(msg.contains("simple query protocol"), "{msg}");
    assert_eq!(rows(&admin, "show version", &["version"]).await.len(), 1);

    // Who may log in where.
    let (code, msg) = connect_err(&url(port, "app", APP_PW, "shardproxy")).await;
    assert_eq!(code, SqlState::INVALID_AUTHORIZATION_SPECIFICATION, "{msg}");
    let (code, _) = connect_err(&url(port, "admin", ADMIN_PW, "postgres")).await;
    assert_eq!(code, SqlState::INVALID_PASSWORD);
    let (code, _) = connect_err(&url(port, "admin", "wrong", "shardproxy")).await;
    assert_eq!(code, SqlState::INVALID_PASSWORD);

    // Fill max_clients (5) with sockets stuck in startup: they are listed,
    // and the next client is refused (counted in the metrics).
    let mut stuck = Vec::new();
    for _ in 0..3 {
        stuck.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.proxy.clients.count() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let clients = rows(
        &admin,
        "SHOW CLIENTS",
        &[
            "id",
            "user",
            "database",
            "application_name",
            "address",
            "state",
            "connected_at",
            "queries",
        ],
    )
    .await;
    assert_eq!(
        clients.iter().filter(|c| c["state"] == "startup").count(),
        3,
        "{clients:?}"
    );
    let (code, _) = connect_err(&app_url).await;
    assert_eq!(code, SqlState::TOO_MANY_CONNECTIONS);
    drop(stuck);

    // The Prometheus endpoint: every metric, with values that match SHOW STATS.
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        text = http_get(mport, "/metrics").await;
        if sample(&text, "shardproxy_clients_refused_total").unwrap_or(0.0) >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for name in shardproxy::metrics::ALL {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from:\n{text}"
        );
    }
    let shard = |name: &str| sample(&text, &format!("{name}{{shard=\"s0\"}}"));
    assert!(shard("shardproxy_queries_total").unwrap() >= 6.0, "{text}");
    assert!(shard("shardproxy_transactions_total").unwrap() >= 5.0);
    assert!(shard("shardproxy_errors_total").unwrap() >= 1.0);
    assert!(shard("shardproxy_bytes_sent_total").unwrap() > 0.0);
    assert!(shard("shardproxy_bytes_received_total").unwrap() > 0.0);
    assert_eq!(shard("shardproxy_shard_up"), Some(1.0));
    assert_eq!(shard("shardproxy_pool_in_use"), Some(0.0));
    assert_eq!(shard("shardproxy_pool_waiting"), Some(0.0));
    assert!(shard("shardproxy_pool_idle").unwrap() >= 1.0);
    assert!(sample(&text, "shardproxy_clients_connected").unwrap() >= 2.0);
    assert!(
        sample(&text, "shardproxy_clients_refused_total").unwrap() >= 1.0,
        "{text}"
    );
    assert!(
        shard("shardproxy_query_duration_seconds_count").unwrap() >= 6.0,
        "{text}"
    );
    for le in ["0.00005", "0.001", "5", "+Inf"] {
        let series =
            format!("shardproxy_query_duration_seconds_bucket{{shard=\"s0\",le=\"{le}\"}}");
        assert!(
            sample(&text, &series).is_some(),
            "{series} missing:\n{text}"
        );
    }

    drop(app);
    drop(admin);
    p.serve.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_good_file_keeps_the_old_one_on_error_and_shutdown_drains() {
    let pg = temp_cluster();
    let dir = temp_dir();
    let path: PathBuf = dir.path().join("proxy.toml");
    let port = free_port();
    std::fs::write(&path, config_text(pg.port(), port, None, None)).unwrap();
    let p = start(&path).await;

    // An app client mid-transaction while the config changes under it.
    let app = connect(&url(port, "app", APP_PW, "postgres")).await;
    app.batch_execute("CREATE TABLE t(x int); BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let (code, _) = connect_err(&url(port, "late", APP_PW, "postgres")).await;
    assert_eq!(code, SqlState::INVALID_PASSWORD);

    std::fs::write(&path, config_text(pg.port(), port, None, Some("late"))).unwrap();
    let (out, notice) = psql_admin(port, "RELOAD");
    assert_eq!(out, "RELOAD");
    assert!(
        notice.contains("NOTICE:") && notice.contains("2 users"),
        "{notice}"
    );
    let late = connect(&url(port, "late", APP_PW, "postgres")).await;
    app.batch_execute("INSERT INTO t VALUES (2); COMMIT")
        .await
        .unwrap();
    let n = late.simple_query("SELECT count(*) FROM t").await.unwrap();
    let SimpleQueryMessage::Row(r) = &n[1] else {
        panic!("{n:?}")
    };
    assert_eq!(r.get(0), Some("2"));

    // A broken file: an error naming it, and everything keeps working as before.
    std::fs::write(
        &path,
        "[proxy]\nlisten = \"127.0.0.1:1\"\n[[shards]]\nname = \"s0\"\n",
    )
    .unwrap();
    let admin = connect(&admin_url(port)).await;
    let (code, msg, _) = db_error(admin.simple_query("reload").await).await;
    assert_eq!(code.code(), "F0000");
    assert!(msg.contains("proxy.toml"), "{msg}");
    // A valid file that moves the listener is refused too (needs a restart).
    let moved = config_text(pg.port(), free_port(), None, Some("late"));
    std::fs::write(&path, moved).unwrap();
    let (code, msg, _) = db_error(admin.simple_query("RELOAD").await).await;
    assert_eq!(code.code(), "F0000");
    assert!(msg.contains("proxy.listen"), "{msg}");
    let late2 = connect(&url(port, "late", APP_PW, "postgres")).await;
    assert_eq!(late2.simple_query("SELECT 1").await.unwrap().len(), 3);
    assert_eq!(app.simple_query("SELECT 1").await.unwrap().len(), 3);
    let config = rows(&admin, "SHOW CONFIG", &["key", "value"]).await;
    assert!(config
        .iter()
        .any(|r| r["key"] == "users[1].name" && r["value"] == "late"));

    // SHUTDOWN: the command answers, then every session (the console too) is
    // closed with 57P01 and the listener finishes.
    let t = admin.simple_query("SHUTDOWN").await.unwrap();
    assert!(matches!(
        t.last(),
        Some(SimpleQueryMessage::CommandComplete(_))
    ));
    let done = tokio::time::timeout(Duration::from_secs(10), p.serve).await;
    assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
    assert!(p.proxy.clients.count() == 0);
    let e = app.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        e.is_closed() || e.code() == Some(&SqlState::ADMIN_SHUTDOWN),
        "{e:?}"
    );
    assert!(
        tokio_postgres::connect(&url(port, "app", APP_PW, "postgres"), tokio_postgres::NoTls)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_replaced_by_reload_closes_its_backends() {
    let pg = temp_cluster();
    let shard = connect(&pg.url("postgres")).await;
    let dir = temp_dir();
    let path: PathBuf = dir.path().join("proxy.toml");
    let port = free_port();
    std::fs::write(&path, config_text(pg.port(), port, None, None)).unwrap();
    let p = start(&path).await;
    // One client holds a backend in a transaction, another left one idle.
    let busy = connect(&url(port, "app", APP_PW, "postgres")).await;
    let idle = connect(&url(port, "app", APP_PW, "postgres")).await;
    let busy_pid: i32 = busy
        .simple_query("BEGIN; SELECT pg_backend_pid()")
        .await
        .unwrap()
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
            _ => None,
        })
        .unwrap();
    let idle_pid: i32 = idle
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(busy_pid, idle_pid);

    // A new pool size replaces the shard's pool. (Holding the old one here
    // stands for an idle client whose session still has the old snapshot.)
    let old_pool = p.proxy.runtime().pools[0].clone();
    let resized = config_text(pg.port(), port, None, None).replace("size = 4", "size = 3");
    std::fs::write(&path, resized).unwrap();
    p.proxy.reload().unwrap();
    assert!(
        backend_gone(&shard, idle_pid).await,
        "the old pool's idle backend is still open"
    );

    // The idle client's next statement runs on the new pool.
    let next: i32 = idle
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(next, idle_pid);
    let new_pool = p.proxy.runtime().pools[0].clone();
    assert_eq!(new_pool.settings.size, 3);
    assert_eq!(new_pool.connects(), 1);
    assert_eq!(old_pool.in_use(), 1);

    // The open transaction finishes on its backend, which then closes.
    let still: i32 = busy
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(still, busy_pid);
    busy.batch_execute("COMMIT").await.unwrap();
    assert!(
        backend_gone(&shard, busy_pid).await,
        "the old pool kept a returned backend"
    );
    assert_eq!(old_pool.idle(), 0);
    assert_eq!(old_pool.in_use(), 0);
    let v: i32 = busy.query_one("SELECT 5", &[]).await.unwrap().get(0);
    assert_eq!(v, 5);
    p.serve.abort();
}
