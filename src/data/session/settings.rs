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

/// True when running `sql` may change session settings or server-side
/// prepared statements: some statement in it starts with SET, RESET, DISCARD
/// or DEALLOCATE, or it calls set_config. A cheap check that errs on the side
/// of checking (a `;` inside a string literal only causes an extra read-back).
pub fn may_change_settings(sql: &str) -> bool {
    if contains_ignore_case(sql, "set_config") {
        return true;
    }
    sql.split(';').any(|stmt| {
        let first = skip_space_and_comments(stmt).as_bytes();
        let len = first.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        let word = &first[..len];
        [&b"set"[..], b"reset", b"discard", b"deallocate"]
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w))
    })
}

/// Case-insensitive substring test for a needle with an underscore:
/// memchr jumps between underscores, so a text without one costs one scan.
fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let Some(at) = memchr::memchr(b'_', n) else {
        return h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    };
    memchr::memchr_iter(b'_', h).any(|u| {
        u >= at
            && h.get(u - at..u - at + n.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(n))
    })
}

fn skip_space_and_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map(|x| x.1).unwrap_or("");
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map(|x| x.1).unwrap_or("");
        } else {
            return s;
        }
    }
}

/// True when `sql` may drop the backend's prepared statements.
pub fn may_drop_statements(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.contains("discard") || lower.contains("deallocate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_set_words_only() {
        assert!(may_change_settings("SET search_path = x"));
        assert!(may_change_settings("begin; reset all"));
        assert!(may_change_settings("DISCARD ALL"));
        assert!(!may_change_settings("select offset_x from settings"));
        assert!(!may_change_settings("SELECT * FROM t WHERE id = 1"));
        assert!(!may_change_settings("update t set a = 1"));
        assert!(may_change_settings("/* hint */ -- c\n  set x = 1"));
        assert!(may_change_settings(
            "select pg_catalog.SET_CONFIG('a', 'b', false)"
        ));
        assert!(may_change_settings("select set_config('a', 'b', false)"));
        assert!(may_change_settings(
            "select x_y, Set_Config('a', 'b', true)"
        ));
        assert!(!may_change_settings("select set_conf, _config from t_u"));
        assert!(!may_change_settings("select _config"));
    }

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
