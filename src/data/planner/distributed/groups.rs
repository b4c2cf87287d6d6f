//! Group mode: aggregates and GROUP BY that span shards. Each shard groups
//! its own rows by the statement's GROUP BY and returns, per group, the
//! group key values and partial aggregates (count, sum, min, max, sum and
//! count for avg, count/sum/sum of squares for variance), all as hidden
//! binary columns, plus the group's aggregate-free output items in the
//! client's formats. The proxy combines groups with equal keys, then
//! evaluates HAVING, the outputs (expressions over aggregates included:
//! `max(x) - min(x)`, `round(avg(x), 3)`, `count(*)::int`), ORDER BY and
//! LIMIT over the merged groups. Aggregate-free parts of those expressions
//! are computed by the shards (they are constant within a group), so the
//! proxy only evaluates arithmetic, comparisons, casts and a few functions
//! over merged values; anything else is refused by name.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Distinct, DuplicateTreatment, ExactNumberInfo, Expr,
    Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, GroupByExpr,
    Ident, ObjectName, ObjectNamePart, OrderByKind, OrderBySort, Query, Select, SelectItem,
    SetExpr, UnaryOperator, Value, Visit, Visitor,
};

use super::super::walk::AGGREGATES;
use super::names::{group_target, order_target};
use super::render::{aliased, print_checked, probe};
use super::spec::{
    AggFunc, AggSpec, BinOp, CastTo, ColFormat, Count, DistPlan, Func, GroupPlan, Literal, MExpr,
    Shape, ShardCol,
};

