//! `SHOW CONFIG`: the running configuration flattened to `key, value` rows
//! (`proxy.listen`, `shards[0].url`, ...), without secrets.
//!
//! Flattened from the config's serde form rather than field by field, so a
//! new config key shows up without touching this file. Secrets never leave:
//! keys naming a password or secret are skipped, and passwords inside
//! `postgres://` URLs are masked. Unset optional keys are not listed.

use super::show::ResultSet;
use crate::config::Config;
use crate::data::codec::error::sqlstate;
use crate::data::codec::SqlError;
use toml::Value;

/// Top-level sections in the order the config file documents them; any
/// other section follows in name order.
const SECTION_ORDER: &[&str] = &[
    "proxy", "admin", "users", "pool", "shards", "replicas", "tables", "sharding", "lookup", "hot",
    "metrics", "merge",
];

/// What a masked password reads as.
const MASK: &str = "********";

/// The `SHOW CONFIG` rows for `config`.
pub fn show_config(config: &Config) -> Result<ResultSet, SqlError> {
    let value = Value::try_from(config).map_err(|e| {
        SqlError::new(
            sqlstate::INTERNAL_ERROR,
            format!("cannot render the configuration: {e}"),
        )
    })?;
    let mut r = ResultSet::new(&["key", "value"]);
    if let Some(src) = &config.source {
        r.push(["config_file".to_string(), src.display().to_string()]);
    }
    let mut rows = Vec::new();
    if let Value::Table(top) = &value {
        let mut sections: Vec<(&String, &Value)> = top.iter().collect();
        sections.sort_by_key(|(k, _)| {
            (
                SECTION_ORDER
                    .iter()
                    .position(|s| s == k)
                    .unwrap_or(SECTION_ORDER.len()),
                k.to_string(),
            )
        });
        for (k, v) in sections {
            if !is_secret(k) {
                flatten(k, v, &mut rows);
            }
        }
    }
    for (k, v) in rows {
        r.push([k, v]);
    }
    Ok(r)
}

/// Appends `path = value` rows for `v` and everything below it.
fn flatten(path: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Table(t) => {
            for (k, child) in t {
                if !is_secret(k) {
                    flatten(&format!("{path}.{k}"), child, out);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), child, out);
            }
        }
        Value::String(s) => out.push((path.to_string(), mask_url(s))),
        other => out.push((path.to_string(), other.to_string())),
    }
}

fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret")
}

/// `postgres://user:pw@host/db?password=x` with both passwords masked; other
/// strings unchanged. Conservative on odd URLs: everything before the last
/// `@` counts as user info.
pub fn mask_url(s: &str) -> String {
    let Some(rest) = s
        .strip_prefix("postgres://")
        .or_else(|| s.strip_prefix("postgresql://"))
    else {
        return s.to_string();
    };
    let scheme = &s[..s.len() - rest.len()];
    let (userinfo, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut out = scheme.to_string();
    if let Some(u) = userinfo {
        match u.split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push(':');
                out.push_str(MASK);
            }
            None => out.push_str(u),
        }
        out.push('@');
    }
    match after.split_once('?') {
        Some((main, query)) => {
            out.push_str(main);
            out.push('?');
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_secret(k) => format!("{k}={MASK}"),
                    _ => pair.to_string(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
        }
        None => out.push_str(after),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            mask_url("postgres://u:s3cret@127.0.0.1:5432/db"),
            "postgres://u:********@127.0.0.1:5432/db"
        );
        assert_eq!(
            mask_url("postgresql://u@h/db?application_name=x&password=s3cret"),
            "postgresql://u@h/db?application_name=x&password=********"
        );
        assert_eq!(
            mask_url("postgres://u:p@ss:w@rd@h/db"),
            "postgres://u:********@h/db"
        );
        assert_eq!(mask_url("postgres://h:5432/db"), "postgres://h:5432/db");
        assert_eq!(mask_url("127.0.0.1:6432"), "127.0.0.1:6432");
    }

    #[test]
    fn config_rows_are_flat_ordered_and_secret_free() {
        let c = Config::parse(
            r#"
[admin]
user = "boss"
password = "adminsecret"
[[users]]
name = "app"
password = "usersecret"
[[shards]]
name = "s0"
url = "postgres://postgres:urlsecret@127.0.0.1:5432/postgres?password=qsecret"
[[tables]]
name = "orders"
shard_key = "customer_id"
[[tables]]
name = "countries"
reference = true
[metrics]
listen = "127.0.0.1:9100"
"#,
            "t.toml",
        )
        .unwrap();
        let r = show_config(&c).unwrap();
        assert_eq!(r.columns, ["key", "value"]);
        let get = |k: &str| {
            r.rows
                .iter()
                .find(|row| row[0].as_deref() == Some(k))
                .and_then(|row| row[1].clone())
        };
        assert_eq!(get("proxy.listen").as_deref(), Some("127.0.0.1:6432"));
        assert_eq!(get("pool.size").as_deref(), Some("20"));
        assert_eq!(get("admin.user").as_deref(), Some("boss"));
        assert_eq!(get("users[0].name").as_deref(), Some("app"));
        assert_eq!(get("shards[0].name").as_deref(), Some("s0"));
        assert_eq!(
            get("shards[0].url").as_deref(),
            Some("postgres://postgres:********@127.0.0.1:5432/postgres?password=********")
        );
        assert_eq!(get("tables[0].shard_key").as_deref(), Some("customer_id"));
        assert_eq!(get("tables[1].reference").as_deref(), Some("true"));
        assert_eq!(get("sharding.vnodes").as_deref(), Some("256"));
        assert_eq!(get("metrics.listen").as_deref(), Some("127.0.0.1:9100"));
        assert_eq!(get("admin.password"), None);
        assert_eq!(get("users[0].password"), None);
        let all = format!("{:?}", r.rows);
        assert!(!all.contains("secret"), "{all}");
        // Sections in file order: proxy first, merge last.
        assert!(r.rows[0][0].as_deref().unwrap().starts_with("proxy."));
        assert!(r.rows.last().unwrap()[0]
            .as_deref()
            .unwrap()
            .starts_with("merge."));
    }
}
