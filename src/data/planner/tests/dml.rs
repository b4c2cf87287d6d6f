//! INSERT / UPDATE / DELETE routing and refusals, and split_insert.

use super::*;

#[test]
fn insert_one_row_is_keyed() {
    let p = plan1("INSERT INTO orders (customer_id, total) VALUES (42, 1.5)");
    assert_eq!(p.kind, StmtKind::Insert);
    assert!(!p.read_only);
    assert_eq!(
        p.target,
        Target::Keyed {
            group: 0,
            key_type: KeyType::Int8,
            keys: vec![lit("42")]
        }
    );
    assert_keyed(
        "INSERT INTO orders (id, customer_id) VALUES ($1, $2) RETURNING id",
        &[KeySource::Param(2)],
    );
    assert_keyed(
        "INSERT INTO orders (customer_id, total) VALUES ('7'::bigint, 1) ON CONFLICT (id) DO UPDATE SET total = EXCLUDED.total",
        &[lit("7")],
    );
    // Upserts that write every column, conflicting on the key.
    assert_keyed(
        "INSERT INTO orders (customer_id, id, total) VALUES (7, 1, 2) ON CONFLICT (customer_id, id) \
         DO UPDATE SET customer_id = EXCLUDED.customer_id, total = EXCLUDED.total",
        &[lit("7")],
    );
    assert_keyed(
        "INSERT INTO orders (customer_id, total) VALUES (7, (SELECT max(total) FROM orders WHERE customer_id = 7))",
        &[lit("7")],
    );
    assert_keyed(
        "insert into pgbench_accounts (aid, bid, abalance, filler) values (1, 1, 0, '')",
        &[lit("1")],
    );
}

#[test]
fn insert_several_rows_keeps_one_key_per_row() {
    let p = plan1("INSERT INTO orders (total, customer_id) VALUES (1, 10), (2, NULL), (3, $1)");
    assert_eq!(
        p.target,
        Target::InsertMulti {
            group: 0,
            key_type: KeyType::Int8,
            rows: vec![lit("10"), KeySource::Null, KeySource::Param(1)]
        }
    );
    assert!(p.insert_ast.is_some());
}

#[test]
fn insert_refusals() {
    assert_refused(
        "INSERT INTO orders (id, total) VALUES (1, 2)",
        "INSERT into sharded table \"orders\" must set its shard key column \"customer_id\"",
    );
    assert_refused(
        "INSERT INTO orders SELECT 1, 2",
        "needs a column list that names its shard key column \"customer_id\"",
    );
    assert_refused(
        "INSERT INTO orders (customer_id) VALUES (abs(-1))",
        "must be a literal or a parameter, not abs(-1)",
    );
    assert_refused(
        "INSERT INTO orders (customer_id) VALUES (DEFAULT)",
        "must be a literal",
    );
    assert_refused(
        "INSERT INTO orders (customer_id, total) SELECT customer_id, total FROM items",
        "INSERT … SELECT into sharded table \"orders\" is not supported",
    );
    assert_refused(
        "INSERT INTO orders (customer_id, total) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET customer_id = 3",
        "ON CONFLICT DO UPDATE of shard key column \"customer_id\"",
    );
    assert_refused(
        "INSERT INTO orders (customer_id, total) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id",
        "ON CONFLICT DO UPDATE of shard key column",
    );
    assert_refused(
        "INSERT INTO orders (customer_id, total) VALUES (7, (SELECT max(total) FROM orders))",
        "not restricted to the inserted row's shard key",
    );
    assert_refused(
        "INSERT INTO orders (customer_id, total) VALUES (1, 1), (2, (SELECT 1 FROM items WHERE customer_id = 2))",
        "multi-row INSERT",
    );
    assert_refused(
        "WITH x AS (INSERT INTO orders (customer_id) VALUES (1) RETURNING *) SELECT * FROM x",
        "INSERT into sharded table \"orders\" inside WITH",
    );
}

