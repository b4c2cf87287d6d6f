//! The bench's tables, created and filled by `--init` through whatever the
//! target is (through shardproxy, DDL goes to every shard and the rows are
//! split by key). The proxy must list them in `[[tables]]` (see
//! `benches/scenarios/` and the demo's config):
//!
//! ```toml
//! [[tables]]
//! name = "bench_kv"
//! shard_key = "k"
//! [[tables]]
//! name = "bench_log"
//! shard_key = "k"
//! ```

use tokio_postgres::Client;

/// Rows per INSERT while loading.
const LOAD_BATCH: i64 = 2000;

pub const DDL: &[&str] = &[
    "DROP TABLE IF EXISTS bench_log",
    "DROP TABLE IF EXISTS bench_kv",
    "CREATE TABLE bench_kv (k bigint PRIMARY KEY, v bigint NOT NULL DEFAULT 0, \
     pad text NOT NULL DEFAULT '')",
    "CREATE TABLE bench_log (k bigint NOT NULL, id bigint NOT NULL, v bigint NOT NULL, \
     PRIMARY KEY (k, id))",
];

/// Drops and creates the tables, then loads keys `1..=rows` into `bench_kv`.
pub async fn init(client: &Client, rows: i64) -> Result<(), String> {
    for sql in DDL {
        client
            .batch_execute(sql)
            .await
            .map_err(|e| format!("--init: {sql}: {}", super::driver::describe(&e)))?;
    }
    let mut next = 1;
    while next <= rows {
        let last = (next + LOAD_BATCH - 1).min(rows);
        let values: Vec<String> = (next..=last).map(|k| format!("({k})")).collect();
        let sql = format!("INSERT INTO bench_kv (k) VALUES {}", values.join(","));
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| format!("--init: loading bench_kv: {}", super::driver::describe(&e)))?;
        next = last + 1;
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM bench_kv", &[])
        .await
        .map_err(|e| format!("--init: counting bench_kv: {}", super::driver::describe(&e)))?
        .get(0);
    if n != rows {
        return Err(format!(
            "--init: bench_kv holds {n} rows after loading {rows}"
        ));
    }
    Ok(())
}
