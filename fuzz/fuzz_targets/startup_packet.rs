//! Arbitrary bytes as a connection's first packet: `parse_startup` on the
//! body and `read_startup` on a length-prefixed stream must return a packet
//! or an error with a SQLSTATE, never panic or allocate what the length field
//! claims, and agree with each other on well-delimited input.
//! The same properties run on stable as proptests (src/data/codec/fuzz_tests.rs).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardproxy::data::codec::startup::{parse_startup, read_startup, MAX_STARTUP_LEN};
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

fuzz_target!(|data: &[u8]| {
    if let Err(e) = parse_startup(data) {
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
});
