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
