//! Extended-protocol pipelines whose statements go to several shards, sent
//! message by message exactly as drivers do (JDBC batches, psycopg
//! executemany and pipeline mode), and the same bytes sent to one unsharded
//! Postgres: the replies (message types, rows, error codes) must be the
//! same, every row must sit on the shard that owns it, and the tables must
//! hold the same rows as the oracle's. A pipeline is one transaction: a
//! failing row rolls back every shard.

mod common;

use common::proxy::within;
use common::proxy::{
    bind_msg, cstr, data_rows, execute_msg, first_error, msg, parse_msg, sync_msg, tags, Raw,
};
use common::routed::*;
use common::{connect, temp_dir};
use shardproxy::control::cluster::{free_port, ClusterOptions, LocalCluster};

const TABLES: &str = "[[tables]]\nname = \"items\"\nshard_key = \"id\"\n\n";

const SCHEMA: &str = "create table items (id bigint primary key, v text)";

/// A proxy session and an oracle session, fed the same messages.
struct Twin {
    proxy: Raw,
    oracle: Raw,
}

impl Twin {
    async fn open(r: &Routed) -> Twin {
        let mut proxy = Raw::connect(([127, 0, 0, 1], r.port).into()).await;
        proxy.startup(APP_USER, APP_PW).await;
        let oport = r.oracle.as_ref().unwrap().port();
        let mut oracle = Raw::connect(([127, 0, 0, 1], oport).into()).await;
        oracle.startup("postgres", "").await;
        Twin { proxy, oracle }
    }

    /// Sends `bytes` to both and reads `readies` ReadyForQuery from each;
    /// the replies must agree (tags, rows, error codes). Returns the proxy's.
    async fn same(&mut self, what: &str, bytes: &[u8], readies: usize) -> Vec<(u8, Vec<u8>)> {
        self.proxy.send(bytes).await;
        self.oracle.send(bytes).await;
        let mut p = Vec::new();
        let mut o = Vec::new();
        for _ in 0..readies {
            p.extend(self.proxy.until_ready().await);
            o.extend(self.oracle.until_ready().await);
        }
        assert_eq!(tags(&p), tags(&o), "{what}: message types differ");
        assert_eq!(data_rows(&p), data_rows(&o), "{what}: rows differ");
        assert_eq!(
            first_error(&p).map(|e| e.0),
            first_error(&o).map(|e| e.0),
            "{what}: errors differ: {:?} vs {:?}",
            first_error(&p),
            first_error(&o)
        );
        p
    }

    /// Sends to both and reads `n` messages from each (a pipeline ended
    /// by Flush answers without ReadyForQuery); they must agree.
    async fn same_n(&mut self, what: &str, bytes: &[u8], n: usize) -> Vec<(u8, Vec<u8>)> {
        self.proxy.send(bytes).await;
        self.oracle.send(bytes).await;
        let mut p = Vec::new();
        let mut o = Vec::new();
        for _ in 0..n {
            p.push(self.proxy.recv().await.expect("proxy reply"));
            o.push(self.oracle.recv().await.expect("oracle reply"));
        }
        assert_eq!(tags(&p), tags(&o), "{what}: message types differ");
        assert_eq!(data_rows(&p), data_rows(&o), "{what}: rows differ");
        p
    }
}

/// Bind of statement `stmt` into the unnamed portal with text values.
fn bind(stmt: &str, values: &[&str]) -> Vec<u8> {
    let v: Vec<Option<&[u8]>> = values.iter().map(|s| Some(s.as_bytes())).collect();
    bind_msg("", stmt, &[], &v, &[])
}

/// Describe of the unnamed portal.
fn describe_portal() -> Vec<u8> {
    let mut b = vec![b'P'];
    b.extend(cstr(""));
    msg(b'D', &b)
}

fn flush() -> Vec<u8> {
    msg(b'H', &[])
}

/// Bind + Execute of `ins` for each id, with `v` as the text column.
fn rows(stmt: &str, ids: impl IntoIterator<Item = i64>, v: &str, describe: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for id in ids {
        out.extend(bind(stmt, &[&id.to_string(), v]));
        if describe {
            out.extend(describe_portal());
        }
        out.extend(execute_msg("", 0));
    }
    out
}

fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', &cstr(sql))
}

