//! Reads that fan out to several shards and need a cross-shard merge
//! (ORDER BY, LIMIT, OFFSET, DISTINCT/UNION, GROUP BY, HAVING, aggregates):
//! answered as one Postgres holding every row answers, through both
//! protocols and for `key IN (…)` reads spanning shards; what the merge
//! cannot do exactly is refused with 0A000 naming the construct. The full
//! differential corpus is tests/merge_differential.rs; this file keeps the
//! protocol-level checks (binary results, Describe, transactions).

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
async fn fan_out_reads_needing_a_merge_match_the_oracle() {
    let r = Routed::start(2, true, false, TABLES).await;
    let p = connect(&r.url()).await;
    let o = connect(&r.oracle_url()).await;
    let ddl = "create table t (id bigint primary key, v text, n int)";
    p.batch_execute(ddl).await.unwrap();
    o.batch_execute(ddl).await.unwrap();
    let values: Vec<String> = (1..=40)
        .map(|g| format!("({g}, 'v{}', {g})", g % 3))
        .collect();
    let ins = format!("insert into t (id, v, n) values {}", values.join(", "));
    assert_eq!(exec_simple(&p, &ins).await, 40);
    assert_eq!(exec_simple(&o, &ins).await, 40);
    let per_shard = counts_per_shard(&r.shard_clients().await, "t").await;
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");

    let (a, b) = keys_on_two_shards(&r);
    let in_order = format!("select id from t where id in ({a}, {b}) order by id");
    let in_limit = format!("select id from t where id in ({a}, {b}) order by id limit 1");
    // (query, rows in a defined order)
    let cases: [(&str, bool); 11] = [
        ("select v, count(*) from t group by v", false),
        ("select count(*) from t having count(*) > 1", false),
        ("select count(*) + 1 from t", false),
        (
            "select v, max(n) - min(n) from t group by v order by v",
            true,
        ),
        ("select distinct v from t", false),
        ("select v from t union select v from t", false),
        ("select id from t order by id", true),
        ("select id from t order by n desc limit 5", true),
        ("select id from t order by id offset 35", true),
        (&in_order, true),
        (&in_limit, true),
    ];
    for (sql, ordered) in cases {
        let (mut got, mut want) = (text_rows(&p, sql).await, text_rows(&o, sql).await);
        if !ordered {
            got.sort();
            want.sort();
        }
        assert_eq!(got, want, "simple protocol: {sql}");
        // Extended protocol, text results.
        let mut got = text_param_query(r.port, sql, &[]).await;
        if !ordered {
            got.sort();
        }
        assert_eq!(got, want, "extended protocol: {sql}");
    }
    // A parameter for LIMIT, in binary (tokio-postgres).
    let rows = p
        .query("select id from t order by id limit $1", &[&3i64])
        .await
        .unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    // Still refused, by name: an aggregate whose order the merge cannot keep.
    let (code, msg) = sql_error(&p, "select string_agg(v, ',') from t").await;
    assert_eq!(code, "0A000", "{msg}");
    assert!(msg.contains("string_agg"), "{msg}");
    let e = p
        .query("select string_agg(v, ',') from t", &[])
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "0A000", "{db:?}");
    // SELECT … FOR UPDATE over two keys runs as a write: a merge there is refused.
    let sql = format!("select id from t where id in ({a}, {b}) order by id for update");
    let (code, msg) = sql_error(&p, &sql).await;
    assert_eq!(code, "0A000", "{sql}: {msg}");

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
    // UNION ALL concatenates correctly.
    assert_eq!(
        text_rows(&p, "select id from t union all select id from t")
            .await
            .len(),
        80
    );
    // A fan-out read with a shard key hint runs on that shard alone.
    let rows = text_rows(&p, &format!("/* shard_key={b} */ select count(*) from t")).await;
    let n = per_shard[r.shard_of_int("t", b)];
    assert_eq!(rows, vec![vec![Some(n.to_string())]]);
}

const AGG_TABLES: &str = "\
[[tables]]\nname = \"m\"\nshard_key = \"id\"\nkey_type = \"bigint\"\n\n\
[[tables]]\nname = \"one\"\nshard_key = \"id\"\nkey_type = \"bigint\"\n\n\
[[tables]]\nname = \"none\"\nshard_key = \"id\"\nkey_type = \"bigint\"\n";

const AGG_DDL: &str = "\
create table m (id bigint primary key, i int, s smallint, b bigint, n numeric, f float8, t text);
create table one (id bigint primary key, i int, s smallint, b bigint, n numeric, f float8, t text);
create table none (id bigint primary key, i int, s smallint, b bigint, n numeric, f float8, t text)";

