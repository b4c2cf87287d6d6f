//! Postgres `numeric`, exactly: the values the merge adds, divides, rounds
//! and casts (sums of shards' sums, `avg` as sum / count, `round(avg(x), 3)`,
//! `::numeric(20,4)`) must come out digit for digit as one Postgres would
//! print them. The value is a signed big integer and a display scale (the
//! digits after the point Postgres shows); the rules that pick result scales
//! (`select_div_scale`, rounding half away from zero, typmod checks) follow
//! Postgres's `numeric.c`. num-bigint does the integer arithmetic.

use std::cmp::Ordering;

use num_bigint::{BigInt, BigUint, Sign};
use num_integer::Integer;
use num_traits::{One, Signed, ToPrimitive, Zero};

/// Postgres's NUMERIC_MAX_DISPLAY_SCALE: division results never get more
/// digits after the point than this.
const MAX_DISPLAY_SCALE: i64 = 1000;
/// NUMERIC_MIN_SIG_DIGITS: a quotient keeps at least this many significant digits.
const MIN_SIG_DIGITS: i64 = 16;
/// NUMERIC_MAX_RESULT_SCALE: the range `round(x, s)` clamps `s` to.
const MAX_RESULT_SCALE: i32 = 2000;
/// NUMERIC_DSCALE_MAX: the largest display scale a value can carry.
const DSCALE_MAX: u32 = 0x3FFF;

/// A `numeric` value (Postgres 14+ has infinities).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Numeric {
    NaN,
    PosInf,
    NegInf,
    /// `v / 10^scale`, shown with `scale` digits after the point.
    Finite {
        v: BigInt,
        scale: u32,
    },
}

/// An error Postgres would raise: SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumError {
    pub code: &'static str,
    pub message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> NumError {
    NumError {
        code,
        message: message.into(),
    }
}

fn pow10(n: u32) -> BigInt {
    BigInt::from(10u8).pow(n)
}

/// The number of decimal digits of a non-zero magnitude.
fn digit_count(m: &BigInt) -> u32 {
    if m.is_zero() {
        return 0;
    }
    // bits * log10(2) is within one of the answer; correct it exactly.
    let bits = m.magnitude().bits();
    let mut d = ((bits.saturating_sub(1)) as f64 * std::f64::consts::LOG10_2) as u32 + 1;
    let abs = m.abs();
    while abs >= pow10(d) {
        d += 1;
    }
    while d > 1 && abs < pow10(d - 1) {
        d -= 1;
    }
    d
}

/// Rounds `v / 10^by` to an integer, half away from zero (Postgres's round_var).
fn round_div_pow10(v: &BigInt, by: u32) -> BigInt {
    if by == 0 {
        return v.clone();
    }
    let d = pow10(by);
    let (q, r) = v.abs().div_rem(&d);
    let q = if r * 2u8 >= d { q + 1u8 } else { q };
    if v.is_negative() {
        -q
    } else {
        q
    }
}

impl Numeric {
    pub fn zero() -> Numeric {
        Numeric::Finite {
            v: BigInt::zero(),
            scale: 0,
        }
    }

    pub fn from_i64(n: i64) -> Numeric {
        Numeric::Finite {
            v: BigInt::from(n),
            scale: 0,
        }
    }

    pub fn is_nan(&self) -> bool {
        matches!(self, Numeric::NaN)
    }

