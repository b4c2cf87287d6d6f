//! `shardproxy bench`: a load generator against any Postgres URL (a
//! shardproxy, pgbouncer or Postgres itself), for reproducing hot shards and
//! watching a rebalance fix them.
//!
//! - [`workload`]: key distributions (uniform, Zipf, hot tenant) and the mix
//!   of operations;
//! - [`schema`]: `--init`, the bench's two tables;
//! - [`driver`]: the connections and the collector; [`record`]: per-second
//!   latency histograms;
//! - [`admin`]: per-shard statements from the admin console;
//! - [`report`]: the table and `--out` JSON; [`plot`]: `--plot` SVG.
//!
//! With `--compare URL` the same workload (same seed, so the same keys in
//! the same order per connection) runs against the second target right
//! after the first, and the ratio of their throughputs is printed.

pub mod admin;
pub mod driver;
pub mod plot;
pub mod record;
pub mod report;
pub mod schema;
pub mod workload;

use driver::{measure, Plan};
use report::{Comparison, Report, Summary};
use std::path::PathBuf;
use std::time::Duration;
use workload::{Keys, Mix};

/// `shardproxy bench` arguments (given before or after the workload).
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The target: postgres://user:password@host:port/database.
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// shardproxy's admin console, to read per-shard load
    /// (postgres://admin:admin@host:port/shardproxy).
    #[arg(long, global = true)]
    pub admin_url: Option<String>,
    /// A second target run with the same workload right after the first;
    /// the throughput ratio is printed.
    #[arg(long, global = true)]
    pub compare: Option<String>,
    /// Create the bench tables and load --rows keys first (on both targets).
    #[arg(long, global = true)]
    pub init: bool,
    /// Keys 1..=ROWS in bench_kv.
    #[arg(long, global = true, default_value_t = 100_000)]
    pub rows: i64,
    /// Seconds measured per target.
    #[arg(long, global = true, default_value_t = 10)]
    pub duration: u64,
    /// Seconds run before measuring.
    #[arg(long, global = true, default_value_t = 1)]
    pub warmup: u64,
    /// Client connections.
    #[arg(long, global = true, default_value_t = 16)]
    pub connections: usize,
    /// Total operations per second (0: as fast as the target answers).
    #[arg(long, global = true, default_value_t = 0.0)]
    pub rate: f64,
    /// Operation weights: read (point SELECT), write (point UPDATE),
    /// insert (multi-row INSERT), cross (IN-list aggregate across shards).
    #[arg(long, global = true, default_value = "read=100")]
    pub mix: Mix,
    /// Rows per multi-row INSERT.
    #[arg(long, global = true, default_value_t = 10)]
    pub insert_rows: usize,
    /// Keys per cross-shard read.
    #[arg(long, global = true, default_value_t = 4)]
    pub cross_keys: usize,
    /// Write the results, with the per-second series, as JSON.
    #[arg(long, global = true)]
    pub out: Option<PathBuf>,
    /// Draw throughput, latency and per-shard load over time as SVG.
    #[arg(long, global = true)]
    pub plot: Option<PathBuf>,
    /// Seed of the key and operation streams.
    #[arg(long, global = true, default_value_t = 42)]
    pub seed: u64,
    /// No live progress line.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Threads of the bench's runtime (default: one per core).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub workload: Option<Workload>,
}

/// Which keys the operations use.
#[derive(clap::Subcommand, Debug, Clone, Copy)]
pub enum Workload {
    /// Every key equally often (the default).
    Uniform,
    /// Key r with probability proportional to 1/r^S.
    Zipf {
        #[arg(long, default_value_t = 1.1)]
        s: f64,
    },
    /// One key gets SHARE of the operations, the others the rest uniformly.
    HotTenant {
        #[arg(long, default_value_t = 0.3)]
        share: f64,
        /// The hot key.
        #[arg(long, default_value_t = 1)]
        key: i64,
    },
}

impl BenchArgs {
    fn plan(&self) -> Result<Plan, String> {
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if self.duration == 0 {
            return Err("--duration must be at least 1 second".into());
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return Err("--rate must be 0 (unlimited) or a positive number".into());
        }
        let keys = match self.workload.unwrap_or(Workload::Uniform) {
            Workload::Uniform => Keys::Uniform,
            Workload::Zipf { s } => Keys::Zipf { s },
            Workload::HotTenant { share, key } => Keys::HotTenant { share, key },
        };
        let plan = Plan {
            keys,
            mix: self.mix,
            rows: self.rows,
            connections: self.connections,
            duration: Duration::from_secs(self.duration),
            warmup: Duration::from_secs(self.warmup),
            rate: self.rate,
            insert_rows: self.insert_rows,
            cross_keys: self.cross_keys,
            seed: self.seed,
        };
        // Checks the distribution's parameters before connecting anywhere.
        workload::Generator::new(plan.keys, plan.rows, plan.mix, plan.seed, 0)?;
        Ok(plan)
    }
}

/// Runs the bench; returns the printed table.
pub async fn run(args: &BenchArgs) -> Result<Report, String> {
    let url = args.url.clone().ok_or(
        "--url is needed: the Postgres URL to drive (a shardproxy, pgbouncer or Postgres)",
    )?;
    let plan = args.plan()?;
    let targets: Vec<&str> = std::iter::once(url.as_str())
        .chain(args.compare.as_deref())
        .collect();
    if args.init {
        for t in &targets {
            let (client, conn) = tokio_postgres::connect(t, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("{}: {}", driver::redact(t), driver::describe(&e)))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            if !args.quiet {
                eprintln!("loading {} keys into {}", plan.rows, driver::redact(t));
            }
            schema::init(&client, plan.rows).await?;
        }
    }
    let admin = match &args.admin_url {
        Some(a) => Some(admin::Admin::connect(a).await?),
        None => None,
    };
    let live = |label: &'static str| (!args.quiet).then_some(label);
    let seconds = plan.duration.as_secs_f64();
    let first = measure(&plan, &url, admin.as_ref(), live("[1]")).await?;
    let result = Summary::of(&url, &first, seconds);
    let compare = match &args.compare {
        Some(c) => {
            let m = measure(&plan, c, None, live("[2]")).await?;
            let other = Summary::of(c, &m, seconds);
            let ratio = if other.ops_per_sec > 0.0 {
                result.ops_per_sec / other.ops_per_sec
            } else {
                0.0
            };
            Some(Comparison {
                result: other,
                ratio,
            })
        }
        None => None,
    };
    let report = Report {
        workload: plan.keys,
        mix: plan.mix,
        rows: plan.rows,
        connections: plan.connections,
        rate: plan.rate,
        duration_s: seconds,
        warmup_s: plan.warmup.as_secs_f64(),
        result,
        compare,
        events: first.events.clone(),
    };
    if let Some(path) = &args.out {
        let json = serde_json::to_string_pretty(&report).map_err(|e| format!("--out: {e}"))?;
        std::fs::write(path, json).map_err(|e| format!("--out {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        plot::plot(&report, path)?;
    }
    Ok(report)
}
