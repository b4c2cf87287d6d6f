//! Parsing admin console commands: splitting a Query string into `;`-separated
//! statements (quotes and comments respected) and matching each against the
//! command table.
//!
//! Adding a command: a [`Command`] variant, a row in [`COMMANDS`] (its words,
//! argument usage, description and how to build it from the arguments), and
//! the arm in `super::execute` calling the function that answers it.

use crate::data::codec::error::sqlstate;
use crate::data::codec::SqlError;

/// A parsed admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    ShowHelp,
    ShowShards,
    ShowPools,
    ShowClients,
    ShowStats,
    ShowConfig,
    ShowVersion,
    ShowShardmap,
    ShowRoute { table: String, key: String },
    ShowSequences,
    FixSequences,
    ShowHot,
    ShowAdvice,
    Reload,
    Shutdown,
}

/// One row of the command table.
pub struct Spec {
    /// The keywords, matched case-insensitively (longest match wins).
    pub words: &'static [&'static str],
    /// Usage of the arguments after the keywords ("" when there are none).
    pub args: &'static str,
    /// What `SHOW HELP` says about it.
    pub about: &'static str,
    /// Builds the command from its arguments, or says what is wrong with them.
    pub build: fn(Vec<String>) -> Result<Command, String>,
}

impl Spec {
    /// `SHOW ROUTE <table> <key>`.
    pub fn syntax(&self) -> String {
        let mut s = self.words.join(" ");
        if !self.args.is_empty() {
            s.push(' ');
            s.push_str(self.args);
        }
        s
    }
}

/// Every admin command, in the order `SHOW HELP` lists them.
pub const COMMANDS: &[Spec] = &[
    Spec {
        words: &["SHOW", "HELP"],
        args: "",
        about: "this list",
        build: |a| no_args(a, Command::ShowHelp),
    },
    Spec {
        words: &["SHOW", "SHARDS"],
        args: "",
        about: "shards: address, database, up/down, pool counts",
        build: |a| no_args(a, Command::ShowShards),
    },
    Spec {
        words: &["SHOW", "POOLS"],
        args: "",
        about: "backend pools per shard: in use, idle, waiting, size, connects",
        build: |a| no_args(a, Command::ShowPools),
    },
    Spec {
        words: &["SHOW", "CLIENTS"],
        args: "",
        about: "connected clients: user, database, address, state, queries",
        build: |a| no_args(a, Command::ShowClients),
    },
    Spec {
        words: &["SHOW", "STATS"],
        args: "",
        about: "per-shard queries, transactions, errors, bytes and average latency",
        build: |a| no_args(a, Command::ShowStats),
    },
    Spec {
        words: &["SHOW", "CONFIG"],
        args: "",
        about: "the running configuration, one key per row (passwords hidden)",
        build: |a| no_args(a, Command::ShowConfig),
    },
    Spec {
        words: &["SHOW", "VERSION"],
        args: "",
        about: "the shardproxy version",
        build: |a| no_args(a, Command::ShowVersion),
    },
    Spec {
        words: &["SHOW", "SHARDMAP"],
        args: "",
        about: "hash ranges, key share and pinned keys per co-location group and shard",
        build: |a| no_args(a, Command::ShowShardmap),
    },
    Spec {
        words: &["SHOW", "ROUTE"],
        args: "<table> <key>",
        about: "where a shard key goes: group, hash, shard, and why (pin or interval)",
        build: |a| match <[String; 2]>::try_from(a) {
            Ok([table, key]) => Ok(Command::ShowRoute { table, key }),
            Err(_) => Err("takes a table name and a key".into()),
        },
    },
    Spec {
        words: &["SHOW", "SEQUENCES"],
        args: "",
        about: "id sequences of sharded tables per shard: slot, increment, next value, ok or why they collide",
        build: |a| no_args(a, Command::ShowSequences),
    },
    Spec {
        words: &["FIX", "SEQUENCES"],
        args: "",
        about: "give every shard an id slot and interleave the sequences that collide (needs every shard up)",
        build: |a| no_args(a, Command::FixSequences),
    },
    Spec {
        words: &["SHOW", "HOT"],
        args: "",
        about: "load of the last hot.window_secs: shards, hottest hash intervals and shard keys, with their share",
        build: |a| no_args(a, Command::ShowHot),
    },
    Spec {
        words: &["SHOW", "REBALANCE", "ADVICE"],
        args: "",
        about: "moves that bring the busiest shard closest to the mean, from SHOW HOT's load, with the predicted load after each",
        build: |a| no_args(a, Command::ShowAdvice),
    },
    Spec {
        words: &["RELOAD"],
        args: "",
        about: "re-read the config file; on any error the running config stays",
        build: |a| no_args(a, Command::Reload),
    },
    Spec {
        words: &["SHUTDOWN"],
        args: "",
        about: "drain like SIGTERM: no new clients, sessions end after their transaction",
        build: |a| no_args(a, Command::Shutdown),
    },
];

