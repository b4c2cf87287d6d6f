//! Keyed routing on three real shards, differential against an unsharded
//! oracle: the same DDL, data and statements go through the proxy and to the
//! oracle, and must give the same rows; every row must sit on the shard
//! `ShardMap::shard_for` names. Covers `key = literal`, `key = $1` (binary
//! int8/int4 and text-format parameters), `key IN (…)` touching only its
//! shards, multi-row INSERT split with RETURNING order, ON CONFLICT,
//! UPDATE/DELETE by key, shard-key UPDATE refused, unkeyed writes fanned out,
//! co-located joins, NULL keys, routing hints, extended-protocol fan-out.

mod common;

use common::routed::*;
use common::*;
use std::time::Duration;

const TABLES: &str = "\
[[tables]]\nname = \"accounts\"\nshard_key = \"id\"\nkey_type = \"bigint\"\n\n\
[[tables]]\nname = \"orders\"\nshard_key = \"account_id\"\nkey_type = \"bigint\"\n\n\
[[tables]]\nname = \"events\"\nshard_key = \"k\"\nkey_type = \"integer\"\ncolocation = \"ev\"\n\n\
[[tables]]\nname = \"countries\"\nreference = true\n";

const DDL: &str = "\
create table accounts (id bigint primary key, name text not null, balance int not null);
create table orders (account_id bigint not null, id int not null, amount int not null, primary key (account_id, id));
create table events (k int, v text not null);
create table countries (code text primary key, name text not null)";

/// Runs `sql` through the proxy and on the oracle, returns (proxy, oracle) rows.
async fn both(
    p: &tokio_postgres::Client,
    o: &tokio_postgres::Client,
    sql: &str,
) -> (Vec<Vec<Option<String>>>, Vec<Vec<Option<String>>>) {
    (text_rows(p, sql).await, text_rows(o, sql).await)
}

