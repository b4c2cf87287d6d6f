//! Load accounting: which shards, hash intervals and shard-key values carry
//! the proxy's load, over a sliding window, cheap enough to leave on.
//!
//! - [`tally`]: what a session notes per statement (the key it routed by,
//!   the rows its CommandComplete reports), kept in the session;
//! - [`board`]: the proxy-wide [`LoadBoard`] sessions merge into now and
//!   then, and its one-second tick, which also reads per-shard statements
//!   and busy time from the pools' counters;
//! - [`window`]: the ring of time slots; [`sketch`]: the Space-Saving
//!   top-k of keys; [`key`]: keys as kept; [`snapshot`]: the window's load
//!   as plain data, read by `SHOW HOT`, the advice and the metrics.
//!
//! What counts as load is statements: a statement relayed to a shard is one
//! unit of that shard's load; one that routed by a single key is also one
//! unit of that key's and (unless the key is pinned) of its interval's.
//! Statements whose keys span shards (IN lists, multi-row inserts) and
//! fan-outs count for their shards only.

pub mod board;
pub mod key;
pub mod sketch;
pub mod snapshot;
pub mod tally;
pub mod window;

pub use board::{spawn_ticker, LoadBoard};
pub use key::HitKey;
pub use snapshot::{IntervalLoad, KeyLoad, LoadSnapshot, ShardLoad};
pub use tally::{command_rows, SessionTally};

#[cfg(test)]
mod tests;
