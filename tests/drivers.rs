//! Real drivers writing through the proxy into three shards: JDBC (pgjdbc,
//! Debian's libpostgresql-jdbc-java), psycopg 3, node-postgres and
//! tokio-postgres. Each driver program (under `tests/drivers/`) runs the
//! same writes against the proxy and against one unsharded Postgres (the
//! oracle) and checks on its own what its driver reports (errors of failing
//! batches, RETURNING order, counts). Then every row must sit on the shard
//! that owns its key, read from each shard directly, and the shards
//! together must hold exactly the oracle's rows.
//!
//! `.ci/run` installs the drivers (java, javac and pgjdbc from apt, psycopg
//! from PyPI, `npm ci` in tests/drivers/node); without one, its test fails
//! and says what to install.

mod common;

use common::connect;
use common::proxy::within;
use common::routed::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const TABLES: &str = "\
[[tables]]\nname = \"jdbc_rows\"\nshard_key = \"id\"\n\n\
[[tables]]\nname = \"py_rows\"\nshard_key = \"id\"\n\n\
[[tables]]\nname = \"node_rows\"\nshard_key = \"id\"\n\n\
[[tables]]\nname = \"tp_rows\"\nshard_key = \"id\"\n\n";

const SCHEMA: &str = "\
create table jdbc_rows (id bigint primary key, grp int not null, v text);
create table py_rows (id bigint primary key, v text, n int);
create table node_rows (id bigint primary key, v text);
create table tp_rows (id bigint primary key, v text);";

fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

/// Runs a driver program; its stdout, or a panic with both outputs.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what}: cannot run {cmd:?} ({e}); run `bash .ci/run` (or install the driver) first")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Shards and oracle with the schema; the oracle's port.
async fn setup() -> (Routed, u16) {
    // A fresh config: two-phase commit is on by default.
    let r = Routed::start_fresh(3, true, TABLES).await;
    r.on_every_shard(SCHEMA).await;
    connect(&r.oracle_url())
        .await
        .batch_execute(SCHEMA)
        .await
        .unwrap();
    let oport = r.oracle.as_ref().unwrap().port();
    (r, oport)
}

