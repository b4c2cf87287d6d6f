//! Learning a sharded table's column order from a shard, for the planner's
//! [`ColumnCache`](crate::data::planner::ColumnCache) (INSERT and COPY
//! without a column list), and dropping it again when a shard's error says
//! it changed.

use super::Session;
use crate::data::codec::error::{parse_error_fields, sqlstate};
use crate::data::codec::SqlError;
use crate::data::pool::Backend;
use std::sync::Arc;

/// SQLSTATE undefined_column: a statement named a column the table lacks.
const UNDEFINED_COLUMN: &str = "42703";

impl Session {
    /// The columns of `table`, from the cache or read from a shard now:
    /// on `on` (a backend the caller holds, idle or idle in a transaction),
    /// else inside the session's transaction on its own backend (which sees
    /// the transaction's DDL), else on a pooled backend of the default shard.
    pub(super) async fn table_columns(
        &mut self,
        table: &str,
        on: Option<&mut Backend>,
    ) -> Result<Arc<[String]>, SqlError> {
        if let Some(c) = self.rt.planner.columns.get(table) {
            return Ok(c);
        }
        let read = match (on, self.lease.as_mut()) {
            (Some(be), _) => read_columns(be, table)
                .await
                .map_err(|e| ("(held backend)".to_string(), e)),
            // Idle in a transaction block: a simple query runs inside it.
            (None, Some(lease)) if self.tx == b'T' => {
                let name = lease.pool().name.clone();
                read_columns(lease.backend(), table)
                    .await
                    .map_err(|e| (name, e))
            }
            _ => {
                let pool = self
                    .rt
                    .pools
                    .get(self.default_shard())
                    .cloned()
                    .ok_or_else(|| SqlError::new(sqlstate::INTERNAL_ERROR, "no shards"))?;
                let mut lease = self.with_settings(pool.checkout().await?).await?;
                let r = read_columns(lease.backend(), table).await;
                if r.is_ok() {
                    lease.release();
                }
                r.map_err(|e| (pool.name.clone(), e))
            }
        };
        let cols = match read {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => {
                return Err(SqlError::new(
                    "42P01",
                    format!("relation \"{table}\" does not exist on the shards"),
                ))
            }
            Err((shard, e)) => {
                return Err(SqlError::new(
                    sqlstate::CONNECTION_EXCEPTION,
                    format!("reading the columns of \"{table}\" on shard \"{shard}\": {e}"),
                ))
            }
        };
        self.rt.planner.columns.set(table, cols);
        self.rt
            .planner
            .columns
            .get(table)
            .ok_or_else(|| SqlError::new(sqlstate::INTERNAL_ERROR, "column cache"))
    }

    /// Watches the next statement's errors for a sign that the cached
    /// columns of the table `plan` wrote without a column list are stale.
    pub(super) fn watch_columns(&mut self, plan: &crate::data::planner::Plan) {
        self.columns_watch = plan
            .stmts
            .iter()
            .find(|s| s.implicit_columns.is_some())
            .and_then(|s| s.tables.first().cloned());
    }

    /// An ErrorResponse while a statement with cached columns ran: an
    /// undefined column means the table changed behind the proxy's back.
    pub(super) fn column_error(&mut self, body: &[u8]) {
        if let Some(table) = &self.columns_watch {
            if parse_error_fields(body).0 == UNDEFINED_COLUMN {
                self.rt.planner.columns.forget(table);
            }
        }
    }
}

/// The table's columns in order (INSERT's order: no dropped ones).
async fn read_columns(be: &mut Backend, table: &str) -> std::io::Result<Vec<String>> {
    let sql = format!(
        "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = pg_catalog.to_regclass('{}') AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        table.replace('\'', "''")
    );
    let rows = be.query_rows(&sql).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect())
}
