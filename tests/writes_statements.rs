//! Write statements that need more than routing by a key found in the text,
//! through the proxy on three shards and on one unsharded oracle, compared
//! row for row with every row checked on the shard that owns it:
//! INSERT without a column list (the column order learnt from the shards,
//! refreshed after DDL).

mod common;

use common::connect;
use common::proxy::within;
use common::routed::*;

const TABLES: &str = "\
[[tables]]\nname = \"people\"\nshard_key = \"id\"\n\n";

/// The same statements through the proxy and on the oracle.
struct Both {
    p: tokio_postgres::Client,
    o: tokio_postgres::Client,
}

impl Both {
    async fn open(r: &Routed) -> Both {
        Both {
            p: connect(&r.url()).await,
            o: connect(&r.oracle_url()).await,
        }
    }

    /// Runs `sql` (simple protocol) on both; the row counts must agree.
    async fn simple(&self, sql: &str) -> u64 {
        let a = exec_simple(&self.p, sql).await;
        let b = exec_simple(&self.o, sql).await;
        assert_eq!(a, b, "{sql}");
        a
    }

    /// Runs `sql` with parameters (extended protocol) on both; the rows
    /// must agree (in order).
    async fn extended(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<Vec<Option<String>>> {
        let text = |rows: Vec<tokio_postgres::Row>| -> Vec<Vec<Option<String>>> {
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.try_get::<_, Option<String>>(i).ok().flatten())
                        .collect()
                })
                .collect()
        };
        let a = self
            .p
            .query(sql, params)
            .await
            .unwrap_or_else(|e| panic!("proxy: {sql}: {e:?}"));
        let b = self.o.query(sql, params).await.unwrap();
        let (a, b) = (text(a), text(b));
        assert_eq!(a, b, "{sql}");
        a
    }

    /// Both on every statement of `ddl`.
    async fn ddl(&self, ddl: &str) {
        self.p.batch_execute(ddl).await.unwrap();
        self.o.batch_execute(ddl).await.unwrap();
    }
}

