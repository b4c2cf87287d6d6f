//! Combining the shards' partial aggregates of one group, exactly as
//! Postgres's own combine and final functions do (its parallel aggregation
//! merges worker states the same way): counts and integer sums add with
//! overflow checks, numeric sums add exactly, float sums add in float
//! arithmetic, `avg` is `numeric_div(sum, count)` (or `sum / count` for
//! floats), min/max compare by type and collation, variance follows
//! `numeric_stddev_internal`. The kind of each aggregate is fixed per
//! execution from the partial columns' types; types it cannot combine
//! exactly are refused before any row is read.

use std::cmp::Ordering;

use super::compare::ValueOrder;
use super::numeric::Numeric;
use super::types::{oid, type_name};
use super::value::{EvalError, Value};
use crate::data::planner::dist::{AggFunc, AggSpec};

/// How one aggregate combines, given its partial columns' types.
#[derive(Debug, Clone)]
pub enum AggKind {
    Count,
    SumInt8,
    SumNumeric,
    SumFloat4,
    SumFloat8,
    Min(ValueOrder, u32),
    Max(ValueOrder, u32),
    /// avg from an int8 or numeric sum: numeric.
    AvgNumeric,
    AvgFloat8,
    BoolAnd,
    BoolOr,
    BitAnd(u32),
    BitOr(u32),
    Var {
        sample: bool,
        sqrt: bool,
    },
}

impl AggKind {
    /// The kind for `spec` whose partial columns have `types`; `order` is
    /// the order of the first partial column's values (for min/max).
    pub fn new(
        spec: &AggSpec,
        types: &[u32],
        order: Option<ValueOrder>,
    ) -> Result<AggKind, EvalError> {
        let refuse = |t: u32| {
            EvalError::unsupported(format!("{} over {} across shards", spec.sql, type_name(t)))
        };
        let t = types.first().copied().unwrap_or(0);
        Ok(match spec.func {
            AggFunc::Count => AggKind::Count,
            AggFunc::Sum => match t {
                oid::INT8 => AggKind::SumInt8,
                oid::NUMERIC => AggKind::SumNumeric,
                oid::FLOAT4 => AggKind::SumFloat4,
                oid::FLOAT8 => AggKind::SumFloat8,
                _ => return Err(refuse(t)),
            },
            AggFunc::Min | AggFunc::Max => {
                let order = order.ok_or_else(|| refuse(t))?;
                if spec.func == AggFunc::Min {
                    AggKind::Min(order, t)
                } else {
                    AggKind::Max(order, t)
                }
            }
            AggFunc::Avg => match t {
                oid::INT8 | oid::NUMERIC => AggKind::AvgNumeric,
                oid::FLOAT8 => AggKind::AvgFloat8,
                // avg(real) accumulates in double precision, its sum() in real.
                _ => return Err(refuse(t)),
            },
            AggFunc::BoolAnd => AggKind::BoolAnd,
            AggFunc::BoolOr => AggKind::BoolOr,
            AggFunc::BitAnd | AggFunc::BitOr => match t {
                oid::INT2 | oid::INT4 | oid::INT8 if spec.func == AggFunc::BitAnd => {
                    AggKind::BitAnd(t)
                }
                oid::INT2 | oid::INT4 | oid::INT8 => AggKind::BitOr(t),
                _ => return Err(refuse(t)),
            },
            AggFunc::Var { sample, sqrt } => match types.get(1).copied() {
                // Integer and numeric input: numeric sums, exact. Float input
                // is accumulated by Postgres in a way partial sums cannot reproduce.
                Some(oid::INT8 | oid::NUMERIC) => AggKind::Var { sample, sqrt },
                Some(t) => return Err(refuse(t)),
                None => return Err(refuse(0)),
            },
        })
    }

