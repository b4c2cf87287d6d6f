//! Where a statement runs: its cached plan, the session's routing hints
//! (`SET shardproxy.shard` / `SET shardproxy.shard_key`), the shard map.

use super::fanout::FanMode;
use super::Session;
use crate::data::codec::error::sqlstate;
use crate::data::codec::SqlError;
use crate::data::load::tally::Hit;
use crate::data::planner::{
    resolve_stmt_keyed, CopySpec, FanOut, Hint, MergeSpec, Params, Plan, Route, StmtKind, StmtPlan,
    Target,
};

/// What the session does with a statement.
#[derive(Debug)]
pub(super) enum Dispatch {
    /// Relay to one shard.
    One(usize),
    /// Any one shard will do (no sharded table involved): the session's current one.
    Any,
    /// Run on several shards.
    Fan { shards: Vec<usize>, mode: FanMode },
    /// A multi-row INSERT whose rows belong to several shards (statement 0 of the plan).
    SplitInsert,
    /// `COPY … FROM STDIN` into a sharded table: rows split by key; `None`:
    /// into a reference table, every row to every shard.
    SplitCopy(Option<CopySpec>),
    /// COMMIT or ROLLBACK of a transaction spanning shards.
    EndMulti { commit: bool },
    /// An extended-protocol pipeline whose statements go to several shards
    /// (or one statement split per shard): see `session/pipeline.rs`.
    Pipeline,
}

impl From<crate::data::planner::RouteError> for SqlError {
    fn from(e: crate::data::planner::RouteError) -> SqlError {
        SqlError::new(e.sqlstate, e.message)
    }
}

impl Session {
    /// The session-level hint, if any (`SET shardproxy.shard` wins).
    fn session_hint(&self) -> Option<Hint> {
        if let Some(i) = self.hint_shard {
            return self.rt.pools.get(i).map(|p| Hint::Shard(p.name.clone()));
        }
        self.hint_key.clone().map(Hint::ShardKey)
    }

    /// Decides how to run `plan` (all of a simple query's statements, or one
    /// prepared statement with its Bind parameters). A statement routed by
    /// one key leaves that key in `note`, for load accounting.
    pub(super) fn dispatch(
        &self,
        plan: &Plan,
        params: &Params<'_>,
        note: &mut Option<Hit>,
    ) -> Result<Dispatch, SqlError> {
        let hint = self.session_hint();
        let mut single: Option<usize> = None;
        if !self.others.is_empty() && plan.stmts.len() == 1 {
            match plan.stmts[0].kind {
                StmtKind::Commit => return Ok(Dispatch::EndMulti { commit: true }),
                StmtKind::Rollback => return Ok(Dispatch::EndMulti { commit: false }),
                StmtKind::Savepoint | StmtKind::Prepare2pc => {
                    return Err(SqlError::new(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "savepoints and PREPARE TRANSACTION are not supported in a transaction that spans shards",
                    ))
                }
                _ => {}
            }
        }
        for stmt in &plan.stmts {
            if stmt.kind == StmtKind::Ddl {
                // The column order of a table it changes is read again.
                if stmt.tables.is_empty() {
                    self.rt.planner.columns.clear();
                }
                for t in &stmt.tables {
                    self.rt.planner.columns.forget(t);
                }
            }
            let d = self.dispatch_stmt(stmt, plan, hint.as_ref(), params, note)?;
            match d {
                Dispatch::Any => {}
                Dispatch::One(s) if single.is_none_or(|c| c == s) => single = Some(s),
                Dispatch::One(_) => {
                    return Err(SqlError::new(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "the statements of this query string run on different shards",
                    )
                    .with_hint("Send statements for different shards one at a time."))
                }
                other if plan.stmts.len() == 1 => return Ok(other),
                _ => {
                    return Err(SqlError::new(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "a query string with several statements can only be routed to one shard; one of these statements spans shards",
                    )
                    .with_hint("Send the statements one at a time."))
                }
            }
        }
        Ok(single.map(Dispatch::One).unwrap_or(Dispatch::Any))
    }

