//! Postgres's text output of `real` and `double precision`, for floats the
//! merge computes itself (sums of shards' sums, `avg`): with
//! `extra_float_digits > 0` (the default since Postgres 12) the shortest
//! text that reads back as the same value, fixed-point for decimal
//! exponents from -4 up to 14 (5 for `real`), else `1.5e+20` (Postgres's
//! Ryu port in `src/common/d2s.c`/`f2s.c`); with `extra_float_digits <= 0`
//! printf's `%.{15+n}g` (`%.{6+n}g`). Rust's formatter gives the same
//! digits: shortest round-trip for `{:e}`, correctly rounded for `{:.Ne}`.

/// Formats a float8 as Postgres would print it.
pub fn float8_text(v: f64, extra_float_digits: i32) -> String {
    if let Some(s) = special(v.is_nan(), v.is_infinite(), v.is_sign_negative(), v == 0.0) {
        return s;
    }
    if extra_float_digits > 0 {
        shortest(&format!("{v:e}"), 15)
    } else {
        printf_g(&format!(
            "{:.*e}",
            (14 + extra_float_digits).max(0) as usize,
            v
        ))
    }
}

/// Formats a float4 as Postgres would print it.
pub fn float4_text(v: f32, extra_float_digits: i32) -> String {
    if let Some(s) = special(v.is_nan(), v.is_infinite(), v.is_sign_negative(), v == 0.0) {
        return s;
    }
    if extra_float_digits > 0 {
        shortest(&format!("{v:e}"), 6)
    } else {
        printf_g(&format!(
            "{:.*e}",
            (5 + extra_float_digits).max(0) as usize,
            v
        ))
    }
}

fn special(nan: bool, inf: bool, neg: bool, zero: bool) -> Option<String> {
    Some(match (nan, inf, neg, zero) {
        (true, ..) => "NaN".into(),
        (_, true, true, _) => "-Infinity".into(),
        (_, true, false, _) => "Infinity".into(),
        (_, _, true, true) => "-0".into(),
        (_, _, false, true) => "0".into(),
        _ => return None,
    })
}

/// Splits Rust's `{:e}` output ("-1.2345e-5") into sign, digits, exponent.
fn parts(e: &str) -> (bool, String, i32) {
    let (mant, exp) = e.split_once('e').unwrap_or((e, "0"));
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    (neg, digits, exp.parse().unwrap_or(0))
}

/// Ryu-style layout: fixed when -4 <= exp < `fixed_below`.
fn shortest(e: &str, fixed_below: i32) -> String {
    let (neg, digits, exp) = parts(e);
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let mut s = String::with_capacity(digits.len() + 8);
    if neg {
        s.push('-');
    }
    if (-4..fixed_below).contains(&exp) {
        fixed(&mut s, digits, exp);
    } else {
        scientific(&mut s, digits, exp);
    }
    s
}

/// printf `%g` from digits already rounded to the precision: trailing zeros
/// dropped, fixed when -4 <= exp < precision.
fn printf_g(e: &str) -> String {
    let (neg, digits, exp) = parts(e);
    let precision = digits.len() as i32;
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if exp < -4 || exp >= precision.max(1) {
        scientific(&mut s, digits, exp);
    } else {
        fixed(&mut s, digits, exp);
    }
    s
}

/// `digits` (first digit at 10^exp) in fixed-point notation.
fn fixed(s: &mut String, digits: &str, exp: i32) {
    if exp < 0 {
        s.push_str("0.");
        for _ in 0..(-exp - 1) {
            s.push('0');
        }
        s.push_str(digits);
        return;
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        s.push_str(digits);
        for _ in digits.len()..int_len {
            s.push('0');
        }
    } else {
        s.push_str(&digits[..int_len]);
        s.push('.');
        s.push_str(&digits[int_len..]);
    }
}

/// `d.ddde+XX`, the exponent with at least two digits.
fn scientific(s: &mut String, digits: &str, exp: i32) {
    s.push_str(&digits[..1]);
    if digits.len() > 1 {
        s.push('.');
        s.push_str(&digits[1..]);
    }
    s.push('e');
    s.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        s.push('0');
    }
    s.push_str(&a.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_matches_postgres() {
        // Checked against Postgres 15 (extra_float_digits = 1).
        let cases: [(f64, &str); 14] = [
            (1.5, "1.5"),
            (100.0, "100"),
            (1e14, "100000000000000"),
            (1e15, "1e+15"),
            (1.5e20, "1.5e+20"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.0 / 3.0, "0.3333333333333333"),
            (-2.5e-7, "-2.5e-07"),
            (123456.789, "123456.789"),
            (1e300, "1e+300"),
            (5e-324, "5e-324"),
            (f64::NAN, "NaN"),
            (-0.0, "-0"),
        ];
        for (v, want) in cases {
            assert_eq!(float8_text(v, 1), want, "{v}");
        }
        assert_eq!(float8_text(f64::NEG_INFINITY, 1), "-Infinity");
        assert_eq!(float4_text(1.5, 1), "1.5");
        assert_eq!(float4_text(123456.0, 1), "123456");
        assert_eq!(float4_text(1234567.0, 1), "1.234567e+06");
        assert_eq!(float4_text(0.1, 1), "0.1");
    }

    #[test]
    fn printf_style_below_one_extra_digit() {
        assert_eq!(float8_text(1.0 / 3.0, 0), "0.333333333333333");
        assert_eq!(float8_text(1e15, 0), "1e+15");
        assert_eq!(float8_text(123.0, 0), "123");
        assert_eq!(float8_text(0.1 + 0.2, 0), "0.3");
        assert_eq!(float8_text(1.0 / 3.0, -14), "0.3");
        assert_eq!(float4_text(0.1, 0), "0.1");
    }
}
