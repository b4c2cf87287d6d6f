//! Does a text have the shape of a template normalized before?
//!
//! An OLTP client on the simple protocol sends one statement shape over and
//! over with new literals. Re-running the normalizing scan on each text
//! (`normalize.rs`) costs about 15 instructions a byte; this compares the
//! text with the template's fixed pieces (a memcmp each) and reads only the
//! literals between them, a tenth of the work.
//!
//! Sound by construction: the pieces between literals are the very bytes
//! the scan accepted before, and the scan's state when it reaches a literal
//! (its last word) comes from the piece before it alone, as each literal
//! resets it. What remains are the scan's looks across a literal's edges:
//! from the piece's last token into the literal, from the literal into the
//! next piece, and back from a literal's sign (the negative-number rule,
//! which may see the previous literal through a blank piece). [`literal_at`]
//! repeats each such rule on the text itself, and where one is not worth
//! repeating exactly (a '.' number after a digit: `10.5` or `t1.5`), it
//! answers no. A no costs only speed: the session then normalizes the text
//! and finds its plan in the shared cache.

use std::borrow::Cow;

use super::normalize::{
    find_quote_end, minus_joins_number, number_end, unquote, Literals, Slot, WordBefore, WORD,
};

/// The literals of `sql` when it normalizes to `template` (made by
/// [`super::normalize::normalize`] with these `slots`), or None when it
/// does not, or when telling would take the full scan.
pub fn literals_if_template<'a>(
    sql: &'a str,
    template: &str,
    slots: &[Slot],
) -> Option<Literals<'a>> {
    let b = sql.as_bytes();
    let t = template.as_bytes();
    // `at` in the text, `from` in the template (past the last `$n`).
    let mut at = 0;
    let mut from = 0;
    let mut literals = Literals::new();
    for slot in slots {
        let piece = t.get(from..slot.text_end as usize)?;
        if !b.get(at..)?.starts_with(piece) {
            return None;
        }
        at += piece.len();
        let (literal, end) = literal_at(sql, at, slot.after)?;
        literals.push(literal);
        at = end;
        from = slot.param_end as usize;
    }
    if literals.is_empty() {
        return None;
    }
    (b.get(at..)? == t.get(from..)?).then_some(literals)
}

/// The literal the scan would read at `at` (the end of a template piece),
/// with the scan's last word there, and the index past it.
fn literal_at(sql: &str, at: usize, after: WordBefore) -> Option<(Cow<'_, str>, usize)> {
    let b = sql.as_bytes();
    // Every template starts with its statement's verb, so a literal never
    // starts the text.
    let prev = *b.get(at.checked_sub(1)?)?;
    let number_at = |i: usize| match b.get(i) {
        Some(c) if c.is_ascii_digit() => true,
        Some(b'.') => b.get(i + 1).is_some_and(u8::is_ascii_digit),
        _ => false,
    };
    match *b.get(at)? {
        b'\'' => {
            // After a type name: a typed literal; right after a word: an
            // E''/X''/U&'' string (or, rarely, a kept number before it).
            if after == WordBefore::Type
                || WORD[prev as usize]
                || (prev == b'&' && at >= 2 && WORD[b[at - 2] as usize])
            {
                return None;
            }
            let end = find_quote_end(b, at, b'\'')?;
            let body = sql.get(at + 1..end - 1)?;
            // The scan refuses any `$` in the text and backslashes in
            // string bodies: the pieces have no `$`, so only the body can
            // hold either.
            if memchr::memchr2(b'$', b'\\', body.as_bytes()).is_some() {
                return None;
            }
            Some((unquote(body), end))
        }
        b'-' => {
            // The sign joins the number only where the scan's rule says
            // so; after a '-' it would start a comment; after `1e` it is
            // the kept number's exponent.
            if prev == b'-'
                || !number_at(at + 1)
                || exponent_before(b, at + 1)
                || !minus_joins_number(sql.get(..at)?)
            {
                return None;
            }
            number_from(sql, at, at + 1)
        }
        c => {
            if !number_at(at) || after == WordBefore::Count {
                return None;
            }
            // A digit right after a word or number byte, or any number
            // right after a '.', would continue the token before it; a '.'
            // after a digit may too (`10.5`, not `t1.5`: not told apart).
            let continues = prev == b'.'
                || (c.is_ascii_digit() && WORD[prev as usize])
                || (c == b'.' && prev.is_ascii_digit());
            // After a '-' that joins it, the literal would start at the sign.
            let signed = prev == b'-' && minus_joins_number(sql.get(..at - 1)?);
            if continues || exponent_before(b, at) || signed {
                return None;
            }
            number_from(sql, at, at)
        }
    }
}

