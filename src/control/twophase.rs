//! Crash-safe resolution of the proxy's two-phase commits.
//!
//! A proxy that dies between PREPARE TRANSACTION and the last COMMIT PREPARED
//! leaves prepared transactions behind: they hold locks until someone decides
//! them. The decision is written down on the coordinator shard (named in the
//! gid, see [`crate::data::session::twophase`]): its prepared transaction
//! inserts the gid into `shardproxy.commit_log`, so
//!
//! - the coordinator still has the gid prepared → nothing was decided yet →
//!   roll back everywhere (the coordinator first, which makes it final);
//! - the coordinator's log has the gid → the coordinator committed → commit
//!   everywhere it is still prepared, then forget the log row;
//! - neither → the coordinator rolled back (or never prepared) → roll back.
//!
//! Only gids older than `min_age` on every shard that has them are touched, so
//! the commit of a live proxy is never raced. A shard that cannot be reached
//! is skipped and reported; its gids wait for the next round, and nothing is
//! decided for a gid whose coordinator is unreachable.
//!
//! This is control-path code, so it uses tokio-postgres (one short-lived
//! connection per shard per round) rather than the data path's backend pools.

use crate::data::pool::Endpoint;
use crate::data::session::twophase::{gid_coordinator, txid_of, GID_PREFIX};
use crate::runtime::{Proxy, Runtime};
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio_postgres::Client;

/// How often the proxy runs [`recover`] in the background.
pub const RECOVERY_INTERVAL: Duration = Duration::from_secs(30);

/// Prepared transactions younger than this are left to the proxy preparing them.
pub const RECOVERY_MIN_AGE: Duration = Duration::from_secs(30);

/// Commit-log rows older than this that no shard has prepared are purged (rows
/// left by a proxy that died after its last COMMIT PREPARED but before the DELETE).
pub const LOG_RETENTION: Duration = Duration::from_secs(3600);

/// Limit for connecting to a shard and for each statement sent to it.
const SHARD_TIMEOUT: Duration = Duration::from_secs(10);

/// What one recovery round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// `(gid, shard)`: COMMIT PREPARED done there.
    pub committed: Vec<(String, String)>,
    /// `(gid, shard)`: ROLLBACK PREPARED done there.
    pub rolled_back: Vec<(String, String)>,
    /// `(shard, why)`: shards that could not be reached or listed this round.
    pub unreachable: Vec<(String, String)>,
    /// `(gid, why)`: gids left prepared this round (coordinator unreachable or
    /// unknown, a command that failed).
    pub deferred: Vec<(String, String)>,
    /// Gids whose commit-log row was deleted (after their commit, or by the purge).
    pub forgotten: Vec<String>,
    /// Gids seen prepared but younger than `min_age`, left alone.
    pub too_young: Vec<String>,
}

impl RecoveryReport {
    /// True when the round had nothing to do and every shard answered.
    pub fn is_quiet(&self) -> bool {
        self.committed.is_empty()
            && self.rolled_back.is_empty()
            && self.unreachable.is_empty()
            && self.deferred.is_empty()
            && self.forgotten.is_empty()
    }
}

/// What the coordinator says about a gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Commit,
    Rollback,
}

/// One shard this round: its connection and what it has prepared
/// (gid → older than `min_age`).
struct ShardState {
    name: String,
    client: Option<Client>,
    prepared: BTreeMap<String, bool>,
}

