//! Recovery of two-phase commits a crashed proxy left behind, against two real
//! clusters: each crash point is staged by hand with psql (prepared
//! transactions, commit-log rows, COMMIT PREPARED on the coordinator only),
//! then `control::twophase::recover` must commit or roll back exactly what
//! the coordinator decided, leave young and undecidable gids alone, and skip
//! shards that are down. Plus one end-to-end check through the proxy.

mod common;

use common::*;
use shardproxy::control::cluster::free_port;
use shardproxy::control::twophase::{recover, RecoveryReport};
use shardproxy::data::session::twophase::COMMIT_LOG_DDL;
use shardproxy::runtime::Runtime;
use std::time::Duration;

const NOW: Duration = Duration::ZERO;
const HOUR: Duration = Duration::from_secs(3600);

fn runtime(urls: [&str; 2]) -> Runtime {
    let text = format!(
        "[[shards]]\nname = \"s0\"\nurl = \"{}\"\n\n[[shards]]\nname = \"s1\"\nurl = \"{}\"\n",
        urls[0], urls[1]
    );
    let config = shardproxy::config::Config::parse(&text, "test").unwrap();
    Runtime::build(config, None).unwrap()
}

/// A URL where nothing listens.
fn dead_url() -> String {
    format!("postgres://postgres@127.0.0.1:{}/postgres", free_port())
}

/// Stages one participant: a row with `id` in `t`, the gid in the commit log
/// when `log`, then PREPARE TRANSACTION.
fn prepare(url: &str, gid: &str, id: i32, log: bool) {
    let log = if log {
        format!("INSERT INTO shardproxy.commit_log (gid) VALUES ('{gid}');")
    } else {
        String::new()
    };
    psql(
        url,
        &format!("BEGIN; INSERT INTO t VALUES ({id}, '{gid}'); {log} PREPARE TRANSACTION '{gid}';"),
    );
}

fn prepared_gids(url: &str) -> Vec<String> {
    let out = psql(url, "SELECT gid FROM pg_prepared_xacts ORDER BY gid");
    out.lines().map(str::to_string).collect()
}

fn has_row(url: &str, id: i32) -> bool {
    psql(url, &format!("SELECT count(*) FROM t WHERE id = {id}")) == "1"
}

fn logged(url: &str, gid: &str) -> bool {
    psql(
        url,
        &format!("SELECT count(*) FROM shardproxy.commit_log WHERE gid = '{gid}'"),
    ) == "1"
}

