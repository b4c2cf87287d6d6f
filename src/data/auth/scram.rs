//! The server side of SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL speaks it.
//!
//! Postgres-flavoured details: the mechanism is `SCRAM-SHA-256` only (we never advertise
//! `-PLUS`, so a client asking for channel binding is refused), the SCRAM user name is ignored
//! (the startup packet's user counts), and a wrong proof is reported as an error rather than an
//! `e=` server-final-message. Hand-written because no maintained crate offers a server side
//! that speaks the Postgres variant; the primitives (PBKDF2, HMAC, SHA-256, base64, constant-time
//! compare) all come from crates.

use std::fmt;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthError;

/// The SASL mechanism name to advertise in AuthenticationSASL and expect in SASLInitialResponse.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// Postgres's default (`scram_iterations`).
pub const DEFAULT_ITERATIONS: u32 = 4096;
const SALT_LEN: usize = 16;
/// Postgres uses 18 random bytes too (SCRAM_RAW_NONCE_LEN).
const NONCE_BYTES: usize = 18;

/// What the server keeps to check a SCRAM proof without knowing the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl ScramVerifier {
    /// Computes the verifier of a plaintext password (SASLprep'd as Postgres and libpq do, falling
    /// back to the raw bytes when the password has prohibited characters). Costs `iterations`
    /// HMACs: compute once, then cache. An iteration count of 0 is raised to 1.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> ScramVerifier {
        let prepared = match stringprep::saslprep(password) {
            Ok(p) => p.into_owned(),
            Err(_) => password.to_owned(),
        };
        let iterations = iterations.max(1);
        let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(prepared.as_bytes(), salt, iterations);
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(hmac(&salted, b"Client Key")).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// A verifier with a fresh random salt and the default iteration count.
    pub fn generate(password: &str) -> ScramVerifier {
        let mut salt = [0u8; SALT_LEN];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::from_password(password, &salt, DEFAULT_ITERATIONS)
    }

    /// A verifier no password matches, for users that do not exist: running the exchange anyway
    /// (as Postgres's mock authentication does) hides which user names exist. The salt is stable
    /// per user for the life of the process, so probing twice shows nothing either.
    pub fn mock(user: &str) -> ScramVerifier {
        static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
        let secret = SECRET.get_or_init(|| {
            let mut s = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut s);
            s
        });
        let salt = hmac(secret, user.as_bytes())[..SALT_LEN].to_vec();
        let mut stored_key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut stored_key);
        ScramVerifier {
            iterations: DEFAULT_ITERATIONS,
            salt,
            stored_key,
            server_key: [0; 32],
        }
    }

    /// Parses Postgres's stored form `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(stored: &str) -> Result<ScramVerifier, String> {
        let bad = |why: &str| {
            format!(
                "invalid SCRAM-SHA-256 verifier: {why} (expected \
                 SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>)"
            )
        };
        let rest = stored
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or_else(|| bad("missing SCRAM-SHA-256$ prefix"))?;
        let (iter_salt, keys) = rest.split_once('$').ok_or_else(|| bad("missing keys"))?;
        let (iterations, salt) = iter_salt
            .split_once(':')
            .ok_or_else(|| bad("missing salt"))?;
        let iterations = match iterations.parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad("iteration count is not a positive integer")),
        };
        let salt = match B64.decode(salt) {
            Ok(s) if !s.is_empty() => s,
            _ => return Err(bad("salt is not valid base64")),
        };
        let (stored_key, server_key) = keys
            .split_once(':')
            .ok_or_else(|| bad("missing ServerKey"))?;
        let key = |b64: &str, name: &str| -> Result<[u8; 32], String> {
            B64.decode(b64)
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or_else(|| bad(&format!("{name} is not 32 bytes of base64")))
        };
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key: key(stored_key, "StoredKey")?,
            server_key: key(server_key, "ServerKey")?,
        })
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }
}

/// Postgres's stored form, accepted by [`ScramVerifier::parse`] and by `ALTER ROLE … PASSWORD`.
impl fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

/// The keys are password-equivalent for this proxy (a ServerKey lets one impersonate the server):
/// keep them out of logs.
impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ScramVerifier(iterations={}, <keys redacted>)",
            self.iterations
        )
    }
}

