//! A tiny lexical scan of SQL text that only knows what hides text from the
//! parser's view: string literals (standard, `E''` escapes, dollar-quoted),
//! quoted identifiers and comments (`--`, nested `/* */`).
//!
//! Hand-written because it must work on text sqlparser rejects (routing hints
//! and the unparsed fallback), and because it runs on every uncached plan: one
//! pass over bytes, no allocation.

/// A lexical item outside literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lex<'a> {
    /// The inside of a `/* … */` comment (outermost level).
    BlockComment(&'a str),
    /// A bare word (keyword or identifier), as written.
    Word(&'a str),
    Semicolon,
    /// Anything else (operators, numbers, literals, quoted identifiers, …).
    Other,
}

/// Iterates the lexical items of `sql`.
pub(crate) struct Lexer<'a> {
    sql: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(sql: &'a str) -> Lexer<'a> {
        Lexer { sql, pos: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.sql.as_bytes()
    }

    /// Skips a quoted run ending at `q`, where a doubled `q` is an escaped
    /// quote (and, for `E''` strings, a backslash escapes the next byte).
    fn skip_quoted(&mut self, q: u8, backslash: bool) {
        let b = self.bytes();
        let mut i = self.pos + 1;
        while i < b.len() {
            if backslash && b[i] == b'\\' {
                i += 2;
                continue;
            }
            if b[i] == q {
                if b.get(i + 1) == Some(&q) {
                    i += 2;
                    continue;
                }
                self.pos = i + 1;
                return;
            }
            i += 1;
        }
        self.pos = b.len();
    }

    /// At `$`: a dollar quote `$tag$…$tag$`, or else a parameter/other.
    fn skip_dollar(&mut self) -> bool {
        let b = self.bytes();
        let start = self.pos;
        let mut i = start + 1;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80) {
            i += 1;
        }
        let tag_ok =
            b.get(i) == Some(&b'$') && !b.get(start + 1).is_some_and(|c| c.is_ascii_digit());
        if !tag_ok {
            return false;
        }
        let tag = &self.sql[start..=i];
        match self.sql[i + 1..].find(tag) {
            Some(end) => self.pos = i + 1 + end + tag.len(),
            None => self.pos = b.len(),
        }
        true
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Lex<'a>;

    fn next(&mut self) -> Option<Lex<'a>> {
        let b = self.bytes();
        loop {
            let c = *b.get(self.pos)?;
            match c {
                _ if c.is_ascii_whitespace() => self.pos += 1,
                b'-' if b.get(self.pos + 1) == Some(&b'-') => {
                    match b[self.pos..].iter().position(|&x| x == b'\n') {
                        Some(n) => self.pos += n + 1,
                        None => self.pos = b.len(),
                    }
                }
                b'/' if b.get(self.pos + 1) == Some(&b'*') => {
                    let start = self.pos + 2;
                    let mut depth = 1;
                    let mut i = start;
                    while i < b.len() && depth > 0 {
                        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                            depth += 1;
                            i += 2;
                        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                            depth -= 1;
                            i += 2;
                        } else {
                            i += 1;
                        }
                    }
                    let end = if depth == 0 { i - 2 } else { b.len() };
                    self.pos = i.min(b.len());
                    return Some(Lex::BlockComment(&self.sql[start..end.max(start)]));
                }
                b';' => {
                    self.pos += 1;
                    return Some(Lex::Semicolon);
                }
                b'\'' => {
                    self.skip_quoted(b'\'', false);
                    return Some(Lex::Other);
                }
                b'"' => {
                    self.skip_quoted(b'"', false);
                    return Some(Lex::Other);
                }
                b'$' => {
                    if !self.skip_dollar() {
                        self.pos += 1;
                    }
                    return Some(Lex::Other);
                }
                _ if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                    // E'…' strings take backslash escapes.
                    if (c == b'e' || c == b'E') && b.get(self.pos + 1) == Some(&b'\'') {
                        self.pos += 1;
                        self.skip_quoted(b'\'', true);
                        return Some(Lex::Other);
                    }
                    let start = self.pos;
                    while self.pos < b.len()
                        && (b[self.pos].is_ascii_alphanumeric()
                            || b[self.pos] == b'_'
                            || b[self.pos] == b'$'
                            || b[self.pos] >= 0x80)
                    {
                        self.pos += 1;
                    }
                    // Stay on a char boundary (multi-byte identifiers).
                    while !self.sql.is_char_boundary(self.pos) {
                        self.pos += 1;
                    }
                    return Some(Lex::Word(&self.sql[start..self.pos]));
                }
                _ => {
                    self.pos += 1;
                    while !self.sql.is_char_boundary(self.pos) {
                        self.pos += 1;
                    }
                    return Some(Lex::Other);
                }
            }
        }
    }
}

/// True when the text holds more than one statement (something after a
/// top-level semicolon).
pub(crate) fn has_several_statements(sql: &str) -> bool {
    let mut seen_semicolon = false;
    for l in Lexer::new(sql) {
        match l {
            Lex::Semicolon => seen_semicolon = true,
            Lex::BlockComment(_) => {}
            _ if seen_semicolon => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(sql: &str) -> Vec<&str> {
        Lexer::new(sql)
            .filter_map(|l| match l {
                Lex::Word(w) => Some(w),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn literals_and_comments_hide_words() {
        assert_eq!(
            words(
                "SELECT 'a; b' , \"x y\", $$ z ; $$, $t$ q $t$ -- c\n FROM t /* a /* b */ c */ x"
            ),
            vec!["SELECT", "FROM", "t", "x"]
        );
        assert_eq!(words("SELECT E'it\\'s; x' y"), vec!["SELECT", "y"]);
        assert_eq!(words("SELECT 'it''s' z"), vec!["SELECT", "z"]);
        assert_eq!(words("SELECT $1, a$b"), vec!["SELECT", "a$b"]);
        assert_eq!(words("SELECT 'unterminated"), vec!["SELECT"]);
        assert_eq!(words("/* unterminated"), Vec::<&str>::new());
        assert_eq!(words("SELECT é, 日本"), vec!["SELECT", "é", "日本"]);
    }

    #[test]
    fn block_comment_contents() {
        let c: Vec<_> = Lexer::new("/* shard_key=5 */ SELECT /* a /* b */ */ 1")
            .filter_map(|l| match l {
                Lex::BlockComment(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(c, vec![" shard_key=5 ", " a /* b */ "]);
    }

    #[test]
    fn statement_counting() {
        assert!(!has_several_statements("VACUUM t"));
        assert!(!has_several_statements("VACUUM t; ; -- x\n /* y */"));
        assert!(has_several_statements("VACUUM t; DROP TABLE x"));
        assert!(!has_several_statements("SELECT ';' ; "));
    }
}
