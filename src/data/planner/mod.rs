//! The query planner: from SQL text to a routing plan.
//!
//! [`Planner::plan`] parses a simple-query string (or a prepared statement's
//! text) with sqlparser's Postgres dialect and decides, per statement, where
//! it must run ([`Target`]): the shards of the keys it names, every shard, any
//! shard, or nowhere (a refusal with SQLSTATE and message). Plans are cached
//! per text. Bind-time values are resolved to shards by [`resolve`] /
//! [`resolve_stmt`]; multi-row INSERTs are split per shard by
//! [`split_insert`]; `COPY … FROM STDIN` data is split by [`CopySplitter`].
//!
//! Unknown tables (not in the shard map) are treated as unsharded: a
//! statement touching only those (and reference tables) may run on any shard
//! — the session's current one. See `scope.rs` for the routing model.
//!
//! Stack safety: sqlparser limits nesting (parentheses, subqueries) with its
//! recursion limit, but operator chains (`a + a + …`, `x[1][1]…`) build trees
//! as deep as the text is long, and parsing, analysing and dropping them
//! recurses. Texts up to [`INLINE_MAX`] bytes are planned on the caller's
//! stack; longer ones on a short-lived thread whose stack grows with the text.

mod analyze;
mod cache;
mod catalog;
mod columns;
mod copy;
mod copy_binary;
mod copy_split;
mod distributed;
mod dml;
mod from;
mod hints;
mod insert_split;
mod keys;
mod last_plan;
mod lex;
pub mod normalize;
mod plan;
#[cfg(any(test, feature = "fuzzing"))]
pub mod properties;
mod resolve;
mod scope;
mod session_state;
mod setting_words;
pub mod standard_strings;
mod template_match;
mod unparsed;
mod walk;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use sqlparser::ast::{Statement, Visit, Visitor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

pub use catalog::{Catalog, KeyType, TableMeta};
pub use columns::ColumnCache;
pub use copy_binary::SIGNATURE as COPY_BINARY_SIGNATURE;
pub use copy_split::{CopyDest, CopySplitter};
pub use distributed::spec as dist;
pub use distributed::DistPlan;
pub use hints::extract_hint;
pub use insert_split::{split_insert, InsertPart};
pub use last_plan::LastPlan;
pub use plan::{
    CopyFormat, CopySpec, DistRef, FanOut, Hint, KeySource, MergeSpec, OrderKey, Plan, StmtKind,
    StmtPlan, Target,
};
pub use resolve::{
    key_value, resolve, resolve_keyed, resolve_stmt, resolve_stmt_keyed, Params, Route, RouteError,
    RoutedKey,
};

/// sqlparser's nesting limit (its default, stated here so it is a decision).
pub const RECURSION_LIMIT: usize = 50;
/// Longest text planned on the caller's stack (a tokio worker has 2 MiB).
pub const INLINE_MAX: usize = 8 * 1024;
/// Longest text planned at all; longer texts get an unparsed plan.
pub const MAX_TEXT: usize = 4 * 1024 * 1024;
/// Stack for planning a long text: base plus this many bytes per text byte
/// (measured: a debug build needs about 100 bytes of stack per nesting level,
/// and each level takes at least one byte of text).
const STACK_BASE: usize = 4 * 1024 * 1024;
const STACK_PER_BYTE: usize = 256;
/// Texts longer than this are not cached (one-off bulk INSERTs).
pub const CACHE_MAX_TEXT: usize = 16 * 1024;
/// Default plan cache size.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;
/// A multi-row INSERT's AST is kept for [`split_insert`] only if no
/// expression in it nests deeper than this (it may be dropped on any thread).
const MAX_KEPT_DEPTH: usize = 256;

/// Plans statements; shared by all sessions (`Send + Sync`).
pub struct Planner {
    catalog: Arc<dyn Catalog>,
    cache: Option<cache::PlanCache>,
    /// Column orders learnt from the shards (INSERT without a column list).
    pub columns: ColumnCache,
}

impl Planner {
    /// A planner over `catalog` (usually `Arc<ShardMap>`) with the default cache.
    pub fn new(catalog: Arc<dyn Catalog>) -> Planner {
        Planner::with_cache_capacity(catalog, DEFAULT_CACHE_ENTRIES)
    }

