//! ShardMap-level tests: config → map, routing, pins, adding shards,
//! persistence, plus property tests of the hash and the interval table.

use super::hash::{hash_key, hashint8extended, HASH_PARTITION_SEED};
use super::interval::IntervalTable;
use super::key::{KeyType, KeyValue};
use super::shardmap::ShardMap;
use crate::config::Config;
use proptest::prelude::*;

fn config(extra: &str, nshards: usize) -> Config {
    let mut s = String::new();
    for i in 0..nshards {
        s.push_str(&format!(
            "[[shards]]\nname = \"s{i}\"\nurl = \"postgres://postgres@127.0.0.1:5432/postgres\"\n"
        ));
    }
    s.push_str(extra);
    Config::parse(&s, "test.toml").unwrap()
}

const TABLES: &str = r#"
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

[[lookup]]
key = "42"
shard = "s3"

[[lookup]]
key = "alice"
shard = "s0"
colocation = "users"
"#;

fn map4() -> ShardMap {
    ShardMap::from_config(&config(TABLES, 4)).unwrap()
}

#[test]
fn config_to_map() {
    let m = map4();
    assert_eq!(m.epoch(), 1);
    assert_eq!(m.shard_names(), ["s0", "s1", "s2", "s3"]);
    assert_eq!(m.groups(), ["default", "users"]);
    let o = m.table("PUBLIC.Orders").unwrap();
    assert_eq!(
        (o.group, o.key_type, o.reference),
        (0, KeyType::Int8, false)
    );
    assert_eq!(m.table("users").unwrap().group, 1);
    assert!(m.table("countries").unwrap().reference);
    assert!(m.table("nope").is_none());
    assert_eq!(m.group_key_type(0), Some(KeyType::Int8));
    assert_eq!(m.group_key_type(1), Some(KeyType::Text));
    assert_eq!(m.key_from_text(0, "7"), Ok(KeyValue::Int(7)));
    assert_eq!(m.key_from_text(1, "7"), Ok(KeyValue::Text("7")));
    assert_eq!(
        m.key_from_binary(0, &7i32.to_be_bytes()),
        Ok(KeyValue::Int(7))
    );
    assert!(m.key_from_text(0, "x").unwrap_err().contains("bigint"));
    let mut l = m.lookups();
    l.sort();
    assert_eq!(
        l,
        vec![
            ("default".into(), "42".into(), "s3".into()),
            ("users".into(), "alice".into(), "s0".into())
        ]
    );
    assert_eq!(m.vnodes(), 256);
    assert_eq!(m.intervals(0).len(), 1024);
}

#[test]
fn mixed_key_types_in_a_group_are_rejected() {
    let bad = "[[tables]]\nname = \"a\"\nshard_key = \"k\"\nkey_type = \"bigint\"\n\
               [[tables]]\nname = \"b\"\nshard_key = \"k\"\nkey_type = \"uuid\"\n";
    let e = ShardMap::from_config(&config(bad, 2)).unwrap_err();
    assert!(
        e.contains("'b'") && e.contains("'a'") && e.contains("default"),
        "{e}"
    );
    // Integer widths (and text/varchar) share a group fine.
    let ok = "[[tables]]\nname = \"a\"\nshard_key = \"k\"\nkey_type = \"text\"\n\
              [[tables]]\nname = \"b\"\nshard_key = \"k\"\nkey_type = \"varchar\"\n";
    assert!(ShardMap::from_config(&config(ok, 2)).is_ok());
    let pin =
        "[[tables]]\nname = \"a\"\nshard_key = \"k\"\n[[lookup]]\nkey = \"x\"\nshard = \"s0\"\n";
    let e = ShardMap::from_config(&config(pin, 2)).unwrap_err();
    assert!(e.contains("lookup[0]") && e.contains("'x'"), "{e}");
    let nogroup = "[[tables]]\nname = \"a\"\nshard_key = \"k\"\n\
                   [[lookup]]\nkey = \"1\"\nshard = \"s0\"\ncolocation = \"zz\"\n";
    let e = ShardMap::from_config(&config(nogroup, 2)).unwrap_err();
    assert!(e.contains("'zz'"), "{e}");
}

