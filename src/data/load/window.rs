//! The sliding window of measured load: a ring of time slots, each holding
//! per-shard statements, rows and busy time, per-interval hits (with a
//! histogram of where in the interval they fell, for choosing split
//! points), and a Space-Saving sketch of the heaviest shard-key values.
//!
//! Plain data with no locking: [`super::LoadBoard`] owns one behind a mutex.
//! Time is the board's tick (whole seconds since the proxy started), so the
//! window is tested without a clock.

use super::key::HitKey;
use super::sketch::SpaceSaving;
use super::snapshot::{IntervalLoad, KeyLoad, LoadSnapshot, ShardLoad};
use super::tally::Hit;
use crate::data::router::{HashInterval, ShardMap};
use std::collections::VecDeque;

type HashMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;

/// Sub-intervals per interval in the split histogram.
pub const SUB: usize = 16;

/// Hash-circle buckets the keyed-statement metric is split into (the top
/// four bits of the hash): a bounded label set, whatever the map.
pub const METRIC_BUCKETS: usize = 16;

/// An interval as recorded: group and bounds (the owner can change later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct IntervalId {
    group: u32,
    lo: u64,
    hi: u64,
}

#[derive(Debug, Clone, Default)]
struct IntervalCounts {
    hits: u64,
    sub: [u64; SUB],
}

/// What the sketch keeps beside a key's identity `(group, hash)`.
#[derive(Debug, Clone)]
struct KeyInfo {
    key: HitKey,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ShardCounts {
    statements: u64,
    rows: u64,
    busy_us: u64,
}

/// One slot of the window.
#[derive(Debug, Clone)]
struct Slot {
    /// The tick it started at.
    start: u64,
    /// The shard map epoch its hits were measured under.
    epoch: u64,
    shards: HashMap<String, ShardCounts>,
    intervals: HashMap<IntervalId, IntervalCounts>,
    keys: SpaceSaving<(u32, u64), KeyInfo>,
    keyed: u64,
}

impl Slot {
    fn new(start: u64, epoch: u64, top_keys: usize) -> Slot {
        Slot {
            start,
            epoch,
            shards: HashMap::default(),
            intervals: HashMap::default(),
            keys: SpaceSaving::new(top_keys),
            keyed: 0,
        }
    }
}

/// Where in `iv` hash `h` (inside it) falls, as a sub-interval index.
pub fn sub_index(iv: &HashInterval, h: u64) -> usize {
    let d = h.wrapping_sub(iv.lo).wrapping_sub(1) as u128;
    ((d * SUB as u128) / iv.width()).min(SUB as u128 - 1) as usize
}

/// The hash where sub-interval `j` of `iv` starts (exclusive lower bound
/// of its hashes): `lo + width * j / SUB`, on the circle.
pub fn sub_bound(iv: &HashInterval, j: usize) -> u64 {
    iv.lo
        .wrapping_add(((iv.width() * j as u128) / SUB as u128) as u64)
}

/// The window's settings (from `[hot]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowShape {
    pub slot_secs: u64,
    pub slots: usize,
    pub top_keys: usize,
}

impl WindowShape {
    pub fn from_config(h: &crate::config::HotConfig) -> WindowShape {
        WindowShape {
            slot_secs: (h.window_secs / h.slots.max(1) as u64).max(1),
            slots: h.slots.max(1),
            top_keys: h.top_keys.max(1),
        }
    }
}

/// The ring of slots, newest last.
#[derive(Debug)]
pub struct Window {
    shape: WindowShape,
    slots: VecDeque<Slot>,
    /// Keyed statements per group and hash bucket since start (for metrics).
    pub bucket_hits: Vec<[u64; METRIC_BUCKETS]>,
    /// Rows per shard name since start (for metrics).
    pub rows_total: HashMap<String, u64>,
}

impl Window {
    pub fn new(shape: WindowShape) -> Window {
        Window {
            shape,
            slots: VecDeque::new(),
            bucket_hits: Vec::new(),
            rows_total: HashMap::default(),
        }
    }

    pub fn shape(&self) -> WindowShape {
        self.shape
    }

    /// The slot that `tick` and `epoch` belong to, started if needed: a new
    /// slot every `slot_secs`, and at once when the map epoch changes (so
    /// a snapshot can leave out load measured on another map).
    fn current(&mut self, tick: u64, epoch: u64) -> &mut Slot {
        let fresh = match self.slots.back() {
            None => true,
            Some(s) => tick >= s.start + self.shape.slot_secs || epoch > s.epoch,
        };
        if fresh {
            // Aligned to slot boundaries, except a slot opened by an epoch change.
            let start = match self.slots.back() {
                Some(s) if epoch == s.epoch => {
                    s.start + (tick - s.start) / self.shape.slot_secs * self.shape.slot_secs
                }
                _ => tick,
            };
            self.slots
                .push_back(Slot::new(start, epoch, self.shape.top_keys));
            while self.slots.len() > self.shape.slots {
                self.slots.pop_front();
            }
        }
        self.slots.back_mut().expect("a slot was just ensured")
    }

