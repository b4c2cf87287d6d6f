//! The evaluator for expressions over merged groups (`max(x) - min(x)`,
//! `sum(a) / count(*)`, `round(avg(x), 3)`, `count(*)::int`, HAVING
//! conditions): Postgres's typing rules for the operators, casts and
//! functions it supports (integer widths, numeric, float; the common type of
//! CASE/COALESCE), Postgres's errors (integer overflow and division by zero,
//! 22003/22012), exact numeric arithmetic. Types are inferred once per
//! execution from the shards' column types, before any row is read, so an
//! expression whose type the proxy would get wrong is refused up front.

use std::cmp::Ordering;

use super::numeric::{division_by_zero, Numeric};
use super::types::{oid, type_name};
use super::value::{EvalError, Value};
use crate::data::planner::dist::{BinOp, CastTo, Func, Literal, MExpr};

/// What an expression's leaves are, for one execution.
pub trait Env {
    /// The final value of aggregate `i`.
    fn agg(&self, i: usize) -> Result<Value, EvalError>;
    /// The value of binary column `i` in the group's first row.
    fn col(&self, i: usize) -> Result<Value, EvalError>;
    /// The type of binary column `i`.
    fn col_type(&self, i: usize) -> u32;
    /// The result type of aggregate `i`.
    fn agg_type(&self, i: usize) -> Result<u32, EvalError>;
}

/// NULL literals have no type until context gives them one.
pub const UNKNOWN: u32 = 0;

fn overflow(type_oid: u32) -> EvalError {
    EvalError::new("22003", format!("{} out of range", type_name(type_oid)))
}

fn unsupported(what: String) -> EvalError {
    EvalError::unsupported(what)
}

/// A literal number typed as Postgres types it.
fn number(n: &str) -> Result<Value, EvalError> {
    if let Ok(i) = n.parse::<i32>() {
        return Ok(Value::Int4(i));
    }
    if let Ok(i) = n.parse::<i64>() {
        return Ok(Value::Int8(i));
    }
    Numeric::parse(n)
        .map(Value::Numeric)
        .ok_or_else(|| unsupported(format!("the number {n}")))
}

/// The chain of implicit numeric casts (`select_common_type`'s order).
fn rank(t: u32) -> Option<u8> {
    Some(match t {
        oid::INT2 => 0,
        oid::INT4 => 1,
        oid::INT8 => 2,
        oid::NUMERIC => 3,
        oid::FLOAT4 => 4,
        oid::FLOAT8 => 5,
        _ => return None,
    })
}

/// The type of `a op b` for arithmetic, as Postgres resolves the operator.
fn arith_type(a: u32, b: u32) -> Option<u32> {
    let (a, b) = match (a, b) {
        (UNKNOWN, x) | (x, UNKNOWN) => (x, x),
        p => p,
    };
    let (ra, rb) = (rank(a)?, rank(b)?);
    Some(match (ra.max(rb), ra.min(rb)) {
        // Integers: the wider one (int24pl, int48pl, …).
        (hi, _) if hi <= 2 => a.max_by_rank(b),
        // numeric with an integer or numeric.
        (3, _) => oid::NUMERIC,
        // real with real stays real; anything else with a float is double.
        (4, 4) => oid::FLOAT4,
        _ => oid::FLOAT8,
    })
}

trait ByRank {
    fn max_by_rank(self, other: u32) -> u32;
}

impl ByRank for u32 {
    fn max_by_rank(self, other: u32) -> u32 {
        if rank(self) >= rank(other) {
            self
        } else {
            other
        }
    }
}

/// The common type of CASE branches / COALESCE arguments.
fn common_type(types: &[u32]) -> Result<u32, EvalError> {
    let known: Vec<u32> = types.iter().copied().filter(|&t| t != UNKNOWN).collect();
    let Some(&first) = known.first() else {
        return Ok(UNKNOWN);
    };
    if known.iter().all(|&t| t == first) {
        return Ok(first);
    }
    if known.iter().all(|&t| rank(t).is_some()) {
        return Ok(known.iter().copied().fold(first, |a, b| a.max_by_rank(b)));
    }
    Err(unsupported(format!(
        "a CASE or COALESCE over {}",
        known
            .iter()
            .map(|&t| type_name(t))
            .collect::<Vec<_>>()
            .join(" and ")
    )))
}

