//! Finds complete `type byte + i32 length + body` frames in a read buffer.
//!
//! Hand-written rather than pgwire's decoder because the data path must keep
//! the original bytes to forward them untouched; this only checks the length
//! field (a length below 4 or above the configured maximum is an error, never
//! a panic or an allocation of that size).

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of the type and length header.
pub const HEADER_LEN: usize = 5;

/// A framing error: the peer sent a length field that cannot be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid message length {0} (must be at least 4)")]
    TooShort(i64),
    #[error("message length {len} exceeds the limit of {max} bytes")]
    TooLong { len: i64, max: usize },
}

/// One complete frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The message type byte.
    pub tag: u8,
    /// Total length including the type byte.
    pub len: usize,
}

impl Frame {
    /// The body (after the length field) of this frame within `buf`.
    pub fn body<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[HEADER_LEN..self.len]
    }
}

/// Looks at the start of `buf`: `Ok(Some(frame))` when a whole frame is there,
/// `Ok(None)` when more bytes are needed.
#[inline]
pub fn peek_frame(buf: &[u8], max: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as i64;
    if len < 4 {
        return Err(FrameError::TooShort(len));
    }
    if len as u64 > max as u64 {
        return Err(FrameError::TooLong { len, max });
    }
    let total = len as usize + 1;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(Frame {
        tag: buf[0],
        len: total,
    }))
}

/// Smallest read: big enough for typical OLTP traffic in one syscall, small
/// enough that thousands of idle clients cost little memory.
const READ_CHUNK: usize = 4096;

/// A read buffer plus the frame limit for one peer (client or backend).
#[derive(Debug)]
pub struct FrameReader {
    pub buf: BytesMut,
    pub max: usize,
}

impl FrameReader {
    pub fn new(max: usize) -> FrameReader {
        FrameReader {
            buf: BytesMut::new(),
            max,
        }
    }

    /// The next complete frame already buffered, if any.
    #[inline]
    pub fn peek(&self) -> Result<Option<Frame>, FrameError> {
        peek_frame(&self.buf, self.max)
    }

    /// Reads until a complete frame is buffered. `Ok(None)` on a clean EOF
    /// between frames; an EOF inside a frame is `UnexpectedEof`.
    pub async fn next<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
    ) -> std::io::Result<Option<Frame>> {
        loop {
            match self.peek() {
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            }
            // Grow to what the pending frame needs (at least a small read
            // chunk): an idle connection keeps only a small buffer.
            let want = match self.buf.get(1..5) {
                Some(l) => (i32::from_be_bytes([l[0], l[1], l[2], l[3]]).max(0) as usize + 1)
                    .saturating_sub(self.buf.len()),
                None => 0,
            }
            .clamp(READ_CHUNK, self.max.max(READ_CHUNK));
            if self.buf.capacity() - self.buf.len() < want {
                self.buf.reserve(want);
            }
            let n = r.read_buf(&mut self.buf).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// Removes `frame` (which must be at the front) and returns its bytes.
    #[inline]
    pub fn take(&mut self, frame: Frame) -> BytesMut {
        self.buf.split_to(frame.len)
    }

    /// Drops `frame` from the front without keeping it.
    #[inline]
    pub fn skip(&mut self, frame: Frame) {
        self.buf.advance(frame.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn finds_whole_frames_only() {
        let m = msg(b'Q', b"select 1\0");
        assert_eq!(peek_frame(&m[..3], 1000), Ok(None));
        assert_eq!(peek_frame(&m[..m.len() - 1], 1000), Ok(None));
        let f = peek_frame(&m, 1000).unwrap().unwrap();
        assert_eq!(f.tag, b'Q');
        assert_eq!(f.body(&m), b"select 1\0");
    }

    #[test]
    fn rejects_bad_lengths() {
        for len in [0i32, 3, -1, i32::MIN] {
            let mut m = vec![b'Q'];
            m.extend_from_slice(&len.to_be_bytes());
            assert!(matches!(peek_frame(&m, 1000), Err(FrameError::TooShort(_))));
        }
        let mut m = vec![b'Q'];
        m.extend_from_slice(&(i32::MAX).to_be_bytes());
        assert!(matches!(
            peek_frame(&m, 1 << 20),
            Err(FrameError::TooLong { .. })
        ));
    }

    #[tokio::test]
    async fn reader_handles_split_input_and_eof() {
        let mut data = msg(b'P', b"abc");
        data.extend(msg(b'S', b""));
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in data.chunks(3) {
                b.write_all(chunk).await.unwrap();
            }
        });
        let mut r = FrameReader::new(1000);
        let f = r.next(&mut a).await.unwrap().unwrap();
        assert_eq!(f.tag, b'P');
        r.skip(f);
        let f = r.next(&mut a).await.unwrap().unwrap();
        assert_eq!(f.tag, b'S');
        r.skip(f);
        writer.await.unwrap();
        assert!(r.next(&mut a).await.unwrap().is_none());
    }
}
