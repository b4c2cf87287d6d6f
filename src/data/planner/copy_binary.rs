//! Framing of `COPY … FROM STDIN (FORMAT binary)` data, for splitting it per
//! shard (see [`super::CopySplitter`]).
//!
//! The stream (Postgres' `copyfromparse.c` and the COPY documentation): an
//! 11-byte signature `PGCOPY\n\xff\r\n\0`, a 32-bit flags word, a 32-bit
//! header-extension length and that many bytes; then tuples, each a 16-bit
//! field count and per field a 32-bit length (-1 for NULL) and the bytes;
//! a field count of -1 is the trailer, after which nothing may follow.
//!
//! Every shard runs the same binary COPY, so each gets the header and the
//! trailer; a tuple goes whole to the shard of its key field, whose bytes
//! are the key's binary form (int2/4/8 big-endian, text as UTF-8, uuid's
//! 16 bytes). A tuple inside one CopyData payload is passed on as a slice
//! of it; only a tuple cut by a payload boundary is copied (the bytes read
//! so far, once, plus what completes it).

use super::resolve::RouteError;

/// The binary COPY signature.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// What is at the start of a buffer of binary COPY data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A whole tuple of `len` bytes; `key` is the key field's byte range
    /// within it (None: NULL).
    Tuple {
        len: usize,
        key: Option<(usize, usize)>,
    },
    /// The trailer (2 bytes).
    Trailer,
    /// Incomplete: at least this many more bytes are needed.
    More(usize),
}

/// Where the header ends, or how many more bytes it needs at least.
pub(crate) fn header_len(buf: &[u8]) -> Result<Result<usize, usize>, RouteError> {
    let fixed = SIGNATURE.len() + 8;
    if buf.len() < fixed {
        let have = buf.len().min(SIGNATURE.len());
        if buf[..have] != SIGNATURE[..have] {
            return Err(bad(
                "the data does not start with the binary COPY signature",
            ));
        }
        return Ok(Err(fixed - buf.len()));
    }
    if buf[..SIGNATURE.len()] != SIGNATURE[..] {
        return Err(bad(
            "the data does not start with the binary COPY signature",
        ));
    }
    let flags = be32(&buf[11..15]);
    if flags & (1 << 16) != 0 {
        return Err(bad("binary COPY data with OIDs is not supported"));
    }
    let ext = be32(&buf[15..19]);
    if ext < 0 {
        return Err(bad("invalid binary COPY header extension length"));
    }
    let total = fixed + ext as usize;
    Ok(if buf.len() >= total {
        Ok(total)
    } else {
        Err(total - buf.len())
    })
}

/// The item at the start of `buf` (which follows the header or a tuple).
/// `key_index` is the key's field number; `fields` how many each tuple has.
pub(crate) fn next_item(buf: &[u8], key_index: usize, fields: usize) -> Result<Item, RouteError> {
    if buf.len() < 2 {
        return Ok(Item::More(2 - buf.len()));
    }
    let count = i16::from_be_bytes([buf[0], buf[1]]);
    if count == -1 {
        return Ok(Item::Trailer);
    }
    if count < 0 || count as usize != fields {
        return Err(bad(&format!(
            "a binary COPY row has {count} fields, expected {fields}"
        )));
    }
    let mut at = 2;
    let mut key = None;
    for f in 0..count as usize {
        if buf.len() < at + 4 {
            return Ok(Item::More(at + 4 - buf.len()));
        }
        let raw = be32(&buf[at..at + 4]);
        at += 4;
        if raw < -1 {
            return Err(bad("invalid field length in binary COPY data"));
        }
        let len = raw.max(0) as usize;
        if f == key_index && raw >= 0 {
            key = Some((at, at + len));
        }
        if buf.len() < at + len {
            return Ok(Item::More(at + len - buf.len()));
        }
        at += len;
    }
    Ok(Item::Tuple { len: at, key })
}

fn be32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn bad(m: &str) -> RouteError {
    RouteError::new("22P04", m.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary tuple of these fields (None = NULL).
    pub(crate) fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut t = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            match f {
                Some(b) => {
                    t.extend((b.len() as i32).to_be_bytes());
                    t.extend_from_slice(b);
                }
                None => t.extend((-1i32).to_be_bytes()),
            }
        }
        t
    }

    #[test]
    fn header_with_extension_and_bad_signatures() {
        let mut h = SIGNATURE.to_vec();
        h.extend(0i32.to_be_bytes());
        h.extend(3i32.to_be_bytes());
        h.extend(b"abc");
        assert_eq!(header_len(&h).unwrap(), Ok(22));
        assert_eq!(header_len(&h[..5]).unwrap(), Err(14));
        assert_eq!(header_len(&h[..20]).unwrap(), Err(2));
        assert!(header_len(b"PGCOPX").is_err());
        let mut oids = h.clone();
        oids[12] = 1; // flag bit 16: OIDs included
        assert!(header_len(&oids).is_err());
    }

    #[test]
    fn tuples_their_key_and_the_trailer() {
        let t = tuple(&[Some(b"ab"), Some(&7i64.to_be_bytes()), None]);
        let Item::Tuple { len, key } = next_item(&t, 1, 3).unwrap() else {
            panic!()
        };
        assert_eq!(len, t.len());
        let (a, b) = key.unwrap();
        assert_eq!(&t[a..b], &7i64.to_be_bytes());
        assert_eq!(
            next_item(&t, 2, 3).unwrap(),
            Item::Tuple {
                len: t.len(),
                key: None
            }
        );
        for cut in 0..t.len() {
            assert!(matches!(next_item(&t[..cut], 1, 3).unwrap(), Item::More(n) if n > 0));
        }
        assert_eq!(next_item(&[0xff, 0xff], 0, 3).unwrap(), Item::Trailer);
        assert!(next_item(&t, 1, 2).is_err(), "wrong field count");
    }
}
