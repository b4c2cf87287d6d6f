//! The differential proof of the cross-shard merge: the corpus in
//! `tests/data/merge_corpus.txt` runs through the proxy over four shards and
//! on one unsharded Postgres holding the same rows, under the C collation
//! and under an ICU one; every answer must be identical (a failing case
//! prints both). Refusals (0A000) are counted and printed, and allowed only
//! on the lines flagged `r`.
//!
//! Corpus lines: `flags | query [| params]`. Flags (comma-separated):
//! `o` ordered (rows compared in order), `kN` the first N columns are the
//! sort key (their sequence compared in order, rows with equal keys as
//! sets), `r` a refusal is allowed, `x` also run through the extended
//! protocol (text results; and binary results with typed parameters),
//! `t` text parameters only, `n` only the row count is compared (LIMIT
//! without ORDER BY: Postgres picks any rows). Without `o`/`kN`/`n`, rows
//! compare as multisets.
//! Params: `int4:5, int8:10, text:abc, float8:1.5, bool:true, null:int8`.

mod common;

use common::connect;
use common::merge_data::{inserts, DDL, TABLES};
use common::routed::*;
use shardproxy::control::cluster::ClusterOptions;
use std::fmt::Write as _;
use tokio_postgres::types::ToSql;

fn hex(b: Vec<u8>) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

type Rows = Vec<Vec<Option<String>>>;

#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Rows(Rows),
    Error(String, String),
}

struct Case {
    line: usize,
    ordered: bool,
    keys: usize,
    count_only: bool,
    refusal_ok: bool,
    extended: bool,
    text_only: bool,
    sql: String,
    params: Vec<(String, Option<String>)>,
}

fn corpus() -> Vec<Case> {
    let text = include_str!("data/merge_corpus.txt");
    let mut cases = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, " | ");
        let flags = parts.next().unwrap_or("").trim();
        let sql = parts
            .next()
            .unwrap_or_else(|| panic!("line {}: no query", i + 1))
            .trim();
        let params = parts
            .next()
            .map(|p| {
                p.split(", ")
                    .map(|kv| {
                        let (t, v) = kv.split_once(':').expect("type:value");
                        if t == "null" {
                            (v.to_string(), None)
                        } else {
                            (t.to_string(), Some(v.to_string()))
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut c = Case {
            line: i + 1,
            ordered: false,
            keys: 0,
            count_only: false,
            refusal_ok: false,
            extended: false,
            text_only: false,
            sql: sql.to_string(),
            params,
        };
        for f in flags.split(',').map(str::trim) {
            match f {
                "o" => c.ordered = true,
                "n" => c.count_only = true,
                "r" => c.refusal_ok = true,
                "x" => c.extended = true,
                "t" => c.text_only = true,
                "-" | "" => {}
                k if k.starts_with('k') => c.keys = k[1..].parse().expect("kN"),
                other => panic!("line {}: unknown flag {other}", i + 1),
            }
        }
        cases.push(c);
    }
    cases
}

async fn simple(c: &tokio_postgres::Client, sql: &str) -> Answer {
    match c.simple_query(sql).await {
        Ok(msgs) => Answer::Rows(
            msgs.into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                    }
                    _ => None,
                })
                .collect(),
        ),
        Err(e) => error_of(&e),
    }
}

fn error_of(e: &tokio_postgres::Error) -> Answer {
    match e.as_db_error() {
        Some(db) => Answer::Error(db.code().code().to_string(), db.message().to_string()),
        None => Answer::Error("client".into(), e.to_string()),
    }
}

/// Extended protocol, binary results and typed (binary) parameters.
async fn binary(c: &tokio_postgres::Client, case: &Case) -> Answer {
    let owned: Vec<Box<dyn ToSql + Sync + Send>> = case
        .params
        .iter()
        .map(|(t, v)| -> Box<dyn ToSql + Sync + Send> {
            match (t.as_str(), v) {
                (_, None) => Box::new(None::<i64>),
                ("int4", Some(v)) => Box::new(v.parse::<i32>().unwrap()),
                ("int8", Some(v)) => Box::new(v.parse::<i64>().unwrap()),
                ("int2", Some(v)) => Box::new(v.parse::<i16>().unwrap()),
                ("float8", Some(v)) => Box::new(v.parse::<f64>().unwrap()),
                ("bool", Some(v)) => Box::new(v.parse::<bool>().unwrap()),
                (_, Some(v)) => Box::new(v.clone()),
            }
        })
        .collect();
    let refs: Vec<&(dyn ToSql + Sync)> = owned
        .iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect();
    match c.query(case.sql.as_str(), &refs).await {
        Ok(rows) => Answer::Rows(
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.get::<_, RawValue>(i).0.map(hex))
                        .collect()
                })
                .collect(),
        ),
        Err(e) => error_of(&e),
    }
}

/// Extended protocol, text parameters and text results (raw protocol).
async fn text_extended(port: u16, user: &str, password: &str, case: &Case) -> Answer {
    let params: Vec<Option<&str>> = case.params.iter().map(|(_, v)| v.as_deref()).collect();
    match extended_text(port, user, password, &case.sql, &params).await {
        Ok(rows) => Answer::Rows(rows),
        Err((code, msg)) => Answer::Error(code, msg),
    }
}

