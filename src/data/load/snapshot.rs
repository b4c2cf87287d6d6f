//! The measured load over the window, as plain data: what `SHOW HOT` prints,
//! what the advice ([`crate::control::advice`]) is computed from, and what
//! its tests build by hand.

use super::key::HitKey;
use super::window::SUB;
use crate::data::router::HashInterval;

/// One shard's load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardLoad {
    pub name: String,
    /// Statements relayed to the shard (fan-out parts included).
    pub statements: u64,
    /// Rows returned or changed (CommandComplete counts of single-shard statements).
    pub rows: u64,
    /// Time from sending a statement to its ReadyForQuery, summed.
    pub busy_us: u64,
}

/// Statements that routed by one key hashing into one interval (pinned keys excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalLoad {
    pub group: usize,
    /// `(lo, hi]` on the hash circle, as the router's intervals.
    pub lo: u64,
    pub hi: u64,
    /// The interval's owner in the current map.
    pub shard: usize,
    pub hits: u64,
    /// Hits per sixteenth of the interval, in hash order.
    pub sub: [u64; SUB],
}

impl IntervalLoad {
    pub fn interval(&self) -> HashInterval {
        HashInterval {
            lo: self.lo,
            hi: self.hi,
            shard: self.shard,
        }
    }
}

/// One of the heaviest shard-key values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLoad {
    pub group: usize,
    pub hash: u64,
    pub key: HitKey,
    /// Where it routes in the current map.
    pub shard: usize,
    /// Pinned by a lookup entry.
    pub pinned: bool,
    /// Statements counted for it (Space-Saving: at most `error` too many).
    pub count: u64,
    pub error: u64,
}

/// The window's load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadSnapshot {
    /// The map epoch it was measured under (older slots are left out).
    pub epoch: u64,
    /// Seconds of load it covers.
    pub secs: u64,
    /// One per shard of the map, in map order.
    pub shards: Vec<ShardLoad>,
    /// Heaviest first.
    pub intervals: Vec<IntervalLoad>,
    /// Heaviest first.
    pub keys: Vec<KeyLoad>,
    /// Statements that routed by a single key.
    pub keyed: u64,
}

impl LoadSnapshot {
    /// Statements on all shards.
    pub fn statements(&self) -> u64 {
        self.shards.iter().map(|s| s.statements).sum()
    }

    /// `part` as a fraction of all statements (0 when there are none).
    pub fn share(&self, part: u64) -> f64 {
        match self.statements() {
            0 => 0.0,
            total => part as f64 / total as f64,
        }
    }

    /// Statements per shard as fractions of all statements.
    pub fn shard_shares(&self) -> Vec<f64> {
        self.shards
            .iter()
            .map(|s| self.share(s.statements))
            .collect()
    }

    /// The busiest shard's statements over the mean (1.0 when even or empty).
    pub fn imbalance(&self) -> f64 {
        let total = self.statements();
        let max = self.shards.iter().map(|s| s.statements).max().unwrap_or(0);
        if total == 0 {
            return 1.0;
        }
        max as f64 * self.shards.len() as f64 / total as f64
    }
}
