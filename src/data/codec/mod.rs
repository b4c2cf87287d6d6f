//! Wire-protocol framing: finding message boundaries in byte buffers without
//! copying, parsing the startup packet, reading the few client messages the
//! proxy must look inside, and building the messages the proxy itself sends.
//!
//! Relayed messages are never decoded or re-encoded here: [`frame`] only finds
//! where a frame ends so the session can forward the original bytes.

pub mod error;
pub mod frame;
pub mod frontend;
pub mod messages;
pub mod startup;

#[cfg(test)]
mod fuzz_tests;
#[cfg(any(test, feature = "fuzzing"))]
pub mod properties;

pub use error::SqlError;
pub use frame::{Frame, FrameError, FrameReader};