/// True when the digits at `at` could be the exponent of a number before
/// them (`1e+5`, `1e-5`). Defensive: the scan leaves a number run on by a
/// letter as written, so a piece ends this way only after a word (`t1e-5`),
/// where declining costs nothing that matters.
fn exponent_before(b: &[u8], at: usize) -> bool {
    at >= 3
        && matches!(b[at - 1], b'+' | b'-')
        && matches!(b[at - 2], b'e' | b'E')
        && (b[at - 3].is_ascii_digit() || b[at - 3] == b'.')
}

/// The number literal from `start` (its sign, if any) whose digits begin at
/// `digits`, and the index past it; None when a letter, digit or `_` runs on
/// after it (the scan leaves such texts as written).
fn number_from(sql: &str, start: usize, digits: usize) -> Option<(Cow<'_, str>, usize)> {
    let end = number_end(sql.as_bytes(), digits);
    if sql.as_bytes().get(end).is_some_and(|&n| WORD[n as usize]) {
        return None;
    }
    Some((Cow::Borrowed(sql.get(start..end)?), end))
}

#[cfg(test)]
mod tests {
    use super::super::normalize::normalize;
    use super::super::properties::check_template_match;
    use super::*;

    fn matched(template_of: &str, sql: &str) -> Option<Vec<String>> {
        let n = normalize(template_of).expect("normalizable");
        literals_if_template(sql, &n.template, &n.slots)
            .map(|l| l.into_iter().map(Cow::into_owned).collect())
    }

    #[test]
    fn matches_only_its_own_template() {
        let t = "SELECT v FROM t WHERE id = 7 AND k = 'x'";
        assert_eq!(
            matched(t, "SELECT v FROM t WHERE id = 12345 AND k = 'it''s'"),
            Some(vec!["12345".into(), "it's".into()])
        );
        assert_eq!(
            matched(t, "SELECT v FROM t WHERE id = -5 AND k = 7.5e3"),
            Some(vec!["-5".into(), "7.5e3".into()])
        );
        for other in [
            "SELECT v FROM t WHERE id = 7 AND k = 'x' ",
            "SELECT v FROM t WHERE id = 7",
            "SELECT v FROM u WHERE id = 7 AND k = 'x'",
            "SELECT v FROM t WHERE id = 7 AND k = 'x' -- c",
            "SELECT v FROM t WHERE id = $1 AND k = 'x'",
            "SELECT v FROM t WHERE id = 7 AND k = 'x$'",
            "SELECT v FROM t WHERE id = 7 AND k = 'a\\b'",
            "SELECT v FROM t WHERE id = 7 AND k = 'x",
        ] {
            assert_eq!(matched(t, other), None, "{other}");
        }
    }

