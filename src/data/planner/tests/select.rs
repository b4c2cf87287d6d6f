//! SELECT routing: keys, joins, subqueries, set operations, merge facts.

use super::*;

const FANOUT: Target = Target::AllShards(FanOut::Read);

#[test]
fn where_key_equals_literal_or_param() {
    assert_eq!(
        target("SELECT * FROM orders WHERE customer_id = 42"),
        Target::Keyed {
            group: 0,
            key_type: KeyType::Int8,
            keys: vec![lit("42")]
        }
    );
    assert_keyed("SELECT * FROM orders WHERE 42 = customer_id", &[lit("42")]);
    assert_keyed(
        "SELECT * FROM orders WHERE customer_id = $1",
        &[KeySource::Param(1)],
    );
    assert_keyed(
        "SELECT * FROM orders WHERE customer_id = $2::bigint AND total > $1",
        &[KeySource::Param(2)],
    );
    assert_keyed(
        "SELECT * FROM orders WHERE customer_id = '42'",
        &[lit("42")],
    );
    assert_keyed("SELECT * FROM orders WHERE customer_id = -3", &[lit("-3")]);
    assert_keyed(
        "SELECT * FROM orders WHERE customer_id = NULL",
        &[KeySource::Null],
    );
    match target("SELECT * FROM users WHERE id = 'alice'") {
        Target::Keyed {
            group, key_type, ..
        } => {
            assert_eq!(group, 1);
            assert_eq!(key_type, KeyType::Text);
        }
        t => panic!("{t:?}"),
    }
}

#[test]
fn in_lists_and_any_arrays() {
    assert_keyed(
        "SELECT * FROM orders WHERE customer_id IN (1, 2, 3)",
        &[lit("1"), lit("2"), lit("3")],
    );
    assert_keyed(
        "SELECT * FROM orders WHERE customer_id IN ($1, $2, $1)",
        &[KeySource::Param(1), KeySource::Param(2)],
    );
    assert_keyed(
        "SELECT * FROM orders WHERE customer_id = ANY(ARRAY[5, 6])",
        &[lit("5"), lit("6")],
    );
    assert_eq!(
        target("SELECT * FROM orders WHERE customer_id NOT IN (1, 2)"),
        FANOUT
    );
    assert_eq!(
        target("SELECT * FROM orders WHERE customer_id IN (1, total)"),
        FANOUT
    );
    assert_eq!(
        target("SELECT * FROM orders WHERE customer_id = ANY($1)"),
        FANOUT
    );
}

#[test]
fn only_and_conjuncts_pin() {
    assert_keyed(
        "SELECT * FROM orders WHERE status = 'x' AND (customer_id = 5 AND total > 1)",
        &[lit("5")],
    );
    assert_eq!(
        target("SELECT * FROM orders WHERE customer_id = 5 OR status = 'x'"),
        FANOUT
    );
    assert_eq!(
        target("SELECT * FROM orders WHERE NOT (customer_id = 5)"),
        FANOUT
    );
    assert_eq!(target("SELECT * FROM orders WHERE customer_id > 5"), FANOUT);
    assert_eq!(
        target("SELECT * FROM orders WHERE customer_id = total"),
        FANOUT
    );
    assert_eq!(target("SELECT * FROM orders"), FANOUT);
    // The tuple form pins too.
    assert_keyed(
        "SELECT * FROM orders WHERE (customer_id, id) = (8, 1)",
        &[lit("8")],
    );
}

#[test]
fn names_fold_like_postgres() {
    assert_keyed(
        "SELECT * FROM Public.Orders o WHERE O.Customer_Id = 7",
        &[lit("7")],
    );
    assert_keyed(
        "SELECT * FROM \"orders\" WHERE \"customer_id\" = 7",
        &[lit("7")],
    );
    // A quoted upper-case name is another column.
    assert_eq!(
        target("SELECT * FROM orders WHERE \"Customer_Id\" = 7"),
        FANOUT
    );
    // Another schema's table of the same name is not ours... unless the map
    // says so (the router ignores schema prefixes), which it does.
    assert_keyed(
        "SELECT * FROM public.orders WHERE customer_id = 7",
        &[lit("7")],
    );
}

#[test]
fn tables_without_shard_keys_go_anywhere() {
    assert_eq!(target("SELECT 1"), Target::AnyShard);
    assert_eq!(
        target("SELECT * FROM countries WHERE code = 'FR'"),
        Target::AnyShard
    );
    assert_eq!(target("SELECT * FROM unknown_table"), Target::AnyShard);
    assert_eq!(target("SELECT now(), version()"), Target::AnyShard);
    let p = plan1("SELECT * FROM countries c JOIN other.t x ON x.c = c.code");
    assert_eq!(
        p.tables,
        vec!["countries".to_string(), "other.t".to_string()]
    );
    assert_eq!(p.merge, None);
    assert_eq!(p.group, None);
}

