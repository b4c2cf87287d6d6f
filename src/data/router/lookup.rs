//! Lookup entries: single keys (hot tenants) pinned to a shard, winning over
//! the hash intervals.
//!
//! Stored sorted by key hash so a lookup reuses the hash the router computes
//! anyway and finds the entry by binary search without allocating; an empty
//! table (the common case) costs one length check.

use super::key::{KeyValue, OwnedKey};
use super::shardmap::ShardId;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupTable {
    /// `(hash_key(key), key, shard)`, sorted by hash then key.
    entries: Vec<(u64, OwnedKey, ShardId)>,
}

impl LookupTable {
    /// Builds the table; a key pinned twice is an error naming it.
    pub fn new(entries: Vec<(OwnedKey, ShardId)>) -> Result<LookupTable, String> {
        let mut e: Vec<(u64, OwnedKey, ShardId)> = entries
            .into_iter()
            .map(|(k, s)| (super::hash::hash_key(&k.as_value()).unwrap_or(0), k, s))
            .collect();
        e.sort();
        if let Some(w) = e.windows(2).find(|w| w[0].1 == w[1].1) {
            return Err(format!("key '{}' is pinned more than once", w[0].1));
        }
        Ok(LookupTable { entries: e })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The pinned shard of `key`, whose shard hash is `hash`.
    #[inline]
    pub fn get(&self, hash: u64, key: &KeyValue) -> Option<ShardId> {
        if self.entries.is_empty() {
            return None;
        }
        let start = self.entries.partition_point(|e| e.0 < hash);
        self.entries[start..]
            .iter()
            .take_while(|e| e.0 == hash)
            .find(|e| key.matches(&e.1))
            .map(|e| e.2)
    }

    /// `(key, shard)` in hash order.
    pub fn entries(&self) -> impl Iterator<Item = (&OwnedKey, ShardId)> {
        self.entries.iter().map(|e| (&e.1, e.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::router::hash::hash_key;

    #[test]
    fn get_finds_pins_only() {
        let t = LookupTable::new(vec![(OwnedKey::Int(42), 3), (OwnedKey::Int(7), 1)]).unwrap();
        let h = |k: &KeyValue| hash_key(k).unwrap();
        assert_eq!(t.get(h(&KeyValue::Int(42)), &KeyValue::Int(42)), Some(3));
        assert_eq!(t.get(h(&KeyValue::Int(7)), &KeyValue::Int(7)), Some(1));
        assert_eq!(t.get(h(&KeyValue::Int(8)), &KeyValue::Int(8)), None);
        // Same hash, different key (forced): no match.
        assert_eq!(t.get(h(&KeyValue::Int(42)), &KeyValue::Int(43)), None);
        assert!(
            LookupTable::new(vec![(OwnedKey::Int(1), 0), (OwnedKey::Int(1), 1)])
                .unwrap_err()
                .contains("'1'")
        );
    }
}
