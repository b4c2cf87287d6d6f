//! Plan-cache keys for statements that differ only in their literals.
//!
//! `SELECT … WHERE aid = 41` and `… aid = 42` have the same plan shape: the
//! key is the literal. Parsing every such text (about 10 µs with sqlparser)
//! would put a full parse on the path of every simple-protocol query, so a
//! single DML statement's numeric and string literals are replaced by
//! parameters numbered `$1..$n` (the text must have none of its own), the
//! resulting template is planned once and cached, and the literals are handed
//! to `resolve` as text-format Bind values. A key that was a literal is then
//! routed exactly as a parameter holding the same text would be.
//!
//! LIMIT/OFFSET counts stay literal and texts with ORDER BY or GROUP BY are
//! left alone, so a merge never sees a parameter where it needs a number.
//! Only plain SELECT/UPDATE/DELETE texts without comments (routing hints live
//! there), `$`, `E''`/`U&''`/`B''`/`X''` strings, backslashes in string
//! literals, typed literals (`DATE '…'`, `INTERVAL '…'`) or `set_config`
//! calls are normalized;
//! anything else is planned as written. Hand-written: one pass over bytes, no crate offers this for
//! Postgres syntax without a full parse.

use std::borrow::Cow;

/// A normalized statement: the template text and its literals in order
/// (string literals unescaped; borrowed from the text unless they had a
/// doubled quote to undo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized<'a> {
    pub template: String,
    pub literals: Literals<'a>,
}

/// A normalized text's literals, inline up to four (an OLTP statement's
/// keys and values): no allocation beyond the template.
pub type Literals<'a> = smallvec::SmallVec<[Cow<'a, str>; 4]>;

/// Keywords after which a string literal is a typed literal (`DATE '…'`):
/// replacing it by a parameter would not parse.
const TYPED: &[&str] = &[
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "interval",
    "bit",
    "varbit",
    "json",
    "jsonb",
    "uuid",
    "inet",
    "cidr",
    "numeric",
];

/// Bytes that go on a word (identifier or keyword): ASCII letters, digits,
/// `_` and every byte of a multi-byte character. A table, as the word loop
/// runs over most bytes of every simple-protocol text.
const WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
        c += 1;
    }
    t
};

/// Normalizes `sql`, or None when it must be planned as written.
///
/// Runs on every simple-protocol statement, so it makes one pass, copies the
/// text between literals in runs and allocates only the template.
pub fn normalize(sql: &str) -> Option<Normalized<'_>> {
    let mut template = String::with_capacity(sql.len() + 8);
    let literals = scan(sql, &mut template)?;
    Some(Normalized { template, literals })
}

/// The literals of `sql` when it normalizes to exactly `template` (a
/// template [`normalize`] made earlier), else None. Compares as it goes
/// instead of building the text: a session repeating one statement shape
/// (the OLTP case) pays for neither the template nor its cache lookup.
pub fn literals_if_template<'a>(sql: &'a str, template: &str) -> Option<Literals<'a>> {
    let mut m = Matcher {
        rest: template.as_bytes(),
    };
    let literals = scan(sql, &mut m)?;
    m.rest.is_empty().then_some(literals)
}

/// Where [`scan`] puts the template: built ([`String`]) or compared with a
/// known one ([`Matcher`]). Returning false stops the scan.
trait TemplateSink {
    fn text(&mut self, s: &str) -> bool;

    /// `$n`, written by hand: `write!` costs more than the rest of a short
    /// text. The first nine from a table.
    fn param(&mut self, n: usize) -> bool {
        const SMALL: [&str; 10] = ["$0", "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9"];
        if let Some(s) = SMALL.get(n) {
            return self.text(s);
        }
        let mut buf = [0u8; 21];
        let mut i = buf.len();
        let mut n = n;
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        i -= 1;
        buf[i] = b'$';
        // ASCII by construction.
        self.text(std::str::from_utf8(&buf[i..]).unwrap_or_default())
    }
}

impl TemplateSink for String {
    fn text(&mut self, s: &str) -> bool {
        self.push_str(s);
        true
    }
}

/// Checks the scanned pieces against a template, consuming it.
struct Matcher<'t> {
    rest: &'t [u8],
}

impl TemplateSink for Matcher<'_> {
    fn text(&mut self, s: &str) -> bool {
        self.rest
            .strip_prefix(s.as_bytes())
            .map(|r| self.rest = r)
            .is_some()
    }
}

