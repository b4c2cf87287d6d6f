//! Printing the rewritten AST as the SQL shards run, and checking that the
//! printed text means what the AST says: the text is parsed again and must
//! give the same tree, else the statement is refused (a construct sqlparser
//! prints differently from how it parses would change its meaning).

use sqlparser::ast::{
    Expr, GroupByExpr, Ident, Query, Select, SelectItem, SetExpr, Statement, TableFactor,
    TableWithJoins,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::super::RECURSION_LIMIT;

/// The alias of the merge's column `n` in the shard query.
pub(super) fn col_alias(n: usize) -> Ident {
    Ident::new(format!("__sp_{n}"))
}

pub(super) fn aliased(expr: Expr, n: usize) -> SelectItem {
    SelectItem::ExprWithAlias {
        expr,
        alias: col_alias(n),
    }
}

fn parse(sql: &str) -> Option<Vec<Statement>> {
    Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .ok()
}

/// Parses a query of the proxy's own (a constant template).
pub(super) fn query(sql: &str) -> Query {
    match parse(sql).and_then(|mut v| v.pop()) {
        Some(Statement::Query(q)) => *q,
        _ => panic!("shardproxy's own SQL {sql:?} is not a query"),
    }
}

/// The text of `q`, when parsing it gives `q` back.
pub(super) fn print_checked(q: &Query) -> Result<String, String> {
    let sql = q.to_string();
    match parse(&sql).as_deref() {
        Some([Statement::Query(p)]) if **p == *q => Ok(sql),
        _ => Err("a construct shardproxy cannot print back exactly for the shards".into()),
    }
}

/// `SELECT <name> FROM …` over the statement's FROM (and WITH): it parses
/// on a shard exactly when `name` is an input column. Returned with the name.
pub(super) fn column_probe(q: &Query, s: &Select, name: &str) -> Result<(String, String), String> {
    let mut sel = s.clone();
    sel.projection = vec![SelectItem::UnnamedExpr(Expr::Identifier(
        Ident::with_quote('"', name),
    ))];
    sel.selection = None;
    sel.group_by = GroupByExpr::Expressions(Vec::new(), Vec::new());
    sel.having = None;
    sel.distinct = None;
    sel.named_window = Vec::new();
    let mut probe = q.clone();
    probe.order_by = None;
    probe.limit_clause = None;
    probe.fetch = None;
    *probe.body = SetExpr::Select(Box::new(sel));
    Ok((name.to_string(), print_checked(&probe)?))
}

/// The probe shard 0 runs beside the shard query: one row with the
/// session's `extra_float_digits`, the database's default collation, the
/// number of nondeterministic collations, and the collation of each of
/// `cols` (aliases `__sp_n` of the shard query), as descriptors
/// `provider,collate,icu_locale,deterministic,version` (see
/// `merge::collation`). The shard query sits behind `LEFT JOIN … ON false`,
/// so it is planned (its output columns carry their collations) but never
/// read. Written for the catalogs of Postgres 15 and 16.
pub(super) fn probe(shard: &Query, cols: &[usize]) -> Result<String, String> {
    let mut items = vec![
        "pg_catalog.current_setting('extra_float_digits')".to_string(),
        "(SELECT d.datlocprovider::text || ',' || d.datcollate || ',' || \
         coalesce(d.daticulocale, '') || ',true,' || coalesce(d.datcollversion, '') \
         FROM pg_catalog.pg_database AS d WHERE d.datname = pg_catalog.current_database())"
            .to_string(),
        "(SELECT count(*) FROM pg_catalog.pg_collation AS n WHERE NOT n.collisdeterministic)"
            .to_string(),
    ];
    for &c in cols {
        items.push(format!(
            "(SELECT c.collprovider::text || ',' || coalesce(c.collcollate, '') || ',' || \
             coalesce(c.colliculocale, '') || ',' || c.collisdeterministic::text || ',' || \
             coalesce(c.collversion, '') FROM pg_catalog.pg_collation AS c \
             WHERE c.oid = pg_catalog.pg_collation_for(__sp_s.{}::text)::regcollation)",
            col_alias(c)
        ));
    }
    let text = format!(
        "SELECT {} FROM (SELECT 1) AS __sp_d LEFT JOIN (SELECT 1) AS __sp_s ON false",
        items.join(", ")
    );
    let Some(mut stmts) = parse(&text) else {
        return Err("internal: the collation probe does not parse".into());
    };
    let Some(Statement::Query(mut q)) = stmts.pop() else {
        return Err("internal: the collation probe is not a query".into());
    };
    // The inner `(SELECT 1)` becomes the shard query.
    if let SetExpr::Select(s) = q.body.as_mut() {
        if let Some(TableWithJoins { joins, .. }) = s.from.first_mut() {
            if let Some(j) = joins.first_mut() {
                if let TableFactor::Derived { subquery, .. } = &mut j.relation {
                    **subquery = shard.clone();
                }
            }
        }
    }
    print_checked(&q)
}