/// The static type of an expression.
pub fn infer(e: &MExpr, env: &dyn Env) -> Result<u32, EvalError> {
    Ok(match e {
        MExpr::Agg(i) => env.agg_type(*i)?,
        MExpr::Col(i) | MExpr::Carry(i) => env.col_type(*i),
        MExpr::Lit(Literal::Null) => UNKNOWN,
        MExpr::Lit(Literal::Bool(_)) => oid::BOOL,
        MExpr::Lit(Literal::Number(n)) => number(n)?.type_oid().unwrap_or(oid::NUMERIC),
        MExpr::Binary(op, a, b) => {
            let (ta, tb) = (infer(a, env)?, infer(b, env)?);
            match op {
                BinOp::And | BinOp::Or => {
                    for t in [ta, tb] {
                        if t != oid::BOOL && t != UNKNOWN {
                            return Err(unsupported(format!("AND/OR over {}", type_name(t))));
                        }
                    }
                    oid::BOOL
                }
                BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                    let comparable =
                        arith_type(ta, tb).is_some() || ta == tb || ta == UNKNOWN || tb == UNKNOWN;
                    if !comparable {
                        return Err(unsupported(format!(
                            "comparing {} with {}",
                            type_name(ta),
                            type_name(tb)
                        )));
                    }
                    oid::BOOL
                }
                _ => arith_type(ta, tb).ok_or_else(|| {
                    unsupported(format!(
                        "arithmetic on {} and {}",
                        type_name(ta),
                        type_name(tb)
                    ))
                })?,
            }
        }
        MExpr::Neg(x) => {
            let t = infer(x, env)?;
            if rank(t).is_none() && t != UNKNOWN {
                return Err(unsupported(format!("negating {}", type_name(t))));
            }
            t
        }
        MExpr::Not(_) | MExpr::IsNull(..) => oid::BOOL,
        MExpr::Cast(x, to) => {
            infer(x, env)?;
            cast_oid(*to)
        }
        MExpr::Func(f, args) => {
            let types: Vec<u32> = args
                .iter()
                .map(|a| infer(a, env))
                .collect::<Result<_, _>>()?;
            match f {
                Func::Round | Func::Trunc => match types.as_slice() {
                    [_, _] => oid::NUMERIC,
                    [oid::NUMERIC] => oid::NUMERIC,
                    [t] if rank(*t).is_some() => oid::FLOAT8,
                    _ => return Err(unsupported("round/trunc of these arguments".into())),
                },
                Func::Ceil | Func::Floor => match types.as_slice() {
                    [oid::NUMERIC] => oid::NUMERIC,
                    [t] if rank(*t).is_some() => oid::FLOAT8,
                    _ => return Err(unsupported("ceil/floor of these arguments".into())),
                },
                Func::Abs => match types.as_slice() {
                    [t] if rank(*t).is_some() => *t,
                    _ => return Err(unsupported("abs of these arguments".into())),
                },
                Func::NullIf => types.first().copied().unwrap_or(UNKNOWN),
                Func::Coalesce | Func::Greatest | Func::Least => common_type(&types)?,
            }
        }
        MExpr::Case { whens, otherwise } => {
            let mut types = Vec::new();
            for (c, r) in whens {
                infer(c, env)?;
                types.push(infer(r, env)?);
            }
            if let Some(o) = otherwise {
                types.push(infer(o, env)?);
            }
            common_type(&types)?
        }
    })
}

fn cast_oid(to: CastTo) -> u32 {
    match to {
        CastTo::Int2 => oid::INT2,
        CastTo::Int4 => oid::INT4,
        CastTo::Int8 => oid::INT8,
        CastTo::Float4 => oid::FLOAT4,
        CastTo::Float8 => oid::FLOAT8,
        CastTo::Numeric(_) => oid::NUMERIC,
        CastTo::Bool => oid::BOOL,
        CastTo::Text => oid::TEXT,
    }
}

