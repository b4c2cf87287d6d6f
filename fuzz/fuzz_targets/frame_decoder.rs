//! Arbitrary client bytes through the framing and message decoders: the
//! session's `peek_frame` loop and `FrameReader` must split the input into
//! the same frames, and every frame body must decode (with a re-encode round
//! trip) or fail without panicking. The first byte picks the frame limit.
//! The properties live in `shardproxy::data::codec::properties`; the same
//! checks run on stable as proptests (src/data/codec/fuzz_tests.rs).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardproxy::data::codec::properties::check_client_bytes;

fuzz_target!(|input: &[u8]| check_client_bytes(input));
