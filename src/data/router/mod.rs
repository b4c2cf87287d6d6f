//! Placement: which shard holds a key.
//!
//! - [`key`]: shard-key types and values as they arrive from clients;
//! - [`hash`]: Postgres-15-compatible key hashing and the matching SQL;
//! - [`interval`]: explicit ownership of the 64-bit hash circle;
//! - [`ring`]: the consistent-hash default placement;
//! - [`lookup`]: pinned keys;
//! - [`shardmap`]: the versioned snapshot the data path routes with;
//! - [`plan`], [`persist`], [`show`]: adding shards, the map file, `SHOW SHARDMAP`.

pub mod hash;
pub mod interval;
pub mod key;
pub mod lookup;
pub mod persist;
pub mod plan;
pub mod ring;
pub mod shardmap;
pub mod show;

#[cfg(test)]
mod tests;

pub use hash::{hash_key, sql_hash_expr, sql_interval_predicate, HASH_PARTITION_SEED};
pub use interval::HashInterval;
pub use key::{KeyType, KeyValue, OwnedKey};
pub use plan::AddShardPlan;
pub use shardmap::{ShardId, ShardMap, TableInfo, DEFAULT_GROUP};
pub use show::SHOW_SHARDMAP_COLUMNS;