/// Runs one recovery round over every shard of `rt`. Never fails: problems are
/// logged and listed in the report, and the next round tries again.
pub async fn recover(rt: &Runtime, min_age: Duration) -> RecoveryReport {
    let mut report = RecoveryReport::default();
    let mut shards = Vec::with_capacity(rt.pools.len());
    for s in &rt.pools {
        let mut st = ShardState {
            name: s.name.clone(),
            client: None,
            prepared: BTreeMap::new(),
        };
        // The current primary (after a failover, not the configured one).
        match connect(&s.primary().endpoint).await {
            Ok(c) => match list_prepared(&c, min_age).await {
                Ok(p) => {
                    st.prepared = p;
                    st.client = Some(c);
                }
                Err(e) => report.unreachable.push((s.name.clone(), e)),
            },
            Err(e) => report.unreachable.push((s.name.clone(), e)),
        }
        shards.push(st);
    }
    for (name, why) in &report.unreachable {
        tracing::warn!("2PC recovery: shard {name} skipped this round: {why}");
    }
    let all_listed = report.unreachable.is_empty();

    // Every transaction prepared somewhere (its participants' gids differ,
    // see `participant_gid`); a candidate only if old wherever it is.
    let mut gids: BTreeMap<String, bool> = BTreeMap::new();
    for st in &shards {
        for (gid, old) in &st.prepared {
            let e = gids.entry(txid_of(gid)).or_insert(true);
            *e &= *old;
        }
    }
    for (gid, old) in &gids {
        if *old {
            resolve(rt, &shards, gid, all_listed, &mut report).await;
        } else {
            report.too_young.push(gid.clone());
        }
    }
    if all_listed {
        let prepared: Vec<String> = gids.keys().cloned().collect();
        purge_log(&shards, &prepared, &mut report).await;
    }
    report
}

/// Decides one gid and applies the decision where it is prepared.
async fn resolve(
    rt: &Runtime,
    shards: &[ShardState],
    gid: &str,
    all_listed: bool,
    report: &mut RecoveryReport,
) {
    let defer = |report: &mut RecoveryReport, why: String| {
        tracing::warn!("2PC recovery: {gid} left prepared: {why}");
        report.deferred.push((gid.to_string(), why));
    };
    let Some(coord_name) = gid_coordinator(gid) else {
        return defer(report, "the gid names no coordinator".into());
    };
    let Some(ci) = rt.config.shard_index(coord_name) else {
        return defer(
            report,
            format!("its coordinator shard \"{coord_name}\" is not in the configuration"),
        );
    };
    let coord = &shards[ci];
    let Some(coord_client) = &coord.client else {
        return defer(
            report,
            format!("its coordinator shard \"{coord_name}\" is unreachable"),
        );
    };
    let mine = |g: &&String| txid_of(g) == gid;
    let decision = if coord.prepared.keys().any(|g| mine(&g)) {
        Decision::Rollback
    } else {
        match logged(coord_client, gid).await {
            Ok(true) => Decision::Commit,
            Ok(false) => Decision::Rollback,
            Err(e) => {
                return defer(
                    report,
                    format!("cannot read the commit log on \"{coord_name}\": {e}"),
                )
            }
        }
    };
    let verb = match decision {
        Decision::Commit => "COMMIT PREPARED",
        Decision::Rollback => "ROLLBACK PREPARED",
    };
    // The coordinator first: once its rollback is done the outcome is final
    // (a commit decision is already final through the log row).
    let order = std::iter::once(ci).chain((0..shards.len()).filter(|&i| i != ci));
    let mut all_done = all_listed;
    for i in order {
        let st = &shards[i];
        let Some(client) = &st.client else { continue };
        let Some(pgid) = st.prepared.keys().find(mine) else {
            continue;
        };
        let sql = format!("{verb} {}", quote_literal(pgid));
        match run(client, &sql).await {
            Ok(()) => {
                tracing::info!("2PC recovery: {verb} {pgid} on shard {}", st.name);
                let done = (gid.to_string(), st.name.clone());
                match decision {
                    Decision::Commit => report.committed.push(done),
                    Decision::Rollback => report.rolled_back.push(done),
                }
            }
            Err(e) => {
                all_done = false;
                defer(report, format!("{verb} failed on \"{}\": {e}", st.name));
                if i == ci {
                    // Not final on the coordinator: leave the others for the next round.
                    return;
                }
            }
        }
    }
    if decision == Decision::Commit && all_done {
        let del = "DELETE FROM shardproxy.commit_log WHERE gid = $1";
        match timed(coord_client.execute(del, &[&gid])).await {
            Ok(_) => report.forgotten.push(gid.to_string()),
            Err(e) => tracing::warn!("2PC recovery: cannot forget {gid} on {coord_name}: {e}"),
        }
    }
}

