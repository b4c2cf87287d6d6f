//! All-or-nothing writes across shards: BEGIN on every shard, the statement,
//! then two-phase commit.
//!
//! The commit point is durable on one shard, the coordinator (the first
//! participant): its prepared transaction also inserts the transaction's id
//! into `shardproxy.commit_log`. Once the coordinator's COMMIT PREPARED is
//! done, the others are committed; if the proxy dies in between,
//! [`crate::control::twophase`] finishes the job from the log (commit where
//! the log row exists, roll back where it does not).
//!
//! Shards with `max_prepared_transactions = 0` cannot do this; then every
//! shard commits in turn and a failure is reported per shard.

use super::fanout::Part;
use super::Session;
use crate::data::codec::error::sqlstate;
use crate::data::codec::SqlError;
use crate::data::pool::ShardPool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// How a statement or transaction over several shards must commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Commit {
    /// Nothing to commit here: reads, maintenance, or an open transaction
    /// the client ends itself.
    Skip,
    /// All or nothing: two-phase commit; refused (rolled back, 0A000) when
    /// a shard cannot prepare transactions.
    Atomic,
    /// DDL and reference-table writes: two-phase commit where the shards
    /// allow it, else shard by shard with failures reported per shard
    /// (refusing them would leave no way to change the schema).
    BestEffort,
}

/// The schema and table holding commit decisions on coordinators.
pub const COMMIT_LOG: &str = "shardproxy.commit_log";

/// Creates the commit log if needed (idempotent; run once per backend pool).
pub const COMMIT_LOG_DDL: &str = "CREATE SCHEMA IF NOT EXISTS shardproxy; \
     CREATE TABLE IF NOT EXISTS shardproxy.commit_log (gid text PRIMARY KEY, committed_at timestamptz NOT NULL DEFAULT now())";

/// Prefix of every prepared-transaction id the proxy creates.
pub const GID_PREFIX: &str = "shardproxy:";

/// A new transaction id: `shardproxy:<instance>-<seq>:<coordinator>`. It is
/// what the coordinator's commit log records.
pub fn new_gid(coordinator: &str) -> String {
    static INSTANCE: OnceLock<u64> = OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let instance = INSTANCE.get_or_init(rand::random::<u64>);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{GID_PREFIX}{instance:016x}-{seq}:{coordinator}")
}

/// The prepared-transaction id of participant `k` of transaction `txid`:
/// `shardproxy:<instance>-<seq>#<k>:<coordinator>`. Postgres gids are unique
/// per cluster, and two shards may be databases of one cluster, so every
/// participant needs its own.
pub fn participant_gid(txid: &str, k: usize) -> String {
    match txid
        .strip_prefix(GID_PREFIX)
        .and_then(|r| r.split_once(':'))
    {
        Some((id, coord)) => format!("{GID_PREFIX}{id}#{k}:{coord}"),
        None => format!("{txid}#{k}"),
    }
}

/// The transaction id a participant's gid belongs to (see [`participant_gid`]).
pub fn txid_of(gid: &str) -> String {
    match gid.strip_prefix(GID_PREFIX).and_then(|r| r.split_once(':')) {
        Some((id, coord)) => {
            let id = id.split_once('#').map(|(i, _)| i).unwrap_or(id);
            format!("{GID_PREFIX}{id}:{coord}")
        }
        None => gid.to_string(),
    }
}

