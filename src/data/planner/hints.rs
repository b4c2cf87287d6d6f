//! Routing hints written in SQL comments: `/* shard_key=123 */` routes a
//! statement as if it named that shard key, `/* shard=name */` forces a shard.
//! The first hint comment wins; comments inside string literals don't count.
//! `/* primary */` (anywhere, beside any other hint) keeps a read off the
//! shard's replicas.

use super::lex::{Lex, Lexer};
use super::plan::Hint;

/// Finds the routing hint of a SQL text, if any.
pub fn extract_hint(sql: &str) -> Option<Hint> {
    // Fast path: most statements carry no block comment at all.
    if !sql.contains("/*") {
        return None;
    }
    Lexer::new(sql).find_map(|l| match l {
        Lex::BlockComment(c) => parse_hint(c),
        _ => None,
    })
}

/// Whether the text has a `/* primary */` comment (case-insensitive,
/// spaces allowed): its reads go to the primary, not a replica.
pub fn wants_primary(sql: &str) -> bool {
    sql.contains("/*")
        && Lexer::new(sql).any(|l| {
            matches!(l, Lex::BlockComment(c) if c.trim().eq_ignore_ascii_case("primary")
                || c.trim().eq_ignore_ascii_case("shardproxy.primary"))
        })
}

/// `shard_key=123`, `shard_key = 'abc'`, `shard=s1` (surrounding spaces and
/// quotes allowed; names are case-insensitive).
fn parse_hint(comment: &str) -> Option<Hint> {
    let (name, value) = comment.trim().split_once('=')?;
    let value = unquote(value.trim())?;
    match name.trim().to_ascii_lowercase().as_str() {
        "shard_key" | "shardproxy.shard_key" => Some(Hint::ShardKey(value.to_string())),
        "shard" | "shardproxy.shard" => Some(Hint::Shard(value.to_string())),
        _ => None,
    }
}

fn unquote(v: &str) -> Option<&str> {
    let v = match v.as_bytes() {
        [b'\'', .., b'\''] | [b'"', .., b'"'] if v.len() >= 2 => &v[1..v.len() - 1],
        _ => v,
    };
    (!v.is_empty() && !v.contains(char::is_whitespace)).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints() {
        assert_eq!(
            extract_hint("/* shard_key=123 */ SELECT * FROM t"),
            Some(Hint::ShardKey("123".into()))
        );
        assert_eq!(
            extract_hint("SELECT 1 /* shard_key = 'abc' */"),
            Some(Hint::ShardKey("abc".into()))
        );
        assert_eq!(
            extract_hint("/*shard=s1*/ UPDATE t SET x = 1"),
            Some(Hint::Shard("s1".into()))
        );
        assert_eq!(
            extract_hint("/* SHARD_KEY=7 */ /* shard=s2 */ SELECT 1"),
            Some(Hint::ShardKey("7".into()))
        );
        assert_eq!(
            extract_hint("/* app: login */ /* shard=s2 */ SELECT 1"),
            Some(Hint::Shard("s2".into()))
        );
    }

    #[test]
    fn primary_hint() {
        assert!(wants_primary("/* primary */ SELECT 1"));
        assert!(wants_primary("SELECT * FROM t WHERE id = 1 /*PRIMARY*/"));
        assert!(wants_primary("/* shard=s1 */ /* primary */ SELECT 1"));
        assert!(!wants_primary("SELECT '/* primary */'"));
        assert!(!wants_primary("SELECT 1 -- /* primary */"));
        assert!(!wants_primary("/* primary key lookup */ SELECT 1"));
        assert!(!wants_primary("SELECT 1"));
    }

    #[test]
    fn not_hints() {
        assert_eq!(extract_hint("SELECT '/* shard_key=1 */'"), None);
        assert_eq!(extract_hint("SELECT 1 -- /* shard_key=1 */"), None);
        assert_eq!(extract_hint("SELECT 1 /* shard_key= */"), None);
        assert_eq!(extract_hint("SELECT 1 /* shard_key=a b */"), None);
        assert_eq!(extract_hint("SELECT 1 /* x=1 */"), None);
        assert_eq!(extract_hint("SELECT 1"), None);
    }
}
