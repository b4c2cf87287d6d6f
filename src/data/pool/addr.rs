//! Where and as whom to connect to a shard, parsed from its `postgres://` URL.

use super::tls::{SslMode, SslParams};
use std::collections::BTreeMap;

/// libpq connection parameters the proxy does not implement: refused with
/// their name rather than passed on as startup parameters (which the server
/// would reject as unknown settings).
const UNSUPPORTED: &[&str] = &[
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslcertmode",
    "sslnegotiation",
    "requirepeer",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "passfile",
    "channel_binding",
    "target_session_attrs",
    "load_balance_hosts",
    "hostaddr",
    "require_auth",
    "ssl_max_protocol_version",
];

/// libpq parameters accepted and left to the proxy's own settings
/// (`pool.connect_timeout_ms`, the OS's keepalive defaults).
const IGNORED: &[&str] = &[
    "connect_timeout",
    "sslcompression",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "ssl_min_protocol_version",
];

/// A shard's connection target, parsed from `postgres://user:password@host:port/db?k=v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendAddr {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    /// Extra startup parameters from the query string (`?application_name=x`).
    pub params: BTreeMap<String, String>,
    /// `sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `sslsni` (see [`super::tls`]).
    pub ssl: SslParams,
}

impl BackendAddr {
    /// Parses a `postgres://` or `postgresql://` URL. `host` may be a Unix socket
    /// directory, written percent-encoded (`%2Ftmp`) or as `?host=/tmp`.
    pub fn parse(url: &str) -> Result<BackendAddr, String> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| format!("'{url}' must start with postgres://"))?;
        let (main, query) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        let (authority, database) = match main.split_once('/') {
            Some((a, d)) => (a, decode(d)?),
            None => (main, String::new()),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (decode(u)?, Some(decode(p)?)),
                None => (decode(u)?, None),
            },
            None => ("postgres".to_string(), None),
        };
        let (mut host, mut port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h
                .split_once(']')
                .ok_or_else(|| format!("'{url}': unclosed [ in host"))?;
            (h.to_string(), p.strip_prefix(':').unwrap_or(""))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (decode(h)?, p),
                None => (decode(hostport)?, ""),
            }
        };
        let mut port_num = if port.is_empty() {
            5432
        } else {
            port.parse::<u16>()
                .map_err(|_| format!("'{url}': port '{port}' is not a number"))?
        };
        let mut params = BTreeMap::new();
        let mut ssl = SslParams {
            sni: true,
            ..SslParams::default()
        };
        let mut password = password;
        let mut user = user;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("'{url}': query parameter '{pair}' has no '='"))?;
            let v = decode(v)?;
            match k {
                "host" => host = v,
                "port" => {
                    port = "";
                    port_num = v
                        .parse()
                        .map_err(|_| format!("'{url}': port '{v}' is not a number"))?
                }
                "user" => user = v,
                "password" => password = Some(v),
                "sslmode" => ssl.mode = SslMode::parse(&v).map_err(|e| format!("'{url}': {e}"))?,
                "sslrootcert" if v == "system" => {
                    return Err(format!(
                        "'{url}': sslrootcert=system is not supported; name a CA file"
                    ))
                }
                "sslrootcert" => ssl.rootcert = Some(v.into()),
                "sslcert" => ssl.cert = Some(v.into()),
                "sslkey" => ssl.key = Some(v.into()),
                "sslsni" => ssl.sni = v != "0",
                "gssencmode" if v == "require" => {
                    return Err(format!(
                    "'{url}': gssencmode=require is not supported (GSSAPI encryption); use sslmode"
                ))
                }
                "gssencmode" => {}
                k if IGNORED.contains(&k) => {}
                k if UNSUPPORTED.contains(&k) => {
                    return Err(format!(
                        "'{url}': the libpq parameter {k} is not supported by shardproxy"
                    ))
                }
                _ => {
                    params.insert(k.to_string(), v);
                }
            }
        }
        let _ = port;
        if host.is_empty() {
            host = "localhost".into();
        }
        let database = if database.is_empty() {
            user.clone()
        } else {
            database
        };
        Ok(BackendAddr {
            host,
            port: port_num,
            user,
            password,
            database,
            params,
            ssl,
        })
    }

    /// True when `host` names a Unix socket directory.
    pub fn is_unix(&self) -> bool {
        self.host.starts_with('/')
    }

    /// Whether connections to this address use TLS when the server offers it
    /// (never over a Unix socket, where libpq ignores sslmode too).
    pub fn tries_tls(&self) -> bool {
        self.ssl.mode != SslMode::Disable && !self.is_unix()
    }

    /// `host:port` (or the socket path) for logs and the admin console.
    pub fn display(&self) -> String {
        if self.is_unix() {
            format!("{}/.s.PGSQL.{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-escape in '{s}'"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{s}' is not UTF-8 after decoding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_url() {
        let a =
            BackendAddr::parse("postgres://u:p%40ss@127.0.0.1:5433/db?application_name=x").unwrap();
        assert_eq!(a.user, "u");
        assert_eq!(a.password.as_deref(), Some("p@ss"));
        assert_eq!(a.host, "127.0.0.1");
        assert_eq!(a.port, 5433);
        assert_eq!(a.database, "db");
        assert_eq!(a.params.get("application_name").unwrap(), "x");
        assert_eq!(a.ssl.mode, SslMode::Prefer, "libpq's default");
        assert!(a.tries_tls());
    }

    #[test]
    fn parses_tls_parameters() {
        let a = BackendAddr::parse(
            "postgres://u@db.example:5432/app?sslmode=verify-full&sslrootcert=/etc/ca.crt&sslcert=/c.crt&sslkey=/c.key&connect_timeout=3&sslsni=0",
        )
        .unwrap();
        assert_eq!(a.ssl.mode, SslMode::VerifyFull);
        assert_eq!(
            a.ssl.rootcert.as_deref(),
            Some(std::path::Path::new("/etc/ca.crt"))
        );
        assert_eq!(a.ssl.cert.as_deref(), Some(std::path::Path::new("/c.crt")));
        assert_eq!(a.ssl.key.as_deref(), Some(std::path::Path::new("/c.key")));
        assert!(!a.ssl.sni);
        assert!(
            a.params.is_empty(),
            "TLS and ignored parameters are not startup parameters"
        );
        let e = BackendAddr::parse("postgres://h/db?sslmode=allow").unwrap_err();
        assert!(e.contains("prefer"), "{e}");
        let e = BackendAddr::parse("postgres://h/db?sslcrl=/x").unwrap_err();
        assert!(e.contains("sslcrl"), "{e}");
        assert!(BackendAddr::parse("postgres://h/db?sslmode=disable")
            .map(|a| !a.tries_tls())
            .unwrap());
    }

    #[test]
    fn parses_unix_socket_and_defaults() {
        let a = BackendAddr::parse("postgres://postgres@%2Ftmp:5544/app").unwrap();
        assert!(a.is_unix());
        assert_eq!(a.port, 5544);
        let b = BackendAddr::parse("postgresql://me@/?host=/run/pg").unwrap();
        assert_eq!(b.host, "/run/pg");
        assert_eq!(b.database, "me");
        assert!(BackendAddr::parse("mysql://x").is_err());
        assert!(!a.tries_tls(), "sslmode is ignored on a Unix socket");
        assert!(BackendAddr::parse("postgres://h:notaport/db").is_err());
    }
}
