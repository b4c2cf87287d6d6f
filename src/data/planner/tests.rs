//! Planner tests: routing of each statement shape, refusals, hints,
//! multi-statement texts, the unparsed fallback.

mod dml;
mod resolve;
mod select;
mod statements;

use std::sync::Arc;

use super::*;
use crate::data::router::ShardMap;

pub(super) fn map() -> ShardMap {
    properties::map()
}

pub(super) fn planner() -> Planner {
    Planner::new(Arc::new(map()))
}

/// The plan of a single-statement text.
pub(super) fn plan1(sql: &str) -> StmtPlan {
    let p = planner().plan(sql);
    assert_eq!(p.stmts.len(), 1, "{sql}: {p:?}");
    p.stmts[0].clone()
}

pub(super) fn target(sql: &str) -> Target {
    plan1(sql).target
}

pub(super) fn lit(s: &str) -> KeySource {
    KeySource::Literal(s.to_string())
}

/// Asserts a keyed target with these keys (group and type are checked by
/// the tests that care).
#[track_caller]
pub(super) fn assert_keyed(sql: &str, want: &[KeySource]) {
    match target(sql) {
        Target::Keyed { keys, .. } => assert_eq!(keys, want, "{sql}"),
        t => panic!("{sql}: expected Keyed {want:?}, got {t:?}"),
    }
}

/// Asserts a 0A000 refusal whose message contains `needle`.
#[track_caller]
pub(super) fn assert_refused(sql: &str, needle: &str) {
    match target(sql) {
        Target::Refused { sqlstate, message } => {
            assert_eq!(sqlstate, "0A000", "{sql}");
            assert!(
                message.contains(needle),
                "{sql}: message {message:?} lacks {needle:?}"
            );
        }
        t => panic!("{sql}: expected a refusal, got {t:?}"),
    }
}

#[test]
fn multi_statement_text_plans_each_statement_in_order() {
    let p = planner().plan("BEGIN; UPDATE orders SET total = 1 WHERE customer_id = 3; COMMIT");
    let kinds: Vec<_> = p.stmts.iter().map(|s| s.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![StmtKind::Begin, StmtKind::Update, StmtKind::Commit]
    );
    assert_eq!(p.stmts[0].target, Target::AnyShard);
    assert!(matches!(&p.stmts[1].target, Target::Keyed { keys, .. } if *keys == vec![lit("3")]));
    assert!(!p.stmts[1].read_only);
    assert_eq!(p.stmts[2].target, Target::AnyShard);
    assert!(planner().plan("").stmts.is_empty());
    assert!(planner().plan(" ; ; ").stmts.is_empty());
}

#[test]
fn unparsed_text_falls_back_by_first_keyword() {
    match target("VACUUM (VERBOSE, ANALYZE) orders") {
        Target::Unparsed {
            read_only_guess: true,
            error,
        } => assert!(!error.is_empty()),
        t => panic!("{t:?}"),
    }
    let p = plan1("SELEC * FROM orders");
    assert!(matches!(
        p.target,
        Target::Unparsed {
            read_only_guess: false,
            ..
        }
    ));
    let p = plan1("PREPARE TRANSACTION 'tx1'");
    assert_eq!(p.kind, StmtKind::Prepare2pc);
    assert!(matches!(
        p.target,
        Target::Unparsed {
            read_only_guess: false,
            ..
        }
    ));
    // A parse error anywhere makes the whole text one unparsed plan.
    let p = planner().plan("SELECT 1; SELEC 2");
    assert_eq!(p.stmts.len(), 1);
    assert!(matches!(
        p.stmts[0].target,
        Target::Unparsed {
            read_only_guess: false,
            ..
        }
    ));
}

#[test]
fn hints_in_comments_route_fan_outs() {
    let p = planner().plan("/* shard_key=42 */ SELECT * FROM orders");
    assert_eq!(p.hint, Some(Hint::ShardKey("42".into())));
    assert_eq!(
        p.stmts[0].target,
        Target::Keyed {
            group: 0,
            key_type: KeyType::Int8,
            keys: vec![lit("42")]
        }
    );
    // The statement's own key wins over the hint.
    let p = planner().plan("/* shard_key=42 */ SELECT * FROM orders WHERE customer_id = 7");
    assert!(matches!(&p.stmts[0].target, Target::Keyed { keys, .. } if *keys == vec![lit("7")]));
    let p = planner().plan("/* shard=s2 */ SELECT * FROM orders");
    assert_eq!(p.stmts[0].target, Target::Named("s2".into()));
    let p = planner().plan("/* shard=s2 */ UPDATE orders SET total = 0");
    assert_eq!(p.stmts[0].target, Target::Named("s2".into()));
    // DDL and refusals keep their target.
    let p = planner().plan("/* shard=s2 */ CREATE TABLE t (a int)");
    assert_eq!(p.stmts[0].target, Target::AllShards(FanOut::Ddl));
    let p = planner().plan("/* shard=s2 */ UPDATE orders SET customer_id = 1");
    assert!(matches!(p.stmts[0].target, Target::Refused { .. }));
}

