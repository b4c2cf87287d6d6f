//! The distributed plan of a read that spans shards: the SQL every shard
//! runs and what the proxy does with their rows. Made once per statement
//! (cached with its [`crate::data::planner::StmtPlan`]) and executed by
//! [`crate::data::merge`]; it holds no per-execution values.

/// A read planned for several shards.
#[derive(Debug, Clone, PartialEq)]
pub struct DistPlan {
    /// The query each shard runs, printed from the rewritten AST.
    pub shard_sql: String,
    /// Row mode: the shard query starts with the statement's own select
    /// list (its output columns, in the client's formats), followed by
    /// `cols`. Group mode: the shard query is exactly `cols`.
    pub visible_prefix: bool,
    /// The statement's output column count, when known without
    /// describing it (no `*` in the select list).
    pub visible: Option<usize>,
    /// The columns the merge reads, after the visible prefix (if any).
    pub cols: Vec<ShardCol>,
    pub shape: Shape,
    pub limit: Option<Count>,
    pub offset: Option<Count>,
    /// The shard query's `LIMIT $n` parameter, bound per execution to
    /// limit + offset (or NULL): set when LIMIT or OFFSET is a parameter.
    pub shard_limit_param: Option<usize>,
    /// The highest `$n` in the statement.
    pub params: usize,
    /// Asks shard 0 for the session's `extra_float_digits`, the collations
    /// of the `probe_cols` and the database's default collation (see
    /// [`crate::data::merge::collation`]).
    pub probe_sql: String,
    pub probe_cols: Vec<usize>,
    /// GROUP BY names taken as output aliases, each with a query that
    /// must fail to parse on a shard (no input column of that name), else
    /// the statement is refused before it runs.
    pub alias_checks: Vec<(String, String)>,
    /// The merge steps, for EXPLAIN.
    pub steps: Vec<String>,
}

/// One column of the shard query the merge reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardCol {
    /// The expression as the shard runs it (for EXPLAIN and messages).
    pub sql: String,
    pub format: ColFormat,
}

/// The result format asked of the shards for a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColFormat {
    /// Binary: the merge decodes it.
    Binary,
    /// The format the client asked for output column `n`: the merge
    /// passes the bytes through.
    Client(usize),
    /// A copy of the whole visible select list, in binary (row mode
    /// DISTINCT): as many columns as the statement outputs.
    VisibleCopy,
}

/// A column of the shard query: `cols[col]`, or column `n` of the
/// visible copy block at `cols[col]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColRef {
    Col(usize),
    Copy { block: usize, n: usize },
}

/// What the merge does with the shards' rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Rows pass through: k-way merged by `order` (each shard sorted
    /// alike), or concatenated; duplicates removed per `distinct`.
    Rows {
        order: Vec<SortKey>,
        distinct: RowDistinct,
    },
    /// Shards group partially; the merge combines groups with equal
    /// `keys` and computes each output from the combined aggregates.
    Groups(Box<GroupPlan>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum RowDistinct {
    None,
    /// SELECT DISTINCT: rows equal in every output column.
    All {
        block: usize,
    },
    /// DISTINCT ON: the first row of each run of equal keys (the rows
    /// arrive sorted by them) or of each key (without ORDER BY).
    On(Vec<ColRef>),
}

/// One ORDER BY key over shard columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub col: ColRef,
    pub desc: bool,
    pub nulls_first: bool,
}

/// The group merge.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPlan {
    /// Binary columns whose values identify a group.
    pub keys: Vec<usize>,
    pub aggs: Vec<AggSpec>,
    /// One per output column of the statement.
    pub outputs: Vec<MExpr>,
    pub having: Option<MExpr>,
    pub order: Vec<(MExpr, bool, bool)>,
}

/// One aggregate of the statement, from its partial columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggSpec {
    /// The call as written (for messages and EXPLAIN).
    pub sql: String,
    pub func: AggFunc,
    /// The partial columns (binary), in the order `func` documents.
    pub inputs: Vec<usize>,
    /// min/max output directly: columns with the same value in the
    /// client's format (one per output using it), passed through from the
    /// shard row that won.
    pub carry: Vec<usize>,
}

/// How shards' partial aggregates combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    /// count: the sum of the shards' counts.
    Count,
    /// sum: the sum of the non-NULL partial sums (same type).
    Sum,
    Min,
    Max,
    /// avg from [sum, count].
    Avg,
    BoolAnd,
    BoolOr,
    BitAnd,
    BitOr,
    /// var_samp/var_pop/stddev_samp/stddev_pop from [count, sum,
    /// sum of squares] (as numeric; the sum's type tells float input).
    Var {
        sample: bool,
        sqrt: bool,
    },
}

/// An expression over a group's merged values.
#[derive(Debug, Clone, PartialEq)]
pub enum MExpr {
    /// The final value of `aggs[n]`.
    Agg(usize),
    /// A binary column constant within a group (an expression of the
    /// group keys the shard computed): the value of its first row.
    Col(usize),
    /// A column in the client's format, passed through (only as a whole
    /// output): from the group's first row, or from the row that won the
    /// min/max whose `carry` lists it.
    Carry(usize),
    Lit(Literal),
    Binary(BinOp, Box<MExpr>, Box<MExpr>),
    Neg(Box<MExpr>),
    Not(Box<MExpr>),
    /// IS NULL (false) / IS NOT NULL (true).
    IsNull(Box<MExpr>, bool),
    Cast(Box<MExpr>, CastTo),
    Func(Func, Vec<MExpr>),
    Case {
        whens: Vec<(MExpr, MExpr)>,
        otherwise: Option<Box<MExpr>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    Null,
    Bool(bool),
    /// A numeric constant as written: typed as Postgres types it (int4,
    /// int8, else numeric).
    Number(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

/// A cast the evaluator does exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CastTo {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// numeric, with its typmod (-1 for none).
    Numeric(i32),
    Bool,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Round,
    Trunc,
    Abs,
    Ceil,
    Floor,
    Coalesce,
    NullIf,
    Greatest,
    Least,
}

/// A LIMIT or OFFSET count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// `LIMIT n` (negative values are rejected at execution, as Postgres does).
    Value(i64),
    /// `LIMIT ALL` / `LIMIT NULL`.
    All,
    /// `LIMIT $n` (1-based).
    Param(usize),
}
