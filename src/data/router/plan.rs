//! Planning the addition of a shard: which intervals change hands, and how
//! that compares with modulo hashing.
//!
//! The plan is the diff between the current map and
//! [`ShardMap::with_shard_added`]: a list of `(lo, hi] → target` intervals
//! per group, which is what the rebalancer executes. Modulo hashing
//! (`hash % N`) is reported alongside because it is the usual alternative:
//! going from N to N+1 shards it moves N/(N+1) of the keys, consistent
//! hashing about 1/(N+1).

use super::interval::HashInterval;
use super::shardmap::{ShardId, ShardMap};

/// What adding a shard moves.
#[derive(Debug, Clone)]
pub struct AddShardPlan {
    pub shard: String,
    /// `(group, range, from, to)`; `range.shard == to`. Ranges follow the
    /// `(lo, hi]` wrap-around convention of [`HashInterval`].
    pub moves: Vec<(usize, HashInterval, ShardId, ShardId)>,
    /// Fraction of the hash space (averaged over groups) that changes shard.
    pub fraction_moved: f64,
    /// Fraction that would move with `hash % N` → `hash % (N+1)`, exact over
    /// the 2^64 hashes.
    pub modulo_fraction_moved: f64,
    /// The map once every move is done (epoch + 1).
    pub target: ShardMap,
    /// The map the plan starts from.
    pub source_epoch: u64,
}

/// Exact fraction of `h` in `[0, 2^64)` with `h % n != h % (n + 1)`.
///
/// `h % n == h % (n+1)` iff `h mod n(n+1) < n` (n and n+1 are coprime), so
/// in every block of `n(n+1)` hashes exactly `n` stay.
pub fn modulo_fraction_moved(n: u64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let space = 1u128 << 64;
    let block = n as u128 * (n as u128 + 1);
    let stays = (space / block) * n as u128 + (space % block).min(n as u128);
    1.0 - stays as f64 / space as f64
}

impl ShardMap {
    /// The moves that [`ShardMap::with_shard_added`]`(name, self.vnodes())`
    /// implies.
    pub fn plan_add_shard(&self, name: &str) -> AddShardPlan {
        let target = self.with_shard_added(name, self.vnodes());
        let mut moves = Vec::new();
        let mut moved = 0u128;
        for g in 0..self.groups().len() {
            for (iv, from) in self.inner().groups[g]
                .table
                .diff(&target.inner().groups[g].table)
            {
                moved += iv.width();
                moves.push((g, iv, from, iv.shard));
            }
        }
        let ngroups = self.groups().len().max(1) as f64;
        let existing = self.shard_names().iter().filter(|s| *s != name).count() as u64;
        AddShardPlan {
            shard: name.to_string(),
            moves,
            fraction_moved: moved as f64 / 2f64.powi(64) / ngroups,
            modulo_fraction_moved: modulo_fraction_moved(existing),
            source_epoch: self.epoch(),
            target,
        }
    }
}

impl AddShardPlan {
    /// A summary for the CLI and the admin console: totals, then one line per
    /// (group, from → to) with its interval count and share of the space.
    pub fn render(&self) -> String {
        let names = self.target.shard_names();
        let groups = self.target.groups();
        let n = names.iter().filter(|s| **s != self.shard).count();
        let mut out = format!(
            "Add shard '{}' (epoch {} -> {}): {} intervals change shard.\n\
             consistent hashing moves {:.2}% of keys, all to '{}'\n\
             modulo hashing ({} -> {} shards) would move {:.2}%\n",
            self.shard,
            self.source_epoch,
            self.target.epoch(),
            self.moves.len(),
            self.fraction_moved * 100.0,
            self.shard,
            n,
            n + 1,
            self.modulo_fraction_moved * 100.0,
        );
        // (group, from, to) -> (interval count, hashes)
        type Line = ((usize, ShardId, ShardId), (usize, u128));
        let mut summary: Vec<Line> = Vec::new();
        for (g, iv, from, to) in &self.moves {
            match summary.iter_mut().find(|(k, _)| *k == (*g, *from, *to)) {
                Some((_, (c, w))) => {
                    *c += 1;
                    *w += iv.width();
                }
                None => summary.push(((*g, *from, *to), (1, iv.width()))),
            }
        }
        summary.sort_by_key(|(k, _)| *k);
        out.push_str(&format!(
            "{:<16} {:<12} {:<12} {:>9} {:>8}\n",
            "group", "from", "to", "intervals", "keys"
        ));
        for ((g, from, to), (count, width)) in summary {
            out.push_str(&format!(
                "{:<16} {:<12} {:<12} {:>9} {:>7.2}%\n",
                groups.get(g).map_or("?", |s| s.as_str()),
                names.get(from).map_or("?", |s| s.as_str()),
                names.get(to).map_or("?", |s| s.as_str()),
                count,
                width as f64 / 2f64.powi(64) * 100.0
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulo_fraction_is_n_over_n_plus_1() {
        assert!((modulo_fraction_moved(4) - 0.8).abs() < 1e-12);
        assert!((modulo_fraction_moved(1) - 0.5).abs() < 1e-12);
        // Sampled check of the formula.
        let n = 4u64;
        let moved = (0..100_000u64)
            .map(|i| i.wrapping_mul(0x9E3779B97F4A7C15))
            .filter(|h| h % n != h % (n + 1))
            .count();
        assert!((moved as f64 / 100_000.0 - 0.8).abs() < 0.01);
    }
}
