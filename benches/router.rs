//! Router benchmarks: hashing a key, routing a key through the shard map
//! (4 shards × 256 vnodes, with and without pinned keys), and the share of
//! keys that adding a fifth shard moves (consistent hashing vs modulo).
//!
//! Run: `cargo bench --bench router -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use shardproxy::config::Config;
use shardproxy::data::router::{hash_key, KeyValue, ShardMap};

fn config(nshards: usize, pins: usize) -> Config {
    let mut s = String::new();
    for i in 0..nshards {
        s.push_str(&format!(
            "[[shards]]\nname = \"s{i}\"\nurl = \"postgres://postgres@127.0.0.1:5432/postgres\"\n"
        ));
    }
    s.push_str(
        "[sharding]\nvnodes = 256\n[[tables]]\nname = \"orders\"\nshard_key = \"customer_id\"\n",
    );
    for p in 0..pins {
        s.push_str(&format!(
            "[[lookup]]\nkey = \"{}\"\nshard = \"s{}\"\n",
            p * 7919,
            p % nshards
        ));
    }
    Config::parse(&s, "bench.toml").expect("bench config")
}

/// Fraction of `n` sample keys whose shard changes from `a` to `b`.
fn moved(a: &ShardMap, b: &ShardMap, n: i64) -> f64 {
    let m = (0..n)
        .filter(|&k| a.shard_for(0, &KeyValue::Int(k)) != b.shard_for(0, &KeyValue::Int(k)))
        .count();
    m as f64 / n as f64
}

fn report_moves() {
    let four = ShardMap::from_config(&config(4, 0)).expect("map");
    let five = four.with_shard_added("s4", 256);
    let n = 1_000_000i64;
    let consistent = moved(&four, &five, n);
    let modulo = (0..n)
        .map(|k| hash_key(&KeyValue::Int(k)).unwrap_or(0))
        .filter(|h| h % 4 != h % 5)
        .count() as f64
        / n as f64;
    let plan = four.plan_add_shard("s4");
    println!(
        "adding a 5th shard to 4 (256 vnodes): consistent hashing moves {:.2}% of {n} keys \
         ({:.2}% of the hash space, {} intervals); modulo hashing moves {:.2}% (exact {:.2}%)",
        consistent * 100.0,
        plan.fraction_moved * 100.0,
        plan.moves.len(),
        modulo * 100.0,
        plan.modulo_fraction_moved * 100.0
    );
}

fn benches(c: &mut Criterion) {
    report_moves();

    let mut g = c.benchmark_group("hash_key");
    let mut i = 0i64;
    g.bench_function("int", |b| {
        b.iter(|| {
            i = i.wrapping_add(0x9E37_79B9);
            hash_key(black_box(&KeyValue::Int(i)))
        })
    });
    let texts: Vec<String> = (0..1024).map(|i| format!("customer-{i:06}")).collect();
    let mut j = 0usize;
    g.bench_function("text_15b", |b| {
        b.iter(|| {
            j = (j + 1) & 1023;
            hash_key(black_box(&KeyValue::Text(&texts[j])))
        })
    });
    g.finish();

    let plain = ShardMap::from_config(&config(4, 0)).expect("map");
    let pinned = ShardMap::from_config(&config(4, 100)).expect("map");
    let mut g = c.benchmark_group("shard_for_4x256");
    for (name, map) in [("no_lookups", &plain), ("100_lookups", &pinned)] {
        let mut k = 0i64;
        g.bench_function(name, |b| {
            b.iter(|| {
                k = k.wrapping_add(0x9E37_79B9_7F4A_7C15u64 as i64);
                map.shard_for(0, black_box(&KeyValue::Int(k)))
            })
        });
    }
    let mut k = 0usize;
    g.bench_function("text_no_lookups", |b| {
        b.iter(|| {
            k = (k + 1) & 1023;
            plain.shard_for(0, black_box(&KeyValue::Text(&texts[k])))
        })
    });
    g.finish();
}

criterion_group!(router, benches);
criterion_main!(router);
