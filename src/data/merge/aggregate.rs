//! Combines the one row each shard returns for a simple aggregate query
//! (`select count(*), sum(x), min(y), max(z) from t`) into the row an
//! unsharded Postgres would return: counts and sums are added, min and max
//! compared. Types whose combination the proxy cannot do exactly (text and
//! its collations, dates, binary numeric, float sums whose rounding and
//! printing would differ) are refused with 0A000 rather than answered wrong.

use std::cmp::Ordering;

use bytes::{BufMut, BytesMut};

use super::decimal;
use crate::data::codec::error::sqlstate;
use crate::data::codec::SqlError;
use crate::data::planner::AggKind;

/// Compares two values of one column; None when one does not decode.
type Compare = dyn Fn(&[u8], &[u8]) -> Option<Ordering>;

const INT2: u32 = 21;
const INT4: u32 = 23;
const INT8: u32 = 20;
const NUMERIC: u32 = 1700;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;

/// One result column, from the RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub type_oid: u32,
    /// Binary format (1) rather than text (0).
    pub binary: bool,
}

/// Reads the columns of a RowDescription frame (tag and length included).
pub fn columns(frame: &[u8]) -> Result<Vec<Column>, SqlError> {
    let bad = || {
        SqlError::new(
            sqlstate::INTERNAL_ERROR,
            "malformed RowDescription from a shard",
        )
    };
    let mut b = frame.get(5..).ok_or_else(bad)?;
    let n = take(&mut b, 2).ok_or_else(bad)?;
    let n = i16::from_be_bytes([n[0], n[1]]).max(0) as usize;
    let mut cols = Vec::with_capacity(n);
    for _ in 0..n {
        let name_end = b.iter().position(|&c| c == 0).ok_or_else(bad)?;
        b = &b[name_end + 1..];
        let f = take(&mut b, 18).ok_or_else(bad)?;
        cols.push(Column {
            type_oid: u32::from_be_bytes([f[6], f[7], f[8], f[9]]),
            binary: i16::from_be_bytes([f[16], f[17]]) == 1,
        });
    }
    Ok(cols)
}

/// The values of a DataRow frame (tag and length included); None is NULL.
fn values(frame: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let mut b = frame.get(5..)?;
    let n = take(&mut b, 2)?;
    let n = i16::from_be_bytes([n[0], n[1]]).max(0) as usize;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let l = take(&mut b, 4)?;
        let l = i32::from_be_bytes([l[0], l[1], l[2], l[3]]);
        v.push(if l < 0 {
            None
        } else {
            Some(take(&mut b, l as usize)?)
        });
    }
    Some(v)
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Some(head)
}

/// Combines the shards' rows (DataRow frames) of a simple aggregate query
/// into one DataRow frame. `row_description` is a RowDescription frame of
/// the same result (types and formats); `kinds` the select list's aggregates.
pub fn merge_aggregate_rows(
    kinds: &[AggKind],
    row_description: &[u8],
    rows: &[BytesMut],
) -> Result<BytesMut, SqlError> {
    let cols = columns(row_description)?;
    let internal = |m: &str| SqlError::new(sqlstate::INTERNAL_ERROR, m.to_string());
    if cols.len() != kinds.len() {
        return Err(internal(
            "aggregate merge: column count differs from the plan",
        ));
    }
    let rows: Vec<Vec<Option<&[u8]>>> = rows
        .iter()
        .map(|r| values(r).filter(|v| v.len() == cols.len()))
        .collect::<Option<_>>()
        .ok_or_else(|| internal("aggregate merge: malformed DataRow from a shard"))?;
    let mut out = BytesMut::new();
    out.put_u8(b'D');
    out.put_i32(0);
    out.put_i16(cols.len() as i16);
    for (i, (&kind, &col)) in kinds.iter().zip(&cols).enumerate() {
        let vals: Vec<&[u8]> = rows.iter().filter_map(|r| r[i]).collect();
        match combine(kind, col, &vals)? {
            None => out.put_i32(-1),
            Some(v) => {
                out.put_i32(v.len() as i32);
                out.put_slice(&v);
            }
        }
    }
    let len = (out.len() - 1) as i32;
    out[1..5].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Combines one column's non-NULL values; None (NULL) when there are none
/// (a count is never NULL on a shard, so it never gets here empty in practice).
fn combine(kind: AggKind, col: Column, vals: &[&[u8]]) -> Result<Option<Vec<u8>>, SqlError> {
    let Some(&first) = vals.first() else {
        return Ok(None);
    };
    let unsupported = || refuse(kind, col);
    let bad = || {
        SqlError::new(
            sqlstate::INTERNAL_ERROR,
            "aggregate merge: a shard sent a value that does not match its type",
        )
    };
    match (kind, col.type_oid) {
        (AggKind::Count | AggKind::Sum, INT8) => {
            let mut total: i64 = 0;
            for v in vals {
                let n = int(v, col).ok_or_else(bad)?;
                total = total.checked_add(n).ok_or_else(|| {
                    SqlError::new("22003", "bigint out of range (sum of the shards' results)")
                })?;
            }
            Ok(Some(if col.binary {
                total.to_be_bytes().to_vec()
            } else {
                total.to_string().into_bytes()
            }))
        }
        (AggKind::Sum, NUMERIC) if !col.binary => {
            let mut total = utf8(first).ok_or_else(bad)?.to_string();
            for v in &vals[1..] {
                let v = utf8(v).ok_or_else(bad)?;
                total = decimal::add(&total, v).ok_or_else(unsupported)?;
            }
            // A single value is passed through, but must still be finite.
            decimal::compare(&total, "0").ok_or_else(unsupported)?;
            Ok(Some(total.into_bytes()))
        }
        (AggKind::Min | AggKind::Max, oid) => {
            let cmp: Box<Compare> = match oid {
                INT2 | INT4 | INT8 => Box::new(move |a, b| Some(int(a, col)?.cmp(&int(b, col)?))),
                NUMERIC if !col.binary => Box::new(|a, b| decimal::compare(utf8(a)?, utf8(b)?)),
                FLOAT4 | FLOAT8 => {
                    Box::new(move |a, b| Some(float_cmp(float(a, col)?, float(b, col)?)))
                }
                _ => return Err(unsupported()),
            };
            let mut best = first;
            for &v in &vals[1..] {
                let o =
                    cmp(v, best).ok_or_else(
                        || {
                            if oid == NUMERIC {
                                unsupported()
                            } else {
                                bad()
                            }
                        },
                    )?;
                let better = match kind {
                    AggKind::Min => o == Ordering::Less,
                    _ => o == Ordering::Greater,
                };
                if better {
                    best = v;
                }
            }
            if vals.len() == 1 {
                cmp(best, best).ok_or_else(unsupported)?;
            }
            Ok(Some(best.to_vec()))
        }
        _ => Err(unsupported()),
    }
}

fn utf8(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v).ok()
}

