//! `standard_conforming_strings` must stay on through the proxy.
//!
//! The router and the literal normalizer read SQL as Postgres does with
//! `standard_conforming_strings = on` (its default since 9.1): a backslash in
//! a plain `'…'` literal is an ordinary character. Turned off, a backslash
//! before a quote escapes it, so the same text could hide another statement,
//! or another key, from the router. The proxy therefore refuses every way a
//! client could turn it off: `SET` (any scope), `set_config(…)` in a query and
//! the startup packet. Its own backend connections start with it on, so a
//! role or database default of off does not apply either.

use sqlparser::ast::{Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Value};

/// The setting's name, as Postgres spells it.
pub const NAME: &str = "standard_conforming_strings";

/// The error a client gets for trying to turn it off.
pub const REFUSAL: &str = "standard_conforming_strings cannot be turned off through shardproxy: its router reads string literals as Postgres does with it on; use E'…' strings for backslash escapes";

/// Whether `value` is one of Postgres' spellings of true (as a startup
/// parameter or a `set_config` value).
pub fn is_on(value: &str) -> bool {
    let v = value.trim().trim_matches('\'').to_ascii_lowercase();
    // Postgres accepts any unique prefix of true/yes, and on and 1.
    v == "on" || v == "1" || (!v.is_empty() && ("true".starts_with(&v) || "yes".starts_with(&v)))
}

/// Whether `SET … TO value` keeps the setting on: a true value, or DEFAULT
/// (the backend's startup value, on).
pub fn keeps_on(value: &str) -> bool {
    is_on(value) || value.trim().eq_ignore_ascii_case("default")
}

/// Whether a function call is `set_config('standard_conforming_strings',
/// v, …)` with a `v` that may turn it off (anything but a literal true).
pub fn call_turns_off(f: &Function) -> bool {
    let named = f
        .name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|id| id.value.eq_ignore_ascii_case("set_config"));
    if !named {
        return false;
    }
    let FunctionArguments::List(list) = &f.args else {
        return false;
    };
    let literal = |i: usize| match list.args.get(i) {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) => match &v.value {
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Some(s.as_str()),
            Value::DollarQuotedString(d) => Some(d.value.as_str()),
            _ => None,
        },
        _ => None,
    };
    match literal(0) {
        Some(name) if name.trim().eq_ignore_ascii_case(NAME) => !literal(1).is_some_and(is_on),
        Some(_) => false,
        // A computed setting name may be this one.
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_on_and_off() {
        for v in [
            "on", "ON", "'on'", "true", "t", "tr", "yes", "y", "1", "DEFAULT",
        ] {
            assert!(keeps_on(v), "{v}");
            assert_eq!(is_on(v), !v.eq_ignore_ascii_case("default"), "{v}");
        }
        for v in [
            "off", "'off'", "false", "f", "no", "n", "0", "", "of", "maybe",
        ] {
            assert!(!keeps_on(v), "{v}");
        }
    }
}
