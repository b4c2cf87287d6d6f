//! Arbitrary bytes as a connection's first packet: `parse_startup` on the
//! body and `read_startup` on a length-prefixed stream must return a packet
//! or an error with a SQLSTATE, never panic or allocate what the length field
//! claims, and agree with each other on well-delimited input.
//! The properties live in `shardproxy::data::codec::properties`; the same
//! checks run on stable as proptests (src/data/codec/fuzz_tests.rs).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardproxy::data::codec::properties::check_startup;

fuzz_target!(|data: &[u8]| check_startup(data));
