//! `COPY … TO STDOUT` answered by several shards, concatenated into one
//! stream. Text and CSV rows concatenate as they are; a binary COPY starts
//! with a header and ends with a trailer on every shard, so only the first
//! header goes to the client and one trailer just before the final CopyDone.
//! (A header line of text or CSV `HEADER` is refused by the planner across
//! shards.)
//!
//! Postgres sends the binary header in the same CopyData message as the
//! first row (or as the trailer, when it has no rows) and the trailer in a
//! message of its own after the last row, so a message is looked at only at
//! its start (the signature) and as a whole (two 0xFF bytes, alone or right
//! after the header); a row's own bytes are never taken for either, and no
//! text or CSV row looks like them (rows end in a newline).

use crate::data::planner::COPY_BINARY_SIGNATURE;
use bytes::{BufMut, BytesMut};

/// Classifies one CopyData body of a fanned-out COPY TO, appends to `out`
/// what the client gets of it (the message, or the message without a
/// header that already went out), and returns whether it carried the
/// trailer (which the caller sends once, at the end). `header_sent` is
/// updated.
pub(super) fn forward_copy_data(
    frame: &[u8],
    body: &[u8],
    header_sent: &mut bool,
    out: &mut BytesMut,
) -> bool {
    let header = header_len(body);
    let rest = &body[header.unwrap_or(0)..];
    let trailer = rest == [0xff, 0xff];
    let keep_header = header.is_some() && !*header_sent;
    if header.is_some() {
        *header_sent = true;
    }
    let start = if keep_header { 0 } else { header.unwrap_or(0) };
    let end = if trailer { body.len() - 2 } else { body.len() };
    if start == 0 && end == body.len() {
        out.extend_from_slice(frame);
    } else if end > start {
        out.put_u8(b'd');
        out.put_i32((end - start + 4) as i32);
        out.extend_from_slice(&body[start..end]);
    }
    trailer
}

/// The length of the binary COPY header `body` starts with, if it does.
fn header_len(body: &[u8]) -> Option<usize> {
    if !body.starts_with(COPY_BINARY_SIGNATURE) || body.len() < 19 {
        return None;
    }
    let ext = i32::from_be_bytes([body[15], body[16], body[17], body[18]]);
    let len = 19 + usize::try_from(ext).ok()?;
    (len <= body.len()).then_some(len)
}

/// The CopyData message of a binary trailer.
pub(super) const TRAILER_MESSAGE: [u8; 7] = [b'd', 0, 0, 0, 6, 0xff, 0xff];

#[cfg(test)]
mod tests {
    use super::*;

    fn data(body: &[u8]) -> Vec<u8> {
        let mut m = vec![b'd'];
        m.extend(((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn one_header_and_the_trailers_held() {
        let mut h = COPY_BINARY_SIGNATURE.to_vec();
        h.extend([0; 8]);
        let row = b"\x00\x01\x00\x00\x00\x02\xff\xff".to_vec(); // a row ending in 0xFFFF bytes
        let mut sent = false;
        let mut out = BytesMut::new();
        // First shard: header with its first row, a row, the trailer.
        let first = [h.clone(), row.clone()].concat();
        assert!(!forward_copy_data(
            &data(&first),
            &first,
            &mut sent,
            &mut out
        ));
        assert!(!forward_copy_data(&data(&row), &row, &mut sent, &mut out));
        assert!(forward_copy_data(
            &data(&[0xff, 0xff]),
            &[0xff, 0xff],
            &mut sent,
            &mut out
        ));
        // Second shard: its header is dropped, its row kept.
        assert!(!forward_copy_data(
            &data(&first),
            &first,
            &mut sent,
            &mut out
        ));
        // Third shard, no rows: header and trailer in one message.
        let empty = [h.clone(), vec![0xff, 0xff]].concat();
        assert!(forward_copy_data(
            &data(&empty),
            &empty,
            &mut sent,
            &mut out
        ));
        assert_eq!(
            &out[..],
            &[data(&first), data(&row), data(&row)].concat()[..]
        );
        // Text rows pass as they are.
        let mut out = BytesMut::new();
        assert!(!forward_copy_data(
            &data(b"1\tx\n"),
            b"1\tx\n",
            &mut sent,
            &mut out
        ));
        assert_eq!(&out[..], &data(b"1\tx\n")[..]);
    }
}
