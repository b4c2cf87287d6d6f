//! Shards that are databases of one Postgres cluster (a common way to start
//! with "virtual" shards): two-phase commit ids are unique per cluster, so
//! every participant of a multi-shard write needs its own.

mod common;

use common::proxy::*;
use common::*;
use std::time::Duration;
use tokio_postgres::NoTls;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_shard_writes_commit_when_shards_share_a_cluster() {
    let c = temp_cluster();
    psql(&c.url("postgres"), "CREATE DATABASE db0");
    psql(&c.url("postgres"), "CREATE DATABASE db1");
    let p = start_proxy_with(
        &[("s0", c.url("db0")), ("s1", c.url("db1"))],
        "",
        "[[tables]]\nname = \"t\"\nshard_key = \"id\"\n",
    )
    .await;
    let client = connect(&p.url()).await;
    // DDL to both databases: one two-phase commit with two participants.
    client
        .batch_execute("CREATE TABLE t (id bigint PRIMARY KEY, v text)")
        .await
        .unwrap();
    // A multi-row INSERT split across both, and a keyless UPDATE everywhere.
    let values: Vec<String> = (1..=40).map(|i| format!("({i}, 'x')")).collect();
    client
        .batch_execute(&format!(
            "INSERT INTO t (id, v) VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
    client.batch_execute("UPDATE t SET v = 'y'").await.unwrap();
    let on = |db: &str| psql(&c.url(db), "SELECT count(*) FROM t WHERE v = 'y'");
    let (a, b): (i64, i64) = (on("db0").parse().unwrap(), on("db1").parse().unwrap());
    assert_eq!(a + b, 40);
    assert!(a > 0 && b > 0, "rows on both shards: {a} / {b}");
    assert_eq!(
        psql(&c.url("postgres"), "SELECT count(*) FROM pg_prepared_xacts"),
        "0",
        "nothing left prepared"
    );
}

/// A named statement parsed in the same pipeline as its first fanned-out
/// execution (as pgjdbc sends once a statement passes its prepare
/// threshold): every shard runs it, and later executions reuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_parse_in_a_fanned_out_pipeline_runs_on_every_shard() {
    let c = temp_cluster();
    psql(&c.url("postgres"), "CREATE DATABASE db0");
    psql(&c.url("postgres"), "CREATE DATABASE db1");
    let p = start_proxy_with(
        &[("s0", c.url("db0")), ("s1", c.url("db1"))],
        "",
        "[[tables]]\nname = \"t\"\nshard_key = \"id\"\n",
    )
    .await;
    let client = connect(&p.url()).await;
    client
        .batch_execute("CREATE TABLE t (id bigint PRIMARY KEY, v text)")
        .await
        .unwrap();
    let values: Vec<String> = (1..=40).map(|i| format!("({i}, 'x')")).collect();
    client
        .batch_execute(&format!(
            "INSERT INTO t (id, v) VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
    let mut raw = Raw::login(([127, 0, 0, 1], p.port()).into()).await;
    let first = [
        parse_msg("ids", "SELECT id FROM t WHERE v = $1", &[]),
        bind_msg("", "ids", &[], &[Some(b"x")], &[]),
        execute_msg("", 0),
        sync_msg(),
    ]
    .concat();
    raw.send(&first).await;
    let r = raw.until_ready().await;
    assert_eq!(first_error(&r), None, "{}", tags(&r));
    assert_eq!(data_rows(&r).len(), 40, "{}", tags(&r));
    let again = [
        bind_msg("", "ids", &[], &[Some(b"x")], &[]),
        execute_msg("", 0),
        sync_msg(),
    ]
    .concat();
    raw.send(&again).await;
    let r = raw.until_ready().await;
    assert_eq!(first_error(&r), None, "{}", tags(&r));
    let mut ids: Vec<i64> = data_rows(&r)
        .iter()
        .map(|row| {
            String::from_utf8(row[0].clone().unwrap())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=40).collect::<Vec<i64>>());

    // A fanned-out write prepared the same way, then a second Parse of its
    // name (refused with 42P05, as Postgres does) in a pipeline that fans
    // out: no shard may run the old statement in its place.
    let write = [
        parse_msg("w", "UPDATE t SET v = $1", &[]),
        bind_msg("", "w", &[], &[Some(b"y")], &[]),
        execute_msg("", 0),
        sync_msg(),
    ]
    .concat();
    raw.send(&write).await;
    let r = raw.until_ready().await;
    assert_eq!(first_error(&r), None, "{}", tags(&r));
    let twice = [
        parse_msg("w", "SELECT id FROM t WHERE v = $1", &[]),
        bind_msg("", "w", &[], &[Some(b"z")], &[]),
        execute_msg("", 0),
        sync_msg(),
    ]
    .concat();
    raw.send(&twice).await;
    let r = raw.until_ready().await;
    assert_eq!(
        first_error(&r).map(|e| e.0),
        Some("42P05".into()),
        "{}",
        tags(&r)
    );
    let on = |db: &str| psql(&c.url(db), "SELECT count(*) FROM t WHERE v = 'y'");
    let (a, b): (i64, i64) = (on("db0").parse().unwrap(), on("db1").parse().unwrap());
    assert_eq!(a + b, 40, "every row still 'y'");
    // The session goes on.
    raw.send(&again).await;
    let r = raw.until_ready().await;
    assert_eq!(first_error(&r), None, "{}", tags(&r));
    assert!(data_rows(&r).is_empty(), "no row is 'x' any more");
}

/// CancelRequests reach every backend a client is running on: each shard
/// of a fanned-out statement, and the current shard of a transaction that
/// spans shards; afterwards the one-backend case still cancels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_fanned_out_and_multi_shard_statements() {
    let c = temp_cluster();
    psql(&c.url("postgres"), "CREATE DATABASE db0");
    psql(&c.url("postgres"), "CREATE DATABASE db1");
    let p = start_proxy_with(
        &[("s0", c.url("db0")), ("s1", c.url("db1"))],
        "proxy.two_phase_commit = true",
        "[[tables]]\nname = \"t\"\nshard_key = \"id\"\n",
    )
    .await;
    let setup = connect(&p.url()).await;
    setup
        .batch_execute("CREATE TABLE t (id bigint PRIMARY KEY, v text)")
        .await
        .unwrap();
    let values: Vec<String> = (1..=40).map(|i| format!("({i}, 'x')")).collect();
    setup
        .batch_execute(&format!(
            "INSERT INTO t (id, v) VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
    let on = |db: &str| -> i64 { psql(&c.url(db), "SELECT min(id) FROM t").parse().unwrap() };
    let (a, b) = (on("db0"), on("db1"));

    // Runs `sql` after `before` on a fresh client and cancels it after
    // 300 ms: it must end with 57014 well before its sleep would.
    async fn cancelled(url: &str, before: &str, sql: &str) -> tokio_postgres::Client {
        let client = connect(url).await;
        client.batch_execute(before).await.unwrap();
        let token = client.cancel_token();
        let sql = sql.to_string();
        let q = tokio::spawn(async move {
            let r = client.simple_query(&sql).await;
            (r, client)
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await.unwrap();
        let (r, client) = tokio::time::timeout(Duration::from_secs(5), q)
            .await
            .expect("statement not cancelled on every shard")
            .unwrap();
        let e = r.unwrap_err();
        assert_eq!(code_of(&e), "57014", "{e:?}");
        client
    }
    // A fan-out: both shards sleep, both must be cancelled.
    let url = p.url();
    cancelled(&url, "SELECT 1", "SELECT pg_sleep(20) FROM t WHERE v = 'x'").await;
    // A transaction on both shards: the statement runs on the second.
    let client = cancelled(
        &url,
        &format!("BEGIN; UPDATE t SET v = 'y' WHERE id = {a}"),
        &format!("SELECT pg_sleep(20) FROM t WHERE id = {b}"),
    )
    .await;
    client.batch_execute("ROLLBACK").await.unwrap();
    // Back to one backend per statement.
    let client = cancelled(
        &url,
        "SELECT 1",
        &format!("SELECT pg_sleep(20) FROM t WHERE id = {a}"),
    )
    .await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM t WHERE v = 'x'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 40, "the rolled back update left nothing behind");
}
