//! Hash GROUP BY over the shards' partial groups: rows with equal group
//! keys (equal as Postgres's `=` says: `1.0` = `1.00`, `-0` = `0`, text
//! bytes under a deterministic collation) are combined; then HAVING, the
//! outputs, ORDER BY and LIMIT are applied to the merged groups. Memory is
//! O(groups) and capped (`merge.memory_limit_bytes`): past the cap the query
//! fails with 54000 rather than exhausting the proxy.

use std::cmp::Ordering;

use bytes::BytesMut;

use super::agg_state::{AggKind, AggState};
use super::compare::{TextOrder, ValueOrder};
use super::datarow::{columns, value, Cols, Field, RowBuilder};
use super::eval::{eval, infer, Env, UNKNOWN};
use super::layout::{Layout, Probe};
use super::types::{type_name, Kind};
use super::value::{cmp_values, EvalError, Value};
use crate::data::planner::dist::{ColRef, DistPlan, GroupPlan, MExpr};

/// One aggregate of the execution.
struct Agg {
    kind: AggKind,
    /// Shard column positions of its partial inputs.
    inputs: Vec<usize>,
    /// Slots that take the winning row's values (min/max outputs).
    carry: Vec<usize>,
}

struct Group {
    aggs: Vec<AggState>,
    /// Values of the plan columns the outputs read (see `GroupMerge::slots`).
    vals: Vec<Option<Box<[u8]>>>,
}

/// Bytes a group costs beyond its key and values (states, vectors, the
/// hash table entry): an estimate for the memory cap.
const GROUP_OVERHEAD: usize = 96;

pub struct GroupMerge<'p> {
    plan: &'p GroupPlan,
    layout: &'p Layout,
    efd: i32,
    keys: Vec<(usize, ValueOrder)>,
    aggs: Vec<Agg>,
    /// Plan column → slot in `Group::vals`, for the columns outputs read.
    slots: Vec<Option<usize>>,
    /// Per slot: its shard column position, and whether it follows the
    /// group's first row (else a min/max winner).
    slot_pos: Vec<(usize, bool)>,
    /// Text order of each ORDER BY key (from its source column).
    order_text: Vec<Option<TextOrder>>,
    map: hashbrown::HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>,
    groups: Vec<Group>,
    memory: usize,
    cap: usize,
    key_buf: Vec<u8>,
    cols: Cols,
}

/// Collects the plan columns an expression reads (Col and Carry).
fn refs(e: &MExpr, out: &mut Vec<usize>) {
    match e {
        MExpr::Col(c) | MExpr::Carry(c) => out.push(*c),
        MExpr::Agg(_) | MExpr::Lit(_) => {}
        MExpr::Binary(_, a, b) => {
            refs(a, out);
            refs(b, out);
        }
        MExpr::Neg(x) | MExpr::Not(x) | MExpr::IsNull(x, _) | MExpr::Cast(x, _) => refs(x, out),
        MExpr::Func(_, args) => args.iter().for_each(|a| refs(a, out)),
        MExpr::Case { whens, otherwise } => {
            for (c, r) in whens {
                refs(c, out);
                refs(r, out);
            }
            if let Some(o) = otherwise {
                refs(o, out);
            }
        }
    }
}

/// Types only (for checking before any group exists).
struct Types<'a>(&'a GroupMerge<'a>);

impl Env for Types<'_> {
    fn agg(&self, _: usize) -> Result<Value, EvalError> {
        Ok(Value::Null)
    }
    fn col(&self, _: usize) -> Result<Value, EvalError> {
        Ok(Value::Null)
    }
    fn col_type(&self, i: usize) -> u32 {
        self.0.layout.types[self.0.layout.pos[i]]
    }
    fn agg_type(&self, i: usize) -> Result<u32, EvalError> {
        Ok(self.0.aggs[i].kind.result_type())
    }
}

struct GroupEnv<'a> {
    m: &'a GroupMerge<'a>,
    g: &'a Group,
}

impl Env for GroupEnv<'_> {
    fn agg(&self, i: usize) -> Result<Value, EvalError> {
        self.g.aggs[i].value(&self.m.aggs[i].kind)
    }
    fn col(&self, i: usize) -> Result<Value, EvalError> {
        let slot = self.m.slots[i].ok_or_else(|| EvalError::new("XX000", "internal: no slot"))?;
        let t = self.col_type(i);
        Ok(Value::decode(t, self.g.vals[slot].as_deref())?)
    }
    fn col_type(&self, i: usize) -> u32 {
        self.m.layout.types[self.m.layout.pos[i]]
    }
    fn agg_type(&self, i: usize) -> Result<u32, EvalError> {
        Ok(self.m.aggs[i].kind.result_type())
    }
}

fn memory_error(cap: usize) -> EvalError {
    EvalError::new(
        "54000",
        format!(
            "the cross-shard merge of this query needs more than merge.memory_limit_bytes ({cap} bytes) for its groups"
        ),
    )
}