enum State {
    AwaitFirst,
    AwaitFinal {
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
}

/// One SCRAM-SHA-256 exchange with one client. Any error ends the exchange.
pub struct ScramServer {
    verifier: ScramVerifier,
    state: State,
}

impl ScramServer {
    pub fn new(verifier: ScramVerifier) -> ScramServer {
        ScramServer {
            verifier,
            state: State::AwaitFirst,
        }
    }

    /// SASLInitialResponse data (client-first-message) → server-first-message for
    /// AuthenticationSASLContinue.
    pub fn handle_client_first(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        if !matches!(
            std::mem::replace(&mut self.state, State::Done),
            State::AwaitFirst
        ) {
            return Err(protocol("unexpected SCRAM client-first-message"));
        }
        let msg = utf8(data)?;
        // gs2-header = cbind-flag "," [authzid] "," ; the rest is client-first-message-bare.
        let mut parts = msg.splitn(3, ',');
        let cbind_flag = parts.next().unwrap_or_default();
        let (Some(authzid), Some(bare)) = (parts.next(), parts.next()) else {
            return Err(malformed("client-first-message has no gs2 header"));
        };
        match cbind_flag {
            "n" | "y" => {}
            flag if flag.starts_with("p=") => {
                return Err(protocol(
                    "client requested SCRAM channel binding (SCRAM-SHA-256-PLUS), \
                     which this server does not offer; use channel_binding=disable or prefer",
                ))
            }
            _ => return Err(malformed("unexpected channel-binding flag")),
        }
        if !authzid.is_empty() {
            return Err(protocol(
                "SCRAM authorization identity (a=) is not supported",
            ));
        }
        let mut attrs = bare.split(',');
        let first = attrs.next().unwrap_or_default();
        if first.starts_with("m=") {
            return Err(protocol("client requires an unsupported SCRAM extension"));
        }
        attr(first, "n=")?; // ignored, as in Postgres: the startup packet names the user
        let client_nonce = attr(attrs.next().unwrap_or_default(), "r=")?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(malformed("client nonce must be non-empty printable ASCII"));
        }
        let mut raw = [0u8; NONCE_BYTES];
        rand::thread_rng().fill_bytes(&mut raw);
        let nonce = format!("{client_nonce}{}", B64.encode(raw));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        self.state = State::AwaitFinal {
            gs2_header: format!("{cbind_flag},,"),
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(server_first.into_bytes())
    }

    /// SASLResponse data (client-final-message) → server-final-message for
    /// AuthenticationSASLFinal, or `WrongPassword` when the proof does not match.
    pub fn handle_client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let State::AwaitFinal {
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(protocol("unexpected SCRAM client-final-message"));
        };
        let msg = utf8(data)?;
        // The proof is the last attribute; base64 has no ',' so garbage after it fails to decode.
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or_else(|| malformed("client-final-message has no proof"))?;
        let mut attrs = without_proof.split(',');
        let cbind = attr(attrs.next().unwrap_or_default(), "c=")?;
        if B64.decode(cbind).ok().as_deref() != Some(gs2_header.as_bytes()) {
            return Err(protocol("SCRAM channel binding check failed"));
        }
        if attr(attrs.next().unwrap_or_default(), "r=")? != nonce {
            return Err(protocol("SCRAM nonce mismatch"));
        }
        let proof: [u8; 32] = B64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| malformed("client proof is not 32 bytes of base64"))?;

        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = proof;
        client_key
            .iter_mut()
            .zip(signature)
            .for_each(|(k, s)| *k ^= s);
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        if !bool::from(stored_key.ct_eq(&self.verifier.stored_key)) {
            return Err(AuthError::WrongPassword);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this never fails.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// `s` must be `name` (e.g. "r=") followed by the value.
fn attr<'a>(s: &'a str, name: &str) -> Result<&'a str, AuthError> {
    s.strip_prefix(name)
        .ok_or_else(|| malformed(&format!("expected attribute {name}")))
}

fn utf8(data: &[u8]) -> Result<&str, AuthError> {
    std::str::from_utf8(data).map_err(|_| malformed("message is not valid UTF-8"))
}

fn malformed(why: &str) -> AuthError {
    AuthError::Protocol(format!("malformed SCRAM message: {why}"))
}

