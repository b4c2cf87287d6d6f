//! Fuzzes the planner with arbitrary UTF-8: planning, resolving and
//! splitting must never panic (nor overflow the stack).
//!
//! Run: `cargo +nightly fuzz run planner` from the repository root.

#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use shardproxy::config::Config;
use shardproxy::data::planner::{resolve_stmt, split_insert, Params, Planner, Target};
use shardproxy::data::router::ShardMap;

const CONFIG: &str = r#"
[[shards]]
name = "s0"
url = "postgres://postgres@127.0.0.1:5432/postgres"

[[shards]]
name = "s1"
url = "postgres://postgres@127.0.0.1:5432/postgres"

[[tables]]
name = "orders"
shard_key = "customer_id"
key_type = "bigint"

[[tables]]
name = "items"
shard_key = "customer_id"
key_type = "integer"

[[tables]]
name = "users"
shard_key = "id"
key_type = "text"
colocation = "users"

[[tables]]
name = "countries"
reference = true
"#;

fn setup() -> &'static (Planner, ShardMap) {
    static S: OnceLock<(Planner, ShardMap)> = OnceLock::new();
    S.get_or_init(|| {
        let cfg = Config::parse(CONFIG, "fuzz.toml").expect("config");
        let map = ShardMap::from_config(&cfg).expect("map");
        // No cache: every input is planned.
        (Planner::with_cache_capacity(Arc::new(map.clone()), 0), map)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let (planner, map) = setup();
    let plan = planner.plan(sql);
    // Bind every parameter a statement could name as text '1'.
    let values = vec![Some(&b"1"[..]); 16];
    let params = Params {
        values,
        formats: Vec::new(),
    };
    for stmt in &plan.stmts {
        let _ = resolve_stmt(stmt, &params, map);
        let _ = resolve_stmt(stmt, &Params::none(), map);
        if matches!(stmt.target, Target::InsertMulti { .. }) {
            let _ = split_insert(stmt, &params, map);
        }
    }
});
