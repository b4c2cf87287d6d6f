//! The planner's output: what a statement is and where it must run.
//!
//! A [`Plan`] is computed once per statement text (or prepared statement) and
//! cached, so it holds no per-execution data: shard keys that come from Bind
//! parameters are kept as [`KeySource::Param`] and resolved to shards later by
//! [`super::resolve`].

use std::sync::Arc;

use sqlparser::ast::Statement;

use super::catalog::KeyType;

/// The plan of one simple-query string (one or more statements) or one
/// prepared statement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// One entry per statement, in text order (empty for an empty query).
    pub stmts: Vec<StmtPlan>,
    /// A routing hint found in a comment (`/* shard_key=… */`, `/* shard=… */`).
    /// It is already applied to the statements' targets (see [`StmtPlan::hinted`]).
    pub hint: Option<Hint>,
    /// Running the text may change the backend's session settings (see
    /// [`super::setting_words`]): the session reads them back afterwards.
    pub touches_settings: bool,
    /// Running the text may drop the backend's prepared statements
    /// (DISCARD, DEALLOCATE).
    pub drops_statements: bool,
    /// A plain read that a replica may answer outside a transaction: every
    /// statement a read-only SELECT (or `COPY … TO`) that changes no
    /// session state, and no `/* primary */` hint (see [`super::hints`]).
    pub replica_ok: bool,
    /// What the shards get instead of the client's text: an INSERT without
    /// a column list, with the columns its values fill named (see
    /// [`super::ColumnCache`]).
    pub sent_text: Option<Arc<str>>,
    /// The [`super::ColumnCache`] generation the plan was made with, when it
    /// used the cache: once that moves, the plan is made again.
    pub column_generation: Option<u64>,
}

impl Plan {
    /// A table whose column order the plan needs and the cache lacks.
    pub fn needs_columns(&self) -> Option<&str> {
        self.stmts.iter().find_map(|s| s.needs_columns.as_deref())
    }
}

/// A routing hint: from a comment in the SQL text or from the session's
/// `SET shardproxy.shard_key` / `SET shardproxy.shard`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Hint {
    /// Route as if the statement named this shard key value.
    ShardKey(String),
    /// Force the statement onto the shard with this name.
    Shard(String),
}

/// What one statement is and where it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct StmtPlan {
    pub kind: StmtKind,
    pub target: Target,
    /// Tables the statement names (catalog spelling for known tables, the
    /// normalized name as written otherwise), deduplicated, in order of appearance.
    pub tables: Vec<String>,
    /// False when the statement may write (DML, DDL, `SELECT … FOR UPDATE`,
    /// data-modifying CTEs, calls of well-known writing functions such as
    /// `nextval`). User-defined functions are assumed read-only.
    pub read_only: bool,
    /// What a cross-shard merge of a read needs to know (top-level ORDER BY,
    /// LIMIT, aggregates, …), for statements that read sharded tables.
    pub merge: Option<MergeSpec>,
    /// A construct that cannot survive transaction pooling (its effect outlives
    /// the transaction on one backend): `LISTEN`, `CREATE TEMP TABLE`,
    /// `pg_advisory_lock`, `PREPARE`, `DECLARE … WITH HOLD`, … The session
    /// refuses such a statement with 0A000 outside a transaction.
    pub session_state: Option<&'static str>,
    /// The co-location group of the sharded tables involved, when there is
    /// exactly one: lets a session-level `shardproxy.shard_key` turn a fan-out
    /// into a keyed route.
    pub group: Option<usize>,
    /// The parsed multi-row INSERT, kept for [`super::split_insert`] (only for
    /// [`Target::InsertMulti`]).
    pub(crate) insert_ast: Option<Arc<Statement>>,
    /// An INSERT without a column list into this table: its column order is
    /// not known yet (the target is a refusal until the session learns it).
    pub needs_columns: Option<String>,
    /// An INSERT without a column list: the columns its values fill, in
    /// order, from the cached catalog.
    pub implicit_columns: Option<Vec<String>>,
    /// That INSERT with its column list (moved to [`Plan::sent_text`]).
    pub(crate) sent_text: Option<Arc<str>>,
    /// How a read over several shards is split and merged (None when the
    /// shards' rows are concatenated, or it runs on one shard).
    pub dist: Option<DistRef>,
}

/// A shared distributed plan; plans compare by identity (they are made
/// once per statement and never change).
#[derive(Debug, Clone)]
pub struct DistRef(pub Arc<super::distributed::DistPlan>);

