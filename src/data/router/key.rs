//! Shard-key types and values, and how a key arriving from a client becomes one.
//!
//! A key reaches the router as SQL literal text, as a text-format Bind
//! parameter or as a binary-format Bind parameter. Every integer width is
//! normalised to `i64` here, because the hash (`hashint8extended`) is defined
//! on int8 and gives an int2/int4 value the same hash as the same int8 value:
//! `42` lands on the same shard whatever width the client sent it in.

use std::fmt;

/// SQL type of a shard key, from `[[tables]] key_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    Int2,
    Int4,
    Int8,
    Text,
    Varchar,
    Uuid,
}

/// A shard-key value borrowed from the message it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyValue<'a> {
    /// Any integer width, widened to int8.
    Int(i64),
    Text(&'a str),
    Uuid([u8; 16]),
    /// SQL NULL: routed to a fixed shard (see `ShardMap::shard_for`).
    Null,
}

/// An owned key (lookup entries, persisted maps).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnedKey {
    Int(i64),
    Text(String),
    Uuid([u8; 16]),
}

impl KeyType {
    /// Parses a config `key_type` (or a Postgres type name alias).
    pub fn parse(s: &str) -> Result<KeyType, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "smallint" | "int2" => Ok(KeyType::Int2),
            "integer" | "int" | "int4" => Ok(KeyType::Int4),
            "bigint" | "int8" => Ok(KeyType::Int8),
            "text" => Ok(KeyType::Text),
            "varchar" | "character varying" => Ok(KeyType::Varchar),
            "uuid" => Ok(KeyType::Uuid),
            other => Err(format!(
                "'{other}' is not a supported shard key type \
                 (smallint, integer, bigint, text, varchar, uuid)"
            )),
        }
    }

    /// The SQL name, as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            KeyType::Int2 => "smallint",
            KeyType::Int4 => "integer",
            KeyType::Int8 => "bigint",
            KeyType::Text => "text",
            KeyType::Varchar => "varchar",
            KeyType::Uuid => "uuid",
        }
    }

    pub fn is_int(&self) -> bool {
        matches!(self, KeyType::Int2 | KeyType::Int4 | KeyType::Int8)
    }

    pub fn is_text(&self) -> bool {
        matches!(self, KeyType::Text | KeyType::Varchar)
    }

    /// A key given as text (SQL literal text or a text-format Bind parameter).
    ///
    /// Integers are accepted in the whole int8 range whatever the column
    /// width: a value outside the column's range matches no row (Postgres
    /// compares across widths without error) and an INSERT of it fails on the
    /// shard with Postgres's own message, so routing it by its int8 hash is
    /// always consistent.
    pub fn from_text<'a>(&self, s: &'a str) -> Result<KeyValue<'a>, String> {
        match self {
            // ASCII whitespace around the digits, as Postgres's int8in
            // allows (its isspace), not Unicode's.
            KeyType::Int2 | KeyType::Int4 | KeyType::Int8 => s
                .trim_ascii()
                .parse::<i64>()
                .map(KeyValue::Int)
                .map_err(|_| self.invalid(s)),
            KeyType::Text | KeyType::Varchar => Ok(KeyValue::Text(s)),
            KeyType::Uuid => uuid::Uuid::try_parse(s.trim_ascii())
                .map(|u| KeyValue::Uuid(*u.as_bytes()))
                .map_err(|_| self.invalid(s)),
        }
    }

    /// A binary-format Bind parameter: integers by length (2, 4 or 8 bytes,
    /// big-endian), uuid as 16 bytes, text as UTF-8.
    pub fn from_binary<'a>(&self, b: &'a [u8]) -> Result<KeyValue<'a>, String> {
        match self {
            KeyType::Int2 | KeyType::Int4 | KeyType::Int8 => match b.len() {
                2 => Ok(KeyValue::Int(i16::from_be_bytes([b[0], b[1]]) as i64)),
                4 => Ok(KeyValue::Int(
                    i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64
                )),
                8 => {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(b);
                    Ok(KeyValue::Int(i64::from_be_bytes(w)))
                }
                n => Err(format!(
                    "a binary {} shard key must be 2, 4 or 8 bytes, got {n}",
                    self.name()
                )),
            },
            KeyType::Text | KeyType::Varchar => std::str::from_utf8(b)
                .map(KeyValue::Text)
                .map_err(|_| format!("binary {} shard key is not valid UTF-8", self.name())),
            KeyType::Uuid => <[u8; 16]>::try_from(b)
                .map(KeyValue::Uuid)
                .map_err(|_| format!("a binary uuid shard key must be 16 bytes, got {}", b.len())),
        }
    }

    fn invalid(&self, s: &str) -> String {
        format!("'{s}' is not a valid {} shard key", self.name())
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl KeyValue<'_> {
    pub fn to_owned_key(&self) -> Option<OwnedKey> {
        match *self {
            KeyValue::Int(v) => Some(OwnedKey::Int(v)),
            KeyValue::Text(s) => Some(OwnedKey::Text(s.to_string())),
            KeyValue::Uuid(u) => Some(OwnedKey::Uuid(u)),
            KeyValue::Null => None,
        }
    }

    /// Equal to an owned key, without allocating.
    #[inline]
    pub fn matches(&self, o: &OwnedKey) -> bool {
        match (self, o) {
            (KeyValue::Int(a), OwnedKey::Int(b)) => a == b,
            (KeyValue::Text(a), OwnedKey::Text(b)) => *a == b.as_str(),
            (KeyValue::Uuid(a), OwnedKey::Uuid(b)) => a == b,
            _ => false,
        }
    }
}