/// The coordinator shard named in a gid (or transaction id).
pub fn gid_coordinator(gid: &str) -> Option<&str> {
    gid.strip_prefix(GID_PREFIX)?
        .split_once(':')
        .map(|(_, c)| c)
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn failed(shard: &str, what: &str, (code, msg): (String, String)) -> SqlError {
    SqlError::new(
        sqlstate::CONNECTION_EXCEPTION,
        format!("{what} failed on shard \"{shard}\": {msg}"),
    )
    .with_detail(format!("SQLSTATE {code} from shard \"{shard}\""))
}

impl Session {
    /// Opens a transaction on every part.
    pub(super) async fn begin_all(&mut self, parts: &mut [Part]) -> Result<(), SqlError> {
        for p in parts.iter_mut() {
            let name = p.lease.pool().name.clone();
            match p.lease.backend().execute_silently("BEGIN").await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(failed(&name, "BEGIN", e)),
                Err(e) => return Err(SqlError::shard_unavailable(&name, e)),
            }
        }
        Ok(())
    }

    /// Rolls back every part (best effort: a part that fails is closed).
    pub(super) async fn rollback_all(&mut self, parts: &mut [Part]) {
        for p in parts.iter_mut() {
            let _ = p.lease.backend().execute_silently("ROLLBACK").await;
        }
    }

    /// Commits every part: two-phase when the shards allow it. Where some
    /// cannot prepare, `need` decides: [`Commit::BestEffort`] commits shard
    /// by shard, anything else rolls every part back and refuses (0A000).
    pub(super) async fn commit_all(
        &mut self,
        parts: &mut [Part],
        need: Commit,
    ) -> Result<(), SqlError> {
        if parts.len() == 1 {
            return self.commit_each(parts).await;
        }
        if !self.twophase_possible(parts).await {
            if need == Commit::BestEffort {
                return self.commit_each(parts).await;
            }
            self.rollback_all(parts).await;
            return Err(self.twophase_refusal_for(parts));
        }
        let coordinator = parts[0].lease.pool().name.clone();
        let gid = new_gid(&coordinator);
        // Phase 1: the coordinator records the decision inside its own transaction.
        let log = format!(
            "INSERT INTO {COMMIT_LOG} (gid) VALUES ({})",
            quote_literal(&gid)
        );
        for (i, p) in parts.iter_mut().enumerate() {
            let name = p.lease.pool().name.clone();
            let prepare = format!(
                "PREPARE TRANSACTION {}",
                quote_literal(&participant_gid(&gid, i))
            );
            let be = p.lease.backend();
            let r = if i == 0 {
                match be.execute_silently(&log).await {
                    Ok(Ok(())) => be.execute_silently(&prepare).await,
                    other => other,
                }
            } else {
                be.execute_silently(&prepare).await
            };
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.abort_prepared(parts, i, &gid).await;
                    return Err(failed(&name, "PREPARE TRANSACTION", e));
                }
                Err(e) => {
                    self.abort_prepared(parts, i, &gid).await;
                    return Err(SqlError::shard_unavailable(&name, e));
                }
            }
        }
        // Phase 2: the coordinator's commit is the commit point.
        for (i, p) in parts.iter_mut().enumerate() {
            let name = p.lease.pool().name.clone();
            let commit = format!(
                "COMMIT PREPARED {}",
                quote_literal(&participant_gid(&gid, i))
            );
            match p.lease.backend().execute_silently(&commit).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if i == 0 => {
                    self.abort_prepared(parts, parts.len(), &gid).await;
                    return Err(failed(&name, "COMMIT PREPARED", e));
                }
                Ok(Err(e)) => {
                    // Decided: the recovery task commits it later from the log.
                    tracing::warn!(
                        "COMMIT PREPARED {gid} on {name} failed ({e:?}); recovery will finish it"
                    );
                }
                Err(e) if i == 0 => {
                    return Err(SqlError::shard_unavailable(&name, format!("{e}; the transaction's outcome is decided by recovery from shard \"{name}\"")));
                }
                Err(e) => {
                    tracing::warn!("COMMIT PREPARED {gid} on {name}: {e}; recovery will finish it")
                }
            }
        }
        // The log row is only needed until every participant committed.
        let forget = format!(
            "DELETE FROM {COMMIT_LOG} WHERE gid = {}",
            quote_literal(&gid)
        );
        let _ = parts[0].lease.backend().execute_silently(&forget).await;
        Ok(())
    }

    /// Rolls back parts `0..prepared` (prepared) and the rest (open).
    async fn abort_prepared(&mut self, parts: &mut [Part], prepared: usize, gid: &str) {
        for (i, p) in parts.iter_mut().enumerate() {
            let sql = if i < prepared {
                format!(
                    "ROLLBACK PREPARED {}",
                    quote_literal(&participant_gid(gid, i))
                )
            } else {
                "ROLLBACK".to_string()
            };
            let _ = p.lease.backend().execute_silently(&sql).await;
        }
    }

    /// Plain COMMIT on each part in turn, reporting which shards committed.
    async fn commit_each(&mut self, parts: &mut [Part]) -> Result<(), SqlError> {
        let mut done = Vec::new();
        for p in parts.iter_mut() {
            let name = p.lease.pool().name.clone();
            match p.lease.backend().execute_silently("COMMIT").await {
                Ok(Ok(())) => done.push(name),
                Ok(Err(e)) => {
                    let err = failed(&name, "COMMIT", e);
                    return Err(if done.is_empty() {
                        err
                    } else {
                        err.with_hint(format!(
                            "Shards without two-phase commit: the statement is committed on {} and not on \"{name}\" (set max_prepared_transactions on the shards for all-or-nothing).",
                            done.join(", ")
                        ))
                    });
                }
                Err(e) => return Err(SqlError::shard_unavailable(&name, e)),
            }
        }
        Ok(())
    }

    /// [`twophase_refusal`] naming those of `parts` that cannot prepare.
    fn twophase_refusal_for(&self, parts: &[Part]) -> SqlError {
        let names: Vec<&str> = parts
            .iter()
            .map(|p| p.lease.pool())
            .filter(|p| p.twophase.load(Ordering::Relaxed) != TWOPHASE_YES)
            .map(|p| p.name.as_str())
            .collect();
        twophase_refusal(&names)
    }

    /// True when every part's shard allows prepared transactions (checked
    /// once per pool, see [`probe`]) and has the commit log.
    pub(super) async fn twophase_possible(&mut self, parts: &mut [Part]) -> bool {
        for p in parts.iter_mut() {
            if !twophase_ready(p.lease.pool()).await {
                return false;
            }
        }
        true
    }
}

