//! TLS to a shard's servers, with `sslmode` meaning what libpq means by it.
//!
//! - `disable`: plain TCP only.
//! - `prefer` (libpq's default): ask for TLS; a server that refuses is
//!   spoken to in plain text on the same connection.
//! - `require`: TLS or nothing. The certificate is not checked, unless a
//!   root certificate file exists (`sslrootcert`, or libpq's default
//!   `~/.postgresql/root.crt`): then the chain is checked, as libpq does.
//! - `verify-ca`: the chain must lead to a root in the file.
//! - `verify-full`: also the host name (or IP address) of the URL must be
//!   one the certificate names.
//!
//! `prefer` with a root file checks the chain too when TLS is used (libpq
//! verifies whenever it has a root certificate). `sslcert`/`sslkey` (default
//! `~/.postgresql/postgresql.crt`/`.key` when present) are offered as the
//! client certificate. Over a Unix socket `sslmode` is ignored, as libpq
//! ignores it. `allow` is not offered: it would need a second connection
//! attempt after a refused plain one, and `prefer` covers its use.
//!
//! rustls with the ring provider, as for client TLS (`data/auth/tls.rs`).
//! The two verifiers libpq has and rustls lacks are small wrappers here:
//! one that accepts any certificate (still checking the handshake's
//! signatures), one that checks the chain but not the name.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The ALPN protocol Postgres 17 registered (older servers ignore it).
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// `sslmode` of a shard URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow is not supported; use prefer (TLS when the server offers it) or disable"
                        .into(),
                )
            }
            other => {
                return Err(format!(
                    "sslmode '{other}' is not one of disable, prefer, require, verify-ca, verify-full"
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// TLS must be used (the server refusing it is an error).
    pub fn requires_tls(self) -> bool {
        !matches!(self, SslMode::Disable | SslMode::Prefer)
    }
}

/// The TLS parameters of a shard URL, as written (files are read by [`client_config`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SslParams {
    pub mode: SslMode,
    pub rootcert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// `sslsni=0` turns Server Name Indication off (libpq sends it for host names).
    pub sni: bool,
}

/// libpq's default location of a TLS file: `~/.postgresql/<name>`.
fn default_file(name: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".postgresql").join(name);
    p.exists().then_some(p)
}

/// The rustls configuration for connecting with `p`, or None for `disable`.
/// Reads the certificate files now, so a missing or unreadable one is a
/// configuration error naming it.
pub fn client_config(p: &SslParams) -> Result<Option<Arc<ClientConfig>>, String> {
    if p.mode == SslMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let rootcert = p.rootcert.clone().or_else(|| default_file("root.crt"));
    let verifier: Arc<dyn ServerCertVerifier> = match &rootcert {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(path, "sslrootcert")? {
                roots
                    .add(c)
                    .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            if p.mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
        None if matches!(p.mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
            return Err(format!(
                "sslmode={} needs a root certificate: set sslrootcert=/path/to/root.crt (or place it at ~/.postgresql/root.crt)",
                p.mode.as_str()
            ))
        }
        None => Arc::new(AnyCertificate(provider.clone())),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let cert = p.cert.clone().or_else(|| default_file("postgresql.crt"));
    let key = p.key.clone().or_else(|| default_file("postgresql.key"));
    let mut config = match (cert, key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(&cert, "sslcert")?, read_key(&key)?)
            .map_err(|e| {
                format!(
                    "sslcert {} with sslkey {} is unusable: {e}",
                    cert.display(),
                    key.display()
                )
            })?,
        (Some(cert), None) => {
            return Err(format!(
                "sslcert {} is set but no sslkey (libpq's default ~/.postgresql/postgresql.key does not exist)",
                cert.display()
            ))
        }
        (None, _) => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    config.enable_sni = p.sni;
    Ok(Some(Arc::new(config)))
}

/// The name the certificate is checked against (and sent as SNI): the
/// URL's host, an IP address when it is one.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("'{host}' is not a valid TLS server name: {e}"))
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let data =
        std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let data =
        std::fs::read(path).map_err(|e| format!("cannot read sslkey {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| format!("cannot read sslkey {}: {e}", path.display()))?
        .ok_or_else(|| {
            format!(
                "sslkey {} holds no PEM private key (PKCS#8, RSA or SEC1; encrypted keys are not supported)",
                path.display()
            )
        })
}

/// `require`/`prefer` without a root certificate: any certificate is
/// accepted (libpq does not check one it cannot check), but the handshake
/// must still be signed by the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` (and `require`/`prefer` with a root file): the chain is
/// checked, the name is not. webpki checks the chain first, so a name
/// mismatch is only reported for a chain that is valid.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_libpq_spells_them() {
        for m in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            assert_eq!(SslMode::parse(m).unwrap().as_str(), m);
        }
        assert!(SslMode::parse("allow").unwrap_err().contains("prefer"));
        assert!(SslMode::parse("verify_full").is_err());
        assert!(SslMode::VerifyCa.requires_tls() && !SslMode::Prefer.requires_tls());
    }

    #[test]
    fn verifying_modes_need_a_root_certificate() {
        // Only meaningful where ~/.postgresql/root.crt does not exist.
        if default_file("root.crt").is_some() {
            return;
        }
        let p = SslParams {
            mode: SslMode::VerifyFull,
            sni: true,
            ..Default::default()
        };
        assert!(client_config(&p).unwrap_err().contains("sslrootcert"));
        let p = SslParams {
            mode: SslMode::Require,
            sni: true,
            ..Default::default()
        };
        assert!(client_config(&p).unwrap().is_some());
        let p = SslParams {
            mode: SslMode::Require,
            rootcert: Some("/nonexistent/root.crt".into()),
            ..Default::default()
        };
        assert!(client_config(&p)
            .unwrap_err()
            .contains("/nonexistent/root.crt"));
        assert!(client_config(&SslParams {
            mode: SslMode::Disable,
            ..Default::default()
        })
        .unwrap()
        .is_none());
    }
}