fn no_args(args: Vec<String>, c: Command) -> Result<Command, String> {
    match args.first() {
        None => Ok(c),
        Some(a) => Err(format!("unexpected argument \"{a}\"")),
    }
}

/// A word of a statement; `quoted` words ('text' or "ident") never match keywords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub quoted: bool,
}

/// Splits a Query string into statements of tokens. Empty statements
/// (`;;`, comments only) are dropped. Hand-written: the console grammar is
/// a few keywords and literals, and sqlparser rejects `SHOW SHARDS`-style
/// statements it does not know.
pub fn split_statements(sql: &str) -> Result<Vec<Vec<Token>>, SqlError> {
    let mut statements = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut word = String::new();
    let mut chars = sql.chars().peekable();
    let end_word = |word: &mut String, current: &mut Vec<Token>| {
        if !word.is_empty() {
            current.push(Token {
                text: std::mem::take(word),
                quoted: false,
            });
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ';' => {
                end_word(&mut word, &mut current);
                if !current.is_empty() {
                    statements.push(std::mem::take(&mut current));
                }
            }
            '\'' | '"' => {
                end_word(&mut word, &mut current);
                let mut text = String::new();
                loop {
                    match chars.next() {
                        // A doubled quote stands for one quote character.
                        Some(q) if q == c && chars.peek() == Some(&c) => {
                            chars.next();
                            text.push(c);
                        }
                        Some(q) if q == c => break,
                        Some(other) => text.push(other),
                        None => {
                            return Err(SqlError::new(
                                sqlstate::SYNTAX_ERROR,
                                if c == '\'' {
                                    "unterminated quoted string"
                                } else {
                                    "unterminated quoted identifier"
                                },
                            ))
                        }
                    }
                }
                current.push(Token { text, quoted: true });
            }
            '-' if chars.peek() == Some(&'-') => {
                end_word(&mut word, &mut current);
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                end_word(&mut word, &mut current);
                chars.next();
                let mut prev = '\0';
                let mut closed = false;
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        closed = true;
                        break;
                    }
                    prev = n;
                }
                if !closed {
                    return Err(SqlError::new(
                        sqlstate::SYNTAX_ERROR,
                        "unterminated /* comment",
                    ));
                }
            }
            c if c.is_whitespace() => end_word(&mut word, &mut current),
            c => word.push(c),
        }
    }
    end_word(&mut word, &mut current);
    if !current.is_empty() {
        statements.push(current);
    }
    Ok(statements)
}