    /// Parses Postgres's text input (`numeric_in`): surrounding spaces, a
    /// sign, digits with an optional point and exponent, `NaN`, `Infinity`.
    pub fn parse(s: &str) -> Option<Numeric> {
        let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
        let lower = t.to_ascii_lowercase();
        match lower.as_str() {
            "nan" => return Some(Numeric::NaN),
            "infinity" | "+infinity" | "inf" | "+inf" => return Some(Numeric::PosInf),
            "-infinity" | "-inf" => return Some(Numeric::NegInf),
            _ => {}
        }
        let b = t.as_bytes();
        let (neg, mut i) = match b.first()? {
            b'-' => (true, 1),
            b'+' => (false, 1),
            _ => (false, 0),
        };
        let mut digits = String::new();
        let mut frac = 0i64;
        let mut seen_point = false;
        while i < b.len() {
            match b[i] {
                c @ b'0'..=b'9' => {
                    digits.push(c as char);
                    if seen_point {
                        frac += 1;
                    }
                }
                b'.' if !seen_point => seen_point = true,
                _ => break,
            }
            i += 1;
        }
        if digits.is_empty() {
            return None;
        }
        let mut exp = 0i64;
        if i < b.len() {
            if b[i] != b'e' && b[i] != b'E' {
                return None;
            }
            exp = t.get(i + 1..)?.parse::<i64>().ok()?;
            if exp.abs() > 100_000 {
                return None;
            }
        }
        let mut v: BigInt = digits.parse().ok()?;
        let scale = frac - exp;
        let scale = if scale < 0 {
            v *= pow10((-scale) as u32);
            0
        } else {
            scale as u32
        };
        if neg {
            v = -v;
        }
        Some(Numeric::Finite { v, scale })
    }

    /// Postgres's text output (`numeric_out`).
    pub fn to_text(&self) -> String {
        match self {
            Numeric::NaN => "NaN".into(),
            Numeric::PosInf => "Infinity".into(),
            Numeric::NegInf => "-Infinity".into(),
            Numeric::Finite { v, scale } => {
                let digits = v.magnitude().to_str_radix(10);
                let scale = *scale as usize;
                let mut s = String::with_capacity(digits.len() + scale + 3);
                if v.is_negative() {
                    s.push('-');
                }
                if digits.len() > scale {
                    s.push_str(&digits[..digits.len() - scale]);
                } else {
                    s.push('0');
                }
                if scale > 0 {
                    s.push('.');
                    for _ in digits.len()..scale {
                        s.push('0');
                    }
                    let start = digits.len().saturating_sub(scale);
                    s.push_str(&digits[start..]);
                }
                s
            }
        }
    }

