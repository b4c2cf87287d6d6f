//! Shards that are databases of one Postgres cluster (a common way to start
//! with "virtual" shards): two-phase commit ids are unique per cluster, so
//! every participant of a multi-shard write needs its own.

mod common;

use common::proxy::*;
use common::*;

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