impl PartialEq for DistRef {
    fn eq(&self, other: &DistRef) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for DistRef {}

impl std::ops::Deref for DistRef {
    type Target = super::distributed::DistPlan;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl StmtPlan {
    pub(crate) fn new(kind: StmtKind, target: Target) -> StmtPlan {
        StmtPlan {
            kind,
            target,
            tables: Vec::new(),
            read_only: true,
            merge: None,
            session_state: None,
            group: None,
            insert_ast: None,
            needs_columns: None,
            implicit_columns: None,
            sent_text: None,
            dist: None,
        }
    }

    /// The target after applying a routing hint (from a comment or from
    /// `SET shardproxy.…`).
    ///
    /// * `Hint::Shard(name)` forces [`Target::Named`] for keyed, multi-row,
    ///   fan-out reads and writes and any-shard statements. DDL, reference-table
    ///   writes, maintenance, COPY splitting, refusals and unparsed statements
    ///   keep their target: they must reach every shard or not run at all.
    /// * `Hint::ShardKey(v)` turns a fan-out read or write of a sharded group
    ///   into `Keyed { [v] }`. A statement that names its own key keeps it.
    pub fn hinted(&self, hint: &Hint) -> Target {
        match (hint, &self.target) {
            (
                Hint::Shard(name),
                Target::Keyed { .. }
                | Target::InsertMulti { .. }
                | Target::AllShards(FanOut::Read | FanOut::Write)
                | Target::AnyShard,
            ) => Target::Named(name.clone()),
            (Hint::ShardKey(v), Target::AllShards(FanOut::Read | FanOut::Write)) => {
                match (self.group, self.key_type()) {
                    (Some(group), Some(key_type)) => Target::Keyed {
                        group,
                        key_type,
                        keys: vec![KeySource::Literal(v.clone())],
                    },
                    _ => self.target.clone(),
                }
            }
            _ => self.target.clone(),
        }
    }

    /// The key type of the group, when the planner learnt it.
    fn key_type(&self) -> Option<KeyType> {
        match &self.target {
            Target::Keyed { key_type, .. } | Target::InsertMulti { key_type, .. } => {
                Some(*key_type)
            }
            _ => self.merge.as_ref().and_then(|m| m.key_type),
        }
    }
}

/// The statement's kind, as far as the session cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StmtKind {
    Select,
    Insert,
    Update,
    Delete,
    CopyFrom,
    CopyTo,
    Ddl,
    Begin,
    Commit,
    Rollback,
    /// SAVEPOINT, RELEASE SAVEPOINT, ROLLBACK TO SAVEPOINT.
    Savepoint,
    /// `SET [SESSION|LOCAL] name = value`; the name is lower-cased
    /// (`shardproxy.shard_key`, `search_path`, `timezone`, `transaction`, …) and
    /// the value is the literal's text (several values joined with ", ").
    Set {
        name: String,
        local: bool,
        value: Option<String>,
    },
    /// `RESET name` (`None` for `RESET ALL`).
    Reset {
        name: Option<String>,
    },
    Show,
    Discard,
    /// PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED.
    Prepare2pc,
    /// VACUUM, ANALYZE, EXPLAIN, CHECKPOINT, REINDEX, CLUSTER, LOCK, …
    Utility,
    Other,
}

/// Where a shard key value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// A literal's text: `42` → "42", `'abc'` → "abc", `-5` → "-5".
    Literal(String),
    /// The NULL literal.
    Null,
    /// A Bind parameter `$n` (1-based).
    Param(usize),
}

/// Which shards a statement must run on.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The statement touches only rows with these shard key values (one per
    /// value of `WHERE key = v`, `key IN (…)`, an INSERT's single row, …).
    /// All tables involved are co-located (same group), so the statement runs
    /// unchanged on the shards owning the keys.
    Keyed {
        group: usize,
        key_type: KeyType,
        keys: Vec<KeySource>,
    },
    /// A multi-row `INSERT … VALUES`: one key per row, in row order. When the
    /// rows resolve to several shards, use [`super::split_insert`].
    InsertMulti {
        group: usize,
        key_type: KeyType,
        rows: Vec<KeySource>,
    },
    /// Every shard.
    AllShards(FanOut),
    /// Any one shard: no sharded table is involved (`SELECT 1`, reads of
    /// reference tables, SET, SHOW, BEGIN, …). Tables unknown to the catalog are
    /// treated as unsharded: such statements go to the session's current shard
    /// (or the first one).
    AnyShard,
    /// A shard forced by name (`/* shard=name */` or `SET shardproxy.shard`).
    Named(String),
    /// `COPY sharded_table FROM STDIN`: open the same COPY on every shard and
    /// split the data rows with a [`super::CopySplitter`].
    CopyIn(CopySpec),
    /// The statement cannot run correctly through the proxy.
    Refused {
        sqlstate: &'static str,
        message: String,
    },
    /// sqlparser could not parse the text. `read_only_guess` is true only when
    /// the first keyword marks a read-only or maintenance statement that is safe
    /// on every shard (SHOW, VACUUM, ANALYZE, CHECKPOINT, REINDEX, CLUSTER,
    /// EXPLAIN without ANALYZE); the session sends those to all shards and
    /// refuses everything else with `error`.
    Unparsed {
        read_only_guess: bool,
        error: String,
    },
}

