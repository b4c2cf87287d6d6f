//! Where a distributed plan's columns are in the shards' rows, their types,
//! and how the merge orders and groups them, for one execution: resolved
//! from the shards' RowDescription (the visible column count, from the
//! statement's own description) and the probe's collations.

use super::collation::{describe, text_order, CollationInfo};
use super::compare::{TextOrder, ValueOrder};
use super::types::{type_name, Kind};
use super::value::EvalError;
use crate::data::planner::dist::{ColFormat, ColRef, DistPlan};

/// What the probe reported (see `planner::distributed::render::probe`).
#[derive(Debug, Clone)]
pub struct Probe {
    pub extra_float_digits: i32,
    pub db: CollationInfo,
    pub nondeterministic: i64,
    /// Per probed column (the plan's `probe_cols`), its collation if it has one.
    pub cols: Vec<Option<CollationInfo>>,
}

impl Probe {
    /// Parses the probe's row (text values).
    pub fn parse(values: &[Option<&[u8]>]) -> Option<Probe> {
        let text = |i: usize| {
            values
                .get(i)
                .copied()
                .flatten()
                .map(String::from_utf8_lossy)
        };
        Some(Probe {
            extra_float_digits: text(0)?.trim().parse().ok()?,
            db: describe(&text(1)?)?,
            nondeterministic: text(2)?.trim().parse().ok()?,
            cols: (3..values.len())
                .map(|i| text(i).and_then(|t| describe(&t)))
                .collect(),
        })
    }
}

/// The shard columns of one execution.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Output columns of the statement.
    pub visible: usize,
    /// Shard column index of each plan column (the start of a copy block).
    pub pos: Vec<usize>,
    /// Type OID of each shard column.
    pub types: Vec<u32>,
}

impl Layout {
    /// The layout for `plan` when the statement has `visible` output columns.
    pub fn new(plan: &DistPlan, visible: usize) -> Layout {
        let mut at = if plan.visible_prefix { visible } else { 0 };
        let mut pos = Vec::with_capacity(plan.cols.len());
        for c in &plan.cols {
            pos.push(at);
            at += match c.format {
                ColFormat::VisibleCopy => visible,
                _ => 1,
            };
        }
        Layout {
            visible,
            pos,
            types: vec![0; at],
        }
    }

    /// How many columns the shard query returns.
    pub fn width(&self) -> usize {
        self.types.len()
    }

    pub fn at(&self, c: ColRef) -> usize {
        match c {
            ColRef::Col(i) => self.pos[i],
            ColRef::Copy { block, n } => self.pos[block] + n,
        }
    }

    /// The result format of every shard column, given the client's format
    /// for each output column.
    pub fn formats(&self, plan: &DistPlan, client: impl Fn(usize) -> i16) -> Vec<i16> {
        let mut f = Vec::with_capacity(self.width());
        if plan.visible_prefix {
            f.extend((0..self.visible).map(&client));
        }
        for c in &plan.cols {
            match c.format {
                ColFormat::Binary => f.push(1),
                ColFormat::Client(i) => f.push(client(i)),
                ColFormat::VisibleCopy => f.extend(std::iter::repeat_n(1, self.visible)),
            }
        }
        f
    }

    /// The order of plan column `col`'s values, text by its collation.
    pub fn order(
        &self,
        plan: &DistPlan,
        probe: &Probe,
        c: ColRef,
        what: &str,
    ) -> Result<ValueOrder, EvalError> {
        let t = self.types[self.at(c)];
        let kind = Kind::of(t).ok_or_else(|| {
            EvalError::unsupported(format!("{what} {} values across shards", type_name(t)))
        })?;
        let text = if kind.collatable() {
            match c {
                ColRef::Col(i) => {
                    let slot = plan.probe_cols.iter().position(|&p| p == i);
                    let coll = slot.and_then(|s| probe.cols.get(s).cloned().flatten());
                    match coll {
                        Some(coll) => text_order(&coll, &probe.db).map_err(|why| {
                            EvalError::unsupported(format!("{what} text by {why} across shards"))
                        })?,
                        None => {
                            return Err(EvalError::unsupported(format!(
                                "{what} text of unknown collation across shards"
                            )))
                        }
                    }
                }
                // Copies of the select list are only compared for equality.
                ColRef::Copy { .. } => self.equality_text(probe, what)?,
            }
        } else {
            TextOrder::Bytes
        };
        Ok(ValueOrder::new(kind, text))
    }

    /// How plan column `col`'s values are grouped (equality only): text
    /// is equal exactly when its bytes are under a deterministic collation.
    pub fn equality(
        &self,
        plan: &DistPlan,
        probe: &Probe,
        c: ColRef,
        what: &str,
    ) -> Result<ValueOrder, EvalError> {
        let t = self.types[self.at(c)];
        let kind = Kind::of(t).ok_or_else(|| {
            EvalError::unsupported(format!("{what} {} values across shards", type_name(t)))
        })?;
        if kind.collatable() {
            let coll = match c {
                ColRef::Col(i) => plan
                    .probe_cols
                    .iter()
                    .position(|&p| p == i)
                    .and_then(|s| probe.cols.get(s).cloned().flatten()),
                ColRef::Copy { .. } => None,
            };
            match coll {
                Some(coll) => {
                    let c = if coll.provider == 'd' {
                        &probe.db
                    } else {
                        &coll
                    };
                    if !c.deterministic {
                        return Err(EvalError::unsupported(format!(
                            "{what} text by a nondeterministic collation across shards"
                        )));
                    }
                }
                None => {
                    self.equality_text(probe, what)?;
                }
            }
        }
        Ok(ValueOrder::new(kind, TextOrder::Bytes))
    }

    /// For equality only (DISTINCT over the select list): text is equal
    /// exactly when its bytes are, unless a collation is nondeterministic.
    fn equality_text(&self, probe: &Probe, what: &str) -> Result<TextOrder, EvalError> {
        if probe.nondeterministic > 0 {
            return Err(EvalError::unsupported(format!(
                "{what} text across shards in a database with nondeterministic collations"
            )));
        }
        Ok(TextOrder::Bytes)
    }
}
