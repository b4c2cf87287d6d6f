//! Local Postgres clusters started by this process: the shards behind
//! `shardproxy demo` and the real servers the test suite runs against.
//!
//! [`LocalCluster`] starts one server on a data directory (copied from a shared
//! initdb template, so starting is cheap) and stops it on drop; [`demo`] lays out
//! the demo's shards, schema, config and data.

pub mod demo;
pub mod local;
mod process;
mod template;

#[cfg(test)]
mod shipped_configs;

pub use local::{free_port, ClusterOptions, LocalCluster};
