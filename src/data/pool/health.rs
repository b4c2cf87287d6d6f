//! The health checker of shards with replicas: every
//! `replicas.check_interval_ms` it asks each server of such a shard, on a
//! connection of its own, whether it is in recovery and how far its WAL
//! goes, and from the answers
//!
//! - keeps each replica in rotation for reads while it answers, is in
//!   recovery and lags at most `replicas.max_replica_lag_ms` (measured by
//!   [`super::lag`]), and takes it out otherwise;
//! - finds the primary: the server out of recovery, and when several are
//!   (an old primary back after a failover), the one on the newest
//!   timeline. A replica promoted by Patroni, a cloud provider or
//!   `pg_ctl promote` is on a new timeline, so it wins, and writes go to it
//!   from then on. An old primary left out of recovery is `diverged`: used
//!   for nothing.
//!
//! A failed connect to a shard's server wakes the checker at once (a
//! failover is likely under way), at most every [`MIN_GAP`].

use super::backend::Backend;
use super::cancel_fence::CancelFence;
use super::server_pool::{Role, ServerPool};
use super::shard_pool::ShardPool;
use crate::runtime::Proxy;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Wakes the checker early (one permit is kept if it is not waiting).
static WAKE: Notify = Notify::const_new();

/// Least time between two rounds, however often the checker is woken.
const MIN_GAP: Duration = Duration::from_millis(50);

/// What every server is asked. `pg_walfile_name` (only outside recovery)
/// names the timeline the server writes on.
const PROBE_SQL: &str = "SELECT pg_is_in_recovery(), \
     CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, \
     CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END";

/// Asks the checker for a round now.
pub fn wake() {
    WAKE.notify_one();
}

/// One server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub in_recovery: bool,
    /// Replay position (in recovery) or WAL write position.
    pub lsn: u64,
    /// The timeline it writes on (0 in recovery).
    pub timeline: u32,
}

/// `16/B374D848` → its 64-bit position.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// `16/B374D848` for a 64-bit position.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// Runs rounds until the proxy is gone (spawned by `app::bind`).
pub async fn run(proxy: Weak<Proxy>) {
    loop {
        let (pools, interval) = {
            let Some(p) = proxy.upgrade() else {
                return;
            };
            let rt = p.runtime();
            let pools: Vec<Arc<ShardPool>> = rt
                .pools
                .iter()
                .filter(|p| p.has_replicas())
                .cloned()
                .collect();
            (
                pools,
                Duration::from_millis(rt.config.replicas.check_interval_ms),
            )
        };
        let rounds: Vec<_> = pools
            .into_iter()
            .map(|p| tokio::spawn(async move { check_shard(&p).await }))
            .collect();
        for r in rounds {
            let _ = r.await;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = WAKE.notified() => tokio::time::sleep(MIN_GAP).await,
        }
    }
}

/// One round for one shard: every server asked at once, then the roles,
/// the primary and the rotation updated from the answers.
pub async fn check_shard(pool: &Arc<ShardPool>) {
    let limit = (pool.replica_settings.check_interval * 2)
        .max(Duration::from_secs(1))
        .min(pool.settings.connect_timeout.max(Duration::from_secs(1)));
    let asks: Vec<_> = (0..pool.servers().len())
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move { probe(&pool, &pool.servers()[i], limit).await })
        })
        .collect();
    let mut probes = Vec::with_capacity(asks.len());
    for a in asks {
        probes.push(
            a.await
                .unwrap_or_else(|e| Err(format!("health check failed: {e}"))),
        );
    }
    apply(pool, &probes, Instant::now());
}

async fn probe(pool: &ShardPool, server: &ServerPool, limit: Duration) -> Result<Probe, String> {
    let mut monitor = server.monitor.lock().await;
    let asked = tokio::time::timeout(limit, async {
        if monitor.is_none() {
            let be = Backend::connect(
                &server.endpoint,
                &pool.name,
                limit,
                Arc::new(CancelFence::default()),
            )
            .await
            .map_err(|e| e.message)?;
            *monitor = Some(be);
        }
        let Some(be) = monitor.as_mut() else {
            return Err("no connection".to_string());
        };
        let rows = be.query_rows(PROBE_SQL).await.map_err(|e| e.to_string())?;
        parse_probe(rows.first().map(Vec::as_slice).unwrap_or(&[]))
    })
    .await;
    let r = asked.unwrap_or_else(|_| Err(format!("no answer within {limit:?}")));
    if r.is_err() {
        // Reconnect next round (the server may have restarted or moved).
        *monitor = None;
    }
    r
}

fn parse_probe(row: &[Option<String>]) -> Result<Probe, String> {
    let field = |i: usize| row.get(i).cloned().flatten();
    let in_recovery = field(0).ok_or("no answer to the health check")? == "t";
    let lsn = field(1).and_then(|l| parse_lsn(&l)).unwrap_or(0);
    let timeline = field(2)
        .and_then(|w| w.get(..8).and_then(|t| u32::from_str_radix(t, 16).ok()))
        .unwrap_or(0);
    Ok(Probe {
        in_recovery,
        lsn,
        timeline,
    })
}