#[test]
fn lookup_pin_wins() {
    let m = map4();
    let k = KeyValue::Int(42);
    assert_eq!(m.shard_for(0, &k), 3);
    assert_eq!(m.shard_for(1, &KeyValue::Text("alice")), 0);
    // Without the pin 42 would go where its hash says.
    let unpinned =
        ShardMap::from_config(&config("[[tables]]\nname = \"t\"\nshard_key = \"k\"\n", 4)).unwrap();
    let by_hash = unpinned.shard_for(0, &k);
    assert_eq!(by_hash, unpinned.shard_for_hash(0, hash_key(&k).unwrap()));
    // Pin a key to each shard in turn: the pin always wins.
    for s in 0..4 {
        let p = unpinned
            .with_lookup("default", "1000", &format!("s{s}"))
            .unwrap();
        assert_eq!(p.shard_for(0, &KeyValue::Int(1000)), s);
        assert_eq!(p.epoch(), 2);
        assert_eq!(p.lookups().len(), 1);
    }
}

#[test]
fn null_keys_go_to_the_owner_of_hash_zero() {
    let m = map4();
    assert_eq!(m.shard_for(0, &KeyValue::Null), m.shard_for_hash(0, 0));
    assert_eq!(m.shard_for(1, &KeyValue::Null), m.shard_for_hash(1, 0));
}

#[test]
fn adding_a_fifth_shard_moves_about_a_fifth_of_keys() {
    let four = ShardMap::from_config(&config("", 4)).unwrap();
    let five = four.with_shard_added("s4", 256);
    assert_eq!(five.epoch(), 2);
    assert_eq!(five.shard_names().len(), 5);
    let n = 200_000i64;
    let mut moved = 0;
    let mut modulo_moved = 0;
    for i in 0..n {
        let k = KeyValue::Int(i);
        let (a, b) = (four.shard_for(0, &k), five.shard_for(0, &k));
        if a != b {
            assert_eq!(
                b, 4,
                "key {i} moved from s{a} to s{b}, not to the new shard"
            );
            moved += 1;
        }
        let h = hash_key(&k).unwrap();
        if h % 4 != h % 5 {
            modulo_moved += 1;
        }
    }
    let f = moved as f64 / n as f64;
    let fm = modulo_moved as f64 / n as f64;
    assert!((f - 0.20).abs() < 0.02, "consistent hashing moved {f}");
    assert!((fm - 0.80).abs() < 0.01, "modulo moved {fm}");

    let plan = four.plan_add_shard("s4");
    assert!(
        (plan.fraction_moved - f).abs() < 0.01,
        "{} vs {f}",
        plan.fraction_moved
    );
    assert!((plan.modulo_fraction_moved - 0.8).abs() < 1e-9);
    assert!(plan
        .moves
        .iter()
        .all(|(_, iv, from, to)| *to == 4 && iv.shard == 4 && *from < 4));
    assert_eq!(plan.target, five);
    let text = plan.render();
    assert!(text.contains("'s4'") && text.contains("80.00%"), "{text}");
}

#[test]
fn plan_moves_are_exactly_the_differences() {
    let four = ShardMap::from_config(&config("", 4)).unwrap();
    let plan = four.plan_add_shard("s4");
    // Applying every move to the old table gives the new one's ownership.
    let mut applied = four.clone();
    for (g, iv, _, to) in &plan.moves {
        applied = applied.with_interval_assigned(*g, iv.lo, iv.hi, *to);
    }
    for h in (0..10_000u64).map(|i| i.wrapping_mul(0x9E3779B97F4A7C15)) {
        assert_eq!(
            applied.shard_for_hash(0, h),
            plan.target.shard_for_hash(0, h)
        );
    }
}

#[test]
fn persisted_map_round_trips() {
    let cfg = config(TABLES, 5);
    let m = ShardMap::from_config(&config(TABLES, 4)).unwrap();
    let m = m
        .with_shard_added("s4", 16)
        .with_interval_assigned(1, 10, 1 << 40, 2)
        .with_lookup("users", "bob", "s4")
        .unwrap();
    let text = m.to_toml();
    let back = ShardMap::from_toml(&text, &cfg).unwrap();
    assert_eq!(back.epoch(), m.epoch());
    assert_eq!(back.intervals(0), m.intervals(0));
    assert_eq!(back.intervals(1), m.intervals(1));
    let (mut a, mut b) = (back.lookups(), m.lookups());
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(back.to_toml(), text);

    // Through a file named by sharding.map_file, relative to the config.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shardmap").join("map.toml");
    m.save(&path).unwrap();
    let mut cfg2 = cfg.clone();
    cfg2.sharding.map_file = Some("shardmap/map.toml".into());
    cfg2.source = Some(dir.path().join("shardproxy.toml"));
    let loaded = ShardMap::from_config(&cfg2).unwrap();
    assert_eq!(loaded.to_toml(), text);
}

