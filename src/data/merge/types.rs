//! The Postgres types the merge understands, by type OID: which it can
//! order, group and compute with when shards send them in binary format.
//! A column of any other type still passes through untouched; only a merge
//! that must interpret it (sort, group, aggregate) is refused.

/// Type OIDs (from `pg_type.dat`).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const TEXT_ARRAY: u32 = 1009;
}

/// How the merge reads a column's binary values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    /// text, varchar, name: ordered by collation, equal when bytes are.
    Text,
    /// char(n): like text with trailing spaces ignored.
    Bpchar,
    /// Big-endian integers whose order is their value's: date (i32),
    /// time, timestamp, timestamptz (i64 microseconds), oid (u32).
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Oid,
    /// months, days, microseconds; ordered by the span Postgres computes.
    Interval,
    /// Byte-wise order and equality: uuid, bytea, "char".
    Bytes,
}

impl Kind {
    /// The kind of a type OID, if the merge knows it.
    pub fn of(type_oid: u32) -> Option<Kind> {
        use oid::*;
        Some(match type_oid {
            BOOL => Kind::Bool,
            INT2 => Kind::Int2,
            INT4 => Kind::Int4,
            INT8 => Kind::Int8,
            FLOAT4 => Kind::Float4,
            FLOAT8 => Kind::Float8,
            NUMERIC => Kind::Numeric,
            TEXT | VARCHAR | NAME | UNKNOWN => Kind::Text,
            BPCHAR => Kind::Bpchar,
            DATE => Kind::Date,
            TIME => Kind::Time,
            TIMESTAMP => Kind::Timestamp,
            TIMESTAMPTZ => Kind::TimestampTz,
            OID => Kind::Oid,
            INTERVAL => Kind::Interval,
            UUID | BYTEA | CHAR => Kind::Bytes,
            _ => return None,
        })
    }

    /// Whether the order depends on a collation.
    pub fn collatable(self) -> bool {
        matches!(self, Kind::Text | Kind::Bpchar)
    }

    /// Whether a type OID's values order by collation.
    pub fn collatable_type(type_oid: u32) -> bool {
        Kind::of(type_oid).is_some_and(Kind::collatable)
    }
}

/// A readable name for messages.
pub fn type_name(type_oid: u32) -> String {
    use oid::*;
    match type_oid {
        BOOL => "boolean",
        BYTEA => "bytea",
        CHAR => "\"char\"",
        NAME => "name",
        INT8 => "bigint",
        INT2 => "smallint",
        INT4 => "integer",
        TEXT => "text",
        OID => "oid",
        FLOAT4 => "real",
        FLOAT8 => "double precision",
        BPCHAR => "character",
        VARCHAR => "character varying",
        DATE => "date",
        TIME => "time without time zone",
        TIMESTAMP => "timestamp without time zone",
        TIMESTAMPTZ => "timestamp with time zone",
        INTERVAL => "interval",
        NUMERIC => "numeric",
        UUID => "uuid",
        _ => return format!("type OID {type_oid}"),
    }
    .to_string()
}
