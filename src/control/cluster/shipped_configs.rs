//! Checks that the config files shipped under shardmap/ load and validate, that
//! example.toml documents every key the config accepts, and that demo.toml is
//! what `shardproxy demo` generates.

use crate::config::Config;
use std::path::{Path, PathBuf};

fn shardmap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("shardmap")
        .join(name)
}

#[test]
fn every_shipped_config_loads() {
    let mut seen = 0;
    for entry in std::fs::read_dir(shardmap("")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(
        seen >= 3,
        "expected example, demo and docker configs, found {seen}"
    );
}

/// Collects `section.key` for every key in a TOML value (arrays of tables by their first element).
fn keys(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if matches!(v, toml::Value::Table(_) | toml::Value::Array(_)) {
                    keys(&name, v, out);
                } else {
                    out.push(name);
                }
            }
        }
        toml::Value::Array(a) => {
            for item in a {
                keys(prefix, item, out);
            }
        }
        _ => {}
    }
}

#[test]
fn example_documents_every_key() {
    let path = shardmap("example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut cfg = Config::load(&path).unwrap();
    // Fill the optional keys the example leaves commented out, so they serialise.
    cfg.proxy.tls_cert = Some("c".into());
    cfg.proxy.tls_key = Some("k".into());
    cfg.sharding.map_file = Some("m".into());
    cfg.users[0].target_session = Some("primary".into());
    let value = toml::Value::try_from(&cfg).unwrap();
    let mut all = Vec::new();
    keys("", &value, &mut all);
    assert!(all.len() > 30, "{all:?}");
    for key in all {
        let bare = key.rsplit('.').next().unwrap();
        // Each key appears as `key = ...`, possibly commented out, after a comment line.
        let pos = text
            .lines()
            .position(|l| {
                l.trim_start_matches(['#', ' '])
                    .starts_with(&format!("{bare} ="))
            })
            .unwrap_or_else(|| panic!("example.toml does not mention {key}"));
        let before = text.lines().nth(pos.saturating_sub(1)).unwrap_or("");
        assert!(
            before.trim_start().starts_with('#') || text.lines().nth(pos).unwrap().contains('#'),
            "{key} has no comment above it"
        );
    }
}

#[test]
fn demo_toml_is_what_the_demo_generates() {
    let shipped = Config::load(&shardmap("demo.toml")).unwrap();
    let generated = Config::parse(
        &super::demo::config_text(6432, &[6433, 6434, 6435]),
        "generated",
    )
    .unwrap();
    assert_eq!(
        Config {
            source: None,
            ..shipped
        },
        generated
    );
}