/// One pass over `sql`: the literals, with the template's pieces handed to
/// `sink` in order, or None when the text must be planned as written (or
/// the sink stopped the scan).
fn scan<'a, S: TemplateSink>(sql: &'a str, out: &mut S) -> Option<Literals<'a>> {
    let b = sql.as_bytes();
    let first = sql.trim_start().get(..6)?;
    if !(first.eq_ignore_ascii_case("select")
        || first.eq_ignore_ascii_case("update")
        || first.eq_ignore_ascii_case("delete"))
    {
        return None;
    }
    if memchr::memchr(b'$', b).is_some() {
        return None;
    }
    // `sql[..copied]` is in `out`, literals replaced.
    let mut copied = 0;
    let mut literals = Literals::new();
    let mut i = 0;
    let mut last_word: &str = "";
    let mut semicolon_seen = false;
    while i < b.len() {
        let c = b[i];
        if semicolon_seen && !c.is_ascii_whitespace() {
            return None; // several statements
        }
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => return None,
            b'/' if b.get(i + 1) == Some(&b'*') => return None,
            b';' => {
                semicolon_seen = true;
                i += 1;
            }
            b'"' => {
                i = find_quote_end(b, i, b'"')?;
                last_word = "";
            }
            b'\'' => {
                if TYPED.iter().any(|t| last_word.eq_ignore_ascii_case(t)) {
                    return None;
                }
                let end = find_quote_end(b, i, b'\'')?;
                let body = &sql[i + 1..end - 1];
                // With standard_conforming_strings off, a backslash escapes
                // the next character ('\'' is a quote, not the end), so the
                // literal and everything after it would be read differently
                // from here: leave such texts to be planned as written. With
                // it on (the default), this only skips the cache key.
                if memchr::memchr(b'\\', body.as_bytes()).is_some() {
                    return None;
                }
                literals.push(if body.contains("''") {
                    Cow::Owned(body.replace("''", "'"))
                } else {
                    Cow::Borrowed(body)
                });
                if !(out.text(&sql[copied..i]) && out.param(literals.len())) {
                    return None;
                }
                copied = end;
                last_word = "";
                i = end;
            }
            b'0'..=b'9' | b'.' if b[i..].len() > 1 || c != b'.' => {
                if c == b'.' && !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                    continue;
                }
                let end = number_end(b, i);
                if ["limit", "offset", "first", "next"]
                    .iter()
                    .any(|k| last_word.eq_ignore_ascii_case(k))
                {
                    last_word = "";
                    i = end;
                    continue;
                }
                // A leading minus belongs to the literal after an operator,
                // '(' or a keyword (`BY -1`), not after an operand (`a - 1`).
                let negative = i > copied && b[i - 1] == b'-' && {
                    let before = sql[..i - 1].trim_end();
                    before.is_empty()
                        || before.ends_with(['=', '<', '>', '(', ',', '+', '-', '*', '/'])
                        || ends_with_keyword(before)
                };
                let start = if negative { i - 1 } else { i };
                literals.push(Cow::Borrowed(&sql[start..end]));
                if !(out.text(&sql[copied..start]) && out.param(literals.len())) {
                    return None;
                }
                copied = end;
                last_word = "";
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < b.len() && WORD[b[i] as usize] {
                    i += 1;
                }
                let word = &sql[start..i];
                // E'', U&'', B'', X'' strings: leave the whole text alone.
                if b.get(i) == Some(&b'\'')
                    || (b.get(i) == Some(&b'&') && b.get(i + 1) == Some(&b'\''))
                {
                    return None;
                }
                // set_config's arguments decide whether the statement is
                // refused (standard_strings.rs): a plan per exact text.
                if word.len() == 10 && word.eq_ignore_ascii_case("set_config") {
                    return None;
                }
                // Ordinals (ORDER BY 1) and the merge's inputs stay as written.
                if word.eq_ignore_ascii_case("by")
                    && (last_word.eq_ignore_ascii_case("order")
                        || last_word.eq_ignore_ascii_case("group"))
                {
                    return None;
                }
                last_word = word;
            }
            _ => {
                if !c.is_ascii_whitespace() {
                    last_word = "";
                }
                i += 1;
            }
        }
    }
    if literals.is_empty() {
        return None;
    }
    out.text(&sql[copied..]).then_some(literals)
}

/// True when `s` ends with a keyword after which `-5` is a literal (`BY -1`).
fn ends_with_keyword(s: &str) -> bool {
    let start = s
        .bytes()
        .rposition(|c| !c.is_ascii_alphabetic())
        .map_or(0, |p| p + 1);
    let word = &s[start..];
    [
        "and", "or", "not", "in", "is", "by", "when", "then", "else", "between", "limit", "offset",
        "select", "where", "set", "values", "like",
    ]
    .iter()
    .any(|k| word.eq_ignore_ascii_case(k))
}