#[test]
fn writes_to_reference_and_unknown_tables() {
    assert_eq!(
        target("INSERT INTO countries (code) VALUES ('FR'), ('DE')"),
        Target::AllShards(FanOut::ReferenceWrite)
    );
    assert_eq!(
        target("UPDATE countries SET name = 'France' WHERE code = 'FR'"),
        Target::AllShards(FanOut::ReferenceWrite)
    );
    assert_eq!(
        target("DELETE FROM countries"),
        Target::AllShards(FanOut::ReferenceWrite)
    );
    assert_refused(
        "INSERT INTO countries SELECT DISTINCT country FROM orders",
        "a write to reference table \"countries\" cannot read sharded table \"orders\"",
    );
    assert_refused(
        "DELETE FROM countries WHERE code IN (SELECT country FROM orders WHERE customer_id = 1)",
        "copies on each shard would diverge",
    );
    assert_eq!(target("INSERT INTO audit (x) VALUES (1)"), Target::AnyShard);
    assert_keyed(
        "INSERT INTO audit SELECT * FROM orders WHERE customer_id = 5",
        &[lit("5")],
    );
    assert_refused(
        "INSERT INTO audit SELECT * FROM orders",
        "not in the shard map, can only read sharded tables restricted to one shard key",
    );
}

#[test]
fn merge_statements() {
    assert_refused(
        "MERGE INTO orders o USING items i ON o.customer_id = i.customer_id WHEN MATCHED THEN UPDATE SET total = 1",
        "MERGE on sharded table \"orders\"",
    );
    assert_eq!(
        target("MERGE INTO countries c USING new_countries n ON c.code = n.code WHEN MATCHED THEN DELETE"),
        Target::AllShards(FanOut::ReferenceWrite)
    );
    assert_eq!(
        target("MERGE INTO audit a USING countries c ON a.x = c.code WHEN MATCHED THEN DELETE"),
        Target::AnyShard
    );
}

#[test]
fn update_and_delete_routing() {
    assert_keyed(
        "UPDATE orders SET total = 0 WHERE customer_id = 5",
        &[lit("5")],
    );
    assert_keyed(
        "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
        &[KeySource::Param(2)],
    );
    assert_keyed(
        "UPDATE orders o SET total = i.total FROM items i WHERE i.customer_id = o.customer_id AND o.customer_id = 3",
        &[lit("3")],
    );
    assert_keyed(
        "DELETE FROM orders WHERE customer_id IN (1, 2)",
        &[lit("1"), lit("2")],
    );
    assert_keyed(
        "DELETE FROM orders USING items WHERE items.customer_id = orders.customer_id AND orders.customer_id = 8 RETURNING orders.id",
        &[lit("8")],
    );
    let p = plan1("UPDATE orders SET total = total * 2");
    assert_eq!(p.kind, StmtKind::Update);
    assert_eq!(p.target, Target::AllShards(FanOut::Write));
    assert_eq!(
        target("DELETE FROM orders WHERE total < 0"),
        Target::AllShards(FanOut::Write)
    );
    assert_eq!(
        target(
            "DELETE FROM orders o USING items i WHERE i.customer_id = o.customer_id AND i.x = 1"
        ),
        Target::AllShards(FanOut::Write)
    );
    let p = plan1("DELETE FROM orders WHERE customer_id = 1");
    assert_eq!(p.kind, StmtKind::Delete);
    assert!(!p.read_only);
}

#[test]
fn unsafe_fan_out_writes_are_refused() {
    assert_refused(
        "UPDATE orders SET total = 0 WHERE total > (SELECT avg(total) FROM orders)",
        "UPDATE of sharded table \"orders\" without a condition on its shard key \"customer_id\" cannot run on every shard",
    );
    assert_refused(
        "DELETE FROM orders WHERE id IN (SELECT id FROM orders ORDER BY created LIMIT 10)",
        "DELETE of sharded table \"orders\"",
    );
    assert_refused(
        "UPDATE orders o SET x = 1 FROM items i WHERE i.id = o.id",
        "not joined on their shard keys",
    );
}