    /// Decodes Postgres's binary form (`numeric_send`): ndigits, weight,
    /// sign, dscale, then base-10000 digits.
    pub fn from_binary(b: &[u8]) -> Option<Numeric> {
        let word = |i: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*b.get(2 * i)?, *b.get(2 * i + 1)?]))
        };
        let ndigits = word(0)? as usize;
        let weight = word(1)? as i16 as i64;
        let sign = word(2)?;
        let dscale = word(3)? as u32;
        if b.len() != 8 + 2 * ndigits {
            return None;
        }
        match sign {
            0xC000 => return Some(Numeric::NaN),
            0xD000 => return Some(Numeric::PosInf),
            0xF000 => return Some(Numeric::NegInf),
            0x0000 | 0x4000 => {}
            _ => return None,
        }
        // Digits cover decimal exponents down to 4*(weight - ndigits + 1).
        let lowest = 4 * (weight - ndigits as i64 + 1);
        let mut v = BigInt::zero();
        for i in 0..ndigits {
            let d = word(4 + i)?;
            if d >= 10000 {
                return None;
            }
            v = v * 10000u32 + d;
        }
        // value = v * 10^lowest; as an integer over 10^dscale:
        let shift = lowest + dscale as i64;
        let v = if shift >= 0 {
            v * pow10(shift as u32)
        } else {
            let (q, r) = v.div_rem(&pow10((-shift) as u32));
            if !r.is_zero() {
                return None;
            }
            q
        };
        let v = if sign == 0x4000 { -v } else { v };
        Some(Numeric::Finite { v, scale: dscale })
    }

    /// Postgres's binary form, digit for digit as `numeric_send` writes it
    /// (leading and trailing zero digits stripped, zero has no digits).
    pub fn to_binary(&self, out: &mut Vec<u8>) {
        let mut put = |w: u16| out.extend_from_slice(&w.to_be_bytes());
        let (v, scale) = match self {
            Numeric::NaN => return [0, 0, 0xC000, 0].into_iter().for_each(put),
            Numeric::PosInf => return [0, 0, 0xD000, 0].into_iter().for_each(put),
            Numeric::NegInf => return [0, 0, 0xF000, 0].into_iter().for_each(put),
            Numeric::Finite { v, scale } => (v, *scale),
        };
        if v.is_zero() {
            return [0, 0, 0, scale as u16].into_iter().for_each(put);
        }
        // Align to whole base-10000 digits below the point.
        let pad = (4 - scale % 4) % 4;
        let aligned = v.magnitude() * BigUint::from(10u8).pow(pad);
        // Base-10000 digits, least significant first, from the decimal text.
        let text = aligned.to_str_radix(10);
        let mut groups: Vec<u16> = text
            .as_bytes()
            .rchunks(4)
            .map(|c| c.iter().fold(0u16, |a, &d| a * 10 + (d - b'0') as u16))
            .collect();
        // Little-endian base 10000; the lowest group sits at weight -(scale+pad)/4.
        let lowest_weight = -(((scale + pad) / 4) as i64);
        let mut low = 0;
        while low < groups.len() && groups[low] == 0 {
            low += 1;
        }
        let weight = lowest_weight + groups.len() as i64 - 1;
        groups.drain(..low);
        groups.reverse();
        put(groups.len() as u16);
        put(weight as i16 as u16);
        put(if v.is_negative() { 0x4000 } else { 0 });
        put(scale as u16);
        for g in groups {
            put(g);
        }
    }

    /// Postgres's order: NaN above everything (and equal to itself), then
    /// +Infinity, the finite values, -Infinity.
    pub fn cmp_pg(&self, other: &Numeric) -> Ordering {
        fn rank(n: &Numeric) -> u8 {
            match n {
                Numeric::NegInf => 0,
                Numeric::Finite { .. } => 1,
                Numeric::PosInf => 2,
                Numeric::NaN => 3,
            }
        }
        match (self, other) {
            (Numeric::Finite { v: a, scale: sa }, Numeric::Finite { v: b, scale: sb }) => {
                let s = (*sa).max(*sb);
                (a * pow10(s - sa)).cmp(&(b * pow10(s - sb)))
            }
            _ => rank(self).cmp(&rank(other)),
        }
    }

    /// A canonical byte form: equal for values Postgres's `=` calls equal
    /// (`1.0` and `1.00`), different otherwise. For grouping and DISTINCT.
    pub fn key_bytes(&self, out: &mut Vec<u8>) {
        match self {
            Numeric::NaN => out.push(3),
            Numeric::PosInf => out.push(2),
            Numeric::NegInf => out.push(0),
            Numeric::Finite { v, scale } => {
                let (mut v, mut scale) = (v.clone(), *scale);
                let ten = BigInt::from(10u8);
                while scale > 0 && !v.is_zero() && (&v % &ten).is_zero() {
                    v /= &ten;
                    scale -= 1;
                }
                if v.is_zero() {
                    scale = 0;
                }
                out.push(1);
                out.extend_from_slice(&scale.to_be_bytes());
                out.extend_from_slice(&v.to_signed_bytes_be());
            }
        }
    }

    pub fn neg(&self) -> Numeric {
        match self {
            Numeric::NaN => Numeric::NaN,
            Numeric::PosInf => Numeric::NegInf,
            Numeric::NegInf => Numeric::PosInf,
            Numeric::Finite { v, scale } => Numeric::Finite {
                v: -v,
                scale: *scale,
            },
        }
    }

    pub fn abs(&self) -> Numeric {
        match self {
            Numeric::NegInf => Numeric::PosInf,
            Numeric::Finite { v, scale } => Numeric::Finite {
                v: v.abs(),
                scale: *scale,
            },
            other => other.clone(),
        }
    }

    fn sign(&self) -> i8 {
        match self {
            Numeric::NaN => 0,
            Numeric::PosInf => 1,
            Numeric::NegInf => -1,
            Numeric::Finite { v, .. } => match v.sign() {
                Sign::Minus => -1,
                Sign::NoSign => 0,
                Sign::Plus => 1,
            },
        }
    }

    /// `a + b` (`numeric_add`): the result scale is the larger one.
    pub fn add(&self, other: &Numeric) -> Numeric {
        match (self, other) {
            (Numeric::NaN, _) | (_, Numeric::NaN) => Numeric::NaN,
            (Numeric::PosInf, Numeric::NegInf) | (Numeric::NegInf, Numeric::PosInf) => Numeric::NaN,
            (Numeric::PosInf, _) | (_, Numeric::PosInf) => Numeric::PosInf,
            (Numeric::NegInf, _) | (_, Numeric::NegInf) => Numeric::NegInf,
            (Numeric::Finite { v: a, scale: sa }, Numeric::Finite { v: b, scale: sb }) => {
                let s = (*sa).max(*sb);
                Numeric::Finite {
                    v: a * pow10(s - sa) + b * pow10(s - sb),
                    scale: s,
                }
            }
        }
    }

    pub fn sub(&self, other: &Numeric) -> Numeric {
        self.add(&other.neg())
    }

    /// `a * b` (`numeric_mul`): exact, scale the sum of the scales.
    pub fn mul(&self, other: &Numeric) -> Numeric {
        match (self, other) {
            (Numeric::NaN, _) | (_, Numeric::NaN) => Numeric::NaN,
            (Numeric::Finite { v: a, scale: sa }, Numeric::Finite { v: b, scale: sb }) => {
                let r = Numeric::Finite {
                    v: a * b,
                    scale: sa + sb,
                };
                if sa + sb > DSCALE_MAX {
                    r.round(DSCALE_MAX as i32)
                } else {
                    r
                }
            }
            (x, y) => match x.sign() * y.sign() {
                0 => Numeric::NaN,
                1 => Numeric::PosInf,
                _ => Numeric::NegInf,
            },
        }
    }

    /// `a / b` (`numeric_div`): the quotient rounded to the scale
    /// `select_div_scale` picks.
    pub fn div(&self, other: &Numeric) -> Result<Numeric, NumError> {
        match (self, other) {
            (Numeric::NaN, _) | (_, Numeric::NaN) => Ok(Numeric::NaN),
            (Numeric::PosInf | Numeric::NegInf, Numeric::PosInf | Numeric::NegInf) => {
                Ok(Numeric::NaN)
            }
            (Numeric::Finite { .. }, Numeric::PosInf | Numeric::NegInf) => Ok(Numeric::zero()),
            (x, y) if y.sign() == 0 => {
                let _ = x;
                Err(division_by_zero())
            }
            (Numeric::PosInf | Numeric::NegInf, y) => Ok(if self.sign() * y.sign() > 0 {
                Numeric::PosInf
            } else {
                Numeric::NegInf
            }),
            (Numeric::Finite { v: a, scale: sa }, Numeric::Finite { v: b, scale: sb }) => {
                let rscale = select_div_scale(a, *sa, b, *sb);
                Ok(div_round(a, *sa, b, *sb, rscale))
            }
        }
    }

    /// `a % b` (`numeric_mod`): `a - trunc(a / b) * b`, scale the larger one.
    pub fn modulo(&self, other: &Numeric) -> Result<Numeric, NumError> {
        match (self, other) {
            (Numeric::NaN, _) | (_, Numeric::NaN) => Ok(Numeric::NaN),
            (Numeric::PosInf | Numeric::NegInf, _) => Ok(Numeric::NaN),
            (x, Numeric::PosInf | Numeric::NegInf) => Ok(x.clone()),
            (_, y) if y.sign() == 0 => Err(division_by_zero()),
            (Numeric::Finite { v: a, scale: sa }, Numeric::Finite { v: b, scale: sb }) => {
                let s = (*sa).max(*sb);
                let (x, y) = (a * pow10(s - sa), b * pow10(s - sb));
                // Truncated division: the remainder takes the dividend's sign.
                let r = &x - (&x / &y) * &y;
                Ok(Numeric::Finite { v: r, scale: s })
            }
        }
    }

    /// `round(x, s)`: half away from zero; a negative `s` rounds to tens,
    /// hundreds, … and shows no digits after the point.
    pub fn round(&self, s: i32) -> Numeric {
        self.rescale(s, true)
    }

    /// `trunc(x, s)`.
    pub fn trunc(&self, s: i32) -> Numeric {
        self.rescale(s, false)
    }

    fn rescale(&self, s: i32, round: bool) -> Numeric {
        let Numeric::Finite { v, scale } = self else {
            return self.clone();
        };
        let s = s.clamp(-MAX_RESULT_SCALE, MAX_RESULT_SCALE) as i64;
        let cur = *scale as i64;
        if s >= cur {
            return Numeric::Finite {
                v: v * pow10((s - cur) as u32),
                scale: s as u32,
            };
        }
        let by = (cur - s) as u32;
        let q = if round {
            round_div_pow10(v, by)
        } else {
            v / pow10(by)
        };
        if s >= 0 {
            Numeric::Finite {
                v: q,
                scale: s as u32,
            }
        } else {
            Numeric::Finite {
                v: q * pow10((-s) as u32),
                scale: 0,
            }
        }
    }

    /// A cast to `numeric(precision, scale)` (`apply_typmod`): rounded to
    /// the scale, then checked against the precision.
    pub fn apply_typmod(&self, typmod: i32) -> Result<Numeric, NumError> {
        if typmod < 4 {
            return Ok(self.clone());
        }
        let t = typmod - 4;
        let precision = (t >> 16) & 0xffff;
        let scale = ((t & 0x7ff) ^ 1024) - 1024;
        let maxdigits = precision - scale;
        let overflow = |detail: String| NumError {
            code: "22003",
            message: format!("numeric field overflow: {detail}"),
        };
        match self {
            Numeric::NaN => Ok(Numeric::NaN),
            Numeric::PosInf | Numeric::NegInf => Err(overflow(format!(
                "A field with precision {precision}, scale {scale} cannot hold an infinite value."
            ))),
            Numeric::Finite { .. } => {
                let r = self.round(scale);
                if let Numeric::Finite { v, scale: rs } = &r {
                    let int_digits = digit_count(v) as i64 - *rs as i64;
                    if int_digits > maxdigits as i64 {
                        let bound = if maxdigits > 0 {
                            format!("10^{maxdigits}")
                        } else {
                            "1".into()
                        };
                        return Err(overflow(format!(
                            "A field with precision {precision}, scale {scale} must round to an absolute value less than {bound}."
                        )));
                    }
                }
                Ok(r)
            }
        }
    }

    /// A cast to an integer type (`numeric_int8` and friends): rounded half
    /// away from zero, then range-checked by the caller's `fits`.
    pub fn to_i64_rounded(&self, type_name: &str) -> Result<i64, NumError> {
        match self {
            Numeric::NaN => Err(err("0A000", format!("cannot convert NaN to {type_name}"))),
            Numeric::PosInf | Numeric::NegInf => Err(err(
                "0A000",
                format!("cannot convert infinity to {type_name}"),
            )),
            Numeric::Finite { v, scale } => round_div_pow10(v, *scale)
                .to_i64()
                .ok_or_else(|| err("22003", format!("{type_name} out of range"))),
        }
    }

    /// A cast to double precision (`numeric_float8`: the text form read by
    /// `float8in`, which Rust's parser matches: both round correctly).
    pub fn to_f64(&self) -> Result<f64, NumError> {
        match self {
            Numeric::NaN => Ok(f64::NAN),
            Numeric::PosInf => Ok(f64::INFINITY),
            Numeric::NegInf => Ok(f64::NEG_INFINITY),
            Numeric::Finite { .. } => {
                let text = self.to_text();
                let f: f64 = text.parse().map_err(|_| {
                    err(
                        "22P02",
                        format!("invalid input syntax for type double precision: \"{text}\""),
                    )
                })?;
                if f.is_infinite() {
                    return Err(err(
                        "22003",
                        format!("\"{text}\" is out of range for type double precision"),
                    ));
                }
                Ok(f)
            }
        }
    }

    /// A cast from double precision (`float8_numeric`): Postgres prints the
    /// value with 15 significant digits (`%.15g`) and reads that back.
    pub fn from_f64(f: f64) -> Numeric {
        if f.is_nan() {
            return Numeric::NaN;
        }
        if f.is_infinite() {
            return if f > 0.0 {
                Numeric::PosInf
            } else {
                Numeric::NegInf
            };
        }
        if f == 0.0 {
            return Numeric::zero();
        }
        // {:.14e} rounds correctly to 15 significant digits, as glibc's %g does.
        let e = format!("{f:.14e}");
        let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let exp: i64 = exp.parse().unwrap_or(0);
        let neg = mant.starts_with('-');
        let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
        // %g drops trailing zeros.
        let digits = digits.trim_end_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        let mut v: BigInt = digits.parse().unwrap_or_default();
        // value = 0.digits... : digits[0] is at 10^exp.
        let scale = digits.len() as i64 - 1 - exp;
        let scale = if scale < 0 {
            v *= pow10((-scale) as u32);
            0
        } else {
            scale as u32
        };
        if neg {
            v = -v;
        }
        Numeric::Finite { v, scale }
    }

    /// The exact square root, rounded to `rscale` digits after the point
    /// (half up), for a value that is not negative.
    pub fn sqrt(&self, rscale: u32) -> Numeric {
        let Numeric::Finite { v, scale } = self else {
            return self.clone();
        };
        // y = v / 10^scale * 10^(2 rscale) = Y / 10^k.
        let e = 2 * rscale as i64 - *scale as i64;
        let (y, k) = if e >= 0 {
            (v.magnitude() * BigUint::from(10u8).pow(e as u32), 0u32)
        } else {
            (v.magnitude().clone(), (-e) as u32)
        };
        let tenk = BigUint::from(10u8).pow(k);
        let n0 = (&y / &tenk).sqrt();
        // Round: n0 + 1 when y >= (n0 + 1/2)^2, i.e. 4Y >= (4n0^2 + 4n0 + 1) 10^k.
        let lhs = &y * 4u8;
        let rhs = (&n0 * &n0 * 4u8 + &n0 * 4u8 + BigUint::one()) * &tenk;
        let n = if lhs >= rhs { n0 + 1u8 } else { n0 };
        Numeric::Finite {
            v: BigInt::from(n),
            scale: rscale,
        }
    }

    /// The display scale (digits after the point) of a finite value.
    pub fn scale(&self) -> u32 {
        match self {
            Numeric::Finite { scale, .. } => *scale,
            _ => 0,
        }
    }
}

