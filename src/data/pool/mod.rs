//! Per-shard pools of backend connections (transaction pooling).
//!
//! A client holds a backend only for a transaction (or a single statement
//! outside one); the backend then goes back clean for the next client.

mod addr;
mod backend;
pub mod cancel_fence;
mod endpoint;
mod shard_pool;
mod stats;
mod stream;
pub mod tls;

pub use addr::BackendAddr;
pub use backend::{reports_standard_strings_off, Backend, CancelTarget};
pub use cancel_fence::CancelFence;
pub use endpoint::Endpoint;
pub use shard_pool::{Lease, PoolSettings, ShardPool};
pub use stats::ShardStats;
pub use stream::BackendStream;