#[test]
fn bad_map_files_are_rejected_with_reason() {
    let cfg = config(TABLES, 4);
    let e = ShardMap::from_toml(
        "epoch = 3\n[[groups]]\nname = \"default\"\nintervals = [[\"0x10\", \"s9\"]]\n",
        &cfg,
    )
    .unwrap_err();
    assert!(e.contains("'s9'"), "{e}");
    let e = ShardMap::from_toml(
        "epoch = 3\n[[groups]]\nname = \"default\"\nintervals = [[\"0x20\", \"s0\"], [\"0x10\", \"s1\"]]\n",
        &cfg,
    )
    .unwrap_err();
    assert!(e.contains("ascending"), "{e}");
    let e = ShardMap::from_toml(
        "epoch = 3\n[[groups]]\nname = \"default\"\nintervals = [[\"16\", \"s0\"]]\n",
        &cfg,
    )
    .unwrap_err();
    assert!(e.contains("'16'"), "{e}");
    let e = ShardMap::from_toml(
        "epoch = 3\n[[groups]]\nname = \"default\"\nkey_type = \"uuid\"\nintervals = [[\"0x1\", \"s0\"]]\n",
        &cfg,
    )
    .unwrap_err();
    assert!(e.contains("key type"), "{e}");
    assert!(ShardMap::from_toml("epoch = 1\nbogus = 2\n", &cfg)
        .unwrap_err()
        .contains("bogus"));
    // A map with one interval per group: everything on s1.
    let one = ShardMap::from_toml(
        "epoch = 7\n[[groups]]\nname = \"default\"\nintervals = [[\"0x0000000000000005\", \"s1\"]]\n",
        &cfg,
    )
    .unwrap();
    assert_eq!(one.epoch(), 7);
    assert_eq!(one.shard_for(0, &KeyValue::Int(1)), 1);
    assert_eq!(one.key_share(0), vec![0.0, 1.0, 0.0, 0.0]);
}

#[test]
fn show_rows_describe_each_group_and_shard() {
    let m = map4();
    let rows = m.show_rows();
    assert_eq!(rows.len(), 2 * 4);
    assert!(rows
        .iter()
        .all(|r| r.len() == super::SHOW_SHARDMAP_COLUMNS.len()));
    let r = &rows[3]; // default / s3
    assert_eq!(
        (r[0].as_str(), r[1].as_str(), r[6].as_str()),
        ("default", "s3", "1")
    );
    assert_eq!(r[5], "42");
    assert!(
        r[3].starts_with("(0x") && r[3].contains("more)"),
        "{}",
        r[3]
    );
    let total: f64 = rows[..4]
        .iter()
        .map(|r| r[4].trim_end_matches('%').parse::<f64>().unwrap())
        .sum();
    assert!((total - 100.0).abs() < 0.05, "{total}");
}

/// Binary integer keys borrow nothing; detach them from the temporary bytes.
fn detach(k: KeyValue<'_>) -> KeyValue<'static> {
    match k {
        KeyValue::Int(v) => KeyValue::Int(v),
        other => panic!("not an int key: {other:?}"),
    }
}

fn int_forms(v: i64) -> Vec<KeyValue<'static>> {
    let mut out = vec![KeyValue::Int(v)];
    let s: &'static str = Box::leak(v.to_string().into_boxed_str());
    for t in [KeyType::Int2, KeyType::Int4, KeyType::Int8] {
        out.push(t.from_text(s).unwrap());
        out.push(detach(t.from_binary(&v.to_be_bytes()).unwrap()));
        if let Ok(x) = i32::try_from(v) {
            out.push(detach(t.from_binary(&x.to_be_bytes()).unwrap()));
        }
        if let Ok(x) = i16::try_from(v) {
            out.push(detach(t.from_binary(&x.to_be_bytes()).unwrap()));
        }
    }
    out
}

