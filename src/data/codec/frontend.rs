//! Reading inside the few client messages the proxy must understand (Query,
//! Parse, Bind, Describe, Close, Execute) and rewriting statement names in
//! them. Everything is borrowed from the frame; nothing is copied unless a
//! name is rewritten.

use bytes::{BufMut, BytesMut};

/// A malformed client message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what} message: {why}")]
pub struct MalformedMessage {
    pub what: &'static str,
    pub why: &'static str,
}

fn bad(what: &'static str, why: &'static str) -> MalformedMessage {
    MalformedMessage { what, why }
}

/// A cursor over a message body.
struct Cursor<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn cstr(&mut self) -> Result<&'a str, MalformedMessage> {
        // The unnamed statement and portal (most names on the wire) are
        // empty strings: no search, no validation.
        if let Some((&0, rest)) = self.buf.split_first() {
            self.buf = rest;
            return Ok("");
        }
        // memchr: a query text is searched for its end on every statement.
        let end = memchr::memchr(0, self.buf)
            .ok_or_else(|| bad(self.what, "missing string terminator"))?;
        let s = std::str::from_utf8(&self.buf[..end])
            .map_err(|_| bad(self.what, "invalid UTF-8 in string"))?;
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    fn i16(&mut self) -> Result<i16, MalformedMessage> {
        let v = self.buf.get(..2).ok_or(bad(self.what, "truncated"))?;
        self.buf = &self.buf[2..];
        Ok(i16::from_be_bytes([v[0], v[1]]))
    }

    fn i32(&mut self) -> Result<i32, MalformedMessage> {
        let v = self.buf.get(..4).ok_or(bad(self.what, "truncated"))?;
        self.buf = &self.buf[4..];
        Ok(i32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], MalformedMessage> {
        let v = self.buf.get(..n).ok_or(bad(self.what, "truncated"))?;
        self.buf = &self.buf[n..];
        Ok(v)
    }
}

/// The SQL text of a Query message body.
pub fn query_text(body: &[u8]) -> Result<&str, MalformedMessage> {
    Cursor {
        buf: body,
        what: "Query",
    }
    .cstr()
}

/// A Parse message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseMsg<'a> {
    pub name: &'a str,
    pub query: &'a str,
    /// Parameter type OIDs, raw (4 bytes each).
    pub param_types: &'a [u8],
}

impl<'a> ParseMsg<'a> {
    pub fn decode(body: &'a [u8]) -> Result<ParseMsg<'a>, MalformedMessage> {
        let mut c = Cursor {
            buf: body,
            what: "Parse",
        };
        let name = c.cstr()?;
        let query = c.cstr()?;
        let n = c.i16()?;
        if n < 0 {
            return Err(bad("Parse", "negative parameter count"));
        }
        let param_types = c.bytes(n as usize * 4)?;
        Ok(ParseMsg {
            name,
            query,
            param_types,
        })
    }

    /// Encodes this Parse under another statement name.
    pub fn encode_renamed(&self, name: &str, out: &mut BytesMut) {
        let len = 4 + name.len() + 1 + self.query.len() + 1 + 2 + self.param_types.len();
        out.put_u8(b'P');
        out.put_i32(len as i32);
        out.put_slice(name.as_bytes());
        out.put_u8(0);
        out.put_slice(self.query.as_bytes());
        out.put_u8(0);
        out.put_i16((self.param_types.len() / 4) as i16);
        out.put_slice(self.param_types);
    }
}

/// A Bind message; parameters are decoded lazily by [`BindMsg::params`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMsg<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    /// Everything after the statement name, untouched.
    pub rest: &'a [u8],
}

/// Bind parameter values and their formats, borrowed from the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindParams<'a> {
    pub formats: ParamFormats,
    pub values: ParamValues<'a>,
}

/// A Bind's parameter values, inline up to four: decoded for every Bind
/// routed, they allocate nothing for an OLTP statement's few parameters.
/// The planner's `Params` holds the same type, so they move across.
pub type ParamValues<'a> = smallvec::SmallVec<[Option<&'a [u8]>; 4]>;
/// A Bind's parameter format codes, inline up to four.
pub type ParamFormats = smallvec::SmallVec<[i16; 4]>;

