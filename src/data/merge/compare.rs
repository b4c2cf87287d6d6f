//! Comparing and grouping values as Postgres does, straight from the binary
//! bytes shards send: integers and dates by value, floats with NaN above
//! everything and -0 equal to 0, numeric by value whatever its display scale,
//! intervals by their span (`1 day` = `24 hours`), text by the column's
//! collation (byte order for C/POSIX, a Postgres-identical ICU collator
//! otherwise, see [`super::collation`]). No allocation per comparison.

use std::cmp::Ordering;
use std::sync::Arc;

use super::collation::IcuCollator;
use super::types::Kind;

/// How text values order.
#[derive(Clone)]
pub enum TextOrder {
    /// strcmp order: right for the C and POSIX collations.
    Bytes,
    /// An ICU collation, with Postgres's tie-break on bytes (deterministic
    /// collations call only identical strings equal).
    Icu(Arc<IcuCollator>),
}

impl std::fmt::Debug for TextOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextOrder::Bytes => f.write_str("Bytes"),
            TextOrder::Icu(c) => write!(f, "Icu({})", c.locale()),
        }
    }
}

/// A value's bytes do not decode as its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Compares and groups one column's binary values.
#[derive(Debug, Clone)]
pub struct ValueOrder {
    pub kind: Kind,
    pub text: TextOrder,
}

fn be<const N: usize>(b: &[u8]) -> Result<[u8; N], Malformed> {
    b.try_into().map_err(|_| Malformed)
}

fn f64_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Interval span in microseconds, as `interval_cmp_value` computes it
/// (a month is 30 days, a day 24 hours).
fn interval_span(b: &[u8]) -> Result<i128, Malformed> {
    if b.len() != 16 {
        return Err(Malformed);
    }
    let micros = i64::from_be_bytes(be(&b[..8])?) as i128;
    let days = i32::from_be_bytes(be(&b[8..12])?) as i128;
    let months = i32::from_be_bytes(be(&b[12..])?) as i128;
    const DAY: i128 = 86_400_000_000;
    Ok(micros + days * DAY + months * 30 * DAY)
}

fn trim_blanks(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
    &b[..end]
}

/// A binary numeric's class (0 -Inf, 1 finite, 2 +Inf, 3 NaN), whether it
/// is negative, its weight and its base-10000 digits (as big-endian pairs)
/// with leading and trailing zero digits dropped.
fn numeric_parts(b: &[u8]) -> Result<(u8, bool, i16, &[u8]), Malformed> {
    if b.len() < 8 {
        return Err(Malformed);
    }
    let ndigits = u16::from_be_bytes([b[0], b[1]]) as usize;
    let mut weight = i16::from_be_bytes([b[2], b[3]]);
    let sign = u16::from_be_bytes([b[4], b[5]]);
    if b.len() != 8 + 2 * ndigits {
        return Err(Malformed);
    }
    let class = match sign {
        0x0000 | 0x4000 => 1,
        0xC000 => return Ok((3, false, 0, &[])),
        0xD000 => return Ok((2, false, 0, &[])),
        0xF000 => return Ok((0, false, 0, &[])),
        _ => return Err(Malformed),
    };
    let mut d = &b[8..];
    while d.len() >= 2 && d[0] == 0 && d[1] == 0 {
        d = &d[2..];
        weight = weight.wrapping_sub(1);
    }
    while d.len() >= 2 && d[d.len() - 2] == 0 && d[d.len() - 1] == 0 {
        d = &d[..d.len() - 2];
    }
    Ok((class, sign == 0x4000 && !d.is_empty(), weight, d))
}