/// Same rows through the proxy and on the oracle (sorted unless `ordered`).
async fn same(p: &tokio_postgres::Client, o: &tokio_postgres::Client, sql: &str, ordered: bool) {
    let (mut a, mut b) = both(p, o, sql).await;
    if !ordered {
        a.sort();
        b.sort();
    }
    assert_eq!(a, b, "proxy vs oracle differ on: {sql}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_routing_matches_the_oracle() {
    let r = Routed::start(3, true, false, TABLES).await;
    let p = connect(&r.url()).await;
    let o = connect(&r.oracle_url()).await;
    let shards = r.shard_clients().await;
    // A query string of several all-shard statements is refused, so one at a time.
    for stmt in DDL.split(';') {
        p.batch_execute(stmt).await.unwrap();
    }
    o.batch_execute(DDL).await.unwrap();

    // Multi-row INSERT split across shards; RETURNING follows VALUES order.
    let ids: Vec<i64> = (0..60).map(|i| (i * 37) % 60 + 1).collect();
    let values: Vec<String> = ids
        .iter()
        .map(|i| format!("({i}, 'acct{i}', {})", (i * 13) % 100))
        .collect();
    let ins = format!(
        "insert into accounts (id, name, balance) values {} returning id, name",
        values.join(", ")
    );
    let (pr, or) = both(&p, &o, &ins).await;
    assert_eq!(pr, or, "RETURNING differs from the oracle");
    let returned: Vec<i64> = pr
        .iter()
        .map(|r| r[0].as_ref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(returned, ids, "RETURNING order is VALUES order");
    let mut expected = vec![0i64; 3];
    for i in &ids {
        expected[r.shard_of_int("accounts", *i)] += 1;
    }
    assert_eq!(counts_per_shard(&shards, "accounts").await, expected);
    assert!(
        expected.iter().all(|&n| n > 0),
        "60 keys spread over 3 shards"
    );
    assert_placement(&r, &shards, "accounts", "id").await;

    // Orders co-located with accounts (same group, same key).
    let ord: Vec<String> = (1..=60)
        .flat_map(|a| (1..=3).map(move |n| format!("({a}, {n}, {})", (a * 7 + n * 11) % 100)))
        .collect();
    // Without a column list the key's position comes from the shards' catalog.
    let no_list = "insert into orders values (1000, 1, 1)";
    assert_eq!(
        exec_simple(&p, no_list).await,
        exec_simple(&o, no_list).await
    );
    // A multi-row INSERT spanning shards is split per shard through the
    // extended protocol (half the rows) and the simple protocol (the rest).
    let ins = |rows: &[String]| {
        format!(
            "insert into orders (account_id, id, amount) values {}",
            rows.join(", ")
        )
    };
    let (first, second) = ord.split_at(90);
    assert_eq!(p.execute(&ins(first), &[]).await.unwrap(), 90);
    assert_eq!(exec_simple(&p, &ins(second)).await, 90);
    assert_eq!(exec_simple(&o, &ins(&ord)).await, 180);
    assert_placement(&r, &shards, "orders", "account_id").await;

    // key = literal, IN lists, unkeyed fan-out reads, co-located joins.
    for q in [
        "select * from accounts where id = 7",
        "select * from accounts where id = 999",
        "select * from accounts where id in (1, 2, 3, 40, 59)",
        "select id, name from accounts where balance > 50",
        "select * from accounts",
        "select a.id, o.id, o.amount from accounts a join orders o on o.account_id = a.id where a.id = 5",
        "select a.name, o.amount from accounts a join orders o on o.account_id = a.id where o.amount < 30",
        "select * from orders where account_id = 12 and amount > 10",
    ] {
        same(&p, &o, q, false).await;
    }
    same(
        &p,
        &o,
        "select * from orders where account_id = 9 order by id desc",
        true,
    )
    .await;

    // key = $1 with binary int8 and int4 parameters, and text-format ones.
    for k in [7i64, 33, 58] {
        let sql = "select id, name, balance from accounts where id = $1";
        let a = p.query(sql, &[&k]).await.unwrap();
        let b = o.query(sql, &[&k]).await.unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].get::<_, String>(1), b[0].get::<_, String>(1));
        let a = p
            .query(
                "select name from accounts where id = $1::int4",
                &[&(k as i32)],
            )
            .await
            .unwrap();
        assert_eq!(a.len(), 1, "int4 binary key {k}");
        assert_eq!(a[0].get::<_, String>(0), format!("acct{k}"));
        let t = text_param_query(r.port, sql, &[Some(&k.to_string())]).await;
        assert_eq!(
            t,
            text_rows(
                &o,
                &format!("select id, name, balance from accounts where id = {k}")
            )
            .await
        );
    }
    // Writes with binary int8, binary int4 and text parameters land on the
    // shard the map names for the key (checked on the shards directly).
    p.execute(
        "insert into accounts (id, name, balance) values ($1, $2, $3)",
        &[&1001i64, &"bin8", &5i32],
    )
    .await
    .unwrap();
    p.execute(
        "insert into accounts (id, name, balance) values ($1::int4, $2, $3)",
        &[&1002i32, &"bin4", &5i32],
    )
    .await
    .unwrap();
    text_param_query(
        r.port,
        "insert into accounts (id, name, balance) values ($1, $2, $3)",
        &[Some("1003"), Some("text"), Some("5")],
    )
    .await;
    for (k, name) in [(1001i64, "bin8"), (1002, "bin4"), (1003, "text")] {
        let owner = r.shard_of_int("accounts", k);
        for (i, c) in shards.iter().enumerate() {
            let n = c
                .query("select name from accounts where id = $1", &[&k])
                .await
                .unwrap();
            if i == owner {
                assert_eq!(n.len(), 1, "{k} missing on its owner s{i}");
                assert_eq!(n[0].get::<_, String>(0), name);
            } else {
                assert!(n.is_empty(), "{k} on s{i}, owner is s{owner}");
            }
        }
        o.execute(
            "insert into accounts (id, name, balance) values ($1, $2, 5)",
            &[&k, &name],
        )
        .await
        .unwrap();
    }

    // UPDATE/DELETE by key, ON CONFLICT, unkeyed writes that fan out.
    for w in [
        "update accounts set balance = balance + 10 where id = 3",
        "delete from orders where account_id = 4",
        "delete from orders where account_id in (10, 11, 12) and id = 2",
        "insert into accounts (id, name, balance) values (7, 'seven', 1) on conflict (id) do update set name = excluded.name",
        "insert into accounts (id, name, balance) values (8, 'x', 1), (2000, 'new', 2), (9, 'y', 3) on conflict (id) do nothing",
        "update accounts set balance = balance * 2 where balance < 20",
        "delete from orders where amount > 90",
    ] {
        let a = exec_simple(&p, w).await;
        let b = exec_simple(&o, w).await;
        assert_eq!(a, b, "rows affected: {w}");
    }
    same(&p, &o, "select * from accounts", false).await;
    same(&p, &o, "select * from orders", false).await;
    assert_placement(&r, &shards, "accounts", "id").await;

    // Moving a row between shards is refused.
    let (code, msg) = sql_error(&p, "update accounts set id = 5000 where id = 1").await;
    assert_eq!(code, "0A000", "{msg}");
    let (code, _) = sql_error(&p, "update orders set account_id = account_id + 1").await;
    assert_eq!(code, "0A000");
    same(
        &p,
        &o,
        "select * from accounts where id in (1, 5000)",
        false,
    )
    .await;

    null_keys(&r, &p, &o, &shards).await;
    hints(&r, &p, &shards).await;
    in_list_skips_other_shards(&r, &p, &shards).await;

    // Extended-protocol fan-out of an unkeyed SELECT.
    let sql = "select id, name from accounts where balance >= $1";
    let a = sorted_pairs(&p, sql, 10).await;
    assert!(!a.is_empty());
    assert_eq!(a, sorted_pairs(&o, sql, 10).await);
}