impl BindParams<'_> {
    /// The format of parameter `i` (0-based): 0 text, 1 binary.
    pub fn format(&self, i: usize) -> i16 {
        match self.formats.len() {
            0 => 0,
            1 => self.formats[0],
            _ => self.formats.get(i).copied().unwrap_or(0),
        }
    }
}

impl<'a> BindMsg<'a> {
    pub fn decode(body: &'a [u8]) -> Result<BindMsg<'a>, MalformedMessage> {
        let mut c = Cursor {
            buf: body,
            what: "Bind",
        };
        let portal = c.cstr()?;
        let statement = c.cstr()?;
        Ok(BindMsg {
            portal,
            statement,
            rest: c.buf,
        })
    }

    /// Decodes the parameter formats and values.
    pub fn params(&self) -> Result<BindParams<'a>, MalformedMessage> {
        self.params_and_results().map(|(p, _)| p)
    }

    /// [`BindMsg::params`], and the raw result-format part that follows
    /// them (count and codes), for building a Bind with other parameters.
    pub fn params_and_results(&self) -> Result<(BindParams<'a>, &'a [u8]), MalformedMessage> {
        let mut c = Cursor {
            buf: self.rest,
            what: "Bind",
        };
        let nf = c.i16()?;
        if nf < 0 {
            return Err(bad("Bind", "negative format count"));
        }
        let mut formats = ParamFormats::with_capacity(nf as usize);
        for _ in 0..nf {
            formats.push(c.i16()?);
        }
        let np = c.i16()?;
        if np < 0 {
            return Err(bad("Bind", "negative parameter count"));
        }
        let mut values = ParamValues::with_capacity(np as usize);
        for _ in 0..np {
            let len = c.i32()?;
            if len < 0 {
                values.push(None);
            } else {
                values.push(Some(c.bytes(len as usize)?));
            }
        }
        Ok((BindParams { formats, values }, c.buf))
    }

    /// The result format codes (after the parameters).
    pub fn result_formats(&self) -> Result<Vec<i16>, MalformedMessage> {
        let mut c = Cursor {
            buf: self.rest,
            what: "Bind",
        };
        let nf = c.i16()?.max(0);
        c.bytes(nf as usize * 2)?;
        let np = c.i16()?.max(0);
        for _ in 0..np {
            let len = c.i32()?;
            if len > 0 {
                c.bytes(len as usize)?;
            }
        }
        let nr = c.i16()?;
        if nr < 0 {
            return Err(bad("Bind", "negative result format count"));
        }
        (0..nr).map(|_| c.i16()).collect()
    }

    /// Encodes this Bind against another statement name.
    pub fn encode_renamed(&self, statement: &str, out: &mut BytesMut) {
        let len = 4 + self.portal.len() + 1 + statement.len() + 1 + self.rest.len();
        out.put_u8(b'B');
        out.put_i32(len as i32);
        out.put_slice(self.portal.as_bytes());
        out.put_u8(0);
        out.put_slice(statement.as_bytes());
        out.put_u8(0);
        out.put_slice(self.rest);
    }
}

/// Encodes a Bind of `statement` into `portal` with these parameter formats
/// and values, and `results` (a result-format part as
/// [`BindMsg::params_and_results`] returns it).
pub fn encode_bind(
    portal: &str,
    statement: &str,
    formats: &[i16],
    values: &[Option<&[u8]>],
    results: &[u8],
    out: &mut BytesMut,
) {
    let data: usize = values.iter().map(|v| 4 + v.map_or(0, <[u8]>::len)).sum();
    let len = 4
        + portal.len()
        + 1
        + statement.len()
        + 1
        + 2
        + 2 * formats.len()
        + 2
        + data
        + results.len();
    out.reserve(len + 1);
    out.put_u8(b'B');
    out.put_i32(len as i32);
    out.put_slice(portal.as_bytes());
    out.put_u8(0);
    out.put_slice(statement.as_bytes());
    out.put_u8(0);
    out.put_i16(formats.len() as i16);
    for f in formats {
        out.put_i16(*f);
    }
    out.put_i16(values.len() as i16);
    for v in values {
        match v {
            Some(b) => {
                out.put_i32(b.len() as i32);
                out.put_slice(b);
            }
            None => out.put_i32(-1),
        }
    }
    out.put_slice(results);
}

