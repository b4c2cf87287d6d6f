//! Where and as whom to connect to a shard, parsed from its `postgres://` URL.

use std::collections::BTreeMap;

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
                "sslmode" | "connect_timeout" => {}
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
        })
    }

    /// True when `host` names a Unix socket directory.
    pub fn is_unix(&self) -> bool {
        self.host.starts_with('/')
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
        assert!(BackendAddr::parse("postgres://h:notaport/db").is_err());
    }
}