/// The proxy's shards hold `table`'s rows on their owners, and exactly
/// the oracle's rows; returns how many.
async fn same_rows(r: &Routed, table: &str, cols: &str) -> i64 {
    let shards = r.shard_clients().await;
    let n = assert_placement(r, &shards, table, "id").await;
    let sql = format!("select {cols} from {table}");
    let o = connect(&r.oracle_url()).await;
    assert_eq!(
        union_of_shards(&shards, &sql).await,
        sorted_rows(&o, &sql).await,
        "{table}: the shards and the oracle hold different rows"
    );
    let spread = counts_per_shard(&shards, table).await;
    assert!(spread.iter().all(|&k| k > 0), "{table}: {spread:?}");
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_batches() {
    let (r, oport) = setup().await;
    let classes = common::temp_dir();
    let jar = std::env::var("SHARDPROXY_JDBC_JAR")
        .unwrap_or_else(|_| "/usr/share/java/postgresql.jar".into());
    assert!(
        Path::new(&jar).exists(),
        "no pgjdbc at {jar}: apt-get install libpostgresql-jdbc-java (or set SHARDPROXY_JDBC_JAR)"
    );
    let src = drivers_dir().join("jdbc/WriteBatches.java");
    run(
        Command::new("javac")
            .arg("-d")
            .arg(classes.path())
            .args(["-cp", &jar])
            .arg(&src),
        "javac",
    );
    let cp = format!("{}:{jar}", classes.path().display());
    let variants = [
        "",
        "&prepareThreshold=1",
        "&reWriteBatchedInserts=true",
        "&reWriteBatchedInserts=true&prepareThreshold=1",
    ];
    within(240, async {
        for (i, opts) in variants.iter().enumerate() {
            let base = (i as i64 * 10_000).to_string();
            for url in [
                format!(
                    "jdbc:postgresql://127.0.0.1:{}/postgres?user={APP_USER}&password={APP_PW}&sslmode=disable{opts}",
                    r.port
                ),
                format!("jdbc:postgresql://127.0.0.1:{oport}/postgres?user=postgres&sslmode=disable{opts}"),
            ] {
                let out = tokio::task::block_in_place(|| {
                    run(
                        Command::new("java").args(["-cp", &cp, "WriteBatches", &url, &base]),
                        &format!("JDBC WriteBatches {opts}"),
                    )
                });
                assert_eq!(out.trim(), "rows 156", "JDBC {opts}");
            }
        }
        assert_eq!(same_rows(&r, "jdbc_rows", "id, grp, v").await, 4 * 156);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_executemany_pipeline_and_copy() {
    let (r, oport) = setup().await;
    let script = drivers_dir().join("python/writes.py");
    within(120, async {
        for conninfo in [
            format!(
                "host=127.0.0.1 port={} user={APP_USER} password={APP_PW} dbname=postgres sslmode=disable",
                r.port
            ),
            format!("host=127.0.0.1 port={oport} user=postgres dbname=postgres sslmode=disable"),
        ] {
            let out = tokio::task::block_in_place(|| {
                run(
                    Command::new("python3").arg(&script).arg(&conninfo).arg("0"),
                    "psycopg writes.py (pip install \"psycopg[binary]\")",
                )
            });
            assert_eq!(out.trim(), "rows 1017", "psycopg against {conninfo}");
        }
        assert_eq!(same_rows(&r, "py_rows", "id, v, n").await, 1017);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_transactions_and_pool() {
    let (r, oport) = setup().await;
    let dir = drivers_dir().join("node");
    assert!(
        dir.join("node_modules/pg").exists(),
        "node-postgres is not installed: run `npm ci` in {}",
        dir.display()
    );
    within(120, async {
        for url in [
            format!(
                "postgres://{APP_USER}:{APP_PW}@127.0.0.1:{}/postgres",
                r.port
            ),
            format!("postgres://postgres@127.0.0.1:{oport}/postgres"),
        ] {
            let out = tokio::task::block_in_place(|| {
                run(
                    Command::new("node")
                        .arg(dir.join("writes.js"))
                        .arg(&url)
                        .arg("0"),
                    "node-postgres writes.js",
                )
            });
            assert_eq!(out.trim(), "rows 155", "node-postgres against {url}");
        }
        assert_eq!(same_rows(&r, "node_rows", "id, v").await, 155);
    })
    .await;
}

/// tokio-postgres: pipelined statements (each its own Sync) in a
/// transaction and outside one, a binary COPY through the extended
/// protocol with the columns in another order, a multi-row INSERT with
/// parameters, a failing transaction.
async fn tokio_postgres_writes(c: &tokio_postgres::Client) -> i64 {
    use futures_util::future::join_all;
    use futures_util::SinkExt;
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::{ToSql, Type};

    let ins = c
        .prepare("insert into tp_rows (id, v) values ($1, $2)")
        .await
        .unwrap();
    let pipelined = |ids: std::ops::Range<i64>, v: &'static str| {
        let ins = &ins;
        join_all(ids.map(move |id| async move { c.execute(ins, &[&id, &v]).await }))
    };
    c.batch_execute("begin").await.unwrap();
    for r in pipelined(0..40, "pipelined tx").await {
        assert_eq!(r.unwrap(), 1);
    }
    c.batch_execute("commit").await.unwrap();
    for r in pipelined(100..140, "pipelined").await {
        assert_eq!(r.unwrap(), 1);
    }

    let sink = c
        .copy_in("copy tp_rows (v, id) from stdin (format binary)")
        .await
        .unwrap();
    let w = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::INT8]);
    let mut w = std::pin::pin!(w);
    for i in 1000..1500i64 {
        let v = format!("binary {i}");
        w.as_mut().write(&[&v, &i]).await.unwrap();
    }
    assert_eq!(w.finish().await.unwrap(), 500);
    let sink = c
        .copy_in("copy tp_rows (id, v) from stdin (format csv)")
        .await
        .unwrap();
    let mut sink = std::pin::pin!(sink);
    let csv: String = (2000..2100).map(|i| format!("{i},\"csv {i}\"\n")).collect();
    sink.send(bytes::Bytes::from(csv)).await.unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 100);

    let ids: Vec<i64> = (0..10).map(|i| 3000 + 13 * i).collect();
    let values: Vec<String> = (0..ids.len())
        .map(|i| format!("(${}, 'multi')", i + 1))
        .collect();
    let sql = format!(
        "insert into tp_rows (id, v) values {} returning id",
        values.join(", ")
    );
    let params: Vec<&(dyn ToSql + Sync)> = ids.iter().map(|i| i as &(dyn ToSql + Sync)).collect();
    let back: Vec<i64> = c
        .query(&sql, &params)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(back, ids, "RETURNING in VALUES order");

    // Binary COPY TO through the extended protocol, from every shard.
    let stream = c
        .copy_out("copy (select id, v from tp_rows) to stdout (format binary)")
        .await
        .unwrap();
    let rows =
        tokio_postgres::binary_copy::BinaryCopyOutStream::new(stream, &[Type::INT8, Type::TEXT]);
    let mut rows = std::pin::pin!(rows);
    let mut ids = Vec::new();
    while let Some(r) = futures_util::StreamExt::next(&mut rows).await {
        ids.push(r.unwrap().get::<i64>(0));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        690,
        "binary COPY TO: one stream of every shard's rows"
    );

    c.batch_execute("begin").await.unwrap();
    c.execute(&ins, &[&4000i64, &"failing"]).await.unwrap();
    let e = c.execute(&ins, &[&0i64, &"dup"]).await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "23505", "{e:?}");
    c.batch_execute("rollback").await.unwrap();
    c.query_one("select count(*) from tp_rows", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_pipelines_and_binary_copy() {
    let (r, _) = setup().await;
    within(60, async {
        let p = connect(&r.url()).await;
        let o = connect(&r.oracle_url()).await;
        assert_eq!(tokio_postgres_writes(&p).await, 690);
        assert_eq!(tokio_postgres_writes(&o).await, 690);
        assert_eq!(same_rows(&r, "tp_rows", "id, v").await, 690);
    })
    .await;
}