/// The (bigint, text) rows of a one-parameter query, sorted (a fan-out
/// returns shards' rows in no particular order).
async fn sorted_pairs(c: &tokio_postgres::Client, sql: &str, arg: i32) -> Vec<(i64, String)> {
    let mut v: Vec<(i64, String)> = c
        .query(sql, &[&arg])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    v.sort();
    v
}

/// NULL shard keys go where `shard_for(Null)` says, whether sent as a
/// literal, a binary NULL parameter or inside a split multi-row INSERT, and
/// `k IS NULL` reads them back.
async fn null_keys(
    r: &Routed,
    p: &tokio_postgres::Client,
    o: &tokio_postgres::Client,
    shards: &[tokio_postgres::Client],
) {
    let stmts = [
        "insert into events (k, v) values (null, 'lit')",
        "insert into events (k, v) values (1, 'a'), (null, 'multi'), (2, 'b'), (3, 'c'), (4, 'd')",
    ];
    for s in stmts {
        assert_eq!(exec_simple(p, s).await, exec_simple(o, s).await, "{s}");
    }
    for c in [p, o] {
        c.execute(
            "insert into events (k, v) values ($1, $2)",
            &[&None::<i32>, &"param"],
        )
        .await
        .unwrap();
    }
    let owner = r.shard_of_null("events");
    for (i, c) in shards.iter().enumerate() {
        let n: i64 = c
            .query_one("select count(*) from events where k is null", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, if i == owner { 3 } else { 0 }, "NULL keys on s{i}");
    }
    assert_placement(r, shards, "events", "k").await;
    same(p, o, "select v from events where k is null", false).await;
    same(p, o, "select * from events", false).await;
}

