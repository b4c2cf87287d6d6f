//! Small AST helpers for shard-key extraction: identifier normalization,
//! literal/parameter recognition and splitting a WHERE clause into AND-conjuncts.
//!
//! Only AND-conjuncts can pin a statement to a key: a condition under OR or NOT
//! does not restrict the rows the statement touches.

use sqlparser::ast::{
    BinaryOperator, CastKind, Expr, Ident, InTarget, ObjectName, ObjectNamePart, UnaryOperator,
    Value,
};

use super::plan::KeySource;

/// Postgres folds unquoted identifiers to lower case; quoted ones are kept.
pub(crate) fn norm(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_ascii_lowercase()
    }
}

/// Compares an identifier with an already-normalized name without allocating.
pub(crate) fn ident_is(id: &Ident, name: &str) -> bool {
    if id.quote_style.is_some() {
        id.value == name
    } else {
        id.value.eq_ignore_ascii_case(name) && !name.bytes().any(|b| b.is_ascii_uppercase())
    }
}

/// The normalized parts of an object name (`Public.Orders` → ["public", "orders"]).
/// `None` for names with function parts (not a plain relation name).
pub(crate) fn name_parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(id) => Some(norm(id)),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

/// A shard key value written in the statement: a literal, NULL or `$n`,
/// possibly negated, parenthesized or cast (`'42'::bigint`, `$1::int8`).
pub(crate) fn key_source(expr: &Expr) -> Option<KeySource> {
    match expr {
        Expr::Value(v) => value_source(&v.value),
        Expr::Nested(e) => key_source(e),
        Expr::UnaryOp { op, expr } => match (op, expr.as_ref()) {
            (UnaryOperator::Minus, Expr::Value(v)) => match &v.value {
                Value::Number(n, _) if is_integer(n) => Some(KeySource::Literal(format!("-{n}"))),
                _ => None,
            },
            (UnaryOperator::Plus, Expr::Value(v)) => match &v.value {
                Value::Number(n, _) if is_integer(n) => Some(KeySource::Literal(n.clone())),
                _ => None,
            },
            _ => None,
        },
        // A cast of a non-integer number could round (1.5::int = 2), so only
        // casts of strings, integers, NULL and parameters are looked through.
        Expr::Cast {
            kind: CastKind::DoubleColon | CastKind::Cast,
            expr,
            ..
        } => match expr.as_ref() {
            Expr::Value(v) if matches!(&v.value, Value::Number(n, _) if !is_integer(n)) => None,
            inner => key_source(inner),
        },
        Expr::TypedString(ts) => value_source(&ts.value.value),
        _ => None,
    }
}

fn is_integer(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
}

fn value_source(v: &Value) -> Option<KeySource> {
    match v {
        Value::Number(n, _) => Some(KeySource::Literal(n.clone())),
        Value::SingleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::UnicodeStringLiteral(s)
        | Value::NationalStringLiteral(s) => Some(KeySource::Literal(s.clone())),
        Value::DollarQuotedString(d) => Some(KeySource::Literal(d.value.clone())),
        Value::Null => Some(KeySource::Null),
        Value::Placeholder(p) => param_number(p).map(KeySource::Param),
        _ => None,
    }
}

/// `$3` → 3.
pub(crate) fn param_number(p: &str) -> Option<usize> {
    let n: usize = p.strip_prefix('$')?.parse().ok()?;
    (n >= 1).then_some(n)
}

/// The AND-conjuncts of a condition, looking through parentheses. Iterative:
/// a long `a AND b AND …` chain is a deep left-leaning tree.
pub(crate) fn conjuncts(expr: &Expr) -> Vec<&Expr> {
    let mut out = Vec::new();
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        match e {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                stack.push(right);
                stack.push(left);
            }
            Expr::Nested(inner) => stack.push(inner),
            other => out.push(other),
        }
    }
    out
}

/// One conjunct's use for routing.
pub(crate) enum Conjunct<'a> {
    /// `a = b` (also each pair of `(a, b) = (c, d)`).
    Eq(&'a Expr, &'a Expr),
    /// `col IN (v, …)` or `col = ANY(ARRAY[v, …])` with only key sources.
    InList(&'a Expr, Vec<KeySource>),
    /// `col IN (SELECT …)` (not negated).
    InSubquery(&'a Expr, &'a sqlparser::ast::Query),
}

