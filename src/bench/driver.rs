//! Drives one target: `connections` tokio-postgres clients, each its own
//! task drawing operations and keys from its generator, as fast as the
//! target answers or at a fixed total `rate` (then latency counts from when
//! each operation was due, so a stalled target cannot hide its queue).
//! Each connection keeps its current second's histogram and hands it over
//! when the second ends; the collector merges them, prints the live line
//! and samples the admin console once a second.

use super::admin::{delta, shares, Admin, ShardSecond};
use super::record::{histogram, op_index, Run, Second};
use super::workload::{Generator, Keys, Mix, Op};
use hdrhistogram::Histogram;
use std::io::Write;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls, Statement};

/// What to send, how much and for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    pub keys: Keys,
    pub mix: Mix,
    pub rows: i64,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Operations per second over all connections; 0: as fast as answered.
    pub rate: f64,
    pub insert_rows: usize,
    pub cross_keys: usize,
    pub seed: u64,
}

/// What one target's run measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub run: Run,
    /// Statements per shard per second, from the admin console.
    pub shards: Vec<ShardSecond>,
    /// Statements per shard over the measured seconds.
    pub shard_totals: Vec<(String, u64)>,
    /// Rebalance events (moves changing state), from `SHOW MOVES`.
    pub events: Vec<super::report::Event>,
}

/// A tokio-postgres error with the server's message when there is one.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

async fn connect(url: &str) -> Result<Client, String> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("{}: {}", redact(url), describe(&e)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// `url` with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    let (Some(scheme_end), Some(at)) = (url.find("://"), url.rfind('@')) else {
        return url.to_string();
    };
    let creds = &url[scheme_end + 3..at];
    match creds.split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
        None => url.to_string(),
    }
}

/// A connection with its prepared statements.
struct Conn {
    client: Client,
    read: Statement,
    write: Statement,
    cross: Statement,
}

impl Conn {
    async fn open(url: &str, plan: &Plan) -> Result<Conn, String> {
        let client = connect(url).await?;
        let prepare = |sql: String| {
            let client = &client;
            async move {
                client
                    .prepare(&sql)
                    .await
                    .map_err(|e| format!("preparing {sql}: {} (did --init run?)", describe(&e)))
            }
        };
        let read = prepare("SELECT v FROM bench_kv WHERE k = $1".into()).await?;
        let write = prepare("UPDATE bench_kv SET v = v + 1 WHERE k = $1".into()).await?;
        let params: Vec<String> = (1..=plan.cross_keys.max(1))
            .map(|i| format!("${i}"))
            .collect();
        let cross = prepare(format!(
            "SELECT count(*), max(v) FROM bench_kv WHERE k IN ({})",
            params.join(", ")
        ))
        .await?;
        Ok(Conn {
            client,
            read,
            write,
            cross,
        })
    }
}

enum Msg {
    Second(Second),
    Done(Box<[Histogram<u64>; 4]>),
}

/// Everything a connection task needs besides its connection.
struct Clock {
    start: Instant,
    epoch: Instant,
    end: Instant,
    /// Tells this run's inserted ids from an earlier run's.
    nonce: u64,
}

/// Runs `plan` against `url`; `admin` samples per-shard statements; `live`
/// prints a progress line every second (to stderr) labelled with it.
pub async fn measure(
    plan: &Plan,
    url: &str,
    admin: Option<&Admin>,
    live: Option<&str>,
) -> Result<Measured, String> {
    let mut conns = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        conns.push(Conn::open(url, plan).await?);
    }
    let start = Instant::now() + Duration::from_millis(100);
    let clock = std::sync::Arc::new(Clock {
        start,
        epoch: start + plan.warmup,
        end: start + plan.warmup + plan.duration,
        nonce: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() & 0x7ff),
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    for (i, c) in conns.into_iter().enumerate() {
        let (plan, url, tx, clock) = (plan.clone(), url.to_string(), tx.clone(), clock.clone());
        tokio::spawn(async move { connection(i, c, &plan, &url, &clock, tx).await });
    }
    drop(tx);

    let mut out = Measured::default();
    // Moves known before the run are not events; a console without SHOW
    // MOVES (no rebalancer) has none.
    let mut moves = match admin {
        Some(a) => a.moves().await,
        None => None,
    };
    let mut done = 0;
    let mut baseline: Option<Vec<(String, u64)>> = None;
    let mut last: Option<Vec<(String, u64)>> = None;
    // Ticks a little after each second of the measured part ends.
    let mut next_tick = clock.epoch + Duration::from_millis(100);
    let mut second = 0u64;
    let seconds = plan.duration.as_secs();
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut closed = false;
    // Until every connection is done and the last second is sampled.
    while (!closed && done < plan.connections) || second <= seconds {
        tokio::select! {
            m = rx.recv(), if !closed && done < plan.connections => match m {
                Some(Msg::Second(s)) => out.run.add(&s),
                Some(Msg::Done(by_op)) => {
                    out.run.add_ops(&by_op);
                    done += 1;
                }
                None => closed = true,
            },
            _ = tokio::time::sleep_until(next_tick), if second <= seconds => {
                next_tick += Duration::from_secs(1);
                if let Some(a) = admin {
                    // Second 0's sample is the baseline at the epoch.
                    if let Ok(now) = a.statements().await {
                        match &last {
                            Some(prev) => out.shards.push(ShardSecond {
                                t: second - 1,
                                statements: delta(prev, &now),
                            }),
                            None => baseline = Some(now.clone()),
                        }
                        last = Some(now);
                    }
                    if let Some(before) = &moves {
                        if let Some(now) = a.moves().await {
                            let t = (Instant::now() - clock.epoch).as_secs_f64();
                            for label in super::admin::move_events(before, &now) {
                                out.events.push(super::report::Event { t, label });
                            }
                            moves = Some(now);
                        }
                    }
                }
                if let (Some(label), true) = (live, second > 0) {
                    progress_line(label, &out, second - 1, terminal);
                }
                second += 1;
            }
        }
    }
    if terminal && live.is_some() {
        eprintln!();
    }
    if let (Some(b), Some(l)) = (&baseline, &last) {
        out.shard_totals = delta(b, l);
    }
    Ok(out)
}