    /// The aggregate's result type.
    pub fn result_type(&self) -> u32 {
        match self {
            AggKind::Count | AggKind::SumInt8 => oid::INT8,
            AggKind::SumNumeric | AggKind::AvgNumeric | AggKind::Var { .. } => oid::NUMERIC,
            AggKind::SumFloat4 => oid::FLOAT4,
            AggKind::SumFloat8 | AggKind::AvgFloat8 => oid::FLOAT8,
            AggKind::Min(_, t) | AggKind::Max(_, t) => *t,
            AggKind::BoolAnd | AggKind::BoolOr => oid::BOOL,
            AggKind::BitAnd(t) | AggKind::BitOr(t) => *t,
        }
    }
}

/// One group's state of one aggregate.
#[derive(Debug, Clone)]
pub enum AggState {
    Int(Option<i64>),
    Num(Option<Numeric>),
    F4(Option<f32>),
    F8(Option<f64>),
    /// min/max: the best partial value so far (binary) and whether a new
    /// value just won (the caller then keeps that row's carried columns).
    Best(Option<Vec<u8>>),
    Bool(Option<bool>),
    /// avg: sum and count.
    Avg(Option<Numeric>, Option<f64>, i64),
    /// variance: count, sum, sum of squares.
    Var(i64, Numeric, Numeric),
}

fn int8(v: &[u8]) -> Result<i64, EvalError> {
    Ok(i64::from_be_bytes(
        v.try_into().map_err(|_| EvalError::malformed())?,
    ))
}

fn bigint_overflow() -> EvalError {
    EvalError::new("22003", "bigint out of range")
}

fn float_overflow() -> EvalError {
    EvalError::new("22003", "value out of range: overflow")
}

fn numeric(v: &[u8]) -> Result<Numeric, EvalError> {
    Numeric::from_binary(v).ok_or_else(EvalError::malformed)
}

/// A partial value of an integer-typed column, widened.
fn int_any(v: &[u8]) -> Result<i64, EvalError> {
    Ok(match v.len() {
        2 => i16::from_be_bytes([v[0], v[1]]) as i64,
        4 => i32::from_be_bytes([v[0], v[1], v[2], v[3]]) as i64,
        8 => int8(v)?,
        _ => return Err(EvalError::malformed()),
    })
}

impl AggState {
    pub fn new(kind: &AggKind) -> AggState {
        match kind {
            AggKind::Count => AggState::Int(Some(0)),
            AggKind::SumInt8 | AggKind::BitAnd(_) | AggKind::BitOr(_) => AggState::Int(None),
            AggKind::SumNumeric => AggState::Num(None),
            AggKind::SumFloat4 => AggState::F4(None),
            AggKind::SumFloat8 => AggState::F8(None),
            AggKind::Min(..) | AggKind::Max(..) => AggState::Best(None),
            AggKind::AvgNumeric | AggKind::AvgFloat8 => AggState::Avg(None, None, 0),
            AggKind::BoolAnd | AggKind::BoolOr => AggState::Bool(None),
            AggKind::Var { .. } => AggState::Var(0, Numeric::zero(), Numeric::zero()),
        }
    }

    /// The bytes this state holds (for the memory cap).
    pub fn size(&self) -> usize {
        std::mem::size_of::<AggState>()
            + match self {
                AggState::Best(Some(b)) => b.len(),
                AggState::Num(Some(_)) | AggState::Avg(Some(_), ..) | AggState::Var(..) => 32,
                _ => 0,
            }
    }

