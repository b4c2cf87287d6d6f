//! The one way the control path connects to a shard's server: tokio-postgres
//! with the same URL reading and TLS as the data path (`sslmode`,
//! `sslrootcert`, `sslcert`, `sslkey` as libpq means them; see
//! [`crate::data::pool::tls`]).
//!
//! The URL is parsed by the data path's [`BackendAddr`] rather than by
//! tokio-postgres, which knows neither `verify-ca` nor `verify-full`; the
//! verification itself is the rustls configuration the data path builds,
//! handed to tokio-postgres through `tokio-postgres-rustls`.

use crate::data::pool::tls::SslMode;
use crate::data::pool::Endpoint;
use std::time::Duration;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::Client;

/// Limit for connecting (TCP, TLS and authentication together).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the server `url` names (a `[[shards]]` URL) as
/// `application_name = shardproxy`; the connection task runs in the
/// background until the client is dropped.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    connect_as(url, "shardproxy").await
}

/// [`connect`] with another `application_name` (unless the URL sets one).
pub async fn connect_as(url: &str, application_name: &str) -> Result<Client, String> {
    let endpoint = Endpoint::new(url)?;
    connect_endpoint(&endpoint, application_name).await
}

/// [`connect_as`] for an endpoint already built (its TLS files already read).
pub async fn connect_endpoint(
    endpoint: &Endpoint,
    application_name: &str,
) -> Result<Client, String> {
    let a = &endpoint.addr;
    let mut cfg = tokio_postgres::Config::new();
    if a.is_unix() {
        cfg.host_path(&a.host);
    } else {
        cfg.host(&a.host);
    }
    cfg.port(a.port)
        .user(&a.user)
        .dbname(&a.database)
        .connect_timeout(CONNECT_TIMEOUT)
        .application_name(
            a.params
                .get("application_name")
                .map(String::as_str)
                .unwrap_or(application_name),
        );
    if let Some(p) = &a.password {
        cfg.password(p);
    }
    // Other startup parameters of the URL become `-c name=value` options,
    // which is what the server does with them in a startup packet too.
    let mut options = a.params.get("options").cloned().unwrap_or_default();
    for (k, v) in a
        .params
        .iter()
        .filter(|(k, _)| *k != "application_name" && *k != "options")
    {
        options.push_str(&format!(
            " -c {k}={}",
            v.replace('\\', "\\\\").replace(' ', "\\ ")
        ));
    }
    if !options.trim().is_empty() {
        cfg.options(options.trim());
    }
    let what = || format!("connecting to {}", a.display());
    let client = match endpoint.tls_config() {
        Some(tls) if !a.is_unix() => {
            cfg.ssl_mode(match a.ssl.mode {
                SslMode::Prefer => PgSslMode::Prefer,
                _ => PgSslMode::Require,
            });
            let connector = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
            let (client, conn) = timed(cfg.connect(connector))
                .await
                .map_err(|e| format!("{}: {e}", what()))?;
            drive(conn);
            client
        }
        _ => {
            cfg.ssl_mode(PgSslMode::Disable);
            let (client, conn) = timed(cfg.connect(tokio_postgres::NoTls))
                .await
                .map_err(|e| format!("{}: {e}", what()))?;
            drive(conn);
            client
        }
    };
    Ok(client)
}

/// Runs a connection's I/O in the background until its client is dropped.
fn drive(
    conn: impl std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
) {
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("control connection closed: {e}");
        }
    });
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), f).await {
        Ok(r) => r.map_err(|e| match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        }),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}