/// Evaluates an expression for one group. `efd` is the session's
/// extra_float_digits (for casts to text).
pub fn eval(e: &MExpr, env: &dyn Env, efd: i32) -> Result<Value, EvalError> {
    match e {
        MExpr::Agg(i) => env.agg(*i),
        MExpr::Col(i) => env.col(*i),
        MExpr::Carry(_) => Err(unsupported(
            "a passed-through column inside an expression".into(),
        )),
        MExpr::Lit(Literal::Null) => Ok(Value::Null),
        MExpr::Lit(Literal::Bool(b)) => Ok(Value::Bool(*b)),
        MExpr::Lit(Literal::Number(n)) => number(n),
        MExpr::Binary(BinOp::And, a, b) => {
            let (x, y) = (truth(&eval(a, env, efd)?)?, truth(&eval(b, env, efd)?)?);
            Ok(match (x, y) {
                (Some(false), _) | (_, Some(false)) => Value::Bool(false),
                (Some(true), Some(true)) => Value::Bool(true),
                _ => Value::Null,
            })
        }
        MExpr::Binary(BinOp::Or, a, b) => {
            let (x, y) = (truth(&eval(a, env, efd)?)?, truth(&eval(b, env, efd)?)?);
            Ok(match (x, y) {
                (Some(true), _) | (_, Some(true)) => Value::Bool(true),
                (Some(false), Some(false)) => Value::Bool(false),
                _ => Value::Null,
            })
        }
        MExpr::Binary(op, a, b) => {
            let (x, y) = (eval(a, env, efd)?, eval(b, env, efd)?);
            if x.is_null() || y.is_null() {
                return Ok(Value::Null);
            }
            match op {
                BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                    let o = compare(&x, &y)?;
                    Ok(Value::Bool(match op {
                        BinOp::Eq => o == Ordering::Equal,
                        BinOp::Ne => o != Ordering::Equal,
                        BinOp::Lt => o == Ordering::Less,
                        BinOp::Le => o != Ordering::Greater,
                        BinOp::Gt => o == Ordering::Greater,
                        _ => o != Ordering::Less,
                    }))
                }
                _ => arith(*op, &x, &y),
            }
        }
        MExpr::Neg(x) => match eval(x, env, efd)? {
            Value::Null => Ok(Value::Null),
            Value::Int2(n) => n.checked_neg().map(Value::Int2).ok_or(overflow(oid::INT2)),
            Value::Int4(n) => n.checked_neg().map(Value::Int4).ok_or(overflow(oid::INT4)),
            Value::Int8(n) => n.checked_neg().map(Value::Int8).ok_or(overflow(oid::INT8)),
            Value::Float4(f) => Ok(Value::Float4(-f)),
            Value::Float8(f) => Ok(Value::Float8(-f)),
            Value::Numeric(n) => Ok(Value::Numeric(n.neg())),
            v => Err(unsupported(format!("negating {v:?}"))),
        },
        MExpr::Not(x) => Ok(match truth(&eval(x, env, efd)?)? {
            Some(b) => Value::Bool(!b),
            None => Value::Null,
        }),
        MExpr::IsNull(x, negated) => Ok(Value::Bool(eval(x, env, efd)?.is_null() != *negated)),
        MExpr::Cast(x, to) => cast(eval(x, env, efd)?, *to, efd),
        MExpr::Func(f, args) => func(*f, args, env, efd),
        MExpr::Case { whens, otherwise } => {
            let t = infer(e, env)?;
            for (c, r) in whens {
                if truth(&eval(c, env, efd)?)? == Some(true) {
                    return coerce(eval(r, env, efd)?, t);
                }
            }
            match otherwise {
                Some(o) => coerce(eval(o, env, efd)?, t),
                None => Ok(Value::Null),
            }
        }
    }
}

fn truth(v: &Value) -> Result<Option<bool>, EvalError> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        v => Err(unsupported(format!(
            "a condition of type {:?}",
            v.type_oid()
        ))),
    }
}

/// A number as one of the arithmetic domains.
enum Num {
    Int(i64),
    Dec(Numeric),
    F4(f32),
    F8(f64),
}

fn num(v: &Value) -> Option<Num> {
    Some(match v {
        Value::Int2(n) => Num::Int(*n as i64),
        Value::Int4(n) => Num::Int(*n as i64),
        Value::Int8(n) => Num::Int(*n),
        Value::Numeric(n) => Num::Dec(n.clone()),
        Value::Float4(f) => Num::F4(*f),
        Value::Float8(f) => Num::F8(*f),
        _ => return None,
    })
}

