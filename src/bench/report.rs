//! The bench's results: the summary table it prints, and the JSON report
//! (`--out`) with the per-second series the plot draws.

use super::admin::shares;
use super::driver::{redact, Measured};
use super::record::Latency;
use super::workload::{Keys, Mix, Op};
use serde::Serialize;

/// One operation kind over the run.
#[derive(Debug, Clone, Serialize)]
pub struct OpSummary {
    pub op: &'static str,
    pub ops: u64,
    pub latency_us: Latency,
}

/// One shard's share of the statements the run caused.
#[derive(Debug, Clone, Serialize)]
pub struct ShardShare {
    pub shard: String,
    pub statements: u64,
    pub share: f64,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub t: u64,
    pub ops: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Each shard's share of that second's statements (from the admin console).
    pub shard_share: Vec<(String, f64)>,
}

/// A rebalance event seen during the run (a move's state change).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    /// Seconds since the measured part of the run began.
    pub t: f64,
    pub label: String,
}

/// One target's results.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub target: String,
    pub seconds: f64,
    pub ops: u64,
    pub errors: u64,
    /// The first few distinct errors.
    pub error_samples: Vec<String>,
    pub ops_per_sec: f64,
    pub latency_us: Latency,
    pub by_op: Vec<OpSummary>,
    /// Empty without `--admin-url`.
    pub shard_share: Vec<ShardShare>,
    pub series: Vec<Point>,
}

impl Summary {
    pub fn of(target: &str, m: &Measured, seconds: f64) -> Summary {
        let by_op = Op::ALL
            .iter()
            .zip(&m.run.by_op)
            .filter(|(_, h)| !h.is_empty())
            .map(|(op, h)| OpSummary {
                op: op.name(),
                ops: h.len(),
                latency_us: Latency::of(h),
            })
            .collect();
        let shard_share = shares(&m.shard_totals)
            .into_iter()
            .zip(&m.shard_totals)
            .map(|((shard, share), (_, statements))| ShardShare {
                shard,
                statements: *statements,
                share,
            })
            .collect();
        let series = m
            .run
            .seconds
            .iter()
            .map(|s| {
                let l = Latency::of(&s.latency);
                Point {
                    t: s.index,
                    ops: s.total_ops(),
                    errors: s.errors,
                    p50_us: l.p50,
                    p99_us: l.p99,
                    shard_share: m
                        .shards
                        .iter()
                        .find(|x| x.t == s.index)
                        .map(|x| shares(&x.statements))
                        .unwrap_or_default(),
                }
            })
            .collect();
        let ops = m.run.ops();
        Summary {
            target: redact(target),
            seconds,
            ops,
            errors: m.run.errors(),
            error_samples: m.run.error_samples.clone(),
            ops_per_sec: if seconds > 0.0 {
                ops as f64 / seconds
            } else {
                0.0
            },
            latency_us: Latency::of(&m.run.total),
            by_op,
            shard_share,
            series,
        }
    }
}

/// The `--compare` target's results and the ratio of throughputs.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub result: Summary,
    /// The first target's ops/s over this one's.
    pub ratio: f64,
}

/// Everything `--out` writes.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: Keys,
    pub mix: Mix,
    pub rows: i64,
    pub connections: usize,
    /// Total operations per second asked for (0: as fast as answered).
    pub rate: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub result: Summary,
    pub compare: Option<Comparison>,
    pub events: Vec<Event>,
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// The table printed at the end.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<44} {:>10} {:>8} {:>8} {:>8} {:>9} {:>7}\n",
        "target", "ops/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"
    ));
    let mut row = |sum: &Summary, label: &str| {
        let l = &sum.latency_us;
        s.push_str(&format!(
            "{:<44} {:>10.0} {:>8} {:>8} {:>8} {:>9} {:>7}\n",
            label,
            sum.ops_per_sec,
            ms(l.p50),
            ms(l.p95),
            ms(l.p99),
            ms(l.max),
            sum.errors
        ));
        for o in &sum.by_op {
            let l = &o.latency_us;
            s.push_str(&format!(
                "{:<44} {:>10.0} {:>8} {:>8} {:>8} {:>9}\n",
                format!("  {}", o.op),
                o.ops as f64 / sum.seconds.max(1e-9),
                ms(l.p50),
                ms(l.p95),
                ms(l.p99),
                ms(l.max)
            ));
        }
    };
    row(&r.result, &r.result.target);
    if let Some(c) = &r.compare {
        row(&c.result, &c.result.target);
    }
    for sum in std::iter::once(&r.result).chain(r.compare.as_ref().map(|c| &c.result)) {
        for e in &sum.error_samples {
            s.push_str(&format!("error from {}: {e}\n", sum.target));
        }
    }
    if r.result.shard_share.is_empty() {
        s.push_str(
            "per-shard load: not measured (give --admin-url to read it from the admin console)\n",
        );
    } else {
        s.push_str("per-shard load (statements during the run, from SHOW STATS):");
        for sh in &r.result.shard_share {
            s.push_str(&format!(" {} {:.1}%", sh.shard, sh.share * 100.0));
        }
        s.push('\n');
    }
    if let Some(c) = &r.compare {
        s.push_str(&format!(
            "throughput ratio {} / {}: {:.3}\n",
            r.result.target, c.result.target, c.ratio
        ));
    }
    for e in &r.events {
        s.push_str(&format!("event at {:.1} s: {}\n", e.t, e.label));
    }
    s
}
