//! Shards that are databases of one Postgres cluster (a common way to start
//! with "virtual" shards): two-phase commit ids are unique per cluster, so
//! every participant of a multi-shard write needs its own.

mod common;

use common::proxy::*;
use common::*;
use std::time::Duration;
use tokio_postgres::NoTls;

/// A cluster with databases db0 and db1 as shards s0 and s1 of a proxy
/// (config tweaks `root`), and table t (id bigint key, v text) created
/// through it with rows 1..=40, all v = 'x'.
async fn two_databases_as_shards(root: &str) -> (TempCluster, TestProxy, tokio_postgres::Client) {
    let c = temp_cluster();
    let (p, client) = two_databases_of(&c, |db| c.url(db), root).await;
    (c, p, client)
}

/// Like [`two_databases_as_shards`] on cluster `c`, with the shards' URLs
/// from `url_of(database)`.
async fn two_databases_of(
    c: &TempCluster,
    url_of: impl Fn(&str) -> String,
    root: &str,
) -> (TestProxy, tokio_postgres::Client) {
    psql(&c.url("postgres"), "CREATE DATABASE db0");
    psql(&c.url("postgres"), "CREATE DATABASE db1");
    let p = start_proxy_with(
        &[("s0", url_of("db0")), ("s1", url_of("db1"))],
        root,
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
    (p, client)
}

/// A CancelRequest reaches every backend of a transaction spanning shards,
/// idle ones too; each runs nothing more until its cancel is done, also
/// when the transaction's next statement switches back to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_of_a_transaction_waits_out_its_cancel() {
    within(60, async {
        let c = temp_cluster();
        let slow = common::slow_cancels::slow_cancels(c.port()).await;
        let (p, _setup) =
            two_databases_of(&c, |db| slow.url(db), "proxy.two_phase_commit = true").await;
        let on = |db: &str| -> i64 { psql(&c.url(db), "SELECT min(id) FROM t").parse().unwrap() };
        let (a, b) = (on("db0"), on("db1"));
        let client = connect(&p.url()).await;
        for sql in [
            "BEGIN".to_string(),
            format!("UPDATE t SET v = 'y' WHERE id = {a}"),
            format!("UPDATE t SET v = 'y' WHERE id = {b}"),
        ] {
            client.batch_execute(&sql).await.unwrap();
        }
        // Cancelled while idle: Postgres ignores the signals, but they might
        // still be on their way when the next statement comes.
        client.cancel_token().cancel_query(NoTls).await.unwrap();
        slow.finished(2).await;
        let next = tokio::spawn(async move {
            let r = client
                .query_one(&format!("SELECT v FROM t WHERE id = {a}"), &[])
                .await;
            (r, client)
        });
        let (r, client) = slow
            .waits_for_release(next, 2, "the transaction's next statement")
            .await;
        assert_eq!(r.unwrap().get::<_, String>(0), "y");
        client.batch_execute("COMMIT").await.unwrap();
        let y = |db: &str| psql(&c.url(db), "SELECT count(*) FROM t WHERE v = 'y'");
        assert_eq!((y("db0"), y("db1")), ("1".to_string(), "1".to_string()));
        drop(p);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_shard_writes_commit_when_shards_share_a_cluster() {
    // DDL to both databases: one two-phase commit with two participants,
    // then a multi-row INSERT split across both.
    let (c, _p, client) = two_databases_as_shards("").await;
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
    let (c, p, _client) = two_databases_as_shards("").await;
    let mut raw = Raw::login(([127, 0, 0, 1], p.port()).into()).await;
    let first = [
        parse_bind_execute("ids", "SELECT id FROM t WHERE v = $1", b"x"),
        sync_msg(),
    ]
    .concat();
    raw.send(&first).await;
    let r = raw.until_ready().await;
    assert_eq!(first_error(&r), None, "{}", tags(&r));
    assert_eq!(data_rows(&r).len(), 40, "{}", tags(&r));
    let again = [bind_execute("ids", b"x"), sync_msg()].concat();
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
        parse_bind_execute("w", "UPDATE t SET v = $1", b"y"),
        sync_msg(),
    ]
    .concat();
    raw.send(&write).await;
    let r = raw.until_ready().await;
    assert_eq!(first_error(&r), None, "{}", tags(&r));
    let twice = [
        parse_bind_execute("w", "SELECT id FROM t WHERE v = $1", b"z"),
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

    // Parse, run and Close in one pipeline: every shard runs it.
    let read_y = "SELECT id FROM t WHERE v = $1";
    let closed = [
        parse_bind_execute("c1", read_y, b"y"),
        close_statement_msg("c1"),
        sync_msg(),
    ]
    .concat();
    raw.send(&closed).await;
    let r = raw.until_ready().await;
    assert_eq!(first_error(&r), None, "{}", tags(&r));
    assert_eq!(data_rows(&r).len(), 40, "{}", tags(&r));
    // Closed, then the name parsed again for a write after the Execute:
    // every shard runs the statement the Bind named, not the later one.
    let reused = [
        parse_bind_execute("c2", read_y, b"y"),
        close_statement_msg("c2"),
        parse_msg("c2", "UPDATE t SET v = 'q' WHERE v = $1", &[]),
        sync_msg(),
    ]
    .concat();
    raw.send(&reused).await;
    let r = raw.until_ready().await;
    assert_eq!(first_error(&r), None, "{}", tags(&r));
    assert_eq!(data_rows(&r).len(), 40, "{}", tags(&r));
    let q = |db: &str| psql(&c.url(db), "SELECT count(*) FROM t WHERE v = 'q'");
    assert_eq!((q("db0"), q("db1")), ("0".into(), "0".into()));
    // A refusal after the Execute reaches the client as Postgres' error.
    let late = [
        parse_bind_execute("c3", read_y, b"y"),
        parse_msg("c3", read_y, &[]),
        sync_msg(),
    ]
    .concat();
    raw.send(&late).await;
    let r = raw.until_ready().await;
    assert_eq!(
        first_error(&r).map(|e| e.0),
        Some("42P05".into()),
        "{}",
        tags(&r)
    );
}

/// CancelRequests reach every backend a client is running on: each shard
/// of a fanned-out statement, the current shard of a transaction that spans
/// shards, both shards of a transaction's statement that fans out; shards
/// joining a transaction get its isolation level; afterwards the
/// one-backend case still cancels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_isolation_reach_every_shard_of_a_statement() {
    let (c, p, _setup) = two_databases_as_shards("proxy.two_phase_commit = true").await;
    let on = |db: &str| -> i64 { psql(&c.url(db), "SELECT min(id) FROM t").parse().unwrap() };
    let (a, b) = (on("db0"), on("db1"));

    // Runs `sql` after `before` on a fresh client and cancels it after
    // 300 ms: it must end with 57014 well before its sleep would.
    // Once `running` backends (watched directly on the cluster) run it.
    async fn cancelled(
        watch: &tokio_postgres::Client,
        running: i64,
        url: &str,
        before: &str,
        sql: &str,
    ) -> tokio_postgres::Client {
        let client = connect(url).await;
        client.batch_execute(before).await.unwrap();
        let token = client.cancel_token();
        let text = sql.to_string();
        let q = tokio::spawn(async move {
            let r = client.simple_query(&text).await;
            (r, client)
        });
        let started = std::time::Instant::now();
        loop {
            let n: i64 = watch
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'",
                    &[&sql],
                )
                .await
                .unwrap()
                .get(0);
            if n == running {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{sql}: {n} running"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
    let w = connect(&c.url("postgres")).await;
    cancelled(
        &w,
        2,
        &url,
        "SELECT 1",
        "SELECT pg_sleep(20) FROM t WHERE v = 'x'",
    )
    .await;
    // A transaction on both shards: the statement runs on the second.
    let client = cancelled(
        &w,
        1,
        &url,
        &format!("BEGIN; UPDATE t SET v = 'y' WHERE id = {a}"),
        &format!("SELECT pg_sleep(20) FROM t WHERE id = {b}"),
    )
    .await;
    client.batch_execute("ROLLBACK").await.unwrap();
    // A transaction on one shard whose statement fans out to the other too.
    let client = cancelled(
        &w,
        2,
        &url,
        &format!("BEGIN; UPDATE t SET v = 'y' WHERE id = {a}"),
        "SELECT pg_sleep(20) FROM t WHERE v = 'x'",
    )
    .await;
    client.batch_execute("ROLLBACK").await.unwrap();
    // A shard joining a transaction gets the transaction's isolation level,
    // also when the statement that fans out is the transaction's first (the
    // proxy holds the BEGIN back until then).
    for begin in [
        format!("BEGIN ISOLATION LEVEL REPEATABLE READ; UPDATE t SET v = 'y' WHERE id = {a}"),
        "BEGIN ISOLATION LEVEL REPEATABLE READ".to_string(),
    ] {
        client.batch_execute(&begin).await.unwrap();
        let levels: Vec<String> = client
            .query(
                "SELECT current_setting('transaction_isolation') FROM t WHERE id IN ($1, $2)",
                &[&a, &b],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(levels, ["repeatable read", "repeatable read"], "{begin}");
        client.batch_execute("ROLLBACK").await.unwrap();
    }
    // Back to one backend per statement.
    let client = cancelled(
        &w,
        1,
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
