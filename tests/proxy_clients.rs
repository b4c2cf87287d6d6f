//! Real client programs through the proxy: psql scripts (\copy, \gset,
//! transactions, errors, password auth) and pgbench (initialisation, then
//! select-only runs in the simple, extended and prepared protocols with
//! more clients than backends).

mod common;

use common::proxy::*;
use common::*;
use shardproxy::control::cluster::LocalCluster;
use std::path::{Path, PathBuf};

fn bin(name: &str) -> PathBuf {
    LocalCluster::bin_dir()
        .map(|b| b.join(name))
        .unwrap_or_else(|_| name.into())
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs a PostgreSQL client program against the proxy (async, so the
/// in-process proxy keeps being served meanwhile).
async fn run(program: &str, args: &[&str], password: &str, dir: &Path) -> Run {
    let out = tokio::process::Command::new(bin(program))
        .args(args)
        .current_dir(dir)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `psql -X -v ON_ERROR_STOP=<stop> -f script` as `user`.
async fn psql_script(p: &TestProxy, dir: &Path, script: &str, stop: bool, password: &str) -> Run {
    let file = dir.join("script.sql");
    std::fs::write(&file, script).unwrap();
    let port = p.port().to_string();
    let stop = format!("ON_ERROR_STOP={}", u8::from(stop));
    run(
        "psql",
        &[
            "-X",
            "-q",
            "-A",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            USER,
            "-d",
            "postgres",
            "-v",
            &stop,
            "-f",
            "script.sql",
        ],
        password,
        dir,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_scripts() {
    within(60, psql_body()).await
}

async fn psql_body() {
    let c = temp_cluster();
    let shard = connect(&c.url("postgres")).await;
    let p = start_proxy(&[("s0", c.url("postgres"))], "pool.size = 2").await;
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::new();
    for i in 1..=500 {
        csv.push_str(&format!("{i},\"item, no. {i}\"\n"));
    }
    std::fs::write(dir.path().join("in.csv"), &csv).unwrap();

    let script = r#"
CREATE TABLE items(id int PRIMARY KEY, name text);
\copy items FROM 'in.csv' WITH (FORMAT csv)
SELECT count(*) AS n FROM items \gset
\echo count=:n
BEGIN;
INSERT INTO items VALUES (1000, 'rolled back');
ROLLBACK;
BEGIN;
INSERT INTO items VALUES (1001, 'kept');
UPDATE items SET name = name || '!' WHERE id = 1001;
COMMIT;
SELECT max(id) AS maxid, sum(id) AS total FROM items \gset
\echo maxid=:maxid total=:total
SELECT name FROM items WHERE id = 1001 \gset
\echo name=:name
\copy (SELECT id, name FROM items WHERE id <= 500 ORDER BY id) TO 'out.csv' WITH (FORMAT csv)
SET application_name = 'from_psql';
SELECT current_setting('application_name') AS app \gset
\echo app=:app
"#;
    let r = psql_script(&p, dir.path(), script, true, PASSWORD).await;
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    for want in [
        "count=500",
        "maxid=1001",
        &format!("total={}", 500 * 501 / 2 + 1001),
        "name=kept!",
        "app=from_psql",
    ] {
        assert!(r.stdout.contains(want), "missing {want} in:\n{}", r.stdout);
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        csv,
        "\\copy out differs from what went in"
    );
    let n: i64 = shard
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 501);

    // ON_ERROR_STOP=1: the script stops at the first error, exit code 3.
    let r = psql_script(
        &p,
        dir.path(),
        "SELECT 'before';\nSELECT 1/0;\nSELECT 'after';\n",
        true,
        PASSWORD,
    )
    .await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("division by zero"), "{}", r.stderr);
    assert!(
        r.stdout.contains("before") && !r.stdout.contains("after"),
        "{}",
        r.stdout
    );
    // Without it: errors inside a transaction abort it, ROLLBACK recovers.
    let r = psql_script(
        &p,
        dir.path(),
        "BEGIN;\nINSERT INTO items VALUES (2000, 'x');\nSELECT 1/0;\nSELECT 'in failed tx';\nROLLBACK;\nSELECT 'recovered', count(*) FROM items WHERE id = 2000;\n\\copy items FROM 'missing.csv'\nSELECT 'end';\n",
        false,
        PASSWORD,
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("division by zero"), "{}", r.stderr);
    assert!(
        r.stderr.contains("current transaction is aborted"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("recovered|0"), "{}", r.stdout);
    assert!(r.stdout.contains("end"), "{}", r.stdout);
    // A wrong password is refused with psql's usual message.
    let r = psql_script(&p, dir.path(), "SELECT 1;\n", true, "not-the-password").await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("password authentication failed for user \"app\""),
        "{}",
        r.stderr
    );

    // The same script runs under md5 auth too.
    let md5 = start_proxy(
        &[("s0", c.url("postgres"))],
        "proxy.auth = \"md5\"\npool.size = 2",
    )
    .await;
    let r = psql_script(
        &md5,
        dir.path(),
        "SELECT count(*) AS n FROM items \\gset\n\\echo md5count=:n\n",
        true,
        PASSWORD,
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("md5count=501"), "{}", r.stdout);
    let r = psql_script(&md5, dir.path(), "SELECT 1;\n", true, "wrong").await;
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("password authentication failed"),
        "{}",
        r.stderr
    );
    p.wait_pool_idle(0).await;
}

/// A pgbench summary's "key = value" number (e.g. "tps").
fn field(out: &str, key: &str) -> Option<f64> {
    out.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(key)?.trim_start().strip_prefix('=')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_through_the_proxy() {
    within(120, pgbench_body()).await
}

async fn pgbench_body() {
    let c = temp_cluster();
    let shard = connect(&c.url("postgres")).await;
    let p = start_proxy(&[("s0", c.url("postgres"))], "pool.size = 4").await;
    let dir = tempfile::tempdir().unwrap();
    let port = p.port().to_string();
    let conn: [&str; 8] = ["-h", "127.0.0.1", "-p", &port, "-U", USER, "-d", "postgres"];

    let init = [&["-i", "-s", "1", "-q"][..], &conn[..]].concat();
    let r = run("pgbench", &init, PASSWORD, dir.path()).await;
    assert_eq!(r.code, 0, "pgbench -i failed:\n{}\n{}", r.stdout, r.stderr);
    let n: i64 = shard
        .query_one("SELECT count(*) FROM pgbench_accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 100_000);
    let pk: i64 = shard
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conname = 'pgbench_accounts_pkey'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pk, 1, "pgbench -i created the primary keys");

    for mode in ["simple", "extended", "prepared"] {
        let args = [
            &["-S", "-M", mode, "-c", "8", "-j", "2", "-t", "200", "-n"][..],
            &conn[..],
        ]
        .concat();
        let r = run("pgbench", &args, PASSWORD, dir.path()).await;
        let out = format!("{}\n{}", r.stdout, r.stderr);
        assert_eq!(r.code, 0, "pgbench -M {mode}:\n{out}");
        assert!(
            out.contains("number of failed transactions: 0 "),
            "-M {mode}:\n{out}"
        );
        assert!(
            out.contains("number of transactions actually processed: 1600/1600"),
            "-M {mode}:\n{out}"
        );
        let tps = field(&out, "tps").unwrap_or_else(|| panic!("no tps in:\n{out}"));
        assert!(tps > 0.0, "-M {mode}: tps {tps}");
        eprintln!(
            "pgbench -S -M {mode} -c 8 -j 2 -t 200 through the proxy (debug build): tps = {tps:.0}"
        );
        // Eight clients shared at most four backends.
        let backends: i64 = shard
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            backends <= 4,
            "-M {mode}: {backends} backends for pool.size = 4"
        );
    }
    p.wait_pool_idle(0).await;
}
