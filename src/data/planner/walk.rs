//! Walks queries (SELECT, set operations, CTEs, subqueries, functions)
//! and feeds the routing facts into the [`Analyzer`].

use std::ops::ControlFlow;

use sqlparser::ast::{
    Distinct, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    LimitClause, OrderByKind, OrderBySort, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, SetOperator, SetQuantifier, Visit, Visitor,
    WindowType, With,
};

use super::from::rename;
use super::keys::{column_parts, key_source, norm};
use super::plan::OrderKey;
use super::scope::{Analyzer, Binding, Cols, CteDef, ExCol, Exposed, Restrict, Scope};

/// Aggregate functions Postgres ships (a user-defined aggregate is not
/// recognized and is treated like a scalar function).
pub(crate) const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "bit_xor",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "xmlagg",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "mode",
    "percentile_cont",
    "percentile_disc",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "range_agg",
    "range_intersect_agg",
    "any_value",
];

/// Finds the subqueries directly inside an expression (not inside another
/// subquery) and the function calls of the current scope.
struct ExprWalk<'a, 'c> {
    an: &'a mut Analyzer<'c>,
    depth: usize,
}

impl Visitor for ExprWalk<'_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if self.depth == 0 {
            self.an.query(q, true);
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.depth == 0 {
            if let Expr::Function(f) = e {
                self.an.note_function(f);
            }
        }
        ControlFlow::Continue(())
    }
}

