//! What must hold for any bytes a client sends: framing, the startup packet
//! and the message decoders return an error instead of panicking, and agree
//! with each other. One copy, run two ways: by the fuzz targets under
//! `fuzz/` (feature `fuzzing`) and by the proptests in `fuzz_tests.rs`.

use super::frame::{peek_frame, FrameReader, HEADER_LEN};
use super::frontend::{query_text, BindMsg, ExecuteMsg, ParseMsg, TargetMsg};
use super::startup::{parse_startup, read_startup, MAX_STARTUP_LEN};
use bytes::BytesMut;
use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Runs a future over an in-memory reader, which is always ready (no runtime needed).
pub fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-memory reader never waits"),
    }
}

/// Decodes a frame body the way the session would, by its tag, and checks
/// that re-encoding what was decoded reads back the same.
pub fn decode_body(tag: u8, body: &[u8]) {
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
        // Debug text: the inline vectors tie each decode to its buffer's lifetime.
        assert_eq!(format!("{:?}", again.params()), format!("{params:?}"));
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

/// Splits `data` into frames both ways (the session's `peek_frame` loop and
/// [`FrameReader`]), decodes every body, and checks they agree.
pub fn check_frames(data: &[u8], max: usize) {
    let (peeked, clean) = frames_by_peek(data, max);
    let (read, reader_ok) = frames_by_reader(data, max);
    assert_eq!(peeked, read, "peek_frame and FrameReader split alike");
    let consumed: usize = read.iter().map(|(_, b)| b.len()).sum();
    let joined: Vec<u8> = read.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    assert_eq!(joined, data[..consumed], "frames are the input, in order");
    // The reader ends cleanly only when every byte formed whole frames.
    assert_eq!(reader_ok, clean && consumed == data.len());
}

/// `parse_startup` on the body and `read_startup` on a length-prefixed
/// stream: a packet or an error with a SQLSTATE, agreeing on well-delimited
/// input, never an allocation of what the length field claims.
pub fn check_startup(data: &[u8]) {
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

/// The frame-decoder fuzz target's input: the first byte picks the frame
/// limit (tiny limits reach the too-long path), the rest are client bytes.
pub fn check_client_bytes(input: &[u8]) {
    let (max, data) = match input.split_first() {
        Some((&m, rest)) if m < 128 => (m as usize, rest),
        Some((_, rest)) => (1 << 20, rest),
        None => (1 << 20, input),
    };
    check_frames(data, max);
}
