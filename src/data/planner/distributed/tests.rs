//! What the distributed planner pushes to the shards and merges, per
//! statement shape (the merge itself is tested against real Postgres in
//! tests/merge_differential.rs).

use super::spec::*;
use crate::data::planner::tests::{plan1, target};
use crate::data::planner::Target;

fn dist(sql: &str) -> DistPlan {
    let p = plan1(sql);
    match p.dist {
        Some(d) => (*d.0).clone(),
        None => panic!("{sql}: no distributed plan ({:?})", p.target),
    }
}

#[track_caller]
fn refused(sql: &str, needle: &str) {
    match target(sql) {
        Target::Refused { sqlstate, message } => {
            assert_eq!(sqlstate, "0A000");
            assert!(message.contains(needle), "{sql}: {message}");
        }
        t => panic!("{sql}: expected a refusal, got {t:?}"),
    }
}

#[test]
fn plain_fan_out_reads_need_no_merge() {
    for sql in [
        "select * from orders where total > 5",
        "select o.*, c.name from orders o join customers c on c.id = o.customer_id",
        "select customer_id, count(*) from orders group by customer_id",
        "select distinct customer_id, status from orders",
        "select a from orders union all select b from orders",
        "select customer_id, sum(total) over (partition by customer_id) from orders",
    ] {
        let p = plan1(sql);
        assert!(matches!(p.target, Target::AllShards(_)), "{sql}");
        assert!(p.dist.is_none(), "{sql}: {:?}", p.dist);
    }
}

#[test]
fn order_by_and_limit_push_down_with_hidden_keys() {
    let d =
        dist("select order_id, total from orders order by created_at desc, 1 limit 10 offset 5");
    assert_eq!(
        d.shard_sql,
        "SELECT order_id, total, created_at AS __sp_0, order_id AS __sp_1 FROM orders \
         ORDER BY __sp_0 DESC, __sp_1 LIMIT 15"
    );
    assert!(d.visible_prefix);
    assert_eq!(d.limit, Some(Count::Value(10)));
    assert_eq!(d.offset, Some(Count::Value(5)));
    let Shape::Rows { order, distinct } = &d.shape else {
        panic!()
    };
    assert_eq!(order.len(), 2);
    assert!(order[0].desc && order[0].nulls_first);
    assert!(!order[1].desc && !order[1].nulls_first);
    assert_eq!(*distinct, RowDistinct::None);
    // Parameters: the shard limit is a new parameter bound per execution.
    let d = dist("select * from orders where total > $1 order by total limit $2 offset $3");
    assert!(
        d.shard_sql.ends_with("ORDER BY __sp_0 LIMIT $4"),
        "{}",
        d.shard_sql
    );
    assert_eq!(d.shard_limit_param, Some(4));
    assert_eq!(d.params, 3);
    // OFFSET without LIMIT reaches no shard.
    let d = dist("select * from orders offset 3");
    assert_eq!(d.shard_sql, "SELECT * FROM orders");
}

#[test]
fn distinct_merges_unless_the_key_is_selected() {
    let d = dist("select distinct status from orders order by status");
    assert_eq!(
        d.shard_sql,
        "SELECT DISTINCT status, status AS __sp_0, status FROM orders ORDER BY __sp_0"
    );
    assert!(matches!(
        d.shape,
        Shape::Rows {
            distinct: RowDistinct::All { block: 1 },
            ..
        }
    ));
    let d =
        dist("select distinct on (status) status, total from orders order by status, total desc");
    assert!(
        d.shard_sql.ends_with("ORDER BY status, total DESC"),
        "{}",
        d.shard_sql
    );
    assert!(matches!(
        d.shape,
        Shape::Rows {
            distinct: RowDistinct::On(_),
            ..
        }
    ));
    assert!(plan1("select distinct on (customer_id) * from orders")
        .dist
        .is_none());
}

