//! TLS for client connections: builds the acceptor the session uses after answering an SSLRequest
//! with 'S'. rustls with the ring provider (no system OpenSSL); PEM files read with rustls-pemfile.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The ALPN protocol Postgres 17 registered; libpq 17+ offers it, older clients offer none.
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Builds a TLS acceptor from a PEM certificate chain and a PEM private key (PKCS#8, RSA or SEC1).
/// Errors name the file and the reason, for the config check at startup.
pub fn tls_acceptor(cert_pem: &Path, key_pem: &Path) -> Result<TlsAcceptor, String> {
    let certs = load_certs(cert_pem)?;
    let key = load_key(key_pem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "TLS certificate {} with key {} is unusable: {e}",
                cert_pem.display(),
                key_pem.display()
            )
        })?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn open(path: &Path, what: &str) -> Result<BufReader<File>, String> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| format!("cannot open TLS {what} file {}: {e}", path.display()))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = rustls_pemfile::certs(&mut open(path, "certificate")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read TLS certificate file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate file {} contains no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut open(path, "key")?)
        .map_err(|e| format!("cannot read TLS key file {}: {e}", path.display()))?
        .ok_or_else(|| {
            format!(
                "TLS key file {} contains no PEM private key (PKCS#8, RSA or SEC1)",
                path.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Files {
        _dir: tempfile::TempDir,
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
        cert_der: CertificateDer<'static>,
    }

    fn self_signed() -> Files {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        Files {
            _dir: dir,
            cert,
            key,
            cert_der: ck.cert.der().clone(),
        }
    }

    #[tokio::test]
    async fn handshake_with_self_signed_cert() {
        let f = self_signed();
        let acceptor = tls_acceptor(&f.cert, &f.key).unwrap();

        let mut roots = rustls::RootCertStore::empty();
        roots.add(f.cert_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"postgresql".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));

        let (client_io, server_io) = tokio::io::duplex(16 * 1024);
        let server = tokio::spawn(async move {
            let mut tls = acceptor.accept(server_io).await.unwrap();
            let mut buf = [0u8; 5];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(b"pong!").await.unwrap();
            tls.flush().await.unwrap();
            buf
        });
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, client_io).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"postgresql"[..]));
        tls.write_all(b"ping!").await.unwrap();
        tls.flush().await.unwrap();
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong!");
        assert_eq!(&server.await.unwrap(), b"ping!");
    }

    #[test]
    fn errors_name_the_file() {
        let f = self_signed();
        let missing = f.cert.with_file_name("nope.crt");
        let err = tls_acceptor(&missing, &f.key).err().unwrap();
        assert!(
            err.contains("nope.crt") && err.contains("certificate"),
            "{err}"
        );
        let missing = f.key.with_file_name("nope.key");
        let err = tls_acceptor(&f.cert, &missing).err().unwrap();
        assert!(err.contains("nope.key") && err.contains("key"), "{err}");
        // Swapped files: the key file holds no certificate, the cert file no key.
        let err = tls_acceptor(&f.key, &f.key).err().unwrap();
        assert!(
            err.contains("server.key") && err.contains("no PEM certificate"),
            "{err}"
        );
        let err = tls_acceptor(&f.cert, &f.cert).err().unwrap();
        assert!(
            err.contains("server.crt") && err.contains("no PEM private key"),
            "{err}"
        );
        // A key that does not belong to the certificate.
        let other = self_signed();
        let err = tls_acceptor(&f.cert, &other.key).err().unwrap();
        assert!(err.contains("unusable"), "{err}");
    }
}
