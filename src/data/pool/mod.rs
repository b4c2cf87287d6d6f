//! Per-shard backend pools.

mod addr;
pub use addr::BackendAddr;