fn to_numeric(n: &Num) -> Result<Numeric, EvalError> {
    match n {
        Num::Int(i) => Ok(Numeric::from_i64(*i)),
        Num::Dec(d) => Ok(d.clone()),
        _ => Err(EvalError::new("XX000", "internal: float used as numeric")),
    }
}

fn to_f64(n: &Num) -> Result<f64, EvalError> {
    Ok(match n {
        Num::Int(i) => *i as f64,
        Num::Dec(d) => d.to_f64()?,
        Num::F4(f) => *f as f64,
        Num::F8(f) => *f,
    })
}

fn int_value(v: i128, t: u32) -> Result<Value, EvalError> {
    let fits = |lo: i128, hi: i128| (lo..=hi).contains(&v);
    match t {
        oid::INT2 if fits(i16::MIN as i128, i16::MAX as i128) => Ok(Value::Int2(v as i16)),
        oid::INT4 if fits(i32::MIN as i128, i32::MAX as i128) => Ok(Value::Int4(v as i32)),
        oid::INT8 if fits(i64::MIN as i128, i64::MAX as i128) => Ok(Value::Int8(v as i64)),
        _ => Err(overflow(t)),
    }
}

/// Checks a float result as float8pl/mi/mul/div do.
fn float_result(r: f64, a: f64, b: f64, op: BinOp) -> Result<f64, EvalError> {
    if r.is_infinite() && !a.is_infinite() && !(b.is_infinite() && op != BinOp::Div) {
        return Err(EvalError::new("22003", "value out of range: overflow"));
    }
    let underflow = match op {
        BinOp::Mul => r == 0.0 && a != 0.0 && b != 0.0,
        BinOp::Div => r == 0.0 && a != 0.0 && !b.is_infinite(),
        _ => false,
    };
    if underflow {
        return Err(EvalError::new("22003", "value out of range: underflow"));
    }
    Ok(r)
}

fn arith(op: BinOp, x: &Value, y: &Value) -> Result<Value, EvalError> {
    let (Some(a), Some(b)) = (num(x), num(y)) else {
        return Err(unsupported(format!(
            "arithmetic on {} and {}",
            x.type_oid().map(type_name).unwrap_or_default(),
            y.type_oid().map(type_name).unwrap_or_default()
        )));
    };
    let t = arith_type(
        x.type_oid().unwrap_or(UNKNOWN),
        y.type_oid().unwrap_or(UNKNOWN),
    )
    .unwrap_or(oid::NUMERIC);
    match t {
        oid::INT2 | oid::INT4 | oid::INT8 => {
            let (Num::Int(p), Num::Int(q)) = (&a, &b) else {
                unreachable!("integer type for non-integers")
            };
            let (p, q) = (*p as i128, *q as i128);
            let r = match op {
                BinOp::Add => p + q,
                BinOp::Sub => p - q,
                BinOp::Mul => p * q,
                BinOp::Div => {
                    if q == 0 {
                        return Err(division_by_zero().into());
                    }
                    p / q
                }
                BinOp::Mod => {
                    if q == 0 {
                        return Err(division_by_zero().into());
                    }
                    p % q
                }
                _ => unreachable!("not arithmetic"),
            };
            int_value(r, t)
        }
        oid::NUMERIC => {
            let (p, q) = (to_numeric(&a)?, to_numeric(&b)?);
            Ok(Value::Numeric(match op {
                BinOp::Add => p.add(&q),
                BinOp::Sub => p.sub(&q),
                BinOp::Mul => p.mul(&q),
                BinOp::Div => p.div(&q)?,
                BinOp::Mod => p.modulo(&q)?,
                _ => unreachable!("not arithmetic"),
            }))
        }
        _ => {
            if op == BinOp::Mod {
                return Err(unsupported("% on floats".into()));
            }
            let (p, q) = (to_f64(&a)?, to_f64(&b)?);
            if t == oid::FLOAT4 {
                let (p, q) = (p as f32, q as f32);
                let r = match op {
                    BinOp::Add => p + q,
                    BinOp::Sub => p - q,
                    BinOp::Mul => p * q,
                    _ => {
                        if q == 0.0 {
                            return Err(division_by_zero().into());
                        }
                        p / q
                    }
                };
                float_result(r as f64, p as f64, q as f64, op)?;
                return Ok(Value::Float4(r));
            }
            let r = match op {
                BinOp::Add => p + q,
                BinOp::Sub => p - q,
                BinOp::Mul => p * q,
                _ => {
                    if q == 0.0 {
                        return Err(division_by_zero().into());
                    }
                    p / q
                }
            };
            Ok(Value::Float8(float_result(r, p, q, op)?))
        }
    }
}

