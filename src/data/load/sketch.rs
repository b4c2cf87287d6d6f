//! A Space-Saving sketch (Metwally, Agrawal and El Abbadi, 2005): the
//! heaviest keys of a stream in bounded memory.
//!
//! It tracks at most `capacity` keys with a count each. A tracked key's
//! count grows by its weight; an untracked key replaces the key with the
//! smallest count and inherits that count (kept as its `error`, the most
//! it can be over-counted by). Every key whose true count exceeds
//! `total / capacity` is tracked, and `count - error <= true <= count`.
//! Two sketches merge by adding one into the other, which keeps the same
//! guarantee for the union of their streams (errors add up): that is how the
//! sliding window sums its slots.
//!
//! Hand-written: the crates that implement it are parts of larger, unrelated
//! projects, and this needs weighted updates, a payload per key (the key's
//! printable value, kept out of the identity) and merging; it is ~100 lines.

use hashbrown::HashMap;

/// One tracked key.
#[derive(Debug, Clone, PartialEq)]
pub struct Counted<K, V> {
    pub key: K,
    /// What the key stands for (the last value seen under it).
    pub value: V,
    pub count: u64,
    /// How much of `count` may belong to keys it replaced.
    pub error: u64,
}

/// The sketch. `K` is the identity (small, hashed), `V` a payload.
#[derive(Debug, Clone)]
pub struct SpaceSaving<K, V> {
    capacity: usize,
    entries: Vec<Counted<K, V>>,
    /// Key → index into `entries`.
    index: HashMap<K, usize, foldhash::fast::RandomState>,
    total: u64,
}

impl<K: std::hash::Hash + Eq + Copy, V> SpaceSaving<K, V> {
    pub fn new(capacity: usize) -> SpaceSaving<K, V> {
        let capacity = capacity.max(1);
        SpaceSaving {
            capacity,
            entries: Vec::new(),
            index: HashMap::with_hasher(Default::default()),
            total: 0,
        }
    }

    /// Everything observed, tracked or not.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counts `weight` more for `key`; `value` is called only when the key
    /// is not tracked yet (it takes a slot).
    pub fn observe(&mut self, key: K, weight: u64, value: impl FnOnce() -> V) {
        self.observe_with_error(key, weight, 0, value)
    }

    fn observe_with_error(&mut self, key: K, weight: u64, error: u64, value: impl FnOnce() -> V) {
        self.total += weight;
        if let Some(&i) = self.index.get(&key) {
            let e = &mut self.entries[i];
            e.count += weight;
            e.error += error;
            return;
        }
        if self.entries.len() < self.capacity {
            self.index.insert(key, self.entries.len());
            self.entries.push(Counted {
                key,
                value: value(),
                count: weight,
                error,
            });
            return;
        }
        // Replace the smallest: a linear scan over `capacity` entries, which
        // is small (tens), and runs where hits are merged, not per statement.
        let (i, min) = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.count)
            .map(|(i, e)| (i, e.count))
            .expect("capacity is at least 1");
        self.index.remove(&self.entries[i].key);
        self.index.insert(key, i);
        self.entries[i] = Counted {
            key,
            value: value(),
            count: min + weight,
            error: min + error,
        };
    }

    /// Adds `other`'s stream to this one.
    pub fn merge(&mut self, other: &SpaceSaving<K, V>)
    where
        V: Clone,
    {
        let total = self.total + other.total;
        for e in &other.entries {
            self.observe_with_error(e.key, e.count, e.error, || e.value.clone());
        }
        // The streams' sizes add up; the entries' counts (errors included)
        // are not a stream size.
        self.total = total;
    }

    /// The tracked keys, heaviest first.
    pub fn top(&self) -> Vec<&Counted<K, V>> {
        let mut v: Vec<&Counted<K, V>> = self.entries.iter().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.count));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_keys_are_found_with_bounded_error() {
        let mut s: SpaceSaving<u64, ()> = SpaceSaving::new(16);
        // Key 7 takes 30% of 10,000; keys 1000.. are each seen a few times.
        let mut x: u64 = 1;
        for i in 0..10_000u64 {
            let k = if i % 10 < 3 {
                7
            } else {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                1000 + (x >> 33) % 2000
            };
            s.observe(k, 1, || ());
        }
        assert_eq!(s.total(), 10_000);
        let top = s.top();
        assert_eq!(top[0].key, 7);
        assert!(top[0].count - top[0].error <= 3000 && 3000 <= top[0].count);
        assert!(top[0].count <= 3000 + 10_000 / 16, "{}", top[0].count);
    }

    #[test]
    fn merging_adds_streams() {
        let mut a: SpaceSaving<u32, &str> = SpaceSaving::new(4);
        let mut b: SpaceSaving<u32, &str> = SpaceSaving::new(4);
        for _ in 0..50 {
            a.observe(1, 1, || "one");
            b.observe(1, 2, || "one");
            b.observe(2, 1, || "two");
        }
        for k in 10..30 {
            a.observe(k, 1, || "noise");
        }
        a.merge(&b);
        assert_eq!(a.total(), 50 + 20 + 150);
        let top = a.top();
        assert_eq!((top[0].key, top[0].value), (1, "one"));
        assert!(top[0].count >= 150, "{}", top[0].count);
        assert!(top[0].count - top[0].error <= 150);
        assert!(a.len() <= 4);
    }

    #[test]
    fn weights_and_replacement_keep_the_bounds() {
        let mut s: SpaceSaving<u8, ()> = SpaceSaving::new(2);
        s.observe(1, 5, || ());
        s.observe(2, 3, || ());
        s.observe(3, 1, || ());
        // 3 replaced 2 (count 3): counted 4 with error 3.
        let top = s.top();
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].key, top[0].count, top[0].error), (1, 5, 0));
        assert_eq!((top[1].key, top[1].count, top[1].error), (3, 4, 3));
        assert_eq!(s.total(), 9);
    }
}
