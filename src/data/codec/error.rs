//! The proxy's own errors as Postgres sees them: SQLSTATE, message, detail, hint.

use bytes::BytesMut;
use pgwire::messages::response::{ErrorResponse, NoticeResponse};
use pgwire::messages::Message;

/// An error the proxy reports to a client as an ErrorResponse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SqlError {
    /// FATAL errors close the connection after they are sent.
    pub fatal: bool,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

/// SQLSTATEs the proxy raises itself.
pub mod sqlstate {
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const CONNECTION_EXCEPTION: &str = "08000";
    pub const INVALID_DATABASE: &str = "3D000";
    pub const INVALID_TEXT: &str = "22P02";
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
    pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
    pub const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
    pub const SYNTAX_ERROR: &str = "42601";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const IN_FAILED_TRANSACTION: &str = "25P02";
    pub const QUERY_CANCELED: &str = "57014";
    pub const INTERNAL_ERROR: &str = "XX000";
    pub const OUT_OF_MEMORY: &str = "53200";
}

impl SqlError {
    pub fn new(code: &'static str, message: impl Into<String>) -> SqlError {
        SqlError {
            fatal: false,
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn fatal(code: &'static str, message: impl Into<String>) -> SqlError {
        SqlError {
            fatal: true,
            ..SqlError::new(code, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> SqlError {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> SqlError {
        self.detail = Some(detail.into());
        self
    }

    /// 08006 for a shard that cannot be reached.
    pub fn shard_unavailable(shard: &str, why: impl std::fmt::Display) -> SqlError {
        SqlError::new(
            sqlstate::CONNECTION_FAILURE,
            format!("shard \"{shard}\" is unavailable: {why}"),
        )
        .with_hint("The statement needs this shard; retry when it is back. Statements for other shards are unaffected.")
    }

    /// 08P01 for a client that broke the protocol.
    pub fn protocol(message: impl Into<String>) -> SqlError {
        SqlError::fatal(sqlstate::PROTOCOL_VIOLATION, message)
    }

    fn fields(&self) -> Vec<(u8, String)> {
        let sev = if self.fatal { "FATAL" } else { "ERROR" };
        let mut f = vec![
            (b'S', sev.to_string()),
            (b'V', sev.to_string()),
            (b'C', self.code.to_string()),
            (b'M', self.message.clone()),
        ];
        if let Some(d) = &self.detail {
            f.push((b'D', d.clone()));
        }
        if let Some(h) = &self.hint {
            f.push((b'H', h.clone()));
        }
        f
    }

    /// Appends the ErrorResponse to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        // Encoding into a BytesMut cannot fail for these message types.
        let _ = ErrorResponse::new(self.fields()).encode(buf);
    }

    /// Appends the same fields as a NoticeResponse (severity WARNING).
    pub fn encode_notice(&self, buf: &mut BytesMut) {
        let mut f = self.fields();
        f[0].1 = "WARNING".into();
        f[1].1 = "WARNING".into();
        let _ = NoticeResponse::new(f).encode(buf);
    }
}

/// Reads the SQLSTATE and message fields of a backend ErrorResponse body.
pub fn parse_error_fields(body: &[u8]) -> (String, String) {
    let mut code = String::new();
    let mut message = String::new();
    let mut rest = body;
    while let Some((&t, tail)) = rest.split_first() {
        if t == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let v = String::from_utf8_lossy(&tail[..end]).into_owned();
        match t {
            b'C' => code = v,
            b'M' => message = v,
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_round_trips_through_the_parser() {
        let mut b = BytesMut::new();
        SqlError::new("0A000", "nope")
            .with_hint("do x")
            .encode(&mut b);
        assert_eq!(b[0], b'E');
        let (c, m) = parse_error_fields(&b[5..]);
        assert_eq!((c.as_str(), m.as_str()), ("0A000", "nope"));
        assert_eq!(parse_error_fields(b"Cxx"), ("xx".into(), String::new()));
    }
}
