//! What must hold for any SQL text: planning, resolving and splitting never
//! panic (nor overflow the stack), and a template match is what normalizing
//! would give. One copy, run two ways: by the fuzz targets under `fuzz/`
//! (feature `fuzzing`) and by the planner's proptests.

use super::{resolve_stmt, split_insert, Params, Planner, Target};
use crate::config::Config;
use crate::data::router::ShardMap;
use std::sync::Arc;

/// The sharded and reference tables of the planner's tests and fuzz target:
/// keys of each type, a colocation group, a reference table.
pub const TABLES: &str = r#"
[[tables]]
name = "orders"
shard_key = "customer_id"
key_type = "bigint"

[[tables]]
name = "items"
shard_key = "customer_id"
key_type = "integer"

[[tables]]
name = "customers"
shard_key = "id"
key_type = "bigint"

[[tables]]
name = "users"
shard_key = "id"
key_type = "text"
colocation = "users"

[[tables]]
name = "sessions"
shard_key = "user_id"
key_type = "text"
colocation = "users"

[[tables]]
name = "countries"
reference = true

[[tables]]
name = "pgbench_accounts"
shard_key = "aid"
key_type = "integer"
colocation = "pgbench"
"#;

/// Four shards s0..s3 holding [`TABLES`].
pub fn map() -> ShardMap {
    let mut s = String::new();
    for i in 0..4 {
        s.push_str(&format!(
            "[[shards]]\nname = \"s{i}\"\nurl = \"postgres://postgres@127.0.0.1:5432/postgres\"\n"
        ));
    }
    s.push_str(TABLES);
    // A fixed, valid config: failing here is a bug in this file.
    ShardMap::from_config(&Config::parse(&s, "properties.toml").expect("config"))
        .expect("shard map")
}

/// A planner over [`map`] without a plan cache, so every text is planned.
pub fn uncached_planner(map: &ShardMap) -> Planner {
    Planner::with_cache_capacity(Arc::new(map.clone()), 0)
}

/// Plans `sql`, then resolves every statement with no parameters and with
/// every parameter bound to text `1`, and splits multi-row INSERTs.
pub fn check_text(planner: &Planner, map: &ShardMap, sql: &str) {
    let plan = planner.plan(sql);
    let params = Params {
        values: smallvec::smallvec![Some(&b"1"[..]); 16],
        formats: Default::default(),
    };
    for stmt in &plan.stmts {
        let _ = resolve_stmt(stmt, &params, map);
        let _ = resolve_stmt(stmt, &Params::none(), map);
        if matches!(stmt.target, Target::InsertMulti { .. }) {
            let _ = split_insert(stmt, &params, map);
        }
    }
}

/// Matches `next` against the template a session would remember for `last`
/// and panics unless a match is exactly what normalizing `next` gives (same
/// template, same literals). True when it matched.
pub fn check_template_match(last: &str, next: &str) -> bool {
    let Some(n) = super::normalize::normalize(last) else {
        return false;
    };
    let Some(matched) = super::template_match::literals_if_template(next, &n.template, &n.slots)
    else {
        return false;
    };
    let normalized = super::normalize::normalize(next);
    match normalized {
        Some(nb) if nb.template == n.template && nb.literals == matched => true,
        other => panic!(
            "{next:?} matched {last:?}'s template {:?} with literals {matched:?}, \
             but normalizes to {other:?}",
            n.template
        ),
    }
}
