//! Load accounting through the proxy: a known skewed workload (one key takes
//! 30% of the statements) over four shards, and `SHOW HOT` must rank that key
//! and its hash interval first with their true shares, counted the same
//! whether statements came as simple queries or prepared statements.

mod common;

use common::proxy::*;
use common::routed::text_rows;
use common::*;
use std::collections::HashMap;
use std::time::Duration;

const TABLE: &str = "[[tables]]\nname = \"kv\"\nshard_key = \"k\"\n";
const HOT: i64 = 7;

/// Four databases of one cluster as shards s0..s3, behind a proxy with `root`.
async fn four_shards(c: &TempCluster, root: &str, fresh: bool) -> TestProxy {
    let shards: Vec<(String, String)> = (0..4)
        .map(|i| {
            if fresh {
                psql(&c.url("postgres"), &format!("CREATE DATABASE db{i}"));
            }
            (format!("s{i}"), c.url(&format!("db{i}")))
        })
        .collect();
    let shards: Vec<(&str, String)> = shards
        .iter()
        .map(|(n, u)| (n.as_str(), u.clone()))
        .collect();
    start_proxy_with(&shards, root, TABLE).await
}

fn admin_url(p: &TestProxy) -> String {
    format!("postgres://admin:admin@127.0.0.1:{}/shardproxy", p.port())
}

/// The statements' keys: every tenth statement in three goes to `HOT`, the
/// others cycle over keys 100..600.
fn workload(n: usize) -> Vec<i64> {
    (0..n)
        .map(|i| {
            if i % 10 < 3 {
                HOT
            } else {
                100 + (i as i64 * 37) % 500
            }
        })
        .collect()
}

/// The SHOW HOT rows of `kind`.
fn of_kind<'a>(rows: &'a [Vec<Option<String>>], kind: &str) -> Vec<&'a Vec<Option<String>>> {
    rows.iter()
        .filter(|r| r[0].as_deref() == Some(kind))
        .collect()
}

fn share(row: &[Option<String>]) -> f64 {
    row[5]
        .as_deref()
        .unwrap()
        .trim_end_matches('%')
        .parse::<f64>()
        .unwrap()
        / 100.0
}

