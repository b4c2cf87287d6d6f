//! The properties in `properties.rs` (also run by the fuzz targets under
//! `fuzz/`), checked with proptest so they run in every `cargo test` without
//! cargo-fuzz or nightly.

use super::properties::{check_frames, check_startup, decode_body, ready};
use super::startup::read_startup;
use proptest::prelude::*;

/// Message-body bytes: NULs and small numbers are common, so strings end
/// and counts stay small often enough for the decoders to get past them.
fn body_bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![4 => any::<u8>(), 2 => Just(0u8), 1 => 0u8..4, 1 => Just(b'S'), 1 => Just(b'P')];
    prop::collection::vec(byte, 0..max_len)
}

/// Byte strings made of plausible frames (right length fields, random
/// bodies) and raw noise, so the decoders see more than header errors.
fn framed_bytes() -> impl Strategy<Value = Vec<u8>> {
    let frame = (
        prop::sample::select(b"QPBDCESHXdcf".to_vec()),
        body_bytes(64),
    )
        .prop_map(|(tag, body)| {
            let mut v = vec![tag];
            v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
            v.extend_from_slice(&body);
            v
        });
    let piece = prop_oneof![3 => frame, 1 => prop::collection::vec(any::<u8>(), 0..16)];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

/// Startup-packet-shaped bytes: a length prefix, a protocol code (real ones
/// likely), then NUL-separated strings or noise.
fn startup_bytes() -> impl Strategy<Value = Vec<u8>> {
    let code = prop_oneof![
        Just(196608u32),
        Just(80877103),
        Just(80877104),
        Just(80877102),
        any::<u32>()
    ];
    let word = prop_oneof![
        Just(b"user".to_vec()),
        Just(b"database".to_vec()),
        prop::collection::vec(any::<u8>(), 0..12)
    ];
    let body = prop::collection::vec(word, 0..6).prop_map(|ws| {
        let mut b = Vec::new();
        for w in ws {
            b.extend(w);
            b.push(0);
        }
        b
    });
    (code, body, any::<bool>(), -2i32..3).prop_map(|(code, mut body, nul, fudge)| {
        if nul {
            body.push(0);
        }
        let len = (body.len() + 8) as i32 + fudge;
        let mut v = len.to_be_bytes().to_vec();
        v.extend_from_slice(&code.to_be_bytes());
        v.extend(body);
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_bytes_frame_and_decode_without_panicking(
        data in prop::collection::vec(any::<u8>(), 0..256),
        max in prop_oneof![Just(1usize << 20), 0usize..64],
    ) {
        check_frames(&data, max);
    }

    #[test]
    fn plausible_frames_decode_without_panicking(data in framed_bytes(), max in 8usize..128) {
        check_frames(&data, max);
        check_frames(&data, 1 << 20);
    }

    #[test]
    fn random_bodies_decode_without_panicking(
        tag in prop_oneof![any::<u8>(), prop::sample::select(b"QPBDCE".to_vec())],
        body in body_bytes(128),
    ) {
        decode_body(tag, &body);
    }

    #[test]
    fn random_startup_packets_are_errors_not_panics(
        data in prop_oneof![startup_bytes(), prop::collection::vec(any::<u8>(), 0..64)],
    ) {
        check_startup(&data);
        if data.len() > 4 {
            check_startup(&data[4..]);
        }
    }
}

#[test]
fn huge_declared_lengths_are_refused_before_allocating() {
    let mut m = vec![b'Q'];
    m.extend_from_slice(&i32::MAX.to_be_bytes());
    check_frames(&m, 1 << 20);
    let mut s = (i32::MAX).to_be_bytes().to_vec();
    s.extend_from_slice(&196608u32.to_be_bytes());
    assert!(ready(read_startup(&mut &s[..])).is_err());
}