#[test]
fn colocated_joins_route_by_key() {
    assert_keyed(
        "SELECT * FROM orders o JOIN items i ON i.customer_id = o.customer_id WHERE o.customer_id = 5",
        &[lit("5")],
    );
    assert_keyed(
        "SELECT * FROM orders o, items i WHERE i.customer_id = o.customer_id AND i.customer_id = $1",
        &[KeySource::Param(1)],
    );
    assert_keyed(
        "SELECT * FROM orders JOIN items USING (customer_id) WHERE customer_id = 5",
        &[lit("5")],
    );
    assert_keyed(
        "SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.id = 11",
        &[lit("11")],
    );
    assert_eq!(
        target("SELECT * FROM orders o JOIN items i ON i.customer_id = o.customer_id"),
        FANOUT
    );
    assert_eq!(
        target("SELECT * FROM orders o FULL JOIN items i ON i.customer_id = o.customer_id"),
        FANOUT
    );
    // Reference tables join anything.
    assert_keyed(
        "SELECT * FROM orders o JOIN countries c ON c.code = o.country WHERE o.customer_id = 3",
        &[lit("3")],
    );
    let p = plan1("SELECT * FROM orders o JOIN items i ON i.customer_id = o.customer_id");
    assert_eq!(p.tables, vec!["orders".to_string(), "items".to_string()]);
    assert_eq!(p.group, Some(0));
}

#[test]
fn non_colocated_joins_are_refused() {
    assert_refused(
        "SELECT * FROM orders o JOIN items i ON i.id = o.id",
        "tables \"orders\" and \"items\" are not joined on their shard keys",
    );
    assert_refused(
        "SELECT * FROM orders o JOIN users u ON u.id = o.note",
        "not co-located (different co-location groups)",
    );
    assert_refused(
        "SELECT * FROM orders a, orders b WHERE a.id = b.parent",
        "table \"orders\" is used twice without joining on its shard key",
    );
    // A join not on the key under OR is no join.
    assert_refused(
        "SELECT * FROM orders o JOIN items i ON (i.customer_id = o.customer_id OR i.x = 1)",
        "not joined on their shard keys",
    );
    // Different groups even with the same key value: different shards.
    assert_refused(
        "SELECT * FROM orders o, users u WHERE o.customer_id = 1 AND u.id = '1'",
        "different co-location groups",
    );
}

#[test]
fn outer_join_conditions_restrict_only_the_nullable_side() {
    assert_eq!(
        target(
            "SELECT * FROM orders o LEFT JOIN items i ON i.customer_id = o.customer_id AND i.customer_id = 5"
        ),
        FANOUT
    );
    assert_keyed(
        "SELECT * FROM orders o LEFT JOIN items i ON i.customer_id = o.customer_id WHERE o.customer_id = 5",
        &[lit("5")],
    );
    // The preserved side (items, of a RIGHT JOIN) is not restricted by the ON.
    assert_eq!(
        target(
            "SELECT * FROM orders o RIGHT JOIN items i ON i.customer_id = o.customer_id AND o.customer_id = 5"
        ),
        FANOUT
    );
}

