//! Where a statement goes. Until the shard map and planner are wired in,
//! statements go to the shard a hint names (`/* shard=NAME */` in the SQL, or
//! `SET shardproxy.shard = 'NAME'`), the shard the transaction is pinned
//! to, or the first shard.

use super::Session;
use crate::data::codec::error::sqlstate;
use crate::data::codec::SqlError;

/// The value of `name=` in a leading or embedded `/* name=value */` comment.
pub fn comment_hint<'a>(sql: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = sql;
    while let Some(start) = rest.find("/*") {
        let after = &rest[start + 2..];
        let end = after.find("*/")?;
        let body = after[..end].trim();
        for part in body.split([',', ' ']) {
            if let Some((k, v)) = part.split_once('=') {
                if k.trim().eq_ignore_ascii_case(name) {
                    return Some(v.trim().trim_matches(['\'', '"']));
                }
            }
        }
        rest = &after[end + 2..];
    }
    None
}

impl Session {
    /// The shard for a statement with text `sql`.
    pub(super) fn route_sql(&self, sql: &str) -> Result<usize, SqlError> {
        if let Some(name) = comment_hint(sql, "shard") {
            return self.shard_by_name(name);
        }
        Ok(self.default_shard())
    }

    /// The shard when nothing in the statement says otherwise.
    pub(super) fn default_shard(&self) -> usize {
        if self.lease.is_some() {
            self.lease_shard
        } else {
            self.hint_shard.unwrap_or(0)
        }
    }

    pub(super) fn shard_by_name(&self, name: &str) -> Result<usize, SqlError> {
        self.rt
            .pools
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| {
                SqlError::new(
                    sqlstate::INVALID_TEXT,
                    format!("routing hint names unknown shard \"{name}\""),
                )
                .with_hint(format!(
                    "Known shards: {}.",
                    self.rt
                        .pools
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_comment_hints() {
        assert_eq!(comment_hint("/* shard=s1 */ select 1", "shard"), Some("s1"));
        assert_eq!(
            comment_hint("select 1 /* a=b, shard_key=42 */", "shard_key"),
            Some("42")
        );
        assert_eq!(comment_hint("select 1 /* shard = 's2' */", "shard"), None);
        assert_eq!(
            comment_hint("select 1 /* unterminated shard=s1", "shard"),
            None
        );
        assert_eq!(comment_hint("select '/*' ", "shard"), None);
    }
}
