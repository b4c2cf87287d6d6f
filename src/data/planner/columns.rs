//! The column order of sharded tables as the shards' catalogs have it. An
//! `INSERT INTO t VALUES (…)` without a column list names its columns by
//! position: to find the shard key among the values, the planner needs the
//! table's columns in order. The session reads them from a shard the first
//! time a statement needs them (`pg_attribute`, the order `INSERT` uses)
//! and stores them here; the planner then plans the INSERT as if it named
//! those columns, and the statement sent to the shards does name them, so a
//! stale entry makes the shard fail the statement (e.g. 42703 for a column
//! dropped behind the proxy's back) instead of storing values in the wrong
//! columns, and that error drops the entry.
//!
//! Every change bumps a generation; plans made from the cache record the
//! generation they saw and are planned again once it moved (cached plans
//! and prepared statements alike). DDL through the proxy drops the entries
//! of the tables it names; a RELOAD starts with an empty cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug, Default)]
pub struct ColumnCache {
    tables: RwLock<HashMap<String, Arc<[String]>>>,
    generation: AtomicU64,
}

impl ColumnCache {
    /// The columns of `table` (catalog spelling), if known.
    pub fn get(&self, table: &str) -> Option<Arc<[String]>> {
        self.tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
            .cloned()
    }

    /// Records `table`'s columns, in order.
    pub fn set(&self, table: &str, columns: Vec<String>) {
        self.tables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table.to_string(), columns.into());
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Forgets `table`'s columns (after DDL, or an error that says they changed).
    pub fn forget(&self, table: &str) {
        let removed = self
            .tables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(table)
            .is_some();
        if removed {
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Forgets every table's columns (DDL whose tables the planner did not
    /// name).
    pub fn clear(&self) {
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        if !t.is_empty() {
            t.clear();
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Bumped by every change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_bump_the_generation() {
        let c = ColumnCache::default();
        let g = c.generation();
        assert!(c.get("t").is_none());
        c.set("t", vec!["a".into(), "id".into()]);
        assert_eq!(c.get("t").unwrap().to_vec(), vec!["a", "id"]);
        assert!(c.generation() > g);
        let g = c.generation();
        c.forget("other");
        assert_eq!(c.generation(), g, "forgetting nothing changes nothing");
        c.forget("t");
        assert!(c.get("t").is_none() && c.generation() > g);
    }
}
