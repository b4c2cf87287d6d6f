//! Exact arithmetic on decimal strings, as Postgres prints `numeric`
//! (`-123.4500`). Hand-written because only addition and comparison are
//! needed, on the text the shards send: no numeric crate keeps Postgres's
//! display scale and unbounded precision without a parse/print round trip.

use std::cmp::Ordering;

/// A parsed finite decimal: sign, integer digits without leading zeros,
/// fraction digits (display scale kept).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dec<'a> {
    neg: bool,
    int: &'a [u8],
    frac: &'a [u8],
}

/// Parses `[+-]digits[.digits]` (at least one digit). None for anything
/// else (NaN, Infinity, exponents).
fn parse(s: &str) -> Option<Dec<'_>> {
    let b = s.as_bytes();
    let (neg, rest) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    let (int, frac) = match rest.iter().position(|&c| c == b'.') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let skip = int.iter().take_while(|&&c| c == b'0').count();
    Some(Dec {
        neg,
        int: &int[skip..],
        frac,
    })
}

/// Compares magnitudes (ignoring sign).
fn cmp_mag(a: &Dec, b: &Dec) -> Ordering {
    a.int
        .len()
        .cmp(&b.int.len())
        .then_with(|| a.int.cmp(b.int))
        .then_with(|| {
            let n = a.frac.len().max(b.frac.len());
            let digit = |f: &[u8], i: usize| f.get(i).copied().unwrap_or(b'0');
            (0..n)
                .map(|i| digit(a.frac, i).cmp(&digit(b.frac, i)))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
}

fn is_zero(d: &Dec) -> bool {
    d.int.is_empty() && d.frac.iter().all(|&c| c == b'0')
}

/// Compares two decimal strings numerically (`1.50` equals `1.5`); None when
/// either is not a finite decimal.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    let an = a.neg && !is_zero(&a);
    let bn = b.neg && !is_zero(&b);
    Some(match (an, bn) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => cmp_mag(&a, &b),
        (true, true) => cmp_mag(&b, &a),
    })
}

/// The digits of `d` scaled to `scale` fraction digits, least significant first.
fn digits_le(d: &Dec, scale: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..scale - d.frac.len()).map(|_| 0).collect();
    v.extend(d.frac.iter().rev().map(|c| c - b'0'));
    v.extend(d.int.iter().rev().map(|c| c - b'0'));
    v
}

/// Adds two decimal strings exactly. The result's scale is the larger of
/// the two (as Postgres's numeric addition); None when either is not a
/// finite decimal.
pub fn add(a: &str, b: &str) -> Option<String> {
    let (a, b) = (parse(a)?, parse(b)?);
    let scale = a.frac.len().max(b.frac.len());
    let (x, y) = (digits_le(&a, scale), digits_le(&b, scale));
    let (mut out, neg) = if a.neg == b.neg {
        let mut out = Vec::with_capacity(x.len().max(y.len()) + 1);
        let mut carry = 0;
        for i in 0..x.len().max(y.len()) {
            let s = x.get(i).unwrap_or(&0) + y.get(i).unwrap_or(&0) + carry;
            out.push(s % 10);
            carry = s / 10;
        }
        if carry > 0 {
            out.push(carry);
        }
        (out, a.neg)
    } else {
        // Subtract the smaller magnitude from the larger; the sign is the larger's.
        let (big, small, neg) = match cmp_mag(&a, &b) {
            Ordering::Less => (&y, &x, b.neg),
            _ => (&x, &y, a.neg),
        };
        let mut out = Vec::with_capacity(big.len());
        let mut borrow = 0i8;
        for (i, &digit) in big.iter().enumerate() {
            let mut d = digit as i8 - *small.get(i).unwrap_or(&0) as i8 - borrow;
            borrow = i8::from(d < 0);
            if d < 0 {
                d += 10;
            }
            out.push(d as u8);
        }
        (out, neg)
    };
    while out.len() > scale + 1 && out.last() == Some(&0) {
        out.pop();
    }
    while out.len() < scale + 1 {
        out.push(0);
    }
    let zero = out.iter().all(|&d| d == 0);
    let mut s = String::with_capacity(out.len() + 2);
    if neg && !zero {
        s.push('-');
    }
    for (i, d) in out.iter().enumerate().rev() {
        s.push((b'0' + d) as char);
        if i == scale && scale > 0 {
            s.push('.');
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `v / 10^scale` printed with exactly `scale` fraction digits, from
    /// integer arithmetic only.
    fn show(v: i128, scale: usize) -> String {
        let digits = v.unsigned_abs().to_string();
        let digits = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = digits.split_at(digits.len() - scale);
        let sign = if v < 0 { "-" } else { "" };
        if scale == 0 {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac}")
        }
    }

    #[test]
    fn adds_examples() {
        assert_eq!(add("1", "2").as_deref(), Some("3"));
        assert_eq!(add("1.5", "2.25").as_deref(), Some("3.75"));
        assert_eq!(add("-1.50", "1.5").as_deref(), Some("0.00"));
        assert_eq!(add("-10", "3.1").as_deref(), Some("-6.9"));
        assert_eq!(add("999.9", "0.1").as_deref(), Some("1000.0"));
        assert_eq!(add("0.001", "-0.002").as_deref(), Some("-0.001"));
        assert_eq!(
            add("99999999999999999999999999999999", "1").as_deref(),
            Some("100000000000000000000000000000000")
        );
        assert_eq!(add("NaN", "1"), None);
        assert_eq!(add("1e5", "1"), None);
        assert_eq!(add("", "1"), None);
        assert_eq!(add("-", "1"), None);
        assert_eq!(add(".", "1"), None);
    }

    #[test]
    fn compares_examples() {
        assert_eq!(compare("1.50", "1.5"), Some(Ordering::Equal));
        assert_eq!(compare("-0.0", "0"), Some(Ordering::Equal));
        assert_eq!(compare("10", "9.99"), Some(Ordering::Greater));
        assert_eq!(compare("-10", "-9.99"), Some(Ordering::Less));
        assert_eq!(compare("007", "7.000"), Some(Ordering::Equal));
        assert_eq!(compare("Infinity", "1"), None);
    }

    proptest! {
        #[test]
        fn add_matches_integer_arithmetic(
            a in any::<i64>(), b in any::<i64>(), sa in 0usize..8, sb in 0usize..8
        ) {
            let scale = sa.max(sb);
            let want = a as i128 * 10i128.pow((scale - sa) as u32)
                + b as i128 * 10i128.pow((scale - sb) as u32);
            prop_assert_eq!(add(&show(a as i128, sa), &show(b as i128, sb)), Some(show(want, scale)));
        }

        #[test]
        fn compare_matches_integer_arithmetic(
            a in any::<i64>(), b in any::<i64>(), sa in 0usize..8, sb in 0usize..8
        ) {
            let scale = sa.max(sb);
            let x = a as i128 * 10i128.pow((scale - sa) as u32);
            let y = b as i128 * 10i128.pow((scale - sb) as u32);
            prop_assert_eq!(compare(&show(a as i128, sa), &show(b as i128, sb)), Some(x.cmp(&y)));
        }
    }
}
