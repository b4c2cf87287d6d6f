//! Shards with streaming replicas (made with pg_basebackup here): reads
//! outside a transaction land on replicas and answer what the primary
//! holds; writes, transactions and the opt-outs go to the primary; a replica
//! whose replay is paused or that stops leaves rotation and comes back; the
//! replay floor a move sets keeps reads off replicas that lack its rows;
//! and after the primary dies and a replica is promoted, writes resume there.

mod common;

use common::proxy::{code_of, start_proxy_with, TestProxy};
use common::{psql, temp_cluster, temp_replica, TempCluster};
use shardproxy::control::cluster::LocalCluster;
use shardproxy::data::pool::Role;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// A primary with `n` replicas that have replayed its schema and rows.
fn cluster_with_replicas(n: usize) -> (TempCluster, Vec<TempCluster>) {
    let primary = temp_cluster();
    psql(
        &primary.url("postgres"),
        "CREATE TABLE items (id bigint PRIMARY KEY, v text); \
         INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 100) g; \
         CREATE SEQUENCE ids",
    );
    // One after the other: a backup's checkpoint may recycle the WAL
    // another backup in progress still streams.
    let replicas = (0..n).map(|_| temp_replica(&primary)).collect();
    (primary, replicas)
}

async fn proxy_for(primary: &LocalCluster, replicas: &[&LocalCluster]) -> TestProxy {
    let list: Vec<String> = replicas
        .iter()
        .map(|r| format!("\"{}\"", r.url("postgres")))
        .collect();
    let tail = format!(
        "[[users]]\nname = \"writer\"\npassword = \"w\"\ntarget_session = \"primary\"\n\
         [[shards]]\nname = \"s0\"\nurl = \"{}\"\nreplicas = [{}]\n\
         [[tables]]\nname = \"items\"\nshard_key = \"id\"\n",
        primary.url("postgres"),
        list.join(", ")
    );
    start_proxy_with(
        &[],
        "replicas.check_interval_ms = 100\nreplicas.max_replica_lag_ms = 400",
        &tail,
    )
    .await
}

/// Inserts the row `id` through `c`; the port of the server that took it.
async fn write_port(c: &tokio_postgres::Client, id: i64) -> Result<u16, tokio_postgres::Error> {
    let sql = "INSERT INTO items (id, v) VALUES ($1, 'w') RETURNING inet_server_port()";
    Ok(c.query_one(sql, &[&id]).await?.get::<_, i32>(0) as u16)
}

/// Waits up to 20 s for `cond`.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether server `i` of shard 0 is in read rotation.
fn rotating(p: &TestProxy, i: usize) -> bool {
    p.proxy.runtime().pools[0].servers()[i]
        .stats
        .in_rotation
        .load(Relaxed)
}

/// The ports that answered `sql` (run `n` times, each its own statement).
async fn ports(c: &tokio_postgres::Client, sql: &str, n: usize) -> BTreeSet<u16> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let rows = c.simple_query(sql).await.unwrap();
        let port = rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    r.get(0).map(|p| p.parse::<u16>().unwrap())
                }
                _ => None,
            })
            .expect("a row");
        seen.insert(port);
    }
    seen
}

fn set(ports: &[u16]) -> BTreeSet<u16> {
    ports.iter().copied().collect()
}

