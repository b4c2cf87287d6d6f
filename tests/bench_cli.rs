//! `shardproxy bench` as a user runs it: against a proxy over two shards for
//! a few seconds, with --init, a mix of every operation, a Zipf workload,
//! the admin console for per-shard load and --compare against direct
//! Postgres; the JSON must be valid and complete and the SVG must parse.

mod common;

use common::proxy::*;
use common::*;

const TABLES: &str = "[[tables]]\nname = \"bench_kv\"\nshard_key = \"k\"\n\
                      [[tables]]\nname = \"bench_log\"\nshard_key = \"k\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_a_mixed_zipf_workload_and_writes_json_and_svg() {
    within(120, async {
        let c = temp_cluster();
        for db in ["db0", "db1", "direct"] {
            psql(&c.url("postgres"), &format!("CREATE DATABASE {db}"));
        }
        let p = start_proxy_with(&[("s0", c.url("db0")), ("s1", c.url("db1"))], "", TABLES).await;
        let dir = temp_dir();
        let (json, svg) = (dir.path().join("run.json"), dir.path().join("run.svg"));
        let args: Vec<String> = [
            "bench",
            "--url",
            &p.url(),
            "--admin-url",
            &format!("postgres://admin:admin@127.0.0.1:{}/shardproxy", p.port()),
            "--compare",
            &c.url("direct"),
            "--init",
            "--rows",
            "3000",
            "--duration",
            "3",
            "--warmup",
            "0",
            "--connections",
            "4",
            "--mix",
            "read=70,write=20,insert=5,cross=5",
            "--out",
            json.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
            "--quiet",
            "zipf",
            "--s",
            "1.1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardproxy"))
            .args(&args)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("ops/s"), "{stdout}");
        assert!(stdout.contains("throughput ratio"), "{stdout}");
        assert!(stdout.contains("per-shard load"), "{stdout}");

        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(report["workload"]["kind"], "zipf");
        let result = &report["result"];
        assert!(
            result["target"].as_str().unwrap().contains("***"),
            "password shown: {result}"
        );
        let ops = result["ops"].as_u64().unwrap();
        assert!(ops > 100, "{result}");
        assert_eq!(result["errors"].as_u64(), Some(0), "{result}");
        let lat = &result["latency_us"];
        assert!(lat["p50"].as_u64().unwrap() <= lat["p99"].as_u64().unwrap());
        assert!(lat["p99"].as_u64().unwrap() <= lat["max"].as_u64().unwrap());
        let kinds: Vec<&str> = result["by_op"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["op"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["read", "write", "insert", "cross"], "{result}");
        let series = result["series"].as_array().unwrap();
        assert_eq!(series.len(), 3, "{result}");
        assert_eq!(
            series
                .iter()
                .map(|s| s["ops"].as_u64().unwrap())
                .sum::<u64>(),
            ops
        );
        let shares = result["shard_share"].as_array().unwrap();
        assert_eq!(shares.len(), 2, "{result}");
        let sum: f64 = shares.iter().map(|s| s["share"].as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-6, "{result}");
        assert!(
            series
                .iter()
                .all(|s| s["shard_share"].as_array().unwrap().len() == 2),
            "{result}"
        );
        let compare = &report["compare"];
        assert!(
            compare["result"]["ops"].as_u64().unwrap() > 100,
            "{compare}"
        );
        assert!(compare["ratio"].as_f64().unwrap() > 0.0);
        // The rows the inserts wrote reached the shards.
        let logged: i64 = ["db0", "db1"]
            .iter()
            .map(|db| {
                psql(&c.url(db), "SELECT count(*) FROM bench_log")
                    .parse::<i64>()
                    .unwrap()
            })
            .sum();
        assert!(logged > 0);

        let text = std::fs::read_to_string(&svg).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap();
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let lines = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline") || n.has_tag_name("path"))
            .count();
        assert!(lines >= 3, "{lines} lines in the SVG");
        assert!(text.contains("Per-shard load"));
    })
    .await;
}
