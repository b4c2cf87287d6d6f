//! The messages a merged read sends the shards (extended protocol, unnamed
//! statement and portal): the statement as the client wrote it, described
//! on shard 0 for its exact result shape and parameter types; the probe;
//! the shard query, bound with the client's parameter bytes untouched (text
//! or binary) plus the proxy's own `LIMIT n+m` parameter, with binary
//! results for the columns the merge reads and the client's formats for the
//! rest.

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;

use super::types::oid;
use super::value::EvalError;
use crate::data::planner::dist::Count;

/// The client's Bind parameters.
#[derive(Debug, Clone, Default)]
pub struct ClientParams<'a> {
    pub values: Vec<Option<&'a [u8]>>,
    /// As sent: none (all text), one for all, or one per parameter.
    pub formats: Vec<i16>,
}

impl ClientParams<'_> {
    pub fn format(&self, i: usize) -> i16 {
        match self.formats.len() {
            0 => 0,
            1 => self.formats[0],
            _ => self.formats.get(i).copied().unwrap_or(0),
        }
    }
}

pub fn parse(buf: &mut BytesMut, sql: &str, types: &[u32]) {
    // Only fails for texts over 1 GiB, which the codec never lets in.
    let _ = frontend::parse("", sql, types.iter().copied(), buf);
}

pub fn describe_statement(buf: &mut BytesMut) {
    let _ = frontend::describe(b'S', "", buf);
}

pub fn describe_portal(buf: &mut BytesMut) {
    let _ = frontend::describe(b'P', "", buf);
}

pub fn execute(buf: &mut BytesMut) {
    let _ = frontend::execute("", 0, buf);
}

pub fn sync(buf: &mut BytesMut) {
    frontend::sync(buf);
}

/// Bind of the unnamed statement: the client's parameters (and the shard
/// limit, text, when `extra` is set), results in `formats`.
pub fn bind(buf: &mut BytesMut, params: &ClientParams<'_>, extra: Option<&[u8]>, formats: &[i16]) {
    let n = params.values.len();
    let param_formats: Vec<i16> = (0..n)
        .map(|i| params.format(i))
        .chain(extra.map(|_| 0))
        .collect();
    let values = params.values.iter().copied().chain(extra.map(Some));
    let _ = frontend::bind(
        "",
        "",
        param_formats,
        values,
        |v: Option<&[u8]>, b: &mut BytesMut| match v {
            Some(v) => {
                b.extend_from_slice(v);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        },
        formats.iter().copied(),
        buf,
    );
}

/// A LIMIT/OFFSET count for one execution: literal, or the Bind value of
/// its parameter (text, or binary by its type); None for ALL / NULL.
pub fn count(
    c: Option<Count>,
    params: &ClientParams<'_>,
    types: &[u32],
    what: &str,
) -> Result<Option<i64>, EvalError> {
    let n = match c {
        None | Some(Count::All) => return Ok(None),
        Some(Count::Value(n)) => n,
        Some(Count::Param(p)) => {
            let i = p - 1;
            let Some(v) = params.values.get(i).copied() else {
                return Err(EvalError::new(
                    "08P01",
                    format!("{what} parameter ${p} was not bound"),
                ));
            };
            let Some(v) = v else { return Ok(None) };
            let bad = || EvalError::new("22P02", format!("invalid {what} value"));
            if params.format(i) == 0 {
                let t = std::str::from_utf8(v).map_err(|_| bad())?;
                t.trim().parse::<i64>().map_err(|_| bad())?
            } else {
                match (types.get(i).copied().unwrap_or(0), v.len()) {
                    (oid::INT8 | 0, 8) => i64::from_be_bytes(v.try_into().map_err(|_| bad())?),
                    (oid::INT4 | 0, 4) => {
                        i32::from_be_bytes(v.try_into().map_err(|_| bad())?) as i64
                    }
                    (oid::INT2 | 0, 2) => {
                        i16::from_be_bytes(v.try_into().map_err(|_| bad())?) as i64
                    }
                    (t, _) => {
                        return Err(EvalError::unsupported(format!(
                            "a {what} parameter of type {} in binary format across shards",
                            super::types::type_name(t)
                        )))
                    }
                }
            }
        }
    };
    if n < 0 {
        let (code, upper) = if what == "LIMIT" {
            ("2201W", "LIMIT")
        } else {
            ("2201X", "OFFSET")
        };
        return Err(EvalError::new(
            code,
            format!("{upper} must not be negative"),
        ));
    }
    Ok(Some(n))
}
