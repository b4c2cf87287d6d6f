//! Session settings (`SET`) under transaction pooling.
//!
//! A client's settings are its startup parameters plus whatever it SET. After
//! a transaction that may have changed them, the proxy reads the backend's
//! session-level settings back (`pg_settings` where `source = 'session'`),
//! which is exact whatever happened (rollback, SET LOCAL, RESET, DISCARD).
//! Each backend remembers a fingerprint of what was applied to it; when a
//! client gets a backend with another fingerprint, the proxy replays the
//! client's settings first (`RESET ALL` + `set_config`). Clients with the same
//! settings (the common case) share backends without any extra round trip.

use crate::data::pool::Backend;
use std::hash::{Hash, Hasher};

/// A client's session settings, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    values: Vec<(String, String)>,
    fingerprint: u64,
}

impl Settings {
    /// Settings from the startup packet's parameters.
    pub fn from_startup(params: &[(String, String)]) -> Settings {
        let mut s = Settings::default();
        s.replace(params.to_vec());
        s
    }

    fn replace(&mut self, mut values: Vec<(String, String)>) {
        values.sort();
        values.dedup_by(|a, b| a.0.eq_ignore_ascii_case(&b.0));
        let mut h = std::collections::hash_map::DefaultHasher::new();
        values.hash(&mut h);
        self.fingerprint = if values.is_empty() { 0 } else { h.finish() | 1 };
        self.values = values;
    }

    /// 0 for "no settings", which is what a fresh backend has.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    pub fn values(&self) -> &[(String, String)] {
        &self.values
    }

    /// The SQL that turns any backend's session into this one.
    pub fn replay_sql(&self) -> String {
        let mut sql = String::from("RESET ALL");
        if !self.values.is_empty() {
            sql.push_str("; SELECT ");
            for (i, (k, v)) in self.values.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str("pg_catalog.set_config(");
                sql.push_str(&dollar_quote(k));
                sql.push_str(", ");
                sql.push_str(&dollar_quote(v));
                sql.push_str(", false)");
            }
        }
        sql
    }

    /// Makes `backend`'s session match these settings, if it does not already.
    pub async fn apply_to(
        &self,
        backend: &mut Backend,
    ) -> std::io::Result<Result<(), (String, String)>> {
        if backend.settings_fingerprint == self.fingerprint {
            return Ok(Ok(()));
        }
        let r = backend.execute_silently(&self.replay_sql()).await?;
        if r.is_ok() {
            backend.settings_fingerprint = self.fingerprint;
        }
        Ok(r)
    }

    /// Reads back the backend's session settings after statements that may
    /// have changed them; the backend's fingerprint then matches this client.
    pub async fn capture_from(&mut self, backend: &mut Backend) -> std::io::Result<()> {
        let rows = backend
            .query_rows("SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session' ORDER BY 1")
            .await?;
        self.replace(
            rows.into_iter()
                .filter_map(|mut r| {
                    let v = r.pop()??;
                    let k = r.pop()??;
                    Some((k, v))
                })
                .collect(),
        );
        backend.settings_fingerprint = self.fingerprint;
        Ok(())
    }
}

/// Quotes a value so no escape processing applies (whatever
/// standard_conforming_strings is): `$sp$...$sp$`, with a longer tag if needed.
fn dollar_quote(v: &str) -> String {
    let mut tag = String::from("$sp$");
    while v.contains(&tag) {
        tag.insert(tag.len() - 1, 'x');
    }
    format!("{tag}{v}{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_sql_quotes_safely() {
        let s = Settings::from_startup(&[
            ("search_path".into(), "\"$user\", public".into()),
            ("application_name".into(), "a$sp$b'c".into()),
        ]);
        let sql = s.replay_sql();
        assert!(sql.starts_with("RESET ALL; SELECT pg_catalog.set_config($sp$application_name$sp$, $spx$a$sp$b'c$spx$, false)"), "{sql}");
        assert_ne!(s.fingerprint(), 0);
        assert_eq!(Settings::default().fingerprint(), 0);
        assert_eq!(Settings::default().replay_sql(), "RESET ALL");
    }
}