/// Simple aggregates over a fan-out: the merged row equals the oracle's,
/// with NULLs, with shards that hold no matching rows (`one` has a single
/// row, `none` none at all), through the simple protocol (text), the
/// extended protocol with binary results (tokio-postgres) and with text
/// results (a client that never describes the portal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_aggregates_merge_like_the_oracle() {
    let r = Routed::start(3, true, true, AGG_TABLES).await;
    let p = connect(&r.url()).await;
    let o = connect(&r.oracle_url()).await;
    for stmt in AGG_DDL.split(';') {
        p.batch_execute(stmt).await.unwrap();
    }
    o.batch_execute(AGG_DDL).await.unwrap();
    let rows: Vec<String> = (1..=60i64)
        .map(|g| {
            let null = |v: String| if g % 7 == 0 { "null".to_string() } else { v };
            format!(
                "({g}, {}, {}, {}, {}, {}, {})",
                null(format!("{}", (g * 37) % 101 - 50)),
                null(format!("{}", g % 13)),
                null(format!("{}", g * 1_000_000_007)),
                null(format!("{}.{:0>3}", g * 3 - 90, g * 17 % 1000)),
                null(format!("{}.25", 30 - g)),
                null(format!("'t{g}'")),
            )
        })
        .collect();
    let ins = format!(
        "insert into m (id, i, s, b, n, f, t) values {}",
        rows.join(", ")
    );
    assert_eq!(exec_simple(&p, &ins).await, 60);
    assert_eq!(exec_simple(&o, &ins).await, 60);
    let one = "insert into one (id, i, s, b, n, f, t) values (5, 1, 2, 3, 4.5, 6.5, 'x')";
    assert_eq!(exec_simple(&p, one).await, 1);
    assert_eq!(exec_simple(&o, one).await, 1);
    let counts = counts_per_shard(&r.shard_clients().await, "m").await;
    assert!(counts.iter().all(|&n| n > 0), "{counts:?}");

    // Simple protocol (text): every combinable type.
    let list = "count(*), count(i) as ci, sum(i), sum(s), sum(b), sum(n), min(i), max(i), \
                min(s), max(b), min(n) mn, max(n), min(f), max(f), count(t)";
    for table in ["m", "one", "none"] {
        for filter in ["", " where i > 0", " where id > 1000", " where i is null"] {
            let sql = format!("select {list} from {table}{filter}");
            let (a, b) = (text_rows(&p, &sql).await, text_rows(&o, &sql).await);
            assert_eq!(a.len(), 1, "{sql}");
            assert_eq!(a, b, "proxy vs oracle differ on: {sql}");
            // Extended protocol, text results, no Describe from the client.
            let c = text_param_query(r.port, &sql, &[]).await;
            assert_eq!(c, b, "extended/text differs on: {sql}");
        }
    }
    // A keyed IN list over several shards merges too.
    let sql = "select count(*), sum(n), max(i) from m where id in (1, 2, 3, 4, 5, 6, 7, 8)";
    assert_eq!(text_rows(&p, sql).await, text_rows(&o, sql).await);

    // Extended protocol, binary results (tokio-postgres), typed.
    for table in ["m", "one", "none"] {
        let sql = format!(
            "select count(*), count(i), sum(i), sum(s), min(b), max(b), min(i), max(i), \
             min(s), max(s), min(f), max(f) from {table} where id > $1"
        );
        let typed = |row: &tokio_postgres::Row| {
            (
                row.get::<_, i64>(0),
                row.get::<_, i64>(1),
                row.get::<_, Option<i64>>(2),
                row.get::<_, Option<i64>>(3),
                row.get::<_, Option<i64>>(4),
                row.get::<_, Option<i64>>(5),
                row.get::<_, Option<i32>>(6),
                row.get::<_, Option<i32>>(7),
                row.get::<_, Option<i16>>(8),
                row.get::<_, Option<i16>>(9),
                row.get::<_, Option<f64>>(10),
                row.get::<_, Option<f64>>(11),
            )
        };
        for from in [0i64, 30, 1000] {
            let a = p.query(&sql, &[&from]).await.unwrap();
            let b = o.query(&sql, &[&from]).await.unwrap();
            assert_eq!(a.len(), 1, "{sql}");
            assert_eq!(typed(&a[0]), typed(&b[0]), "{sql} with {from}");
        }
    }
    // The same prepared statement again (no Parse, no Describe in the batch).
    let st = p
        .prepare("select count(*), max(i) from m where i < $1")
        .await
        .unwrap();
    for lim in [0i32, 10, 100] {
        let a = p.query_one(&st, &[&lim]).await.unwrap();
        let b = o
            .query_one("select count(*), max(i) from m where i < $1", &[&lim])
            .await
            .unwrap();
        assert_eq!(
            (a.get::<_, i64>(0), a.get::<_, Option<i32>>(1)),
            (b.get::<_, i64>(0), b.get::<_, Option<i32>>(1))
        );
    }
    // In a transaction spanning shards.
    p.batch_execute("begin").await.unwrap();
    let a: i64 = p
        .query_one("select count(*) from m", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(a, 60);
    assert_eq!(
        text_rows(&p, "select sum(s) from m").await,
        text_rows(&o, "select sum(s) from m").await
    );
    p.batch_execute("commit").await.unwrap();

    // Text min/max (byte order under the C collation), float sums.
    for sql in [
        "select min(t) from m",
        "select max(t), count(*) from m",
        "select sum(f) from m",
    ] {
        assert_eq!(text_rows(&p, sql).await, text_rows(&o, sql).await, "{sql}");
    }
    // Numeric in binary (tokio-postgres asks for binary results).
    let raw = |rows: Vec<tokio_postgres::Row>| -> Vec<Option<Vec<u8>>> {
        rows.iter().map(|r| r.get::<_, RawValue>(0).0).collect()
    };
    let sql = "select sum(n) from m";
    assert_eq!(
        raw(p.query(sql, &[]).await.unwrap()),
        raw(o.query(sql, &[]).await.unwrap())
    );
    // A refusal leaves the session usable, in and out of transactions.
    p.batch_execute("begin").await.unwrap();
    let (code, _) = sql_error(&p, "select string_agg(t, ',') from m").await;
    assert_eq!(code, "0A000");
    p.batch_execute("rollback").await.unwrap();
    let a: i64 = p
        .query_one("select count(*) from m", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(a, 60);
}
