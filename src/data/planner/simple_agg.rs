//! Recognizes a top-level SELECT list made only of aggregates whose
//! per-shard results combine exactly (`count`, `sum`, `min`, `max`), the
//! one kind of aggregate query the proxy merges across shards (pgbench's
//! `select count(*) from pgbench_branches` is one).

use sqlparser::ast::{
    DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    GroupByExpr, Select, SelectItem,
};

use super::plan::AggKind;

/// The aggregate of each select item, when the SELECT is exactly a list of
/// plain mergeable aggregates (no GROUP BY, HAVING or DISTINCT; the caller
/// checks ORDER BY, LIMIT and OFFSET, which belong to the enclosing query).
pub(super) fn simple_aggs(s: &Select) -> Option<Vec<AggKind>> {
    let grouped = match &s.group_by {
        GroupByExpr::Expressions(exprs, mods) => !exprs.is_empty() || !mods.is_empty(),
        GroupByExpr::All(_) => true,
    };
    if grouped
        || s.having.is_some()
        || s.distinct.is_some()
        || s.qualify.is_some()
        || !s.named_window.is_empty()
        || s.projection.is_empty()
    {
        return None;
    }
    s.projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(Expr::Function(f))
            | SelectItem::ExprWithAlias {
                expr: Expr::Function(f),
                ..
            } => agg_kind(f),
            _ => None,
        })
        .collect()
}

/// `count(*)`, `count(e)`, `sum(e)`, `min(e)`, `max(e)`, unqualified, with
/// one plain argument: no DISTINCT, FILTER, OVER, ORDER BY inside, WITHIN GROUP.
fn agg_kind(f: &Function) -> Option<AggKind> {
    let [part] = f.name.0.as_slice() else {
        return None;
    };
    let name = part.as_ident()?.value.to_ascii_lowercase();
    if f.over.is_some()
        || f.filter.is_some()
        || f.null_treatment.is_some()
        || !f.within_group.is_empty()
        || !matches!(f.parameters, FunctionArguments::None)
    {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if !list.clauses.is_empty()
        || matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct))
    {
        return None;
    }
    let [arg] = list.args.as_slice() else {
        return None;
    };
    let star = matches!(arg, FunctionArg::Unnamed(FunctionArgExpr::Wildcard));
    let plain = matches!(arg, FunctionArg::Unnamed(FunctionArgExpr::Expr(_)));
    match name.as_str() {
        "count" if star || plain => Some(AggKind::Count),
        "sum" if plain => Some(AggKind::Sum),
        "min" if plain => Some(AggKind::Min),
        "max" if plain => Some(AggKind::Max),
        _ => None,
    }
}
