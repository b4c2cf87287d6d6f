//! Row mode: the shards return the statement's own rows (their select list
//! unchanged, in the client's formats) plus hidden binary columns the merge
//! reads, each shard sorted like the statement and limited to `LIMIT n+m`.
//! The proxy k-way merges the sorted streams (or concatenates them),
//! removes cross-shard duplicates for DISTINCT / DISTINCT ON, skips the
//! OFFSET and stops at the LIMIT. Also the plan for groups and windows the
//! shards compute whole (grouped or partitioned by the shard key).

use sqlparser::ast::{
    Distinct, Expr, LimitClause, OrderByExpr, OrderByKind, OrderBySort, Query, Select, SelectItem,
    SetExpr, Value,
};

use super::limit::{shard_limit, ShardLimit};
use super::names::order_target;
use super::render::{aliased, col_alias, print_checked, probe};
use super::spec::{ColFormat, ColRef, Count, DistPlan, RowDistinct, Shape, ShardCol, SortKey};

/// Whether DISTINCT / DISTINCT ON needs a cross-shard merge (false when
/// the distinct rows are known to be shard-local).
pub(super) struct RowFacts {
    pub merge_distinct: bool,
    pub params: usize,
}

pub(super) fn plan(
    q: &Query,
    s: &Select,
    facts: RowFacts,
    limit: Option<Count>,
    offset: Option<Count>,
) -> Result<DistPlan, String> {
    let mut sel = s.clone();
    let mut cols: Vec<ShardCol> = Vec::new();
    let mut push = |e: &Expr, sel: &mut Select| -> usize {
        let sql = e.to_string();
        if let Some(i) = cols
            .iter()
            .position(|c| c.format == ColFormat::Binary && c.sql == sql)
        {
            return i;
        }
        sel.projection.push(aliased(e.clone(), cols.len()));
        cols.push(ShardCol {
            sql,
            format: ColFormat::Binary,
        });
        cols.len() - 1
    };
    let mut steps = Vec::new();
    let mut order = Vec::new();
    let mut shard_order = Vec::new();
    let items: &[OrderByExpr] = match q.order_by.as_ref().map(|o| &o.kind) {
        Some(OrderByKind::Expressions(items)) => items,
        Some(OrderByKind::All(_)) => return Err("ORDER BY ALL".into()),
        None => &[],
    };
    for item in items {
        if matches!(item.options.sort, Some(OrderBySort::Using(_))) {
            return Err("ORDER BY … USING an operator".into());
        }
        let target = order_target(&item.expr, &s.projection)?;
        let col = push(target, &mut sel);
        let desc = matches!(item.options.sort, Some(OrderBySort::Desc));
        let nulls_first = item.options.nulls_first.unwrap_or(desc);
        order.push(SortKey {
            col: ColRef::Col(col),
            desc,
            nulls_first,
        });
        shard_order.push(OrderByExpr {
            expr: Expr::Identifier(col_alias(col)),
            options: item.options.clone(),
            with_fill: None,
        });
    }
    let mut distinct = RowDistinct::None;
    let mut keep_order_text = false;
    match &s.distinct {
        Some(Distinct::Distinct) if facts.merge_distinct => {
            let block = cols.len();
            cols.push(ShardCol {
                sql: "the select list".into(),
                format: ColFormat::VisibleCopy,
            });
            sel.projection.extend(s.projection.iter().cloned());
            distinct = RowDistinct::All { block };
            steps.push("Unique: rows equal in every output column kept once".to_string());
        }
        // Postgres matches DISTINCT ON against the leading ORDER BY
        // expressions as written.
        Some(Distinct::On(_)) if !facts.merge_distinct => keep_order_text = true,
        Some(Distinct::On(exprs)) => {
            let mut keys = Vec::new();
            for e in exprs {
                let target = order_target(e, &s.projection)?;
                keys.push(ColRef::Col(push(target, &mut sel)));
            }
            keep_order_text = true;
            steps.push(format!(
                "Unique: the first row of each DISTINCT ON ({}) key",
                exprs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            distinct = RowDistinct::On(keys);
        }
        _ => {}
    }
    let mut shard = q.clone();
    if let Some(ob) = shard.order_by.as_mut() {
        if !keep_order_text {
            ob.kind = OrderByKind::Expressions(shard_order);
        }
    }
    let mut shard_limit_param = None;
    shard.fetch = None;
    shard.limit_clause = match shard_limit(limit, offset) {
        ShardLimit::None => None,
        ShardLimit::Literal(n) => Some(limit_clause(Expr::value(Value::Number(
            n.to_string(),
            false,
        )))),
        ShardLimit::Param => {
            let n = facts.params + 1;
            shard_limit_param = Some(n);
            Some(limit_clause(Expr::value(Value::Placeholder(format!(
                "${n}"
            )))))
        }
    };
    *shard.body = SetExpr::Select(Box::new(sel));
    let shard_sql = print_checked(&shard)?;
    if !order.is_empty() {
        steps.insert(
            0,
            format!(
                "Merge Append: the shards' sorted streams merged by {}",
                items
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    } else {
        steps.insert(0, "Append: the shards' rows one shard after another".into());
    }
    if limit.is_some() || offset.is_some() {
        steps.push(super::limit_step(limit, offset));
    }
    let probe_cols: Vec<usize> = (0..cols.len())
        .filter(|&i| cols[i].format == ColFormat::Binary)
        .collect();
    Ok(DistPlan {
        probe_sql: probe(&shard, &probe_cols)?,
        probe_cols,
        shard_sql,
        visible_prefix: true,
        visible: s
            .projection
            .iter()
            .all(|i| {
                matches!(
                    i,
                    SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }
                )
            })
            .then_some(s.projection.len()),
        cols,
        shape: Shape::Rows { order, distinct },
        limit,
        offset,
        shard_limit_param,
        params: facts.params,
        alias_checks: Vec::new(),
        steps,
    })
}

fn limit_clause(limit: Expr) -> LimitClause {
    LimitClause::LimitOffset {
        limit: Some(limit),
        offset: None,
        limit_by: Vec::new(),
    }
}
