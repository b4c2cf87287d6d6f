//! pgbench through the proxy on three real shards, with a config that sets
//! nothing about two-phase commit: `pgbench -i` (DDL, COPY
//! without a column list inside a transaction spanning every shard, VACUUM,
//! primary keys) must complete with every row on the shard that owns its key,
//! then pgbench's built-in select-only script (`-S -M prepared`, 4 clients;
//! it reads the scale with a fan-out `count(*)` the proxy merges) must run
//! with zero failed transactions and the right scaling factor.
//! Scale 10 (1,000,000 accounts; `PGBENCH_SCALE` overrides it).

mod common;

use common::routed::*;
use shardproxy::control::cluster::LocalCluster;
use std::process::Command;

const TABLES: &str = "\
[[tables]]\nname = \"pgbench_accounts\"\nshard_key = \"aid\"\nkey_type = \"integer\"\n\n\
[[tables]]\nname = \"pgbench_branches\"\nshard_key = \"bid\"\nkey_type = \"integer\"\n\n\
[[tables]]\nname = \"pgbench_tellers\"\nshard_key = \"tid\"\nkey_type = \"integer\"\n\n\
[[tables]]\nname = \"pgbench_history\"\nshard_key = \"aid\"\nkey_type = \"integer\"\n";

fn pgbench(r: &Routed, args: &[&str]) -> String {
    let bin = LocalCluster::bin_dir().unwrap().join("pgbench");
    let port = r.port.to_string();
    let out = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &port, "-U", APP_USER])
        .args(args)
        .arg("postgres")
        .env("PGPASSWORD", APP_PW)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgbench {args:?} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_init_and_select_only_through_the_proxy() {
    let scale: i64 = std::env::var("PGBENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    // A fresh config: two-phase commit is on by default.
    let r = Routed::start_fresh(3, false, TABLES).await;
    let started = std::time::Instant::now();
    let init = tokio::task::block_in_place(|| pgbench(&r, &["-i", "-s", &scale.to_string(), "-q"]));
    eprintln!(
        "pgbench -i -s {scale} through the proxy: {:?}",
        started.elapsed()
    );
    assert!(init.contains("done"), "{init}");

    let shards = r.shard_clients().await;
    assert_eq!(
        assert_placement(&r, &shards, "pgbench_accounts", "aid").await,
        100_000 * scale
    );
    assert_eq!(
        assert_placement(&r, &shards, "pgbench_branches", "bid").await,
        scale
    );
    assert_eq!(
        assert_placement(&r, &shards, "pgbench_tellers", "tid").await,
        10 * scale
    );
    let per_shard = counts_per_shard(&shards, "pgbench_accounts").await;
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");
    // Primary keys were created on every shard.
    for c in &shards {
        let n: i64 = c
            .query_one(
                "select count(*) from pg_indexes where indexname = 'pgbench_accounts_pkey'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
    }

    // The built-in -S script first reads the scale with `select count(*)
    // from pgbench_branches`, a fan-out aggregate the proxy merges: the
    // scaling factor pgbench reports is the whole table's count (one row
    // per shard would make it read the first shard's count instead).
    let run = tokio::task::block_in_place(|| {
        pgbench(
            &r,
            &[
                "-n", "-S", "-M", "prepared", "-c", "4", "-j", "2", "-T", "5",
            ],
        )
    });
    assert!(
        run.lines()
            .any(|l| l.trim() == format!("scaling factor: {scale}")),
        "{run}"
    );
    eprintln!("{run}");
    let processed = run
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no transaction count in:\n{run}"));
    assert!(processed > 100, "{run}");
    let failed = run
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert_eq!(failed, 0, "{run}");
}