/// `/* shard_key=… */`, `/* shard=… */`, `SET shardproxy.shard_key` and
/// `SET shardproxy.shard` each send an unkeyed statement to one shard: the
/// count through the proxy equals that shard's own count.
async fn hints(r: &Routed, p: &tokio_postgres::Client, shards: &[tokio_postgres::Client]) {
    let per_shard = counts_per_shard(shards, "accounts").await;
    let count = |rows: Vec<Vec<Option<String>>>, what: &str| -> i64 {
        assert_eq!(rows.len(), 1, "one shard answered: {what}");
        rows[0][0].as_ref().unwrap().parse().unwrap()
    };
    for k in [5i64, 6, 17] {
        let sql = format!("/* shard_key={k} */ select count(*) from accounts");
        let n = count(text_rows(p, &sql).await, &sql);
        assert_eq!(
            n,
            per_shard[r.shard_of_int("accounts", k)],
            "hint shard_key={k}"
        );
    }
    for (s, expected) in per_shard.iter().enumerate() {
        let sql = format!("/* shard=s{s} */ select count(*) from accounts");
        let n = count(text_rows(p, &sql).await, &sql);
        assert_eq!(n, *expected);
    }
    p.batch_execute("SET shardproxy.shard_key = '17'")
        .await
        .unwrap();
    let n = count(
        text_rows(p, "select count(*) from accounts").await,
        "after SET",
    );
    assert_eq!(n, per_shard[r.shard_of_int("accounts", 17)]);
    p.batch_execute("RESET shardproxy.shard_key").await.unwrap();
    p.batch_execute("SET shardproxy.shard = 's2'")
        .await
        .unwrap();
    let n = count(
        text_rows(p, "select count(*) from accounts").await,
        "after SET",
    );
    assert_eq!(n, per_shard[2]);
    p.batch_execute("RESET shardproxy.shard").await.unwrap();
    // Back to fan-out: every shard's rows, and a LIMIT applied once over
    // all of them (not per shard).
    assert_eq!(
        text_rows(p, "select 1 from accounts").await.len() as i64,
        per_shard.iter().sum::<i64>()
    );
    assert_eq!(
        text_rows(p, "select 1 from accounts limit 2").await.len(),
        2
    );
    let (code, msg) = sql_error(p, "/* shard=nope */ select 1 from accounts").await;
    assert_eq!(code, "22P02", "{msg}");
    assert!(msg.contains("nope"), "{msg}");
}

/// A `key IN (…)` read whose keys live on two shards completes while the
/// third shard holds an exclusive lock on the table (so it was never asked),
/// and an unkeyed read does block on it (the check can fail).
async fn in_list_skips_other_shards(
    r: &Routed,
    p: &tokio_postgres::Client,
    shards: &[tokio_postgres::Client],
) {
    let mut keys: Vec<i64> = Vec::new();
    let mut used = [false; 3];
    for k in 1..=60 {
        let s = r.shard_of_int("accounts", k);
        if s != 2 && !used[s] {
            used[s] = true;
            keys.push(k);
        }
    }
    assert_eq!(keys.len(), 2);
    let locker = &shards[2];
    locker
        .batch_execute("begin; lock table accounts in access exclusive mode")
        .await
        .unwrap();
    let sql = format!(
        "select id from accounts where id in ({}, {})",
        keys[0], keys[1]
    );
    let rows = tokio::time::timeout(Duration::from_secs(5), text_rows(p, &sql))
        .await
        .expect("IN list waited on a shard it does not need");
    assert_eq!(rows.len(), 2);
    let p2 = connect(&r.url()).await;
    let blocked =
        tokio::spawn(async move { text_rows(&p2, "select id from accounts").await.len() });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !blocked.is_finished(),
        "an unkeyed read must wait for s2's lock"
    );
    locker.batch_execute("commit").await.unwrap();
    let n = blocked.await.unwrap();
    assert!(n > 60, "{n}");
}