proptest! {
    #[test]
    fn hash_is_deterministic(s in ".*", v in any::<i64>()) {
        prop_assert_eq!(hash_key(&KeyValue::Text(&s)), hash_key(&KeyValue::Text(&s.clone())));
        prop_assert_eq!(hash_key(&KeyValue::Int(v)), Some(hashint8extended(v, HASH_PARTITION_SEED)));
    }

    #[test]
    fn int_key_lands_on_one_shard_in_every_form(v in prop_oneof![any::<i16>().prop_map(i64::from), any::<i32>().prop_map(i64::from), any::<i64>()]) {
        let m = ShardMap::from_config(&config("", 4)).unwrap();
        let forms = int_forms(v);
        let want = m.shard_for(0, &forms[0]);
        for f in &forms {
            prop_assert_eq!(f, &KeyValue::Int(v));
            prop_assert_eq!(m.shard_for(0, f), want);
        }
    }

    #[test]
    fn intervals_cover_the_circle_exactly(points in prop::collection::vec((any::<u64>(), 0usize..5), 1..60), probes in prop::collection::vec(any::<u64>(), 1..50)) {
        let t = IntervalTable::from_points(points).unwrap();
        let ivs = t.intervals();
        prop_assert_eq!(ivs.iter().map(|i| i.width()).sum::<u128>(), 1u128 << 64);
        for w in ivs.windows(2) {
            prop_assert_eq!(w[0].hi, w[1].lo);
        }
        prop_assert_eq!(ivs[ivs.len() - 1].hi, ivs[0].lo);
        for h in probes.into_iter().chain([0, u64::MAX]) {
            let holders: Vec<_> = ivs.iter().filter(|i| i.contains(h)).collect();
            prop_assert_eq!(holders.len(), 1, "hash {:#x}", h);
            prop_assert_eq!(holders[0].shard, t.owner(h));
            prop_assert_eq!(holders[0], &t.interval_at(h));
        }
    }

    #[test]
    fn adding_a_shard_moves_keys_only_to_it(n in 1usize..6, vnodes in 1usize..64, keys in prop::collection::vec(any::<i64>(), 1..200)) {
        let m = ShardMap::from_config(&config("", n)).unwrap();
        let m2 = m.with_shard_added("new", vnodes);
        for k in keys {
            let (a, b) = (m.shard_for(0, &KeyValue::Int(k)), m2.shard_for(0, &KeyValue::Int(k)));
            prop_assert!(a == b || b == n, "key {} moved s{} -> s{}", k, a, b);
        }
    }

    #[test]
    fn assigned_interval_is_owned(lo in any::<u64>(), hi in any::<u64>(), probes in prop::collection::vec(any::<u64>(), 1..50)) {
        let m = ShardMap::from_config(&config("", 3)).unwrap();
        let a = m.with_interval_assigned(0, lo, hi, 2);
        let iv = super::HashInterval { lo, hi, shard: 2 };
        for h in probes.into_iter().chain([lo, hi, lo.wrapping_add(1), hi.wrapping_add(1)]) {
            if iv.contains(h) {
                prop_assert_eq!(a.shard_for_hash(0, h), 2);
            } else {
                prop_assert_eq!(a.shard_for_hash(0, h), m.shard_for_hash(0, h));
            }
        }
    }
}

/// The config the example maps under `shardmap/` are made for (also shown in
/// `shardmap/README.md`).
const EXAMPLE: &str = r#"
[sharding]
vnodes = 16
map_file = "shardmap/maps/example-4-shards.toml"

[[tables]]
name = "orders"
shard_key = "customer_id"
key_type = "bigint"

[[tables]]
name = "users"
shard_key = "email"
key_type = "text"
colocation = "users"

[[lookup]]
key = "42"
shard = "s3"
"#;

/// The example files are exactly what the code writes, and load back.
/// Regenerate with `SHARDPROXY_WRITE_EXAMPLES=1 cargo test --lib example_map_files`.
#[test]
fn example_map_files_are_current() {
    let four = ShardMap::default_for(&config(EXAMPLE, 4)).unwrap();
    let five = four.with_shard_added("s4", 16);
    let cfg5 = config(EXAMPLE, 5);
    for (file, map) in [
        ("shardmap/maps/example-4-shards.toml", &four),
        ("shardmap/maps/example-5-shards.toml", &five),
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        if std::env::var_os("SHARDPROXY_WRITE_EXAMPLES").is_some() {
            map.save(&path).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, map.to_toml(), "{file} is stale; see the doc comment");
        let back = ShardMap::from_toml(&text, &cfg5).unwrap();
        for g in 0..2 {
            assert_eq!(back.intervals(g), map.intervals(g));
        }
        assert_eq!(back.lookups(), map.lookups());
    }
}
