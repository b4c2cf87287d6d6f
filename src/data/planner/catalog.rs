//! What the planner needs to know about tables, behind a small trait so the
//! AST analysis does not depend on how the shard map stores them.

pub use crate::data::router::KeyType;
use crate::data::router::ShardMap;

/// One table as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableMeta<'a> {
    /// The catalog's spelling of the name.
    pub name: &'a str,
    /// The shard key column; `None` for reference tables.
    pub shard_key: Option<&'a str>,
    pub key_type: KeyType,
    /// The co-location group: tables of one group with equal keys live on the
    /// same shard.
    pub group: usize,
    /// Copied to every shard.
    pub reference: bool,
}

/// Table lookup by name. The planner looks names up as Postgres folds them
/// (unquoted identifiers lower-cased), schema-qualified names as
/// `schema.table` first, then the bare table name for the `public` schema.
pub trait Catalog: Send + Sync {
    fn table(&self, name: &str) -> Option<TableMeta<'_>>;

    /// A table's columns in order, when known (see [`super::ColumnCache`]).
    fn columns(&self, _table: &str) -> Option<std::sync::Arc<[String]>> {
        None
    }
}

/// A catalog with the column orders the session learnt from the shards.
pub(crate) struct WithColumns<'a> {
    pub tables: &'a dyn Catalog,
    pub columns: &'a super::ColumnCache,
}

impl Catalog for WithColumns<'_> {
    fn table(&self, name: &str) -> Option<TableMeta<'_>> {
        self.tables.table(name)
    }

    fn columns(&self, table: &str) -> Option<std::sync::Arc<[String]>> {
        self.columns.get(table)
    }
}

impl Catalog for ShardMap {
    fn table(&self, name: &str) -> Option<TableMeta<'_>> {
        ShardMap::table(self, name).map(|t| TableMeta {
            name: &t.name,
            // The config stores key column names as written; Postgres folds
            // unquoted identifiers, and so does the planner.
            shard_key: t.shard_key.as_deref(),
            key_type: t.key_type,
            group: t.group,
            reference: t.reference,
        })
    }
}