impl Analyzer<'_> {
    /// Analyzes the subqueries and function calls of an expression.
    pub fn walk<V: Visit>(&mut self, node: &V) {
        let _ = node.visit(&mut ExprWalk { an: self, depth: 0 });
    }

    fn note_function(&mut self, f: &Function) {
        let Some(name) = f.name.0.last().and_then(|p| p.as_ident()) else {
            return;
        };
        let name = name.value.to_ascii_lowercase();
        if let Some(over) = &f.over {
            // Partitioned by the shard key, a window sees the rows of one
            // shard only: the shards compute it whole.
            let on_key = match over {
                WindowType::WindowSpec(spec) => spec.partition_by.iter().any(|e| {
                    column_parts(e).is_some_and(|p| self.resolve_col(p).iter().any(|c| c.local))
                }),
                WindowType::NamedWindow(_) => false,
            };
            let scope = self.scope();
            scope.windows = true;
            scope.windows_unpartitioned |= !on_key;
        } else if AGGREGATES.contains(&name.as_str()) {
            self.scope().aggregates = true;
            if let FunctionArguments::List(list) = &f.args {
                // DISTINCT changes nothing for min, max and the boolean and
                // bitwise aggregates.
                let insensitive = matches!(
                    name.as_str(),
                    "min" | "max" | "bool_and" | "bool_or" | "every" | "bit_and" | "bit_or"
                );
                if list.duplicate_treatment == Some(sqlparser::ast::DuplicateTreatment::Distinct)
                    && !insensitive
                {
                    if self.args_are_keys(&list.args) {
                        let call = f.to_string();
                        self.scope().key_distinct.push(call);
                    } else {
                        self.scope().distinct_aggregate = true;
                    }
                }
            }
        }
    }

    fn args_are_keys(&self, args: &[FunctionArg]) -> bool {
        args.iter().all(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                column_parts(e).is_some_and(|p| !self.resolve_col(p).is_empty())
            }
            _ => false,
        })
    }

    /// A query: WITH, body, ORDER BY, LIMIT. `nested` is false only for the
    /// statement's outermost query (whose ORDER BY/LIMIT the merge applies).
    pub fn query(&mut self, q: &Query, nested: bool) -> Exposed {
        let start_occ = self.occs.len();
        let start_edge = self.restrict.len();
        let ctes_before = self.ctes.len();
        if let Some(with) = &q.with {
            self.push_ctes(with);
        }
        let mut ex = self.set_expr(&q.body, nested);
        let limited = q.limit_clause.is_some() || q.fetch.is_some();
        if !q.locks.is_empty() {
            self.writes = true;
        }
        if let Some(ob) = &q.order_by {
            if let OrderByKind::Expressions(items) = &ob.kind {
                for item in items {
                    self.walk(&item.expr);
                }
                if !nested {
                    self.merge.order_by = items
                        .iter()
                        .map(|i| {
                            let desc = matches!(i.options.sort, Some(OrderBySort::Desc));
                            OrderKey {
                                expr: i.expr.to_string(),
                                desc,
                                nulls_first: i.options.nulls_first.unwrap_or(desc),
                            }
                        })
                        .collect();
                }
            }
        }
        if !nested {
            match &q.limit_clause {
                Some(LimitClause::LimitOffset { limit, offset, .. }) => {
                    self.merge.limit = limit.as_ref().and_then(key_source);
                    self.merge.offset = offset.as_ref().and_then(|o| key_source(&o.value));
                }
                Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
                    self.merge.limit = key_source(limit);
                    self.merge.offset = key_source(offset);
                }
                None => {}
            }
            if let Some(f) = &q.fetch {
                self.merge.limit = f.quantity.as_ref().and_then(key_source);
            }
        } else if limited {
            ex.row_local = false;
            let sharded = self.occs.len() > start_occ;
            if sharded && !self.correlated(start_occ, start_edge) {
                self.note_unsafe("LIMIT/OFFSET in a subquery");
            }
        }
        self.ctes.truncate(ctes_before);
        ex
    }

    /// Analyzes the WITH queries and makes them visible by name (the caller
    /// truncates `self.ctes` when the query ends).
    pub fn push_ctes(&mut self, with: &With) {
        for cte in &with.cte_tables {
            let before = self.occs.len();
            let mut ex = self.query(&cte.query, true);
            if with.recursive && self.occs.len() > before {
                // A recursive CTE iterates over rows of several keys.
                self.note_unsafe("WITH RECURSIVE over sharded tables");
                ex.row_local = false;
            }
            let ex = rename(ex, &cte.alias);
            self.ctes.push(CteDef {
                name: norm(&cte.alias.name),
                exposed: ex,
            });
        }
    }

    /// True when a restriction edge from outside the occurrences created since
    /// `start_occ` reaches one of them: a correlated subquery evaluated for one
    /// key at a time.
    fn correlated(&self, start_occ: usize, start_edge: usize) -> bool {
        self.restrict[start_edge..]
            .iter()
            .any(|&(u, v)| u < start_occ && v >= start_occ)
    }

    fn set_expr(&mut self, body: &SetExpr, nested: bool) -> Exposed {
        match body {
            SetExpr::Select(s) => self.select(s, nested),
            SetExpr::Query(q) => self.query(q, nested),
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let l_start = self.occs.len();
                let l = self.set_expr(left, true);
                let r_start = self.occs.len();
                let r = self.set_expr(right, true);
                // Branches are concatenated: each shard's part of a UNION is
                // part of the whole, so the branches count as co-located.
                if r_start > l_start && self.occs.len() > r_start {
                    self.union(l_start, r_start);
                }
                let all = matches!(
                    set_quantifier,
                    SetQuantifier::All | SetQuantifier::AllByName
                );
                let sharded = self.occs.len() > l_start;
                match op {
                    SetOperator::Union if all => {}
                    SetOperator::Union => {
                        if nested && sharded {
                            self.note_unsafe("UNION in a subquery");
                        } else {
                            self.merge.distinct = true;
                        }
                    }
                    _ if sharded => {
                        let what = format!("{op} across shards");
                        if nested {
                            self.note_unsafe(what);
                        } else if self.merge.unsupported.is_none() {
                            self.merge.unsupported = Some(what);
                        }
                    }
                    _ => {}
                }
                let positional = l.positional && r.positional;
                let cols = if positional {
                    l.cols
                        .into_iter()
                        .zip(r.cols)
                        .map(|(a, b)| ExCol {
                            name: a.name,
                            occs: a.occs.into_iter().chain(b.occs).collect(),
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                Exposed {
                    cols,
                    row_local: l.row_local && r.row_local && all && *op == SetOperator::Union,
                    positional,
                }
            }
            SetExpr::Values(v) => {
                for row in &v.rows {
                    for e in &row.content {
                        self.walk(e);
                    }
                }
                Exposed {
                    cols: Vec::new(),
                    row_local: true,
                    positional: false,
                }
            }
            SetExpr::Table(t) => {
                self.scopes.push(Scope::default());
                if let Some(name) = &t.table_name {
                    let mut parts = Vec::new();
                    if let Some(s) = &t.schema_name {
                        parts.push(norm(s));
                    }
                    parts.push(norm(name));
                    self.bind_table(&parts, None);
                }
                let ex = self.expose_all();
                self.scopes.pop();
                ex
            }
            SetExpr::Insert(stmt) | SetExpr::Update(stmt) | SetExpr::Delete(stmt) => {
                self.nested_dml(stmt);
                Exposed::default()
            }
            SetExpr::Merge(stmt) => {
                self.writes = true;
                self.modifies = true;
                self.walk(stmt);
                Exposed::default()
            }
        }
    }

    fn select(&mut self, s: &Select, nested: bool) -> Exposed {
        let start_occ = self.occs.len();
        let start_edge = self.restrict.len();
        self.scopes.push(Scope::default());
        for twj in &s.from {
            self.bind_from(twj);
        }
        if let Some(w) = &s.selection {
            self.condition(w, Restrict::Local);
        }
        for item in &s.projection {
            self.walk(item);
        }
        let group_exprs: &[Expr] = match &s.group_by {
            GroupByExpr::Expressions(exprs, _) => exprs,
            GroupByExpr::All(_) => &[],
        };
        for e in group_exprs {
            self.walk(e);
        }
        if let Some(h) = &s.having {
            self.walk(h);
        }
        for w in &s.named_window {
            self.walk(w);
        }
        if let Some(Distinct::On(exprs)) = &s.distinct {
            for e in exprs {
                self.walk(e);
            }
        }
        if s.into.is_some() {
            self.writes = true;
        }
        let is_key =
            |e: &Expr| column_parts(e).is_some_and(|p| self.resolve_col(p).iter().any(|c| c.local));
        let group_by_key = group_exprs.iter().any(is_key);
        // Rows that carry a shard key column (or DISTINCT ON one) are only
        // ever equal to rows of the same shard.
        let distinct_local = match &s.distinct {
            Some(Distinct::On(exprs)) => exprs.iter().any(is_key),
            Some(Distinct::Distinct) => s.projection.iter().any(|i| match i {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => is_key(e),
                _ => false,
            }),
            _ => false,
        };
        let grouped = !group_exprs.is_empty() || matches!(s.group_by, GroupByExpr::All(_));
        let distinct = matches!(s.distinct, Some(Distinct::Distinct | Distinct::On(_)));
        let mut ex = self.expose(&s.projection);
        let scope = self.scopes.pop().unwrap_or_default();
        let aggregates = scope.aggregates || grouped || s.having.is_some();
        let sharded = self.occs.len() > start_occ;
        if nested {
            let correlated = self.correlated(start_occ, start_edge);
            if sharded && !correlated {
                if scope.windows_unpartitioned {
                    self.note_unsafe("window function in a subquery");
                }
                if aggregates && !group_by_key {
                    self.note_unsafe("aggregate in a subquery not grouped by the shard key");
                }
                if distinct && !distinct_local {
                    self.note_unsafe("DISTINCT in a subquery");
                }
            }
            ex.row_local = !(scope.windows_unpartitioned
                || (distinct && !distinct_local)
                || (aggregates && !group_by_key));
        } else {
            self.merge.aggregates = aggregates;
            self.merge.group_by = grouped;
            self.merge.having = s.having.is_some();
            self.merge.distinct |= distinct;
            self.merge.group_by_key = group_by_key;
            self.merge.distinct_local = distinct_local;
            self.merge.key_distinct_aggs = scope.key_distinct.clone();
            if sharded && self.merge.unsupported.is_none() {
                if scope.windows_unpartitioned {
                    self.merge.unsupported = Some("window functions across shards".into());
                } else if scope.distinct_aggregate && !group_by_key {
                    self.merge.unsupported = Some(
                        "aggregate with DISTINCT on a column that is not the shard key".into(),
                    );
                }
            }
            ex.row_local = true;
        }
        ex
    }

    /// The key columns a SELECT list exposes to an enclosing query.
    fn expose(&self, projection: &[SelectItem]) -> Exposed {
        let mut cols = Vec::new();
        let mut positional = true;
        for item in projection {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let name = column_parts(e).and_then(|p| p.last()).map(norm);
                    cols.push(ExCol {
                        name,
                        occs: self.local_key_occs(e),
                    });
                }
                SelectItem::ExprWithAlias { expr, alias } => cols.push(ExCol {
                    name: Some(norm(alias)),
                    occs: self.local_key_occs(expr),
                }),
                SelectItem::Wildcard(_) => {
                    positional = false;
                    cols.extend(self.expose_all().cols)
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => {
                    positional = false;
                    let q = n.0.last().and_then(|p| p.as_ident()).map(norm);
                    if let Some(scope) = self.scopes.last() {
                        for b in scope
                            .bindings
                            .iter()
                            .filter(|b| Some(&b.name) == q.as_ref())
                        {
                            cols.extend(self.binding_exposed(b));
                        }
                    }
                }
                _ => cols.push(ExCol {
                    name: None,
                    occs: Vec::new(),
                }),
            }
        }
        Exposed {
            cols,
            row_local: true,
            positional,
        }
    }

    fn local_key_occs(&self, e: &Expr) -> Vec<usize> {
        column_parts(e)
            .map(|p| {
                self.resolve_col(p)
                    .into_iter()
                    .filter(|c| c.local)
                    .map(|c| c.occ)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `SELECT *`: every binding's key columns (positions are not tracked for
    /// `*`, so a positional rename of a `*` derived table exposes nothing).
    fn expose_all(&self) -> Exposed {
        let cols = self
            .scopes
            .last()
            .map(|s| {
                s.bindings
                    .iter()
                    .flat_map(|b| self.binding_exposed(b))
                    .collect()
            })
            .unwrap_or_default();
        Exposed {
            cols,
            row_local: true,
            positional: false,
        }
    }

    fn binding_exposed(&self, b: &Binding) -> Vec<ExCol> {
        match &b.cols {
            Cols::Occ(i) => vec![ExCol {
                name: Some(self.occs[*i].key.clone()),
                occs: vec![*i],
            }],
            Cols::Derived(ex) => ex
                .cols
                .iter()
                .filter(|c| c.name.is_some())
                .cloned()
                .collect(),
            Cols::Opaque => Vec::new(),
        }
    }
}