    /// Folds one shard row's partial values in (binary, None for NULL).
    /// Returns true when a min/max took this row's value.
    pub fn add(&mut self, kind: &AggKind, vals: &[Option<&[u8]>]) -> Result<bool, EvalError> {
        let v0 = vals.first().copied().flatten();
        match (self, kind) {
            (AggState::Int(acc), AggKind::Count) => {
                if let Some(v) = v0 {
                    let n = int8(v)?;
                    *acc = Some(
                        acc.unwrap_or(0)
                            .checked_add(n)
                            .ok_or_else(bigint_overflow)?,
                    );
                }
            }
            (AggState::Int(acc), AggKind::SumInt8) => {
                if let Some(v) = v0 {
                    let n = int8(v)?;
                    *acc = Some(match *acc {
                        None => n,
                        Some(a) => a.checked_add(n).ok_or_else(bigint_overflow)?,
                    });
                }
            }
            (AggState::Int(acc), AggKind::BitAnd(_) | AggKind::BitOr(_)) => {
                if let Some(v) = v0 {
                    let n = int_any(v)?;
                    *acc = Some(match (*acc, kind) {
                        (None, _) => n,
                        (Some(a), AggKind::BitAnd(_)) => a & n,
                        (Some(a), _) => a | n,
                    });
                }
            }
            (AggState::Num(acc), AggKind::SumNumeric) => {
                if let Some(v) = v0 {
                    let n = numeric(v)?;
                    *acc = Some(match acc.take() {
                        None => n,
                        Some(a) => a.add(&n),
                    });
                }
            }
            (AggState::F4(acc), AggKind::SumFloat4) => {
                if let Some(v) = v0 {
                    let f = f32::from_be_bytes(v.try_into().map_err(|_| EvalError::malformed())?);
                    *acc = Some(match *acc {
                        None => f,
                        Some(a) => {
                            let r = a + f;
                            if r.is_infinite() && !a.is_infinite() && !f.is_infinite() {
                                return Err(float_overflow());
                            }
                            r
                        }
                    });
                }
            }
            (AggState::F8(acc), AggKind::SumFloat8) => {
                if let Some(v) = v0 {
                    let f = f64::from_be_bytes(v.try_into().map_err(|_| EvalError::malformed())?);
                    *acc = Some(match *acc {
                        None => f,
                        Some(a) => {
                            let r = a + f;
                            if r.is_infinite() && !a.is_infinite() && !f.is_infinite() {
                                return Err(float_overflow());
                            }
                            r
                        }
                    });
                }
            }
            (AggState::Best(best), AggKind::Min(order, _) | AggKind::Max(order, _)) => {
                if let Some(v) = v0 {
                    let better = match best {
                        None => true,
                        Some(b) => {
                            let o = order.cmp(v, b)?;
                            if matches!(kind, AggKind::Min(..)) {
                                o == Ordering::Less
                            } else {
                                o == Ordering::Greater
                            }
                        }
                    };
                    if better {
                        *best = Some(v.to_vec());
                        return Ok(true);
                    }
                }
            }
            (AggState::Bool(acc), AggKind::BoolAnd | AggKind::BoolOr) => {
                if let Some(v) = v0 {
                    let b = *v.first().ok_or_else(EvalError::malformed)? != 0;
                    *acc = Some(match (*acc, kind) {
                        (None, _) => b,
                        (Some(a), AggKind::BoolAnd) => a && b,
                        (Some(a), _) => a || b,
                    });
                }
            }
            (AggState::Avg(num, f, count), AggKind::AvgNumeric | AggKind::AvgFloat8) => {
                let c = vals.get(1).copied().flatten().map(int8).transpose()?;
                *count = count
                    .checked_add(c.unwrap_or(0))
                    .ok_or_else(bigint_overflow)?;
                if let Some(v) = v0 {
                    if matches!(kind, AggKind::AvgFloat8) {
                        let x =
                            f64::from_be_bytes(v.try_into().map_err(|_| EvalError::malformed())?);
                        let r = f.unwrap_or(0.0) + x;
                        if r.is_infinite() && !f.unwrap_or(0.0).is_infinite() && !x.is_infinite() {
                            return Err(float_overflow());
                        }
                        *f = Some(r);
                    } else {
                        let x = if v.len() == 8 {
                            Numeric::from_i64(int8(v)?)
                        } else {
                            numeric(v)?
                        };
                        *num = Some(match num.take() {
                            None => x,
                            Some(a) => a.add(&x),
                        });
                    }
                }
            }
            (AggState::Var(n, sum, sumsq), AggKind::Var { .. }) => {
                let c = vals.first().copied().flatten().map(int8).transpose()?;
                *n = n.checked_add(c.unwrap_or(0)).ok_or_else(bigint_overflow)?;
                if let Some(v) = vals.get(1).copied().flatten() {
                    let x = if v.len() == 8 {
                        Numeric::from_i64(int8(v)?)
                    } else {
                        numeric(v)?
                    };
                    *sum = sum.add(&x);
                }
                if let Some(v) = vals.get(2).copied().flatten() {
                    *sumsq = sumsq.add(&numeric(v)?);
                }
            }
            _ => {
                return Err(EvalError::new(
                    "XX000",
                    "internal: aggregate state mismatch",
                ))
            }
        }
        Ok(false)
    }