#[test]
fn subqueries() {
    // An uncorrelated aggregate over all rows can't be answered shard by shard.
    assert_refused(
        "SELECT * FROM orders WHERE total > (SELECT avg(total) FROM orders)",
        "not",
    );
    // … unless everything is restricted to the same single key.
    assert_keyed(
        "SELECT * FROM orders WHERE customer_id = 5 AND total > (SELECT avg(total) FROM orders WHERE customer_id = 5)",
        &[lit("5")],
    );
    // Correlated on the key: evaluated per key, so per shard.
    assert_eq!(
        target("SELECT * FROM orders o WHERE EXISTS (SELECT 1 FROM items i WHERE i.customer_id = o.customer_id)"),
        FANOUT
    );
    assert_eq!(
        target("SELECT o.*, (SELECT count(*) FROM items i WHERE i.customer_id = o.customer_id) FROM orders o"),
        FANOUT
    );
    assert_keyed(
        "SELECT o.*, (SELECT max(x) FROM items i WHERE i.customer_id = o.customer_id) FROM orders o WHERE o.customer_id = 2",
        &[lit("2")],
    );
    // A pin inside NOT EXISTS restricts only the subquery's rows.
    assert_eq!(
        target("SELECT * FROM orders o WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.customer_id = o.customer_id AND i.customer_id = 5)"),
        FANOUT
    );
    // A semi-join on the key co-locates and carries pins.
    assert_keyed(
        "SELECT * FROM orders WHERE customer_id IN (SELECT customer_id FROM items WHERE customer_id = 4)",
        &[lit("4")],
    );
    assert_eq!(
        target(
            "SELECT * FROM orders WHERE customer_id IN (SELECT customer_id FROM items WHERE x > 1)"
        ),
        FANOUT
    );
    // A subquery on reference tables only is the same on every shard.
    assert_keyed(
        "SELECT * FROM orders WHERE customer_id = 1 AND country IN (SELECT code FROM countries WHERE eu)",
        &[lit("1")],
    );
    assert_eq!(
        target("SELECT * FROM orders WHERE country = (SELECT max(code) FROM countries)"),
        FANOUT
    );
    // An unqualified key name in a subquery over unknown tables is not ours.
    assert_eq!(
        target("SELECT * FROM orders o WHERE EXISTS (SELECT 1 FROM other_t WHERE customer_id = 5)"),
        FANOUT
    );
}

#[test]
fn scoping_of_unqualified_names_and_lateral() {
    // Inside the subquery, an unqualified customer_id is items': the
    // subquery is not correlated with orders, so they are not co-located.
    assert_refused(
        "SELECT * FROM orders WHERE EXISTS (SELECT 1 FROM items WHERE items.customer_id = customer_id)",
        "not joined on their shard keys",
    );
    assert_keyed(
        "SELECT * FROM orders a JOIN orders b ON a.customer_id = b.customer_id WHERE a.customer_id = 1",
        &[lit("1")],
    );
    // A LATERAL subquery correlated on the key may LIMIT per key.
    assert_eq!(
        target("SELECT * FROM orders o, LATERAL (SELECT * FROM items i WHERE i.customer_id = o.customer_id ORDER BY x LIMIT 1) x"),
        FANOUT
    );
    assert_eq!(
        target("SELECT * FROM orders o JOIN generate_series(1, 3) g ON g = o.total"),
        FANOUT
    );
    // Two unrelated pins: fine on one shard, refused by resolve_stmt on two.
    let p = plan1("SELECT * FROM orders o WHERE o.customer_id = 1 AND EXISTS (SELECT 1 FROM items WHERE customer_id = 2)");
    assert!(matches!(&p.target, Target::Keyed { keys, .. } if *keys == vec![lit("1"), lit("2")]));
    assert!(p
        .merge
        .unwrap()
        .unsupported
        .unwrap()
        .contains("not joined on their shard keys"));
}

#[test]
fn derived_tables_and_ctes() {
    assert_keyed(
        "SELECT * FROM (SELECT * FROM orders WHERE customer_id = 9) s",
        &[lit("9")],
    );
    assert_keyed(
        "SELECT * FROM (SELECT customer_id AS c, total FROM orders) s WHERE s.c = 4",
        &[lit("4")],
    );
    assert_keyed(
        "SELECT * FROM (SELECT customer_id, total FROM orders) AS s(cid, t) WHERE cid = 4",
        &[lit("4")],
    );
    // Positions under `*` are unknown: renamed columns expose nothing.
    assert_eq!(
        target("SELECT * FROM (SELECT * FROM orders) AS s(a, b) WHERE a = 4"),
        FANOUT
    );
    assert_keyed(
        "SELECT * FROM (SELECT customer_id, count(*) FROM orders GROUP BY customer_id) s WHERE s.customer_id = 3",
        &[lit("3")],
    );
    assert_refused(
        "SELECT * FROM (SELECT * FROM orders ORDER BY id LIMIT 10) s WHERE s.customer_id = 4",
        "LIMIT/OFFSET in a subquery",
    );
    assert_refused(
        "SELECT count(*) FROM (SELECT DISTINCT status FROM orders) s",
        "DISTINCT in a subquery",
    );
    assert_eq!(
        target("SELECT count(*) FROM (SELECT customer_id FROM orders GROUP BY customer_id) s"),
        FANOUT
    );
    assert_keyed(
        "WITH x AS (SELECT * FROM orders WHERE customer_id = 3) SELECT * FROM x",
        &[lit("3")],
    );
    assert_keyed(
        "WITH x AS (SELECT * FROM orders) SELECT * FROM x JOIN items i ON i.customer_id = x.customer_id WHERE x.customer_id = 6",
        &[lit("6")],
    );
    // A CTE shadows the table of the same name.
    assert_eq!(
        target("WITH orders AS (SELECT 1 AS a) SELECT * FROM orders"),
        Target::AnyShard
    );
    assert_refused(
        "WITH RECURSIVE t AS (SELECT id FROM orders WHERE id = 1 UNION ALL SELECT o.id FROM orders o JOIN t ON o.parent = t.id) SELECT * FROM t",
        "",
    );
}