/// Deletes old commit-log rows for gids no shard has prepared.
async fn purge_log(shards: &[ShardState], prepared: &[String], report: &mut RecoveryReport) {
    let sql = "DELETE FROM shardproxy.commit_log \
               WHERE committed_at < now() - make_interval(secs => $1) \
               AND gid <> ALL($2::text[]) RETURNING gid";
    let secs = LOG_RETENTION.as_secs_f64();
    for st in shards {
        let Some(c) = &st.client else { continue };
        match has_commit_log(c).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!("2PC recovery: commit log check on {}: {e}", st.name);
                continue;
            }
        }
        match timed(c.query(sql, &[&secs, &prepared])).await {
            Ok(rows) => {
                for r in rows {
                    if let Ok(g) = r.try_get::<_, String>(0) {
                        tracing::info!(
                            "2PC recovery: purged old commit-log row {g} on {}",
                            st.name
                        );
                        report.forgotten.push(g);
                    }
                }
            }
            Err(e) => tracing::warn!("2PC recovery: purging the commit log on {}: {e}", st.name),
        }
    }
}

/// Runs [`recover`] now and every `interval` until the proxy is dropped or drains.
pub async fn run_periodically(proxy: Weak<Proxy>, interval: Duration, min_age: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(p) = proxy.upgrade() else { return };
        if p.draining.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let rt: Arc<Runtime> = p.runtime();
        drop(p);
        let r = recover(&rt, min_age).await;
        if !r.is_quiet() {
            tracing::info!(
                "2PC recovery round: {} committed, {} rolled back, {} deferred, {} unreachable shards",
                r.committed.len(),
                r.rolled_back.len(),
                r.deferred.len(),
                r.unreachable.len()
            );
        }
    }
}

async fn connect(endpoint: &Endpoint) -> Result<Client, String> {
    crate::control::conn::connect_endpoint(endpoint, "shardproxy-2pc-recovery").await
}

/// The proxy's prepared transactions in this database: gid → older than `min_age`.
async fn list_prepared(c: &Client, min_age: Duration) -> Result<BTreeMap<String, bool>, String> {
    let sql = "SELECT gid, prepared <= now() - make_interval(secs => $1) \
               FROM pg_prepared_xacts WHERE gid LIKE $2 AND database = current_database()";
    let like = format!("{GID_PREFIX}%");
    let rows = timed(c.query(sql, &[&min_age.as_secs_f64(), &like])).await?;
    let mut out = BTreeMap::new();
    for r in rows {
        let gid: String = r.try_get(0).map_err(|e| e.to_string())?;
        let old: bool = r.try_get(1).map_err(|e| e.to_string())?;
        out.insert(gid, old);
    }
    Ok(out)
}

/// Whether the coordinator's commit log holds `gid` (no log table: no).
async fn logged(c: &Client, gid: &str) -> Result<bool, String> {
    if !has_commit_log(c).await? {
        return Ok(false);
    }
    let rows = timed(c.query(
        "SELECT 1 FROM shardproxy.commit_log WHERE gid = $1",
        &[&gid],
    ))
    .await?;
    Ok(!rows.is_empty())
}

async fn has_commit_log(c: &Client) -> Result<bool, String> {
    let row = timed(c.query_one(
        "SELECT to_regclass('shardproxy.commit_log') IS NOT NULL",
        &[],
    ))
    .await?;
    row.try_get(0).map_err(|e| e.to_string())
}

async fn run(c: &Client, sql: &str) -> Result<(), String> {
    timed(c.batch_execute(sql)).await
}

/// A shard call bounded by [`SHARD_TIMEOUT`], its error as text.
pub(crate) async fn timed<T, E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(SHARD_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {SHARD_TIMEOUT:?}")),
    }
}

/// A SQL string literal (COMMIT/ROLLBACK PREPARED take no parameters).
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_reports() {
        assert_eq!(quote_literal("shardproxy:a-1:s'0"), "'shardproxy:a-1:s''0'");
        let mut r = RecoveryReport::default();
        assert!(r.is_quiet());
        r.too_young.push("x".into());
        assert!(r.is_quiet(), "young gids alone are not work done");
        r.unreachable.push(("s1".into(), "down".into()));
        assert!(!r.is_quiet());
    }
}
