//! Planner benchmarks: plan() cached and uncached for short OLTP statements,
//! resolve() of a keyed target, and routing a simple-protocol text with a
//! new literal key each time (normalization + cache + resolve).
//!
//! Run: `cargo bench --bench planner -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use shardproxy::config::Config;
use shardproxy::data::planner::{
    resolve, resolve_stmt, KeySource, KeyType, LastPlan, Params, Planner, Target,
};
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
        values: smallvec::smallvec![Some(&v[..])],
        formats: smallvec::smallvec![1],
    };
    c.bench_function("resolve/keyed_binary_param", |b| {
        b.iter(|| resolve(black_box(&param), &bin, &m))
    });
}

/// What a simple-protocol query costs the router end to end: literal
/// normalization, the template's cached plan, resolve to a shard. Each
/// iteration uses a different key, as pgbench -S does.
fn route_simple(c: &mut Criterion) {
    let m = Arc::new(map());
    let planner = Planner::new(m.clone());
    let texts: Vec<String> = (0..1024)
        .map(|i| {
            format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
                i * 7919 + 1
            )
        })
        .collect();
    let mut i = 0;
    c.bench_function("route_simple/pgbench_select_new_key", |b| {
        b.iter(|| {
            i = (i + 1) % texts.len();
            let (plan, lits) = planner.plan_literals(black_box(&texts[i]));
            let params = Params {
                values: lits.iter().map(|l| Some(l.as_bytes())).collect(),
                formats: Default::default(),
            };
            resolve_stmt(&plan.stmts[0], &params, &m)
        })
    });
    // The same through a session's memo of its last statement shape, as
    // the session runs it.
    let mut last = LastPlan::default();
    c.bench_function("route_simple/pgbench_select_new_key_session", |b| {
        b.iter(|| {
            i = (i + 1) % texts.len();
            let (plan, lits) = planner.plan_literals_with(black_box(&texts[i]), &mut last);
            let params = Params {
                values: lits.iter().map(|l| Some(l.as_bytes())).collect(),
                formats: Default::default(),
            };
            resolve_stmt(&plan.stmts[0], &params, &m)
        })
    });
}

criterion_group!(benches, plan, resolve_keyed, route_simple);
criterion_main!(benches);
