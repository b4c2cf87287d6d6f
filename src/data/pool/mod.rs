//! Per-shard pools of backend connections (transaction pooling).
//!
//! A client holds a backend only for a transaction (or a single statement
//! outside one); the backend then goes back clean for the next client. A
//! shard is a primary and zero or more replicas, each with its own pool
//! ([`ServerPool`]); [`health`] watches them and finds a new primary after
//! a failover.

mod addr;
mod backend;
pub mod cancel_fence;
mod endpoint;
pub mod health;
mod lag;
mod server_pool;
mod shard_pool;
mod stats;
mod stream;
pub mod tls;

pub use addr::BackendAddr;
pub use backend::{reports_standard_strings_off, Backend, CancelTarget};
pub use cancel_fence::CancelFence;
pub use endpoint::Endpoint;
pub use server_pool::{Role, ServerPool, ServerStats};
pub use shard_pool::{Lease, PoolSettings, ReadPolicy, ReplicaSettings, ShardPool};
pub use stats::ShardStats;
pub use stream::BackendStream;
