//! Where and how to reach one server: its parsed URL and the TLS client
//! configuration its `sslmode` asks for, built once when the pool is made
//! (so certificate files are read at startup or RELOAD, not per connect).
//! Backends, cancel requests and the health checker all connect through
//! [`Endpoint::open`], so each negotiates TLS the same way.

use super::addr::BackendAddr;
use super::stream::BackendStream;
use super::tls::{self, SslMode};
use rustls::ClientConfig;
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// The SSLRequest packet: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// One server of a shard, ready to be connected to.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: BackendAddr,
    /// The URL as configured (the control path connects with it).
    pub url: String,
    /// None for `sslmode=disable` (and never used over a Unix socket).
    tls: Option<Arc<ClientConfig>>,
}

impl Endpoint {
    /// Parses `url` and reads the TLS files it names.
    pub fn new(url: &str) -> Result<Endpoint, String> {
        let addr = BackendAddr::parse(url)?;
        let tls = if addr.tries_tls() {
            tls::client_config(&addr.ssl).map_err(|e| format!("{}: {e}", addr.display()))?
        } else {
            None
        };
        Ok(Endpoint {
            addr,
            url: url.to_string(),
            tls,
        })
    }

    /// The rustls configuration for this server (None: plain only).
    pub fn tls_config(&self) -> Option<&Arc<ClientConfig>> {
        self.tls.as_ref()
    }

    /// Opens a connection and negotiates TLS as `sslmode` says: an
    /// SSLRequest first, then the handshake if the server answers 'S'.
    pub async fn open(&self) -> io::Result<BackendStream> {
        let addr = &self.addr;
        if addr.is_unix() {
            let path = format!("{}/.s.PGSQL.{}", addr.host, addr.port);
            return Ok(BackendStream::Unix(UnixStream::connect(path).await?));
        }
        let mut s = TcpStream::connect((addr.host.as_str(), addr.port)).await?;
        s.set_nodelay(true)?;
        let Some(config) = &self.tls else {
            return Ok(BackendStream::Tcp(s));
        };
        s.write_all(&SSL_REQUEST).await?;
        // Exactly one byte: anything the server sent after it would have to
        // come through TLS (libpq refuses a server that sends more).
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer).await?;
        match answer[0] {
            b'S' => {
                let name = tls::server_name(&addr.host).map_err(io::Error::other)?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = connector
                    .connect(name, s)
                    .await
                    .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake failed: {e}")))?;
                Ok(BackendStream::Tls(Box::new(tls)))
            }
            b'N' if addr.ssl.mode == SslMode::Prefer => Ok(BackendStream::Tcp(s)),
            b'N' => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!(
                    "server does not support SSL, but sslmode={} requires it",
                    addr.ssl.mode.as_str()
                ),
            )),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("received invalid response to SSL negotiation: 0x{other:02x}"),
            )),
        }
    }
}