#[tokio::test]
async fn reads_go_to_replicas_in_rotation() {
    let (primary, mut replicas) = cluster_with_replicas(2);
    let (pp, r1, r2) = (primary.port(), replicas[0].port(), replicas[1].port());
    let p = proxy_for(&primary, &[&replicas[0], &replicas[1]]).await;
    until("both replicas are in rotation", || {
        rotating(&p, 1) && rotating(&p, 2)
    })
    .await;
    let c = common::connect(&p.url()).await;
    let port_sql = "SELECT inet_server_port()";

    // Plain reads outside a transaction: both replicas, in turn.
    assert_eq!(ports(&c, port_sql, 10).await, set(&[r1, r2]));
    assert_eq!(
        ports(&c, "SELECT inet_server_port() FROM items WHERE id = 7", 6).await,
        set(&[r1, r2])
    );
    // The extended protocol too (tokio-postgres prepares and binds).
    let via_ext: i32 = c
        .query_one("SELECT inet_server_port()", &[])
        .await
        .unwrap()
        .get(0);
    assert!([r1, r2].contains(&(via_ext as u16)));
    // A replica answers what the primary holds (differential).
    let direct = common::connect(&primary.url("postgres")).await;
    let all = "SELECT id, v FROM items ORDER BY id";
    let want: Vec<(i64, String)> = direct
        .query(all, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for _ in 0..2 {
        let got: Vec<(i64, String)> = c
            .query(all, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(got, want);
    }

    // Writes, transactions and every opt-out: the primary.
    assert_eq!(write_port(&c, 1000).await.unwrap(), pp);
    c.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        ports(&c, port_sql, 2).await,
        set(&[pp]),
        "inside a transaction"
    );
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        ports(&c, "/* primary */ SELECT inet_server_port()", 4).await,
        set(&[pp])
    );
    assert_eq!(
        ports(
            &c,
            "SELECT inet_server_port() FROM items WHERE id = 7 FOR UPDATE",
            4
        )
        .await,
        set(&[pp])
    );
    assert_eq!(
        ports(&c, "SELECT inet_server_port() + 0 * nextval('ids')", 4).await,
        set(&[pp])
    );
    c.batch_execute("SET shardproxy.target_session = 'primary'")
        .await
        .unwrap();
    assert_eq!(ports(&c, port_sql, 4).await, set(&[pp]));
    c.batch_execute("RESET shardproxy.target_session")
        .await
        .unwrap();
    assert_eq!(ports(&c, port_sql, 4).await, set(&[r1, r2]));
    let e = c
        .batch_execute("SET shardproxy.target_session = 'nowhere'")
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "22P02");
    let writer = common::connect(&p.url_as("writer", "w")).await;
    assert_eq!(
        ports(&writer, port_sql, 4).await,
        set(&[pp]),
        "a primary-only user"
    );

    // Replay paused on replica 1: once its lag passes the limit it leaves
    // rotation, and reads go to replica 2 only.
    let r1c = common::connect(&replicas[0].url("postgres")).await;
    r1c.batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    direct
        .batch_execute("INSERT INTO items (id, v) VALUES (1001, 'lagging')")
        .await
        .unwrap();
    until("replica 1 leaves rotation", || !rotating(&p, 1)).await;
    assert_eq!(ports(&c, port_sql, 6).await, set(&[r2]));
    // Both out: reads go to the primary.
    let r2c = common::connect(&replicas[1].url("postgres")).await;
    r2c.batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    direct
        .batch_execute("INSERT INTO items (id, v) VALUES (1002, 'lagging')")
        .await
        .unwrap();
    until("replica 2 leaves rotation", || !rotating(&p, 2)).await;
    assert_eq!(ports(&c, port_sql, 4).await, set(&[pp]));
    let admin = common::connect(&format!(
        "postgres://admin:admin@127.0.0.1:{}/shardproxy",
        p.port()
    ))
    .await;
    let shards = admin.simple_query("SHOW SHARDS").await.unwrap();
    let states: Vec<(String, String)> = shards
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                r.get("role").unwrap().to_string(),
                r.get("state").unwrap().to_string(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        [
            ("primary", "up"),
            ("replica", "lagging"),
            ("replica", "lagging")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // Replay resumed: back in rotation once caught up.
    r1c.batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    r2c.batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    until("both replicas are back", || {
        rotating(&p, 1) && rotating(&p, 2)
    })
    .await;
    assert_eq!(ports(&c, port_sql, 10).await, set(&[r1, r2]));

    // A replica that stops leaves rotation; reads carry on on the other.
    replicas[1].cluster_mut().stop().unwrap();
    until("the stopped replica leaves rotation", || !rotating(&p, 2)).await;
    assert_eq!(ports(&c, port_sql, 6).await, set(&[r1]));
    let pool = p.proxy.runtime().pools[0].clone();
    assert!(!pool.servers()[2].stats.up.load(Relaxed));

    // The hook a move uses: replicas that have not replayed up to the
    // primary's position when it is called serve no reads, from at once.
    r1c.batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    direct
        .batch_execute("INSERT INTO items (id, v) VALUES (2000, 'moved here')")
        .await
        .unwrap();
    let floor = pool.fence_replica_reads().await.unwrap();
    assert!(floor > 0);
    for _ in 0..5 {
        let r = c
            .query("SELECT v FROM items WHERE id = 2000", &[])
            .await
            .unwrap();
        assert_eq!(r.len(), 1, "a read missed a row the floor covers");
    }
    assert_eq!(ports(&c, port_sql, 4).await, set(&[pp]));
    r1c.batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    until("replica 1 has replayed past the floor", || {
        rotating(&p, 1) && pool.servers()[1].stats.lsn.load(Relaxed) >= floor
    })
    .await;
    assert_eq!(ports(&c, port_sql, 4).await, set(&[r1]));
    assert_eq!(
        c.query("SELECT v FROM items WHERE id = 2000", &[])
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn writes_resume_on_a_promoted_replica() {
    let (mut primary, replicas) = cluster_with_replicas(1);
    let (pp, rp) = (primary.port(), replicas[0].port());
    let p = proxy_for(&primary, &[&replicas[0]]).await;
    until("the replica is in rotation", || rotating(&p, 1)).await;
    let pool = p.proxy.runtime().pools[0].clone();

    // A transaction in flight when the primary goes.
    let (tx, watch) = common::proxy::connect_watched(&p.url()).await;
    tx.batch_execute("BEGIN; INSERT INTO items (id, v) VALUES (500, 'in flight')")
        .await
        .unwrap();
    primary.cluster_mut().stop_immediate().unwrap();
    let e = tx
        .batch_execute("INSERT INTO items (id, v) VALUES (501, 'in flight')")
        .await
        .unwrap_err();
    assert!(
        code_of(&e).starts_with("08") || e.is_closed(),
        "not retryable: {e}"
    );
    let _ = watch.await;

    // Reads go on on the replica meanwhile.
    let c = common::connect(&p.url()).await;
    assert_eq!(ports(&c, "SELECT inet_server_port()", 2).await, set(&[rp]));
    let e = c
        .batch_execute("INSERT INTO items (id, v) VALUES (502, 'no primary')")
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "08006");

    // Promoted, as an HA manager would: writes resume there.
    replicas[0].promote().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let landed = loop {
        match write_port(&c, 503).await {
            Ok(port) => break port,
            Err(e) => {
                assert!(Instant::now() < deadline, "writes did not resume: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(landed, rp);
    assert_eq!(pool.primary_index(), 1);
    assert_eq!(pool.failovers.load(Relaxed), 1);
    // Nothing was sent twice, and the lost transaction left nothing behind.
    let promoted = common::connect(&replicas[0].url("postgres")).await;
    let n: i64 = promoted
        .query_one("SELECT count(*) FROM items WHERE id >= 500", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "only the write after the failover");

    // The old primary back on its old timeline is left alone.
    let old = LocalCluster::start(primary.data_dir(), pp).unwrap();
    until("the old primary is seen as diverged", || {
        pool.servers()[0].stats.up.load(Relaxed) && pool.servers()[0].stats.role() == Role::Diverged
    })
    .await;
    assert_eq!(write_port(&c, 504).await.unwrap(), rp);
    drop(old);
}
