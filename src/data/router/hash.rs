//! Postgres-compatible key hashing, bit-exact with Postgres 15.
//!
//! The rebalancer must select exactly the rows of a hash interval on a shard
//! with plain SQL, and operators must be able to ask Postgres where a key
//! lives. So the shard hash of a key is the value Postgres's own extended hash
//! functions return — the ones `PARTITION BY HASH` uses — with the partition
//! seed: `hashint8extended` for every integer width, `hashtextextended` for
//! text/varchar, `uuid_hash_extended` for uuid. The `bigint` result is
//! reinterpreted as `u64` (two's complement), which is where our hash circle
//! lives.
//!
//! `hash_bytes_extended` / `hash_bytes_uint32_extended` are ported by hand
//! from `src/common/hashfn.c` (Bob Jenkins' lookup3 with Postgres's 64-bit
//! seed variant): no crate reproduces Postgres's seeding and result packing
//! bit-exactly. Postgres reads the key as little-endian words on the
//! little-endian machines it runs on (x86-64, aarch64); a big-endian server
//! would hash differently, and `tests/hash_vs_postgres.rs` checks the port
//! against a live server.

use super::interval::HashInterval;
use super::key::{KeyType, KeyValue};

/// `HASH_PARTITION_SEED` from Postgres's `partbounds.h`.
pub const HASH_PARTITION_SEED: u64 = 0x7A5B22367996DCFD;

/// The seed as the signed literal Postgres functions take.
pub const HASH_PARTITION_SEED_SQL: i64 = HASH_PARTITION_SEED as i64;

#[inline(always)]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

#[inline(always)]
fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

/// Initial state plus the optional seed perturbation shared by both functions.
#[inline(always)]
fn seeded_state(len: u32, seed: u64) -> (u32, u32, u32) {
    let init = 0x9e3779b9u32.wrapping_add(len).wrapping_add(3923095);
    let (mut a, mut b, mut c) = (init, init, init);
    if seed != 0 {
        // Postgres treats the seed as a 12-byte chunk (high word, low word, 0).
        a = a.wrapping_add((seed >> 32) as u32);
        b = b.wrapping_add(seed as u32);
        mix(&mut a, &mut b, &mut c);
    }
    (a, b, c)
}

#[inline(always)]
fn le_word(k: &[u8]) -> u32 {
    // Callers pass up to 4 bytes; missing high bytes are zero, exactly like
    // the fall-through `switch` in hashfn.c.
    let mut w = 0u32;
    for (i, &byte) in k.iter().enumerate().take(4) {
        w |= (byte as u32) << (8 * i);
    }
    w
}