    #[test]
    fn repeats_the_scans_rules_at_a_literals_edges() {
        // The sign joins after an operator, not after an operand.
        assert_eq!(
            matched("select a - 1 from t", "select a - -1 from t"),
            Some(vec!["-1".into()])
        );
        assert_eq!(
            matched(
                "select a from t where b = 1",
                "select a from t where b = -1"
            ),
            Some(vec!["-1".into()])
        );
        // After LIMIT a number stays literal; a string is still a literal.
        assert_eq!(
            matched("select a from t limit -5", "select a from t limit 5"),
            None
        );
        assert_eq!(
            matched("select a from t limit -5", "select a from t limit 'x'"),
            Some(vec!["x".into()])
        );
        // After a type name a string is a typed literal.
        assert_eq!(matched("select date 5", "select date '2020-01-01'"), None);
        // A digit continues the word before it; '.5' after a name is a number.
        assert_eq!(
            matched("select t.5 from t", "select t.6 from t"),
            Some(vec![".6".into()])
        );
        assert_eq!(matched("select t.'x' from t", "select t.5 from t"), None);
        // `--` after a '-' is a comment.
        assert_eq!(matched("select 5 -3 from t", "select 5 --3 from t"), None);
        // A word run on after a number leaves the text as written.
        assert_eq!(matched("select 'x'abc from t", "select 5abc from t"), None);
        // A word right before a quote makes an E'' string.
        assert_eq!(matched("select x&5 from t", "select x&'b' from t"), None);
    }

    /// Fragments of SQL for the property tests: each branch of the scan and
    /// each edge rule of the match.
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
        "limit ",
        "limit 5 ",
        "order by ",
        "$1",
        "-- c",
        "E'z'",
        "date ",
        "'2020-01-01'",
        "'a\\b'",
        "'a$b'",
        ";",
        "\"q\"\"r\"",
        "a - 1 ",
        "(",
        ")",
        ", ",
        "-",
        ".",
        ".5",
        "&",
        "t1",
        "e",
        "1e",
        "+",
        "x",
        "10",
        "ÿ",
    ];

    /// The pieces of ordinary OLTP texts, where the match must find every
    /// text the scan would (numbers apart: `1.5` right after `3` is one of
    /// the cases it leaves to the scan).
    const PLAIN: &[&str] = &[
        "select ",
        "update t set a = ",
        "delete from t ",
        "where ",
        "id = ",
        "1 ",
        "-2 ",
        "42 ",
        "3.5e2 ",
        " ",
        "'x'",
        "'it''s'",
        "and ",
        "limit 5 ",
        "a - 1 ",
        "(",
        ")",
        ", ",
        "= ",
        "in ",
        "b.c ",
    ];

    /// Text `a` and text `b`: `a` with about one piece in five swapped.
    fn pair(
        pieces: &'static [&'static str],
    ) -> impl proptest::strategy::Strategy<Value = (String, String)> {
        use proptest::prelude::*;
        (
            proptest::sample::select(&pieces[..3]),
            proptest::collection::vec(
                (
                    proptest::sample::select(pieces),
                    proptest::sample::select(pieces),
                    proptest::bool::weighted(0.2),
                ),
                0..10,
            ),
        )
            .prop_map(|(head, pieces)| {
                let a = pieces.iter().fold(head.to_string(), |t, p| t + p.0);
                let b = pieces
                    .iter()
                    .fold(head.to_string(), |t, p| t + if p.2 { p.1 } else { p.0 });
                (a, b)
            })
    }

    /// Whether `b` matches `a`'s template, and whether normalizing `b`
    /// gives that template.
    fn both(a: &str, b: &str) -> Option<(bool, bool)> {
        let n = normalize(a)?;
        let expected = normalize(b).is_some_and(|nb| nb.template == n.template);
        Some((check_template_match(a, b), expected))
    }

    proptest::proptest! {
        /// Whatever the match accepts, the scan would accept with the same
        /// template and literals.
        #[test]
        fn a_match_is_what_normalizing_gives((a, b) in pair(PIECES)) {
            check_template_match(&a, &b);
        }

        /// On ordinary texts it accepts exactly what the scan would.
        #[test]
        fn plain_texts_match_exactly((a, b) in pair(PLAIN)) {
            if let Some((matched, expected)) = both(&a, &b) {
                proptest::prop_assert_eq!(matched, expected, "{} / {}", a, b);
            }
        }
    }
}
