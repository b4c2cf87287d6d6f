//! The distributed planner: splits a SELECT that reads several shards into
//! the query each shard runs and the merge the proxy runs over their
//! answers ([`DistPlan`]). Everything shard-local is pushed down: WHERE,
//! joins of co-located and reference tables, grouping, DISTINCT and
//! windows that include the shard key (the shards then do all the work),
//! ORDER BY, and `LIMIT n+m`. What needs rows of several shards at once is
//! merged ([`rows`] for sorted/limited/distinct rows, [`groups`] for
//! aggregates). The shard query is built from the AST and printed by
//! sqlparser, checked to parse back to the same tree.
//!
//! The routing analysis (`scope.rs`/`walk.rs`) has already refused what
//! no merge can fix (joins not on the key, subqueries aggregating across
//! shards, …); a construct the merge cannot do exactly is refused here with
//! a message naming it.

mod groups;
mod limit;
mod names;
mod render;
mod rows;
pub mod spec;

use std::ops::ControlFlow;

use sqlparser::ast::{
    Distinct, Expr, Query, SetExpr, SetOperator, SetQuantifier, TableFactor, Value, Visit, Visitor,
};

pub use spec::*;

use super::plan::MergeSpec;

/// The distributed plan of a read over several shards, or None when the
/// shards' rows can simply be concatenated. Err names the construct that
/// cannot be merged exactly.
pub(crate) fn plan(q: &Query, facts: &MergeSpec) -> Result<Option<DistPlan>, String> {
    let (limit, offset) = limit::counts(q)?;
    let ordered = q.order_by.is_some();
    let params = max_param(q);
    match q.body.as_ref() {
        SetExpr::Select(s) => {
            let grouped = facts.aggregates && !facts.group_by_key;
            let distinct = matches!(s.distinct, Some(Distinct::Distinct | Distinct::On(_)));
            let merge_distinct = distinct && !facts.distinct_local;
            if !grouped && !merge_distinct && !ordered && limit.is_none() && offset.is_none() {
                return Ok(None);
            }
            if !q.locks.is_empty() {
                return Err(
                    "FOR UPDATE/SHARE together with ORDER BY, LIMIT, DISTINCT or aggregates".into(),
                );
            }
            if grouped {
                groups::plan(q, s, &facts.key_distinct_aggs, params, limit, offset).map(Some)
            } else {
                let facts = rows::RowFacts {
                    merge_distinct,
                    params,
                };
                rows::plan(q, s, facts, limit, offset).map(Some)
            }
        }
        SetExpr::SetOperation {
            op, set_quantifier, ..
        } => {
            let all = matches!(
                set_quantifier,
                SetQuantifier::All | SetQuantifier::AllByName
            );
            if *op != SetOperator::Union {
                return Err(format!("{op} across shards"));
            }
            if all && !ordered && limit.is_none() && offset.is_none() {
                return Ok(None);
            }
            if !q.locks.is_empty() {
                return Err("FOR UPDATE/SHARE over a UNION".into());
            }
            // `A UNION B ORDER BY … LIMIT …` is `SELECT [DISTINCT] * FROM
            // (A UNION B) AS __sp_u ORDER BY … LIMIT …`: the ORDER BY names
            // the union's output columns either way.
            let wrapped = wrap(q, !all)?;
            let SetExpr::Select(s) = wrapped.body.as_ref() else {
                return Err("internal: the wrapped union is not a SELECT".into());
            };
            let facts = rows::RowFacts {
                merge_distinct: !all,
                params,
            };
            rows::plan(&wrapped, s, facts, limit, offset).map(Some)
        }
        _ if !ordered && limit.is_none() && offset.is_none() => Ok(None),
        other => Err(format!("ORDER BY or LIMIT over {}", kind(other))),
    }
}

fn kind(body: &SetExpr) -> &'static str {
    match body {
        SetExpr::Values(_) => "VALUES",
        SetExpr::Query(_) => "a parenthesized query",
        SetExpr::Table(_) => "TABLE",
        _ => "this statement",
    }
}

/// `SELECT [DISTINCT] * FROM (<body>) AS __sp_u` with the query's WITH,
/// ORDER BY and LIMIT moved onto it.
fn wrap(q: &Query, distinct: bool) -> Result<Query, String> {
    let template = if distinct {
        "SELECT DISTINCT * FROM (SELECT 1) AS __sp_u"
    } else {
        "SELECT * FROM (SELECT 1) AS __sp_u"
    };
    let mut w = render::query(template);
    let SetExpr::Select(s) = w.body.as_mut() else {
        return Err("internal: the union wrapper is not a SELECT".into());
    };
    let Some(TableFactor::Derived { subquery, .. }) = s.from.first_mut().map(|f| &mut f.relation)
    else {
        return Err("internal: the union wrapper has no derived table".into());
    };
    subquery.body = q.body.clone();
    w.with = q.with.clone();
    w.order_by = q.order_by.clone();
    w.limit_clause = q.limit_clause.clone();
    w.fetch = q.fetch.clone();
    Ok(w)
}

/// The highest parameter number `$n` in the statement.
fn max_param(q: &Query) -> usize {
    struct Max(usize);
    impl Visitor for Max {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if let Expr::Value(v) = e {
                if let Value::Placeholder(p) = &v.value {
                    if let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                        self.0 = self.0.max(n);
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut m = Max(0);
    let _ = q.visit(&mut m);
    m.0
}

/// The EXPLAIN line for LIMIT / OFFSET.
fn limit_step(limit: Option<Count>, offset: Option<Count>) -> String {
    let show = |c: Option<Count>, none: &str| match c {
        None | Some(Count::All) => none.to_string(),
        Some(Count::Value(n)) => n.to_string(),
        Some(Count::Param(n)) => format!("${n}"),
    };
    format!(
        "Limit: {} rows after skipping {} (the shards stop being read once it is reached)",
        show(limit, "all"),
        show(offset, "0")
    )
}

#[cfg(test)]
mod tests;