fn protocol(why: &str) -> AuthError {
    AuthError::Protocol(why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::auth::Credential;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use proptest::prelude::*;

    /// Runs a full exchange with the real tokio-postgres client. Returns the server's verdict on
    /// the final message, and checks the client accepts the server's signature on success.
    fn exchange(v: &ScramVerifier, password: &str, cb: ChannelBinding) -> Result<(), AuthError> {
        let mut client = ScramSha256::new(password.as_bytes(), cb);
        let mut server = ScramServer::new(v.clone());
        let first = server.handle_client_first(client.message())?;
        client.update(&first).unwrap();
        let last = server.handle_client_final(client.message())?;
        client
            .finish(&last)
            .expect("client rejects server signature");
        Ok(())
    }

    fn plain(password: &str) -> ScramVerifier {
        Credential::parse(password)
            .unwrap()
            .scram_verifier()
            .unwrap()
    }

    #[test]
    fn plaintext_credential_right_and_wrong_password() {
        let v = plain("s3cret");
        assert_eq!(
            exchange(&v, "s3cret", ChannelBinding::unsupported()),
            Ok(())
        ); // "n,,"
        assert_eq!(
            exchange(&v, "s3cret", ChannelBinding::unrequested()),
            Ok(())
        ); // "y,,"
        assert_eq!(
            exchange(&v, "s3cret!", ChannelBinding::unsupported()),
            Err(AuthError::WrongPassword)
        );
        assert_eq!(
            exchange(&v, "", ChannelBinding::unrequested()),
            Err(AuthError::WrongPassword)
        );
    }

    #[test]
    fn postgres_verifier_right_and_wrong_password() {
        let stored = postgres_protocol::password::scram_sha_256(b"correct horse");
        let Credential::Scram(v) = Credential::parse(&stored).unwrap() else {
            panic!("not a SCRAM credential")
        };
        assert_eq!(v.to_string(), stored);
        assert_eq!(
            exchange(&v, "correct horse", ChannelBinding::unsupported()),
            Ok(())
        );
        assert_eq!(
            exchange(&v, "correct horse battery", ChannelBinding::unsupported()),
            Err(AuthError::WrongPassword)
        );
        // Our PBKDF2 matches Postgres's for the same salt and iteration count.
        assert_eq!(
            ScramVerifier::from_password("correct horse", &v.salt, v.iterations),
            v
        );
    }

    #[test]
    fn password_is_saslprepped_like_the_client() {
        // U+00AD (soft hyphen) maps to nothing under SASLprep, on both sides.
        let v = plain("I\u{AD}X");
        assert_eq!(exchange(&v, "IX", ChannelBinding::unsupported()), Ok(()));
        let v = plain("pässwörd");
        assert_eq!(
            exchange(&v, "pässwörd", ChannelBinding::unsupported()),
            Ok(())
        );
    }

    #[test]
    fn mock_verifier_never_authenticates_and_keeps_its_salt() {
        let m = ScramVerifier::mock("ghost");
        assert_eq!(m.salt, ScramVerifier::mock("ghost").salt);
        assert_ne!(m.salt, ScramVerifier::mock("other").salt);
        assert_eq!(
            exchange(&m, "", ChannelBinding::unsupported()),
            Err(AuthError::WrongPassword)
        );
    }

    #[test]
    fn verifier_parse_errors() {
        let good = ScramVerifier::from_password("pw", b"saltsaltsalt", 4096).to_string();
        assert!(ScramVerifier::parse(&good).is_ok());
        let (head, keys) = good.rsplit_once('$').unwrap();
        let (stored, _) = keys.split_once(':').unwrap();
        for (bad, why) in [
            ("SCRAM-SHA-256$4096:c2FsdA==".to_owned(), "missing keys"),
            (format!("SCRAM-SHA-256$0:c2FsdA==${keys}"), "iteration"),
            (format!("SCRAM-SHA-256$x:c2FsdA==${keys}"), "iteration"),
            (format!("SCRAM-SHA-256$4096:!!${keys}"), "salt"),
            (format!("SCRAM-SHA-256$4096${keys}"), "missing salt"),
            (format!("{head}${stored}"), "ServerKey"),
            (format!("{head}${stored}:c2hvcnQ="), "ServerKey is not 32"),
            (format!("{head}$@@:{stored}"), "StoredKey"),
        ] {
            let err = ScramVerifier::parse(&bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    fn protocol_err(r: Result<Vec<u8>, AuthError>) -> String {
        match r {
            Err(AuthError::Protocol(m)) => m,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_client_first() {
        let v = plain("pw");
        for (input, why) in [
            (&b""[..], "gs2 header"),
            (b"n,,", "attribute n="),
            (b"n,,n=,", "attribute r="),
            (b"n,,r=abc", "attribute n="),
            (b"n,,n=,r=", "nonce"),
            (b"n,,n=,r=a\x01b", "nonce"),
            (b"x,,n=,r=abc", "channel-binding flag"),
            (b"n,a=bob,n=,r=abc", "authorization identity"),
            (b"n,,m=ext,n=,r=abc", "extension"),
            (b"\xff,,n=,r=abc", "UTF-8"),
            (b"p=tls-server-end-point,,n=,r=abc", "SCRAM-SHA-256-PLUS"),
        ] {
            let err = protocol_err(ScramServer::new(v.clone()).handle_client_first(input));
            assert!(
                err.contains(why),
                "{:?}: {err}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn malformed_client_final() {
        let v = plain("pw");
        let start = || {
            let mut s = ScramServer::new(v.clone());
            let first = s.handle_client_first(b"n,,n=,r=clientnonce").unwrap();
            let first = String::from_utf8(first).unwrap();
            let nonce = first.split(',').next().unwrap()[2..].to_owned();
            (s, nonce)
        };
        let proof = B64.encode([7u8; 32]);
        let cases = |nonce: &str| {
            vec![
                (String::new(), "no proof"),
                (format!("c=biws,r={nonce}"), "no proof"),
                (format!("c=biws,p={proof}"), "attribute r="),
                (format!("r={nonce},p={proof}"), "attribute c="),
                (format!("c=eSws,r={nonce},p={proof}"), "channel binding"),
                (format!("c=%%%,r={nonce},p={proof}"), "channel binding"),
                (format!("c=biws,r=clientnonce,p={proof}"), "nonce mismatch"),
                (format!("c=biws,r={nonce}x,p={proof}"), "nonce mismatch"),
                (format!("c=biws,r={nonce},p=not*base64"), "proof"),
                (format!("c=biws,r={nonce},p=c2hvcnQ="), "proof"),
                (format!("c=biws,r={nonce},p={proof},x=1"), "proof"),
            ]
        };
        let (_, n) = start();
        for (input, why) in cases(&n) {
            let (mut s, nonce) = start();
            let input = input.replace(&n, &nonce);
            let err = protocol_err(s.handle_client_final(input.as_bytes()));
            assert!(err.contains(why), "{input}: {err}");
        }
        // A well-formed message with a wrong proof is a wrong password, not a protocol error.
        let (mut s, nonce) = start();
        let msg = format!("c=biws,r={nonce},p={proof}");
        assert_eq!(
            s.handle_client_final(msg.as_bytes()),
            Err(AuthError::WrongPassword)
        );
        // Out of order and repeated messages.
        assert!(
            protocol_err(ScramServer::new(v.clone()).handle_client_final(b"c=biws"))
                .contains("unexpected")
        );
        assert!(protocol_err(s.handle_client_final(msg.as_bytes())).contains("unexpected"));
        let (mut s, _) = start();
        assert!(protocol_err(s.handle_client_first(b"n,,n=,r=x")).contains("unexpected"));
    }

    fn fuzz_verifier() -> ScramVerifier {
        static V: OnceLock<ScramVerifier> = OnceLock::new();
        V.get_or_init(|| ScramVerifier::from_password("pw", b"salt", 16))
            .clone()
    }

    proptest! {
        #[test]
        fn arbitrary_client_first_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let r = ScramServer::new(fuzz_verifier()).handle_client_first(&data);
            prop_assert!(!matches!(r, Err(AuthError::WrongPassword)));
        }

        #[test]
        fn arbitrary_client_final_never_panics_nor_authenticates(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            tail in "(c=(biws|eSws|[A-Za-z0-9+/=]{0,8}),)?(r=[!-~]{0,40},)?p=[A-Za-z0-9+/=,]{0,60}",
        ) {
            let mut s = ScramServer::new(fuzz_verifier());
            s.handle_client_first(b"n,,n=,r=abc").unwrap();
            prop_assert!(s.handle_client_final(&data).is_err());
            let mut s = ScramServer::new(fuzz_verifier());
            s.handle_client_first(b"y,,n=,r=abc").unwrap();
            prop_assert!(s.handle_client_final(tail.as_bytes()).is_err());
        }
    }
}