/// Matches one statement against [`COMMANDS`].
pub fn parse(tokens: &[Token]) -> Result<Command, SqlError> {
    let matches = |spec: &Spec| {
        spec.words.len() <= tokens.len()
            && spec
                .words
                .iter()
                .zip(tokens)
                .all(|(w, t)| !t.quoted && t.text.eq_ignore_ascii_case(w))
    };
    let Some(spec) = COMMANDS
        .iter()
        .filter(|s| matches(s))
        .max_by_key(|s| s.words.len())
    else {
        let text: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
        return Err(SqlError::new(
            sqlstate::SYNTAX_ERROR,
            format!("unrecognized admin command \"{}\"", text.join(" ")),
        )
        .with_hint("SHOW HELP lists the commands"));
    };
    let args = tokens[spec.words.len()..]
        .iter()
        .map(|t| t.text.clone())
        .collect();
    (spec.build)(args).map_err(|why| {
        SqlError::new(
            sqlstate::SYNTAX_ERROR,
            format!("{}: {why}", spec.words.join(" ")),
        )
        .with_hint(format!("Usage: {}", spec.syntax()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(sql: &str) -> Vec<Result<Command, SqlError>> {
        split_statements(sql)
            .unwrap()
            .iter()
            .map(|s| parse(s))
            .collect()
    }

    #[test]
    fn commands_are_case_insensitive_and_semicolons_optional() {
        assert_eq!(parse_all("show shards"), vec![Ok(Command::ShowShards)]);
        assert_eq!(parse_all("  SHOW   Pools ;"), vec![Ok(Command::ShowPools)]);
        assert_eq!(
            parse_all("show help; reload;;\n show stats"),
            vec![
                Ok(Command::ShowHelp),
                Ok(Command::Reload),
                Ok(Command::ShowStats)
            ]
        );
        assert!(parse_all(" ; -- nothing\n /* here */ ;").is_empty());
    }

    #[test]
    fn every_table_row_parses_to_a_distinct_command() {
        let mut seen = Vec::new();
        for spec in COMMANDS {
            let args = if spec.args.is_empty() { "" } else { " t 1" };
            let c = parse_all(&(spec.words.join(" ").to_lowercase() + args))
                .pop()
                .unwrap()
                .unwrap();
            assert!(!seen.contains(&c), "{c:?} twice");
            seen.push(c);
        }
    }

    #[test]
    fn unknown_commands_and_extra_arguments_are_syntax_errors() {
        let e = parse_all("SHOW NONSENSE").pop().unwrap().unwrap_err();
        assert_eq!(e.code, "42601");
        assert!(e.message.contains("SHOW NONSENSE"), "{}", e.message);
        assert_eq!(e.hint.as_deref(), Some("SHOW HELP lists the commands"));
        let e = parse_all("select 1").pop().unwrap().unwrap_err();
        assert_eq!(e.code, "42601");
        let e = parse_all("show shards now").pop().unwrap().unwrap_err();
        assert!(e.message.contains("\"now\""), "{}", e.message);
        assert_eq!(e.hint.as_deref(), Some("Usage: SHOW SHARDS"));
        // A quoted word is an argument, never a keyword.
        assert!(parse_all("show 'shards'").pop().unwrap().is_err());
    }

    #[test]
    fn quotes_and_comments_keep_semicolons_inside() {
        let s = split_statements("show x 'a;b' \"c\"\"d\" -- ;tail\n; reload /* ; */").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0][2].text, "a;b");
        assert!(s[0][2].quoted);
        assert_eq!(s[0][3].text, "c\"d");
        assert_eq!(s[1][0].text, "reload");
        assert_eq!(split_statements("show 'x").unwrap_err().code, "42601");
        assert_eq!(split_statements("show /* x").unwrap_err().code, "42601");
    }

    #[test]
    fn show_route_takes_a_table_and_a_key() {
        assert_eq!(
            parse_all("show route orders 'a b'"),
            vec![Ok(Command::ShowRoute {
                table: "orders".into(),
                key: "a b".into()
            })]
        );
        let e = parse_all("show route orders").pop().unwrap().unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("Usage: SHOW ROUTE <table> <key>"));
        assert!(parse_all("show route a b c").pop().unwrap().is_err());
        assert_eq!(parse_all("show shardmap"), vec![Ok(Command::ShowShardmap)]);
    }
}