#[test]
fn set_operations() {
    assert_keyed(
        "SELECT id FROM orders WHERE customer_id = 1 UNION ALL SELECT id FROM items WHERE customer_id = 2",
        &[lit("1"), lit("2")],
    );
    assert_eq!(
        target("SELECT id FROM orders UNION ALL SELECT id FROM items"),
        FANOUT
    );
    let p = plan1("SELECT id FROM orders UNION SELECT id FROM items");
    assert_eq!(p.target, FANOUT);
    assert!(p.merge.unwrap().distinct);
    assert_refused(
        "SELECT id FROM orders INTERSECT SELECT id FROM items",
        "INTERSECT across shards",
    );
    assert_refused(
        "SELECT count(*) FROM orders UNION ALL SELECT count(*) FROM items",
        "aggregate in a subquery",
    );
}

#[test]
fn merge_facts_of_the_top_level() {
    let p = plan1(
        "SELECT customer_id, count(*) FROM orders GROUP BY customer_id HAVING count(*) > 1 \
         ORDER BY 2 DESC, customer_id NULLS FIRST LIMIT 10 OFFSET $1",
    );
    assert_eq!(p.target, FANOUT);
    let m = p.merge.unwrap();
    assert_eq!(
        m.order_by,
        vec![
            OrderKey {
                expr: "2".into(),
                desc: true,
                nulls_first: true
            },
            OrderKey {
                expr: "customer_id".into(),
                desc: false,
                nulls_first: true
            },
        ]
    );
    assert_eq!(m.limit, Some(lit("10")));
    assert_eq!(m.offset, Some(KeySource::Param(1)));
    assert!(m.aggregates && m.group_by && m.having && !m.distinct);
    assert_eq!(m.unsupported, None);
    assert_eq!(m.key_type, Some(KeyType::Int8));
    let m = plan1("SELECT DISTINCT status FROM orders FETCH FIRST 5 ROWS ONLY")
        .merge
        .unwrap();
    assert!(m.distinct && !m.aggregates);
    assert_eq!(m.limit, Some(lit("5")));
}

#[test]
fn unmergeable_top_level_constructs() {
    assert_refused(
        "SELECT id, row_number() OVER (ORDER BY id) FROM orders",
        "window functions across shards",
    );
    assert_refused(
        "SELECT count(DISTINCT status) FROM orders",
        "aggregate with DISTINCT",
    );
    assert_eq!(
        target("SELECT count(DISTINCT customer_id) FROM orders"),
        FANOUT
    );
    // On one key, anything goes.
    assert_keyed(
        "SELECT id, row_number() OVER () FROM orders WHERE customer_id = 1",
        &[lit("1")],
    );
    // On several keys, the problem is kept for resolve_stmt.
    let p = plan1("SELECT id, rank() OVER (ORDER BY id) FROM orders WHERE customer_id IN (1, 2)");
    assert!(matches!(&p.target, Target::Keyed { keys, .. } if keys.len() == 2));
    assert_eq!(
        p.merge.unwrap().unsupported.as_deref(),
        Some("window functions across shards")
    );
}

#[test]
fn read_only_flags() {
    assert!(plan1("SELECT * FROM orders WHERE customer_id = 1").read_only);
    let p = plan1("SELECT * FROM orders WHERE customer_id = 1 FOR UPDATE");
    assert!(!p.read_only);
    assert!(matches!(p.target, Target::Keyed { .. }));
    assert!(!plan1("SELECT nextval('s')").read_only);
    assert!(!plan1("SELECT * FROM orders WHERE customer_id = setval('s', 1)").read_only);
    assert!(plan1("SELECT lower('X')").read_only);
}

#[test]
fn select_into_creates_a_table() {
    let p = plan1("SELECT * INTO t2 FROM countries");
    assert_eq!(p.kind, StmtKind::Ddl);
    assert_eq!(p.target, Target::AllShards(FanOut::Ddl));
    assert_refused("SELECT * INTO t2 FROM orders", "SELECT INTO");
    let p = plan1("SELECT * INTO TEMP t2 FROM countries");
    assert_eq!(p.target, Target::AnyShard);
    assert_eq!(p.session_state, Some("SELECT INTO TEMP"));
}