impl OwnedKey {
    pub fn as_value(&self) -> KeyValue<'_> {
        match self {
            OwnedKey::Int(v) => KeyValue::Int(*v),
            OwnedKey::Text(s) => KeyValue::Text(s),
            OwnedKey::Uuid(u) => KeyValue::Uuid(*u),
        }
    }
}

impl fmt::Display for KeyValue<'_> {
    /// The key as Postgres would print it (NULL as `NULL`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Int(v) => write!(f, "{v}"),
            KeyValue::Text(s) => f.write_str(s),
            KeyValue::Uuid(u) => write!(f, "{}", uuid::Uuid::from_bytes(*u).hyphenated()),
            KeyValue::Null => f.write_str("NULL"),
        }
    }
}

impl fmt::Display for OwnedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_value().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_type_names() {
        for (s, t) in [
            ("bigint", KeyType::Int8),
            ("INT8", KeyType::Int8),
            ("integer", KeyType::Int4),
            ("int4", KeyType::Int4),
            ("smallint", KeyType::Int2),
            ("int2", KeyType::Int2),
            ("text", KeyType::Text),
            ("varchar", KeyType::Varchar),
            ("uuid", KeyType::Uuid),
        ] {
            assert_eq!(KeyType::parse(s), Ok(t));
        }
        assert!(KeyType::parse("float").unwrap_err().contains("'float'"));
    }

    #[test]
    fn text_keys() {
        assert_eq!(KeyType::Int8.from_text(" -42 "), Ok(KeyValue::Int(-42)));
        assert_eq!(KeyType::Int2.from_text("42"), Ok(KeyValue::Int(42)));
        assert_eq!(
            KeyType::Int8.from_text("abc"),
            Err("'abc' is not a valid bigint shard key".to_string())
        );
        assert!(KeyType::Int8.from_text("99999999999999999999").is_err());
        assert_eq!(KeyType::Text.from_text(" a "), Ok(KeyValue::Text(" a ")));
        let u = KeyType::Uuid
            .from_text("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11")
            .unwrap();
        assert_eq!(u.to_string(), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        assert_eq!(
            KeyType::Uuid.from_text("a0eebc999c0b4ef8bb6d6bb9bd380a11"),
            Ok(u)
        );
        assert!(KeyType::Uuid
            .from_text("nope")
            .unwrap_err()
            .contains("uuid"));
    }

    #[test]
    fn binary_keys() {
        let t = KeyType::Int8;
        assert_eq!(t.from_binary(&(-7i16).to_be_bytes()), Ok(KeyValue::Int(-7)));
        assert_eq!(t.from_binary(&(-7i32).to_be_bytes()), Ok(KeyValue::Int(-7)));
        assert_eq!(t.from_binary(&(-7i64).to_be_bytes()), Ok(KeyValue::Int(-7)));
        assert!(t.from_binary(&[1, 2, 3]).unwrap_err().contains("got 3"));
        assert_eq!(KeyType::Text.from_binary(b"hi"), Ok(KeyValue::Text("hi")));
        assert!(KeyType::Text.from_binary(&[0xff]).is_err());
        assert_eq!(
            KeyType::Uuid.from_binary(&[7; 16]),
            Ok(KeyValue::Uuid([7; 16]))
        );
        assert!(KeyType::Uuid.from_binary(&[7; 15]).is_err());
    }

    #[test]
    fn owned_round_trip() {
        for v in [
            KeyValue::Int(5),
            KeyValue::Text("x"),
            KeyValue::Uuid([1; 16]),
        ] {
            let o = v.to_owned_key().unwrap();
            assert!(v.matches(&o));
            assert_eq!(o.as_value(), v);
        }
        assert!(!KeyValue::Int(5).matches(&OwnedKey::Text("5".into())));
        assert_eq!(KeyValue::Null.to_owned_key(), None);
    }
}
