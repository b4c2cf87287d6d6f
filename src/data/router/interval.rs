//! Explicit ownership of the 64-bit hash circle: a sorted table of interval
//! upper bounds, each with the shard that owns the interval ending there.
//!
//! Convention: interval `i` is `(his[i-1], his[i]]` (lower bound exclusive,
//! upper bound inclusive), and interval 0 is `(his[last], his[0]]`, which
//! wraps through `u64::MAX` to 0. With a single bound `p` the one interval is
//! `(p, p]`, the whole circle. A hash is owned by the first bound at or after
//! it, wrapping to bound 0 — exactly consistent hashing when the bounds are
//! virtual-node points, and any reassignment of an interval (a move) is just
//! an edit of this table.
//!
//! Lookup goes through a bucket index on the hash's top bits (about two
//! buckets per bound), so it reads one bucket and the one or two bounds in
//! it rather than binary-searching the whole table: a search over a few
//! hundred vnode bounds touches eight cache lines, which on a busy proxy are
//! mostly cold.

use super::shardmap::ShardId;

/// The hashes `h` with `lo < h <= hi` on the circle. When `lo >= hi` the
/// interval wraps: `h > lo || h <= hi`; `lo == hi` is the whole circle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashInterval {
    /// Exclusive lower bound.
    pub lo: u64,
    /// Inclusive upper bound.
    pub hi: u64,
    pub shard: ShardId,
}

impl HashInterval {
    #[inline]
    pub fn contains(&self, h: u64) -> bool {
        if self.lo < self.hi {
            self.lo < h && h <= self.hi
        } else {
            h > self.lo || h <= self.hi
        }
    }

    /// Number of hash values in the interval (2^64 for the whole circle).
    pub fn width(&self) -> u128 {
        if self.lo < self.hi {
            (self.hi - self.lo) as u128
        } else {
            (1u128 << 64) - (self.lo - self.hi) as u128
        }
    }

    /// Fraction of the circle.
    pub fn fraction(&self) -> f64 {
        self.width() as f64 / 2f64.powi(64)
    }

    /// `(0x…, 0x…]`, the form used in plans and `SHOW SHARDMAP`.
    pub fn range_text(&self) -> String {
        format!("({:#018x}, {:#018x}]", self.lo, self.hi)
    }
}

/// The ownership table; never empty.
#[derive(Clone, PartialEq, Eq)]
pub struct IntervalTable {
    his: Vec<u64>,
    owners: Vec<ShardId>,
    /// Derived from `his`; rebuilt by [`IntervalTable::new`] on every change.
    buckets: Buckets,
}

/// Bucket `b` holds the hashes whose top bits are `b`; `first[b]` is the
/// index of the first bound at or above the bucket's lowest hash, and
/// `first[last + 1]` is the number of bounds. The bounds inside bucket `b`
/// are then `his[first[b]..first[b + 1]]`.
#[derive(Clone, PartialEq, Eq)]
struct Buckets {
    shift: u32,
    first: Box<[u32]>,
}

/// At most 2^16 buckets (256 KiB), reached from 32,768 bounds.
const MAX_BUCKET_BITS: u32 = 16;

impl Buckets {
    fn over(his: &[u64]) -> Buckets {
        // About two buckets per bound, at least two buckets.
        let bits = (his.len().next_power_of_two().trailing_zeros() + 1).clamp(1, MAX_BUCKET_BITS);
        let shift = 64 - bits;
        let n = 1usize << bits;
        let mut first = Vec::with_capacity(n + 1);
        let mut i = 0;
        for b in 0..n {
            let start = (b as u64) << shift;
            while i < his.len() && his[i] < start {
                i += 1;
            }
            first.push(i as u32);
        }
        first.push(his.len() as u32);
        Buckets {
            shift,
            first: first.into(),
        }
    }
}

impl std::fmt::Debug for IntervalTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntervalTable")
            .field("his", &self.his)
            .field("owners", &self.owners)
            .finish_non_exhaustive()
    }
}