pub fn division_by_zero() -> NumError {
    err("22012", "division by zero")
}

/// The base-10000 weight and first digit of `v / 10^scale` as Postgres's
/// NumericVar holds it (digits aligned on the point); (0, 0) for zero.
fn weight_and_first_digit(v: &BigInt, scale: u32) -> (i64, i64) {
    if v.is_zero() {
        return (0, 0);
    }
    // Decimal exponent of the leading digit.
    let e = digit_count(v) as i64 - 1 - scale as i64;
    let w = Integer::div_floor(&e, &4);
    // first digit = floor(|v| / 10^(scale + 4w)).
    let k = scale as i64 + 4 * w;
    let m = v.abs();
    let fd = if k >= 0 {
        m / pow10(k as u32)
    } else {
        m * pow10((-k) as u32)
    };
    (w, fd.to_i64().unwrap_or(0))
}

/// Postgres's `select_div_scale`: at least 16 significant digits, and no
/// fewer digits after the point than either input shows.
fn select_div_scale(a: &BigInt, sa: u32, b: &BigInt, sb: u32) -> u32 {
    let (w1, f1) = weight_and_first_digit(a, sa);
    let (w2, f2) = weight_and_first_digit(b, sb);
    let mut qweight = w1 - w2;
    if f1 <= f2 {
        qweight -= 1;
    }
    let rscale = (MIN_SIG_DIGITS - qweight * 4)
        .max(sa as i64)
        .max(sb as i64)
        .clamp(0, MAX_DISPLAY_SCALE);
    rscale as u32
}

