//! The fuzz targets' properties (fuzz/fuzz_targets/), checked with proptest
//! so they run in every `cargo test` without cargo-fuzz or nightly: whatever
//! bytes a client sends, framing, the startup packet and the message decoders
//! return an error instead of panicking, and agree with each other.

use super::frame::{peek_frame, FrameReader, HEADER_LEN};
use super::frontend::{query_text, BindMsg, ExecuteMsg, ParseMsg, TargetMsg};
use super::startup::{parse_startup, read_startup, MAX_STARTUP_LEN};
use bytes::BytesMut;
use proptest::prelude::*;
use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Runs a future over an in-memory reader, which is always ready (no runtime needed).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-memory reader never waits"),
    }
}

/// Decodes a frame body the way the session would, by its tag, and checks
/// that re-encoding what was decoded reads back the same.
fn decode_body(tag: u8, body: &[u8]) {
    let _ = query_text(body);
    let _ = ExecuteMsg::decode(body);
    let _ = TargetMsg::decode(body, "Describe");
    if let Ok(p) = ParseMsg::decode(body) {
        let mut out = BytesMut::new();
        p.encode_renamed("s_1", &mut out);
        let f = peek_frame(&out, usize::MAX).unwrap().unwrap();
        let again = ParseMsg::decode(f.body(&out)).unwrap();
        assert_eq!((again.name, again.query), ("s_1", p.query));
        assert_eq!(again.param_types, p.param_types);
    }
    if let Ok(b) = BindMsg::decode(body) {
        let params = b.params();
        if let Ok(ps) = &params {
            for i in 0..ps.values.len() + 2 {
                let _ = ps.format(i);
            }
        }
        let mut out = BytesMut::new();
        b.encode_renamed("s_1", &mut out);
        let f = peek_frame(&out, usize::MAX).unwrap().unwrap();
        let again = BindMsg::decode(f.body(&out)).unwrap();
        assert_eq!((again.portal, again.statement), (b.portal, "s_1"));
        assert_eq!(again.params(), params);
    }
    if tag == b'D' || tag == b'C' {
        if let Ok(t) = TargetMsg::decode(body, "Close") {
            let mut out = BytesMut::new();
            t.encode_renamed(tag, "p_2", &mut out);
            let f = peek_frame(&out, usize::MAX).unwrap().unwrap();
            assert_eq!(f.tag, tag);
            assert_eq!(
                TargetMsg::decode(f.body(&out), "Close").unwrap(),
                TargetMsg {
                    kind: t.kind,
                    name: "p_2"
                }
            );
        }
    }
}

/// The session's loop over a buffer: every whole frame, then what is left.
fn frames_by_peek(data: &[u8], max: usize) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut frames = Vec::new();
    let mut rest = data;
    loop {
        match peek_frame(rest, max) {
            Ok(Some(f)) => {
                assert!(f.len >= HEADER_LEN && f.len <= rest.len() && f.len - 1 <= max);
                assert_eq!(f.tag, rest[0]);
                decode_body(f.tag, f.body(rest));
                frames.push((f.tag, rest[..f.len].to_vec()));
                rest = &rest[f.len..];
            }
            Ok(None) => return (frames, true),
            Err(_) => return (frames, false),
        }
    }
}

/// The same bytes through [`FrameReader`] on an in-memory reader.
fn frames_by_reader(data: &[u8], max: usize) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut reader = FrameReader::new(max);
    let mut input = data;
    let mut frames = Vec::new();
    loop {
        match ready(reader.next(&mut input)) {
            Ok(Some(f)) => {
                let bytes = reader.take(f);
                assert_eq!(bytes.len(), f.len);
                frames.push((f.tag, bytes.to_vec()));
            }
            Ok(None) => return (frames, true),
            Err(_) => return (frames, false),
        }
    }
}

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

fn check_frames(data: &[u8], max: usize) {
    let (peeked, clean) = frames_by_peek(data, max);
    let (read, reader_ok) = frames_by_reader(data, max);
    assert_eq!(peeked, read, "peek_frame and FrameReader split alike");
    let consumed: usize = read.iter().map(|(_, b)| b.len()).sum();
    let joined: Vec<u8> = read.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    assert_eq!(joined, data[..consumed], "frames are the input, in order");
    // The reader ends cleanly only when every byte formed whole frames.
    assert_eq!(reader_ok, clean && consumed == data.len());
}

fn check_startup(data: &[u8]) {
    let parsed = parse_startup(data);
    if let Err(e) = &parsed {
        assert_eq!(e.code.len(), 5, "a SQLSTATE: {e:?}");
    }
    let read = ready(read_startup(&mut &data[..]));
    if data.len() >= 4 {
        let len = i32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        if (8..=MAX_STARTUP_LEN as i32).contains(&len) && data.len() >= len as usize {
            assert_eq!(read, parse_startup(&data[4..len as usize]));
            return;
        }
    }
    assert!(read.is_err(), "a packet without a valid length: {read:?}");
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