/// Postgres's float order: NaN above everything, -0 = 0.
fn f64_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Compares two numbers across types as Postgres's cross-type operators
/// do; None when either is not a number.
pub fn compare_numbers(x: &Value, y: &Value) -> Result<Option<Ordering>, EvalError> {
    let (Some(a), Some(b)) = (num(x), num(y)) else {
        return Ok(None);
    };
    let t = arith_type(
        x.type_oid().unwrap_or(UNKNOWN),
        y.type_oid().unwrap_or(UNKNOWN),
    );
    Ok(Some(match t {
        Some(oid::INT2 | oid::INT4 | oid::INT8) => match (&a, &b) {
            (Num::Int(p), Num::Int(q)) => p.cmp(q),
            _ => unreachable!("integer type for non-integers"),
        },
        Some(oid::NUMERIC) => to_numeric(&a)?.cmp_pg(&to_numeric(&b)?),
        _ => f64_cmp(to_f64(&a)?, to_f64(&b)?),
    }))
}

fn compare(x: &Value, y: &Value) -> Result<Ordering, EvalError> {
    if let Some(o) = compare_numbers(x, y)? {
        return Ok(o);
    }
    match (x, y) {
        (Value::Bool(a), Value::Bool(b)) => Ok(a.cmp(b)),
        _ => Err(unsupported(format!(
            "comparing {} with {} over merged values",
            x.type_oid().map(type_name).unwrap_or_default(),
            y.type_oid().map(type_name).unwrap_or_default()
        ))),
    }
}

/// An implicit coercion to `t` (CASE/COALESCE results, numeric widening).
fn coerce(v: Value, t: u32) -> Result<Value, EvalError> {
    if v.is_null() || t == UNKNOWN || v.type_oid() == Some(t) {
        return Ok(v);
    }
    let to = match t {
        oid::INT2 => CastTo::Int2,
        oid::INT4 => CastTo::Int4,
        oid::INT8 => CastTo::Int8,
        oid::FLOAT4 => CastTo::Float4,
        oid::FLOAT8 => CastTo::Float8,
        oid::NUMERIC => CastTo::Numeric(-1),
        _ => return Err(unsupported(format!("a coercion to {}", type_name(t)))),
    };
    cast(v, to, 1)
}

fn float_to_int(f: f64, t: u32) -> Result<Value, EvalError> {
    // float8 -> integer rounds half to even (rint), then range-checks.
    let r = f.round_ties_even();
    if !r.is_finite() {
        return Err(overflow(t));
    }
    int_value(r as i128, t).map_err(|_| overflow(t))
}