fn numeric_cmp(a: &[u8], b: &[u8]) -> Result<Ordering, Malformed> {
    let (ca, na, wa, da) = numeric_parts(a)?;
    let (cb, nb, wb, db) = numeric_parts(b)?;
    if ca != 1 || cb != 1 {
        return Ok(ca.cmp(&cb));
    }
    // Finite: zero has no digits.
    let signum = |neg: bool, d: &[u8]| -> i8 {
        if d.is_empty() {
            0
        } else if neg {
            -1
        } else {
            1
        }
    };
    let (sa, sb) = (signum(na, da), signum(nb, db));
    if sa != sb || sa == 0 {
        return Ok(sa.cmp(&sb));
    }
    // Same sign, both non-zero: compare magnitudes.
    let mag = wa.cmp(&wb).then_with(|| {
        let n = da.len().max(db.len());
        (0..n)
            .step_by(2)
            .map(|i| {
                let x = da.get(i..i + 2).unwrap_or(&[0, 0]);
                let y = db.get(i..i + 2).unwrap_or(&[0, 0]);
                x.cmp(y)
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    Ok(if sa < 0 { mag.reverse() } else { mag })
}

impl ValueOrder {
    pub fn new(kind: Kind, text: TextOrder) -> ValueOrder {
        ValueOrder { kind, text }
    }

    /// Postgres's ordering of two non-NULL values.
    pub fn cmp(&self, a: &[u8], b: &[u8]) -> Result<Ordering, Malformed> {
        Ok(match self.kind {
            Kind::Bool => be::<1>(a)?.cmp(&be::<1>(b)?),
            Kind::Int2 => i16::from_be_bytes(be(a)?).cmp(&i16::from_be_bytes(be(b)?)),
            Kind::Int4 | Kind::Date => i32::from_be_bytes(be(a)?).cmp(&i32::from_be_bytes(be(b)?)),
            Kind::Int8 | Kind::Time | Kind::Timestamp | Kind::TimestampTz => {
                i64::from_be_bytes(be(a)?).cmp(&i64::from_be_bytes(be(b)?))
            }
            Kind::Oid => u32::from_be_bytes(be(a)?).cmp(&u32::from_be_bytes(be(b)?)),
            Kind::Float4 => f64_cmp(
                f32::from_be_bytes(be(a)?) as f64,
                f32::from_be_bytes(be(b)?) as f64,
            ),
            Kind::Float8 => f64_cmp(f64::from_be_bytes(be(a)?), f64::from_be_bytes(be(b)?)),
            Kind::Numeric => numeric_cmp(a, b)?,
            Kind::Interval => interval_span(a)?.cmp(&interval_span(b)?),
            Kind::Bytes => a.cmp(b),
            Kind::Text => self.text_cmp(a, b),
            Kind::Bpchar => self.text_cmp(trim_blanks(a), trim_blanks(b)),
        })
    }

    fn text_cmp(&self, a: &[u8], b: &[u8]) -> Ordering {
        match &self.text {
            TextOrder::Bytes => a.cmp(b),
            TextOrder::Icu(c) => c.compare(a, b).then_with(|| a.cmp(b)),
        }
    }

    /// Appends bytes that are equal exactly for values Postgres's `=` calls
    /// equal (for hashing groups and DISTINCT; text equality under a
    /// deterministic collation is byte equality).
    pub fn key(&self, v: &[u8], out: &mut Vec<u8>) -> Result<(), Malformed> {
        let start = out.len();
        match self.kind {
            Kind::Float4 => {
                let f = f32::from_be_bytes(be(v)?);
                let f = if f.is_nan() {
                    f32::NAN
                } else if f == 0.0 {
                    0.0
                } else {
                    f
                };
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            Kind::Float8 => {
                let f = f64::from_be_bytes(be(v)?);
                let f = if f.is_nan() {
                    f64::NAN
                } else if f == 0.0 {
                    0.0
                } else {
                    f
                };
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            Kind::Numeric => {
                let (class, neg, weight, digits) = numeric_parts(v)?;
                out.push(class);
                if class == 1 && !digits.is_empty() {
                    out.push(u8::from(neg));
                    out.extend_from_slice(&weight.to_be_bytes());
                    out.extend_from_slice(digits);
                }
            }
            Kind::Interval => out.extend_from_slice(&interval_span(v)?.to_be_bytes()),
            Kind::Bpchar => out.extend_from_slice(trim_blanks(v)),
            Kind::Bool | Kind::Int2 => out.extend_from_slice(v),
            _ => out.extend_from_slice(v),
        }
        // Lengths keep adjacent variable-length keys apart.
        let len = (out.len() - start) as u32;
        out.extend_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::merge::numeric::Numeric;

    fn num(s: &str) -> Vec<u8> {
        let mut b = Vec::new();
        Numeric::parse(s).unwrap().to_binary(&mut b);
        b
    }

    fn order(kind: Kind) -> ValueOrder {
        ValueOrder::new(kind, TextOrder::Bytes)
    }

    #[test]
    fn numerics_compare_by_value() {
        let o = order(Kind::Numeric);
        let vals = [
            "-Infinity",
            "-10000.5",
            "-1",
            "-0.0001",
            "0",
            "0.00001",
            "1",
            "1.5",
            "9999.9999",
            "10000",
            "1e40",
            "Infinity",
            "NaN",
        ];
        for (i, a) in vals.iter().enumerate() {
            for (j, b) in vals.iter().enumerate() {
                assert_eq!(o.cmp(&num(a), &num(b)).unwrap(), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(o.cmp(&num("1.0"), &num("1.000")).unwrap(), Ordering::Equal);
        let key = |s: &str| {
            let mut k = Vec::new();
            o.key(&num(s), &mut k).unwrap();
            k
        };
        assert_eq!(key("0.00"), key("0"));
        assert_eq!(key("1.50"), key("1.5"));
        assert_ne!(key("1.5"), key("15"));
    }

    #[test]
    fn floats_order_nan_last_and_zeroes_equal() {
        let o = order(Kind::Float8);
        let f = |x: f64| x.to_be_bytes().to_vec();
        assert_eq!(
            o.cmp(&f(f64::NAN), &f(f64::INFINITY)).unwrap(),
            Ordering::Greater
        );
        assert_eq!(o.cmp(&f(-0.0), &f(0.0)).unwrap(), Ordering::Equal);
        assert_eq!(
            o.cmp(&f(f64::NEG_INFINITY), &f(-1e308)).unwrap(),
            Ordering::Less
        );
        let key = |x: f64| {
            let mut k = Vec::new();
            o.key(&f(x), &mut k).unwrap();
            k
        };
        assert_eq!(key(-0.0), key(0.0));
        assert_eq!(key(f64::NAN), key(-f64::NAN));
    }

    #[test]
    fn intervals_compare_by_span() {
        let o = order(Kind::Interval);
        let iv = |micros: i64, days: i32, months: i32| {
            let mut b = micros.to_be_bytes().to_vec();
            b.extend_from_slice(&days.to_be_bytes());
            b.extend_from_slice(&months.to_be_bytes());
            b
        };
        assert_eq!(
            o.cmp(&iv(0, 1, 0), &iv(86_400_000_000, 0, 0)).unwrap(),
            Ordering::Equal
        );
        assert_eq!(
            o.cmp(&iv(0, 31, 0), &iv(0, 0, 1)).unwrap(),
            Ordering::Greater
        );
    }

    #[test]
    fn bpchar_ignores_trailing_blanks() {
        let o = order(Kind::Bpchar);
        assert_eq!(o.cmp(b"ab  ", b"ab").unwrap(), Ordering::Equal);
        assert_eq!(o.cmp(b"ab ", b"abc").unwrap(), Ordering::Less);
        assert!(order(Kind::Int4).cmp(b"abc", b"abcd").is_err());
    }
}