impl IntervalTable {
    /// The one constructor: bounds strictly ascending, one owner each.
    fn new(his: Vec<u64>, owners: Vec<ShardId>) -> IntervalTable {
        debug_assert!(!his.is_empty() && his.len() == owners.len());
        debug_assert!(his.len() <= u32::MAX as usize);
        let buckets = Buckets::over(&his);
        IntervalTable {
            his,
            owners,
            buckets,
        }
    }

    /// One shard owns the whole circle.
    pub fn single(shard: ShardId) -> IntervalTable {
        IntervalTable::new(vec![u64::MAX], vec![shard])
    }

    /// From `(upper bound, owner)` points in any order. On a duplicate bound
    /// the first point wins (callers sort so that this is deterministic).
    pub fn from_points(mut points: Vec<(u64, ShardId)>) -> Result<IntervalTable, String> {
        if points.is_empty() {
            return Err("a hash interval table needs at least one interval".into());
        }
        points.sort_by_key(|p| p.0);
        points.dedup_by_key(|p| p.0);
        Ok(IntervalTable::new(
            points.iter().map(|p| p.0).collect(),
            points.iter().map(|p| p.1).collect(),
        ))
    }

    /// From bounds that must already be strictly ascending (persisted maps).
    pub fn from_sorted(points: Vec<(u64, ShardId)>) -> Result<IntervalTable, String> {
        if points.is_empty() {
            return Err("a hash interval table needs at least one interval".into());
        }
        if let Some(w) = points.windows(2).find(|w| w[0].0 >= w[1].0) {
            return Err(format!(
                "interval bounds must be strictly ascending: {:#018x} is followed by {:#018x}",
                w[0].0, w[1].0
            ));
        }
        Ok(IntervalTable::new(
            points.iter().map(|p| p.0).collect(),
            points.iter().map(|p| p.1).collect(),
        ))
    }

    /// The shard owning hash `h`.
    #[inline]
    pub fn owner(&self, h: u64) -> ShardId {
        let b = (h >> self.buckets.shift) as usize;
        let (lo, hi) = (
            self.buckets.first[b] as usize,
            self.buckets.first[b + 1] as usize,
        );
        // Bounds before `lo` are below the bucket, so below `h`; bounds from
        // `hi` on are above it.
        let i = lo + self.his[lo..hi].partition_point(|&p| p < h);
        // i == len: past the last bound, wraps to interval 0.
        match self.owners.get(i) {
            Some(&s) => s,
            None => self.owners[0],
        }
    }

    /// The interval holding hash `h`, with its owner (what [`owner`] finds,
    /// with the bounds: load accounting counts per interval).
    ///
    /// [`owner`]: IntervalTable::owner
    pub fn interval_at(&self, h: u64) -> HashInterval {
        let b = (h >> self.buckets.shift) as usize;
        let (lo, hi) = (
            self.buckets.first[b] as usize,
            self.buckets.first[b + 1] as usize,
        );
        let n = self.his.len();
        let i = (lo + self.his[lo..hi].partition_point(|&p| p < h)) % n;
        HashInterval {
            lo: self.his[(i + n - 1) % n],
            hi: self.his[i],
            shard: self.owners[i],
        }
    }

    pub fn len(&self) -> usize {
        self.his.len()
    }

    pub fn is_empty(&self) -> bool {
        self.his.is_empty()
    }

