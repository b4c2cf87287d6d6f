//! The consistent-hash default placement: virtual-node points on the 64-bit
//! circle, derived deterministically from the shard names.
//!
//! Point `i` of shard `name` is the shard hash of the text `"{name}#{i}"`,
//! so Postgres can compute it too:
//! `hashtextextended('s0#7', 8816678312871386365)`. A hash is owned by the
//! first point at or after it (wrapping); the result is turned into an
//! explicit [`IntervalTable`], which is what routing and moves work on.
//! Adding a shard inserts only its own points, so only the intervals ending
//! at those points change hands, and only to the new shard.
//!
//! We do not use the `hashring` crate: it hashes keys with SipHash over the
//! Rust type (an `i32` 42 and an `i64` 42 land on different nodes), its
//! placement cannot be computed in SQL (the rebalancer selects an interval's
//! rows with SQL), and it cannot reassign an arbitrary interval to a shard.

use super::hash::{hash_bytes_extended, HASH_PARTITION_SEED};
use super::interval::IntervalTable;
use super::shardmap::ShardId;

/// The `vnodes` points of shard `name`.
pub fn vnode_points(name: &str, vnodes: usize) -> impl Iterator<Item = u64> + '_ {
    (0..vnodes)
        .map(move |i| hash_bytes_extended(format!("{name}#{i}").as_bytes(), HASH_PARTITION_SEED))
}

/// The default table for shards `names` (index = `ShardId`). Two shards
/// colliding on one point (probability ~2^-44 for 1000 points) resolve to the
/// lower shard id, deterministically.
pub fn consistent_table(names: &[String], vnodes: usize) -> IntervalTable {
    let mut points: Vec<(u64, ShardId)> = names
        .iter()
        .enumerate()
        .flat_map(|(id, n)| vnode_points(n, vnodes).map(move |p| (p, id)))
        .collect();
    points.sort_unstable();
    match IntervalTable::from_points(points) {
        Ok(t) => t,
        // No shards or no vnodes: callers validate both; shard 0 is the only
        // sensible owner.
        Err(_) => IntervalTable::single(0),
    }
}

/// `table` with shard `id`'s vnode points added (each takes over the keys
/// between the previous bound and itself).
pub fn add_vnodes(table: &IntervalTable, id: ShardId, name: &str, vnodes: usize) -> IntervalTable {
    let mut t = table.clone();
    for p in vnode_points(name, vnodes) {
        t = t.with_point(p, id);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}")).collect()
    }

    #[test]
    fn deterministic_and_balanced() {
        let a = consistent_table(&names(4), 256);
        let b = consistent_table(&names(4), 256);
        assert_eq!(a, b);
        assert_eq!(a.len(), 1024);
        for s in a.shares(4) {
            assert!((0.15..0.35).contains(&s), "share {s}");
        }
    }

    #[test]
    fn adding_vnodes_equals_building_from_scratch() {
        let four = consistent_table(&names(4), 64);
        let five = consistent_table(&names(5), 64);
        assert_eq!(add_vnodes(&four, 4, "s4", 64), five);
    }
}
