//! DataRow and RowDescription frames as the merge reads and writes them:
//! column boundaries found once per row (no copy), a row cut down to its
//! visible columns, rows built from values.

use bytes::{BufMut, BytesMut};
use smallvec::SmallVec;

use super::compare::Malformed;

/// Where each column of a DataRow frame is: (offset from the frame start,
/// length; -1 for NULL).
pub type Cols = SmallVec<[(u32, i32); 16]>;

/// Finds the columns of a DataRow frame (tag and length included).
pub fn columns(frame: &[u8], out: &mut Cols) -> Result<(), Malformed> {
    out.clear();
    let n = frame.get(5..7).ok_or(Malformed)?;
    let n = i16::from_be_bytes([n[0], n[1]]);
    let mut at = 7usize;
    for _ in 0..n.max(0) {
        let l = frame.get(at..at + 4).ok_or(Malformed)?;
        let len = i32::from_be_bytes([l[0], l[1], l[2], l[3]]);
        at += 4;
        out.push((at as u32, len));
        if len > 0 {
            at += len as usize;
        }
        if at > frame.len() {
            return Err(Malformed);
        }
    }
    if at != frame.len() {
        return Err(Malformed);
    }
    Ok(())
}

/// The value of column `i` (None for NULL).
#[inline]
pub fn value<'a>(frame: &'a [u8], cols: &Cols, i: usize) -> Option<&'a [u8]> {
    let (at, len) = *cols.get(i)?;
    if len < 0 {
        return None;
    }
    frame.get(at as usize..at as usize + len as usize)
}

/// Appends the frame cut to its first `n` columns (the hidden ones dropped).
pub fn push_prefix(frame: &[u8], cols: &Cols, n: usize, out: &mut BytesMut) {
    let end = match n.checked_sub(1).and_then(|last| cols.get(last)) {
        Some(&(at, len)) => at as usize + len.max(0) as usize,
        None => 7,
    };
    out.put_u8(b'D');
    out.put_i32((end - 1) as i32);
    out.put_i16(n as i16);
    out.put_slice(&frame[7..end]);
}

/// Builds a DataRow from column values.
pub struct RowBuilder {
    buf: Vec<u8>,
    n: i16,
}

impl RowBuilder {
    pub fn new() -> RowBuilder {
        RowBuilder {
            buf: Vec::with_capacity(64),
            n: 0,
        }
    }

    pub fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self.n += 1;
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(&(v.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(v);
        self.n += 1;
    }

    /// Appends a value written by `f` (which returns false for NULL).
    pub fn with<E>(&mut self, f: impl FnOnce(&mut Vec<u8>) -> Result<bool, E>) -> Result<(), E> {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        if f(&mut self.buf)? {
            let len = (self.buf.len() - at - 4) as i32;
            self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        } else {
            self.buf.truncate(at);
            self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        }
        self.n += 1;
        Ok(())
    }

    pub fn finish(&mut self, out: &mut BytesMut) {
        out.put_u8(b'D');
        out.put_i32((4 + 2 + self.buf.len()) as i32);
        out.put_i16(self.n);
        out.put_slice(&self.buf);
        self.buf.clear();
        self.n = 0;
    }
}

impl Default for RowBuilder {
    fn default() -> Self {
        RowBuilder::new()
    }
}

/// One field of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub type_oid: u32,
    pub typmod: i32,
    /// Offset of the field's format code in the frame.
    format_at: usize,
}

/// The fields of a RowDescription frame.
pub fn fields(frame: &[u8]) -> Result<Vec<Field>, Malformed> {
    let n = frame.get(5..7).ok_or(Malformed)?;
    let n = i16::from_be_bytes([n[0], n[1]]).max(0) as usize;
    let mut at = 7;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let end = frame
            .get(at..)
            .and_then(|r| r.iter().position(|&c| c == 0))
            .ok_or(Malformed)?;
        at += end + 1;
        let f = frame.get(at..at + 18).ok_or(Malformed)?;
        out.push(Field {
            type_oid: u32::from_be_bytes([f[6], f[7], f[8], f[9]]),
            typmod: i32::from_be_bytes([f[12], f[13], f[14], f[15]]),
            format_at: at + 16,
        });
        at += 18;
    }
    Ok(out)
}

/// A RowDescription with each field's format code set by `format(i)`.
pub fn with_formats(frame: &[u8], fields: &[Field], format: impl Fn(usize) -> i16) -> BytesMut {
    let mut b = BytesMut::from(frame);
    for (i, f) in fields.iter().enumerate() {
        b[f.format_at..f.format_at + 2].copy_from_slice(&format(i).to_be_bytes());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_and_cut() {
        let mut b = RowBuilder::new();
        b.bytes(b"ab");
        b.null();
        b.bytes(b"xyz");
        let mut frame = BytesMut::new();
        b.finish(&mut frame);
        let mut cols = Cols::new();
        columns(&frame, &mut cols).unwrap();
        assert_eq!(value(&frame, &cols, 0), Some(&b"ab"[..]));
        assert_eq!(value(&frame, &cols, 1), None);
        assert_eq!(value(&frame, &cols, 2), Some(&b"xyz"[..]));
        let mut cut = BytesMut::new();
        push_prefix(&frame, &cols, 2, &mut cut);
        let mut c2 = Cols::new();
        columns(&cut, &mut c2).unwrap();
        assert_eq!(c2.len(), 2);
        assert_eq!(value(&cut, &c2, 0), Some(&b"ab"[..]));
        assert!(columns(&frame[..frame.len() - 1], &mut cols).is_err());
    }
}