/// The proxy holds the same rows as the oracle, each on its owner.
async fn same_table(r: &Routed, what: &str) {
    let shards = r.shard_clients().await;
    let o = connect(&r.oracle_url()).await;
    assert_placement(r, &shards, "items", "id").await;
    let sql = "select id::text, v from items";
    assert_eq!(
        union_of_shards(&shards, sql).await,
        sorted_rows(&o, sql).await,
        "{what}: proxy's shards and the oracle hold different rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_across_shards_run_as_one_transaction() {
    let r = Routed::start(3, true, true, TABLES).await;
    r.on_every_shard(SCHEMA).await;
    connect(&r.oracle_url())
        .await
        .batch_execute(SCHEMA)
        .await
        .unwrap();
    within(60, async {
        let mut t = Twin::open(&r).await;
        let ins = "insert into items (id, v) values ($1, $2)";

        // JDBC executeBatch: the statement prepared first, then a pipeline
        // of Bind/Describe/Execute for rows of every shard.
        let prep = [parse_msg("s1", ins, &[20, 25]), sync_msg()].concat();
        t.same("prepare", &prep, 1).await;
        let batch = [rows("s1", 1..=30, "a", true), sync_msg()].concat();
        let reply = t.same("batch of 30", &batch, 1).await;
        assert_eq!(reply.last().unwrap().1, b"I");
        same_table(&r, "after a batch").await;
        let shards = r.shard_clients().await;
        assert!(
            counts_per_shard(&shards, "items")
                .await
                .iter()
                .all(|&n| n > 0),
            "the batch reached every shard"
        );

        // A failing row in the middle: everything before it answered, the
        // error, nothing after it, and no shard keeps any row of it.
        let bad = [
            rows("s1", 100..110, "b", false),
            rows("s1", [5], "dup", false),
            rows("s1", 110..115, "b", false),
            sync_msg(),
        ]
        .concat();
        let reply = t.same("batch with a duplicate key", &bad, 1).await;
        assert_eq!(first_error(&reply).unwrap().0, "23505");
        same_table(&r, "after a failed batch").await;

        // psycopg executemany: Parse + Bind/Describe/Execute per row of the
        // unnamed statement, repeated, one Sync.
        let mut unnamed = Vec::new();
        for id in 200..212 {
            unnamed.extend(parse_msg("", ins, &[]));
            unnamed.extend(rows("", [id], "u", true));
        }
        unnamed.extend(sync_msg());
        t.same("unnamed statement on every shard", &unnamed, 1)
            .await;

        // JDBC with autocommit off: BEGIN in the pipeline of the first batch,
        // the transaction stays open across pipelines, then COMMIT.
        let begin = [
            parse_msg("", "BEGIN", &[]),
            bind("", &[]),
            execute_msg("", 0),
            rows("s1", 300..320, "t", false),
            sync_msg(),
        ]
        .concat();
        let reply = t.same("BEGIN and a batch", &begin, 1).await;
        assert_eq!(reply.last().unwrap().1, b"T");
        let more = [rows("s1", 320..330, "t", false), sync_msg()].concat();
        t.same("second batch in the transaction", &more, 1).await;
        t.same("commit", &query("COMMIT"), 1).await;
        same_table(&r, "after a committed transaction").await;

        // The same, rolled back; and a batch failing inside a transaction
        // aborts it (25P02 after), until ROLLBACK.
        t.same("begin", &query("BEGIN"), 1).await;
        t.same(
            "batch in a transaction",
            &[rows("s1", 400..420, "x", false), sync_msg()].concat(),
            1,
        )
        .await;
        let reply = t
            .same(
                "failing batch in a transaction",
                &[rows("s1", [1, 430, 431], "x", false), sync_msg()].concat(),
                1,
            )
            .await;
        assert_eq!(reply.last().unwrap().1, b"E");
        let reply = t
            .same(
                "statement after the failure",
                &[rows("s1", [440], "x", false), sync_msg()].concat(),
                1,
            )
            .await;
        assert_eq!(first_error(&reply).unwrap().0, "25P02");
        t.same("rollback", &query("ROLLBACK"), 1).await;
        same_table(&r, "after a rolled back transaction").await;

        // Pipeline mode with Flush: the first part is answered at the Flush
        // (its shards hold their transaction open), the rest at Sync.
        let part1 = [rows("s1", 500..506, "f", false), flush()].concat();
        t.same_n("first half, flushed", &part1, 12).await;
        let part2 = [rows("s1", 506..512, "f", false), sync_msg()].concat();
        t.same("second half", &part2, 1).await;
        same_table(&r, "after a flushed pipeline").await;
        // An error before the Flush: the rest is skipped up to Sync, and
        // nothing of the pipeline stays.
        let part1 = [rows("s1", [600, 601, 1, 602], "g", false), flush()].concat();
        t.same_n("failing first half", &part1, 6).await;
        let part2 = [rows("s1", 603..606, "g", false), sync_msg()].concat();
        let reply = t.same("skipped second half", &part2, 1).await;
        assert_eq!(tags(&reply), "Z");
        same_table(&r, "after a failed flushed pipeline").await;

        // Describe of a statement and of portals inside the pipeline,
        // a named portal, Close of the portal.
        let mut mixed = vec![];
        mixed.extend(parse_msg(
            "s2",
            "insert into items (id, v) values ($1, $2) returning id, v",
            &[],
        ));
        let mut d = vec![b'S'];
        d.extend(cstr("s2"));
        mixed.extend(msg(b'D', &d));
        for id in [700i64, 701, 702, 703] {
            let ids = id.to_string();
            mixed.extend(bind_msg(
                "p1",
                "s2",
                &[],
                &[Some(ids.as_bytes()), Some(b"n")],
                &[],
            ));
            let mut dp = vec![b'P'];
            dp.extend(cstr("p1"));
            mixed.extend(msg(b'D', &dp));
            mixed.extend(execute_msg("p1", 0));
            let mut c = vec![b'P'];
            c.extend(cstr("p1"));
            mixed.extend(msg(b'C', &c));
        }
        mixed.extend(sync_msg());
        t.same("describes, named portals, RETURNING", &mixed, 1)
            .await;
        same_table(&r, "after the mixed pipeline").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameterized_multi_row_inserts_split_per_shard() {
    let r = Routed::start(3, true, true, TABLES).await;
    r.on_every_shard(SCHEMA).await;
    connect(&r.oracle_url())
        .await
        .batch_execute(SCHEMA)
        .await
        .unwrap();
    within(60, async {
        let mut t = Twin::open(&r).await;
        // JDBC reWriteBatchedInserts: one statement with many rows.
        let values: Vec<String> = (0..16)
            .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect();
        let multi = format!(
            "insert into items (id, v) values {} returning id, v",
            values.join(",")
        );
        let ids: Vec<String> = (0..16).map(|i| (1000 + i * 7).to_string()).collect();
        let mut params: Vec<&str> = Vec::new();
        for id in &ids {
            params.push(id);
            params.push("m");
        }
        let one = [
            parse_msg("", &multi, &[]),
            bind("", &params),
            execute_msg("", 0),
            sync_msg(),
        ]
        .concat();
        let reply = t.same("a 16-row INSERT … RETURNING", &one, 1).await;
        // RETURNING comes back in VALUES order.
        let got: Vec<String> = data_rows(&reply)
            .into_iter()
            .map(|r| String::from_utf8(r[0].clone().unwrap()).unwrap())
            .collect();
        assert_eq!(got, ids);

        // Several of them in one pipeline, prepared and with binary keys
        // (pgjdbc sends int8 in binary when it knows the type).
        let mut batch = vec![parse_msg("m2", "insert into items (id, v) values ($1, $2), ($3, $4), ($5, $6)", &[20, 25, 20, 25, 20, 25])];
        for k in 0..5i64 {
            let a = (2000 + k * 3).to_be_bytes();
            let b = (2001 + k * 3).to_be_bytes();
            let c = (2002 + k * 3).to_be_bytes();
            batch.push(bind_msg(
                "",
                "m2",
                &[1, 0, 1, 0, 1, 0],
                &[Some(&a), Some(b"x"), Some(&b), Some(b"y"), Some(&c), Some(b"z")],
                &[],
            ));
            batch.push(execute_msg("", 1));
        }
        batch.push(sync_msg());
        t.same("a pipeline of 3-row INSERTs with binary keys", &batch.concat(), 1)
            .await;

        // ON CONFLICT is kept on every shard's part.
        let upsert = "insert into items (id, v) values ($1, $2), ($3, $4), ($5, $6) on conflict (id) do update set v = excluded.v returning id, v";
        let p = [
            parse_msg("", upsert, &[]),
            bind("", &["1000", "up", "2000", "up", "9001", "new"]),
            execute_msg("", 0),
            sync_msg(),
        ]
        .concat();
        t.same("ON CONFLICT DO UPDATE", &p, 1).await;
        let nothing = "insert into items (id, v) values ($1, $2), ($3, $4), ($5, $6) on conflict do nothing";
        let p = [
            parse_msg("", nothing, &[]),
            bind("", &["1007", "no", "2003", "no", "9002", "new"]),
            execute_msg("", 0),
            sync_msg(),
        ]
        .concat();
        t.same("ON CONFLICT DO NOTHING", &p, 1).await;
        // A duplicate in one shard's share fails the whole statement.
        let p = [
            parse_msg("", "insert into items (id, v) values ($1, $2), ($3, $4), ($5, $6)", &[]),
            bind("", &["9100", "a", "9101", "b", "1014", "dup"]),
            execute_msg("", 0),
            sync_msg(),
        ]
        .concat();
        let reply = t.same("a split INSERT with a duplicate", &p, 1).await;
        assert_eq!(first_error(&reply).unwrap().0, "23505");
        same_table(&r, "after the split INSERTs").await;
    })
    .await;
}

/// Shards that cannot prepare transactions: a pipeline (or a transaction)
/// that would write on two of them is refused with 0A000 before anything
/// runs, naming the setting; one that stays on one shard works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_prepared_transactions_multi_shard_writes_are_refused() {
    let dirs: Vec<_> = (0..2).map(|_| temp_dir()).collect();
    let opts = ClusterOptions {
        settings: vec![("max_prepared_transactions".into(), "0".into())],
        ..ClusterOptions::default()
    };
    let clusters: Vec<LocalCluster> = dirs
        .iter()
        .map(|d| LocalCluster::start_with(&d.path().join("data"), free_port(), &opts).unwrap())
        .collect();
    let urls: Vec<String> = clusters.iter().map(|c| c.url("postgres")).collect();
    for u in &urls {
        connect(u).await.batch_execute(SCHEMA).await.unwrap();
    }
    let shards: Vec<(&str, String)> = vec![("s0", urls[0].clone()), ("s1", urls[1].clone())];
    // A fresh config: two_phase_commit is on by default.
    let p = common::proxy::start_proxy_with(&shards, "", TABLES).await;
    within(30, async {
        let c = connect(&p.url()).await;
        let map = p.proxy.runtime().map.clone();
        let g = map.table("items").unwrap().group;
        let shard_of = |k: i64| map.shard_for(g, &shardproxy::data::router::KeyValue::Int(k));
        let a = 1i64;
        let b = (2..100).find(|&k| shard_of(k) != shard_of(a)).unwrap();
        // A transaction on two shards.
        c.batch_execute("begin").await.unwrap();
        c.execute("insert into items (id, v) values ($1, 'x')", &[&a])
            .await
            .unwrap();
        let e = c
            .execute("insert into items (id, v) values ($1, 'x')", &[&b])
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), "0A000", "{e:?}");
        let msg = e.as_db_error().unwrap().message().to_string();
        assert!(msg.contains("max_prepared_transactions"), "{msg}");
        c.batch_execute("rollback").await.unwrap();
        // A multi-row INSERT over both shards.
        let e = c
            .execute(
                "insert into items (id, v) values ($1, 'x'), ($2, 'y')",
                &[&a, &b],
            )
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), "0A000", "{e:?}");
        // One shard at a time works.
        c.execute("insert into items (id, v) values ($1, 'x')", &[&a])
            .await
            .unwrap();
        c.execute("insert into items (id, v) values ($1, 'x')", &[&b])
            .await
            .unwrap();
        let total: i64 = {
            let mut n = 0;
            for u in &urls {
                n += connect(u)
                    .await
                    .query_one("select count(*) from items", &[])
                    .await
                    .unwrap()
                    .get::<_, i64>(0);
            }
            n
        };
        assert_eq!(total, 2, "only the single-shard inserts committed");
    })
    .await;
    drop(clusters);
}

fn code_of(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}
