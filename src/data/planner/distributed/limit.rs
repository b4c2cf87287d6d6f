//! LIMIT / OFFSET / FETCH of a read that spans shards: the counts the merge
//! applies after merging, and the `LIMIT n + m` each shard gets (a shard
//! never needs more rows than the merge's offset plus limit; OFFSET itself
//! is never pushed down, since the shards' rows interleave).

use sqlparser::ast::{Expr, LimitClause, Query, UnaryOperator, Value};

use super::spec::Count;

/// The statement's LIMIT and OFFSET.
pub(super) fn counts(q: &Query) -> Result<(Option<Count>, Option<Count>), String> {
    let (mut limit, mut offset) = (None, None);
    match &q.limit_clause {
        Some(LimitClause::LimitOffset {
            limit: l,
            offset: o,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return Err("LIMIT BY".into());
            }
            // LIMIT ALL parses as no limit expression.
            limit = Some(l.as_ref().map(count).transpose()?.unwrap_or(Count::All));
            offset = o.as_ref().map(|o| count(&o.value)).transpose()?;
        }
        Some(LimitClause::OffsetCommaLimit { .. }) => {
            return Err("LIMIT offset, count (MySQL syntax)".into())
        }
        None => {}
    }
    if let Some(f) = &q.fetch {
        if f.with_ties {
            return Err("FETCH … WITH TIES".into());
        }
        if f.percent {
            return Err("FETCH … PERCENT".into());
        }
        limit = Some(match &f.quantity {
            Some(e) => count(e)?,
            None => Count::Value(1),
        });
    }
    Ok((limit, offset))
}

/// A count: an integer literal, NULL (no limit) or a parameter.
fn count(e: &Expr) -> Result<Count, String> {
    match e {
        Expr::Nested(e) => count(e),
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n
                .parse::<i64>()
                .map(Count::Value)
                .map_err(|_| format!("LIMIT/OFFSET {n} (use an integer)")),
            Value::Null => Ok(Count::All),
            Value::Placeholder(p) => p
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n > 0)
                .map(Count::Param)
                .ok_or_else(|| format!("LIMIT/OFFSET parameter {p}")),
            _ => Err(format!("LIMIT/OFFSET {e} (use an integer or a parameter)")),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match count(expr)? {
            Count::Value(n) => Ok(Count::Value(-n)),
            _ => Err(format!("LIMIT/OFFSET {e} (use an integer or a parameter)")),
        },
        Expr::Cast { expr, .. } => match count(expr)? {
            c @ Count::Param(_) => Ok(c),
            _ => Err(format!("LIMIT/OFFSET {e} (use an integer or a parameter)")),
        },
        _ => Err(format!(
            "LIMIT/OFFSET expression {e} (use an integer or a parameter)"
        )),
    }
}

/// What the shards get: a literal `n + m`, a parameter the proxy binds
/// per execution, or nothing (no limit, or a negative literal that
/// Postgres rejects anyway).
pub(super) enum ShardLimit {
    None,
    Literal(i64),
    Param,
}

pub(super) fn shard_limit(limit: Option<Count>, offset: Option<Count>) -> ShardLimit {
    match (limit, offset) {
        (None | Some(Count::All), _) => ShardLimit::None,
        (Some(Count::Value(n)), None | Some(Count::All)) if n >= 0 => ShardLimit::Literal(n),
        (Some(Count::Value(n)), Some(Count::Value(m))) if n >= 0 && m >= 0 => {
            ShardLimit::Literal(n.saturating_add(m))
        }
        (Some(Count::Value(_)), Some(Count::Value(_))) => ShardLimit::None,
        (Some(Count::Value(n)), _) if n < 0 => ShardLimit::None,
        _ => ShardLimit::Param,
    }
}