fn same(case: &Case, want: &Answer, got: &Answer) -> bool {
    match (want, got) {
        (Answer::Error(a, _), Answer::Error(b, _)) => a == b,
        (Answer::Rows(w), Answer::Rows(g)) => {
            if case.count_only {
                return w.len() == g.len();
            }
            if case.ordered {
                return w == g;
            }
            if case.keys > 0 {
                let key = |r: &Vec<Option<String>>| r[..case.keys.min(r.len())].to_vec();
                let wk: Vec<_> = w.iter().map(key).collect();
                let gk: Vec<_> = g.iter().map(key).collect();
                if wk != gk {
                    return false;
                }
                // Rows with equal keys may come in any order.
                let mut i = 0;
                while i < w.len() {
                    let mut j = i;
                    while j < w.len() && wk[j] == wk[i] {
                        j += 1;
                    }
                    let (mut a, mut b) = (w[i..j].to_vec(), g[i..j].to_vec());
                    a.sort();
                    b.sort();
                    if a != b {
                        return false;
                    }
                    i = j;
                }
                return true;
            }
            let (mut a, mut b) = (w.clone(), g.clone());
            a.sort();
            b.sort();
            a == b
        }
        _ => false,
    }
}

fn show(a: &Answer) -> String {
    match a {
        Answer::Error(c, m) => format!("ERROR {c}: {m}"),
        Answer::Rows(r) => {
            let mut s = format!("{} rows", r.len());
            for row in r.iter().take(12) {
                let cells: Vec<String> = row
                    .iter()
                    .map(|v| v.clone().unwrap_or_else(|| "NULL".into()))
                    .collect();
                let _ = write!(s, "\n      {}", cells.join(" | "));
            }
            if r.len() > 12 {
                s.push_str("\n      …");
            }
            s
        }
    }
}

struct Tally {
    cases: usize,
    runs: usize,
    refusals: Vec<String>,
    failures: Vec<String>,
}

async fn check(tally: &mut Tally, case: &Case, how: &str, want: Answer, got: Answer) {
    tally.runs += 1;
    if let Answer::Error(code, msg) = &got {
        if code == "0A000" && !matches!(&want, Answer::Error(c, _) if c == "0A000") {
            let what = format!("line {} ({how}): {} — {msg}", case.line, case.sql);
            if case.refusal_ok {
                tally.refusals.push(what);
            } else {
                tally.failures.push(format!("unexpected refusal, {what}"));
            }
            return;
        }
    }
    if !same(case, &want, &got) {
        tally.failures.push(format!(
            "line {} ({how}): {}\n   reference: {}\n   proxy:     {}",
            case.line,
            case.sql,
            show(&want),
            show(&got)
        ));
    }
}

async fn differential(opts: ClusterOptions, label: &str) {
    let r = Routed::start_opts(4, true, true, TABLES, opts).await;
    let p = connect(&r.url()).await;
    let o = connect(&r.oracle_url()).await;
    for stmt in DDL {
        p.batch_execute(stmt).await.unwrap();
        o.batch_execute(stmt).await.unwrap();
    }
    for ins in inserts() {
        exec_simple(&p, &ins).await;
        exec_simple(&o, &ins).await;
    }
    for t in ["customers", "orders", "events", "regions"] {
        p.batch_execute(&format!("analyze {t}")).await.unwrap();
        o.batch_execute(&format!("analyze {t}")).await.unwrap();
    }
    let per_shard = counts_per_shard(&r.shard_clients().await, "orders").await;
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");
    let cases = corpus();
    let mut tally = Tally {
        cases: cases.len(),
        runs: 0,
        refusals: Vec::new(),
        failures: Vec::new(),
    };
    for case in &cases {
        if case.params.is_empty() {
            let (want, got) = (simple(&o, &case.sql).await, simple(&p, &case.sql).await);
            check(&mut tally, case, "simple", want, got).await;
        }
        if case.extended || !case.params.is_empty() {
            let oracle_port = r.oracle.as_ref().unwrap().port();
            let want = text_extended(oracle_port, "postgres", "", case).await;
            let got = text_extended(r.port, APP_USER, APP_PW, case).await;
            check(&mut tally, case, "extended, text", want, got).await;
            if !case.text_only {
                let (want, got) = (binary(&o, case).await, binary(&p, case).await);
                check(&mut tally, case, "extended, binary", want, got).await;
            }
        }
    }
    println!(
        "{label}: {} queries, {} runs, {} refusals, {} failures",
        tally.cases,
        tally.runs,
        tally.refusals.len(),
        tally.failures.len()
    );
    for f in &tally.refusals {
        println!("  refused (allowed): {f}");
    }
    for f in &tally.failures {
        println!("  FAILED {f}");
    }
    assert!(
        tally.failures.is_empty(),
        "{label}: {} of {} runs differ from the reference (see above)",
        tally.failures.len(),
        tally.runs
    );
    assert!(
        tally.cases >= 300,
        "the corpus must hold at least 300 queries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_reads_match_one_postgres_under_c_collation() {
    differential(ClusterOptions::default(), "C collation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_reads_match_one_postgres_under_icu_collation() {
    differential(ClusterOptions::icu("en-US"), "ICU en-US").await;
}