/// Whether an expression calls an aggregate (outside subqueries).
pub(super) fn contains_agg(e: &Expr) -> bool {
    struct Find {
        depth: usize,
        found: bool,
    }
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if self.depth == 0 {
                if let Expr::Function(f) = e {
                    if f.over.is_none() && agg_name(f).is_some() {
                        self.found = true;
                        return ControlFlow::Break(());
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut f = Find {
        depth: 0,
        found: false,
    };
    let _ = e.visit(&mut f);
    f.found
}

/// The lower-case name of a call to one of Postgres's aggregates.
fn agg_name(f: &Function) -> Option<String> {
    let name = match f.name.0.as_slice() {
        [ObjectNamePart::Identifier(n)] => n,
        [ObjectNamePart::Identifier(s), ObjectNamePart::Identifier(n)]
            if s.value.eq_ignore_ascii_case("pg_catalog") =>
        {
            n
        }
        _ => return None,
    };
    let lower = name.value.to_ascii_lowercase();
    AGGREGATES.contains(&lower.as_str()).then_some(lower)
}

fn contains_window(e: &Expr) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        if matches!(x, Expr::Function(f) if f.over.is_some()) {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

struct Builder<'a> {
    items: Vec<SelectItem>,
    cols: Vec<ShardCol>,
    aggs: Vec<AggSpec>,
    /// Aggregate calls with DISTINCT over a shard key (per-shard results add up).
    key_distinct: &'a [String],
}

impl Builder<'_> {
    fn col(&mut self, e: &Expr, format: ColFormat) -> usize {
        let sql = e.to_string();
        if let Some(i) = self
            .cols
            .iter()
            .position(|c| c.format == format && c.sql == sql)
        {
            return i;
        }
        self.items.push(aliased(e.clone(), self.cols.len()));
        self.cols.push(ShardCol { sql, format });
        self.cols.len() - 1
    }

    fn partial(&mut self, f: &Function, name: &str, args: Option<Vec<FunctionArg>>) -> usize {
        let mut p = f.clone();
        p.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]);
        if let (Some(args), FunctionArguments::List(list)) = (args, &f.args) {
            p.args = FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: list.duplicate_treatment,
                args,
                clauses: Vec::new(),
            });
        }
        self.col(&Expr::Function(p), ColFormat::Binary)
    }

    /// Registers an aggregate call; returns its index.
    fn agg(&mut self, f: &Function) -> Result<usize, String> {
        let sql = f.to_string();
        if let Some(i) = self.aggs.iter().position(|a| a.sql == sql) {
            return Ok(i);
        }
        let name = agg_name(f).ok_or_else(|| format!("the aggregate {sql}"))?;
        if f.over.is_some() {
            return Err(format!("the window function {sql}"));
        }
        if !f.within_group.is_empty() {
            return Err(format!("the ordered-set aggregate {sql}"));
        }
        if f.null_treatment.is_some() || !matches!(f.parameters, FunctionArguments::None) {
            return Err(format!("the aggregate {sql}"));
        }
        let FunctionArguments::List(list) = &f.args else {
            return Err(format!("the aggregate {sql}"));
        };
        let distinct = list.duplicate_treatment == Some(DuplicateTreatment::Distinct);
        let on_key = self.key_distinct.contains(&sql);
        let plain_arg = match list.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => Some(e.clone()),
            _ => None,
        };
        let star = matches!(
            list.args.as_slice(),
            [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]
        );
        let refuse_distinct = || {
            Err(format!(
                "{sql}: an aggregate with DISTINCT on a column that is not the shard key"
            ))
        };
        let (func, inputs) = match name.as_str() {
            "count" if star || plain_arg.is_some() => {
                if distinct && !on_key {
                    return refuse_distinct();
                }
                (AggFunc::Count, vec![self.partial(f, "count", None)])
            }
            "sum" if plain_arg.is_some() => {
                if distinct && !on_key {
                    return refuse_distinct();
                }
                (AggFunc::Sum, vec![self.partial(f, "sum", None)])
            }
            "min" | "max" if plain_arg.is_some() => {
                let func = if name == "min" {
                    AggFunc::Min
                } else {
                    AggFunc::Max
                };
                (func, vec![self.partial(f, &name, None)])
            }
            "avg" if plain_arg.is_some() => {
                if distinct && !on_key {
                    return refuse_distinct();
                }
                let sum = self.partial(f, "sum", None);
                let count = self.partial(f, "count", None);
                (AggFunc::Avg, vec![sum, count])
            }
            "bool_and" | "every" if plain_arg.is_some() => {
                (AggFunc::BoolAnd, vec![self.partial(f, "bool_and", None)])
            }
            "bool_or" if plain_arg.is_some() => {
                (AggFunc::BoolOr, vec![self.partial(f, "bool_or", None)])
            }
            "bit_and" | "bit_or" if plain_arg.is_some() => {
                let func = if name == "bit_and" {
                    AggFunc::BitAnd
                } else {
                    AggFunc::BitOr
                };
                (func, vec![self.partial(f, &name, None)])
            }
            "variance" | "var_samp" | "var_pop" | "stddev" | "stddev_samp" | "stddev_pop"
                if plain_arg.is_some() && !distinct =>
            {
                let x = plain_arg
                    .clone()
                    .unwrap_or_else(|| Expr::value(Value::Null));
                let as_numeric = Expr::Cast {
                    kind: CastKind::DoubleColon,
                    expr: Box::new(Expr::Nested(Box::new(x))),
                    data_type: DataType::Numeric(ExactNumberInfo::None),
                    format: None,
                };
                let square = Expr::BinaryOp {
                    left: Box::new(as_numeric.clone()),
                    op: BinaryOperator::Multiply,
                    right: Box::new(as_numeric),
                };
                let count = self.partial(f, "count", None);
                let sum = self.partial(f, "sum", None);
                let sumsq = self.partial(
                    f,
                    "sum",
                    Some(vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(square))]),
                );
                let sample = !name.ends_with("_pop");
                let sqrt = name.starts_with("stddev");
                (AggFunc::Var { sample, sqrt }, vec![count, sum, sumsq])
            }
            _ => {
                return Err(format!("the aggregate {sql}"));
            }
        };
        self.aggs.push(AggSpec {
            sql,
            func,
            inputs,
            carry: Vec::new(),
        });
        Ok(self.aggs.len() - 1)
    }

    /// An output column: aggregate-free items pass through from the group's
    /// first row; a bare min/max passes through from the winning row.
    fn output(&mut self, e: &Expr, out: usize) -> Result<MExpr, String> {
        if !contains_agg(e) {
            return Ok(MExpr::Carry(self.col(e, ColFormat::Client(out))));
        }
        if let Expr::Function(f) = strip(e) {
            if matches!(agg_name(f).as_deref(), Some("min" | "max")) {
                let a = self.agg(f)?;
                let c = self.col(strip(e), ColFormat::Client(out));
                if !self.aggs[a].carry.contains(&c) {
                    self.aggs[a].carry.push(c);
                }
                return Ok(MExpr::Carry(c));
            }
        }
        self.lower(e)
    }

    /// An expression over merged values.
    fn lower(&mut self, e: &Expr) -> Result<MExpr, String> {
        if let Expr::Nested(x) = e {
            return self.lower(x);
        }
        if let Expr::Value(v) = e {
            match &v.value {
                Value::Number(n, _) => return Ok(MExpr::Lit(Literal::Number(n.clone()))),
                Value::Null => return Ok(MExpr::Lit(Literal::Null)),
                Value::Boolean(b) => return Ok(MExpr::Lit(Literal::Bool(*b))),
                _ => {}
            }
        }
        if contains_window(e) {
            return Err(format!("the window function in {e}"));
        }
        if !contains_agg(e) {
            return Ok(MExpr::Col(self.col(e, ColFormat::Binary)));
        }
        let unsupported = || Err(format!("the expression {e} over aggregates"));
        Ok(match e {
            Expr::Function(f) if agg_name(f).is_some() => MExpr::Agg(self.agg(f)?),
            Expr::Function(f) => {
                let Some(func) = scalar_func(f) else {
                    return Err(format!("the function {} over aggregates", f.name));
                };
                let FunctionArguments::List(list) = &f.args else {
                    return unsupported();
                };
                if list.duplicate_treatment.is_some()
                    || !list.clauses.is_empty()
                    || f.filter.is_some()
                    || f.over.is_some()
                {
                    return unsupported();
                }
                let mut args = Vec::new();
                for a in &list.args {
                    match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => args.push(self.lower(x)?),
                        _ => return unsupported(),
                    }
                }
                MExpr::Func(func, args)
            }
            Expr::BinaryOp { left, op, right } => {
                let op = match op {
                    BinaryOperator::Plus => BinOp::Add,
                    BinaryOperator::Minus => BinOp::Sub,
                    BinaryOperator::Multiply => BinOp::Mul,
                    BinaryOperator::Divide => BinOp::Div,
                    BinaryOperator::Modulo => BinOp::Mod,
                    BinaryOperator::Eq => BinOp::Eq,
                    BinaryOperator::NotEq => BinOp::Ne,
                    BinaryOperator::Lt => BinOp::Lt,
                    BinaryOperator::LtEq => BinOp::Le,
                    BinaryOperator::Gt => BinOp::Gt,
                    BinaryOperator::GtEq => BinOp::Ge,
                    BinaryOperator::And => BinOp::And,
                    BinaryOperator::Or => BinOp::Or,
                    other => return Err(format!("the operator {other} over aggregates")),
                };
                MExpr::Binary(
                    op,
                    Box::new(self.lower(left)?),
                    Box::new(self.lower(right)?),
                )
            }
            Expr::UnaryOp { op, expr } => match op {
                UnaryOperator::Minus => MExpr::Neg(Box::new(self.lower(expr)?)),
                UnaryOperator::Plus => self.lower(expr)?,
                UnaryOperator::Not => MExpr::Not(Box::new(self.lower(expr)?)),
                other => return Err(format!("the operator {other} over aggregates")),
            },
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let x = self.lower(expr)?;
                let (lo, hi) = (self.lower(low)?, self.lower(high)?);
                if *negated {
                    MExpr::Binary(
                        BinOp::Or,
                        Box::new(MExpr::Binary(BinOp::Lt, Box::new(x.clone()), Box::new(lo))),
                        Box::new(MExpr::Binary(BinOp::Gt, Box::new(x), Box::new(hi))),
                    )
                } else {
                    MExpr::Binary(
                        BinOp::And,
                        Box::new(MExpr::Binary(BinOp::Ge, Box::new(x.clone()), Box::new(lo))),
                        Box::new(MExpr::Binary(BinOp::Le, Box::new(x), Box::new(hi))),
                    )
                }
            }
            Expr::IsNull(x) => MExpr::IsNull(Box::new(self.lower(x)?), false),
            Expr::IsNotNull(x) => MExpr::IsNull(Box::new(self.lower(x)?), true),
            Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr,
                data_type,
                format: None,
            } => {
                let to = cast_to(data_type)
                    .ok_or_else(|| format!("the cast to {data_type} over aggregates"))?;
                MExpr::Cast(Box::new(self.lower(expr)?), to)
            }
            Expr::Ceil { expr, .. } => MExpr::Func(Func::Ceil, vec![self.lower(expr)?]),
            Expr::Floor { expr, .. } => MExpr::Func(Func::Floor, vec![self.lower(expr)?]),
            Expr::Case {
                operand: None,
                conditions,
                else_result,
                ..
            } => {
                let mut whens = Vec::new();
                for c in conditions {
                    whens.push((self.lower(&c.condition)?, self.lower(&c.result)?));
                }
                let otherwise = match else_result {
                    Some(x) => Some(Box::new(self.lower(x)?)),
                    None => None,
                };
                MExpr::Case { whens, otherwise }
            }
            _ => return unsupported(),
        })
    }
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(x) => strip(x),
        x => x,
    }
}

