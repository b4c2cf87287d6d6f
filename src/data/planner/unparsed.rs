//! The plan of a text sqlparser rejects (a few statements Postgres accepts are
//! beyond it: `VACUUM (VERBOSE) t`, `CHECKPOINT`, `REINDEX`, `CLUSTER`,
//! `PREPARE TRANSACTION`, `DO $$…$$`, `MOVE`, …).
//!
//! Conservative keyword check: only a *single* statement whose first keyword
//! marks a read-only or maintenance statement that is safe on every shard
//! (SHOW, VACUUM, ANALYZE, CHECKPOINT, REINDEX, CLUSTER, EXPLAIN without
//! ANALYZE) gets `read_only_guess = true`; the session sends those to all
//! shards and refuses everything else (an unparsed SELECT could need a merge
//! we can't plan, an unparsed write could need routing we can't do).

use super::lex::{has_several_statements, Lex, Lexer};
use super::plan::{StmtKind, StmtPlan, Target};

/// Plans unparseable text from its first keywords.
pub(crate) fn plan_unparsed(sql: &str, error: String) -> StmtPlan {
    let mut words = Lexer::new(sql).filter_map(|l| match l {
        Lex::Word(w) => Some(w.to_ascii_uppercase()),
        Lex::Other => Some(String::new()),
        _ => None,
    });
    let first = words.next().unwrap_or_default();
    let second = words.next().unwrap_or_default();
    let (kind, safe) = match (first.as_str(), second.as_str()) {
        ("SHOW", _) => (StmtKind::Show, true),
        ("VACUUM" | "ANALYZE" | "ANALYSE" | "CHECKPOINT" | "REINDEX" | "CLUSTER", _) => {
            (StmtKind::Utility, true)
        }
        ("EXPLAIN", _) => (StmtKind::Utility, !mentions_analyze(sql)),
        ("PREPARE", "TRANSACTION") | ("COMMIT" | "ROLLBACK", "PREPARED") => {
            (StmtKind::Prepare2pc, false)
        }
        ("SELECT" | "WITH" | "VALUES" | "TABLE", _) => (StmtKind::Select, false),
        ("INSERT", _) => (StmtKind::Insert, false),
        ("UPDATE", _) => (StmtKind::Update, false),
        ("DELETE", _) => (StmtKind::Delete, false),
        ("CREATE" | "ALTER" | "DROP" | "TRUNCATE" | "GRANT" | "REVOKE" | "COMMENT", _) => {
            (StmtKind::Ddl, false)
        }
        ("BEGIN" | "START", _) => (StmtKind::Begin, false),
        _ => (StmtKind::Other, false),
    };
    let read_only_guess = safe && !has_several_statements(sql);
    let mut plan = StmtPlan::new(
        kind,
        Target::Unparsed {
            read_only_guess,
            error,
        },
    );
    plan.read_only = read_only_guess;
    plan
}

/// `EXPLAIN ANALYZE …` or `EXPLAIN (ANALYZE …)` executes the statement.
fn mentions_analyze(sql: &str) -> bool {
    Lexer::new(sql).any(|l| {
        matches!(l, Lex::Word(w) if w.eq_ignore_ascii_case("analyze") || w.eq_ignore_ascii_case("analyse"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guess(sql: &str) -> (StmtKind, bool) {
        let p = plan_unparsed(sql, "e".into());
        match p.target {
            Target::Unparsed {
                read_only_guess, ..
            } => (p.kind, read_only_guess),
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn maintenance_and_reads_are_safe() {
        assert_eq!(
            guess("VACUUM (VERBOSE, ANALYZE) orders"),
            (StmtKind::Utility, true)
        );
        assert_eq!(guess("  -- x\n checkpoint"), (StmtKind::Utility, true));
        assert_eq!(guess("/* c */ REINDEX TABLE t"), (StmtKind::Utility, true));
        assert_eq!(guess("CLUSTER t"), (StmtKind::Utility, true));
        assert_eq!(guess("SHOW something odd"), (StmtKind::Show, true));
        assert_eq!(
            guess("EXPLAIN (COSTS OFF) SELECT weird"),
            (StmtKind::Utility, true)
        );
    }

    #[test]
    fn everything_else_is_refused() {
        assert_eq!(
            guess("EXPLAIN (ANALYZE) DELETE FROM t"),
            (StmtKind::Utility, false)
        );
        assert_eq!(
            guess("PREPARE TRANSACTION 'x'"),
            (StmtKind::Prepare2pc, false)
        );
        assert_eq!(guess("COMMIT PREPARED 'x'"), (StmtKind::Prepare2pc, false));
        assert_eq!(
            guess("ROLLBACK PREPARED 'x'"),
            (StmtKind::Prepare2pc, false)
        );
        assert_eq!(guess("SELECT ((("), (StmtKind::Select, false));
        assert_eq!(guess("DO $$ BEGIN END $$"), (StmtKind::Other, false));
        assert_eq!(guess("INSERT INTO t VALUES (("), (StmtKind::Insert, false));
        assert_eq!(
            guess("VACUUM (FULL) t; DROP TABLE t"),
            (StmtKind::Utility, false)
        );
        assert_eq!(guess(""), (StmtKind::Other, false));
        assert_eq!(guess("ALTER SYSTEM SET x = 1"), (StmtKind::Ddl, false));
    }
}