/// An integer value in the column's format.
fn int(v: &[u8], col: Column) -> Option<i64> {
    if !col.binary {
        return utf8(v)?.parse().ok();
    }
    match (col.type_oid, v.len()) {
        (INT2, 2) => Some(i16::from_be_bytes(v.try_into().ok()?).into()),
        (INT4, 4) => Some(i32::from_be_bytes(v.try_into().ok()?).into()),
        (INT8, 8) => Some(i64::from_be_bytes(v.try_into().ok()?)),
        _ => None,
    }
}

/// A float value in the column's format (text: Postgres prints NaN,
/// Infinity and -Infinity, which Rust parses).
fn float(v: &[u8], col: Column) -> Option<f64> {
    if !col.binary {
        return utf8(v)?.parse().ok();
    }
    match (col.type_oid, v.len()) {
        (FLOAT4, 4) => Some(f32::from_be_bytes(v.try_into().ok()?).into()),
        (FLOAT8, 8) => Some(f64::from_be_bytes(v.try_into().ok()?)),
        _ => None,
    }
}

/// Postgres's float order: NaN above everything, -0 equal to 0.
fn float_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

fn refuse(kind: AggKind, col: Column) -> SqlError {
    let f = match kind {
        AggKind::Count => "count",
        AggKind::Sum => "sum",
        AggKind::Min => "min",
        AggKind::Max => "max",
    };
    let ty = match col.type_oid {
        INT2 => "smallint".to_string(),
        INT4 => "integer".to_string(),
        INT8 => "bigint".to_string(),
        NUMERIC => "numeric".to_string(),
        FLOAT4 => "real".to_string(),
        FLOAT8 => "double precision".to_string(),
        25 => "text".to_string(),
        1043 => "varchar".to_string(),
        1082 => "date".to_string(),
        1114 => "timestamp".to_string(),
        1184 => "timestamptz".to_string(),
        1186 => "interval".to_string(),
        oid => format!("type OID {oid}"),
    };
    let format = if col.binary { " in binary format" } else { "" };
    SqlError::new(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!("{f}() of {ty}{format} across shards is not supported yet: this query reads every shard (no shard key in WHERE)"),
    )
    .with_hint("Add the shard key to WHERE (or a /* shard_key=… */ hint) to run it on one shard; cross-shard merging is planned.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_desc(cols: &[(u32, i16)]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u8(b'T');
        b.put_i32(0);
        b.put_i16(cols.len() as i16);
        for (i, (oid, fmt)) in cols.iter().enumerate() {
            b.put_slice(format!("c{i}\0").as_bytes());
            b.put_i32(0);
            b.put_i16(0);
            b.put_u32(*oid);
            b.put_i16(-1);
            b.put_i32(-1);
            b.put_i16(*fmt);
        }
        let len = (b.len() - 1) as i32;
        b[1..5].copy_from_slice(&len.to_be_bytes());
        b
    }

    fn data_row(vals: &[Option<&[u8]>]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u8(b'D');
        b.put_i32(0);
        b.put_i16(vals.len() as i16);
        for v in vals {
            match v {
                None => b.put_i32(-1),
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v);
                }
            }
        }
        let len = (b.len() - 1) as i32;
        b[1..5].copy_from_slice(&len.to_be_bytes());
        b
    }

    fn text_merge(
        kinds: &[AggKind],
        oids: &[u32],
        rows: &[&[Option<&str>]],
    ) -> Result<Vec<Option<String>>, SqlError> {
        let desc = row_desc(&oids.iter().map(|&o| (o, 0)).collect::<Vec<_>>());
        let rows: Vec<BytesMut> = rows
            .iter()
            .map(|r| data_row(&r.iter().map(|v| v.map(str::as_bytes)).collect::<Vec<_>>()))
            .collect();
        let out = merge_aggregate_rows(kinds, &desc, &rows)?;
        Ok(values(&out)
            .unwrap()
            .into_iter()
            .map(|v| v.map(|v| String::from_utf8(v.to_vec()).unwrap()))
            .collect())
    }

    #[test]
    fn text_columns_combine() {
        use AggKind::*;
        let got = text_merge(
            &[Count, Sum, Sum, Min, Max, Min, Max, Max],
            &[INT8, INT8, NUMERIC, INT4, NUMERIC, FLOAT8, INT2, NUMERIC],
            &[
                &[
                    Some("3"),
                    Some("10"),
                    Some("1.5"),
                    Some("-4"),
                    Some("9.9"),
                    Some("2.5"),
                    Some("7"),
                    None,
                ],
                &[Some("0"), None, None, None, None, None, None, None],
                &[
                    Some("4"),
                    Some("-2"),
                    Some("2.25"),
                    Some("12"),
                    Some("10"),
                    Some("-Infinity"),
                    Some("-3"),
                    None,
                ],
            ],
        )
        .unwrap();
        let want = ["7", "8", "3.75", "-4", "10", "-Infinity", "7"];
        let mut want: Vec<Option<String>> = want.iter().map(|s| Some(s.to_string())).collect();
        want.push(None);
        assert_eq!(got, want);
    }

    #[test]
    fn float_nan_is_greatest() {
        let got = text_merge(
            &[AggKind::Max, AggKind::Min],
            &[FLOAT8, FLOAT8],
            &[&[Some("1"), Some("NaN")], &[Some("NaN"), Some("3")]],
        )
        .unwrap();
        assert_eq!(got, vec![Some("NaN".into()), Some("3".into())]);
    }

    #[test]
    fn unsupported_types_are_refused() {
        for (kind, oid) in [
            (AggKind::Min, 25),
            (AggKind::Max, 1082),
            (AggKind::Sum, FLOAT8),
            (AggKind::Sum, 1186),
        ] {
            let e = text_merge(&[kind], &[oid], &[&[Some("a")], &[Some("b")]]).unwrap_err();
            assert_eq!(e.code, "0A000", "{e:?}");
        }
        let e =
            text_merge(&[AggKind::Sum], &[NUMERIC], &[&[Some("1")], &[Some("NaN")]]).unwrap_err();
        assert_eq!(e.code, "0A000");
        let e = text_merge(
            &[AggKind::Count],
            &[INT8],
            &[&[Some(&i64::MAX.to_string())], &[Some("1")]],
        )
        .unwrap_err();
        assert_eq!(e.code, "22003");
    }

    #[test]
    fn binary_columns_combine() {
        let desc = row_desc(&[(INT8, 1), (INT4, 1), (FLOAT8, 1), (INT2, 1)]);
        let rows = [
            data_row(&[
                Some(&5i64.to_be_bytes()),
                Some(&(-7i32).to_be_bytes()),
                Some(&1.5f64.to_be_bytes()),
                None,
            ]),
            data_row(&[
                Some(&6i64.to_be_bytes()),
                Some(&3i32.to_be_bytes()),
                Some(&(-2.5f64).to_be_bytes()),
                Some(&9i16.to_be_bytes()),
            ]),
        ];
        use AggKind::*;
        let out = merge_aggregate_rows(&[Count, Max, Min, Max], &desc, &rows).unwrap();
        let v = values(&out).unwrap();
        assert_eq!(v[0], Some(&11i64.to_be_bytes()[..]));
        assert_eq!(v[1], Some(&3i32.to_be_bytes()[..]));
        assert_eq!(v[2], Some(&(-2.5f64).to_be_bytes()[..]));
        assert_eq!(v[3], Some(&9i16.to_be_bytes()[..]));
        // Binary numeric is not decoded: refused.
        let desc = row_desc(&[(NUMERIC, 1)]);
        let rows = [data_row(&[Some(b"xx")]), data_row(&[Some(b"yy")])];
        let e = merge_aggregate_rows(&[Sum], &desc, &rows).unwrap_err();
        assert_eq!(e.code, "0A000");
    }

    #[test]
    fn all_null_is_null() {
        let got = text_merge(
            &[AggKind::Sum, AggKind::Min],
            &[NUMERIC, INT4],
            &[&[None, None], &[None, None]],
        )
        .unwrap();
        assert_eq!(got, vec![None, None]);
    }
}