/// Classifies a conjunct; several entries for a tuple equality.
pub(crate) fn classify(expr: &Expr) -> Vec<Conjunct<'_>> {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => match (left.as_ref(), right.as_ref()) {
            (Expr::Tuple(l), Expr::Tuple(r)) if l.len() == r.len() => {
                l.iter().zip(r).map(|(a, b)| Conjunct::Eq(a, b)).collect()
            }
            (l, r) => vec![Conjunct::Eq(l, r)],
        },
        Expr::In {
            expr,
            target,
            negated: false,
            ..
        } => match target {
            InTarget::List(items) => list_sources(items)
                .map(|ks| vec![Conjunct::InList(expr, ks)])
                .unwrap_or_default(),
            InTarget::Subquery(q) => vec![Conjunct::InSubquery(expr, q)],
            _ => Vec::new(),
        },
        Expr::AnyOp {
            left,
            compare_op: BinaryOperator::Eq,
            right,
            ..
        } => match right.as_ref() {
            Expr::Array(arr) => list_sources(&arr.elem)
                .map(|ks| vec![Conjunct::InList(left, ks)])
                .unwrap_or_default(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn list_sources(items: &[Expr]) -> Option<Vec<KeySource>> {
    if items.is_empty() {
        return None;
    }
    items.iter().map(key_source).collect()
}

/// A column reference's parts (`o.customer_id` → [o, customer_id]).
pub(crate) fn column_parts(expr: &Expr) -> Option<&[Ident]> {
    match expr {
        Expr::Identifier(id) => Some(std::slice::from_ref(id)),
        Expr::CompoundIdentifier(ids) if !ids.is_empty() => Some(ids),
        Expr::Nested(e) => column_parts(e),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn expr(s: &str) -> Expr {
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql(s)
            .unwrap()
            .parse_expr()
            .unwrap()
    }

    #[test]
    fn key_sources() {
        let lit = |s: &str| Some(KeySource::Literal(s.to_string()));
        assert_eq!(key_source(&expr("42")), lit("42"));
        assert_eq!(key_source(&expr("'abc'")), lit("abc"));
        assert_eq!(key_source(&expr("'it''s'")), lit("it's"));
        assert_eq!(key_source(&expr("E'a\\tb'")), lit("a\tb"));
        assert_eq!(key_source(&expr("$$x$$")), lit("x"));
        assert_eq!(key_source(&expr("-5")), lit("-5"));
        assert_eq!(key_source(&expr("(7)")), lit("7"));
        assert_eq!(key_source(&expr("'42'::bigint")), lit("42"));
        assert_eq!(key_source(&expr("CAST(42 AS int8)")), lit("42"));
        assert_eq!(key_source(&expr("int8 '42'")), lit("42"));
        assert_eq!(key_source(&expr("NULL")), Some(KeySource::Null));
        assert_eq!(key_source(&expr("$3")), Some(KeySource::Param(3)));
        assert_eq!(key_source(&expr("$1::int8")), Some(KeySource::Param(1)));
        assert_eq!(key_source(&expr("1.5::int")), None);
        assert_eq!(key_source(&expr("a + 1")), None);
        assert_eq!(key_source(&expr("now()")), None);
        assert_eq!(key_source(&expr("$0")), None);
    }

    #[test]
    fn conjunct_splitting_stops_at_or() {
        let e = expr("a = 1 AND (b = 2 AND (c = 3 OR d = 4)) AND NOT e = 5");
        let c = conjuncts(&e);
        assert_eq!(c.len(), 4);
        assert_eq!(c[0].to_string(), "a = 1");
        assert_eq!(c[2].to_string(), "c = 3 OR d = 4");
        assert_eq!(c[3].to_string(), "NOT e = 5");
    }

    #[test]
    fn identifiers_fold_unless_quoted() {
        let id = Ident::new("Orders");
        assert_eq!(norm(&id), "orders");
        assert!(ident_is(&id, "orders"));
        let q = Ident::with_quote('"', "Orders");
        assert_eq!(norm(&q), "Orders");
        assert!(!ident_is(&q, "orders"));
        assert!(!ident_is(&Ident::new("orders"), "Orders"));
    }
}