fn scalar_func(f: &Function) -> Option<Func> {
    let [ObjectNamePart::Identifier(n)] = f.name.0.as_slice() else {
        return None;
    };
    Some(match n.value.to_ascii_lowercase().as_str() {
        "round" => Func::Round,
        "trunc" => Func::Trunc,
        "abs" => Func::Abs,
        "ceil" | "ceiling" => Func::Ceil,
        "floor" => Func::Floor,
        "coalesce" => Func::Coalesce,
        "nullif" => Func::NullIf,
        "greatest" => Func::Greatest,
        "least" => Func::Least,
        _ => return None,
    })
}

/// The casts the evaluator does, by the type names Postgres accepts.
fn cast_to(t: &DataType) -> Option<CastTo> {
    Some(match t {
        DataType::SmallInt(_) | DataType::Int2(_) => CastTo::Int2,
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => CastTo::Int4,
        DataType::BigInt(_) | DataType::Int8(_) => CastTo::Int8,
        DataType::Real | DataType::Float4 => CastTo::Float4,
        DataType::DoublePrecision | DataType::Float8 => CastTo::Float8,
        DataType::Numeric(info) | DataType::Decimal(info) => CastTo::Numeric(match info {
            ExactNumberInfo::None => -1,
            ExactNumberInfo::Precision(p) => ((*p as i32) << 16) + 4,
            ExactNumberInfo::PrecisionAndScale(p, s) => {
                ((*p as i32) << 16 | ((*s as i32) & 0x7ff)) + 4
            }
        }),
        DataType::Bool | DataType::Boolean => CastTo::Bool,
        DataType::Text => CastTo::Text,
        DataType::Custom(name, mods) if mods.is_empty() => {
            match name.to_string().to_ascii_lowercase().as_str() {
                "int2" => CastTo::Int2,
                "int4" => CastTo::Int4,
                "int8" => CastTo::Int8,
                "float4" => CastTo::Float4,
                "float8" => CastTo::Float8,
                "numeric" => CastTo::Numeric(-1),
                "bool" => CastTo::Bool,
                _ => return None,
            }
        }
        _ => return None,
    })
}

