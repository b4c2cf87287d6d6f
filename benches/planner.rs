//! Planner benchmarks: the cost of turning SQL text into a routing plan, with
//! the plan cache (what every repeated simple-protocol statement pays) and
//! without it (a first sighting: sqlparser parse plus routing analysis).
//!
//! Run: `cargo bench --bench planner -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use shardproxy::config::Config;
use shardproxy::data::planner::Planner;
use shardproxy::data::router::ShardMap;
use std::sync::Arc;

/// 4 shards, pgbench's tables sharded by their ids, the shop tables co-located.
fn planner() -> Planner {
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
name = "orders"
shard_key = "customer_id"
colocation = "customer"

[[tables]]
name = "customers"
shard_key = "customer_id"
colocation = "customer"

[[tables]]
name = "products"
reference = true
"#,
    );
    let cfg = Config::parse(&s, "bench.toml").expect("bench config");
    Planner::new(Arc::new(ShardMap::from_config(&cfg).expect("shard map")))
}

const STATEMENTS: &[(&str, &str)] = &[
    (
        "pgbench_select",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
    ),
    (
        "join_colocated",
        "SELECT c.name, o.order_id, p.name FROM customers c \
         JOIN orders o ON o.customer_id = c.customer_id \
         JOIN products p ON p.product_id = o.product_id \
         WHERE c.customer_id = 42 AND o.status = 'new' ORDER BY o.order_id LIMIT 10",
    ),
    (
        "insert_3_rows",
        "INSERT INTO orders (order_id, customer_id, product_id, quantity, total) \
         VALUES (1, 7, 3, 1, 9.99), (2, 8, 4, 2, 19.98), (3, 9, 5, 1, 4.50)",
    ),
];

fn bench_planner(c: &mut Criterion) {
    let p = planner();
    for (name, sql) in STATEMENTS {
        // Warm the cache once; `plan` then returns the cached Arc.
        black_box(p.plan(sql));
        c.bench_function(&format!("plan_cached/{name}"), |b| {
            b.iter(|| p.plan(black_box(sql)))
        });
        c.bench_function(&format!("plan_uncached/{name}"), |b| {
            b.iter(|| p.plan_uncached(black_box(sql)))
        });
    }
}

criterion_group!(benches, bench_planner);
criterion_main!(benches);
