//! docker-compose.yml and deploy/ kept correct without a Docker engine: the
//! config the compose file mounts passes `shardproxy check`, its shards are
//! the compose services (each with wal_level=logical), Prometheus scrapes
//! the port the proxy serves metrics on, every metric the Grafana
//! dashboard's queries name is one the proxy exports, and the demo runs the
//! same topology.

use shardproxy::config::Config;
use std::path::{Path, PathBuf};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn read(p: &str) -> String {
    std::fs::read_to_string(repo(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// The host of a postgres:// URL.
fn host(url: &str) -> &str {
    let rest = &url[url
        .rfind('@')
        .map_or(url.find("://").unwrap() + 3, |i| i + 1)..];
    rest.split([':', '/']).next().unwrap()
}

#[test]
fn compose_runs_three_logical_shards_behind_the_checked_config() {
    let compose = read("docker-compose.yml");
    let cfg = Config::load(&repo("shardmap/docker.toml")).unwrap();
    shardproxy::app::check(&cfg).unwrap();
    assert!(
        compose.contains("./shardmap/docker.toml:/etc/shardproxy/shardproxy.toml:ro"),
        "the proxy service must mount shardmap/docker.toml where the image reads it"
    );
    assert!(read("Dockerfile").contains("\"/etc/shardproxy/shardproxy.toml\""));
    assert_eq!(cfg.shards.len(), 3);
    for s in &cfg.shards {
        let service = host(&s.url);
        assert!(
            compose.contains(&format!("\n  {service}:\n    <<: *shard\n")),
            "shard {} points at {service}, which is not a compose shard service",
            s.name
        );
        assert!(
            compose.contains(&format!(
                "      {service}:\n        condition: service_healthy"
            )),
            "shardproxy must wait for {service}"
        );
    }
    // The anchor every shard service uses.
    let anchor =
        &compose[compose.find("x-shard: &shard").unwrap()..compose.find("services:").unwrap()];
    assert!(anchor.contains("wal_level=logical"), "{anchor}");
    assert!(anchor.contains("max_prepared_transactions="), "{anchor}");
    // The proxy's listen and metrics ports are published.
    let port = |addr: &str| addr.rsplit(':').next().unwrap().to_string();
    let metrics = port(cfg.metrics.listen.as_deref().unwrap());
    assert!(compose.contains(&format!("\"{metrics}:{metrics}\"")));
    assert!(compose.contains(&format!("\"{p}:{p}\"", p = port(&cfg.proxy.listen))));
    // Prometheus scrapes it there; Grafana reads Prometheus.
    assert!(read("deploy/prometheus/prometheus.yml").contains(&format!("\"shardproxy:{metrics}\"")));
    assert!(
        compose.contains("./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro")
    );
    assert!(compose.contains("./deploy/grafana/provisioning:/etc/grafana/provisioning:ro"));
    assert!(compose.contains("./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro"));
    assert!(
        read("deploy/grafana/provisioning/datasources/prometheus.yml")
            .contains("url: http://prometheus:9090")
    );
    assert!(
        read("deploy/grafana/provisioning/dashboards/shardproxy.yml")
            .contains("path: /var/lib/grafana/dashboards")
    );
}

/// Every `shardproxy_…` name in `expr`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("shardproxy_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.push(name);
    }
    out
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let text = read("deploy/grafana/dashboards/shardproxy.json");
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            assert_eq!(t["datasource"]["uid"], "prometheus", "{t}");
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 8, "{exprs:?}");
    let histograms = [shardproxy::metrics::QUERY_DURATION];
    let mut used = Vec::new();
    for e in &exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "no shardproxy metric in {e}");
        for n in names {
            let base = histograms
                .iter()
                .find(|h| {
                    [
                        format!("{h}_bucket"),
                        format!("{h}_sum"),
                        format!("{h}_count"),
                    ]
                    .contains(&n)
                })
                .map(|h| h.to_string())
                .unwrap_or(n.clone());
            assert!(
                shardproxy::metrics::ALL.contains(&base.as_str()),
                "the dashboard queries {n}, which the proxy does not export (src/metrics.rs)"
            );
            used.push(base);
        }
    }
    // What the issue asks the dashboard to show.
    for m in [
        shardproxy::metrics::LOAD_SHARE,
        shardproxy::metrics::QUERY_DURATION,
        shardproxy::metrics::POOL_IN_USE,
    ] {
        assert!(used.iter().any(|u| u == m), "the dashboard shows no {m}");
    }
}

#[test]
fn the_demo_runs_the_compose_topology() {
    let docker = Config::load(&repo("shardmap/docker.toml")).unwrap();
    let demo = Config::load(&repo("shardmap/demo.toml")).unwrap();
    assert_eq!(
        shardproxy::control::cluster::demo::DemoOptions::default().shards,
        docker.shards.len()
    );
    assert_eq!(demo.shards.len(), docker.shards.len());
    let names = |c: &Config| c.shards.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&demo), names(&docker));
    assert_eq!(demo.tables, docker.tables);
}
