//! Transactions that span shards (with `proxy.two_phase_commit = true`).
//!
//! A transaction starts on one shard. When a statement needs another shard,
//! that shard's backend joins: it gets BEGIN with the same isolation level,
//! and the session keeps it in `others`. The backend running the current
//! statement is always `lease`; the rest wait in `others`. COMMIT of such a
//! transaction is a two-phase commit over all of them; ROLLBACK rolls all back.

use super::fanout::Part;
use super::twophase::{twophase_ready, twophase_refusal, Commit};
use super::{End, Session};
use crate::data::codec::error::sqlstate;
use crate::data::codec::{messages, SqlError};
use crate::data::pool::Lease;

impl Session {
    /// True when a statement for `shard` may join the open transaction.
    pub(super) fn may_join(&self, shard: usize) -> Result<(), SqlError> {
        if self.rt.config.proxy.two_phase_commit {
            return Ok(());
        }
        let held = if self.lease.is_some() {
            self.rt.pools[self.lease_shard].name.as_str()
        } else if let Some(p) = self.others.first() {
            self.rt.pools[p.shard].name.as_str()
        } else {
            return Err(SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "this statement in a transaction needs several shards, and transactions span shards only with proxy.two_phase_commit = true",
            )
            .with_hint("Run it outside the transaction, add the shard key, or enable proxy.two_phase_commit."));
        };
        let want = self
            .rt
            .pools
            .get(shard)
            .map(|p| p.name.as_str())
            .unwrap_or("?");
        Err(SqlError::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("transaction is pinned to shard \"{held}\"; this statement needs shard \"{want}\""),
        )
        .with_hint("Keep a transaction's statements on one shard key, or set proxy.two_phase_commit = true."))
    }

    /// Checks that a statement on `shards` may run in the open transaction:
    /// shards beyond the one it is pinned to need two-phase commit.
    pub(super) fn check_join(&self, shards: &[usize]) -> Result<(), SqlError> {
        let mut held: Vec<usize> = self.others.iter().map(|p| p.shard).collect();
        if self.lease.is_some() {
            held.push(self.lease_shard);
        }
        if held.is_empty() {
            held.extend(shards.first());
        }
        match shards.iter().find(|s| !held.contains(s)) {
            Some(&s) => self.may_join(s),
            None => Ok(()),
        }
    }

    /// A backend of `shard` inside the current transaction: already held, or
    /// checked out and begun with the transaction's isolation level.
    async fn join(&mut self, shard: usize) -> Result<Lease, SqlError> {
        if let Some(pos) = self.others.iter().position(|p| p.shard == shard) {
            return Ok(self.others.swap_remove(pos).lease);
        }
        if self.lease.is_none() {
            if let Some(begin) = self.pending_begin.take() {
                // The deferred BEGIN opens the transaction on this first shard.
                let mut parts = self.checkout_parts(&[shard]).await?;
                let mut lease = parts
                    .pop()
                    .map(|p| p.lease)
                    .ok_or_else(|| SqlError::new(sqlstate::INTERNAL_ERROR, "no lease"))?;
                let name = lease.pool().name.clone();
                return match lease.backend().execute_silently(&begin).await {
                    Ok(Ok(())) => Ok(lease),
                    Ok(Err((code, msg))) => Err(SqlError::new(
                        sqlstate::CONNECTION_EXCEPTION,
                        format!("{begin} on shard \"{name}\" failed: {code} {msg}"),
                    )),
                    Err(e) => Err(SqlError::shard_unavailable(&name, e)),
                };
            }
        }
        self.may_join(shard)?;
        self.check_twophase_join(shard).await?;
        let isolation = match self.lease.as_mut() {
            Some(l) => l
                .backend()
                .query_rows("SELECT pg_catalog.current_setting('transaction_isolation')")
                .await
                .ok()
                .and_then(|r| r.into_iter().next())
                .and_then(|r| r.into_iter().next().flatten())
                .unwrap_or_else(|| "read committed".into()),
            None => "read committed".into(),
        };
        let mut parts = self.checkout_parts(&[shard]).await?;
        let mut lease = parts
            .pop()
            .map(|p| p.lease)
            .ok_or_else(|| SqlError::new(sqlstate::INTERNAL_ERROR, "no lease"))?;
        let name = lease.pool().name.clone();
        let level = match isolation.as_str() {
            "serializable" => "SERIALIZABLE",
            "repeatable read" => "REPEATABLE READ",
            "read uncommitted" => "READ UNCOMMITTED",
            _ => "READ COMMITTED",
        };
        match lease
            .backend()
            .execute_silently(&format!("BEGIN ISOLATION LEVEL {level}"))
            .await
        {
            Ok(Ok(())) => Ok(lease),
            Ok(Err((code, msg))) => Err(SqlError::new(
                sqlstate::CONNECTION_EXCEPTION,
                format!("BEGIN on shard \"{name}\" failed: {code} {msg}"),
            )),
            Err(e) => Err(SqlError::shard_unavailable(&name, e)),
        }
    }

    /// Refuses (0A000) a join of `shard` to the open transaction when it or
    /// a shard already in the transaction cannot prepare transactions: the
    /// COMMIT could not be all-or-nothing.
    async fn check_twophase_join(&self, shard: usize) -> Result<(), SqlError> {
        let mut held: Vec<usize> = self.others.iter().map(|p| p.shard).collect();
        if self.lease.is_some() {
            held.push(self.lease_shard);
        }
        held.push(shard);
        let mut cannot = Vec::new();
        for s in held {
            if let Some(pool) = self.rt.pools.get(s) {
                if !twophase_ready(pool).await {
                    cannot.push(pool.name.as_str());
                }
            }
        }
        if cannot.is_empty() {
            Ok(())
        } else {
            Err(twophase_refusal(&cannot))
        }
    }

    /// Makes `shard`'s backend the current one inside the open transaction.
    pub(super) async fn switch_in_transaction(&mut self, shard: usize) -> Result<(), SqlError> {
        let lease = self.join(shard).await?;
        if let Some(old) = self.lease.replace(lease) {
            self.others.push(Part {
                shard: self.lease_shard,
                lease: old,
            });
        }
        self.lease_shard = shard;
        self.publish_running();
        Ok(())
    }

    /// Takes backends for `shards` out of the session for a multi-shard
    /// statement: inside a transaction they join it, outside they are fresh.
    pub(super) async fn take_parts(&mut self, shards: &[usize]) -> Result<Vec<Part>, SqlError> {
        if self.tx == b'I' {
            self.release().await;
            return self.checkout_parts(shards).await;
        }
        // The other shards join first, while the current backend is still
        // held: `join` reads the transaction's isolation level from it.
        let mut slots: Vec<Option<Part>> = shards.iter().map(|_| None).collect();
        for (slot, &s) in slots.iter_mut().zip(shards) {
            if s == self.lease_shard && self.lease.is_some() {
                continue;
            }
            match self.join(s).await {
                // The first join opened a deferred BEGIN: held as the
                // current backend, the later joins copy its isolation level
                // (it is taken below like one held before).
                Ok(lease) if self.lease.is_none() => {
                    self.lease = Some(lease);
                    self.lease_shard = s;
                }
                Ok(lease) => *slot = Some(Part { shard: s, lease }),
                Err(e) => {
                    self.put_parts(slots.into_iter().flatten().collect());
                    return Err(e);
                }
            }
        }
        for (slot, &s) in slots.iter_mut().zip(shards) {
            if slot.is_none() && s == self.lease_shard {
                if let Some(lease) = self.lease.take() {
                    *slot = Some(Part { shard: s, lease });
                }
            }
        }
        let mut parts: Vec<Part> = slots.into_iter().flatten().collect();
        // Each join listed only its own backend: list them all.
        self.publish_with(&mut parts);
        Ok(parts)
    }

    /// Backends for a statement on `shards`, and whether a transaction is
    /// open: joined to it (needs two-phase commit beyond the pinned shard), or
    /// fresh outside one, with BEGIN on each when `begin` (all-or-nothing).
    pub(super) async fn open_parts(
        &mut self,
        shards: &[usize],
        begin: bool,
    ) -> Result<(Vec<Part>, bool), SqlError> {
        let in_tx = self.tx != b'I';
        if in_tx {
            self.check_join(shards)?;
        }
        let mut parts = self.take_parts(shards).await?;
        if begin && !in_tx {
            self.begin_all(&mut parts).await?;
        }
        Ok((parts, in_tx))
    }

    /// Gives backends taken by [`Session::take_parts`] back to an open
    /// transaction (the first becomes the current one).
    pub(super) fn put_parts(&mut self, parts: Vec<Part>) {
        for p in parts {
            if self.lease.is_none() {
                self.lease = Some(p.lease);
                self.lease_shard = p.shard;
            } else {
                self.others.push(p);
            }
        }
        self.publish_running();
    }

    /// Lists every held backend for CancelRequests (in the list for
    /// several; the one-backend slot is cleared).
    pub(super) fn publish_running(&mut self) {
        self.publish_with(&mut []);
    }

    /// Like [`Session::publish_running`], with `parts` taken out of the
    /// session for a multi-shard statement.
    pub(super) fn publish_with(&mut self, parts: &mut [Part]) {
        self.info.clear_running_one();
        self.many_running = true;
        if let Ok(mut r) = self.info.running_on.lock() {
            r.clear();
            if let Some(l) = self.lease.as_mut() {
                r.push((l.pool().clone(), l.backend().cancel.clone()));
            }
            for p in self.others.iter_mut().chain(parts.iter_mut()) {
                r.push((p.lease.pool().clone(), p.lease.backend().cancel.clone()));
            }
        }
    }

    /// COMMIT or ROLLBACK of a transaction spanning shards (simple protocol).
    pub(super) async fn end_multi(&mut self, commit: bool) -> Result<(), End> {
        match self.finish_multi(commit).await {
            Ok(tag) => {
                messages::command_complete(&mut self.out, tag);
                messages::ready_for_query(&mut self.out, b'I');
                self.flush_client().await
            }
            Err(e) => self.error_and_ready(e).await,
        }
    }

    /// Ends a transaction spanning shards; returns the command tag.
    pub(super) async fn finish_multi(&mut self, commit: bool) -> Result<&'static str, SqlError> {
        let mut parts: Vec<Part> = Vec::with_capacity(self.others.len() + 1);
        if let Some(lease) = self.lease.take() {
            parts.push(Part {
                shard: self.lease_shard,
                lease,
            });
        }
        parts.append(&mut self.others);
        let committing = commit && self.tx == b'T';
        let result = if committing {
            self.commit_all(&mut parts, Commit::Atomic).await
        } else {
            self.rollback_all(&mut parts).await;
            Ok(())
        };
        self.tx = b'I';
        self.info
            .state
            .store(b'I', std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.finish_parts(parts);
                Ok(if committing { "COMMIT" } else { "ROLLBACK" })
            }
            Err(e) => {
                // Backends whose commit failed are closed, not reused.
                drop(parts);
                self.publish_running();
                Err(e)
            }
        }
    }
}
