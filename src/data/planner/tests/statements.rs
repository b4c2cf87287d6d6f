//! Non-DML statements: transactions, SET/RESET/SHOW, DDL, maintenance,
//! EXPLAIN, COPY, session-state flags.

use super::*;

#[track_caller]
fn kind_target(sql: &str, kind: StmtKind, t: Target) {
    let p = plan1(sql);
    assert_eq!((p.kind, p.target), (kind, t), "{sql}");
}

#[test]
fn transaction_control() {
    use StmtKind as K;
    kind_target("BEGIN", K::Begin, Target::AnyShard);
    kind_target(
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
        K::Begin,
        Target::AnyShard,
    );
    kind_target("START TRANSACTION READ ONLY", K::Begin, Target::AnyShard);
    kind_target("COMMIT", K::Commit, Target::AnyShard);
    kind_target("END", K::Commit, Target::AnyShard);
    kind_target("ROLLBACK", K::Rollback, Target::AnyShard);
    kind_target("ABORT", K::Rollback, Target::AnyShard);
    kind_target("SAVEPOINT a", K::Savepoint, Target::AnyShard);
    kind_target("RELEASE SAVEPOINT a", K::Savepoint, Target::AnyShard);
    kind_target("ROLLBACK TO SAVEPOINT a", K::Savepoint, Target::AnyShard);
}

#[test]
fn set_reset_show_discard() {
    let set = |sql: &str| plan1(sql).kind;
    assert_eq!(
        set("SET shardproxy.shard_key = '42'"),
        StmtKind::Set {
            name: "shardproxy.shard_key".into(),
            local: false,
            value: Some("42".into())
        }
    );
    assert_eq!(
        set("SET SESSION ShardProxy.Shard TO s1"),
        StmtKind::Set {
            name: "shardproxy.shard".into(),
            local: false,
            value: Some("s1".into())
        }
    );
    assert_eq!(
        set("SET LOCAL search_path TO a, b"),
        StmtKind::Set {
            name: "search_path".into(),
            local: true,
            value: Some("a, b".into())
        }
    );
    assert_eq!(
        set("SET statement_timeout = 5000"),
        StmtKind::Set {
            name: "statement_timeout".into(),
            local: false,
            value: Some("5000".into())
        }
    );
    assert_eq!(
        set("SET TIME ZONE 'UTC'"),
        StmtKind::Set {
            name: "timezone".into(),
            local: false,
            value: Some("UTC".into())
        }
    );
    assert!(
        matches!(set("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"), StmtKind::Set { name, local: true, .. } if name == "transaction")
    );
    assert_eq!(
        set("RESET shardproxy.shard_key"),
        StmtKind::Reset {
            name: Some("shardproxy.shard_key".into())
        }
    );
    assert_eq!(set("RESET ALL"), StmtKind::Reset { name: None });
    let p = plan1("SET search_path = x");
    assert_eq!(p.target, Target::AnyShard);
    assert!(p.read_only);
    kind_target("SHOW search_path", StmtKind::Show, Target::AnyShard);
    kind_target("SHOW ALL", StmtKind::Show, Target::AnyShard);
    kind_target("DISCARD ALL", StmtKind::Discard, Target::AnyShard);
}

#[test]
fn ddl_goes_to_every_shard() {
    let ddl = Target::AllShards(FanOut::Ddl);
    for sql in [
        "CREATE TABLE t (a int primary key, b text)",
        "CREATE INDEX i ON orders (total)",
        "CREATE UNIQUE INDEX CONCURRENTLY i ON orders (id)",
        "ALTER TABLE orders ADD COLUMN y int",
        "DROP TABLE IF EXISTS orders",
        "TRUNCATE orders, countries",
        "GRANT SELECT ON orders TO bob",
        "COMMENT ON TABLE orders IS 'x'",
        "CREATE VIEW v AS SELECT * FROM orders",
        "CREATE SEQUENCE s",
        "CREATE SCHEMA app",
        "CREATE EXTENSION IF NOT EXISTS pgcrypto",
        "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql",
        "DROP INDEX i",
        "CREATE TABLE t2 AS SELECT * FROM countries",
    ] {
        let p = plan1(sql);
        assert_eq!((&p.kind, &p.target), (&StmtKind::Ddl, &ddl), "{sql}");
        assert!(!p.read_only, "{sql}");
    }
    assert_refused(
        "CREATE TABLE t2 AS SELECT * FROM orders",
        "creating a table from a query on sharded tables",
    );
    assert_eq!(
        target("CREATE TABLE t2 AS SELECT * FROM unknown_t"),
        Target::AnyShard
    );
}

