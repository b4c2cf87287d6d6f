//! A shard-key value as load accounting keeps it: owned, so it outlives the
//! message it came in, and inline for integers, uuids and short texts, so
//! recording a statement's key allocates nothing in the usual case.

use crate::data::router::{KeyValue, OwnedKey};
use smallvec::SmallVec;

/// Text keys up to this many bytes stay inline (tenant ids, codes, names).
const INLINE_TEXT: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HitKey {
    Null,
    Int(i64),
    Uuid([u8; 16]),
    /// UTF-8 bytes of a text key (it came from a `&str`).
    Text(SmallVec<[u8; INLINE_TEXT]>),
}

impl HitKey {
    #[inline]
    pub fn of(key: &KeyValue<'_>) -> HitKey {
        match *key {
            KeyValue::Null => HitKey::Null,
            KeyValue::Int(v) => HitKey::Int(v),
            KeyValue::Uuid(u) => HitKey::Uuid(u),
            KeyValue::Text(t) => HitKey::Text(SmallVec::from_slice(t.as_bytes())),
        }
    }

    /// The key as the router takes it again (`None` for NULL: it cannot be pinned).
    pub fn as_value(&self) -> KeyValue<'_> {
        match self {
            HitKey::Null => KeyValue::Null,
            HitKey::Int(v) => KeyValue::Int(*v),
            HitKey::Uuid(u) => KeyValue::Uuid(*u),
            HitKey::Text(t) => KeyValue::Text(std::str::from_utf8(t).unwrap_or("")),
        }
    }

    /// The key as a lookup entry would hold it (`None` for NULL).
    pub fn to_owned_key(&self) -> Option<OwnedKey> {
        self.as_value().to_owned_key()
    }
}

impl std::fmt::Display for HitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_value().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_print_as_sql_values() {
        for v in [
            KeyValue::Int(-42),
            KeyValue::Text("tenant-7"),
            KeyValue::Text("a text key longer than the inline twenty-four bytes"),
            KeyValue::Uuid([7; 16]),
            KeyValue::Null,
        ] {
            assert_eq!(HitKey::of(&v).as_value(), v);
        }
        assert_eq!(HitKey::of(&KeyValue::Int(42)).to_string(), "42");
        assert_eq!(HitKey::of(&KeyValue::Text("acme")).to_string(), "acme");
        assert_eq!(HitKey::Null.to_string(), "NULL");
        assert!(HitKey::of(&KeyValue::Text("short"))
            .to_owned_key()
            .is_some());
        assert!(HitKey::Null.to_owned_key().is_none());
        if let HitKey::Text(t) = HitKey::of(&KeyValue::Text("short")) {
            assert!(!t.spilled());
        }
    }
}