    /// Drops slots wholly older than the window ending at `tick`.
    pub fn expire(&mut self, tick: u64) {
        let span = self.shape.slot_secs * self.shape.slots as u64;
        while self
            .slots
            .front()
            .is_some_and(|s| s.start + self.shape.slot_secs + span <= tick + 1)
        {
            self.slots.pop_front();
        }
    }

    /// Adds per-shard statements and busy time (deltas of the pools' counters).
    pub fn add_shard_work(
        &mut self,
        tick: u64,
        epoch: u64,
        shard: &str,
        statements: u64,
        busy_us: u64,
    ) {
        if statements == 0 && busy_us == 0 {
            return;
        }
        let c = self
            .current(tick, epoch)
            .shards
            .entry_ref(shard)
            .or_default();
        c.statements += statements;
        c.busy_us += busy_us;
    }

    /// Adds rows a session counted for a shard.
    pub fn add_rows(&mut self, tick: u64, epoch: u64, shard: &str, rows: u64) {
        if rows == 0 {
            return;
        }
        self.current(tick, epoch)
            .shards
            .entry_ref(shard)
            .or_default()
            .rows += rows;
        *self.rows_total.entry_ref(shard).or_default() += rows;
    }

    /// Adds a session's keyed statements, placed with `map`.
    pub fn add_hits(&mut self, tick: u64, map: &ShardMap, hits: &[Hit]) {
        if hits.is_empty() {
            return;
        }
        let groups = map.groups().len();
        if self.bucket_hits.len() < groups {
            self.bucket_hits.resize(groups, [0; METRIC_BUCKETS]);
        }
        for h in hits {
            let g = h.group as usize;
            if g >= groups {
                continue; // planned under a map with more groups (RELOAD)
            }
            self.bucket_hits[g][(h.hash >> 60) as usize] += 1;
        }
        let slot = self.current(tick, map.epoch());
        for h in hits {
            let g = h.group as usize;
            if g >= groups {
                continue;
            }
            slot.keyed += 1;
            slot.keys
                .observe((h.group, h.hash), 1, || KeyInfo { key: h.key.clone() });
            // A pinned key's load moves with the pin, not with its interval.
            if map.pinned_shard(g, h.hash, &h.key.as_value()).is_some() {
                continue;
            }
            let iv = map.interval_of(g, h.hash);
            let c = slot
                .intervals
                .entry(IntervalId {
                    group: h.group,
                    lo: iv.lo,
                    hi: iv.hi,
                })
                .or_default();
            c.hits += 1;
            c.sub[sub_index(&iv, h.hash)] += 1;
        }
    }

    /// The load over the window, as measured under `map`'s epoch (slots of
    /// older epochs are left out), placed with `map`.
    pub fn snapshot(&self, tick: u64, map: &ShardMap) -> LoadSnapshot {
        let epoch = map.epoch();
        let slots: Vec<&Slot> = self.slots.iter().filter(|s| s.epoch == epoch).collect();
        let secs = slots
            .first()
            .map(|s| (tick + 1).saturating_sub(s.start))
            .unwrap_or(0)
            .min(self.shape.slot_secs * self.shape.slots as u64);
        let mut shards: Vec<ShardLoad> = map
            .shard_names()
            .iter()
            .map(|n| ShardLoad {
                name: n.clone(),
                ..Default::default()
            })
            .collect();
        let mut intervals: HashMap<IntervalId, IntervalCounts> = HashMap::default();
        let mut keys: SpaceSaving<(u32, u64), KeyInfo> = SpaceSaving::new(self.shape.top_keys);
        let mut keyed = 0;
        for s in &slots {
            for (name, c) in &s.shards {
                if let Some(l) = shards.iter_mut().find(|l| &l.name == name) {
                    l.statements += c.statements;
                    l.rows += c.rows;
                    l.busy_us += c.busy_us;
                }
            }
            for (id, c) in &s.intervals {
                let t = intervals.entry(*id).or_default();
                t.hits += c.hits;
                for (a, b) in t.sub.iter_mut().zip(c.sub) {
                    *a += b;
                }
            }
            keys.merge(&s.keys);
            keyed += s.keyed;
        }
        let groups = map.groups().len();
        let mut intervals: Vec<IntervalLoad> = intervals
            .into_iter()
            .filter(|(id, _)| (id.group as usize) < groups)
            .map(|(id, c)| IntervalLoad {
                group: id.group as usize,
                lo: id.lo,
                hi: id.hi,
                shard: map.interval_of(id.group as usize, id.hi).shard,
                hits: c.hits,
                sub: c.sub,
            })
            .collect();
        intervals.sort_by(|a, b| b.hits.cmp(&a.hits).then(a.lo.cmp(&b.lo)));
        let keys = keys
            .top()
            .into_iter()
            .filter(|c| (c.key.0 as usize) < groups)
            .map(|c| {
                let group = c.key.0 as usize;
                let v = c.value.key.as_value();
                KeyLoad {
                    group,
                    hash: c.key.1,
                    shard: map.route_key(group, &v).0,
                    pinned: map.pinned_shard(group, c.key.1, &v).is_some(),
                    key: c.value.key.clone(),
                    count: c.count,
                    error: c.error,
                }
            })
            .collect();
        LoadSnapshot {
            epoch,
            secs,
            shards,
            intervals,
            keys,
            keyed,
        }
    }
}