/// Why a statement runs on every shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FanOut {
    /// A read without a shard key: results are merged.
    Read,
    /// An UPDATE/DELETE without a shard key that is the same on every shard.
    Write,
    /// DDL (CREATE/ALTER/DROP, CREATE INDEX, TRUNCATE, GRANT, COMMENT, …):
    /// every shard, atomically where possible.
    Ddl,
    /// A write to a reference table (copied to every shard).
    ReferenceWrite,
    /// VACUUM, ANALYZE, CHECKPOINT, …: every shard, outside a transaction
    /// block (they cannot run inside one, so no two-phase commit).
    Maintenance,
}

/// A `COPY … FROM STDIN` into a sharded table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// The table (catalog spelling).
    pub table: String,
    pub group: usize,
    pub key_type: KeyType,
    /// The shard key column.
    pub key_column: String,
    /// The COPY column list (normalized); empty when the statement has none,
    /// in which case the session must supply the table's column order.
    pub columns: Vec<String>,
    pub format: CopyFormat,
}

/// The data format of a COPY, with the options that matter for splitting rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    pub csv: bool,
    pub delimiter: u8,
    /// The NULL marker (`\N` in text format, empty in CSV).
    pub null: String,
    pub quote: u8,
    pub escape: u8,
    /// `HEADER`: the first line is a header. Each shard's COPY carries the same
    /// option, so the splitter sends the header line to every shard.
    pub header: bool,
    /// `FORMAT binary` (the other fields do not apply).
    pub binary: bool,
}

impl CopyFormat {
    /// PostgreSQL's defaults for text format.
    pub fn text() -> CopyFormat {
        CopyFormat {
            csv: false,
            delimiter: b'\t',
            null: "\\N".to_string(),
            quote: b'"',
            escape: b'"',
            header: false,
            binary: false,
        }
    }

    /// Binary format.
    pub fn binary() -> CopyFormat {
        CopyFormat {
            binary: true,
            ..CopyFormat::text()
        }
    }

    /// PostgreSQL's defaults for CSV format.
    pub fn csv() -> CopyFormat {
        CopyFormat {
            csv: true,
            delimiter: b',',
            null: String::new(),
            quote: b'"',
            escape: b'"',
            header: false,
            binary: false,
        }
    }
}

/// What a cross-shard merge needs to know about the top level of a read.
/// Computed cheaply from the AST; the merge layer owns the details.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MergeSpec {
    /// Top-level ORDER BY items, in order.
    pub order_by: Vec<OrderKey>,
    /// LIMIT / FETCH FIRST count (a literal or a parameter).
    pub limit: Option<KeySource>,
    /// OFFSET count (a literal or a parameter).
    pub offset: Option<KeySource>,
    /// Aggregate functions or GROUP BY at the top level.
    pub aggregates: bool,
    /// GROUP BY present at the top level.
    pub group_by: bool,
    /// SELECT DISTINCT, DISTINCT ON or UNION (without ALL) at the top level.
    pub distinct: bool,
    /// HAVING present.
    pub having: bool,
    /// The top-level GROUP BY includes a shard key column: every group's
    /// rows live on one shard, so the shards aggregate completely.
    pub group_by_key: bool,
    /// DISTINCT rows carry a shard key column (or DISTINCT ON includes
    /// one): rows of different shards are never equal.
    pub distinct_local: bool,
    /// Aggregate calls with DISTINCT over a shard key (`count(DISTINCT
    /// customer_id)`), as printed: per-shard results add up.
    pub key_distinct_aggs: Vec<String>,
    /// A construct whose result would be wrong if the statement ran on more
    /// than one shard (window functions, count(DISTINCT …), LIMIT in a
    /// subquery, …). The planner already refuses fan-outs that contain one; for
    /// a keyed statement whose keys resolve to several shards,
    /// [`super::resolve_stmt`] refuses with 0A000.
    pub unsupported: Option<String>,
    /// The shard key type of the group (lets a key hint turn a fan-out into
    /// a keyed route).
    pub key_type: Option<KeyType>,
}

/// One top-level ORDER BY item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    /// The expression as sqlparser prints it (`o.created_at`, `2`, `lower(name)`).
    pub expr: String,
    pub desc: bool,
    /// Postgres's default is NULLS LAST for ASC and NULLS FIRST for DESC.
    pub nulls_first: bool,
}