#[test]
fn aggregates_split_into_partials() {
    let d = dist(
        "select status, count(*), avg(total), max(total) - min(total) as spread \
         from orders where total > 0 group by status having sum(total) > 100 \
         order by count(*) desc limit 3",
    );
    assert_eq!(
        d.shard_sql,
        "SELECT status AS __sp_0, status AS __sp_1, count(*) AS __sp_2, sum(total) AS __sp_3, \
         count(total) AS __sp_4, max(total) AS __sp_5, min(total) AS __sp_6 FROM orders \
         WHERE total > 0 GROUP BY status"
    );
    assert!(!d.visible_prefix);
    assert_eq!(d.cols[1].format, ColFormat::Client(0));
    let Shape::Groups(g) = &d.shape else { panic!() };
    assert_eq!(g.keys, vec![0]);
    let funcs: Vec<AggFunc> = g.aggs.iter().map(|a| a.func).collect();
    assert_eq!(
        funcs,
        vec![
            AggFunc::Count,
            AggFunc::Avg,
            AggFunc::Max,
            AggFunc::Min,
            AggFunc::Sum
        ]
    );
    assert_eq!(g.outputs[0], MExpr::Carry(1));
    assert_eq!(g.outputs[1], MExpr::Agg(0));
    assert!(matches!(g.outputs[3], MExpr::Binary(BinOp::Sub, _, _)));
    assert!(g.having.is_some());
    assert_eq!(g.order.len(), 1);
    assert_eq!(d.limit, Some(Count::Value(3)));
    // The demo's "top customers": grouped by the key, the shards do it all.
    let d = dist(
        "select customer_id, count(*) from orders group by customer_id \
         order by count(*) desc limit 5",
    );
    assert!(matches!(d.shape, Shape::Rows { .. }));
    assert!(
        d.shard_sql.contains("GROUP BY customer_id"),
        "{}",
        d.shard_sql
    );
    assert!(d.shard_sql.ends_with("LIMIT 5"), "{}", d.shard_sql);
}

#[test]
fn expressions_and_casts_over_aggregates() {
    let d = dist("select count(*)::int, round(avg(total), 3), sum(total) / count(*), count(*) * 2 + 1 from orders");
    let Shape::Groups(g) = &d.shape else { panic!() };
    assert!(matches!(g.outputs[0], MExpr::Cast(_, CastTo::Int4)));
    assert!(matches!(g.outputs[1], MExpr::Func(Func::Round, _)));
    assert!(g.keys.is_empty());
    // Aggregate-free parts are computed by the shards.
    let d = dist("select status, count(*) + length(status) from orders group by status");
    assert!(
        d.shard_sql.contains("length(status) AS __sp_"),
        "{}",
        d.shard_sql
    );
    let d = dist("select sum(total)::numeric(20,4) from orders");
    let Shape::Groups(g) = &d.shape else { panic!() };
    assert_eq!(
        g.outputs[0],
        MExpr::Cast(Box::new(MExpr::Agg(0)), CastTo::Numeric((20 << 16 | 4) + 4))
    );
}

#[test]
fn grouping_sets_group_by_grouping_id() {
    let d = dist("select status, count(*) from orders group by rollup (status)");
    assert!(
        d.shard_sql.contains("GROUPING(status) AS __sp_1"),
        "{}",
        d.shard_sql
    );
    let Shape::Groups(g) = &d.shape else { panic!() };
    assert_eq!(g.keys.len(), 2);
}

#[test]
fn unsupported_merges_are_refused_by_name() {
    refused(
        "select percentile_cont(0.5) within group (order by total) from orders",
        "percentile_cont",
    );
    refused("select count(distinct status) from orders", "DISTINCT");
    refused("select count(*) over () from orders", "window");
    refused("select string_agg(status, ',') from orders", "string_agg");
    refused(
        "select a from orders intersect select a from orders",
        "INTERSECT",
    );
    refused(
        "select * from orders order by 1 fetch first 3 rows with ties",
        "WITH TIES",
    );
    refused("select * from orders limit (select 1)", "LIMIT");
    refused(
        "select max(total) filter (where total > 1) || 'x' from orders",
        "||",
    );
}

#[test]
fn group_by_an_alias_is_checked_against_the_columns() {
    let d = dist("select upper(status) as s, count(*) from orders group by s");
    assert!(
        d.shard_sql.contains("GROUP BY upper(status)"),
        "{}",
        d.shard_sql
    );
    assert_eq!(
        d.alias_checks,
        vec![("s".to_string(), "SELECT \"s\" FROM orders".to_string())]
    );
}

#[test]
fn keyed_in_lists_keep_their_merge() {
    let p = plan1("select * from orders where customer_id in (1, 2, 3) order by total limit 2");
    assert!(matches!(p.target, Target::Keyed { .. }));
    assert!(p.dist.is_some());
    // A merge the proxy cannot do stays refused when the keys span shards.
    let p = plan1("select count(distinct status) from orders where customer_id in (1, 2)");
    assert!(p.dist.is_none());
    assert!(p.merge.unwrap().unsupported.is_some());
}

#[test]
fn unions_are_wrapped() {
    let d =
        dist("select status from orders union select status from items order by status limit 4");
    assert_eq!(
        d.shard_sql,
        "SELECT DISTINCT *, status AS __sp_0, * FROM (SELECT status FROM orders UNION \
         SELECT status FROM items) AS __sp_u ORDER BY __sp_0 LIMIT 4"
    );
}
