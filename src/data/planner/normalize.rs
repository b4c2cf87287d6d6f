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
    pub slots: Slots,
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
pub(super) const WORD: [bool; 256] = {
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
/// Runs on every simple-protocol statement whose shape the session has not
/// just seen, so it makes one pass, copies the text between literals in runs
/// and allocates only the template.
pub fn normalize(sql: &str) -> Option<Normalized<'_>> {
    let mut template = String::with_capacity(sql.len() + 8);
    let mut slots = Slots::new();
    let literals = scan(sql, &mut template, &mut slots)?;
    Some(Normalized {
        template,
        literals,
        slots,
    })
}

/// What the scan knew at a literal, for [`super::template_match`]: where the
/// template text before it lies and which word came before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Where the text before this literal ends in the template (it starts
    /// where the previous slot's `$n` ends, or at 0).
    pub text_end: u32,
    /// Where this literal's `$n` ends in the template.
    pub param_end: u32,
    /// The scan's last word when it reached the literal.
    pub after: WordBefore,
}

/// A normalized text's slots, inline up to four like its literals.
pub type Slots = smallvec::SmallVec<[Slot; 4]>;

/// The word before a literal, as far as the scan's decisions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordBefore {
    /// LIMIT, OFFSET, FIRST, NEXT: a number here stays literal.
    Count,
    /// A type name (`DATE`): a string here makes the text unnormalizable.
    Type,
    Other,
}

impl WordBefore {
    fn of(word: &str) -> WordBefore {
        if is_count_word(word) {
            WordBefore::Count
        } else if is_type_word(word) {
            WordBefore::Type
        } else {
            WordBefore::Other
        }
    }
}

fn is_count_word(word: &str) -> bool {
    ["limit", "offset", "first", "next"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

fn is_type_word(word: &str) -> bool {
    TYPED.iter().any(|t| word.eq_ignore_ascii_case(t))
}

/// Appends `$n`, written by hand: `write!` costs more than the rest of a
/// short text. The first nine from a table.
fn push_param(template: &mut String, n: usize) {
    const SMALL: [&str; 10] = ["$0", "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9"];
    if let Some(s) = SMALL.get(n) {
        template.push_str(s);
        return;
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
    template.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// The scan's output while it runs.
struct Built<'a, 's> {
    template: &'s mut String,
    slots: &'s mut Slots,
    literals: Literals<'a>,
}

impl<'a> Built<'a, '_> {
    /// Records a literal: the text since the last one, its `$n` and its slot.
    fn literal(&mut self, between: &str, literal: Cow<'a, str>, after: &str) {
        self.template.push_str(between);
        let text_end = self.template.len() as u32;
        self.literals.push(literal);
        push_param(self.template, self.literals.len());
        self.slots.push(Slot {
            text_end,
            param_end: self.template.len() as u32,
            after: WordBefore::of(after),
        });
    }
}

/// One pass over `sql`: the literals, with the template built in `template`
/// and each literal's slot in `slots`, or None when the text must be
/// planned as written.
fn scan<'a>(sql: &'a str, template: &mut String, slots: &mut Slots) -> Option<Literals<'a>> {
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
    let mut out = Built {
        template,
        slots,
        literals: Literals::new(),
    };
    // `sql[..copied]` is in the template, literals replaced. Each literal
    // resets `last_word`: `template_match.rs` relies on the scan's state at
    // a literal depending only on the text since the previous one.
    let mut copied = 0;
    let mut i = 0;
    let mut last_word: &str = "";
    // The last word as it was before the latest '-' reset it: a negative
    // number's slot records the word before its sign.
    let mut word_before_minus: &str = "";
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
                if is_type_word(last_word) {
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
                out.literal(&sql[copied..i], unquote(body), last_word);
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
                // A letter, digit or `_` right after: a Postgres 16 literal
                // (`1_000`, `0x1F`) or text the server reads otherwise.
                // Left as written, so the planner sees what the server does.
                if b.get(end).is_some_and(|&n| WORD[n as usize]) {
                    return None;
                }
                if is_count_word(last_word) {
                    last_word = "";
                    i = end;
                    continue;
                }
                // A leading minus belongs to the literal after an operator,
                // '(' or a keyword (`BY -1`), not after an operand (`a - 1`).
                let negative = i > copied && b[i - 1] == b'-' && minus_joins_number(&sql[..i - 1]);
                let (start, after) = if negative {
                    (i - 1, word_before_minus)
                } else {
                    (i, last_word)
                };
                out.literal(&sql[copied..start], Cow::Borrowed(&sql[start..end]), after);
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
                if c == b'-' {
                    word_before_minus = last_word;
                }
                if !c.is_ascii_whitespace() {
                    last_word = "";
                }
                i += 1;
            }
        }
    }
    if out.literals.is_empty() {
        return None;
    }
    out.template.push_str(&sql[copied..]);
    Some(out.literals)
}

/// A string literal's body with doubled quotes undone, borrowed when it has
/// none.
pub(super) fn unquote(body: &str) -> Cow<'_, str> {
    if body.contains("''") {
        Cow::Owned(body.replace("''", "'"))
    } else {
        Cow::Borrowed(body)
    }
}

/// True when a '-' after `before` (the text up to the sign) makes the
/// number after it negative: after nothing, an operator, '(' or ',', or a
/// keyword.
pub(super) fn minus_joins_number(before: &str) -> bool {
    let before = before.trim_end();
    before.is_empty()
        || before.ends_with(['=', '<', '>', '(', ',', '+', '-', '*', '/'])
        || ends_with_keyword(before)
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
pub(super) fn find_quote_end(b: &[u8], start: usize, q: u8) -> Option<usize> {
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
pub(super) fn number_end(b: &[u8], start: usize) -> usize {
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
        for run_on in ["1_000", "0x1F", "0b101", "5abc", "1e", "-2_0"] {
            assert_eq!(n(&format!("SELECT a FROM t WHERE id = {run_on}")), None);
        }
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

    proptest::proptest! {
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
            // Each text after another of its shape: the second goes through
            // the session memo's template match, the first through the scan.
            for (earlier, sql) in [
                ("SELECT v FROM t WHERE id = 1", format!("SELECT v FROM t WHERE id = {key}")),
                ("UPDATE t SET v = 1 WHERE id = 2", format!("UPDATE t SET v = 1 WHERE id = {key}")),
                ("SELECT v FROM u WHERE name = 'w' AND v > 3", format!("SELECT v FROM u WHERE name = '{quoted}' AND v > 3")),
            ] {
                let mut last = crate::data::planner::LastPlan::default();
                for text in [earlier, sql.as_str()] {
                    let (plan, lits) = planner.plan_literals_with(text, &mut last);
                    let params = Params { values: lits.iter().map(|l| Some(l.as_bytes())).collect(), formats: smallvec::smallvec![] };
                    let normalized = resolve_stmt(&plan.stmts[0], &params, &map);
                    let original = resolve_stmt(&planner.plan(text).stmts[0], &Params::none(), &map);
                    proptest::prop_assert_eq!(normalized, original, "{}", text);
                }
            }
        }
    }
}
