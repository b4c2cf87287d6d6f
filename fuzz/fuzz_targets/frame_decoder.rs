//! Arbitrary client bytes through the framing and message decoders: the
//! session's `peek_frame` loop, `FrameReader` on an in-memory reader (both
//! must split the input into the same frames), and the Parse / Bind /
//! Describe / Close / Execute / Query decoders on every frame body, with a
//! re-encode round trip where a decode succeeds. Nothing may panic.
//! The same properties run on stable as proptests (src/data/codec/fuzz_tests.rs).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shardproxy::data::codec::frame::{peek_frame, FrameReader, HEADER_LEN};
use shardproxy::data::codec::frontend::{query_text, BindMsg, ExecuteMsg, ParseMsg, TargetMsg};
use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Polls a future over an in-memory reader, which never waits.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-memory reader never waits"),
    }
}

fn decode_body(tag: u8, body: &[u8]) {
    let _ = query_text(body);
    let _ = ExecuteMsg::decode(body);
    if let Ok(p) = ParseMsg::decode(body) {
        let mut out = BytesMut::new();
        p.encode_renamed("s_1", &mut out);
        let f = peek_frame(&out, usize::MAX).unwrap().unwrap();
        let again = ParseMsg::decode(f.body(&out)).unwrap();
        assert_eq!((again.name, again.query, again.param_types), ("s_1", p.query, p.param_types));
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
    if let Ok(t) = TargetMsg::decode(body, "Describe") {
        let tag = if tag == b'C' { b'C' } else { b'D' };
        let mut out = BytesMut::new();
        t.encode_renamed(tag, "p_2", &mut out);
        let f = peek_frame(&out, usize::MAX).unwrap().unwrap();
        let again = TargetMsg::decode(f.body(&out), "Describe").unwrap();
        assert_eq!((f.tag, again.kind, again.name), (tag, t.kind, "p_2"));
    }
}

fuzz_target!(|input: &[u8]| {
    // The first byte picks the frame limit: tiny limits reach the TooLong path.
    let (max, data) = match input.split_first() {
        Some((&m, rest)) if m < 128 => (m as usize, rest),
        Some((_, rest)) => (1 << 20, rest),
        None => (1 << 20, input),
    };

    // The session's loop over its read buffer.
    let mut peeked = Vec::new();
    let mut rest = data;
    let clean = loop {
        match peek_frame(rest, max) {
            Ok(Some(f)) => {
                assert!(f.len >= HEADER_LEN && f.len <= rest.len() && f.len - 1 <= max);
                decode_body(f.tag, f.body(rest));
                peeked.push(&rest[..f.len]);
                rest = &rest[f.len..];
            }
            Ok(None) => break true,
            Err(_) => break false,
        }
    };

    // The same bytes through FrameReader.
    let mut reader = FrameReader::new(max);
    let mut src = data;
    let mut read = Vec::new();
    let reader_ok = loop {
        match ready(reader.next(&mut src)) {
            Ok(Some(f)) => read.push(reader.take(f).to_vec()),
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    assert_eq!(peeked, read, "peek_frame and FrameReader split alike");
    let consumed: usize = read.iter().map(Vec::len).sum();
    assert_eq!(reader_ok, clean && consumed == data.len());
});