#[test]
fn updating_the_shard_key_is_refused() {
    match target("UPDATE orders SET customer_id = 2 WHERE id = 1") {
        Target::Refused { sqlstate, message } => {
            assert_eq!(sqlstate, "0A000");
            assert_eq!(
                message,
                "UPDATE of shard key column \"customer_id\" of table \"orders\" is not supported: \
                 it would move the row between shards"
            );
        }
        t => panic!("{t:?}"),
    }
    assert_refused(
        "UPDATE orders SET (total, customer_id) = (1, 2) WHERE customer_id = 1",
        "shard key column",
    );
    assert_refused(
        "UPDATE orders SET customer_id = 6 WHERE customer_id = 5",
        "shard key column",
    );
    assert_refused(
        "WITH u AS (UPDATE orders SET customer_id = 1 WHERE customer_id = 2 RETURNING *) SELECT * FROM u",
        "shard key column",
    );
    // ORMs write every column: the same value as the WHERE key is no move.
    assert_keyed(
        "UPDATE orders SET customer_id = 5, total = 1 WHERE customer_id = 5",
        &[lit("5")],
    );
    assert_keyed(
        "UPDATE orders SET customer_id = $1, total = $2 WHERE customer_id = $1",
        &[KeySource::Param(1)],
    );
}

#[test]
fn data_modifying_ctes() {
    let p = plan1(
        "WITH d AS (DELETE FROM orders WHERE customer_id = 1 RETURNING *) INSERT INTO archive SELECT * FROM d",
    );
    assert_eq!(p.kind, StmtKind::Insert);
    assert!(matches!(&p.target, Target::Keyed { keys, .. } if *keys == vec![lit("1")]));
    let p =
        plan1("WITH d AS (DELETE FROM orders WHERE total < 0 RETURNING id) SELECT count(*) FROM d");
    assert_eq!(p.kind, StmtKind::Select);
    assert!(!p.read_only);
    assert_eq!(p.target, Target::AllShards(FanOut::Write));
    assert_refused(
        "WITH c AS (UPDATE countries SET n = 1 RETURNING *) SELECT * FROM orders WHERE customer_id = 1",
        "reference table \"countries\" inside WITH",
    );
}