/// SHOW HOT once the window holds at least `statements` (the tick adds the
/// pools' counters every second).
async fn show_hot_after(
    admin: &tokio_postgres::Client,
    statements: u64,
) -> Vec<Vec<Option<String>>> {
    for _ in 0..50 {
        let rows = text_rows(admin, "SHOW HOT").await;
        let window: u64 = rows[0][4].as_deref().unwrap().parse().unwrap();
        if window >= statements {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("SHOW HOT never reached {statements} statements");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_hot_ranks_the_hot_key_and_interval_first_with_true_shares() {
    within(90, async {
        let c = temp_cluster();
        let mport = shardproxy::control::cluster::free_port();
        let p = four_shards(&c, &format!("metrics.listen = \"127.0.0.1:{mport}\""), true).await;
        let setup = connect(&p.url()).await;
        setup
            .batch_execute("CREATE TABLE kv (k bigint PRIMARY KEY, v bigint NOT NULL DEFAULT 0)")
            .await
            .unwrap();
        let rows: Vec<String> = (1..=600).map(|k| format!("({k})")).collect();
        setup
            .batch_execute(&format!("INSERT INTO kv (k) VALUES {}", rows.join(",")))
            .await
            .unwrap();
        drop(setup);

        // Four clients, half the statements as simple queries with literal
        // keys and half as prepared statements with a bound key.
        let keys = workload(4000);
        let mut tasks = Vec::new();
        for (i, part) in keys.chunks(1000).enumerate() {
            let part = part.to_vec();
            let url = p.url();
            tasks.push(tokio::spawn(async move {
                let c = connect(&url).await;
                let read = c.prepare("SELECT v FROM kv WHERE k = $1").await.unwrap();
                for (j, k) in part.into_iter().enumerate() {
                    if (i + j) % 2 == 0 {
                        c.simple_query(&format!("UPDATE kv SET v = v + 1 WHERE k = {k}"))
                            .await
                            .unwrap();
                    } else {
                        c.query_one(&read, &[&k]).await.unwrap();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }

        // The truth: what the proxy relayed per shard (SHOW STATS), and
        // where the workload's keys lie in the running map.
        let admin = connect(&admin_url(&p)).await;
        let stats = text_rows(&admin, "SHOW STATS").await;
        let relayed: u64 = stats
            .iter()
            .map(|r| r[1].as_deref().unwrap().parse::<u64>().unwrap())
            .sum();
        let map = p.proxy.runtime().map.clone();
        let mut per_interval: HashMap<(u64, u64), u64> = HashMap::new();
        for &k in &keys {
            let h = shardproxy::data::router::hash_key(&shardproxy::data::router::KeyValue::Int(k))
                .unwrap();
            let iv = map.interval_of(0, h);
            *per_interval.entry((iv.lo, iv.hi)).or_default() += 1;
        }
        let (&(lo, hi), &hot_hits) = per_interval.iter().max_by_key(|(_, n)| **n).unwrap();
        let hot_interval = shardproxy::data::router::HashInterval { lo, hi, shard: 0 }.range_text();
        let hot_shard = format!(
            "s{}",
            map.shard_for(0, &shardproxy::data::router::KeyValue::Int(HOT))
        );

        // The sessions merged their counts as they ended; wait for the
        // tick to have added every relayed statement to the window.
        let rows = show_hot_after(&admin, relayed).await;
        let total: u64 = rows[0][4].as_deref().unwrap().parse().unwrap();
        assert_eq!(total, relayed, "{rows:?}");
        let truth = |n: u64| n as f64 / relayed as f64;

        let key_rows = of_kind(&rows, "key");
        assert_eq!(key_rows[0][2].as_deref(), Some("7"), "{rows:?}");
        assert_eq!(key_rows[0][3].as_deref(), Some(hot_shard.as_str()));
        assert!((share(key_rows[0]) - truth(1200)).abs() < 0.03, "{rows:?}");
        let interval_rows = of_kind(&rows, "interval");
        assert_eq!(
            interval_rows[0][2].as_deref(),
            Some(hot_interval.as_str()),
            "{rows:?}"
        );
        assert_eq!(interval_rows[0][3].as_deref(), Some(hot_shard.as_str()));
        assert!(
            (share(interval_rows[0]) - truth(hot_hits)).abs() < 0.03,
            "{rows:?}"
        );
        let shard_rows = of_kind(&rows, "shard");
        assert_eq!(shard_rows.len(), 4);
        assert_eq!(
            shard_rows[0][2].as_deref(),
            Some(hot_shard.as_str()),
            "{rows:?}"
        );
        let shares: f64 = shard_rows.iter().map(|r| share(r)).sum();
        assert!((shares - 1.0).abs() < 0.01, "{rows:?}");
        // Rows: every UPDATE and SELECT touched one row.
        let counted_rows: u64 = rows[0][6].as_deref().unwrap().parse().unwrap();
        assert!(counted_rows >= 4000, "{rows:?}");

        // The advice starts from the same load: step 0 is what SHOW HOT says.
        let advice = text_rows(&admin, "SHOW REBALANCE ADVICE").await;
        assert_eq!(advice[0][1].as_deref(), Some("measured"), "{advice:?}");
        assert!(advice[0][2]
            .as_deref()
            .unwrap()
            .starts_with(&format!("{relayed} statements")));
        assert!(
            advice[0][6].as_deref().unwrap().starts_with(&hot_shard),
            "{advice:?}"
        );
        assert_eq!(
            advice.last().unwrap()[1].as_deref(),
            Some("stop"),
            "{advice:?}"
        );

        // The metrics say the same, with no per-key label.
        // (Sampled once a second from the window, which itself takes the
        // pools' counters once a second: wait for a sample of the whole run.)
        let mut text = String::new();
        for _ in 0..40 {
            text = http_get(mport, "/metrics").await;
            let share = sample(&text, "shardproxy_hot_key_share{group=\"default\"}").unwrap_or(0.0);
            if (share - truth(1200)).abs() < 0.03 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let hot_key = sample(&text, "shardproxy_hot_key_share{group=\"default\"}").unwrap();
        assert!((hot_key - truth(1200)).abs() < 0.03, "{text}");
        let hot_load = sample(
            &text,
            &format!("shardproxy_shard_load_share{{shard=\"{hot_shard}\"}}"),
        )
        .unwrap();
        assert!((hot_load - share(shard_rows[0])).abs() < 0.01, "{text}");
        assert!(
            sample(&text, "shardproxy_load_imbalance").unwrap() > 1.2,
            "{text}"
        );
        let bucket = format!(
            "{:x}",
            shardproxy::data::router::hash_key(&shardproxy::data::router::KeyValue::Int(HOT))
                .unwrap()
                >> 60
        );
        let keyed = sample(
            &text,
            &format!("shardproxy_keyed_statements_total{{group=\"default\",bucket=\"{bucket}\"}}"),
        )
        .unwrap();
        assert!(keyed >= 1200.0, "{text}");
        assert!(!text.contains("key=\""), "no per-key labels: {text}");

        // With hot.enabled = false the shards are still measured, keys not.
        let off = four_shards(&c, "hot.enabled = false", false).await;
        let client = connect(&off.url()).await;
        for k in workload(200) {
            client
                .simple_query(&format!("SELECT v FROM kv WHERE k = {k}"))
                .await
                .unwrap();
        }
        drop(client);
        let admin_off = connect(&admin_url(&off)).await;
        let rows = show_hot_after(&admin_off, 200).await;
        assert!(of_kind(&rows, "key").is_empty(), "{rows:?}");
        assert!(of_kind(&rows, "interval").is_empty(), "{rows:?}");
        assert_eq!(of_kind(&rows, "shard").len(), 4);
        assert!(rows[0][8].as_deref().unwrap().contains("off"), "{rows:?}");
    })
    .await;
}