fn cast(v: Value, to: CastTo, efd: i32) -> Result<Value, EvalError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let t = cast_oid(to);
    Ok(match (v, to) {
        (v, CastTo::Text) => {
            let text = match &v {
                // bool::text is 'true'/'false' (not the 't'/'f' of boolout).
                Value::Bool(b) => if *b { "true" } else { "false" }.to_string(),
                other => other.to_text(efd)?,
            };
            Value::Bytes {
                type_oid: oid::TEXT,
                bytes: text.into_bytes(),
            }
        }
        (Value::Bool(b), CastTo::Int4) => Value::Int4(i32::from(b)),
        (Value::Bool(b), CastTo::Bool) => Value::Bool(b),
        (Value::Int4(n), CastTo::Bool) => Value::Bool(n != 0),
        (Value::Int2(n), _) => int_cast(n as i64, to, t)?,
        (Value::Int4(n), _) => int_cast(n as i64, to, t)?,
        (Value::Int8(n), _) => int_cast(n, to, t)?,
        (Value::Numeric(n), CastTo::Numeric(typmod)) => Value::Numeric(n.apply_typmod(typmod)?),
        (Value::Numeric(n), CastTo::Float8) => Value::Float8(n.to_f64()?),
        (Value::Numeric(n), CastTo::Float4) => {
            let f: f32 = n.to_text().parse().map_err(|_| overflow(oid::FLOAT4))?;
            if f.is_infinite() && !matches!(n, Numeric::PosInf | Numeric::NegInf) {
                return Err(EvalError::new("22003", "value out of range: overflow"));
            }
            Value::Float4(f)
        }
        (Value::Numeric(n), CastTo::Int2 | CastTo::Int4 | CastTo::Int8) => {
            let i = n.to_i64_rounded(&type_name(t))?;
            int_value(i as i128, t)?
        }
        (Value::Float8(f), CastTo::Float8) => Value::Float8(f),
        (Value::Float4(f), CastTo::Float4) => Value::Float4(f),
        (Value::Float4(f), CastTo::Float8) => Value::Float8(f as f64),
        (Value::Float8(f), CastTo::Float4) => {
            let r = f as f32;
            if r.is_infinite() && !f.is_infinite() {
                return Err(EvalError::new("22003", "value out of range: overflow"));
            }
            if r == 0.0 && f != 0.0 {
                return Err(EvalError::new("22003", "value out of range: underflow"));
            }
            Value::Float4(r)
        }
        (Value::Float8(f), CastTo::Numeric(typmod)) => {
            Value::Numeric(Numeric::from_f64(f).apply_typmod(typmod)?)
        }
        (Value::Float4(f), CastTo::Numeric(typmod)) => {
            // float4_numeric prints 6 significant digits (FLT_DIG).
            let text = format!("{:.5e}", f);
            let n = if f.is_nan() {
                Numeric::NaN
            } else if f.is_infinite() {
                Numeric::from_f64(f as f64)
            } else {
                let (m, e) = text.split_once('e').unwrap_or((&text, "0"));
                let m = m.trim_end_matches('0').trim_end_matches('.');
                Numeric::parse(&format!("{m}e{e}")).unwrap_or_else(Numeric::zero)
            };
            Value::Numeric(n.apply_typmod(typmod)?)
        }
        (Value::Float8(f), CastTo::Int2 | CastTo::Int4 | CastTo::Int8) => float_to_int(f, t)?,
        (Value::Float4(f), CastTo::Int2 | CastTo::Int4 | CastTo::Int8) => {
            float_to_int(f as f64, t)?
        }
        (v, _) => {
            return Err(unsupported(format!(
                "a cast of {} to {}",
                v.type_oid().map(type_name).unwrap_or_default(),
                type_name(t)
            )))
        }
    })
}

fn int_cast(n: i64, to: CastTo, t: u32) -> Result<Value, EvalError> {
    Ok(match to {
        CastTo::Int2 | CastTo::Int4 | CastTo::Int8 => int_value(n as i128, t)?,
        CastTo::Numeric(typmod) => Value::Numeric(Numeric::from_i64(n).apply_typmod(typmod)?),
        CastTo::Float8 => Value::Float8(n as f64),
        CastTo::Float4 => Value::Float4(n as f32),
        CastTo::Bool => {
            return Err(unsupported(
                "a cast of an integer other than int4 to boolean".into(),
            ))
        }
        CastTo::Text => unreachable!("handled by the caller"),
    })
}

fn func(f: Func, args: &[MExpr], env: &dyn Env, efd: i32) -> Result<Value, EvalError> {
    match f {
        Func::Coalesce => {
            let t = infer(&MExpr::Func(f, args.to_vec()), env)?;
            for a in args {
                let v = eval(a, env, efd)?;
                if !v.is_null() {
                    return coerce(v, t);
                }
            }
            Ok(Value::Null)
        }
        Func::Greatest | Func::Least => {
            let t = infer(&MExpr::Func(f, args.to_vec()), env)?;
            let mut best: Option<Value> = None;
            for a in args {
                let v = coerce(eval(a, env, efd)?, t)?;
                if v.is_null() {
                    continue;
                }
                best = Some(match best {
                    None => v,
                    Some(b) => {
                        let o = compare(&v, &b)?;
                        let better = if f == Func::Greatest {
                            o == Ordering::Greater
                        } else {
                            o == Ordering::Less
                        };
                        if better {
                            v
                        } else {
                            b
                        }
                    }
                });
            }
            Ok(best.unwrap_or(Value::Null))
        }
        Func::NullIf => {
            let [a, b] = args else {
                return Err(unsupported("nullif with other than two arguments".into()));
            };
            let (x, y) = (eval(a, env, efd)?, eval(b, env, efd)?);
            if !x.is_null() && !y.is_null() && compare(&x, &y)? == Ordering::Equal {
                Ok(Value::Null)
            } else {
                Ok(x)
            }
        }
        Func::Round | Func::Trunc | Func::Ceil | Func::Floor | Func::Abs => {
            let vals: Vec<Value> = args
                .iter()
                .map(|a| eval(a, env, efd))
                .collect::<Result<_, _>>()?;
            if vals.iter().any(Value::is_null) {
                return Ok(Value::Null);
            }
            numeric_func(f, &vals)
        }
    }
}

