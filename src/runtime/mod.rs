//! The running proxy: its current configuration snapshot (swapped atomically
//! on RELOAD), the registry of connected clients, the listener and shutdown.

pub mod clients;
pub mod listener;
pub mod state;

pub use clients::{ClientInfo, ClientRegistry};
pub use state::{Proxy, Runtime};
