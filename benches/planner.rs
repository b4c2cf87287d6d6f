//! Planner benchmarks: plan() cached and uncached for short OLTP statements,
//! and resolve() of a keyed target.
//!
//! Run: `cargo bench --bench planner -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use shardproxy::config::Config;
use shardproxy::data::planner::{resolve, KeySource, KeyType, Params, Planner, Target};
use shardproxy::data::router::ShardMap;

const SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
const INSERT: &str =
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)";

fn map() -> ShardMap {
    let mut s = String::new();
    for i in 0..4 {
        s.push_str(&format!(
            "[[shards]]\nname = \"s{i}\"\nurl = \"postgres://postgres@127.0.0.1:5432/postgres\"\n"
        ));
    }
    s.push_str(
        r#"
[[tables]]
name = "pgbench_accounts"
shard_key = "aid"
key_type = "integer"

[[tables]]
name = "pgbench_history"
shard_key = "aid"
key_type = "integer"

[[tables]]
name = "pgbench_branches"
reference = true
"#,
    );
    ShardMap::from_config(&Config::parse(&s, "bench.toml").expect("config")).expect("map")
}

fn plan(c: &mut Criterion) {
    let m = Arc::new(map());
    let cached = Planner::new(m.clone());
    let uncached = Planner::with_cache_capacity(m.clone(), 0);
    for (name, sql) in [("select", SELECT), ("insert", INSERT)] {
        cached.plan(sql);
        c.bench_function(&format!("plan_cached/{name}"), |b| {
            b.iter(|| cached.plan(black_box(sql)))
        });
        c.bench_function(&format!("plan_uncached/{name}"), |b| {
            b.iter(|| uncached.plan(black_box(sql)))
        });
    }
}

fn resolve_keyed(c: &mut Criterion) {
    let m = map();
    let literal = Target::Keyed {
        group: 0,
        key_type: KeyType::Int4,
        keys: vec![KeySource::Literal("4242".into())],
    };
    let none = Params::none();
    c.bench_function("resolve/keyed_literal", |b| {
        b.iter(|| resolve(black_box(&literal), &none, &m))
    });
    let param = Target::Keyed {
        group: 0,
        key_type: KeyType::Int4,
        keys: vec![KeySource::Param(1)],
    };
    let v = 4242i32.to_be_bytes();
    let bin = Params {
        values: vec![Some(&v[..])],
        formats: vec![1],
    };
    c.bench_function("resolve/keyed_binary_param", |b| {
        b.iter(|| resolve(black_box(&param), &bin, &m))
    });
}

criterion_group!(benches, plan, resolve_keyed);
criterion_main!(benches);