/// The primary after a round: among the servers that answered out of
/// recovery, the one on the newest timeline, the current one on a tie
/// (then the lowest index). None answered so: the current one stays.
pub fn choose_primary(current: usize, probes: &[Result<Probe, String>]) -> usize {
    probes
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Ok(p) if !p.in_recovery => Some((p.timeline, i == current, std::cmp::Reverse(i), i)),
            _ => None,
        })
        .max()
        .map(|(.., i)| i)
        .unwrap_or(current)
}

/// Applies one round's answers to the pool.
fn apply(pool: &ShardPool, probes: &[Result<Probe, String>], now: Instant) {
    let current = pool.primary_index();
    let primary = choose_primary(current, probes);
    let mut lag = pool.lag.lock().unwrap_or_else(|e| e.into_inner());
    if primary != current {
        tracing::warn!(
            "shard {}: failover: {} is the primary now (was {})",
            pool.name,
            pool.servers()[primary].endpoint.addr.display(),
            pool.servers()[current].endpoint.addr.display()
        );
        pool.set_primary(primary);
        lag.clear();
    }
    if let Ok(p) = &probes[primary] {
        if !p.in_recovery {
            lag.record(now, p.lsn);
        }
    }
    let max_lag = pool.replica_settings.max_lag;
    for (i, (server, probe)) in pool.servers().iter().zip(probes).enumerate() {
        let st = &server.stats;
        let addr = || server.endpoint.addr.display();
        let p = match probe {
            Err(e) => {
                if st.up.swap(false, Relaxed) {
                    tracing::warn!("shard {}: {} is down: {e}", pool.name, addr());
                }
                if st.in_rotation.swap(false, Relaxed) {
                    tracing::warn!("shard {}: replica {} left rotation", pool.name, addr());
                }
                continue;
            }
            Ok(p) => p,
        };
        if !st.up.swap(true, Relaxed) {
            tracing::info!("shard {}: {} is up", pool.name, addr());
        }
        st.lsn.store(p.lsn, Relaxed);
        st.in_recovery.store(p.in_recovery, Relaxed);
        let role = if i == primary {
            Role::Primary
        } else if p.in_recovery {
            Role::Replica
        } else {
            Role::Diverged
        };
        if st.role() != role {
            tracing::info!("shard {}: {} is {}", pool.name, addr(), role.as_str());
            st.set_role(role);
        }
        if role == Role::Primary && p.in_recovery {
            // The primary's name answers as a replica (demoted, or a DNS
            // name that has not moved yet): its idle backends cannot write,
            // and new ones resolve the name again.
            server.close_idle();
        }
        let (lag_ms, rotate) = match role {
            Role::Replica => match lag.lag(p.lsn, now) {
                Some(d) => (d.as_millis() as u64, d <= max_lag),
                None => (u64::MAX, false),
            },
            Role::Primary => (0, false),
            Role::Diverged => (u64::MAX, false),
        };
        st.lag_ms.store(lag_ms, Relaxed);
        let was = st.in_rotation.swap(rotate, Relaxed);
        if was != rotate && role == Role::Replica {
            if rotate {
                tracing::info!("shard {}: replica {} is in rotation", pool.name, addr());
            } else {
                tracing::warn!(
                    "shard {}: replica {} left rotation (lag {} ms, limit {} ms)",
                    pool.name,
                    addr(),
                    lag_ms,
                    max_lag.as_millis()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(in_recovery: bool, timeline: u32) -> Result<Probe, String> {
        Ok(Probe {
            in_recovery,
            lsn: 0,
            timeline,
        })
    }

    #[test]
    fn lsns_read_and_print_as_postgres_does() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("nope"), None);
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
    }

    #[test]
    fn probe_rows_parse() {
        let row = |v: &[Option<&str>]| v.iter().map(|s| s.map(str::to_string)).collect::<Vec<_>>();
        let p = parse_probe(&row(&[
            Some("f"),
            Some("0/3000060"),
            Some("000000020000000000000003"),
        ]))
        .unwrap();
        assert_eq!((p.in_recovery, p.lsn, p.timeline), (false, 0x300_0060, 2));
        let r = parse_probe(&row(&[Some("t"), Some("0/3000060"), None])).unwrap();
        assert_eq!((r.in_recovery, r.timeline), (true, 0));
        assert!(parse_probe(&[]).is_err());
    }

    #[test]
    fn the_newest_timeline_out_of_recovery_is_the_primary() {
        let down = || Err::<Probe, _>("down".to_string());
        // Healthy: the current primary stays.
        assert_eq!(
            choose_primary(0, &[up(false, 1), up(true, 0), up(true, 0)]),
            0
        );
        // The primary is down, nobody promoted yet: it stays.
        assert_eq!(choose_primary(0, &[down(), up(true, 0), up(true, 0)]), 0);
        // Replica 2 was promoted.
        assert_eq!(choose_primary(0, &[down(), up(true, 0), up(false, 2)]), 2);
        // The old primary came back out of recovery on the old timeline.
        assert_eq!(
            choose_primary(2, &[up(false, 1), up(true, 0), up(false, 2)]),
            2
        );
        assert_eq!(
            choose_primary(0, &[up(false, 1), up(true, 0), up(false, 2)]),
            2
        );
        // Two on the same timeline: the current one keeps it.
        assert_eq!(choose_primary(1, &[up(false, 1), up(false, 1)]), 1);
        assert_eq!(choose_primary(2, &[up(false, 1), up(false, 1), down()]), 0);
    }
}