    /// The aggregate's final value.
    pub fn value(&self, kind: &AggKind) -> Result<Value, EvalError> {
        Ok(match (self, kind) {
            (AggState::Int(v), AggKind::Count | AggKind::SumInt8) => {
                v.map(Value::Int8).unwrap_or(Value::Null)
            }
            (AggState::Int(v), AggKind::BitAnd(t) | AggKind::BitOr(t)) => match (*v, *t) {
                (None, _) => Value::Null,
                (Some(n), oid::INT2) => Value::Int2(n as i16),
                (Some(n), oid::INT4) => Value::Int4(n as i32),
                (Some(n), _) => Value::Int8(n),
            },
            (AggState::Num(v), _) => v.clone().map(Value::Numeric).unwrap_or(Value::Null),
            (AggState::F4(v), _) => v.map(Value::Float4).unwrap_or(Value::Null),
            (AggState::F8(v), _) => v.map(Value::Float8).unwrap_or(Value::Null),
            (AggState::Best(v), AggKind::Min(_, t) | AggKind::Max(_, t)) => {
                Value::decode(*t, v.as_deref())?
            }
            (AggState::Bool(v), _) => v.map(Value::Bool).unwrap_or(Value::Null),
            (AggState::Avg(_, _, 0), _) => Value::Null,
            (AggState::Avg(_, f, count), AggKind::AvgFloat8) => {
                Value::Float8(f.unwrap_or(0.0) / *count as f64)
            }
            (AggState::Avg(sum, _, count), _) => match sum {
                None => Value::Null,
                Some(s) => Value::Numeric(s.div(&Numeric::from_i64(*count))?),
            },
            (AggState::Var(n, sum, sumsq), AggKind::Var { sample, sqrt }) => {
                variance(*n, sum, sumsq, *sample, *sqrt)
            }
            _ => {
                return Err(EvalError::new(
                    "XX000",
                    "internal: aggregate state mismatch",
                ))
            }
        })
    }
}

/// `numeric_stddev_internal` from the merged count, sum and sum of squares.
fn variance(n: i64, sum: &Numeric, sumsq: &Numeric, sample: bool, sqrt: bool) -> Value {
    if n == 0 {
        return Value::Null;
    }
    let finite = |x: &Numeric| matches!(x, Numeric::Finite { .. });
    if !finite(sum) || !finite(sumsq) {
        return Value::Numeric(Numeric::NaN);
    }
    if n <= i64::from(sample) {
        return Value::Null;
    }
    let vn = Numeric::from_i64(n);
    // rscale for the products: twice the sum's display scale (exact).
    let num = vn.mul(sumsq).sub(&sum.mul(sum));
    if num.cmp_pg(&Numeric::zero()) != Ordering::Greater {
        return Value::Numeric(Numeric::zero());
    }
    let den = if sample {
        vn.mul(&Numeric::from_i64(n - 1))
    } else {
        vn.mul(&vn)
    };
    match num.div(&den) {
        Ok(v) if sqrt => {
            let rscale = v.scale();
            Value::Numeric(v.sqrt(rscale))
        }
        Ok(v) => Value::Numeric(v),
        Err(_) => Value::Null,
    }
}