    /// `(upper bound, owner)` pairs in ascending order.
    pub fn points(&self) -> impl Iterator<Item = (u64, ShardId)> + '_ {
        self.his.iter().copied().zip(self.owners.iter().copied())
    }

    /// Every interval, in bound order; the first one wraps (see module doc).
    pub fn intervals(&self) -> Vec<HashInterval> {
        let n = self.his.len();
        (0..n)
            .map(|i| HashInterval {
                lo: self.his[(i + n - 1) % n],
                hi: self.his[i],
                shard: self.owners[i],
            })
            .collect()
    }

    /// Intervals with adjacent same-owner neighbours joined (for display and
    /// plans; the table itself keeps every bound so that later vnode
    /// insertions stay exact consistent hashing).
    pub fn merged_intervals(&self) -> Vec<HashInterval> {
        coalesce(self.intervals(), |a, b| a.shard == b.shard)
    }

    /// Fraction of the circle per shard, `nshards` long.
    pub fn shares(&self, nshards: usize) -> Vec<f64> {
        let mut w = vec![0u128; nshards.max(self.owners.iter().max().map_or(0, |m| m + 1))];
        for iv in self.intervals() {
            w[iv.shard] += iv.width();
        }
        w.truncate(nshards);
        w.into_iter().map(|x| x as f64 / 2f64.powi(64)).collect()
    }

    /// A copy where the interval ending at `p` (splitting at `p` if needed)
    /// belongs to `shard`: a consistent-hash vnode point being added.
    pub fn with_point(&self, p: u64, shard: ShardId) -> IntervalTable {
        let (mut his, mut owners) = (self.his.clone(), self.owners.clone());
        set_point(&mut his, &mut owners, p, shard);
        IntervalTable::new(his, owners)
    }

    /// A copy where every hash of `range` (`(lo, hi]`, wrap convention of
    /// [`HashInterval`]) belongs to `shard`: how a move reassigns an interval.
    pub fn with_assigned(&self, lo: u64, hi: u64, shard: ShardId) -> IntervalTable {
        if lo == hi {
            return IntervalTable::single(shard);
        }
        let (mut his, mut owners) = (self.his.clone(), self.owners.clone());
        // Bounds at `lo` and `hi` without changing any ownership.
        set_point(&mut his, &mut owners, lo, self.owner(lo));
        set_point(&mut his, &mut owners, hi, self.owner(hi));
        let range = HashInterval { lo, hi, shard };
        for (p, o) in his.iter().zip(owners.iter_mut()) {
            if range.contains(*p) {
                *o = shard;
            }
        }
        IntervalTable::new(his, owners)
    }

    /// Where ownership differs between `self` and `other`: the intervals
    /// whose owner changes, as `(interval with the new owner, old owner)`,
    /// adjacent pieces with the same (old, new) pair joined.
    pub fn diff(&self, other: &IntervalTable) -> Vec<(HashInterval, ShardId)> {
        let mut bounds: Vec<u64> = self.his.iter().chain(other.his.iter()).copied().collect();
        bounds.sort_unstable();
        bounds.dedup();
        let n = bounds.len();
        let pieces: Vec<(HashInterval, ShardId)> = (0..n)
            .map(|i| {
                let hi = bounds[i];
                let iv = HashInterval {
                    lo: bounds[(i + n - 1) % n],
                    hi,
                    shard: other.owner(hi),
                };
                (iv, self.owner(hi))
            })
            .collect();
        let mut out: Vec<(HashInterval, ShardId)> = Vec::new();
        for (iv, from) in pieces {
            if iv.shard == from {
                continue;
            }
            match out.last_mut() {
                Some((last, lf)) if *lf == from && last.shard == iv.shard && last.hi == iv.lo => {
                    last.hi = iv.hi
                }
                _ => out.push((iv, from)),
            }
        }
        out
    }
}

/// Makes `p` a bound owned by `shard` (inserted in order if new).
fn set_point(his: &mut Vec<u64>, owners: &mut Vec<ShardId>, p: u64, shard: ShardId) {
    match his.binary_search(&p) {
        Ok(i) => owners[i] = shard,
        Err(i) => {
            his.insert(i, p);
            owners.insert(i, shard);
        }
    }
}

