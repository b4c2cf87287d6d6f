//! The routing views of the admin console (`SHOW SHARDMAP`, `SHOW ROUTE`)
//! checked against the running `ShardMap`, and the `shardproxy plan
//! add-shard` command run as a binary. No shard is contacted: these read the
//! map only (the shard URLs point at closed ports).

mod common;

use common::routed::{config_text, text_rows};
use common::*;
use shardproxy::control::cluster::free_port;
use shardproxy::data::router::{hash_key, KeyValue, SHOW_SHARDMAP_COLUMNS};
use tokio_postgres::SimpleQueryMessage;

const TABLES: &str = "\
[[tables]]\nname = \"orders\"\nshard_key = \"customer_id\"\nkey_type = \"bigint\"\n\n\
[[tables]]\nname = \"tenants\"\nshard_key = \"slug\"\nkey_type = \"text\"\ncolocation = \"tenant\"\n\n\
[[tables]]\nname = \"countries\"\nreference = true\n\n\
[[lookup]]\nkey = \"42\"\nshard = \"s2\"\n\n\
[[lookup]]\nkey = \"acme\"\nshard = \"s0\"\ncolocation = \"tenant\"\n";

async fn columns(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    for m in c.simple_query(sql).await.unwrap() {
        if let SimpleQueryMessage::RowDescription(d) = m {
            return d.iter().map(|c| c.name().to_string()).collect();
        }
    }
    panic!("{sql}: no RowDescription");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_shardmap_and_show_route() {
    let shards: Vec<String> = (0..3)
        .map(|_| format!("postgres://postgres@127.0.0.1:{}/postgres", free_port()))
        .collect();
    let dir = temp_dir();
    let path = dir.path().join("shardproxy.toml");
    std::fs::write(&path, config_text(free_port(), &shards, false, TABLES)).unwrap();
    let config = shardproxy::config::Config::load(&path).unwrap();
    let b = shardproxy::app::bind(config).await.unwrap();
    let proxy = b.proxy.clone();
    tokio::spawn(shardproxy::runtime::listener::serve(b.proxy, b.listener));
    let admin = connect(&format!(
        "postgres://admin:adminpw@127.0.0.1:{}/shardproxy",
        b.addr.port()
    ))
    .await;
    let map = proxy.runtime().map.clone();

    // SHOW SHARDMAP: exactly the map's rows, one per (group, shard).
    assert_eq!(
        columns(&admin, "SHOW SHARDMAP").await,
        SHOW_SHARDMAP_COLUMNS
    );
    let rows = text_rows(&admin, "SHOW SHARDMAP").await;
    let want: Vec<Vec<Option<String>>> = map
        .show_rows()
        .into_iter()
        .map(|r| r.into_iter().map(Some).collect())
        .collect();
    assert_eq!(rows, want);
    assert_eq!(rows.len(), map.groups().len() * 3);
    let pinned: Vec<_> = rows
        .iter()
        .filter(|r| r[5].as_deref() == Some("42") || r[5].as_deref() == Some("acme"))
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert_eq!(
        pinned,
        vec![
            ("default".into(), "s2".into()),
            ("tenant".into(), "s0".into())
        ]
    );

    // SHOW ROUTE for hashed keys: group, signed hash, hex, owner, interval.
    assert_eq!(
        columns(&admin, "SHOW ROUTE orders 1").await,
        ["table", "key", "group", "hash", "hash_hex", "shard", "via"]
    );
    for k in [1i64, -7, 1_000_000_007, i64::MIN] {
        let rows = text_rows(&admin, &format!("SHOW ROUTE orders '{k}'")).await;
        let h = hash_key(&KeyValue::Int(k)).unwrap();
        let owner = map.shard_for(0, &KeyValue::Int(k));
        let row: Vec<String> = rows[0].iter().map(|v| v.clone().unwrap()).collect();
        assert_eq!(
            row[..6],
            [
                "orders".to_string(),
                k.to_string(),
                "default".into(),
                (h as i64).to_string(),
                format!("{h:016x}"),
                format!("s{owner}"),
            ]
        );
        let iv = map
            .merged_intervals(0)
            .into_iter()
            .find(|iv| iv.contains(h))
            .unwrap();
        assert_eq!(iv.shard, owner);
        assert_eq!(row[6], format!("hash interval {}", iv.range_text()));
    }
    // Text keys of another co-location group.
    let g = map.group_index("tenant").unwrap();
    let rows = text_rows(&admin, "SHOW ROUTE tenants 'globex'").await;
    let h = hash_key(&KeyValue::Text("globex")).unwrap();
    assert_eq!(rows[0][2].as_deref(), Some("tenant"));
    assert_eq!(rows[0][3], Some((h as i64).to_string()));
    let owner = map.shard_for(g, &KeyValue::Text("globex"));
    assert_eq!(rows[0][5], Some(format!("s{owner}")));
    // Pinned keys say so, and go to their pin.
    let rows = text_rows(&admin, "SHOW ROUTE orders 42").await;
    assert_eq!(rows[0][5].as_deref(), Some("s2"));
    assert_eq!(rows[0][6].as_deref(), Some("lookup pin"));
    let rows = text_rows(&admin, "SHOW ROUTE tenants acme").await;
    assert_eq!(rows[0][5].as_deref(), Some("s0"));
    assert_eq!(rows[0][6].as_deref(), Some("lookup pin"));
    // Reference tables live everywhere.
    let rows = text_rows(&admin, "SHOW ROUTE countries 'x'").await;
    assert_eq!(rows[0][5].as_deref(), Some("s0, s1, s2"));
    assert_eq!(rows[0][3], None);
    // Errors: unknown table, a key of the wrong type, missing arguments.
    for (sql, code) in [
        ("SHOW ROUTE nope 1", "42P01"),
        ("SHOW ROUTE orders abc", "22P02"),
        ("SHOW ROUTE orders", "42601"),
    ] {
        let e = admin.simple_query(sql).await.unwrap_err();
        assert_eq!(e.code().unwrap().code(), code, "{sql}: {e:?}");
    }
    // Both are listed by SHOW HELP.
    let help = text_rows(&admin, "SHOW HELP").await;
    for c in ["SHOW SHARDMAP", "SHOW ROUTE <table> <key>"] {
        assert!(help.iter().any(|r| r[0].as_deref() == Some(c)), "{c}");
    }
}

#[test]
fn plan_add_shard_cli_reports_what_moves() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/shardmap/example.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardproxy"))
        .args(["plan", "add-shard", "--config", example, "shard-new"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let config = shardproxy::config::Config::load(std::path::Path::new(example)).unwrap();
    let map = shardproxy::data::router::ShardMap::from_config(&config).unwrap();
    let plan = map.plan_add_shard("shard-new");
    assert_eq!(text, plan.render());
    let n = config.shards.len();
    assert!(
        text.contains(&format!(
            "consistent hashing moves {:.2}% of keys, all to 'shard-new'",
            plan.fraction_moved * 100.0
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "modulo hashing ({n} -> {} shards) would move {:.2}%",
            n + 1,
            (n as f64) / (n as f64 + 1.0) * 100.0
        )),
        "{text}"
    );
    // Consistent hashing moves about 1/(n+1) of the keys, far less than modulo.
    assert!(
        plan.fraction_moved < 0.6 * plan.modulo_fraction_moved,
        "{text}"
    );

    // A config that does not load is an error with the file name, exit 1.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardproxy"))
        .args(["plan", "add-shard", "--config", "/nonexistent.toml", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
}