pub(super) fn plan(
    q: &Query,
    s: &Select,
    key_distinct: &[String],
    params: usize,
    limit: Option<Count>,
    offset: Option<Count>,
) -> Result<DistPlan, String> {
    if matches!(s.distinct, Some(Distinct::Distinct | Distinct::On(_))) {
        return Err("DISTINCT together with aggregates or GROUP BY".into());
    }
    let mut b = Builder {
        items: Vec::new(),
        cols: Vec::new(),
        aggs: Vec::new(),
        key_distinct,
    };
    // Group keys, with positions and output names resolved (the shards'
    // select list is not the statement's).
    let mut keys = Vec::new();
    let mut shard_group = Vec::new();
    let mut set_exprs: Vec<Expr> = Vec::new();
    let mut alias_names: Vec<String> = Vec::new();
    match &s.group_by {
        GroupByExpr::All(_) => return Err("GROUP BY ALL".into()),
        GroupByExpr::Expressions(exprs, mods) => {
            if !mods.is_empty() {
                return Err("GROUP BY … WITH ROLLUP/CUBE (MySQL syntax)".into());
            }
            for e in exprs {
                let resolve_sets = |sets: &Vec<Vec<Expr>>,
                                    set_exprs: &mut Vec<Expr>,
                                    alias_names: &mut Vec<String>|
                 -> Result<Vec<Vec<Expr>>, String> {
                    let mut out = Vec::new();
                    for set in sets {
                        let mut r = Vec::new();
                        for x in set {
                            let (t, check) = group_target(x, &s.projection)?;
                            alias_names.extend(check);
                            let t = t.clone();
                            if !set_exprs.contains(&t) {
                                set_exprs.push(t.clone());
                            }
                            r.push(t);
                        }
                        out.push(r);
                    }
                    Ok(out)
                };
                let resolved = match e {
                    Expr::Rollup(sets) => {
                        Expr::Rollup(resolve_sets(sets, &mut set_exprs, &mut alias_names)?)
                    }
                    Expr::Cube(sets) => {
                        Expr::Cube(resolve_sets(sets, &mut set_exprs, &mut alias_names)?)
                    }
                    Expr::GroupingSets(sets) => {
                        Expr::GroupingSets(resolve_sets(sets, &mut set_exprs, &mut alias_names)?)
                    }
                    other => {
                        let (t, check) = group_target(other, &s.projection)?;
                        alias_names.extend(check);
                        let t = t.clone();
                        if contains_agg(&t) {
                            return Err(format!("GROUP BY {t}"));
                        }
                        keys.push(b.col(&t, ColFormat::Binary));
                        t
                    }
                };
                shard_group.push(resolved);
            }
        }
    }
    if !set_exprs.is_empty() {
        // Grouping sets: the same key values in different sets are
        // different groups; GROUPING() over every set column tells them apart.
        if set_exprs.len() > 31 {
            return Err("more than 31 columns in grouping sets".into());
        }
        for x in &set_exprs {
            keys.push(b.col(x, ColFormat::Binary));
        }
        let grouping = Expr::Function(Function {
            name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new("GROUPING"))]),
            uses_odbc_syntax: false,
            parameters: FunctionArguments::None,
            args: FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: None,
                args: set_exprs
                    .iter()
                    .map(|x| FunctionArg::Unnamed(FunctionArgExpr::Expr(x.clone())))
                    .collect(),
                clauses: Vec::new(),
            }),
            filter: None,
            null_treatment: None,
            over: None,
            within_group: Vec::new(),
        });
        keys.push(b.col(&grouping, ColFormat::Binary));
    }
    let mut outputs = Vec::new();
    for (i, item) in s.projection.iter().enumerate() {
        match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                if contains_window(e) {
                    return Err(format!("the window function in {e}"));
                }
                outputs.push(b.output(e, i)?);
            }
            _ => return Err("* in the select list of an aggregate".into()),
        }
    }
    let having = s.having.as_ref().map(|h| b.lower(h)).transpose()?;
    let mut order = Vec::new();
    if let Some(ob) = &q.order_by {
        let OrderByKind::Expressions(items) = &ob.kind else {
            return Err("ORDER BY ALL".into());
        };
        for item in items {
            if matches!(item.options.sort, Some(OrderBySort::Using(_))) {
                return Err("ORDER BY … USING an operator".into());
            }
            let target = order_target(&item.expr, &s.projection)?;
            let desc = matches!(item.options.sort, Some(OrderBySort::Desc));
            let nulls_first = item.options.nulls_first.unwrap_or(desc);
            order.push((b.lower(target)?, desc, nulls_first));
        }
    }
    let mut sel = s.clone();
    sel.projection = std::mem::take(&mut b.items);
    sel.group_by = GroupByExpr::Expressions(shard_group, Vec::new());
    sel.having = None;
    let mut shard = q.clone();
    shard.order_by = None;
    shard.limit_clause = None;
    shard.fetch = None;
    *shard.body = SetExpr::Select(Box::new(sel));
    let shard_sql = print_checked(&shard)?;
    let alias_checks = alias_names
        .iter()
        .map(|n| super::render::column_probe(q, s, n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut steps = vec![format!(
        "HashAggregate: shard groups with equal keys ({}) combined: {}",
        if keys.is_empty() {
            "one group".to_string()
        } else {
            keys.iter()
                .map(|&k| b.cols[k].sql.clone())
                .collect::<Vec<_>>()
                .join(", ")
        },
        b.aggs
            .iter()
            .map(|a| a.sql.clone())
            .collect::<Vec<_>>()
            .join(", ")
    )];
    if let Some(h) = &s.having {
        steps.push(format!("Filter: HAVING {h} over the merged groups"));
    }
    if let Some(ob) = &q.order_by {
        steps.push(format!("Sort: {ob} over the merged groups"));
    }
    if limit.is_some() || offset.is_some() {
        steps.push(super::limit_step(limit, offset));
    }
    let probe_cols: Vec<usize> = (0..b.cols.len())
        .filter(|&i| b.cols[i].format == ColFormat::Binary)
        .collect();
    Ok(DistPlan {
        probe_sql: probe(&shard, &probe_cols)?,
        probe_cols,
        shard_sql,
        visible_prefix: false,
        visible: Some(s.projection.len()),
        cols: b.cols,
        shape: Shape::Groups(Box::new(GroupPlan {
            keys,
            aggs: b.aggs,
            outputs,
            having,
            order,
        })),
        limit,
        offset,
        shard_limit_param: None,
        params,
        alias_checks,
        steps,
    })
}
