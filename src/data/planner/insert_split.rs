//! Splitting a multi-row `INSERT … VALUES` into one INSERT per shard.
//!
//! Each part is built from the AST (the original statement with only that
//! shard's rows) and printed by sqlparser, never pasted from text. Bind
//! parameters are renumbered `$1…$k` per part; [`InsertPart::params`] says
//! which original parameter each new one is, so the session can send the
//! right values (and types).

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Insert, SetExpr, Statement, Value, VisitMut};

use crate::data::router::ShardMap;

use super::keys::param_number;
use super::plan::{StmtPlan, Target};
use super::resolve::{key_value, Params, RouteError};

/// One shard's share of a multi-row INSERT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertPart {
    pub shard: usize,
    /// The INSERT with this shard's rows, in their original order.
    pub sql: String,
    /// The original (0-based) row indexes, in order: lets the session put
    /// RETURNING rows back in the order of the original statement.
    pub rows: Vec<usize>,
    /// For each parameter `$i` of `sql`, the original parameter number
    /// (1-based) whose value and type it takes.
    pub params: Vec<usize>,
}

/// Splits the multi-row INSERT planned in `stmt` by shard (parts sorted by
/// shard index).
pub fn split_insert(
    stmt: &StmtPlan,
    params: &Params<'_>,
    map: &ShardMap,
) -> Result<Vec<InsertPart>, RouteError> {
    let not_multi = || {
        RouteError::new(
            "XX000",
            "split_insert called on a plan that is not a multi-row INSERT",
        )
    };
    let Target::InsertMulti {
        group,
        key_type,
        rows,
    } = &stmt.target
    else {
        return Err(not_multi());
    };
    let Some(Statement::Insert(ins)) = stmt.insert_ast.as_deref() else {
        return Err(not_multi());
    };
    let Some(SetExpr::Values(values)) = ins.source.as_ref().map(|q| q.body.as_ref()) else {
        return Err(not_multi());
    };
    if *group >= map.groups().len() || rows.len() != values.rows.len() {
        return Err(RouteError::new(
            "XX000",
            "the shard map changed since this statement was planned; prepare it again",
        ));
    }
    // Row indexes per shard, in row order.
    let mut by_shard: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, k) in rows.iter().enumerate() {
        let shard = map.shard_for(*group, &key_value(k, *key_type, params)?);
        match by_shard.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, v)) => v.push(i),
            None => by_shard.push((shard, vec![i])),
        }
    }
    by_shard.sort_by_key(|(s, _)| *s);
    // The statement without its source, and the source without its rows:
    // each part clones these small pieces and its own rows.
    let mut base: Insert = ins.clone();
    let mut template = base.source.take().ok_or_else(not_multi)?;
    if let SetExpr::Values(v) = template.body.as_mut() {
        v.rows.clear();
    }
    let mut parts = Vec::with_capacity(by_shard.len());
    for (shard, idx) in by_shard {
        let mut source = template.clone();
        if let SetExpr::Values(v) = source.body.as_mut() {
            v.rows = idx.iter().map(|&i| values.rows[i].clone()).collect();
        }
        let mut part = Statement::Insert(Insert {
            source: Some(source),
            ..base.clone()
        });
        let params = renumber(&mut part);
        parts.push(InsertPart {
            shard,
            sql: part.to_string(),
            rows: idx,
            params,
        });
    }
    Ok(parts)
}

/// Renumbers `$n` placeholders to `$1…$k` in order of first appearance and
/// returns the original number of each new one.
fn renumber(stmt: &mut Statement) -> Vec<usize> {
    let mut order: Vec<usize> = Vec::new();
    let mut new_of: HashMap<usize, usize> = HashMap::new();
    let _ = sqlparser::ast::visit_expressions_mut(stmt, |e| {
        if let Expr::Value(v) = e {
            if let Value::Placeholder(p) = &mut v.value {
                if let Some(old) = param_number(p) {
                    let new = *new_of.entry(old).or_insert_with(|| {
                        order.push(old);
                        order.len()
                    });
                    *p = format!("${new}");
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    order
}

/// Keeps `VisitMut` in scope for `visit_expressions_mut`'s bound.
#[allow(dead_code)]
fn _assert_visit_mut<T: VisitMut>() {}
