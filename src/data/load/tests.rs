//! The window on synthetic streams: shares, ranking, pins, slots and epochs.

use super::key::HitKey;
use super::tally::Hit;
use super::window::{sub_bound, sub_index, Window, WindowShape, SUB};
use crate::config::Config;
use crate::data::router::{hash_key, HashInterval, KeyValue, ShardMap};

fn map(extra: &str) -> ShardMap {
    let mut t = String::new();
    for i in 0..4 {
        t.push_str(&format!(
            "[[shards]]\nname = \"s{i}\"\nurl = \"postgres://u@127.0.0.1:1/db\"\n"
        ));
    }
    t.push_str("[[tables]]\nname = \"t\"\nshard_key = \"k\"\n");
    t.push_str(extra);
    ShardMap::from_config(&Config::parse(&t, "t.toml").unwrap()).unwrap()
}

fn hit(k: i64) -> Hit {
    let v = KeyValue::Int(k);
    Hit {
        group: 0,
        hash: hash_key(&v).unwrap(),
        key: HitKey::of(&v),
    }
}

fn shape(slot_secs: u64, slots: usize) -> WindowShape {
    WindowShape {
        slot_secs,
        slots,
        top_keys: 32,
    }
}

/// 10,000 statements: key 7 takes 30%, the rest spread over 5,000 keys.
fn skewed() -> Vec<Hit> {
    (0..10_000)
        .map(|i| {
            if i % 10 < 3 {
                hit(7)
            } else {
                hit(1000 + i % 5000)
            }
        })
        .collect()
}

/// Per-shard statements as the pools would count them for `hits`.
fn shard_work(w: &mut Window, m: &ShardMap, tick: u64, hits: &[Hit]) {
    let mut per = vec![0u64; m.shard_names().len()];
    for h in hits {
        per[m.route_key(0, &h.key.as_value()).0] += 1;
    }
    for (i, n) in per.iter().enumerate() {
        w.add_shard_work(tick, m.epoch(), &m.shard_names()[i], *n, *n * 100);
    }
}

#[test]
fn a_hot_key_and_its_interval_rank_first_with_their_true_share() {
    let m = map("");
    let mut w = Window::new(shape(10, 6));
    let hits = skewed();
    for chunk in hits.chunks(64) {
        w.add_hits(3, &m, chunk);
    }
    shard_work(&mut w, &m, 3, &hits);
    let s = w.snapshot(5, &m);
    assert_eq!(s.statements(), 10_000);
    assert_eq!(s.keyed, 10_000);
    assert_eq!(s.secs, 3);
    let top = &s.keys[0];
    assert_eq!(top.key, HitKey::Int(7));
    assert!(
        (s.share(top.count) - 0.30).abs() < 0.02,
        "{}",
        s.share(top.count)
    );
    assert!(top.count - top.error <= 3000 && top.count >= 3000);
    let hot_shard = m.shard_for(0, &KeyValue::Int(7));
    assert_eq!(top.shard, hot_shard);
    assert!(!top.pinned);
    let iv = &s.intervals[0];
    assert!(iv.interval().contains(top.hash), "{iv:?}");
    assert_eq!(iv.shard, hot_shard);
    assert!(s.share(iv.hits) >= 0.30 && s.share(iv.hits) < 0.32);
    assert_eq!(iv.sub.iter().sum::<u64>(), iv.hits);
    assert!(iv.sub[sub_index(&iv.interval(), top.hash)] >= 3000);
    // The hot shard: 30% plus about a quarter of the rest.
    let shares = s.shard_shares();
    assert!(shares[hot_shard] > 0.40, "{shares:?}");
    assert!((s.imbalance() - shares[hot_shard] * 4.0).abs() < 1e-9);
}

#[test]
fn pinned_keys_count_for_the_key_not_the_interval() {
    let m = map("[[lookup]]\nkey = \"7\"\nshard = \"s3\"\n");
    let mut w = Window::new(shape(10, 6));
    w.add_hits(0, &m, &skewed());
    let s = w.snapshot(0, &m);
    assert_eq!(s.keys[0].key, HitKey::Int(7));
    assert!(s.keys[0].pinned);
    assert_eq!(s.keys[0].shard, 3);
    let hits: u64 = s.intervals.iter().map(|i| i.hits).sum();
    assert_eq!(hits, 7_000);
}

#[test]
fn slots_leave_the_window_and_an_epoch_change_starts_afresh() {
    let m = map("");
    let mut w = Window::new(shape(10, 3));
    w.add_hits(0, &m, &[hit(1), hit(2)]);
    w.add_hits(15, &m, &[hit(3)]);
    assert_eq!(w.snapshot(15, &m).keyed, 3);
    // At tick 40 the window is (10, 40]: the slot of [0, 10) is gone.
    w.expire(40);
    let s = w.snapshot(40, &m);
    assert_eq!(s.keyed, 1);
    assert_eq!(s.secs, 30);
    // A new map epoch: load measured under the old one is left out.
    let moved = m.with_interval_assigned(0, 0, u64::MAX / 2, 2);
    w.add_hits(41, &moved, &[hit(4)]);
    let s = w.snapshot(41, &moved);
    assert_eq!((s.keyed, s.epoch, s.secs), (1, moved.epoch(), 1));
    assert_eq!(w.snapshot(41, &m).keyed, 1);
}

#[test]
fn sub_intervals_split_an_interval_into_sixteenths() {
    let iv = HashInterval {
        lo: 1000,
        hi: 1000 + 1600,
        shard: 0,
    };
    assert_eq!(sub_index(&iv, 1001), 0);
    assert_eq!(sub_index(&iv, 1100), 0);
    assert_eq!(sub_index(&iv, 1101), 1);
    assert_eq!(sub_index(&iv, 2600), SUB - 1);
    assert_eq!(sub_bound(&iv, 0), 1000);
    assert_eq!(sub_bound(&iv, 1), 1100);
    assert_eq!(sub_bound(&iv, SUB), 2600);
    // Wrapping through u64::MAX, and the whole circle.
    let wrap = HashInterval {
        lo: u64::MAX - 799,
        hi: 800,
        shard: 0,
    };
    assert_eq!(sub_index(&wrap, u64::MAX), 7);
    assert_eq!(sub_index(&wrap, 0), 7);
    assert_eq!(sub_index(&wrap, 1), 8);
    assert_eq!(sub_bound(&wrap, 8), 0);
    let all = HashInterval {
        lo: 5,
        hi: 5,
        shard: 0,
    };
    assert_eq!(sub_index(&all, 4), SUB - 1);
    assert_eq!(sub_index(&all, 6), 0);
}