#[test]
fn maintenance_and_explain() {
    kind_target(
        "VACUUM",
        StmtKind::Utility,
        Target::AllShards(FanOut::Maintenance),
    );
    kind_target(
        "ANALYZE orders",
        StmtKind::Utility,
        Target::AllShards(FanOut::Maintenance),
    );
    let p = plan1("EXPLAIN SELECT * FROM orders WHERE customer_id = 1");
    assert_eq!(p.kind, StmtKind::Utility);
    assert!(matches!(&p.target, Target::Keyed { keys, .. } if *keys == vec![lit("1")]));
    assert!(p.read_only);
    let p = plan1("EXPLAIN SELECT * FROM orders");
    assert_eq!(p.target, Target::AllShards(FanOut::Read));
    let p = plan1("EXPLAIN ANALYZE UPDATE orders SET total = 1 WHERE customer_id = 2");
    assert!(!p.read_only);
    assert!(matches!(p.target, Target::Keyed { .. }));
    let p = plan1("EXPLAIN UPDATE orders SET total = 1");
    assert!(p.read_only);
    assert!(matches!(
        plan1("EXPLAIN INSERT INTO orders (customer_id) VALUES (1), (2)").target,
        Target::Keyed { keys, .. } if keys == vec![lit("1")]
    ));
    assert_refused(
        "EXPLAIN ANALYZE INSERT INTO orders (customer_id) VALUES (1), (2)",
        "EXPLAIN ANALYZE",
    );
    // EXPLAIN does not run the advisory lock.
    assert_eq!(
        plan1("EXPLAIN SELECT pg_advisory_lock(1)").session_state,
        None
    );
    let p = plan1("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE");
    assert_eq!(p.target, Target::AllShards(FanOut::Write));
    assert_eq!(target("LOCK TABLE unknown_t"), Target::AnyShard);
}

#[test]
fn session_state_constructs_are_flagged() {
    let ss = |sql: &str| plan1(sql).session_state;
    assert_eq!(ss("LISTEN jobs"), Some("LISTEN"));
    assert_eq!(ss("UNLISTEN *"), Some("UNLISTEN"));
    assert_eq!(ss("NOTIFY jobs, 'x'"), None);
    assert_eq!(ss("CREATE TEMP TABLE t (a int)"), Some("CREATE TEMP TABLE"));
    assert_eq!(
        ss("CREATE TEMPORARY TABLE t AS SELECT 1"),
        Some("CREATE TEMP TABLE")
    );
    assert_eq!(ss("CREATE TEMP TABLE t (a int) ON COMMIT DROP"), None);
    assert_eq!(ss("CREATE TABLE t (a int)"), None);
    assert_eq!(ss("SELECT pg_advisory_lock(1)"), Some("pg_advisory_lock"));
    assert_eq!(
        ss("SELECT pg_try_advisory_lock(1, 2)"),
        Some("pg_try_advisory_lock")
    );
    assert_eq!(
        ss("SELECT * FROM pg_advisory_lock_shared(7)"),
        Some("pg_advisory_lock_shared")
    );
    assert_eq!(
        ss("SELECT * FROM orders WHERE customer_id = 1 AND pg_try_advisory_lock(id)"),
        Some("pg_try_advisory_lock")
    );
    assert_eq!(ss("SELECT pg_advisory_xact_lock(1)"), None);
    assert!(!plan1("SELECT pg_advisory_xact_lock(1)").read_only);
    assert_eq!(ss("PREPARE p (int) AS SELECT $1"), Some("PREPARE"));
    assert_eq!(ss("EXECUTE p(1)"), Some("EXECUTE"));
    assert_eq!(ss("DEALLOCATE p"), Some("DEALLOCATE"));
    assert_eq!(ss("DEALLOCATE ALL"), None);
    assert_eq!(
        ss("DECLARE c CURSOR WITH HOLD FOR SELECT 1"),
        Some("DECLARE … WITH HOLD")
    );
    assert_eq!(ss("DECLARE c CURSOR FOR SELECT 1"), None);
    let p = plan1("CREATE TEMP TABLE t (a int)");
    assert_eq!(p.target, Target::AnyShard);
}

#[test]
fn cursors_follow_their_query() {
    assert_keyed(
        "DECLARE c CURSOR FOR SELECT * FROM orders WHERE customer_id = 3",
        &[lit("3")],
    );
    assert_refused(
        "DECLARE c CURSOR FOR SELECT * FROM orders",
        "a cursor over a query that spans shards",
    );
    assert_eq!(target("FETCH 10 FROM c"), Target::AnyShard);
}

