//! Client prepared statements under transaction pooling.
//!
//! A client's named statements live here, not on one backend: the next
//! transaction may land on another backend. Each statement gets a global name
//! derived from its text and parameter types (`sp` + 16 hex digits), so
//! every client preparing the same SQL shares one server-side statement per
//! backend; a backend remembers which global names it has (see
//! `Backend::prepared`), and the session prepares a statement on a backend
//! that lacks it just before it is used. Close of a statement is answered by
//! the proxy and never reaches a backend (other clients may share it).

use crate::data::planner::{Plan, Planner};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// A statement as the client prepared it.
#[derive(Debug)]
pub struct PreparedStmt {
    /// Identity of (query, parameter types); also the backend-side name.
    pub hash: u64,
    pub global_name: String,
    /// The query text, a NUL, then the raw parameter type OIDs from the
    /// Parse message: one allocation, so the per-Parse comparison in
    /// [`PreparedRegistry::reusable`] touches one place in memory.
    text: Box<[u8]>,
    query_len: usize,
    /// The routing plan, made once at Parse.
    pub plan: Arc<Plan>,
}

/// The text a statement is prepared with on the backends: the plan's
/// rewrite when it has one (an INSERT naming its columns), else the client's.
fn backend_text<'a>(query: &'a str, plan: &'a Plan) -> &'a str {
    plan.sent_text.as_deref().unwrap_or(query)
}

/// Fixed-key hasher so global names are the same in every proxy process
/// (several proxies may share backends' statement names through restarts).
fn stable_hash(query: &str, param_types: &[u8]) -> u64 {
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    h.write(query.as_bytes());
    h.write_u8(0);
    h.write(param_types);
    h.finish()
}

impl PreparedStmt {
    pub fn new(query: &str, param_types: &[u8], plan: Arc<Plan>) -> PreparedStmt {
        let hash = stable_hash(backend_text(query, &plan), param_types);
        PreparedStmt {
            hash,
            global_name: format!("sp{hash:016x}"),
            text: [query.as_bytes(), &[0], param_types].concat().into(),
            query_len: query.len(),
            plan,
        }
    }
}

impl PreparedStmt {
    /// The SQL text the backends prepare (see [`PreparedStmt::rewritten`]).
    pub fn query(&self) -> &str {
        backend_text(self.client_query(), &self.plan)
    }

    /// The SQL text as the client sent it.
    pub fn client_query(&self) -> &str {
        // Built from a &str in `new`; never fails.
        std::str::from_utf8(&self.text[..self.query_len]).unwrap_or_default()
    }

    /// The backends get another text than the client's Parse (an INSERT
    /// without a column list, sent naming its columns).
    pub fn rewritten(&self) -> bool {
        self.plan.sent_text.is_some()
    }

    /// Raw parameter type OIDs (4 bytes each) as the Parse message had them.
    pub fn param_types(&self) -> &[u8] {
        &self.text[self.query_len + 1..]
    }

    fn is(&self, query: &str, param_types: &[u8]) -> bool {
        self.query_len == query.len()
            && self.text[..self.query_len] == *query.as_bytes()
            && self.param_types() == param_types
    }
}

/// Statements by name as they were before a batch (see
/// [`PreparedRegistry::save`]).
pub type Saved = Vec<(String, Option<Arc<PreparedStmt>>)>;

/// One client's statements: named ones and the unnamed one.
#[derive(Debug, Default)]
pub struct PreparedRegistry {
    /// foldhash: looked up for every Bind and Describe of a named statement
    /// (twice per Bind), where SipHash was a visible cost; a client can only
    /// slow its own session with colliding names.
    named: HashMap<String, Arc<PreparedStmt>, foldhash::fast::RandomState>,
    unnamed: Option<Arc<PreparedStmt>>,
}

impl PreparedRegistry {
    pub fn get(&self, name: &str) -> Option<&Arc<PreparedStmt>> {
        if name.is_empty() {
            self.unnamed.as_ref()
        } else {
            self.named.get(name)
        }
    }

