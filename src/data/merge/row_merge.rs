//! Row mode's per-row work: ordering two shard rows by the statement's
//! ORDER BY (types, DESC, NULLS FIRST/LAST, collations), dropping rows seen
//! before (DISTINCT across shards, DISTINCT ON), skipping the OFFSET,
//! stopping at the LIMIT, and cutting the hidden columns off each row the
//! client gets. The k-way merge around it is in [`super::exec`]; rows are
//! compared where they lie in the shards' read buffers, never copied.

use std::cmp::Ordering;

use bytes::BytesMut;

use super::compare::ValueOrder;
use super::datarow::{push_prefix, value, Cols};
use super::layout::{Layout, Probe};
use super::value::EvalError;
use crate::data::planner::dist::{ColRef, DistPlan, RowDistinct, Shape};

struct Key {
    pos: usize,
    order: ValueOrder,
    desc: bool,
    nulls_first: bool,
}

enum Dedupe {
    None,
    /// Keys seen (DISTINCT, or DISTINCT ON without ORDER BY).
    Seen(hashbrown::HashSet<Box<[u8]>, foldhash::fast::RandomState>),
    /// The previous row's key (DISTINCT ON over rows sorted by it).
    Adjacent(Option<Vec<u8>>),
}

pub struct RowMerge {
    keys: Vec<Key>,
    dedupe: Dedupe,
    dedupe_cols: Vec<(usize, ValueOrder)>,
    visible: usize,
    offset: u64,
    limit: Option<u64>,
    skipped: u64,
    pub emitted: u64,
    memory: usize,
    cap: usize,
    key_buf: Vec<u8>,
}

/// What the merge wants after a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    More,
    /// The LIMIT is reached: read no more rows.
    Full,
}

impl RowMerge {
    pub fn new(
        plan: &DistPlan,
        layout: &Layout,
        probe: &Probe,
        offset: u64,
        limit: Option<u64>,
        cap: usize,
    ) -> Result<RowMerge, EvalError> {
        let Shape::Rows { order, distinct } = &plan.shape else {
            return Err(EvalError::new("XX000", "internal: not a row merge"));
        };
        let mut keys = Vec::new();
        for k in order {
            keys.push(Key {
                pos: layout.at(k.col),
                order: layout.order(plan, probe, k.col, "ordering")?,
                desc: k.desc,
                nulls_first: k.nulls_first,
            });
        }
        let (dedupe, cols) = match distinct {
            RowDistinct::None => (Dedupe::None, Vec::new()),
            RowDistinct::All { block } => {
                let cols = (0..layout.visible)
                    .map(|n| {
                        let c = ColRef::Copy { block: *block, n };
                        Ok((
                            layout.at(c),
                            layout.equality(plan, probe, c, "DISTINCT over")?,
                        ))
                    })
                    .collect::<Result<Vec<_>, EvalError>>()?;
                (Dedupe::Seen(Default::default()), cols)
            }
            RowDistinct::On(on) => {
                let cols = on
                    .iter()
                    .map(|&c| {
                        Ok((
                            layout.at(c),
                            layout.equality(plan, probe, c, "DISTINCT ON")?,
                        ))
                    })
                    .collect::<Result<Vec<_>, EvalError>>()?;
                if keys.is_empty() {
                    (Dedupe::Seen(Default::default()), cols)
                } else {
                    (Dedupe::Adjacent(None), cols)
                }
            }
        };
        Ok(RowMerge {
            keys,
            dedupe,
            dedupe_cols: cols,
            visible: layout.visible,
            offset,
            limit,
            skipped: 0,
            emitted: 0,
            memory: 0,
            cap,
            key_buf: Vec::new(),
        })
    }

    /// Whether rows are merged by ORDER BY (else concatenated).
    pub fn ordered(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether the LIMIT is already reached (LIMIT 0).
    pub fn full(&self) -> bool {
        self.limit.is_some_and(|l| self.emitted >= l)
    }

    /// The statement's order of two shard rows.
    pub fn cmp(&self, a: &[u8], ca: &Cols, b: &[u8], cb: &Cols) -> Result<Ordering, EvalError> {
        for k in &self.keys {
            let (x, y) = (value(a, ca, k.pos), value(b, cb, k.pos));
            let o = match (x, y) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => {
                    if k.nulls_first {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                (Some(_), None) => {
                    if k.nulls_first {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                (Some(x), Some(y)) => {
                    let o = k.order.cmp(x, y)?;
                    if k.desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if o != Ordering::Equal {
                return Ok(o);
            }
        }
        Ok(Ordering::Equal)
    }

    /// Takes the next row in output order: appends it to `out` unless it is
    /// a duplicate or inside the OFFSET.
    pub fn take(
        &mut self,
        frame: &[u8],
        cols: &Cols,
        out: &mut BytesMut,
    ) -> Result<Step, EvalError> {
        if self.full() {
            return Ok(Step::Full);
        }
        if !matches!(self.dedupe, Dedupe::None) {
            self.key_buf.clear();
            for (pos, order) in &self.dedupe_cols {
                match value(frame, cols, *pos) {
                    None => self.key_buf.push(0),
                    Some(v) => {
                        self.key_buf.push(1);
                        order.key(v, &mut self.key_buf)?;
                    }
                }
            }
            match &mut self.dedupe {
                Dedupe::Seen(seen) => {
                    if seen.contains(self.key_buf.as_slice()) {
                        return Ok(Step::More);
                    }
                    self.memory += self.key_buf.len() + 32;
                    if self.memory > self.cap {
                        return Err(EvalError::new(
                            "54000",
                            format!(
                                "the cross-shard DISTINCT of this query needs more than merge.memory_limit_bytes ({} bytes)",
                                self.cap
                            ),
                        ));
                    }
                    seen.insert(self.key_buf.as_slice().into());
                }
                Dedupe::Adjacent(last) => {
                    if last.as_deref() == Some(self.key_buf.as_slice()) {
                        return Ok(Step::More);
                    }
                    *last = Some(self.key_buf.clone());
                }
                Dedupe::None => {}
            }
        }
        if self.skipped < self.offset {
            self.skipped += 1;
            return Ok(Step::More);
        }
        push_prefix(frame, cols, self.visible, out);
        self.emitted += 1;
        Ok(if self.full() { Step::Full } else { Step::More })
    }
}