#[test]
fn split_insert_builds_one_insert_per_shard() {
    let m = map();
    let n = 40;
    let rows: Vec<String> = (0..n).map(|i| format!("({i}, 'it''s {i}')")).collect();
    let sql = format!(
        "INSERT INTO orders (customer_id, note) VALUES {} ON CONFLICT DO NOTHING RETURNING id",
        rows.join(", ")
    );
    let p = plan1(&sql);
    let parts = split_insert(&p, &Params::none(), &m).unwrap();
    assert!(parts.len() > 1, "40 keys on 4 shards");
    let mut seen = Vec::new();
    for part in &parts {
        assert!(part.rows.windows(2).all(|w| w[0] < w[1]), "row order kept");
        assert!(part.params.is_empty());
        for &r in &part.rows {
            let k = crate::data::router::KeyValue::Int(r as i64);
            assert_eq!(m.shard_for(0, &k), part.shard);
        }
        // The part is a valid INSERT of exactly its rows.
        let reparsed = plan1(&part.sql);
        match reparsed.target {
            Target::InsertMulti { rows, .. } => assert_eq!(
                rows,
                part.rows
                    .iter()
                    .map(|r| lit(&r.to_string()))
                    .collect::<Vec<_>>()
            ),
            Target::Keyed { keys, .. } => assert_eq!(keys, vec![lit(&part.rows[0].to_string())]),
            t => panic!("{t:?}"),
        }
        assert!(
            part.sql.contains("ON CONFLICT DO NOTHING RETURNING id"),
            "{}",
            part.sql
        );
        assert!(
            part.sql.contains(&format!("'it''s {}'", part.rows[0])),
            "{}",
            part.sql
        );
        seen.extend(part.rows.iter().copied());
    }
    seen.sort();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    let shards: Vec<_> = parts.iter().map(|p| p.shard).collect();
    assert!(shards.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn split_insert_renumbers_parameters() {
    let m = map();
    let p = plan1("INSERT INTO orders (customer_id, total) VALUES ($1, $2), ($3, $4), ($5, $2) RETURNING $6::int");
    // Find three keys, two on one shard and one on another.
    let shard = |k: i64| m.shard_for(0, &crate::data::router::KeyValue::Int(k));
    let a = 1i64;
    let b = (2..).find(|&k| shard(k) != shard(a)).unwrap();
    let c = (b + 1..).find(|&k| shard(k) == shard(a)).unwrap();
    let (ta, tb, tc) = (a.to_string(), b.to_string(), c.to_string());
    let params = Params {
        values: smallvec::smallvec![
            Some(ta.as_bytes()),
            Some(&b"x"[..]),
            Some(tb.as_bytes()),
            Some(&b"y"[..]),
            Some(tc.as_bytes()),
            Some(&b"1"[..]),
        ],
        formats: smallvec::smallvec![],
    };
    let parts = split_insert(&p, &params, &m).unwrap();
    assert_eq!(parts.len(), 2);
    let pa = parts.iter().find(|p| p.shard == shard(a)).unwrap();
    let pb = parts.iter().find(|p| p.shard == shard(b)).unwrap();
    assert_eq!(pa.rows, vec![0, 2]);
    assert_eq!(pa.params, vec![1, 2, 5, 6]);
    assert!(
        pa.sql
            .contains("VALUES ($1, $2), ($3, $2) RETURNING $4::INT"),
        "{}",
        pa.sql
    );
    assert_eq!(pb.rows, vec![1]);
    assert_eq!(pb.params, vec![3, 4, 6]);
    assert!(
        pb.sql.contains("VALUES ($1, $2) RETURNING $3::INT"),
        "{}",
        pb.sql
    );
    // Not a multi-row INSERT: an error, not a panic.
    let single = plan1("INSERT INTO orders (customer_id) VALUES (1)");
    assert_eq!(
        split_insert(&single, &Params::none(), &m)
            .unwrap_err()
            .sqlstate,
        "XX000"
    );
}

#[test]
fn insert_without_a_column_list_uses_the_learnt_column_order() {
    let p = planner();
    let sql = "INSERT INTO orders VALUES (1, 2)";
    // Not known yet: the plan asks for the columns and is not cached.
    let first = p.plan(sql);
    assert_eq!(first.needs_columns(), Some("orders"));
    assert!(!Arc::ptr_eq(&first, &p.plan(sql)));
    p.columns.set(
        "orders",
        vec!["id".into(), "customer_id".into(), "total".into()],
    );
    assert!(!p.is_current(&Plan {
        column_generation: Some(0),
        ..Plan::default()
    }));
    let plan = p.plan(sql);
    assert_eq!(plan.needs_columns(), None);
    assert!(p.is_current(&plan));
    assert_eq!(
        plan.stmts[0].target,
        Target::Keyed {
            group: 0,
            key_type: KeyType::Int8,
            keys: vec![lit("2")]
        }
    );
    // The shards get the INSERT naming the columns its values fill.
    assert_eq!(
        plan.sent_text.as_deref(),
        Some("INSERT INTO orders (\"id\", \"customer_id\") VALUES (1, 2)")
    );
    let multi = p.plan("INSERT INTO orders VALUES (1, 2), (3, 4, 5) RETURNING id");
    let s = &multi.stmts[0];
    assert_eq!(
        s.target,
        Target::InsertMulti {
            group: 0,
            key_type: KeyType::Int8,
            rows: vec![lit("2"), lit("4")]
        }
    );
    let parts = split_insert(s, &Params::none(), &map()).unwrap();
    assert!(parts.iter().all(|part| part
        .sql
        .starts_with("INSERT INTO orders (\"id\", \"customer_id\", \"total\") VALUES")));
    // More values than columns: ask again (the table may have grown).
    assert_eq!(
        p.plan("INSERT INTO orders VALUES (1, 2, 3, 4)")
            .needs_columns(),
        Some("orders")
    );
    // The key beyond the values given.
    assert_eq!(
        p.plan("INSERT INTO orders VALUES (1)").stmts[0].target,
        Target::Refused {
            sqlstate: "0A000",
            message: "INSERT into sharded table \"orders\" must set its shard key column \"customer_id\" (name the columns explicitly)".into()
        }
    );
    // Only on its own in a query string.
    let two = p.plan("INSERT INTO orders VALUES (1, 2); SELECT 1");
    assert!(matches!(
        two.stmts[0].target,
        Target::Refused {
            sqlstate: "0A000",
            ..
        }
    ));
    // Forgetting the columns makes the cached plan stale.
    p.columns.forget("orders");
    assert!(!p.is_current(&plan));
    assert_eq!(p.plan(sql).needs_columns(), Some("orders"));
}