fn numeric_func(f: Func, vals: &[Value]) -> Result<Value, EvalError> {
    let bad = || unsupported(format!("{f:?} of these arguments"));
    if f == Func::Abs {
        return Ok(match &vals[0] {
            Value::Int2(n) => n
                .checked_abs()
                .map(Value::Int2)
                .ok_or(overflow(oid::INT2))?,
            Value::Int4(n) => n
                .checked_abs()
                .map(Value::Int4)
                .ok_or(overflow(oid::INT4))?,
            Value::Int8(n) => n
                .checked_abs()
                .map(Value::Int8)
                .ok_or(overflow(oid::INT8))?,
            Value::Float4(x) => Value::Float4(x.abs()),
            Value::Float8(x) => Value::Float8(x.abs()),
            Value::Numeric(n) => Value::Numeric(n.abs()),
            _ => return Err(bad()),
        });
    }
    match vals {
        [x, s] => {
            // round(numeric, int) / trunc(numeric, int).
            let n = match num(x).ok_or_else(bad)? {
                Num::Int(i) => Numeric::from_i64(i),
                Num::Dec(d) => d,
                _ => return Err(bad()),
            };
            let s = match s {
                Value::Int2(v) => *v as i32,
                Value::Int4(v) => *v,
                _ => return Err(bad()),
            };
            Ok(Value::Numeric(if f == Func::Round {
                n.round(s)
            } else {
                n.trunc(s)
            }))
        }
        [Value::Numeric(n)] => Ok(Value::Numeric(match f {
            Func::Round => n.round(0),
            Func::Trunc => n.trunc(0),
            Func::Ceil => ceil_floor(n, true),
            _ => ceil_floor(n, false),
        })),
        [x] => {
            let v = to_f64(&num(x).ok_or_else(bad)?)?;
            Ok(Value::Float8(match f {
                Func::Round => v.round_ties_even(),
                Func::Trunc => v.trunc(),
                Func::Ceil => v.ceil(),
                _ => v.floor(),
            }))
        }
        _ => Err(bad()),
    }
}