/// Index just past the closing quote of the quoted run starting at `start`.
fn find_quote_end(b: &[u8], start: usize, q: u8) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match b.get(i)? {
            &c if c == q => {
                if b.get(i + 1) == Some(&q) {
                    i += 2;
                } else {
                    return Some(i + 1);
                }
            }
            _ => i += 1,
        }
    }
}

/// Index just past a numeric literal (digits, one '.', an exponent).
fn number_end(b: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
        i += 1;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            i = j;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fragments of SQL for the property tests.
    const PIECES: &[&str] = &[
        "select ",
        "update t set a = ",
        "delete from t ",
        "where ",
        "id = ",
        "1",
        "-2",
        "42",
        "3.5e2",
        " ",
        "'x'",
        "'it''s'",
        "and ",
        "limit 5 ",
        "order by ",
        "$1",
        "-- c",
        "E'z'",
        "date '2020-01-01'",
        "'a\\b'",
        ";",
        "\"q\"\"r\"",
        "a - 1 ",
        "(",
        ")",
        ", ",
    ];

    fn n(sql: &str) -> Option<(String, Vec<String>)> {
        normalize(sql).map(|n| (n.template, n.literals.into_iter().map(Into::into).collect()))
    }

    #[test]
    fn replaces_numbers_and_strings() {
        assert_eq!(
            n("SELECT abalance FROM pgbench_accounts WHERE aid = 4711;"),
            Some((
                "SELECT abalance FROM pgbench_accounts WHERE aid = $1;".into(),
                vec!["4711".into()]
            ))
        );
        assert_eq!(
            n("select * from t where k = 'it''s' and x > -2.5e3 and y = t1.c2"),
            Some((
                "select * from t where k = $1 and x > $2 and y = t1.c2".into(),
                vec!["it's".into(), "-2.5e3".into()]
            ))
        );
        assert_eq!(
            n("update t set a = a - 1 where id = 7").unwrap().1,
            vec!["1".to_string(), "7".into()]
        );
        assert_eq!(
            n("update t set a = a - 1 where id = 7").unwrap().0,
            "update t set a = a - $1 where id = $2"
        );
        let many = (1..=12).map(|i| i.to_string()).collect::<Vec<_>>();
        let (template, lits) = n(&format!(
            "select * from t where id in ({})",
            many.join(", ")
        ))
        .unwrap();
        assert!(template.ends_with("$9, $10, $11, $12)"), "{template}");
        assert_eq!(lits, many);
        assert_eq!(
            n("delete from t where id in (1, -2)").unwrap().1,
            vec!["1".to_string(), "-2".into()]
        );
    }

    #[test]
    fn leaves_alone_what_it_cannot_normalize_safely() {
        assert_eq!(n("SELECT 1; SELECT 2"), None);
        assert_eq!(n("/* shard_key=1 */ SELECT 1"), None);
        assert_eq!(n("SELECT 1 -- c"), None);
        assert_eq!(n("SELECT * FROM t WHERE a = $1 AND b = 2"), None);
        assert_eq!(n("SELECT E'a\\n'"), None);
        assert_eq!(n("SELECT x'1f'"), None);
        assert_eq!(n("SELECT DATE '2020-01-01'"), None);
        assert_eq!(n("INSERT INTO t VALUES (1)"), None);
        assert_eq!(n("SELECT now()"), None);
        assert_eq!(n("SELECT 'unterminated"), None);
        // Read as two statements with standard_conforming_strings off.
        assert_eq!(n("select '\\'' ; set search_path = x -- '"), None);
        assert_eq!(n("select * from t where k = 'a\\b'"), None);
        assert_eq!(n("SELECT a FROM t WHERE id = 1 ORDER BY 1"), None);
        assert_eq!(
            n("SELECT a FROM t WHERE id = 1 LIMIT 10 OFFSET 5")
                .unwrap()
                .0,
            "SELECT a FROM t WHERE id = $1 LIMIT 10 OFFSET 5"
        );
        assert_eq!(
            n("SELECT \"weird\"\"name\" FROM t WHERE id=1").unwrap().0,
            "SELECT \"weird\"\"name\" FROM t WHERE id=$1"
        );
    }

    #[test]
    fn word_bytes_are_letters_digits_underscore_and_non_ascii() {
        for c in 0..=255u8 {
            let word = c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
            assert_eq!(WORD[c as usize], word, "byte {c}");
        }
        let lits = n("select * from t where k = 1 and t_9.x = 2 and ÿ12 = 3").unwrap();
        assert_eq!(
            lits.0,
            "select * from t where k = $1 and t_9.x = $2 and ÿ12 = $3"
        );
        let many = (1..=11)
            .map(|i| format!("c{i} = {i}"))
            .collect::<Vec<_>>()
            .join(" and ");
        let t = n(&format!("select * from t where {many}")).unwrap().0;
        assert!(t.ends_with("c9 = $9 and c10 = $10 and c11 = $11"), "{t}");
    }

    #[test]
    fn matches_only_its_own_template() {
        let t = normalize("SELECT v FROM t WHERE id = 7 AND k = 'x'").unwrap();
        let lits = |sql| literals_if_template(sql, &t.template).map(|l| l.to_vec());
        assert_eq!(
            lits("SELECT v FROM t WHERE id = 12345 AND k = 'it''s'"),
            Some(vec!["12345".into(), Cow::Owned("it's".into())])
        );
        assert_eq!(lits("SELECT v FROM t WHERE id = 7 AND k = 'x' "), None);
        assert_eq!(lits("SELECT v FROM t WHERE id = 7"), None);
        assert_eq!(lits("SELECT v FROM u WHERE id = 7 AND k = 'x'"), None);
        assert_eq!(lits("SELECT v FROM t WHERE id = 7 AND k = 'x' -- c"), None);
        assert_eq!(lits("SELECT v FROM t WHERE id = $1 AND k = 'x'"), None);
    }

    proptest::proptest! {
        /// Matching against a template agrees with normalizing and
        /// comparing: same answer, same literals, for texts built from
        /// pieces that exercise every branch of the scan.
        #[test]
        fn matching_agrees_with_normalize(
            head in proptest::sample::select(&PIECES[..3]),
            pieces in proptest::collection::vec(
                (proptest::sample::select(PIECES), proptest::sample::select(PIECES), proptest::bool::weighted(0.2)),
                0..8,
            ),
        ) {
            // `b` is `a` with about one piece in five swapped: often the
            // same shape with other literals, sometimes another shape.
            let a = pieces.iter().fold(head.to_string(), |t, p| t + p.0);
            let b = pieces.iter().fold(head.to_string(), |t, p| t + if p.2 { p.1 } else { p.0 });
            let Some(template) = normalize(&a).map(|n| n.template) else {
                return Ok(());
            };
            let matched = literals_if_template(&b, &template);
            let expected = normalize(&b).filter(|nb| nb.template == template).map(|nb| nb.literals);
            proptest::prop_assert_eq!(matched, expected, "{} / {}", a, b);
        }

        /// Routing a normalized text with its literals as parameters gives
        /// the same shards as planning the text as written.
        #[test]
        fn normalized_routes_like_the_original(key in proptest::num::i64::ANY, name in "[a-z' ]{0,12}") {
            use crate::config::Config;
            use crate::data::planner::{resolve_stmt, Params, Planner};
            use crate::data::router::ShardMap;
            let cfg = Config::parse(
                "[[shards]]\nname = \"a\"\nurl = \"postgres://x@h/db\"\n[[shards]]\nname = \"b\"\nurl = \"postgres://x@h/db\"\n[[shards]]\nname = \"c\"\nurl = \"postgres://x@h/db\"\n[[tables]]\nname = \"t\"\nshard_key = \"id\"\n[[tables]]\nname = \"u\"\nshard_key = \"name\"\nkey_type = \"text\"\ncolocation = \"names\"\n",
                "t.toml",
            ).unwrap();
            let map = ShardMap::from_config(&cfg).unwrap();
            let planner = Planner::new(std::sync::Arc::new(map.clone()));
            let quoted = name.replace('\'', "''");
            for sql in [
                format!("SELECT v FROM t WHERE id = {key}"),
                format!("UPDATE t SET v = 1 WHERE id = {key}"),
                format!("SELECT v FROM u WHERE name = '{quoted}' AND v > 3"),
            ] {
                let (plan, lits) = planner.plan_literals(&sql);
                let params = Params { values: lits.iter().map(|l| Some(l.as_bytes())).collect(), formats: smallvec::smallvec![] };
                let normalized = resolve_stmt(&plan.stmts[0], &params, &map);
                let original = resolve_stmt(&planner.plan(&sql).stmts[0], &Params::none(), &map);
                proptest::prop_assert_eq!(normalized, original, "{}", sql);
            }
        }
    }
}