    fn dispatch_stmt(
        &self,
        stmt: &StmtPlan,
        plan: &Plan,
        hint: Option<&Hint>,
        params: &Params<'_>,
        note: &mut Option<Hit>,
    ) -> Result<Dispatch, SqlError> {
        if let Some(what) = stmt.session_state {
            return Err(SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("{what} is not supported through shardproxy: its effect would outlive the transaction on a pooled backend"),
            )
            .with_hint("Use the transaction-scoped form (pg_advisory_xact_lock, temp tables ON COMMIT DROP) or connect to the shard directly."));
        }
        // Without a hint (the common case) the cached target is used as is,
        // with no per-statement copy.
        let hinted_target = hint.map(|h| stmt.hinted(h)).filter(|t| *t != stmt.target);
        let target: &Target = hinted_target.as_ref().unwrap_or(&stmt.target);
        let nshards = self.rt.pools.len();
        match target {
            Target::Refused { sqlstate, message } => Err(SqlError::new(sqlstate, message.clone())),
            Target::Named(name) => Ok(Dispatch::One(self.shard_by_name(name)?)),
            Target::AnyShard => Ok(Dispatch::Any),
            Target::Unparsed {
                read_only_guess,
                error,
            } => {
                let forced = match (&plan.hint, hint) {
                    (Some(Hint::Shard(n)), _) | (_, Some(Hint::Shard(n))) => Some(n),
                    _ => None,
                };
                if let Some(name) = forced {
                    Ok(Dispatch::One(self.shard_by_name(name)?))
                } else if nshards == 1 {
                    Ok(Dispatch::One(0))
                } else if *read_only_guess {
                    Ok(Dispatch::Fan {
                        shards: (0..nshards).collect(),
                        mode: FanMode::Maintenance,
                    })
                } else {
                    Err(SqlError::new(
                        sqlstate::SYNTAX_ERROR,
                        format!("shardproxy cannot parse this statement, so it cannot route it safely: {error}"),
                    )
                    .with_hint("Rewrite it in plain SQL, or send it to one shard with a /* shard=NAME */ comment."))
                }
            }
            Target::Keyed { .. }
            | Target::InsertMulti { .. }
            | Target::AllShards(_)
            | Target::CopyIn(_) => {
                // Resolve the hinted target: a session hint (SET shardproxy.shard_key)
                // may have turned a fan-out into a keyed route.
                let hinted;
                let stmt = match &hinted_target {
                    Some(t) => {
                        hinted = StmtPlan {
                            target: t.clone(),
                            ..stmt.clone()
                        };
                        &hinted
                    }
                    None => stmt,
                };
                let mut key = None;
                let shards = match resolve_stmt_keyed(stmt, params, &self.rt.map, &mut key)? {
                    Route::Shard(s) => {
                        *note = key.as_ref().map(Hit::of);
                        return Ok(Dispatch::One(s));
                    }
                    Route::Any => return Ok(Dispatch::Any),
                    Route::Shards(v) => v,
                    Route::All => (0..nshards).collect(),
                };
                if shards.len() == 1 {
                    return Ok(Dispatch::One(shards[0]));
                }
                Ok(match target {
                    Target::InsertMulti { .. } => Dispatch::SplitInsert,
                    Target::CopyIn(spec) => Dispatch::SplitCopy(Some(spec.clone())),
                    Target::AllShards(FanOut::ReferenceWrite)
                        if stmt.kind == StmtKind::CopyFrom =>
                    {
                        Dispatch::SplitCopy(None)
                    }
                    Target::AllShards(FanOut::Maintenance) => Dispatch::Fan {
                        shards,
                        mode: FanMode::Maintenance,
                    },
                    Target::AllShards(FanOut::ReferenceWrite) => Dispatch::Fan {
                        shards,
                        mode: FanMode::Copies,
                    },
                    Target::AllShards(FanOut::Ddl) => Dispatch::Fan {
                        shards,
                        mode: FanMode::Ddl,
                    },
                    Target::AllShards(FanOut::Read) => read_fan(stmt, shards)?,
                    Target::Keyed { .. } if stmt.read_only => read_fan(stmt, shards)?,
                    _ => {
                        // SELECT … FOR UPDATE and SELECTs with data-modifying
                        // CTEs run in a transaction on every shard, but their
                        // rows are still concatenated.
                        if stmt.kind == StmtKind::Select {
                            if let Some(what) = stmt.merge.as_ref().and_then(unmerged_construct) {
                                return Err(unmerged_error(what));
                            }
                        }
                        Dispatch::Fan {
                            shards,
                            mode: FanMode::Atomic,
                        }
                    }
                })
            }
        }
    }

    /// The shard when nothing in the statement says otherwise.
    pub(super) fn default_shard(&self) -> usize {
        if self.lease.is_some() {
            self.lease_shard
        } else {
            self.hint_shard.unwrap_or(0)
        }
    }

    pub(super) fn shard_by_name(&self, name: &str) -> Result<usize, SqlError> {
        self.rt
            .pools
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| {
                SqlError::new(
                    sqlstate::INVALID_TEXT,
                    format!("routing hint names unknown shard \"{name}\""),
                )
                .with_hint(format!(
                    "Known shards: {}.",
                    self.rt
                        .pools
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

/// A read that runs on several shards: merged by its distributed plan, or
/// concatenated shard after shard when that is the right answer.
fn read_fan(stmt: &StmtPlan, shards: Vec<usize>) -> Result<Dispatch, SqlError> {
    // The planner made a merge plan for every read whose shard results
    // cannot simply be concatenated (or refused it).
    let mode = match &stmt.dist {
        Some(d) => FanMode::Merge(d.clone()),
        None => FanMode::Read,
    };
    Ok(Dispatch::Fan { shards, mode })
}

fn unmerged_error(what: &str) -> SqlError {
    SqlError::new(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!("{what} across shards is not supported yet: this query reads every shard (no shard key in WHERE)"),
    )
    .with_hint("Add the shard key to WHERE (or a /* shard_key=… */ hint) to run it on one shard; cross-shard merging is planned.")
}

/// The first top-level construct of a read whose per-shard results cannot
/// simply be concatenated.
pub(super) fn unmerged_construct(m: &MergeSpec) -> Option<&'static str> {
    if m.group_by {
        Some("GROUP BY")
    } else if m.having {
        Some("HAVING")
    } else if m.aggregates {
        Some("an aggregate function")
    } else if m.distinct {
        Some("DISTINCT (or UNION)")
    } else if !m.order_by.is_empty() {
        Some("ORDER BY")
    } else if m.limit.is_some() {
        Some("LIMIT")
    } else if m.offset.is_some() {
        Some("OFFSET")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::planner::{KeySource, OrderKey};

    #[test]
    fn names_the_first_unmerged_construct() {
        let mut m = MergeSpec::default();
        assert_eq!(unmerged_construct(&m), None);
        m.offset = Some(KeySource::Literal("5".into()));
        assert_eq!(unmerged_construct(&m), Some("OFFSET"));
        m.limit = Some(KeySource::Param(1));
        assert_eq!(unmerged_construct(&m), Some("LIMIT"));
        m.order_by.push(OrderKey {
            expr: "id".into(),
            desc: false,
            nulls_first: false,
        });
        assert_eq!(unmerged_construct(&m), Some("ORDER BY"));
        m.distinct = true;
        assert_eq!(unmerged_construct(&m), Some("DISTINCT (or UNION)"));
        m.aggregates = true;
        assert_eq!(unmerged_construct(&m), Some("an aggregate function"));
        m.having = true;
        assert_eq!(unmerged_construct(&m), Some("HAVING"));
        m.group_by = true;
        assert_eq!(unmerged_construct(&m), Some("GROUP BY"));
    }
}