fn progress_line(label: &str, m: &Measured, second: u64, terminal: bool) {
    let s = m.run.seconds.get(second as usize);
    let ops = s.map_or(0, Second::total_ops);
    let p99 = s
        .filter(|s| !s.latency.is_empty())
        .map_or(0.0, |s| s.latency.value_at_quantile(0.99) as f64 / 1000.0);
    let errors = s.map_or(0, |s| s.errors);
    let mut line = format!(
        "{label} {:>4} s  {ops:>8} ops/s  p99 {p99:>7.2} ms  errors {errors}",
        second + 1
    );
    if let Some(sh) = m.shards.iter().find(|x| x.t == second) {
        line.push_str("  |");
        for (name, share) in shares(&sh.statements) {
            line.push_str(&format!(" {name} {:.0}%", share * 100.0));
        }
    }
    let mut err = std::io::stderr().lock();
    if terminal {
        let _ = write!(err, "\r{line}\x1b[K");
    } else {
        let _ = writeln!(err, "{line}");
    }
    let _ = err.flush();
}

/// One connection's loop until the end of the run.
async fn connection(
    id: usize,
    mut conn: Conn,
    plan: &Plan,
    url: &str,
    clock: &Clock,
    tx: mpsc::UnboundedSender<Msg>,
) {
    let mut g = match Generator::new(plan.keys, plan.rows, plan.mix, plan.seed, id as u64) {
        Ok(g) => g,
        Err(_) => {
            let _ = tx.send(Msg::Done(Box::new([
                histogram(),
                histogram(),
                histogram(),
                histogram(),
            ])));
            return;
        }
    };
    let mut by_op = [histogram(), histogram(), histogram(), histogram()];
    let mut current: Option<Second> = None;
    let period =
        (plan.rate > 0.0).then(|| Duration::from_secs_f64(plan.connections as f64 / plan.rate));
    // Open-loop connections start staggered over one period.
    let mut due = clock.start
        + period.map_or(Duration::ZERO, |p| {
            p.mul_f64(id as f64 / plan.connections.max(1) as f64)
        });
    let mut seq: u64 = 0;
    tokio::time::sleep_until(clock.start).await;
    loop {
        if period.is_some() && Instant::now() < due {
            tokio::time::sleep_until(due).await;
        }
        let began = if period.is_some() {
            due
        } else {
            Instant::now()
        };
        if began >= clock.end {
            break;
        }
        let op = g.op();
        let ids = (clock.nonce << 52) | ((id as u64) << 40);
        let r = run_op(&conn, op, &mut g, plan, ids, &mut seq).await;
        let finished = Instant::now();
        if let Some(p) = period {
            due += p;
        }
        if r.is_err() && conn.client.is_closed() {
            // The target dropped the connection: count it, reconnect.
            while Instant::now() < clock.end {
                match Conn::open(url, plan).await {
                    Ok(c) => {
                        conn = c;
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        if began < clock.epoch {
            continue; // warm-up
        }
        let index = (began - clock.epoch).as_secs();
        if current.as_ref().is_none_or(|s| s.index != index) {
            if let Some(s) = current.take() {
                let _ = tx.send(Msg::Second(s));
            }
            current = Some(Second::new(index));
        }
        let s = current.as_mut().expect("just set");
        match r {
            Ok(()) => {
                let us = (finished - began).as_micros() as u64;
                s.record(op, us);
                by_op[op_index(op)].saturating_record(us.max(1));
            }
            Err(e) => {
                s.errors += 1;
                if s.error.is_none() {
                    s.error = Some(format!("{}: {}", op.name(), describe(&e)));
                }
            }
        }
    }
    if let Some(s) = current.take() {
        let _ = tx.send(Msg::Second(s));
    }
    let _ = tx.send(Msg::Done(Box::new(by_op)));
}

async fn run_op(
    c: &Conn,
    op: Op,
    g: &mut Generator,
    plan: &Plan,
    ids: u64,
    seq: &mut u64,
) -> Result<(), tokio_postgres::Error> {
    match op {
        Op::Read => c.client.query_opt(&c.read, &[&g.key()]).await.map(|_| ()),
        Op::Write => c.client.execute(&c.write, &[&g.key()]).await.map(|_| ()),
        Op::Cross => {
            let keys: Vec<i64> = (0..plan.cross_keys.max(1)).map(|_| g.key()).collect();
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = keys
                .iter()
                .map(|k| k as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            c.client.query_one(&c.cross, &params).await.map(|_| ())
        }
        Op::Insert => {
            // Literal values through the simple protocol: a multi-row INSERT
            // whose rows span shards is split by the proxy only there.
            let mut sql = String::from("INSERT INTO bench_log (k, id, v) VALUES ");
            for i in 0..plan.insert_rows.max(1) {
                *seq += 1;
                if i > 0 {
                    sql.push(',');
                }
                let id = ids | *seq;
                sql.push_str(&format!("({}, {id}, {i})", g.key()));
            }
            c.client.simple_query(&sql).await.map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:secret@127.0.0.1:6432/shop"),
            "postgres://app:***@127.0.0.1:6432/shop"
        );
        assert_eq!(redact("postgres://app@h/db"), "postgres://app@h/db");
        assert_eq!(redact("host=x"), "host=x");
    }
}