    /// A planner caching about `entries` plans (0: no cache).
    pub fn with_cache_capacity(catalog: Arc<dyn Catalog>, entries: usize) -> Planner {
        Planner {
            catalog,
            cache: (entries > 0).then(|| cache::PlanCache::new(entries)),
            columns: ColumnCache::default(),
        }
    }

    /// The plan of a SQL text, from the cache when possible. Never panics; a
    /// text sqlparser rejects yields a plan with [`Target::Unparsed`].
    pub fn plan(&self, sql: &str) -> Arc<Plan> {
        let cacheable = sql.len() <= CACHE_MAX_TEXT;
        let mut stale = false;
        if let (true, Some(c)) = (cacheable, &self.cache) {
            if let Some(p) = c.get(sql) {
                if self.is_current(&p) {
                    return p;
                }
                stale = true;
            }
        }
        let plan = Arc::new(self.plan_uncached(sql));
        // A plan waiting for a table's columns is made again once they are known.
        if let (true, Some(c), None) = (cacheable, &self.cache, plan.needs_columns()) {
            if stale {
                c.replace(sql, plan.clone());
            } else {
                c.insert(sql, plan.clone());
            }
        }
        plan
    }

    /// False for a plan made from column orders that changed since (see
    /// [`ColumnCache`]): it must be made again.
    #[inline]
    pub fn is_current(&self, plan: &Plan) -> bool {
        plan.column_generation
            .is_none_or(|g| g == self.columns.generation())
    }

    /// The plan of a simple-protocol text, with its literals as text
    /// parameters when the text was normalized (see [`normalize`]): texts
    /// that differ only in literals share one cached plan.
    pub fn plan_literals<'a>(&self, sql: &'a str) -> (Arc<Plan>, normalize::Literals<'a>) {
        self.plan_literals_with(sql, &mut LastPlan::default())
    }

    /// [`Planner::plan_literals`] through a session's memo of its last
    /// statement shape: a text of that shape costs one scan and no lookup.
    /// The memo must have been filled by this planner.
    pub fn plan_literals_with<'a>(
        &self,
        sql: &'a str,
        last: &mut LastPlan,
    ) -> (Arc<Plan>, normalize::Literals<'a>) {
        if let Some(hit) = last.hit(sql) {
            return hit;
        }
        if let Some(n) = normalize::normalize(sql) {
            let plan = self.plan(&n.template);
            let usable = plan.stmts.len() == 1
                && !matches!(
                    plan.stmts[0].target,
                    Target::Unparsed { .. } | Target::InsertMulti { .. }
                );
            if usable {
                last.remember(n.template, n.slots, plan.clone());
                return (plan, n.literals);
            }
        }
        (self.plan(sql), normalize::Literals::new())
    }

    /// The plan of a SQL text, bypassing the cache.
    pub fn plan_uncached(&self, sql: &str) -> Plan {
        let generation = self.columns.generation();
        let with_columns = catalog::WithColumns {
            tables: self.catalog.as_ref(),
            columns: &self.columns,
        };
        let cat: &dyn Catalog = &with_columns;
        let mut plan = if sql.len() <= INLINE_MAX {
            plan_text(sql, cat)
        } else if sql.len() > MAX_TEXT {
            let error = format!("statement text too long to plan ({} bytes)", sql.len());
            Plan {
                stmts: vec![unparsed::plan_unparsed(sql, error)],
                ..Plan::default()
            }
        } else {
            plan_on_big_stack(sql, cat)
        };
        if plan.stmts.iter().any(|s| s.implicit_columns.is_some()) {
            plan.column_generation = Some(generation);
            match plan.stmts.as_mut_slice() {
                [s] => plan.sent_text = s.sent_text.take(),
                stmts => {
                    for s in stmts {
                        if s.implicit_columns.is_some() {
                            s.target = Target::Refused {
                                sqlstate: "0A000",
                                message: "an INSERT without a column list into a sharded table must be sent on its own, not in a string of several statements".into(),
                            };
                        }
                    }
                }
            }
        }
        plan.hint = extract_hint(sql);
        plan.touches_settings = setting_words::may_change_settings(sql);
        plan.drops_statements = plan.touches_settings && setting_words::may_drop_statements(sql);
        plan.replica_ok = !plan.stmts.is_empty()
            && !plan.touches_settings
            && plan.stmts.iter().all(|s| {
                s.read_only
                    && s.session_state.is_none()
                    && matches!(s.kind, StmtKind::Select | StmtKind::CopyTo)
                    && !matches!(s.target, Target::Unparsed { .. } | Target::Refused { .. })
            })
            && !hints::wants_primary(sql);
        if let Some(h) = &plan.hint {
            for s in &mut plan.stmts {
                s.target = s.hinted(h);
            }
        }
        plan
    }
}

