//! FROM clauses and conditions: binding tables (sharded occurrences,
//! reference and unknown tables, derived tables, CTE references), joins and
//! their ON/USING conditions, and WHERE conjuncts that pin or join keys.

use std::ops::Range;

use sqlparser::ast::{Expr, JoinConstraint, JoinOperator, TableAlias, TableFactor, TableWithJoins};

use super::keys::{classify, column_parts, conjuncts, key_source, name_parts, norm, Conjunct};
use super::scope::{Analyzer, Binding, Cols, Exposed, Occ, Restrict};

impl Analyzer<'_> {
    /// A WHERE clause (or a join's ON): conjuncts that pin or join keys, then
    /// the subqueries inside.
    pub fn condition(&mut self, cond: &Expr, r: Restrict<'_>) {
        for c in conjuncts(cond) {
            let mut handled_subquery = false;
            for part in classify(c) {
                match part {
                    Conjunct::Eq(a, b) => self.eq_conjunct(a, b, r),
                    Conjunct::InList(col, keys) => {
                        if let Some(p) = column_parts(col) {
                            let refs = self.resolve_col(p);
                            self.pin(&refs, &keys, r);
                        }
                    }
                    Conjunct::InSubquery(col, q) => {
                        handled_subquery = true;
                        self.walk(col);
                        let start = self.occs.len();
                        let ex = self.query(q, true);
                        let first = ex.cols.first().filter(|_| ex.positional);
                        if let (Some(p), Some(first)) = (column_parts(col), first) {
                            let outer = self.resolve_col(p);
                            let inner: Vec<_> = first
                                .occs
                                .iter()
                                .filter(|&&o| o >= start)
                                .map(|&occ| super::scope::ColRef {
                                    occ,
                                    local: true,
                                    pinnable: ex.row_local,
                                })
                                .collect();
                            // A top-level `x IN (SELECT y …)` filters x by y; y's
                            // rows only matter where they match x.
                            self.eq_edge(&outer, &inner, r);
                            for o in &outer {
                                for i in &inner {
                                    if i.pinnable {
                                        self.restrict.push((o.occ, i.occ));
                                    }
                                }
                            }
                        }
                    }
                }
            }
            if !handled_subquery {
                self.walk(c);
            }
        }
    }

    fn eq_conjunct(&mut self, a: &Expr, b: &Expr, r: Restrict<'_>) {
        match (column_parts(a), column_parts(b)) {
            (Some(pa), Some(pb)) => {
                let (ra, rb) = (self.resolve_col(pa), self.resolve_col(pb));
                self.eq_edge(&ra, &rb, r);
            }
            (Some(p), None) => {
                if let Some(k) = key_source(b) {
                    let refs = self.resolve_col(p);
                    self.pin(&refs, &[k], r);
                }
            }
            (None, Some(p)) => {
                if let Some(k) = key_source(a) {
                    let refs = self.resolve_col(p);
                    self.pin(&refs, &[k], r);
                }
            }
            (None, None) => {}
        }
    }

    /// A FROM item with its joins.
    pub fn bind_from(&mut self, twj: &TableWithJoins) {
        let left_start = self.occs.len();
        let left_bind = self.scope().bindings.len();
        self.table_factor(&twj.relation);
        for join in &twj.joins {
            let right_start = self.occs.len();
            let right_bind = self.scope().bindings.len();
            self.table_factor(&join.relation);
            let left = left_start..right_start;
            let right = right_start..self.occs.len();
            let both = [left.clone(), right.clone()];
            let (constraint, restricted): (Option<&JoinConstraint>, &[Range<usize>]) =
                match &join.join_operator {
                    JoinOperator::Join(c)
                    | JoinOperator::Inner(c)
                    | JoinOperator::CrossJoin(c)
                    | JoinOperator::StraightJoin(c) => (Some(c), &both[..]),
                    JoinOperator::Left(c)
                    | JoinOperator::LeftOuter(c)
                    | JoinOperator::LeftSemi(c)
                    | JoinOperator::LeftAnti(c)
                    | JoinOperator::Semi(c)
                    | JoinOperator::Anti(c) => (Some(c), &both[1..]),
                    JoinOperator::Right(c)
                    | JoinOperator::RightOuter(c)
                    | JoinOperator::RightSemi(c)
                    | JoinOperator::RightAnti(c) => (Some(c), &both[..1]),
                    JoinOperator::FullOuter(c) => (Some(c), &[]),
                    JoinOperator::AsOf { constraint, .. } => (Some(constraint), &[]),
                    _ => (None, &[]),
                };
            match constraint {
                Some(JoinConstraint::On(cond)) => self.condition(cond, Restrict::Sides(restricted)),
                Some(JoinConstraint::Using(names)) => {
                    for n in names {
                        if let Some(col) = n.0.last().and_then(|p| p.as_ident()) {
                            self.using_edge(col, left_bind, right_bind, restricted);
                        }
                    }
                }
                Some(JoinConstraint::Natural) => {
                    let keys: Vec<String> = self.occs[right.clone()]
                        .iter()
                        .map(|o| o.key.clone())
                        .collect();
                    for k in keys {
                        let id = sqlparser::ast::Ident::with_quote('"', k);
                        self.using_edge(&id, left_bind, right_bind, restricted);
                    }
                }
                _ => {}
            }
        }
    }

    /// `USING (col)`: left.col = right.col for the bindings of each side.
    fn using_edge(
        &mut self,
        col: &sqlparser::ast::Ident,
        left_bind: usize,
        right_bind: usize,
        restricted: &[Range<usize>],
    ) {
        let (mut l, mut r) = (Vec::new(), Vec::new());
        if let Some(scope) = self.scopes.last() {
            for (i, b) in scope.bindings.iter().enumerate().skip(left_bind) {
                let q = [
                    sqlparser::ast::Ident::with_quote('"', b.name.clone()),
                    col.clone(),
                ];
                let refs = self.resolve_col(&q);
                if i < right_bind {
                    l.extend(refs);
                } else {
                    r.extend(refs);
                }
            }
        }
        self.eq_edge(&l, &r, Restrict::Sides(restricted));
    }

    fn table_factor(&mut self, tf: &TableFactor) {
        match tf {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if args.is_some() {
                    // A set-returning function call: `FROM generate_series(…)`.
                    self.walk(tf);
                    self.bind(alias_name(alias).unwrap_or_default(), Cols::Opaque);
                    return;
                }
                let Some(parts) = name_parts(name) else {
                    self.bind(alias_name(alias).unwrap_or_default(), Cols::Opaque);
                    return;
                };
                self.bind_table(&parts, alias.as_ref());
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let ex = self.query(subquery, true);
                let ex = match alias {
                    Some(a) => rename(ex, a),
                    None => ex,
                };
                self.bind(alias_name(alias).unwrap_or_default(), Cols::Derived(ex));
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.bind_from(table_with_joins),
            other => {
                self.walk(other);
                let alias = match other {
                    TableFactor::Function { alias, .. }
                    | TableFactor::UNNEST { alias, .. }
                    | TableFactor::TableFunction { alias, .. } => alias_name(alias),
                    _ => None,
                };
                self.bind(alias.unwrap_or_default(), Cols::Opaque);
            }
        }
    }

    fn bind(&mut self, name: String, cols: Cols) {
        self.scope().bindings.push(Binding { name, cols });
    }

    /// Binds a table name: a visible CTE, a sharded table (new occurrence), or
    /// a reference/unknown table.
    pub fn bind_table(&mut self, parts: &[String], alias: Option<&TableAlias>) {
        let Some(last) = parts.last() else {
            return;
        };
        let bind_name = alias.map(|a| norm(&a.name)).unwrap_or_else(|| last.clone());
        if parts.len() == 1 {
            if let Some(cte) = self.ctes.iter().rev().find(|c| &c.name == last) {
                let ex = cte.exposed.clone();
                let ex = match alias {
                    Some(a) => rename(ex, a),
                    None => ex,
                };
                self.bind(bind_name, Cols::Derived(ex));
                return;
            }
        }
        let cat = self.cat;
        let Some(meta) = lookup(cat, parts) else {
            self.note_table(&parts.join("."));
            self.bind(bind_name, Cols::Opaque);
            return;
        };
        self.note_table(meta.name);
        match meta.shard_key {
            Some(key) if !meta.reference => {
                let occ = self.add_occ(Occ {
                    table: meta.name.to_string(),
                    key: key.to_string(),
                    group: meta.group,
                    key_type: meta.key_type,
                });
                // Column aliases rename columns by position, which we don't know.
                let renamed = alias.is_some_and(|a| !a.columns.is_empty());
                let cols = if renamed {
                    Cols::Opaque
                } else {
                    Cols::Occ(occ)
                };
                self.bind(bind_name, cols);
            }
            _ => {
                if meta.reference {
                    self.reference_reads.push(meta.name.to_string());
                }
                self.bind(bind_name, Cols::Opaque);
            }
        }
    }
}

/// Catalog lookup: `schema.table` first, then the bare name for `public`.
pub(crate) fn lookup<'a>(
    cat: &'a dyn super::catalog::Catalog,
    parts: &[String],
) -> Option<super::catalog::TableMeta<'a>> {
    match parts {
        [t] => cat.table(t),
        [schema, t] => cat.table(&format!("{schema}.{t}")).or_else(|| {
            if schema == "public" {
                cat.table(t)
            } else {
                None
            }
        }),
        _ => None,
    }
}

fn alias_name(alias: &Option<TableAlias>) -> Option<String> {
    alias.as_ref().map(|a| norm(&a.name))
}

/// Applies `AS x(a, b, …)` column aliases positionally (when positions are
/// unknown, the renamed table exposes no key column).
pub(crate) fn rename(mut ex: Exposed, alias: &TableAlias) -> Exposed {
    if alias.columns.is_empty() {
        return ex;
    }
    if !ex.positional {
        ex.cols.clear();
        return ex;
    }
    for (col, new) in ex.cols.iter_mut().zip(&alias.columns) {
        col.name = Some(norm(&new.name));
    }
    ex
}