/// Whether `pool`'s shard can take part in a two-phase commit: the answer
/// of the last [`probe`] (at start, on reload), or a probe now when there
/// has been none (or the shard could not be reached then).
pub async fn twophase_ready(pool: &ShardPool) -> bool {
    match pool.twophase.load(Ordering::Relaxed) {
        TWOPHASE_YES => true,
        TWOPHASE_NO => false,
        _ => probe(pool).await == Some(true),
    }
}

/// `pool.twophase`: not known yet (never probed, or the shard was down).
pub const TWOPHASE_UNKNOWN: u8 = 0;
/// `pool.twophase`: the shard prepares transactions and has the commit log.
pub const TWOPHASE_YES: u8 = 1;
/// `pool.twophase`: `max_prepared_transactions = 0` on the shard.
pub const TWOPHASE_NO: u8 = 2;

/// Asks the shard (on a fresh connection, outside any transaction) whether
/// it allows prepared transactions, creates the commit log if it does, and
/// records the answer in `pool.twophase`. None when the shard could not be
/// asked (the answer stays unknown and is asked again when needed).
pub async fn probe(pool: &ShardPool) -> Option<bool> {
    let asked = async {
        let mut be = pool.connect_new().await.ok()?;
        be.query_rows("SHOW max_prepared_transactions")
            .await
            .ok()
            .map(|rows| (be, rows))
    };
    let Some((mut be, rows)) = asked.await else {
        pool.twophase.store(TWOPHASE_UNKNOWN, Ordering::Relaxed);
        return None;
    };
    let n: i64 = rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let ok = n > 0 && matches!(be.execute_silently(COMMIT_LOG_DDL).await, Ok(Ok(())));
    pool.twophase.store(
        if ok { TWOPHASE_YES } else { TWOPHASE_NO },
        Ordering::Relaxed,
    );
    Some(ok)
}

/// The refusal of a statement or transaction that would write on several
/// shards when some of them cannot prepare transactions.
pub fn twophase_refusal(shards: &[&str]) -> SqlError {
    SqlError::new(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!(
            "this transaction writes on several shards, which needs two-phase commit, and shard {} has max_prepared_transactions = 0",
            shards
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .with_hint("Set max_prepared_transactions (for example to 100, at least the number of concurrent transactions) on every shard and restart it; until then keep each transaction on one shard key.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gids_name_their_coordinator_and_are_unique() {
        let a = new_gid("shard-0");
        let b = new_gid("shard-0");
        assert_ne!(a, b);
        assert_eq!(gid_coordinator(&a), Some("shard-0"));
        assert_eq!(gid_coordinator("other:1:x"), None);
        let p = participant_gid(&a, 3);
        assert_ne!(p, participant_gid(&a, 0));
        assert_eq!(gid_coordinator(&p), Some("shard-0"));
        assert_eq!(txid_of(&p), a);
        assert_eq!(txid_of(&a), a);
        assert_eq!(quote_literal("a'b"), "'a''b'");
    }
}
