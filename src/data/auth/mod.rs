//! Client authentication primitives: how the proxy checks that a client knows a user's password.
//!
//! The session drives the wire messages (AuthenticationSASL, AuthenticationMD5Password, …); this
//! module owns the credentials from the config and the cryptographic checks, so they can be tested
//! against the real client implementation without a socket.

pub mod md5;
pub mod scram;
pub mod tls;

use std::fmt;

pub use self::md5::{md5_check, random_salt4};
pub use scram::{ScramServer, ScramVerifier, SCRAM_SHA_256};
pub use tls::tls_acceptor;

/// Why an authentication exchange failed.
///
/// The session maps `WrongPassword` to SQLSTATE 28P01 ("password authentication failed for user
/// \"x\"") and `Protocol` to 08P01.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("password authentication failed")]
    WrongPassword,
    #[error("{0}")]
    Protocol(String),
}

/// A user's stored credential, from `[[users]] password` in the config.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A plaintext password.
    Plain(String),
    /// A Postgres SCRAM verifier: `SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.
    Scram(ScramVerifier),
    /// A Postgres md5 hash: `md5` + 32 lowercase hex digits of md5(password || username).
    Md5Hash(String),
}

impl Credential {
    /// Classifies a stored password the way Postgres does (`get_password_type`): a string starting
    /// with `SCRAM-SHA-256$` must be a well-formed verifier, `md5` + 32 lowercase hex digits is an
    /// md5 hash, anything else is plaintext.
    pub fn parse(stored: &str) -> Result<Credential, String> {
        if stored.is_empty() {
            return Err("empty password: Postgres never accepts an empty password".to_owned());
        }
        if stored.starts_with("SCRAM-SHA-256$") {
            return ScramVerifier::parse(stored).map(Credential::Scram);
        }
        if is_md5_hash(stored) {
            return Ok(Credential::Md5Hash(stored.to_owned()));
        }
        Ok(Credential::Plain(stored.to_owned()))
    }

    /// The SCRAM verifier for this credential: the stored one, or for a plaintext password one
    /// computed now with a fresh random salt (PBKDF2, 4096 iterations: milliseconds, so the caller
    /// should compute it once per user and cache it). `None` for an md5 hash, which cannot be
    /// turned into a SCRAM verifier.
    pub fn scram_verifier(&self) -> Option<ScramVerifier> {
        match self {
            Credential::Plain(password) => Some(ScramVerifier::generate(password)),
            Credential::Scram(verifier) => Some(verifier.clone()),
            Credential::Md5Hash(_) => None,
        }
    }
}

/// Never prints the secret: credentials end up in config dumps and logs.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Plain(_) => f.write_str("Plain(<redacted>)"),
            Credential::Scram(v) => write!(f, "Scram({v:?})"),
            Credential::Md5Hash(_) => f.write_str("Md5Hash(<redacted>)"),
        }
    }
}

fn is_md5_hash(s: &str) -> bool {
    s.len() == 35
        && s.starts_with("md5")
        && s.bytes()
            .skip(3)
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_classifies_like_postgres() {
        assert_eq!(
            Credential::parse("hunter2"),
            Ok(Credential::Plain("hunter2".into()))
        );
        let md5 = postgres_protocol::password::md5(b"pw", "alice");
        assert_eq!(
            Credential::parse(&md5),
            Ok(Credential::Md5Hash(md5.clone()))
        );
        // Not exactly md5 + 32 lowercase hex: plaintext, as in Postgres.
        assert!(matches!(
            Credential::parse("md5abc"),
            Ok(Credential::Plain(_))
        ));
        assert!(matches!(
            Credential::parse(&md5.to_uppercase().replacen("MD5", "md5", 1)),
            Ok(Credential::Plain(_))
        ));
        let scram = postgres_protocol::password::scram_sha_256(b"pw");
        assert!(matches!(
            Credential::parse(&scram),
            Ok(Credential::Scram(_))
        ));
        assert!(Credential::parse("").unwrap_err().contains("empty"));
        // A malformed verifier is an error, never silently a plaintext password.
        let err = Credential::parse("SCRAM-SHA-256$4096:c2FsdA==$abc").unwrap_err();
        assert!(err.contains("SCRAM-SHA-256 verifier"), "{err}");
    }

    #[test]
    fn scram_verifier_per_kind() {
        let plain = Credential::Plain("pw".into()).scram_verifier().unwrap();
        assert_eq!(plain.iterations(), 4096);
        let stored = postgres_protocol::password::scram_sha_256(b"pw");
        let v = ScramVerifier::parse(&stored).unwrap();
        assert_eq!(Credential::Scram(v.clone()).scram_verifier(), Some(v));
        let md5 = Credential::parse(&postgres_protocol::password::md5(b"pw", "u")).unwrap();
        assert_eq!(md5.scram_verifier(), None);
    }

    #[test]
    fn debug_redacts_secrets() {
        let shown = format!(
            "{:?} {:?} {:?}",
            Credential::Plain("hunter2".into()),
            Credential::parse(&postgres_protocol::password::md5(b"pw", "u")).unwrap(),
            Credential::Plain("x".into()).scram_verifier().unwrap()
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("md5"),
            "{shown}"
        );
        assert!(shown.contains("redacted"), "{shown}");
    }
}