/// `a / b` rounded (half away from zero) to `rscale` digits.
fn div_round(a: &BigInt, sa: u32, b: &BigInt, sb: u32, rscale: u32) -> Numeric {
    // (a / 10^sa) / (b / 10^sb) * 10^rscale = a * 10^(sb + rscale) / (b * 10^sa)
    let num = a.abs() * pow10(sb + rscale);
    let den = b.abs() * pow10(sa);
    let (q, r) = num.div_rem(&den);
    let q = if r * 2u8 >= den { q + 1u8 } else { q };
    let negative = a.is_negative() != b.is_negative();
    Numeric::Finite {
        v: if negative { -q } else { q },
        scale: rscale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Numeric {
        Numeric::parse(s).unwrap_or_else(|| panic!("parse {s}"))
    }

    fn t(x: &Numeric) -> String {
        x.to_text()
    }

    #[test]
    fn text_round_trips_and_keeps_scale() {
        for s in [
            "0",
            "1.50",
            "-0.001",
            "123456789012345678901234567890.123",
            "0.0",
            "-7",
        ] {
            assert_eq!(t(&n(s)), s);
        }
        assert_eq!(t(&n(" 1e3 ")), "1000");
        assert_eq!(t(&n("1.5e-3")), "0.0015");
        assert_eq!(t(&n("-0.00")), "0.00");
        assert_eq!(t(&n("nan")), "NaN");
        assert_eq!(t(&n("-Infinity")), "-Infinity");
        assert!(Numeric::parse("1.2.3").is_none());
        assert!(Numeric::parse("abc").is_none());
    }

    #[test]
    fn binary_round_trips() {
        // 12345.678 is [1][2345].[6780] weight 1, dscale 3.
        let mut b = Vec::new();
        n("12345.678").to_binary(&mut b);
        assert_eq!(
            b,
            [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c].to_vec()
        );
        for s in [
            "0",
            "0.00",
            "1",
            "10000",
            "-0.0001",
            "100000000",
            "0.5",
            "-98765432109876543210.0123456789",
            "NaN",
            "Infinity",
        ] {
            let mut b = Vec::new();
            n(s).to_binary(&mut b);
            assert_eq!(t(&Numeric::from_binary(&b).unwrap()), s, "{s}");
        }
        // 10000 is one digit [1] of weight 1.
        let mut b = Vec::new();
        n("10000").to_binary(&mut b);
        assert_eq!(b, [0, 1, 0, 1, 0, 0, 0, 0, 0, 1].to_vec());
    }

    #[test]
    fn division_matches_postgres_scales() {
        // Values checked against Postgres 15.
        let div = |a: &str, b: &str| t(&n(a).div(&n(b)).unwrap());
        assert_eq!(div("10", "4"), "2.5000000000000000");
        assert_eq!(div("1", "3"), "0.33333333333333333333");
        assert_eq!(div("2", "3"), "0.66666666666666666667");
        assert_eq!(div("100", "7"), "14.2857142857142857");
        assert_eq!(div("12345678901234567890", "3"), "4115226300411522630");
        assert_eq!(div("1.00", "3"), "0.33333333333333333333");
        assert_eq!(div("-5", "2"), "-2.5000000000000000");
        assert_eq!(div("0", "5"), "0.00000000000000000000");
        assert_eq!(n("1").div(&n("0")).unwrap_err().code, "22012");
    }

    #[test]
    fn rounding_and_typmods() {
        assert_eq!(t(&n("2.5").round(0)), "3");
        assert_eq!(t(&n("-2.5").round(0)), "-3");
        assert_eq!(t(&n("1.2345").round(3)), "1.235");
        assert_eq!(t(&n("1.5").round(3)), "1.500");
        assert_eq!(t(&n("1234.5").round(-2)), "1200");
        assert_eq!(t(&n("1.999").trunc(2)), "1.99");
        let typmod = |p: i32, s: i32| ((p << 16) | (s & 0x7ff)) + 4;
        assert_eq!(
            t(&n("3.14159").apply_typmod(typmod(20, 4)).unwrap()),
            "3.1416"
        );
        assert_eq!(
            n("12345.6").apply_typmod(typmod(5, 2)).unwrap_err().code,
            "22003"
        );
        assert_eq!(
            t(&n("999.994").apply_typmod(typmod(5, 2)).unwrap()),
            "999.99"
        );
        assert!(n("999.995").apply_typmod(typmod(5, 2)).is_err());
    }

    #[test]
    fn order_and_keys() {
        assert_eq!(n("1.0").cmp_pg(&n("1.00")), Ordering::Equal);
        assert_eq!(n("NaN").cmp_pg(&n("Infinity")), Ordering::Greater);
        assert_eq!(n("-Infinity").cmp_pg(&n("-1e100")), Ordering::Less);
        let key = |x: &str| {
            let mut b = Vec::new();
            n(x).key_bytes(&mut b);
            b
        };
        assert_eq!(key("1.0"), key("1.000"));
        assert_eq!(key("0.00"), key("0"));
        assert_ne!(key("10"), key("1"));
    }

    #[test]
    fn casts() {
        assert_eq!(n("2.5").to_i64_rounded("bigint").unwrap(), 3);
        assert_eq!(n("-2.5").to_i64_rounded("bigint").unwrap(), -3);
        assert_eq!(
            n("1e30").to_i64_rounded("bigint").unwrap_err().code,
            "22003"
        );
        assert_eq!(t(&Numeric::from_f64(0.1)), "0.1");
        assert_eq!(t(&Numeric::from_f64(1.0 / 3.0)), "0.333333333333333");
        assert_eq!(t(&Numeric::from_f64(1e20)), "100000000000000000000");
        assert_eq!(t(&Numeric::from_f64(-2.5e-7)), "-0.00000025");
        assert_eq!(n("0.1").to_f64().unwrap(), 0.1);
    }

    #[test]
    fn sqrt_rounds_to_nearest() {
        assert_eq!(t(&n("2").sqrt(5)), "1.41421");
        assert_eq!(t(&n("4").sqrt(2)), "2.00");
        assert_eq!(t(&n("0.0025").sqrt(1)), "0.1");
        assert_eq!(t(&n("10").sqrt(0)), "3");
    }

    #[test]
    fn specials_combine_as_postgres() {
        assert_eq!(n("Infinity").add(&n("-Infinity")), Numeric::NaN);
        assert_eq!(n("Infinity").add(&n("5")), Numeric::PosInf);
        assert_eq!(n("NaN").add(&n("5")), Numeric::NaN);
        assert_eq!(n("Infinity").mul(&n("0")), Numeric::NaN);
        assert_eq!(n("5").div(&n("Infinity")).unwrap(), Numeric::zero());
        assert_eq!(t(&n("7.5").modulo(&n("2")).unwrap()), "1.5");
        assert_eq!(t(&n("-7.5").modulo(&n("2")).unwrap()), "-1.5");
    }
}
