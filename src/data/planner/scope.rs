//! The routing state of one statement: its sharded table occurrences, how they
//! are joined, and which shard key values restrict them; and the decision
//! drawn from it.
//!
//! The model (sound rather than complete; anything it cannot prove is not
//! routed by key):
//! * Every reference to a sharded table in FROM (at any nesting level) is an
//!   *occurrence*.
//! * An equality between the key columns of two occurrences (a WHERE or ON
//!   conjunct, USING, a correlated subquery condition, `key IN (SELECT key …)`)
//!   *co-locates* them: rows that meet live on the same shard, so running the
//!   statement on each shard and concatenating is correct.
//! * A *pin* (`key = v`, `key IN (…)`) restricts the rows of an occurrence that
//!   can influence the result; a *restriction edge* u→v (an equality that
//!   filters v's rows against u's) carries u's pins to v. Conditions only
//!   restrict occurrences bound in their own scope, and an outer join's ON
//!   only restricts its nullable side.
//! * When every occurrence is restricted, the statement only needs the shards
//!   owning those keys. Otherwise it runs on every shard, which is only
//!   correct when all occurrences are co-located and no subquery aggregates,
//!   limits or windows over rows of several shards.

use std::collections::HashSet;

use sqlparser::ast::Ident;

use super::catalog::{Catalog, KeyType};
use super::keys::ident_is;
use super::plan::{KeySource, MergeSpec};

/// One reference to a sharded table.
#[derive(Debug, Clone)]
pub(crate) struct Occ {
    pub table: String,
    pub key: String,
    pub group: usize,
    pub key_type: KeyType,
}

/// The columns a derived table, CTE or subquery exposes that are shard keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct Exposed {
    pub cols: Vec<ExCol>,
    /// Each output row comes from input rows of one key: no aggregation
    /// (other than grouping by the key), DISTINCT, window or LIMIT.
    pub row_local: bool,
    /// Column positions are known (no `*` in the SELECT list).
    pub positional: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ExCol {
    pub name: Option<String>,
    /// The occurrences whose key this output column is (several for UNION).
    pub occs: Vec<usize>,
}

#[derive(Debug)]
pub(crate) enum Cols {
    /// A sharded base table: exposes its key column.
    Occ(usize),
    Derived(Exposed),
    /// Reference, unknown or function tables: no shard key.
    Opaque,
}

#[derive(Debug)]
pub(crate) struct Binding {
    pub name: String,
    pub cols: Cols,
}

/// One SELECT (or UPDATE/DELETE) level for name resolution.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    pub bindings: Vec<Binding>,
    pub aggregates: bool,
    pub windows: bool,
    /// A window function not partitioned by a shard key.
    pub windows_unpartitioned: bool,
    /// An aggregate with DISTINCT over something other than a shard key.
    pub distinct_aggregate: bool,
    /// Aggregate calls with DISTINCT over a shard key, as printed.
    pub key_distinct: Vec<String>,
}

/// A resolved reference to an occurrence's key column.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColRef {
    pub occ: usize,
    /// Bound in the innermost scope (not a correlated outer reference).
    pub local: bool,
    /// Not seen through a derived table that aggregates or limits: a condition
    /// on it restricts the occurrence's rows.
    pub pinnable: bool,
}

/// Which occurrences a condition restricts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Restrict<'r> {
    /// A WHERE conjunct: every occurrence bound in this scope.
    Local,
    /// A join's ON: occurrences of these occurrence-index ranges (the nullable
    /// sides; both sides for an inner join).
    Sides(&'r [std::ops::Range<usize>]),
}

impl Restrict<'_> {
    fn allows(&self, c: &ColRef) -> bool {
        c.local
            && c.pinnable
            && match self {
                Restrict::Local => true,
                Restrict::Sides(ranges) => ranges.iter().any(|r| r.contains(&c.occ)),
            }
    }
}

/// A visible WITH query.
#[derive(Debug)]
pub(crate) struct CteDef {
    pub name: String,
    pub exposed: Exposed,
}

/// The decision for a statement's sharded tables.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// No sharded table.
    Unsharded,
    /// Only rows of these keys matter.
    Keyed {
        group: usize,
        key_type: KeyType,
        keys: Vec<KeySource>,
        /// Set when the keys resolving to several shards would give a wrong
        /// result (joins not on the key, subqueries that aggregate, …).
        multi_shard_problem: Option<String>,
    },
    /// Every shard.
    FanOut { group: usize, key_type: KeyType },
    /// Cannot run correctly: the reason.
    Refuse(String),
}

pub(crate) struct Analyzer<'c> {
    pub cat: &'c dyn Catalog,
    pub occs: Vec<Occ>,
    parent: Vec<usize>,
    pub restrict: Vec<(usize, usize)>,
    pins: Vec<(usize, Vec<KeySource>)>,
    pub tables: Vec<String>,
    pub scopes: Vec<Scope>,
    pub ctes: Vec<CteDef>,
    /// The first construct that makes running on several shards wrong.
    pub nested_unsafe: Option<String>,
    /// Top-level facts for the merge (and top-level constructs it can't merge).
    pub merge: MergeSpec,
    /// The statement may write (data, locks, sequences, …).
    pub writes: bool,
    /// The statement modifies table rows (INSERT/UPDATE/DELETE, also in WITH).
    pub modifies: bool,
    /// A construct refused outright (0A000), whatever the routing.
    pub refusal: Option<String>,
    /// Tables referenced that are reference tables.
    pub reference_reads: Vec<String>,
}