    /// The client's unnamed statement when a new Parse of the unnamed
    /// statement repeats it (clients using the extended protocol without
    /// named statements send the same Parse for every execution).
    pub fn reusable(
        &self,
        p: &crate::data::codec::frontend::ParseMsg<'_>,
    ) -> Option<Arc<PreparedStmt>> {
        if !p.name.is_empty() {
            return None;
        }
        self.unnamed
            .as_ref()
            .filter(|s| s.is(p.query, p.param_types))
            .cloned()
    }

    /// The statements called `names` (None: no such statement), to be put
    /// back by [`PreparedRegistry::restore`].
    pub fn save<'a>(&self, names: impl Iterator<Item = &'a str>) -> Saved {
        let mut saved: Saved = Vec::new();
        for n in names {
            if !saved.iter().any(|(s, _)| s == n) {
                saved.push((n.to_string(), self.get(n).cloned()));
            }
        }
        saved
    }

    /// Puts the statements `saved` back as they were.
    pub fn restore(&mut self, saved: &Saved) {
        for (name, stmt) in saved {
            match stmt {
                Some(s) => self.insert(name, s.clone()),
                None => self.remove(name),
            }
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Records a Parse. The unnamed statement is replaced; a named one must be new.
    pub fn insert(&mut self, name: &str, stmt: Arc<PreparedStmt>) {
        if name.is_empty() {
            self.unnamed = Some(stmt);
        } else {
            self.named.insert(name.to_string(), stmt);
        }
    }

    /// Plans every statement again with `planner`: a RELOAD may have
    /// changed the table definitions the old plans were made from.
    pub fn replan(&mut self, planner: &Planner) {
        self.replan_where(planner, |_| true);
    }

    /// Plans again the statements whose plans `planner` no longer takes as
    /// current, or that wait for a table's columns (see `ColumnCache`).
    pub fn replan_stale(&mut self, planner: &Planner) {
        self.replan_where(planner, |p| {
            !planner.is_current(p) || p.needs_columns().is_some()
        });
    }

    fn replan_where(&mut self, planner: &Planner, stale: impl Fn(&Plan) -> bool) {
        for s in self.named.values_mut().chain(self.unnamed.as_mut()) {
            if stale(&s.plan) {
                // Its backend text (and so its global name) may change too.
                *s = Arc::new(PreparedStmt::new(
                    s.client_query(),
                    s.param_types(),
                    planner.plan(s.client_query()),
                ));
            }
        }
    }

    pub fn remove(&mut self, name: &str) {
        if name.is_empty() {
            self.unnamed = None;
        } else {
            self.named.remove(name);
        }
    }

    pub fn len(&self) -> usize {
        self.named.len() + usize::from(self.unnamed.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Arc<Plan> {
        Arc::new(Plan::default())
    }

    #[test]
    fn same_sql_same_global_name_different_types_differ() {
        let a = PreparedStmt::new("select $1", &[0, 0, 0, 23], plan());
        let b = PreparedStmt::new("select $1", &[0, 0, 0, 23], plan());
        let c = PreparedStmt::new("select $1", &[0, 0, 0, 20], plan());
        assert_eq!(a.global_name, b.global_name);
        assert_ne!(a.global_name, c.global_name);
        assert_eq!(a.global_name.len(), 18);
    }

    #[test]
    fn registry_tracks_named_and_unnamed() {
        let mut r = PreparedRegistry::default();
        r.insert("", Arc::new(PreparedStmt::new("select 1", &[], plan())));
        r.insert("s", Arc::new(PreparedStmt::new("select 2", &[], plan())));
        assert_eq!(r.len(), 2);
        assert_eq!(r.get("s").unwrap().query(), "select 2");
        assert_eq!(r.get("s").unwrap().param_types(), &[] as &[u8]);
        let t = PreparedStmt::new("select $1", &[0, 0, 0, 23], plan());
        assert_eq!(
            (t.query(), t.param_types()),
            ("select $1", &[0u8, 0, 0, 23][..])
        );
        assert!(t.is("select $1", &[0, 0, 0, 23]) && !t.is("select $1", &[]));
        r.remove("s");
        r.remove("");
        assert!(r.is_empty());
    }
}
