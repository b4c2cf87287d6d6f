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