/// The tables hold the same rows through the proxy's shards and on the
/// oracle, each row on its owner.
async fn same_table(r: &Routed, table: &str, cols: &str) {
    let shards = r.shard_clients().await;
    assert_placement(r, &shards, table, "id").await;
    let sql = format!("select {cols} from {table}");
    let o = connect(&r.oracle_url()).await;
    assert_eq!(
        union_of_shards(&shards, &sql).await,
        sorted_rows(&o, &sql).await,
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_without_a_column_list() {
    let r = Routed::start_fresh(3, true, TABLES).await;
    within(60, async {
        let b = Both::open(&r).await;
        // The key is not the first column: its position comes from the catalog.
        b.ddl("create table people (name text, id bigint primary key, age int)")
            .await;
        for i in 0..20 {
            b.simple(&format!(
                "insert into people values ('p{i}', {i}, {})",
                i % 50
            ))
            .await;
        }
        assert_eq!(
            b.simple("insert into people values ('a', 100), ('b', 101), ('c', 102)")
                .await,
            3
        );
        let ins = "insert into people values ($1, $2, $3) returning id, name";
        for i in 200..210i64 {
            let name = format!("x{i}");
            b.extended(ins, &[&name, &i, &7i32]).await;
        }
        b.extended(
            "insert into people values ($1, $2), ($3, $4) returning id",
            &[&"m1", &300i64, &"m2", &301i64],
        )
        .await;
        same_table(&r, "people", "id::text, name, age::text").await;

        // DDL through the proxy: the new column order is read again.
        b.ddl("alter table people add column city text").await;
        b.simple("insert into people values ('n', 400, 4, 'Paris')")
            .await;
        b.extended(
            ins.replace("$3)", "$3, $4)").as_str(),
            &[&"q", &401i64, &5i32, &"Rome"],
        )
        .await;
        b.ddl("alter table people drop column age").await;
        b.simple("insert into people values ('d', 402, 'Oslo')")
            .await;
        same_table(&r, "people", "id::text, name, city").await;

        // DDL behind the proxy's back (on each shard directly): the values
        // now mean other columns; the stale order names a column that is
        // gone, so the shard refuses (nothing stored in the wrong column),
        // and the next attempt uses the order read again.
        r.on_every_shard(
            "alter table people drop column city; alter table people add column zip int",
        )
        .await;
        b.o.batch_execute(
            "alter table people drop column city; alter table people add column zip int",
        )
        .await
        .unwrap();
        let (code, _) = sql_error(&b.p, "insert into people values ('z', 403, 75001)").await;
        assert_eq!(code, "42703");
        b.simple("insert into people values ('z', 403, 75001)")
            .await;
        same_table(&r, "people", "id::text, name, zip::text").await;
    })
    .await;
}

const ID_TABLES: &str = "\
[[tables]]\nname = \"events\"\nshard_key = \"tenant\"\n\n\
[[tables]]\nname = \"notes\"\nshard_key = \"tenant\"\n\n\
[[tables]]\nname = \"legacy\"\nshard_key = \"tenant\"\n\n\
[[tables]]\nname = \"later\"\nshard_key = \"tenant\"\n\n";

/// `SHOW SEQUENCES` rows for `table`: (shard, status).
async fn sequences(admin: &tokio_postgres::Client, table: &str) -> Vec<(String, String)> {
    text_rows(admin, "SHOW SEQUENCES")
        .await
        .into_iter()
        .filter(|r| r[0].as_deref() == Some(table))
        .map(|r| (r[2].clone().unwrap(), r[6].clone().unwrap()))
        .collect()
}

/// Inserts `n` rows into `table` from each of `sessions` concurrent proxy
/// sessions (tenants spread over the shards) and returns every id handed out.
async fn insert_ids(r: &Routed, table: &str, sessions: i64, n: i64) -> Vec<i64> {
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let url = r.url();
        let sql = format!("insert into {table} (tenant) values ($1) returning id::int8");
        tasks.push(tokio::spawn(async move {
            let c = connect(&url).await;
            let stmt = c.prepare(&sql).await.unwrap();
            let mut ids = Vec::new();
            for i in 0..n {
                let tenant = s * 1000 + i;
                ids.push(
                    c.query_one(&stmt, &[&tenant])
                        .await
                        .unwrap()
                        .get::<_, i64>(0),
                );
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn assert_unique(ids: &[i64], what: &str) {
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        ids.len(),
        "{what}: {} ids, {} distinct",
        ids.len(),
        distinct.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_and_identity_ids_are_unique_across_shards() {
    // `legacy` exists on every shard before the proxy starts, with plain
    // sequences (each shard would count 1, 2, 3, …): the start check fixes it.
    let r = Routed::start_with(3, false, |port, urls| {
        for u in urls {
            common::psql(u, "create table legacy (id serial, tenant bigint not null, primary key (tenant, id)); \
                             insert into legacy (tenant) values (0), (0)");
        }
        config_text(port, urls, true, ID_TABLES).replace("two_phase_commit = true\n", "")
    })
    .await;
    within(90, async {
        let p = connect(&r.url()).await;
        let admin = connect(&r.admin_url()).await;
        // The start check runs in the background: wait for it.
        for _ in 0..200 {
            let s = sequences(&admin, "legacy").await;
            if s.len() == 3 && s.iter().all(|(_, st)| st == "ok") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(sequences(&admin, "legacy").await.iter().all(|(_, st)| st == "ok"));
        let legacy = insert_ids(&r, "legacy", 4, 15).await;
        assert_unique(&legacy, "legacy after the start check");
        assert!(legacy.iter().all(|&id| id > 2), "restarted above the existing ids");

        // Tables created through the proxy: interleaved inside the DDL.
        p.batch_execute("create table events (id bigserial, tenant bigint not null, v text, primary key (tenant, id))")
            .await
            .unwrap();
        p.batch_execute("create table notes (id bigint generated always as identity, tenant bigint not null, primary key (tenant, id))")
            .await
            .unwrap();
        for t in ["events", "notes"] {
            let s = sequences(&admin, t).await;
            assert_eq!(s.len(), 3, "{t}: {s:?}");
            assert!(s.iter().all(|(_, st)| st == "ok"), "{t}: {s:?}");
        }
        let events = insert_ids(&r, "events", 8, 25).await;
        assert_eq!(events.len(), 200);
        assert_unique(&events, "bigserial through 8 sessions");
        assert_unique(&insert_ids(&r, "notes", 4, 20).await, "identity");
        let shards = r.shard_clients().await;
        for c in &shards {
            let n: i64 = c.query_one("select count(*) from events", &[]).await.unwrap().get(0);
            assert!(n > 0, "every shard took rows");
        }

        // A table created on the shards directly after the start: reported
        // (SHOW SEQUENCES, shardproxy check) until FIX SEQUENCES.
        r.on_every_shard("create table later (id bigserial, tenant bigint not null, primary key (tenant, id))")
            .await;
        let s = sequences(&admin, "later").await;
        assert!(s.iter().all(|(_, st)| st.starts_with("collides: counts by 1")), "{s:?}");
        let cfg = r.proxy.runtime().config.clone();
        let check = shardproxy::app::check_shards(&cfg).await;
        assert!(check.contains("later.id on s0 (slot 0): increment 1, next 1: collides"), "{check}");
        let before = insert_ids(&r, "later", 1, 6).await;
        admin.batch_execute("FIX SEQUENCES").await.unwrap();
        assert!(sequences(&admin, "later").await.iter().all(|(_, st)| st == "ok"));
        let after = insert_ids(&r, "later", 4, 10).await;
        assert_unique(&after, "later after FIX SEQUENCES");
        let top = before.iter().max().unwrap();
        assert!(after.iter().all(|id| id > top), "restarted above every shard's ids");
        assert!(!shardproxy::app::check_shards(&cfg).await.contains("collides"));
    })
    .await;
}
