//! Reads that fan out to several shards and need a cross-shard merge. The
//! proxy concatenates shard results, which is right only for a plain SELECT:
//! ORDER BY, LIMIT, OFFSET, DISTINCT/UNION, GROUP BY, HAVING and aggregates
//! it cannot merge are refused with 0A000 (never a wrong answer), through
//! both protocols and for `key IN (…)` reads spanning shards; plain SELECTs
//! still concatenate.

mod common;

use common::routed::*;
use common::*;

const TABLES: &str = "\
[[tables]]\nname = \"t\"\nshard_key = \"id\"\nkey_type = \"bigint\"\n";

/// Two keys owned by different shards.
fn keys_on_two_shards(r: &Routed) -> (i64, i64) {
    let a = 1;
    let b = (2..1000)
        .find(|&k| r.shard_of_int("t", k) != r.shard_of_int("t", a))
        .unwrap();
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmergeable_fan_out_reads_are_refused() {
    let r = Routed::start(2, false, false, TABLES).await;
    let p = connect(&r.url()).await;
    p.batch_execute("create table t (id bigint primary key, v text, n int)")
        .await
        .unwrap();
    let values: Vec<String> = (1..=40)
        .map(|g| format!("({g}, 'v{}', {g})", g % 3))
        .collect();
    let ins = format!("insert into t (id, v, n) values {}", values.join(", "));
    assert_eq!(exec_simple(&p, &ins).await, 40);
    let per_shard = counts_per_shard(&r.shard_clients().await, "t").await;
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");

    let (a, b) = keys_on_two_shards(&r);
    let in_order = format!("select id from t where id in ({a}, {b}) order by id");
    let in_limit = format!("select id from t where id in ({a}, {b}) limit 1");
    let cases: [(&str, &str); 11] = [
        ("select v, count(*) from t group by v", "GROUP BY"),
        ("select count(*) from t having count(*) > 1", "HAVING"),
        ("select count(*) + 1 from t", "aggregate"),
        ("select string_agg(v, ',') from t", "aggregate"),
        ("select distinct v from t", "DISTINCT"),
        ("select v from t union select v from t", "DISTINCT"),
        ("select id from t order by id", "ORDER BY"),
        ("select id from t limit 5", "LIMIT"),
        ("select id from t offset 5", "OFFSET"),
        (&in_order, "ORDER BY"),
        (&in_limit, "LIMIT"),
    ];
    for (sql, what) in cases {
        // Simple protocol.
        let (code, msg) = sql_error(&p, sql).await;
        assert_eq!(code, "0A000", "{sql}: {msg}");
        assert!(msg.contains(what), "{sql}: {msg}");
        assert!(msg.contains("across shards"), "{sql}: {msg}");
        // Extended protocol (tokio-postgres prepares, binds and executes).
        let e = p.query(sql, &[]).await.unwrap_err();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e:?}"));
        assert_eq!(db.code().code(), "0A000", "{sql}: {db:?}");
        assert!(db.message().contains(what), "{sql}: {db:?}");
        assert!(db.hint().is_some_and(|h| h.contains("shard key")), "{db:?}");
    }
    // With a parameter for LIMIT too.
    let e = p
        .query("select id from t limit $1", &[&3i64])
        .await
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "0A000", "{e:?}");

    // Plain SELECTs still concatenate every shard's rows.
    let mut ids: Vec<i64> = p
        .query("select id from t where n > $1", &[&0i32])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=40).collect::<Vec<i64>>());
    let rows = sorted_rows(&p, "select id::text, v from t where n <= 10").await;
    assert_eq!(rows.len(), 10);
    let rows = text_rows(&p, &format!("select id from t where id in ({a}, {b})")).await;
    assert_eq!(rows.len(), 2);
    // UNION ALL concatenates correctly.
    assert_eq!(
        text_rows(&p, "select id from t union all select id from t")
            .await
            .len(),
        80
    );
    // A keyed read that lands on one shard may ORDER BY and LIMIT.
    let rows = text_rows(
        &p,
        &format!("select id from t where id = {a} order by id limit 1"),
    )
    .await;
    assert_eq!(rows, vec![vec![Some(a.to_string())]]);
    // So may a fan-out read with a shard key hint.
    let rows = text_rows(&p, &format!("/* shard_key={b} */ select count(*) from t")).await;
    let n = per_shard[r.shard_of_int("t", b)];
    assert_eq!(rows, vec![vec![Some(n.to_string())]]);
}