/// `hash_bytes_extended(k, len, seed)`: Postgres's `hash_any_extended`.
pub fn hash_bytes_extended(k: &[u8], seed: u64) -> u64 {
    // Postgres takes the length as an `int`; keys are at most 1 GB there.
    let (mut a, mut b, mut c) = seeded_state(k.len() as u32, seed);
    let mut rest = k;
    while rest.len() >= 12 {
        a = a.wrapping_add(le_word(&rest[0..4]));
        b = b.wrapping_add(le_word(&rest[4..8]));
        c = c.wrapping_add(le_word(&rest[8..12]));
        mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    // The last 0..=11 bytes; bytes 8..11 go into the upper three bytes of
    // `c` (lookup3 reserves its lowest byte for the length).
    let n = rest.len();
    a = a.wrapping_add(le_word(&rest[..n.min(4)]));
    if n > 4 {
        b = b.wrapping_add(le_word(&rest[4..n.min(8)]));
    }
    if n > 8 {
        c = c.wrapping_add(le_word(&rest[8..n]) << 8);
    }
    final_mix(&mut a, &mut b, &mut c);
    ((b as u64) << 32) | c as u64
}

/// `hash_bytes_uint32_extended(k, seed)`: Postgres's `hash_uint32_extended`.
#[inline]
pub fn hash_uint32_extended(k: u32, seed: u64) -> u64 {
    let (mut a, mut b, mut c) = seeded_state(4, seed);
    a = a.wrapping_add(k);
    final_mix(&mut a, &mut b, &mut c);
    ((b as u64) << 32) | c as u64
}

/// `hashint8extended(v, seed)` as `u64`. Folding the high half into the low
/// half (inverted for negatives) makes every value in int4 range hash like
/// `hashint4extended`/`hashint2extended` do, so the width a client sends a
/// key in does not matter.
#[inline]
pub fn hashint8extended(v: i64, seed: u64) -> u64 {
    let lo = v as u32;
    let hi = (v >> 32) as u32;
    let folded = lo ^ if v >= 0 { hi } else { !hi };
    hash_uint32_extended(folded, seed)
}

/// The shard hash of a key; `None` for NULL (see `ShardMap::shard_for`).
#[inline]
pub fn hash_key(k: &KeyValue) -> Option<u64> {
    match k {
        KeyValue::Int(v) => Some(hashint8extended(*v, HASH_PARTITION_SEED)),
        KeyValue::Text(s) => Some(hash_bytes_extended(s.as_bytes(), HASH_PARTITION_SEED)),
        KeyValue::Uuid(u) => Some(hash_bytes_extended(u, HASH_PARTITION_SEED)),
        KeyValue::Null => None,
    }
}

/// The SQL expression that computes, inside Postgres, the signed form of
/// `hash_key` for a column: `(expr)::int8 as u64 == hash_key(value)`.
///
/// Text is hashed under `COLLATE "C"`, which is deterministic, so Postgres
/// hashes the raw UTF-8 bytes whatever collation the column has.
pub fn sql_hash_expr(quoted_column: &str, t: KeyType) -> String {
    let seed = HASH_PARTITION_SEED_SQL;
    match t {
        KeyType::Int2 | KeyType::Int4 | KeyType::Int8 => {
            format!("hashint8extended(({quoted_column})::int8, {seed})")
        }
        KeyType::Text | KeyType::Varchar => {
            format!("hashtextextended(({quoted_column})::text COLLATE \"C\", {seed})")
        }
        KeyType::Uuid => format!("uuid_hash_extended(({quoted_column})::uuid, {seed})"),
    }
}

/// A SQL predicate true exactly for the rows whose key hash lies in
/// `interval` (same `(lo, hi]` wrap-around convention as [`HashInterval`]).
///
/// Postgres compares the hash as a signed `bigint`, so a `u64` range that
/// crosses 2^63 becomes two signed ranges. NULL keys (hash 0 by convention)
/// are included when the interval contains 0, like `shard_for` routes them.
pub fn sql_interval_predicate(quoted_column: &str, t: KeyType, interval: &HashInterval) -> String {
    let expr = sql_hash_expr(quoted_column, t);
    let mut parts: Vec<String> = signed_ranges(interval)
        .into_iter()
        .map(|(a, b)| {
            if a == i64::MIN && b == i64::MAX {
                "true".to_string()
            } else {
                format!("{expr} BETWEEN {a} AND {b}")
            }
        })
        .collect();
    if interval.contains(0) {
        parts.push(format!("({quoted_column}) IS NULL"));
    }
    if parts.is_empty() {
        return "false".into();
    }
    format!("({})", parts.join(" OR "))
}

/// The interval as inclusive ranges of signed (`bigint`) hash values.
pub fn signed_ranges(interval: &HashInterval) -> Vec<(i64, i64)> {
    let mut unsigned: Vec<(u64, u64)> = Vec::new();
    let (lo, hi) = (interval.lo, interval.hi);
    if lo < hi {
        unsigned.push((lo + 1, hi));
    } else {
        // Wraps (or, with lo == hi, covers the whole circle).
        if lo < u64::MAX {
            unsigned.push((lo + 1, u64::MAX));
        }
        unsigned.push((0, hi));
    }
    let mut out = Vec::new();
    const TOP: u64 = 1 << 63;
    for (a, b) in unsigned {
        if b < TOP || a >= TOP {
            out.push((a as i64, b as i64));
        } else {
            out.push((a as i64, i64::MAX));
            out.push((i64::MIN, b as i64));
        }
    }
    // Merge [x, MAX] with [MIN, y] style neighbours in signed order for tidiness.
    out.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (a, b) in out {
        match merged.last_mut() {
            Some(last) if last.1 != i64::MAX && a <= last.1 + 1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values computed by Postgres 15 (x86-64):
    //   SELECT hashint8extended(42, 8816678312871386365), ...
    // are asserted in tests/hash_vs_postgres.rs against a live server; here we
    // pin properties that need no server.

    #[test]
    fn int_widths_agree() {
        for v in [
            0i64,
            1,
            -1,
            42,
            -42,
            i32::MAX as i64,
            i32::MIN as i64,
            32767,
            -32768,
        ] {
            // hashint4extended(v) = hash_uint32_extended(v as u32)
            assert_eq!(
                hashint8extended(v, HASH_PARTITION_SEED),
                hash_uint32_extended(v as i32 as u32, HASH_PARTITION_SEED),
                "{v}"
            );
        }
        // Outside int4 range the high half matters.
        assert_ne!(
            hashint8extended(1 << 32, HASH_PARTITION_SEED),
            hashint8extended(0, HASH_PARTITION_SEED)
        );
    }

    #[test]
    fn uint32_variant_matches_bytes_variant() {
        // hashfn.c: hash_bytes_uint32_extended(k) == hash_bytes_extended(&k, 4).
        for k in [0u32, 1, 0xdeadbeef, u32::MAX] {
            for seed in [0, 1, HASH_PARTITION_SEED] {
                assert_eq!(
                    hash_uint32_extended(k, seed),
                    hash_bytes_extended(&k.to_le_bytes(), seed)
                );
            }
        }
    }

    #[test]
    fn tail_lengths_all_differ() {
        let data: Vec<u8> = (0u8..40).collect();
        let mut seen = std::collections::HashSet::new();
        for n in 0..=data.len() {
            assert!(seen.insert(hash_bytes_extended(&data[..n], HASH_PARTITION_SEED)));
        }
    }

    #[test]
    fn sql_expressions() {
        assert_eq!(
            sql_hash_expr("\"id\"", KeyType::Int4),
            "hashint8extended((\"id\")::int8, 8816678312871386365)"
        );
        assert!(sql_hash_expr("t", KeyType::Varchar).starts_with("hashtextextended((t)::text"));
        assert!(sql_hash_expr("t", KeyType::Uuid).starts_with("uuid_hash_extended((t)::uuid"));
    }

    #[test]
    fn signed_ranges_cover_the_interval() {
        let top = 1u64 << 63;
        let iv = |lo, hi| HashInterval { lo, hi, shard: 0 };
        assert_eq!(signed_ranges(&iv(0, 10)), vec![(1, 10)]);
        assert_eq!(
            signed_ranges(&iv(top - 5, top + 5)),
            vec![(i64::MIN, i64::MIN + 5), (i64::MAX - 3, i64::MAX)]
        );
        // Wrapping interval (MAX-1, 3] = {MAX} ∪ [0, 3] = {-1} ∪ [0, 3].
        assert_eq!(signed_ranges(&iv(u64::MAX - 1, 3)), vec![(-1, 3)]);
        // Whole circle.
        assert_eq!(signed_ranges(&iv(7, 7)), vec![(i64::MIN, i64::MAX)]);
        assert_eq!(
            sql_interval_predicate("k", KeyType::Int8, &iv(7, 7)),
            "(true OR (k) IS NULL)"
        );
    }
}