/// Plans a long text on a thread with a stack sized for it.
fn plan_on_big_stack(sql: &str, cat: &dyn Catalog) -> Plan {
    let stack = STACK_BASE + sql.len() * STACK_PER_BYTE;
    let planned = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("shardproxy-planner".into())
            .stack_size(stack)
            .spawn_scoped(s, || plan_text(sql, cat))
            .ok()
            .and_then(|h| h.join().ok())
    });
    planned.unwrap_or_else(|| Plan {
        stmts: vec![unparsed::plan_unparsed(
            sql,
            "could not start a planner thread".into(),
        )],
        ..Plan::default()
    })
}

/// Parses and plans (no hint, no cache).
fn plan_text(sql: &str, cat: &dyn Catalog) -> Plan {
    let parse = |text: &str| {
        Parser::new(&PostgreSqlDialect {})
            .with_recursion_limit(RECURSION_LIMIT)
            .try_with_sql(text)
            .and_then(|mut p| p.parse_statements())
    };
    let parsed = match parse(sql) {
        Err(e) => match copy::boolean_options_compat(sql) {
            // Planned from the rewritten text; the original is what runs.
            Some(compat) => parse(&compat).map_err(|_| e),
            None => Err(e),
        },
        ok => ok,
    };
    let stmts = match parsed {
        Ok(stmts) => stmts
            .into_iter()
            .map(|stmt| {
                let mut p = analyze::plan_statement(&stmt, cat);
                // An INSERT without a column list goes to the shards naming
                // the columns its values fill (built from the AST).
                let stmt = match &p.implicit_columns {
                    Some(cols) => {
                        let s = with_column_list(stmt, cols);
                        p.sent_text = Some(s.to_string().into());
                        s
                    }
                    None => stmt,
                };
                if matches!(p.target, Target::InsertMulti { .. }) {
                    if max_depth(&stmt) <= MAX_KEPT_DEPTH {
                        p.insert_ast = Some(Arc::new(stmt));
                    } else {
                        p.target = Target::Refused {
                            sqlstate: "0A000",
                            message: "a multi-row INSERT nested this deeply cannot be split \
                                      across shards"
                                .into(),
                        };
                    }
                }
                p
            })
            .collect(),
        Err(e) => vec![unparsed::plan_unparsed(sql, e.to_string())],
    };
    Plan {
        stmts,
        ..Plan::default()
    }
}

/// `stmt` (an INSERT without a column list) naming `columns`, quoted.
fn with_column_list(mut stmt: Statement, columns: &[String]) -> Statement {
    if let Statement::Insert(ins) = &mut stmt {
        ins.columns = columns
            .iter()
            .map(|c| {
                sqlparser::ast::ObjectName::from(vec![sqlparser::ast::Ident::with_quote('"', c)])
            })
            .collect();
    }
    stmt
}

/// The deepest expression nesting in a statement.
fn max_depth(stmt: &Statement) -> usize {
    struct Depth {
        cur: usize,
        max: usize,
    }
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, _: &sqlparser::ast::Expr) -> std::ops::ControlFlow<()> {
            self.cur += 1;
            self.max = self.max.max(self.cur);
            std::ops::ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, _: &sqlparser::ast::Expr) -> std::ops::ControlFlow<()> {
            self.cur -= 1;
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut d = Depth { cur: 0, max: 0 };
    let _ = stmt.visit(&mut d);
    d.max
}