/// Describe ('D') or Close ('C'): a kind byte (`S` statement, `P` portal) and a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetMsg<'a> {
    pub kind: u8,
    pub name: &'a str,
}

impl<'a> TargetMsg<'a> {
    pub fn decode(body: &'a [u8], what: &'static str) -> Result<TargetMsg<'a>, MalformedMessage> {
        let mut c = Cursor { buf: body, what };
        let kind = *c.bytes(1)?.first().ok_or(bad(what, "truncated"))?;
        if kind != b'S' && kind != b'P' {
            return Err(bad(what, "kind must be 'S' or 'P'"));
        }
        let name = c.cstr()?;
        Ok(TargetMsg { kind, name })
    }

    /// Encodes as message `tag` ('D' or 'C') with another name.
    pub fn encode_renamed(&self, tag: u8, name: &str, out: &mut BytesMut) {
        out.put_u8(tag);
        out.put_i32((4 + 1 + name.len() + 1) as i32);
        out.put_u8(self.kind);
        out.put_slice(name.as_bytes());
        out.put_u8(0);
    }
}

/// An Execute message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecuteMsg<'a> {
    pub portal: &'a str,
    pub max_rows: i32,
}

impl<'a> ExecuteMsg<'a> {
    pub fn decode(body: &'a [u8]) -> Result<ExecuteMsg<'a>, MalformedMessage> {
        let mut c = Cursor {
            buf: body,
            what: "Execute",
        };
        let portal = c.cstr()?;
        let max_rows = c.i32()?;
        Ok(ExecuteMsg { portal, max_rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(frame: &[u8]) -> &[u8] {
        &frame[5..]
    }

    #[test]
    fn parse_round_trips_with_new_name() {
        let mut raw = BytesMut::new();
        let p = ParseMsg {
            name: "s1",
            query: "select $1",
            param_types: &[0, 0, 0, 23],
        };
        p.encode_renamed("s1", &mut raw);
        let d = ParseMsg::decode(body(&raw)).unwrap();
        assert_eq!(d, p);
        let mut renamed = BytesMut::new();
        d.encode_renamed("sp_abc", &mut renamed);
        assert_eq!(ParseMsg::decode(body(&renamed)).unwrap().name, "sp_abc");
    }

    #[test]
    fn bind_params_decode() {
        let mut b = BytesMut::new();
        b.put_slice(b"p\0s\0");
        b.put_i16(1);
        b.put_i16(1);
        b.put_i16(2);
        b.put_i32(4);
        b.put_i32(42);
        b.put_i32(-1);
        b.put_i16(0);
        let m = BindMsg::decode(&b).unwrap();
        assert_eq!((m.portal, m.statement), ("p", "s"));
        let p = m.params().unwrap();
        assert_eq!(p.values.to_vec(), vec![Some(&[0u8, 0, 0, 42][..]), None]);
        assert_eq!(p.format(1), 1);
        let mut out = BytesMut::new();
        m.encode_renamed("zz", &mut out);
        let m2 = BindMsg::decode(body(&out)).unwrap();
        assert_eq!(m2.statement, "zz");
        let (_, results) = m.params_and_results().unwrap();
        assert_eq!(results, &[0, 0]);
        let mut rebuilt = BytesMut::new();
        encode_bind("p", "s", &p.formats, &p.values, results, &mut rebuilt);
        assert_eq!(&rebuilt[5..], &b[..]);
        // Debug text: the inline vectors tie each decode to its buffer's lifetime.
        assert_eq!(format!("{:?}", m2.params().unwrap()), format!("{p:?}"));
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        assert!(ParseMsg::decode(b"no terminator").is_err());
        assert!(ParseMsg::decode(b"a\0b\0\xff\xff").is_err());
        assert!(BindMsg::decode(b"a\0b\0").unwrap().params().is_err());
        assert!(TargetMsg::decode(b"X", "Describe").is_err());
        assert!(TargetMsg::decode(b"", "Close").is_err());
        assert!(ExecuteMsg::decode(b"p\0\0").is_err());
        assert!(query_text(b"\xff\0").is_err());
    }
}