impl<'c> Analyzer<'c> {
    pub fn new(cat: &'c dyn Catalog) -> Analyzer<'c> {
        Analyzer {
            cat,
            occs: Vec::new(),
            parent: Vec::new(),
            restrict: Vec::new(),
            pins: Vec::new(),
            tables: Vec::new(),
            scopes: Vec::new(),
            ctes: Vec::new(),
            nested_unsafe: None,
            merge: MergeSpec::default(),
            writes: false,
            modifies: false,
            refusal: None,
            reference_reads: Vec::new(),
        }
    }

    pub fn note_table(&mut self, name: &str) {
        if !self.tables.iter().any(|t| t == name) {
            self.tables.push(name.to_string());
        }
    }

    pub fn note_unsafe(&mut self, what: impl Into<String>) {
        if self.nested_unsafe.is_none() {
            self.nested_unsafe = Some(what.into());
        }
    }

    pub fn refuse(&mut self, why: impl Into<String>) {
        if self.refusal.is_none() {
            self.refusal = Some(why.into());
        }
    }

    pub fn add_occ(&mut self, occ: Occ) -> usize {
        self.occs.push(occ);
        self.parent.push(self.parent.len());
        self.occs.len() - 1
    }

    fn find(&self, mut i: usize) -> usize {
        while self.parent[i] != i {
            i = self.parent[i];
        }
        i
    }

    pub fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[rb] = ra;
        }
    }

    pub fn scope(&mut self) -> &mut Scope {
        if self.scopes.is_empty() {
            self.scopes.push(Scope::default());
        }
        let last = self.scopes.len() - 1;
        &mut self.scopes[last]
    }

    /// Resolves a column reference to shard key columns. Unqualified names
    /// resolve only in the innermost scope (an outer match could be shadowed by
    /// a column of a table whose columns we don't know); qualified names
    /// resolve to the nearest scope binding that name.
    pub fn resolve_col(&self, parts: &[Ident]) -> Vec<ColRef> {
        let mut out = Vec::new();
        let Some(col) = parts.last() else {
            return out;
        };
        if parts.len() == 1 {
            if let Some(scope) = self.scopes.last() {
                for b in &scope.bindings {
                    self.binding_cols(b, col, true, &mut out);
                }
            }
            return out;
        }
        let qual = &parts[parts.len() - 2];
        for (depth, scope) in self.scopes.iter().rev().enumerate() {
            if let Some(b) = scope
                .bindings
                .iter()
                .rev()
                .find(|b| ident_is(qual, &b.name))
            {
                self.binding_cols(b, col, depth == 0, &mut out);
                return out;
            }
        }
        out
    }

    fn binding_cols(&self, b: &Binding, col: &Ident, local: bool, out: &mut Vec<ColRef>) {
        match &b.cols {
            Cols::Occ(i) if ident_is(col, &self.occs[*i].key) => out.push(ColRef {
                occ: *i,
                local,
                pinnable: true,
            }),
            Cols::Derived(ex) => {
                for c in &ex.cols {
                    if c.name.as_deref().is_some_and(|n| ident_is(col, n)) {
                        out.extend(c.occs.iter().map(|&occ| ColRef {
                            occ,
                            local,
                            pinnable: ex.row_local,
                        }));
                    }
                }
            }
            _ => {}
        }
    }

    /// `a = b` between key columns: co-locates them and restricts as allowed.
    pub fn eq_edge(&mut self, a: &[ColRef], b: &[ColRef], r: Restrict<'_>) {
        for x in a {
            for y in b {
                if x.occ == y.occ {
                    continue;
                }
                self.union(x.occ, y.occ);
                if r.allows(y) {
                    self.restrict.push((x.occ, y.occ));
                }
                if r.allows(x) {
                    self.restrict.push((y.occ, x.occ));
                }
            }
        }
    }

    /// `col = v` / `col IN (…)`: pins the occurrences the condition restricts.
    pub fn pin(&mut self, cols: &[ColRef], keys: &[KeySource], r: Restrict<'_>) {
        for c in cols {
            if r.allows(c) {
                self.pins.push((c.occ, keys.to_vec()));
            }
        }
    }

    /// The smallest pin that restricts each occurrence (directly or through
    /// restriction edges), or `None` when some occurrence is unrestricted.
    fn effective_pins(&self) -> Option<Vec<KeySource>> {
        let n = self.occs.len();
        let mut best: Vec<Option<usize>> = vec![None; n]; // index into self.pins
        for (pi, (occ, keys)) in self.pins.iter().enumerate() {
            if best[*occ].is_none_or(|b| self.pins[b].1.len() > keys.len()) {
                best[*occ] = Some(pi);
            }
        }
        // Propagate along restriction edges until nothing improves (the graph
        // is small; this is at most n rounds).
        for _ in 0..n {
            let mut changed = false;
            for &(u, v) in &self.restrict {
                if let Some(bu) = best[u] {
                    if best[v].is_none_or(|bv| self.pins[bv].1.len() > self.pins[bu].1.len()) {
                        best[v] = Some(bu);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let mut keys: Vec<KeySource> = Vec::new();
        let mut seen = HashSet::new();
        for b in best {
            for k in &self.pins[b?].1 {
                if seen.insert(k.clone()) {
                    keys.push(k.clone());
                }
            }
        }
        Some(keys)
    }

    /// Why the occurrences can't be answered shard by shard, if they can't.
    fn colocation_problem(&self) -> Option<String> {
        let first = self.occs.first()?;
        if let Some(o) = self.occs.iter().find(|o| o.group != first.group) {
            return Some(format!(
                "tables \"{}\" and \"{}\" are not co-located (different co-location groups)",
                first.table, o.table
            ));
        }
        let root = self.find(0);
        if let Some(i) = (1..self.occs.len()).find(|&i| self.find(i) != root) {
            let (a, b) = (&self.occs[0].table, &self.occs[i].table);
            return Some(if a == b {
                format!("table \"{a}\" is used twice without joining on its shard key")
            } else {
                format!("tables \"{a}\" and \"{b}\" are not joined on their shard keys")
            });
        }
        None
    }

    /// The routing decision for the occurrences collected so far.
    pub fn decide(&self) -> Decision {
        let Some(first) = self.occs.first() else {
            return Decision::Unsharded;
        };
        let (group, key_type) = (first.group, first.key_type);
        let same_group = self.occs.iter().all(|o| o.group == group);
        let problem = self
            .colocation_problem()
            .or_else(|| self.nested_unsafe.clone())
            .or_else(|| self.merge.unsupported.clone());
        match self.effective_pins() {
            // One key in one group: a single shard holds every row that
            // matters, so anything goes.
            Some(keys) if keys.len() == 1 && same_group => Decision::Keyed {
                group,
                key_type,
                keys,
                multi_shard_problem: None,
            },
            Some(keys) if !keys.is_empty() && same_group => Decision::Keyed {
                group,
                key_type,
                keys,
                multi_shard_problem: problem,
            },
            _ => match problem {
                Some(p) => Decision::Refuse(p),
                None => Decision::FanOut { group, key_type },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::planner::tests::map;

    fn occ(an: &mut Analyzer<'_>, table: &str, group: usize) -> usize {
        an.add_occ(Occ {
            table: table.into(),
            key: "k".into(),
            group,
            key_type: KeyType::Int8,
        })
    }

    fn lit(s: &str) -> KeySource {
        KeySource::Literal(s.into())
    }

    fn cref(occ: usize) -> ColRef {
        ColRef {
            occ,
            local: true,
            pinnable: true,
        }
    }

    #[test]
    fn pins_flow_along_restriction_edges_only() {
        let cat = map();
        let mut an = Analyzer::new(&cat);
        let a = occ(&mut an, "a", 0);
        let b = occ(&mut an, "b", 0);
        // a LEFT JOIN b ON a.k = b.k: b is restricted by a, not the reverse.
        let right = [std::ops::Range { start: 1, end: 2 }];
        an.eq_edge(&[cref(a)], &[cref(b)], Restrict::Sides(&right));
        an.pin(&[cref(b)], &[lit("5")], Restrict::Local);
        assert_eq!(
            an.decide(),
            Decision::FanOut {
                group: 0,
                key_type: KeyType::Int8
            }
        );
        an.pin(&[cref(a)], &[lit("7")], Restrict::Local);
        match an.decide() {
            Decision::Keyed { keys, .. } => assert_eq!(keys, vec![lit("7"), lit("5")]),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn unjoined_occurrences_are_not_colocated() {
        let cat = map();
        let mut an = Analyzer::new(&cat);
        occ(&mut an, "a", 0);
        occ(&mut an, "b", 0);
        match an.decide() {
            Decision::Refuse(m) => assert!(m.contains("not joined on their shard keys"), "{m}"),
            d => panic!("{d:?}"),
        }
        an.pin(&[cref(0)], &[lit("1")], Restrict::Local);
        an.pin(&[cref(1)], &[lit("1")], Restrict::Local);
        // Both restricted to the same single key: one shard answers it.
        assert!(
            matches!(an.decide(), Decision::Keyed { keys, multi_shard_problem: None, .. } if keys == vec![lit("1")])
        );
    }

    #[test]
    fn different_groups_never_fan_out() {
        let cat = map();
        let mut an = Analyzer::new(&cat);
        let a = occ(&mut an, "a", 0);
        let b = occ(&mut an, "b", 1);
        an.eq_edge(&[cref(a)], &[cref(b)], Restrict::Local);
        assert!(
            matches!(an.decide(), Decision::Refuse(m) if m.contains("different co-location groups"))
        );
    }
}
