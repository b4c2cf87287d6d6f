//! Cross-shard merge of fan-out read results. Today: simple aggregates
//! (`count`, `sum`, `min`, `max` without GROUP BY), combined from each
//! shard's single row into the one row Postgres would return.

pub mod aggregate;
pub mod decimal;

pub use aggregate::{merge_aggregate_rows, Column};