fn pair(gid: &str, shard: &str) -> (String, String) {
    (gid.to_string(), shard.to_string())
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_finishes_each_crash_point_as_the_coordinator_decided() {
    let clusters = temp_clusters(2);
    let s0 = clusters[0].url("postgres");
    let s1 = clusters[1].url("postgres");
    psql(&s0, COMMIT_LOG_DDL);
    for u in [&s0, &s1] {
        psql(u, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    }
    let rt = runtime([&s0, &s1]);
    let quiet = recover(&rt, NOW).await;
    assert_eq!(quiet, RecoveryReport::default(), "nothing to do yet");

    // (a) Both prepared, the coordinator not committed: undecided → rolled back.
    let a = "shardproxy:test-1:s0";
    prepare(&s0, a, 1, true);
    prepare(&s1, a, 1, false);
    let r = recover(&rt, NOW).await;
    assert_eq!(
        sorted(r.rolled_back.clone()),
        vec![pair(a, "s0"), pair(a, "s1")]
    );
    assert!(r.committed.is_empty() && r.deferred.is_empty(), "{r:?}");
    assert!(prepared_gids(&s0).is_empty() && prepared_gids(&s1).is_empty());
    assert!(!has_row(&s0, 1) && !has_row(&s1, 1) && !logged(&s0, a));

    // (b) The coordinator committed (its log row is visible), s1 still prepared → commit s1.
    let b = "shardproxy:test-2:s0";
    prepare(&s0, b, 2, true);
    prepare(&s1, b, 2, false);
    psql(&s0, &format!("COMMIT PREPARED '{b}'"));
    assert!(logged(&s0, b) && !has_row(&s1, 2));
    let r = recover(&rt, NOW).await;
    assert_eq!(r.committed, vec![pair(b, "s1")], "{r:?}");
    assert!(r.rolled_back.is_empty(), "{r:?}");
    assert_eq!(r.forgotten, vec![b.to_string()]);
    assert!(has_row(&s0, 2) && has_row(&s1, 2));
    assert!(prepared_gids(&s1).is_empty());
    assert!(
        !logged(&s0, b),
        "the log row goes once no shard has the gid prepared"
    );

    // (c) Only s1 prepared; the coordinator has neither the gid nor a log row → roll back.
    let c = "shardproxy:test-3:s0";
    prepare(&s1, c, 3, false);
    let r = recover(&rt, NOW).await;
    assert_eq!(r.rolled_back, vec![pair(c, "s1")], "{r:?}");
    assert!(prepared_gids(&s1).is_empty() && !has_row(&s1, 3));

    // (d) Younger than min_age: left alone, its old log row kept by the purge;
    // an old log row of a gid prepared nowhere is purged.
    let d = "shardproxy:test-4:s0";
    prepare(&s1, d, 4, false);
    let orphan = "shardproxy:test-0:s0";
    psql(
        &s0,
        &format!(
            "INSERT INTO shardproxy.commit_log VALUES ('{d}', now() - interval '2 hours'), \
             ('{orphan}', now() - interval '2 hours'), ('shardproxy:test-9:s0', now())"
        ),
    );
    let r = recover(&rt, HOUR).await;
    assert_eq!(r.too_young, vec![d.to_string()]);
    assert!(r.committed.is_empty() && r.rolled_back.is_empty(), "{r:?}");
    assert_eq!(r.forgotten, vec![orphan.to_string()]);
    assert_eq!(prepared_gids(&s1), vec![d.to_string()]);
    assert!(logged(&s0, d) && !logged(&s0, orphan) && logged(&s0, "shardproxy:test-9:s0"));
    // Once old enough, the log row makes it a commit.
    let r = recover(&rt, NOW).await;
    assert_eq!(r.committed, vec![pair(d, "s1")], "{r:?}");
    assert!(has_row(&s1, 4) && !logged(&s0, d));

    // (e1) Coordinator down: nothing is decided, even though s1 has the gid.
    let e1 = "shardproxy:test-5:s0";
    prepare(&s0, e1, 5, true);
    prepare(&s1, e1, 5, false);
    psql(&s0, &format!("COMMIT PREPARED '{e1}'"));
    let dead = dead_url();
    let coord_down = runtime([&dead, &s1]);
    let r = recover(&coord_down, NOW).await;
    assert_eq!(r.unreachable.len(), 1, "{r:?}");
    assert_eq!(r.unreachable[0].0, "s0");
    assert_eq!(r.deferred.len(), 1, "{r:?}");
    assert_eq!(r.deferred[0].0, e1);
    assert!(r.deferred[0].1.contains("unreachable"), "{r:?}");
    assert!(r.committed.is_empty() && r.rolled_back.is_empty(), "{r:?}");
    assert_eq!(prepared_gids(&s1), vec![e1.to_string()]);

    // (e2) Participant down: the coordinator's own part is decided (rolled back
    // for an undecided gid), a committed gid's log row is kept for s1.
    let e2 = "shardproxy:test-6:s0";
    prepare(&s0, e2, 6, true);
    prepare(&s1, e2, 6, false);
    let part_down = runtime([&s0, &dead]);
    let r = recover(&part_down, NOW).await;
    assert_eq!(r.unreachable.len(), 1, "{r:?}");
    assert_eq!(r.unreachable[0].0, "s1");
    assert_eq!(r.rolled_back, vec![pair(e2, "s0")], "{r:?}");
    assert!(r.committed.is_empty() && r.forgotten.is_empty(), "{r:?}");
    assert!(logged(&s0, e1), "s1 may still need the decision");
    assert_eq!(prepared_gids(&s1), vec![e1.to_string(), e2.to_string()]);

    // Both back: e1 commits on s1 and is forgotten, e2 rolls back on s1.
    let r = recover(&rt, NOW).await;
    assert_eq!(r.committed, vec![pair(e1, "s1")], "{r:?}");
    assert_eq!(r.rolled_back, vec![pair(e2, "s1")], "{r:?}");
    assert!(r.unreachable.is_empty() && r.deferred.is_empty(), "{r:?}");
    assert!(prepared_gids(&s0).is_empty() && prepared_gids(&s1).is_empty());
    assert!(has_row(&s0, 5) && has_row(&s1, 5) && !logged(&s0, e1));
    assert!(!has_row(&s0, 6) && !has_row(&s1, 6));

    // A gid naming a shard the configuration does not have is not guessed at.
    let f = "shardproxy:test-7:gone";
    prepare(&s1, f, 7, false);
    let r = recover(&rt, NOW).await;
    assert_eq!(r.deferred.len(), 1, "{r:?}");
    assert!(
        r.deferred[0].1.contains("not in the configuration"),
        "{r:?}"
    );
    assert_eq!(prepared_gids(&s1), vec![f.to_string()]);
    psql(&s1, &format!("ROLLBACK PREPARED '{f}'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_write_through_the_proxy_leaves_nothing_prepared() {
    let clusters = temp_clusters(2);
    let s0 = clusters[0].url("postgres");
    let s1 = clusters[1].url("postgres");
    for u in [&s0, &s1] {
        psql(u, "CREATE TABLE items (id bigint PRIMARY KEY, v text)");
    }
    let port = free_port();
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [[users]]\nname = \"app\"\npassword = \"apppw\"\n\n\
         [[shards]]\nname = \"s0\"\nurl = \"{s0}\"\n\n\
         [[shards]]\nname = \"s1\"\nurl = \"{s1}\"\n\n\
         [[tables]]\nname = \"items\"\nshard_key = \"id\"\nkey_type = \"bigint\"\n"
    );
    let config = shardproxy::config::Config::parse(&text, "test").unwrap();
    let b = shardproxy::app::bind(config).await.unwrap();
    let serve = tokio::spawn(shardproxy::runtime::listener::serve(
        b.proxy.clone(),
        b.listener,
    ));
    let client = connect(&format!(
        "postgres://app:apppw@127.0.0.1:{}/postgres",
        b.addr.port()
    ))
    .await;
    for id in 0..20i64 {
        client
            .execute("INSERT INTO items (id, v) VALUES ($1, 'a')", &[&id])
            .await
            .unwrap();
    }
    let (n0, n1): (usize, usize) = (
        psql(&s0, "SELECT count(*) FROM items").parse().unwrap(),
        psql(&s1, "SELECT count(*) FROM items").parse().unwrap(),
    );
    assert!(
        n0 > 0 && n1 > 0 && n0 + n1 == 20,
        "rows on both shards: {n0} + {n1}"
    );
    // No shard key: a fan-out write, committed with two-phase commit.
    let n = client
        .execute("UPDATE items SET v = 'b'", &[])
        .await
        .unwrap();
    assert_eq!(n, 20);
    for u in [&s0, &s1] {
        assert_eq!(
            psql(u, "SELECT count(*) FROM items WHERE v = 'b'")
                .parse::<usize>()
                .unwrap(),
            if u == &s0 { n0 } else { n1 }
        );
        assert!(prepared_gids(u).is_empty(), "nothing left prepared on {u}");
    }
    // The coordinator's commit log exists (2PC was used) and is empty again.
    let logs: Vec<String> = [&s0, &s1]
        .iter()
        .map(|u| {
            psql(
                u,
                "SELECT coalesce((SELECT count(*)::text FROM shardproxy.commit_log), 'none') \
                 WHERE to_regclass('shardproxy.commit_log') IS NOT NULL",
            )
        })
        .collect();
    assert!(
        logs.iter().any(|l| l == "0"),
        "a commit log was created: {logs:?}"
    );
    assert!(logs.iter().all(|l| l.is_empty() || l == "0"), "{logs:?}");
    // The background recovery (started by bind) finds nothing to do.
    let r = recover(&b.proxy.runtime(), NOW).await;
    assert!(r.is_quiet(), "{r:?}");
    shardproxy::runtime::listener::begin_shutdown(&b.proxy);
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(5), serve).await;
}

/// Postgres answers COMMIT and PREPARE TRANSACTION of a failed transaction
/// with the tag ROLLBACK and no error; the proxy's commits must see a
/// failure there, or a multi-shard commit would count that shard as done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committing_a_failed_transaction_is_a_failure() {
    use shardproxy::data::pool::{Backend, CancelFence, Endpoint};
    let c = temp_cluster();
    let endpoint = std::sync::Arc::new(Endpoint::new(&c.url("postgres")).unwrap());
    let mut be = Backend::connect(
        &endpoint,
        "s0",
        Duration::from_secs(5),
        std::sync::Arc::new(CancelFence::default()),
    )
    .await
    .unwrap();
    for end in ["COMMIT", "commit", "PREPARE TRANSACTION 'g1'"] {
        be.execute_silently("BEGIN").await.unwrap().unwrap();
        let (code, _) = be
            .execute_silently("SELECT 1/0")
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(code, "22012");
        let (code, msg) = be.execute_silently(end).await.unwrap().unwrap_err();
        assert_eq!(code, "40000", "{end}: {msg}");
    }
    // A transaction that did not fail commits as before.
    be.execute_silently("BEGIN").await.unwrap().unwrap();
    be.execute_silently("COMMIT").await.unwrap().unwrap();
    assert!(prepared_gids(&c.url("postgres")).is_empty());
}