fn ceil_floor(n: &Numeric, ceil: bool) -> Numeric {
    let t = n.trunc(0);
    let differs = n.cmp_pg(&t) != Ordering::Equal;
    let up = ceil && n.cmp_pg(&Numeric::zero()) == Ordering::Greater;
    let down = !ceil && n.cmp_pg(&Numeric::zero()) == Ordering::Less;
    if differs && (up || down) {
        t.add(&Numeric::from_i64(if ceil { 1 } else { -1 }))
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Aggregates given as values; no columns.
    struct Vals(Vec<Value>);

    impl Env for Vals {
        fn agg(&self, i: usize) -> Result<Value, EvalError> {
            Ok(self.0[i].clone())
        }
        fn col(&self, _: usize) -> Result<Value, EvalError> {
            Ok(Value::Null)
        }
        fn col_type(&self, _: usize) -> u32 {
            UNKNOWN
        }
        fn agg_type(&self, i: usize) -> Result<u32, EvalError> {
            Ok(self.0[i].type_oid().unwrap_or(UNKNOWN))
        }
    }

    fn agg(i: usize) -> Box<MExpr> {
        Box::new(MExpr::Agg(i))
    }

    fn lit(n: &str) -> Box<MExpr> {
        Box::new(MExpr::Lit(Literal::Number(n.into())))
    }

    fn run(e: MExpr, aggs: Vec<Value>) -> Result<Value, EvalError> {
        let env = Vals(aggs);
        let v = eval(&e, &env, 1)?;
        if let Some(t) = v.type_oid() {
            assert_eq!(
                t,
                infer(&e, &env).unwrap(),
                "static and dynamic types differ"
            );
        }
        Ok(v)
    }

    fn num(s: &str) -> Value {
        Value::Numeric(Numeric::parse(s).unwrap())
    }

    #[test]
    fn integer_widths_and_overflow() {
        let e = MExpr::Binary(BinOp::Sub, agg(0), agg(1));
        assert_eq!(
            run(e.clone(), vec![Value::Int4(10), Value::Int4(3)]).unwrap(),
            Value::Int4(7)
        );
        assert_eq!(
            run(e, vec![Value::Int4(i32::MIN), Value::Int4(1)])
                .unwrap_err()
                .code,
            "22003"
        );
        let e = MExpr::Binary(
            BinOp::Add,
            Box::new(MExpr::Binary(BinOp::Mul, agg(0), lit("2"))),
            lit("1"),
        );
        assert_eq!(run(e, vec![Value::Int8(5)]).unwrap(), Value::Int8(11));
        let e = MExpr::Cast(agg(0), CastTo::Int4);
        assert_eq!(
            run(e.clone(), vec![Value::Int8(42)]).unwrap(),
            Value::Int4(42)
        );
        assert_eq!(
            run(e, vec![Value::Int8(1 << 40)]).unwrap_err().message,
            "integer out of range"
        );
        let e = MExpr::Binary(BinOp::Div, agg(0), agg(1));
        assert_eq!(
            run(e.clone(), vec![Value::Int8(7), Value::Int8(2)]).unwrap(),
            Value::Int8(3)
        );
        assert_eq!(
            run(e, vec![Value::Int8(7), Value::Int8(0)])
                .unwrap_err()
                .code,
            "22012"
        );
    }

    #[test]
    fn numeric_and_float_promotion() {
        let e = MExpr::Binary(BinOp::Div, agg(0), agg(1));
        assert_eq!(
            run(e, vec![num("10"), Value::Int8(4)]).unwrap(),
            num("2.5000000000000000")
        );
        let e = MExpr::Func(
            Func::Round,
            vec![MExpr::Agg(0), MExpr::Lit(Literal::Number("3".into()))],
        );
        assert_eq!(
            run(e, vec![num("2.66666666666666666667")]).unwrap(),
            num("2.667")
        );
        let e = MExpr::Binary(BinOp::Mul, agg(0), lit("2.5"));
        assert_eq!(run(e, vec![Value::Int8(3)]).unwrap(), num("7.5"));
        let e = MExpr::Binary(BinOp::Add, agg(0), agg(1));
        assert_eq!(
            run(e, vec![num("1.5"), Value::Float8(0.25)]).unwrap(),
            Value::Float8(1.75)
        );
        let e = MExpr::Func(Func::Round, vec![MExpr::Agg(0)]);
        assert_eq!(
            run(e, vec![Value::Float8(2.5)]).unwrap(),
            Value::Float8(2.0)
        );
        let e = MExpr::Cast(agg(0), CastTo::Numeric((20 << 16 | 4) + 4));
        assert_eq!(run(e, vec![num("1.23456")]).unwrap(), num("1.2346"));
    }

    #[test]
    fn case_and_coalesce_take_the_common_type() {
        let e = MExpr::Case {
            whens: vec![(
                MExpr::Binary(BinOp::Gt, agg(0), lit("1")),
                MExpr::Lit(Literal::Number("1".into())),
            )],
            otherwise: Some(lit("2.5")),
        };
        assert_eq!(run(e.clone(), vec![Value::Int8(5)]).unwrap(), num("1"));
        let e2 = MExpr::Binary(BinOp::Div, Box::new(e), lit("2"));
        assert_eq!(
            run(e2, vec![Value::Int8(5)]).unwrap(),
            num("0.50000000000000000000")
        );
        let e = MExpr::Func(
            Func::Coalesce,
            vec![MExpr::Agg(0), MExpr::Lit(Literal::Number("0".into()))],
        );
        assert_eq!(run(e, vec![Value::Null]).unwrap(), Value::Int4(0));
    }

    #[test]
    fn three_valued_logic() {
        let e = MExpr::Binary(BinOp::And, agg(0), agg(1));
        assert_eq!(
            run(e.clone(), vec![Value::Null, Value::Bool(false)]).unwrap(),
            Value::Bool(false)
        );
        assert_eq!(
            run(e, vec![Value::Null, Value::Bool(true)]).unwrap(),
            Value::Null
        );
    }
}
