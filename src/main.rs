//! The `shardproxy` command: serve, check a config, run the demo, plan shard moves.

use clap::{Parser, Subcommand};
use shardproxy::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "shardproxy",
    version,
    about = "A sharding PostgreSQL wire-protocol proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve clients with the given config.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config and explain what it sets up.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Start local Postgres shards with a demo shop schema and serve in front of them.
    Demo {
        /// Number of shards to start.
        #[arg(long, default_value_t = 3)]
        shards: usize,
        /// Port the proxy listens on.
        #[arg(long, default_value_t = 6432)]
        port: u16,
        /// Where the shards' data and the generated config live (reused by a second run).
        #[arg(long, default_value = "shardproxy-demo")]
        data_dir: PathBuf,
    },
    /// Drive a workload against a Postgres URL (shardproxy, pgbouncer or
    /// Postgres) and report throughput, latency and per-shard load.
    Bench(shardproxy::bench::BenchArgs),
    /// Plan a change to the shard map without applying it.
    Plan {
        #[command(subcommand)]
        plan: PlanCommand,
    },
}

#[derive(Subcommand)]
enum PlanCommand {
    /// Which hash ranges adding shard NAME would move, against modulo hashing.
    AddShard {
        #[arg(long, short)]
        config: PathBuf,
        /// Name of the new shard.
        name: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => Config::load(&config)
            .map_err(|e| e.to_string())
            .and_then(|c| run_async(shardproxy::app::serve(c))),
        Command::Check { config } => {
            Config::load(&config)
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    print!("{}", shardproxy::app::check(&c)?);
                    run_async(async move {
                        print!("{}", shardproxy::app::check_shards(&c).await);
                        Ok(())
                    })
                })
        }
        Command::Demo {
            shards,
            port,
            data_dir,
        } => run_async(shardproxy::app::demo(shards, port, data_dir)),
        Command::Bench(args) => run_bench(&args),
        Command::Plan {
            plan: PlanCommand::AddShard { config, name },
        } => Config::load(&config)
            .map_err(|e| e.to_string())
            .and_then(|c| shardproxy::data::router::ShardMap::from_config(&c))
            .map(|m| print!("{}", m.plan_add_shard(&name).render())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardproxy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_async<F: std::future::Future<Output = Result<(), String>>>(f: F) -> Result<(), String> {
    // The main thread is the first worker: a single-threaded runtime (see
    // `proxy.workers` and `app::serve` for more).
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(f)
}

/// `shardproxy bench` runs on a multi-threaded runtime (one thread per core
/// unless --threads says otherwise), so it is not its own bottleneck.
fn run_bench(args: &shardproxy::bench::BenchArgs) -> Result<(), String> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let report = rt
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(shardproxy::bench::run(args))?;
    print!("{}", shardproxy::bench::report::table(&report));
    Ok(())
}