#[test]
fn session_hints_apply_through_hinted() {
    let p = plan1("DELETE FROM orders WHERE total < 0");
    assert_eq!(p.target, Target::AllShards(FanOut::Write));
    assert_eq!(
        p.hinted(&Hint::ShardKey("9".into())),
        Target::Keyed {
            group: 0,
            key_type: KeyType::Int8,
            keys: vec![lit("9")]
        }
    );
    assert_eq!(
        p.hinted(&Hint::Shard("s1".into())),
        Target::Named("s1".into())
    );
    let p = plan1("SELECT 1");
    assert_eq!(p.hinted(&Hint::ShardKey("9".into())), Target::AnyShard);
    assert_eq!(
        p.hinted(&Hint::Shard("s3".into())),
        Target::Named("s3".into())
    );
}

#[test]
fn planner_is_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Planner>();
    send_sync::<Plan>();
    let pl = Arc::new(planner());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let pl = pl.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let p = pl.plan(&format!(
                        "SELECT * FROM orders WHERE customer_id = {}",
                        i % 50 + t
                    ));
                    assert!(matches!(p.stmts[0].target, Target::Keyed { .. }));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn plans_are_cached_by_text() {
    let pl = planner();
    let a = pl.plan("SELECT * FROM orders WHERE customer_id = $1");
    let b = pl.plan("SELECT * FROM orders WHERE customer_id = $1");
    assert!(Arc::ptr_eq(&a, &b));
    let c = Planner::with_cache_capacity(Arc::new(map()), 0);
    let a = c.plan("SELECT 1");
    let b = c.plan("SELECT 1");
    assert!(!Arc::ptr_eq(&a, &b));
    assert_eq!(a, b);
}

#[test]
fn deep_operator_chains_do_not_overflow_the_stack() {
    let pl = Planner::with_cache_capacity(Arc::new(map()), 0);
    // Each shape as deep as fits the inline limit, then far over it (planned
    // on the big-stack thread), from a thread with a tokio-sized 2 MiB stack.
    let shapes: Vec<(&str, &str, &str)> = vec![
        ("SELECT x", "[1]", " FROM orders WHERE customer_id = 1"),
        ("SELECT * FROM orders WHERE customer_id = 1", "::int8", ""),
        (
            "SELECT * FROM orders WHERE customer_id = 1 ORDER BY x",
            " || x",
            "",
        ),
        (
            "SELECT * FROM orders WHERE customer_id = 1",
            " AND x = 1",
            "",
        ),
        (
            "SELECT * FROM orders WHERE customer_id = 1 AND x = ",
            "- ",
            "1",
        ),
        (
            "SELECT * FROM orders WHERE customer_id = 1 AND x = ",
            "NOT ",
            "true",
        ),
    ];
    for (head, rep, tail) in shapes {
        let fit = (INLINE_MAX - head.len() - tail.len()) / rep.len();
        for n in [fit, 20_000] {
            let deep = format!("{head}{}{tail}", rep.repeat(n));
            assert_eq!(deep.len() <= INLINE_MAX, n == fit);
            let plan = std::thread::scope(|s| {
                std::thread::Builder::new()
                    .stack_size(2 << 20)
                    .spawn_scoped(s, || pl.plan(&deep))
                    .unwrap()
                    .join()
                    .unwrap()
            });
            let t = &plan.stmts[0].target;
            // Parsed and keyed, or rejected by the parser: never a crash.
            assert!(
                matches!(t, Target::Keyed { .. } | Target::Unparsed { .. }),
                "{head}{rep}…: {t:?}"
            );
        }
    }
    let long = format!("SELECT {}", "1 + ".repeat(MAX_TEXT / 4 + 10));
    assert!(matches!(
        pl.plan(&long).stmts[0].target,
        Target::Unparsed {
            read_only_guess: false,
            ..
        }
    ));
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    const WORDS: &[&str] = &[
        "SELECT",
        "FROM",
        "WHERE",
        "orders",
        "items",
        "customer_id",
        "=",
        "$1",
        "(",
        ")",
        ",",
        "'x'",
        "42",
        "IN",
        "AND",
        "OR",
        "NOT",
        "JOIN",
        "ON",
        "UPDATE",
        "SET",
        "DELETE",
        "INSERT",
        "INTO",
        "VALUES",
        "COPY",
        "STDIN",
        "WITH",
        "AS",
        "UNION",
        "ALL",
        ";",
        "*",
        "o.customer_id",
        "LIMIT",
        "GROUP",
        "BY",
        "ORDER",
        "EXISTS",
        "/* shard=s1 */",
        "--",
        "\n",
        "NULL",
        "::int",
        "countries",
        "users",
        "id",
        "LEFT",
        "USING",
        "RETURNING",
        "ON CONFLICT",
        "DO",
        "NOTHING",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn arbitrary_text(s in "\\PC{0,200}") {
            let map = map();
            properties::check_text(&properties::uncached_planner(&map), &map, &s);
        }

        #[test]
        fn sql_like_word_salad(words in proptest::collection::vec(0..WORDS.len(), 0..40)) {
            let s: Vec<&str> = words.iter().map(|&i| WORDS[i]).collect();
            let map = map();
            properties::check_text(&properties::uncached_planner(&map), &map, &s.join(" "));
        }
    }
}
