//! A bounded plan cache keyed by SQL text, shared by every session.
//!
//! Hand-written CLOCK (second-chance) cache, split into independently locked
//! shards so sessions on different cores rarely meet on a lock: a hit takes a
//! read lock and sets a reference bit; a miss inserts under a write lock and,
//! when full, evicts the first entry whose bit is clear. Small enough that a
//! crate (with its own eviction policy and dependencies) would not pay off.
//!
//! Every statement looks up its text here, so the text is hashed once (with
//! foldhash, seeded per process) and that hash both picks the shard and
//! probes the shard's `hashbrown::HashTable` of slot indices.

use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use super::plan::Plan;

const SHARDS: usize = 16;

struct Slot {
    key: Arc<str>,
    plan: Arc<Plan>,
    referenced: AtomicBool,
}

#[derive(Default)]
struct Shard {
    /// Slot indices, by the hash of their key.
    index: HashTable<usize>,
    slots: Vec<Slot>,
    /// The key hashes of `slots`, to rehash and remove without rehashing text.
    hashes: Vec<u64>,
    hand: usize,
}

impl Shard {
    fn find(&self, hash: u64, sql: &str) -> Option<usize> {
        let slots = &self.slots;
        self.index.find(hash, |&i| &*slots[i].key == sql).copied()
    }
}

pub(crate) struct PlanCache {
    shards: Box<[RwLock<Shard>]>,
    per_shard: usize,
    hasher: foldhash::fast::RandomState,
}

impl PlanCache {
    /// A cache holding about `capacity` plans (at least one per shard).
    pub fn new(capacity: usize) -> PlanCache {
        PlanCache {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: Default::default(),
        }
    }

    /// The text's hash and its shard. Middle bits pick the shard: hashbrown
    /// takes the bucket from the low bits and the tag from the top seven.
    fn shard(&self, sql: &str) -> (u64, &RwLock<Shard>) {
        let h = self.hasher.hash_one(sql);
        (h, &self.shards[(h >> 32) as usize % SHARDS])
    }

    pub fn get(&self, sql: &str) -> Option<Arc<Plan>> {
        let (hash, shard) = self.shard(sql);
        // A poisoned lock only means another thread panicked mid-update of a
        // plain map; the data is still consistent enough to read.
        let shard = shard.read().unwrap_or_else(|e| e.into_inner());
        let slot = &shard.slots[shard.find(hash, sql)?];
        slot.referenced.store(true, Ordering::Relaxed);
        Some(slot.plan.clone())
    }

    pub fn insert(&self, sql: &str, plan: Arc<Plan>) {
        self.put(sql, plan, false);
    }

    /// Like [`PlanCache::insert`], but a plan already cached for `sql` is
    /// replaced (it was made from column orders that changed since).
    pub fn replace(&self, sql: &str, plan: Arc<Plan>) {
        self.put(sql, plan, true);
    }

    fn put(&self, sql: &str, plan: Arc<Plan>, replace: bool) {
        let (hash, shard) = self.shard(sql);
        let mut guard = shard.write().unwrap_or_else(|e| e.into_inner());
        let shard = &mut *guard;
        if let Some(i) = shard.find(hash, sql) {
            if replace {
                shard.slots[i].plan = plan;
            }
            return;
        }
        let slot = Slot {
            key: Arc::from(sql),
            plan,
            referenced: AtomicBool::new(false),
        };
        if shard.slots.len() < self.per_shard {
            let i = shard.slots.len();
            shard.slots.push(slot);
            shard.hashes.push(hash);
            let hashes = &shard.hashes;
            shard.index.insert_unique(hash, i, |&j| hashes[j]);
            return;
        }
        // Second chance: clear set bits until an unreferenced slot comes up
        // (at most one full turn, then the hand's slot is clear).
        let n = shard.slots.len();
        let victim = loop {
            let h = shard.hand;
            shard.hand = (h + 1) % n;
            if !shard.slots[h].referenced.swap(false, Ordering::Relaxed) {
                break h;
            }
        };
        let old_hash = shard.hashes[victim];
        if let Ok(entry) = shard.index.find_entry(old_hash, |&j| j == victim) {
            entry.remove();
        }
        shard.slots[victim] = slot;
        shard.hashes[victim] = hash;
        let hashes = &shard.hashes;
        shard.index.insert_unique(hash, victim, |&j| hashes[j]);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).slots.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(n: usize) -> Arc<Plan> {
        Arc::new(Plan {
            stmts: Vec::new(),
            hint: Some(super::super::plan::Hint::Shard(n.to_string())),
            ..Plan::default()
        })
    }

    #[test]
    fn bounded_and_keeps_hot_entries() {
        let c = PlanCache::new(64);
        c.insert("hot", plan(0));
        for i in 0..10_000 {
            assert!(c.get("hot").is_some(), "hot entry evicted at {i}");
            c.insert(&format!("cold {i}"), plan(i));
        }
        assert!(c.len() <= 64 + SHARDS);
        assert_eq!(c.get("hot").unwrap().hint, plan(0).hint);
        assert!(c.get("cold 9999").is_some());
        assert!(c.get("cold 0").is_none());
    }

    #[test]
    fn first_insert_wins() {
        let c = PlanCache::new(10);
        c.insert("a", plan(1));
        c.insert("a", plan(2));
        assert_eq!(c.get("a").unwrap().hint, plan(1).hint);
    }
}
