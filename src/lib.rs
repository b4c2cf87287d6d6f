//! shardproxy: a PostgreSQL wire-protocol proxy that shards data across many
//! Postgres servers.
//!
//! The data path (what every client statement crosses) lives in [`data`]; the
//! control path (admin console, local clusters, later the rebalancer and the
//! catalog) lives in [`control`]; [`bench`] is the `shardproxy bench` load
//! generator. `docs/architecture.md` draws the path of a query.

pub mod app;
pub mod bench;
pub mod config;
pub mod control;
pub mod data;
pub mod metrics;
pub mod runtime;
