//! What ORDER BY, DISTINCT ON and GROUP BY items refer to, by Postgres's
//! rules: a position is a select item; a bare name in ORDER BY / DISTINCT ON
//! is an output column first (an alias, or the name Postgres gives an
//! unaliased item: its column or function name), an input column otherwise;
//! in GROUP BY it is an input column first. The merge needs the expression
//! itself, because the shards' select list is not the client's.

use sqlparser::ast::{Expr, SelectItem, Value};

use super::super::keys::norm;

/// The name Postgres gives a select item's column (FigureColname): its
/// alias, a column's name, a function's name, `case`, else `?column?`.
pub(super) fn output_name(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(norm(alias)),
        SelectItem::UnnamedExpr(e) => Some(expr_name(e).unwrap_or_else(|| "?column?".into())),
        _ => None,
    }
}

fn expr_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(id) => Some(norm(id)),
        Expr::CompoundIdentifier(ids) => ids.last().map(norm),
        Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).map(norm),
        Expr::Cast { expr, .. } => expr_name(expr),
        Expr::Nested(e) => expr_name(e),
        Expr::Collate { expr, .. } => expr_name(expr),
        Expr::Case { .. } => Some("case".into()),
        Expr::Extract { .. } => Some("extract".into()),
        Expr::Substring { .. } => Some("substring".into()),
        Expr::Position { .. } => Some("position".into()),
        Expr::Ceil { .. } => Some("ceil".into()),
        Expr::Floor { .. } => Some("floor".into()),
        Expr::Exists { .. } => Some("exists".into()),
        Expr::Array(_) => Some("array".into()),
        _ => None,
    }
}

/// A 1-based position literal (`ORDER BY 2`).
fn position(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// The select item expression at a position; Err for `*` or out of range.
fn item_expr(projection: &[SelectItem], k: usize) -> Result<&Expr, String> {
    if projection.iter().take(k).any(|i| {
        matches!(
            i,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    }) {
        return Err(format!(
            "a position ({k}) at or after a * in the select list across shards (name the column instead)"
        ));
    }
    match projection.get(k.wrapping_sub(1)) {
        Some(SelectItem::UnnamedExpr(e)) | Some(SelectItem::ExprWithAlias { expr: e, .. }) => Ok(e),
        // Postgres reports the bad position itself (the statement is
        // described on a shard before it runs).
        _ => Err(format!("position {k} is not in the select list")),
    }
}

/// The expression an ORDER BY or DISTINCT ON item sorts by.
pub(super) fn order_target<'a>(
    e: &'a Expr,
    projection: &'a [SelectItem],
) -> Result<&'a Expr, String> {
    if let Some(k) = position(e) {
        return item_expr(projection, k);
    }
    if let Expr::Identifier(id) = e {
        let name = norm(id);
        let matches: Vec<&Expr> = projection
            .iter()
            .filter(|i| output_name(i).as_deref() == Some(name.as_str()))
            .filter_map(|i| match i {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
                _ => None,
            })
            .collect();
        if let Some(first) = matches.first() {
            // Several output columns of that name: Postgres calls it
            // ambiguous unless they are the same expression.
            if matches.iter().any(|m| m != first) {
                return Err(format!("ORDER BY \"{name}\" is ambiguous"));
            }
            return Ok(first);
        }
    }
    Ok(e)
}

/// The expression a GROUP BY item groups by. A bare name that is an alias
/// of another expression in the select list is taken as that expression;
/// since Postgres takes an input column of that name first, the name is
/// returned too, to be checked on a shard before the statement runs (see
/// `DistPlan::alias_checks`).
pub(super) fn group_target<'a>(
    e: &'a Expr,
    projection: &'a [SelectItem],
) -> Result<(&'a Expr, Option<String>), String> {
    if let Some(k) = position(e) {
        return item_expr(projection, k).map(|e| (e, None));
    }
    if let Expr::Identifier(id) = e {
        let name = norm(id);
        for item in projection {
            if let SelectItem::ExprWithAlias { expr, alias } = item {
                let same_column = matches!(expr, Expr::Identifier(c) if norm(c) == name)
                    || matches!(expr, Expr::CompoundIdentifier(c) if c.last().map(norm).as_deref() == Some(&name));
                if norm(alias) == name && !same_column {
                    return Ok((expr, Some(name)));
                }
            }
        }
    }
    Ok((e, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::ast::{SetExpr, Statement};
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn projection(sql: &str) -> Vec<SelectItem> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        let Statement::Query(q) = stmt else { panic!() };
        let SetExpr::Select(s) = *q.body else {
            panic!()
        };
        s.projection
    }

    fn expr(s: &str) -> Expr {
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql(s)
            .unwrap()
            .parse_expr()
            .unwrap()
    }

    #[test]
    fn order_items_resolve_like_postgres() {
        let p = projection("select a, count(*), b + 1 as c, t.d from t");
        assert_eq!(
            order_target(&expr("2"), &p).unwrap().to_string(),
            "count(*)"
        );
        assert_eq!(
            order_target(&expr("count"), &p).unwrap().to_string(),
            "count(*)"
        );
        assert_eq!(order_target(&expr("c"), &p).unwrap().to_string(), "b + 1");
        assert_eq!(order_target(&expr("d"), &p).unwrap().to_string(), "t.d");
        assert_eq!(order_target(&expr("e"), &p).unwrap().to_string(), "e");
        assert_eq!(
            order_target(&expr("c + 1"), &p).unwrap().to_string(),
            "c + 1"
        );
        let p = projection("select *, a from t");
        assert!(order_target(&expr("2"), &p).is_err());
        let p = projection("select a as x, b as x from t");
        assert!(order_target(&expr("x"), &p).is_err());
    }

    #[test]
    fn group_items_resolve_aliases_to_be_checked() {
        let p = projection("select upper(r) as r, a as a, count(*) from t");
        let show = |sql: &str| {
            let e = expr(sql);
            let (t, check) = group_target(&e, &p).unwrap();
            (t.to_string(), check)
        };
        assert_eq!(show("r"), ("upper(r)".into(), Some("r".into())));
        assert_eq!(show("a"), ("a".into(), None));
        assert_eq!(show("1"), ("upper(r)".into(), None));
    }
}
