//! Postgres md5 password authentication (AuthenticationMD5Password): weak, but still what some
//! older drivers and configs use. The client sends "md5" + md5hex(md5hex(password || user) || salt).

use md5::{Digest, Md5};
use rand::Rng;
use subtle::ConstantTimeEq;

use super::Credential;

/// Checks an md5 PasswordMessage. Works for plaintext and md5-hash credentials; always false for a
/// SCRAM verifier, from which the md5 hash cannot be derived.
pub fn md5_check(cred: &Credential, user: &str, salt: [u8; 4], client_response: &str) -> bool {
    let inner = match cred {
        Credential::Plain(password) => md5_hex(&[password.as_bytes(), user.as_bytes()]),
        Credential::Md5Hash(hash) => hash.strip_prefix("md5").unwrap_or(hash).to_owned(),
        Credential::Scram(_) => return false,
    };
    let expected = format!("md5{}", md5_hex(&[inner.as_bytes(), &salt]));
    expected.as_bytes().ct_eq(client_response.as_bytes()).into()
}

/// A fresh salt for AuthenticationMD5Password.
pub fn random_salt4() -> [u8; 4] {
    rand::thread_rng().gen()
}

fn md5_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    parts.iter().for_each(|p| h.update(p));
    format!("{:x}", h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::md5_hash;

    #[test]
    fn plaintext_and_hash_credentials() {
        let salt = [1, 2, 3, 250];
        let plain = Credential::parse("s3cret").unwrap();
        let hashed =
            Credential::parse(&postgres_protocol::password::md5(b"s3cret", "alice")).unwrap();
        assert!(matches!(hashed, Credential::Md5Hash(_)));
        let good = md5_hash(b"alice", b"s3cret", salt);
        for cred in [&plain, &hashed] {
            assert!(md5_check(cred, "alice", salt, &good));
            assert!(!md5_check(
                cred,
                "alice",
                salt,
                &md5_hash(b"alice", b"wrong", salt)
            ));
            assert!(!md5_check(cred, "alice", [0; 4], &good), "salt must count");
            assert!(!md5_check(cred, "alice", salt, ""));
            assert!(!md5_check(cred, "alice", salt, &good[..34]));
        }
        // The user name salts the inner hash: the same password for another user differs.
        assert!(!md5_check(&plain, "bob", salt, &good));
    }

    #[test]
    fn scram_credential_never_passes_md5() {
        let scram = Credential::parse(&postgres_protocol::password::scram_sha_256(b"pw")).unwrap();
        assert!(!md5_check(
            &scram,
            "u",
            [9; 4],
            &md5_hash(b"u", b"pw", [9; 4])
        ));
    }

    #[test]
    fn salts_vary() {
        let salts: std::collections::HashSet<_> = (0..16).map(|_| random_salt4()).collect();
        assert!(salts.len() > 1);
    }
}
