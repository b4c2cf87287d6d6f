//! The data path: client socket → codec → session → planner → router → pool → relay or merge.

pub mod auth;
pub mod codec;
pub mod load;
pub mod merge;
pub mod planner;
pub mod pool;
pub mod router;
pub mod session;