/// The text order of an ORDER BY key that reads one column's values.
fn source_col(e: &MExpr, plan: &GroupPlan) -> Option<usize> {
    match e {
        MExpr::Col(c) => Some(*c),
        MExpr::Agg(a) => match plan.aggs[*a].func {
            crate::data::planner::dist::AggFunc::Min | crate::data::planner::dist::AggFunc::Max => {
                plan.aggs[*a].inputs.first().copied()
            }
            _ => None,
        },
        _ => None,
    }
}

impl<'p> GroupMerge<'p> {
    pub fn new(
        dist: &'p DistPlan,
        plan: &'p GroupPlan,
        layout: &'p Layout,
        probe: &Probe,
        fields: &[Field],
        cap: usize,
    ) -> Result<GroupMerge<'p>, EvalError> {
        let mut keys = Vec::new();
        for &k in &plan.keys {
            let order = layout.equality(dist, probe, ColRef::Col(k), "grouping")?;
            keys.push((layout.pos[k], order));
        }
        let mut aggs = Vec::new();
        for a in &plan.aggs {
            let types: Vec<u32> = a
                .inputs
                .iter()
                .map(|&i| layout.types[layout.pos[i]])
                .collect();
            let order = match a.func {
                crate::data::planner::dist::AggFunc::Min
                | crate::data::planner::dist::AggFunc::Max => {
                    Some(layout.order(dist, probe, ColRef::Col(a.inputs[0]), &a.sql)?)
                }
                _ => None,
            };
            let kind = AggKind::new(a, &types, order)?;
            aggs.push(Agg {
                kind,
                inputs: a.inputs.iter().map(|&i| layout.pos[i]).collect(),
                carry: Vec::new(),
            });
        }
        let mut read = Vec::new();
        for e in plan
            .outputs
            .iter()
            .chain(plan.having.iter())
            .chain(plan.order.iter().map(|(e, _, _)| e))
        {
            refs(e, &mut read);
        }
        let mut slots = vec![None; dist.cols.len()];
        let mut slot_pos = Vec::new();
        for c in read {
            if slots[c].is_none() {
                let winner = plan.aggs.iter().position(|a| a.carry.contains(&c));
                slots[c] = Some(slot_pos.len());
                if let Some(a) = winner {
                    aggs[a].carry.push(slot_pos.len());
                }
                slot_pos.push((layout.pos[c], winner.is_none()));
            }
        }
        let mut order_text = Vec::new();
        for (e, _, _) in &plan.order {
            order_text.push(match source_col(e, plan) {
                Some(c) if Kind::collatable_type(layout.types[layout.pos[c]]) => {
                    match layout.order(dist, probe, ColRef::Col(c), "ordering")?.text {
                        t @ TextOrder::Icu(_) => Some(t),
                        TextOrder::Bytes => Some(TextOrder::Bytes),
                    }
                }
                _ => None,
            });
        }
        let m = GroupMerge {
            plan,
            layout,
            efd: probe.extra_float_digits,
            keys,
            aggs,
            slots,
            slot_pos,
            order_text,
            map: Default::default(),
            groups: Vec::new(),
            memory: 0,
            cap,
            key_buf: Vec::new(),
            cols: Cols::new(),
        };
        m.check_types(fields)?;
        Ok(m)
    }

    /// Refuses before any row is read when an output's type would differ
    /// from the one Postgres described.
    fn check_types(&self, fields: &[Field]) -> Result<(), EvalError> {
        if fields.len() != self.plan.outputs.len() {
            return Err(EvalError::new(
                "XX000",
                "internal: the statement's columns and the merge's outputs differ in number",
            ));
        }
        let env = Types(self);
        for (e, f) in self.plan.outputs.iter().zip(fields) {
            if let MExpr::Carry(_) = e {
                continue;
            }
            let t = infer(e, &env)?;
            if t != f.type_oid && t != UNKNOWN {
                return Err(EvalError::unsupported(format!(
                    "an output Postgres types as {} that shardproxy would compute as {}",
                    type_name(f.type_oid),
                    type_name(t)
                )));
            }
        }
        for e in self
            .plan
            .having
            .iter()
            .chain(self.plan.order.iter().map(|(e, _, _)| e))
        {
            infer(e, &env)?;
        }
        Ok(())
    }

    /// Folds one shard row (a DataRow frame) into its group.
    pub fn add(&mut self, frame: &[u8]) -> Result<(), EvalError> {
        columns(frame, &mut self.cols)?;
        self.key_buf.clear();
        for (pos, order) in &self.keys {
            match value(frame, &self.cols, *pos) {
                None => self.key_buf.push(0),
                Some(v) => {
                    self.key_buf.push(1);
                    order.key(v, &mut self.key_buf)?;
                }
            }
        }
        let g = match self.map.get(self.key_buf.as_slice()) {
            Some(&g) => g as usize,
            None => {
                let vals: Vec<Option<Box<[u8]>>> = self
                    .slot_pos
                    .iter()
                    .map(|&(pos, first)| {
                        first
                            .then(|| value(frame, &self.cols, pos).map(Box::from))
                            .flatten()
                    })
                    .collect();
                let aggs: Vec<AggState> =
                    self.aggs.iter().map(|a| AggState::new(&a.kind)).collect();
                self.memory += GROUP_OVERHEAD
                    + 2 * self.key_buf.len()
                    + vals.iter().flatten().map(|v| v.len() + 16).sum::<usize>()
                    + aggs.iter().map(AggState::size).sum::<usize>();
                if self.memory > self.cap {
                    return Err(memory_error(self.cap));
                }
                self.groups.push(Group { aggs, vals });
                let g = self.groups.len() - 1;
                self.map.insert(self.key_buf.as_slice().into(), g as u32);
                g
            }
        };
        let mut inputs: smallvec::SmallVec<[Option<&[u8]>; 4]> = smallvec::SmallVec::new();
        for (i, a) in self.aggs.iter().enumerate() {
            inputs.clear();
            inputs.extend(a.inputs.iter().map(|&p| value(frame, &self.cols, p)));
            let group = &mut self.groups[g];
            if group.aggs[i].add(&a.kind, &inputs)? {
                for &slot in &a.carry {
                    let pos = self.slot_pos[slot].0;
                    let new = value(frame, &self.cols, pos).map(Box::<[u8]>::from);
                    // The old value's bytes are not subtracted: an estimate
                    // that errs towards the cap.
                    self.memory += new.as_ref().map_or(0, |v| v.len());
                    group.vals[slot] = new;
                }
            }
        }
        if self.memory > self.cap {
            return Err(memory_error(self.cap));
        }
        Ok(())
    }

    /// Appends the merged groups' output rows (DataRow frames) in output
    /// order, after HAVING, OFFSET and LIMIT; returns how many.
    pub fn finish(
        &mut self,
        fields: &[Field],
        binary: &dyn Fn(usize) -> bool,
        offset: u64,
        limit: Option<u64>,
        out: &mut BytesMut,
    ) -> Result<u64, EvalError> {
        if self.plan.keys.is_empty() && self.groups.is_empty() {
            // A scalar aggregate over no shard rows still has its one row.
            self.groups.push(Group {
                aggs: self.aggs.iter().map(|a| AggState::new(&a.kind)).collect(),
                vals: vec![None; self.slot_pos.len()],
            });
        }
        let me: &GroupMerge = self;
        let mut chosen: Vec<(usize, Vec<Value>)> = Vec::new();
        for (i, g) in me.groups.iter().enumerate() {
            let env = GroupEnv { m: me, g };
            if let Some(h) = &me.plan.having {
                if eval(h, &env, me.efd)? != Value::Bool(true) {
                    continue;
                }
            }
            let keys = me
                .plan
                .order
                .iter()
                .map(|(e, _, _)| eval(e, &env, me.efd))
                .collect::<Result<Vec<_>, _>>()?;
            chosen.push((i, keys));
        }
        if !me.plan.order.is_empty() {
            let mut failed = None;
            chosen.sort_by(|a, b| {
                for (k, (_, desc, nulls_first)) in me.plan.order.iter().enumerate() {
                    let (x, y) = (&a.1[k], &b.1[k]);
                    let o = match (x.is_null(), y.is_null()) {
                        (true, true) => Ordering::Equal,
                        (true, false) => {
                            if *nulls_first {
                                Ordering::Less
                            } else {
                                Ordering::Greater
                            }
                        }
                        (false, true) => {
                            if *nulls_first {
                                Ordering::Greater
                            } else {
                                Ordering::Less
                            }
                        }
                        (false, false) => match cmp_values(x, y, me.order_text[k].as_ref()) {
                            Ok(o) if *desc => o.reverse(),
                            Ok(o) => o,
                            Err(e) => {
                                failed.get_or_insert(e);
                                Ordering::Equal
                            }
                        },
                    };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            });
            if let Some(e) = failed {
                return Err(e);
            }
        }
        let start = (offset as usize).min(chosen.len());
        let end = match limit {
            Some(l) => start.saturating_add(l as usize).min(chosen.len()),
            None => chosen.len(),
        };
        let mut row = RowBuilder::new();
        for (g, _) in &chosen[start..end] {
            let group = &me.groups[*g];
            let env = GroupEnv { m: me, g: group };
            for (i, (e, f)) in me.plan.outputs.iter().zip(fields).enumerate() {
                match e {
                    MExpr::Carry(c) => match me.slots[*c].and_then(|s| group.vals[s].as_deref()) {
                        Some(v) => row.bytes(v),
                        None => row.null(),
                    },
                    e => {
                        let v = eval(e, &env, me.efd)?;
                        row.with(|buf| v.encode(f.type_oid, binary(i), me.efd, buf))?;
                    }
                }
            }
            row.finish(out);
        }
        Ok((end - start) as u64)
    }
}
