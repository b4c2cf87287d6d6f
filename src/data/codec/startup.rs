//! The untyped first packet of a connection: StartupMessage, SSLRequest,
//! GSSENCRequest or CancelRequest.

use super::error::{sqlstate, SqlError};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest startup packet accepted (Postgres uses the same limit).
pub const MAX_STARTUP_LEN: usize = 10_000;

const SSL_REQUEST: u32 = 80877103;
const GSSENC_REQUEST: u32 = 80877104;
const CANCEL_REQUEST: u32 = 80877102;

/// What the client asked for in its first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: i32,
        secret: i32,
    },
    Startup {
        major: u16,
        minor: u16,
        /// Parameters in the order sent (user, database, options, GUCs, `_pq_.*`).
        params: Vec<(String, String)>,
    },
}

impl StartupPacket {
    /// The value of a startup parameter.
    pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the packet body (everything after the length field).
pub fn parse_startup(body: &[u8]) -> Result<StartupPacket, SqlError> {
    if body.len() < 4 {
        return Err(SqlError::protocol("invalid startup packet: too short"));
    }
    let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let rest = &body[4..];
    match code {
        SSL_REQUEST => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST => {
            if rest.len() < 8 {
                return Err(SqlError::protocol("invalid cancel request: too short"));
            }
            Ok(StartupPacket::Cancel {
                pid: i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
                secret: i32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]),
            })
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(SqlError::fatal(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0"
                    ),
                )
                .with_hint("Use a client that speaks protocol 3 (any libpq since 7.4)."));
            }
            let params = parse_params(rest)?;
            if StartupPacket::param(&params, "user").is_none_or(str::is_empty) {
                return Err(SqlError::fatal(
                    sqlstate::INVALID_AUTHORIZATION,
                    "no PostgreSQL user name specified in startup packet",
                ));
            }
            Ok(StartupPacket::Startup {
                major,
                minor,
                params,
            })
        }
    }
}

fn parse_params(mut rest: &[u8]) -> Result<Vec<(String, String)>, SqlError> {
    let mut params = Vec::new();
    loop {
        let (name, tail) = cstr(rest)?;
        if name.is_empty() {
            return Ok(params);
        }
        let (value, tail) = cstr(tail)?;
        params.push((name.to_string(), value.to_string()));
        rest = tail;
    }
}

fn cstr(buf: &[u8]) -> Result<(&str, &[u8]), SqlError> {
    let end = buf.iter().position(|&b| b == 0).ok_or_else(|| {
        SqlError::protocol("invalid startup packet layout: expected terminator as last byte")
    })?;
    let s = std::str::from_utf8(&buf[..end]).map_err(|_| {
        SqlError::fatal(
            sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
            "invalid byte sequence for encoding \"UTF8\" in startup packet",
        )
    })?;
    Ok((s, &buf[end + 1..]))
}

/// Reads one startup-phase packet (length-prefixed, no type byte).
pub async fn read_startup<R: AsyncRead + Unpin>(r: &mut R) -> Result<StartupPacket, SqlError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)
        .await
        .map_err(|_| SqlError::protocol("incomplete startup packet"))?;
    let len = i32::from_be_bytes(len);
    if len < 8 || len as usize > MAX_STARTUP_LEN {
        return Err(SqlError::protocol(format!(
            "invalid length of startup packet: {len}"
        )));
    }
    let mut body = vec![0u8; len as usize - 4];
    r.read_exact(&mut body)
        .await
        .map_err(|_| SqlError::protocol("incomplete startup packet"))?;
    parse_startup(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(params: &[(&str, &str)], version: u32) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        for (k, v) in params {
            b.extend_from_slice(k.as_bytes());
            b.push(0);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        b
    }

    #[test]
    fn parses_startup_and_special_requests() {
        let p = parse_startup(&startup(&[("user", "u"), ("database", "d")], 196608)).unwrap();
        match p {
            StartupPacket::Startup {
                major,
                minor,
                params,
            } => {
                assert_eq!((major, minor), (3, 0));
                assert_eq!(StartupPacket::param(&params, "database"), Some("d"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_startup(&SSL_REQUEST.to_be_bytes()).unwrap(),
            StartupPacket::SslRequest
        );
        let mut c = CANCEL_REQUEST.to_be_bytes().to_vec();
        c.extend_from_slice(&7i32.to_be_bytes());
        c.extend_from_slice(&9i32.to_be_bytes());
        assert_eq!(
            parse_startup(&c).unwrap(),
            StartupPacket::Cancel { pid: 7, secret: 9 }
        );
    }

    #[test]
    fn rejects_bad_startups() {
        let e = parse_startup(&startup(&[("user", "u")], 2 << 16)).unwrap_err();
        assert_eq!(e.code, "0A000");
        let mut bad = startup(&[("user", "u")], 196608);
        bad[5] = 0xff;
        assert_eq!(parse_startup(&bad).unwrap_err().code, "22021");
        let e = parse_startup(&startup(&[("database", "d")], 196608)).unwrap_err();
        assert_eq!(e.code, "28000");
        let mut unterminated = 196608u32.to_be_bytes().to_vec();
        unterminated.extend_from_slice(b"user");
        assert_eq!(parse_startup(&unterminated).unwrap_err().code, "08P01");
        assert!(parse_startup(&[1, 2]).is_err());
    }
}
