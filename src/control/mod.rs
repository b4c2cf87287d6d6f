//! The control path: what operators drive (admin console) and what runs beside
//! the proxy (local Postgres clusters for the demo and the tests).

pub mod admin;
pub mod advice;
pub mod cluster;
pub mod conn;
pub mod shard_checks;
pub mod twophase;
pub mod unique_ids;