/// Joins neighbours (`a.hi == b.lo`) for which `same` holds.
fn coalesce(
    ivs: Vec<HashInterval>,
    same: impl Fn(&HashInterval, &HashInterval) -> bool,
) -> Vec<HashInterval> {
    let mut out: Vec<HashInterval> = Vec::with_capacity(ivs.len());
    for iv in ivs {
        match out.last_mut() {
            Some(last) if last.hi == iv.lo && same(last, &iv) => last.hi = iv.hi,
            _ => out.push(iv),
        }
    }
    // The wrapping first interval may continue the last one.
    if out.len() > 1 {
        let last = out[out.len() - 1];
        if last.hi == out[0].lo && same(&last, &out[0]) {
            out[0].lo = last.lo;
            out.pop();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(points: &[(u64, ShardId)]) -> IntervalTable {
        IntervalTable::from_points(points.to_vec()).unwrap()
    }

    proptest::proptest! {
        /// The bucket index finds the owner a search of the whole table
        /// finds, for any table size (bucket counts change with it) and at
        /// bounds, bucket edges and the ends of the circle.
        #[test]
        fn bucket_lookup_matches_a_full_search(
            raw in proptest::collection::vec((proptest::num::u64::ANY, 0usize..5), 1..600),
            probes in proptest::collection::vec(proptest::num::u64::ANY, 0..50),
        ) {
            let t = table(&raw);
            let full = |h: u64| {
                let i = t.his.partition_point(|&p| p < h);
                t.owners.get(i).copied().unwrap_or(t.owners[0])
            };
            let shift = t.buckets.shift;
            let edges = (0..(1u64 << (64 - shift))).map(|b| b << shift);
            let near_bounds = t.his.iter().flat_map(|&p| [p.wrapping_sub(1), p, p.wrapping_add(1)]);
            for h in probes.into_iter().chain([0, u64::MAX]).chain(edges).chain(near_bounds) {
                proptest::prop_assert_eq!(t.owner(h), full(h), "hash {:#x}", h);
            }
        }
    }

    #[test]
    fn owner_is_first_bound_at_or_after() {
        let t = table(&[(100, 0), (200, 1), (300, 2)]);
        assert_eq!(t.owner(0), 0);
        assert_eq!(t.owner(100), 0);
        assert_eq!(t.owner(101), 1);
        assert_eq!(t.owner(200), 1);
        assert_eq!(t.owner(300), 2);
        assert_eq!(t.owner(301), 0); // wraps
        assert_eq!(t.owner(u64::MAX), 0);
    }

    #[test]
    fn intervals_wrap_and_sum_to_circle() {
        let t = table(&[(100, 0), (200, 1)]);
        let ivs = t.intervals();
        assert_eq!(
            ivs[0],
            HashInterval {
                lo: 200,
                hi: 100,
                shard: 0
            }
        );
        assert_eq!(
            ivs[1],
            HashInterval {
                lo: 100,
                hi: 200,
                shard: 1
            }
        );
        assert_eq!(ivs.iter().map(|i| i.width()).sum::<u128>(), 1u128 << 64);
        let s = t.shares(3);
        assert!((s[1] - 100.0 / 2f64.powi(64)).abs() < 1e-30);
        assert_eq!(s[2], 0.0);
        assert_eq!(IntervalTable::single(2).intervals()[0].width(), 1u128 << 64);
    }

    #[test]
    fn assign_and_diff() {
        let t = table(&[(100, 0), (200, 1), (300, 0)]);
        let u = t.with_assigned(150, 250, 2);
        assert_eq!(u.owner(150), 1);
        assert_eq!(u.owner(151), 2);
        assert_eq!(u.owner(250), 2);
        assert_eq!(u.owner(251), 0);
        assert_eq!(u.owner(120), 1);
        let d = t.diff(&u);
        assert_eq!(
            d,
            vec![
                (
                    HashInterval {
                        lo: 150,
                        hi: 200,
                        shard: 2
                    },
                    1
                ),
                (
                    HashInterval {
                        lo: 200,
                        hi: 250,
                        shard: 2
                    },
                    0
                )
            ]
        );
        // A wrapping assignment.
        let w = t.with_assigned(290, 10, 1);
        assert_eq!(w.owner(295), 1);
        assert_eq!(w.owner(u64::MAX), 1);
        assert_eq!(w.owner(10), 1);
        assert_eq!(w.owner(11), 0);
        assert!(t.diff(&t).is_empty());
    }

    #[test]
    fn merged_intervals_join_wrap() {
        let t = table(&[(100, 0), (200, 1), (300, 0)]);
        let m = t.merged_intervals();
        assert_eq!(
            m,
            vec![
                HashInterval {
                    lo: 200,
                    hi: 100,
                    shard: 0
                },
                HashInterval {
                    lo: 100,
                    hi: 200,
                    shard: 1
                }
            ]
        );
        assert!(IntervalTable::from_sorted(vec![(2, 0), (1, 0)]).is_err());
    }
}
