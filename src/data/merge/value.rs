//! Typed values the merge computes with: decoded from a shard's binary
//! column, produced by aggregates and expressions, and encoded for the
//! client in the format it asked for. Numbers and booleans are typed as
//! Postgres types them; any other type is kept as its binary bytes with its
//! type OID (it is compared through [`super::compare`], never computed on).

use std::cmp::Ordering;

use super::compare::{Malformed, TextOrder, ValueOrder};
use super::float_text::{float4_text, float8_text};
use super::numeric::Numeric;
use super::types::{oid, type_name, Kind};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Float4(f32),
    Float8(f64),
    Numeric(Numeric),
    /// Any other type, in binary format (text types: the UTF-8 bytes).
    Bytes {
        type_oid: u32,
        bytes: Vec<u8>,
    },
}

/// An error Postgres would raise evaluating the same expression, or a
/// refusal (0A000) when the proxy cannot evaluate it exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub code: &'static str,
    pub message: String,
}

impl EvalError {
    pub fn new(code: &'static str, message: impl Into<String>) -> EvalError {
        EvalError {
            code,
            message: message.into(),
        }
    }

    pub fn unsupported(message: impl Into<String>) -> EvalError {
        EvalError::new("0A000", message)
    }

    pub fn malformed() -> EvalError {
        EvalError::new("XX000", "a shard sent a value that does not match its type")
    }
}

impl From<Malformed> for EvalError {
    fn from(_: Malformed) -> EvalError {
        EvalError::malformed()
    }
}

impl From<super::numeric::NumError> for EvalError {
    fn from(e: super::numeric::NumError) -> EvalError {
        EvalError::new(e.code, e.message)
    }
}

fn be<const N: usize>(b: &[u8]) -> Result<[u8; N], Malformed> {
    b.try_into().map_err(|_| Malformed)
}

impl Value {
    /// Decodes a binary column value (None is NULL).
    pub fn decode(type_oid: u32, v: Option<&[u8]>) -> Result<Value, Malformed> {
        let Some(b) = v else {
            return Ok(Value::Null);
        };
        Ok(match type_oid {
            oid::BOOL => Value::Bool(be::<1>(b)?[0] != 0),
            oid::INT2 => Value::Int2(i16::from_be_bytes(be(b)?)),
            oid::INT4 => Value::Int4(i32::from_be_bytes(be(b)?)),
            oid::INT8 => Value::Int8(i64::from_be_bytes(be(b)?)),
            oid::FLOAT4 => Value::Float4(f32::from_be_bytes(be(b)?)),
            oid::FLOAT8 => Value::Float8(f64::from_be_bytes(be(b)?)),
            oid::NUMERIC => Value::Numeric(Numeric::from_binary(b).ok_or(Malformed)?),
            t => Value::Bytes {
                type_oid: t,
                bytes: b.to_vec(),
            },
        })
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value's type OID (None for NULL, which has none yet).
    pub fn type_oid(&self) -> Option<u32> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => oid::BOOL,
            Value::Int2(_) => oid::INT2,
            Value::Int4(_) => oid::INT4,
            Value::Int8(_) => oid::INT8,
            Value::Float4(_) => oid::FLOAT4,
            Value::Float8(_) => oid::FLOAT8,
            Value::Numeric(_) => oid::NUMERIC,
            Value::Bytes { type_oid, .. } => *type_oid,
        })
    }

    /// The value for the client: type-checked against the column Postgres
    /// described, in text (0) or binary (1) format.
    pub fn encode(
        &self,
        want_oid: u32,
        binary: bool,
        extra_float_digits: i32,
        out: &mut Vec<u8>,
    ) -> Result<bool, EvalError> {
        if self.is_null() {
            return Ok(false);
        }
        let have = self.type_oid().unwrap_or(0);
        if have != want_oid {
            return Err(EvalError::unsupported(format!(
                "shardproxy computed a {} where Postgres returns {}",
                type_name(have),
                type_name(want_oid)
            )));
        }
        if binary {
            match self {
                Value::Bool(b) => out.push(u8::from(*b)),
                Value::Int2(n) => out.extend_from_slice(&n.to_be_bytes()),
                Value::Int4(n) => out.extend_from_slice(&n.to_be_bytes()),
                Value::Int8(n) => out.extend_from_slice(&n.to_be_bytes()),
                Value::Float4(f) => out.extend_from_slice(&f.to_be_bytes()),
                Value::Float8(f) => out.extend_from_slice(&f.to_be_bytes()),
                Value::Numeric(n) => n.to_binary(out),
                Value::Bytes { bytes, .. } => out.extend_from_slice(bytes),
                Value::Null => {}
            }
        } else {
            let text = self.to_text(extra_float_digits)?;
            out.extend_from_slice(text.as_bytes());
        }
        Ok(true)
    }

    /// Postgres's text output of the value.
    pub fn to_text(&self, extra_float_digits: i32) -> Result<String, EvalError> {
        Ok(match self {
            Value::Null => String::new(),
            Value::Bool(b) => if *b { "t" } else { "f" }.into(),
            Value::Int2(n) => n.to_string(),
            Value::Int4(n) => n.to_string(),
            Value::Int8(n) => n.to_string(),
            Value::Float4(f) => float4_text(*f, extra_float_digits),
            Value::Float8(f) => float8_text(*f, extra_float_digits),
            Value::Numeric(n) => n.to_text(),
            Value::Bytes { type_oid, bytes } => match Kind::of(*type_oid) {
                // Text types have the same bytes in both formats.
                Some(Kind::Text | Kind::Bpchar) => String::from_utf8_lossy(bytes).into_owned(),
                _ => {
                    return Err(EvalError::unsupported(format!(
                        "a computed {} value in text format",
                        type_name(*type_oid)
                    )))
                }
            },
        })
    }
}

/// Orders two values of one sort key (NULLs are handled by the caller).
/// `text` is the order of the key's text values, if it has text.
pub fn cmp_values(a: &Value, b: &Value, text: Option<&TextOrder>) -> Result<Ordering, EvalError> {
    use Value::*;
    Ok(match (a, b) {
        (Bool(x), Bool(y)) => x.cmp(y),
        (
            Bytes {
                type_oid: ta,
                bytes: x,
            },
            Bytes {
                type_oid: tb,
                bytes: y,
            },
        ) if ta == tb => {
            let kind = Kind::of(*ta).ok_or_else(|| {
                EvalError::unsupported(format!("ordering {} values", type_name(*ta)))
            })?;
            let order = if kind.collatable() {
                text.cloned().ok_or_else(|| {
                    EvalError::unsupported("ordering text whose collation is unknown")
                })?
            } else {
                TextOrder::Bytes
            };
            ValueOrder::new(kind, order).cmp(x, y)?
        }
        _ => match super::eval::compare_numbers(a, b)? {
            Some(o) => o,
            None => {
                return Err(EvalError::unsupported(format!(
                    "comparing {} with {}",
                    a.type_oid().map(type_name).unwrap_or_default(),
                    b.type_oid().map(type_name).unwrap_or_default()
                )))
            }
        },
    })
}