#[test]
fn copy_from_stdin_splits_sharded_tables() {
    let p = plan1("COPY orders (customer_id, total) FROM STDIN");
    assert_eq!(p.kind, StmtKind::CopyFrom);
    assert!(!p.read_only);
    assert_eq!(
        p.target,
        Target::CopyIn(CopySpec {
            table: "orders".into(),
            group: 0,
            key_type: KeyType::Int8,
            key_column: "customer_id".into(),
            columns: vec!["customer_id".into(), "total".into()],
            format: CopyFormat::text(),
        })
    );
    match target("COPY orders FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';', QUOTE '''', NULL 'nil')") {
        Target::CopyIn(spec) => {
            assert!(spec.columns.is_empty());
            assert_eq!(
                spec.format,
                CopyFormat {
                    csv: true,
                    delimiter: b';',
                    null: "nil".into(),
                    quote: b'\'',
                    escape: b'\'',
                    header: true,
                    binary: false,
                }
            );
        }
        t => panic!("{t:?}"),
    }
    match target("COPY orders FROM STDIN CSV HEADER") {
        Target::CopyIn(spec) => {
            assert!(spec.format.csv && spec.format.header && spec.format.delimiter == b',')
        }
        t => panic!("{t:?}"),
    }
    match target("COPY orders FROM STDIN WITH DELIMITER '|' NULL 'x'") {
        Target::CopyIn(spec) => assert_eq!(
            (
                spec.format.delimiter,
                spec.format.null.as_str(),
                spec.format.csv
            ),
            (b'|', "x", false)
        ),
        t => panic!("{t:?}"),
    }
    for binary in [
        "COPY orders FROM STDIN WITH (FORMAT binary)",
        "COPY orders (total, customer_id) FROM STDIN BINARY",
    ] {
        match target(binary) {
            Target::CopyIn(spec) => assert!(spec.format.binary, "{binary}"),
            t => panic!("{binary}: {t:?}"),
        }
    }
    assert_refused("COPY orders FROM '/tmp/x'", "use COPY FROM STDIN");
    assert_refused(
        "COPY orders (id, total) FROM STDIN",
        "must include its shard key column \"customer_id\"",
    );
    assert_eq!(
        target("COPY countries FROM STDIN"),
        Target::AllShards(FanOut::ReferenceWrite)
    );
    assert_eq!(target("COPY unknown_t FROM STDIN"), Target::AnyShard);
}

#[test]
fn copy_to_stdout() {
    let p = plan1("COPY orders TO STDOUT");
    assert_eq!(
        (p.kind.clone(), p.target.clone()),
        (StmtKind::CopyTo, Target::AllShards(FanOut::Read))
    );
    assert!(p.read_only);
    assert_eq!(target("COPY countries TO STDOUT"), Target::AnyShard);
    assert_keyed(
        "COPY (SELECT * FROM orders WHERE customer_id = 1) TO STDOUT",
        &[lit("1")],
    );
    assert_eq!(
        target("COPY (SELECT * FROM orders) TO STDOUT"),
        Target::AllShards(FanOut::Read)
    );
    assert_refused(
        "COPY (SELECT * FROM orders ORDER BY id) TO STDOUT",
        "COPY output is concatenated",
    );
    assert_eq!(plan1("COPY (SELECT 1) TO STDOUT").kind, StmtKind::CopyTo);
    // Binary output is stitched into one stream; header lines cannot be.
    assert_eq!(
        target("COPY orders TO STDOUT (FORMAT binary)"),
        Target::AllShards(FanOut::Read)
    );
    assert_refused(
        "COPY orders TO STDOUT (FORMAT csv, HEADER)",
        "with HEADER across shards",
    );
    assert_refused(
        "COPY (SELECT * FROM orders) TO STDOUT WITH CSV HEADER",
        "with HEADER across shards",
    );
    assert_keyed(
        "COPY (SELECT * FROM orders WHERE customer_id = 3) TO STDOUT (FORMAT csv, HEADER)",
        &[lit("3")],
    );
}

#[test]
fn turning_standard_conforming_strings_off_is_refused() {
    for sql in [
        "SET standard_conforming_strings = off",
        "SET LOCAL standard_conforming_strings TO false",
        "SET standard_conforming_strings = 0",
        "SET \"STANDARD_CONFORMING_STRINGS\" = off",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        "SELECT set_config('standard_conforming_strings', $1, false)",
        "SELECT set_config($1, 'x', false)",
        "UPDATE t SET a = set_config('standard_conforming_strings', 'no', true)",
    ] {
        assert_refused(sql, "standard_conforming_strings");
    }
    for sql in [
        "SET standard_conforming_strings = on",
        "SET standard_conforming_strings TO DEFAULT",
        "SELECT set_config('standard_conforming_strings', 'on', false)",
        "SELECT set_config('application_name', $1, false)",
        "SELECT set_config('search_path', 'public', true)",
    ] {
        assert!(
            !matches!(target(sql), Target::Refused { .. }),
            "{sql}: {:?}",
            target(sql)
        );
    }
    // Planned per exact text, not through a template shared with other values.
    assert_eq!(
        normalize::normalize("SELECT set_config('a', 'b', false) FROM t WHERE id = 1"),
        None
    );
}
