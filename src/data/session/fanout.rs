//! Statements that run on several shards at once (simple protocol).
//!
//! Reads are streamed shard after shard: the first shard's RowDescription,
//! every shard's rows, one CommandComplete with the summed row count (reads
//! that need a merge go to [`super::fanout_merge`]). Writes and DDL run
//! inside a transaction on every shard and finish with two-phase commit
//! ([`super::twophase`]), so they apply everywhere or nowhere.

use super::copy_out::{forward_copy_data, TRAILER_MESSAGE};
use super::twophase::Commit;
use super::{End, Session};
use crate::data::codec::error::{parse_error_fields, sqlstate};
use crate::data::codec::frame::peek_frame;
use crate::data::codec::{messages, SqlError};
use crate::data::pool::Lease;
use bytes::BytesMut;
use std::sync::atomic::Ordering::Relaxed;

/// How a multi-shard statement must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FanMode {
    /// Read: autocommit on each shard, results concatenated.
    Read,
    /// A read the merge engine answers ([`crate::data::merge::exec`]).
    Merge(crate::data::planner::DistRef),
    /// Write: all shards or none (two-phase commit, refused where a shard
    /// cannot prepare transactions).
    Atomic,
    /// DDL: like `Atomic`, but committed shard by shard (failures reported
    /// per shard) where the shards cannot prepare transactions.
    Ddl,
    /// A write to a reference table: like `Atomic`, but every shard holds a
    /// copy, so the client gets one copy's rows and count, not their sum.
    Copies,
    /// VACUUM and friends: each shard on its own, outside a transaction.
    Maintenance,
}

impl FanMode {
    /// Whether the shards run the statement inside a transaction of their own.
    pub(super) fn begins(&self) -> bool {
        matches!(self, FanMode::Atomic | FanMode::Ddl | FanMode::Copies)
    }

    /// How the statement commits (`in_tx`: inside the client's transaction,
    /// which the client's COMMIT ends).
    pub(super) fn commit(&self, in_tx: bool) -> Commit {
        match self {
            _ if in_tx || !self.begins() => Commit::Skip,
            FanMode::Atomic => Commit::Atomic,
            _ => Commit::BestEffort,
        }
    }
}

/// One shard's part of a fan-out.
pub(super) struct Part {
    pub shard: usize,
    pub lease: Lease,
}

/// What a shard answered to one statement.
#[derive(Debug, Default)]
pub(super) struct Answer {
    /// Rows affected or returned, summed over the shards' CommandComplete tags.
    pub count: Option<u64>,
    /// The CommandComplete tag without its count ("SELECT", "INSERT 0", "UPDATE").
    pub verb: Option<String>,
    /// The first error, as an encoded ErrorResponse, with its SQLSTATE.
    pub error: Option<(BytesMut, String)>,
    /// A COPY TO STDOUT was relayed (one CopyDone is owed at the end).
    pub copy_out: bool,
    /// A binary COPY TO: the header went out, a trailer is held for the end
    /// (see `copy_out.rs`).
    pub copy_header_sent: bool,
    pub copy_trailer: bool,
    /// The shards hold copies ([`FanMode::Copies`]): only the first shard's
    /// rows and count reach the client.
    pub copies: bool,
}

/// Splits a CommandComplete tag into its verb and count: "INSERT 0 5" → ("INSERT 0", 5).
pub(super) fn split_tag(tag: &str) -> (String, Option<u64>) {
    match tag.rsplit_once(' ') {
        Some((verb, n)) => match n.parse::<u64>() {
            Ok(n) => (verb.to_string(), Some(n)),
            Err(_) => (tag.to_string(), None),
        },
        None => (tag.to_string(), None),
    }
}

/// Splits the tag of a CommandComplete body (NUL-terminated) like [`split_tag`].
pub(super) fn split_complete(body: &[u8]) -> (String, Option<u64>) {
    split_tag(&String::from_utf8_lossy(
        body.strip_suffix(&[0]).unwrap_or(body),
    ))
}

impl Session {
    /// Checks out a backend on each of `shards`, ready for this client's settings.
    pub(super) async fn checkout_parts(&mut self, shards: &[usize]) -> Result<Vec<Part>, SqlError> {
        let mut parts = Vec::with_capacity(shards.len());
        for &shard in shards {
            let pool = self
                .rt
                .pools
                .get(shard)
                .ok_or_else(|| {
                    SqlError::new(sqlstate::INTERNAL_ERROR, format!("no shard {shard}"))
                })?
                .clone();
            // A read fanned out outside a transaction may use replicas.
            let checkout = if self.replica_read
                && pool.has_replicas()
                && self.tx == b'I'
                && self.others.is_empty()
            {
                pool.checkout_read().await?
            } else {
                pool.checkout().await?
            };
            let lease = self.with_settings(checkout).await?;
            parts.push(Part { shard, lease });
        }
        self.publish_with(&mut parts);
        Ok(parts)
    }

    /// Runs the simple-protocol `query` on every shard in `shards`. Outside a
    /// transaction a write runs all-or-nothing (two-phase commit); inside one
    /// the shards join the transaction.
    pub(super) async fn fanout_simple(
        &mut self,
        query: &[u8],
        shards: &[usize],
        mode: FanMode,
    ) -> Result<(), End> {
        let begin = mode.begins();
        let (mut parts, in_tx) = match self.open_parts(shards, begin).await {
            Ok(p) => p,
            Err(e) => return self.error_and_ready(e).await,
        };
        let commit = mode.commit(in_tx);
        let mut total = Answer {
            copies: mode == FanMode::Copies,
            ..Answer::default()
        };
        let lost = self
            .run_on_parts(&mut parts, |_| query.to_vec(), &mut total, None)
            .await;
        if let Some(e) = lost {
            // Backends of a failed fan-out are dropped, not reused.
            drop(parts);
            if in_tx {
                return Err(End::Fatal(SqlError { fatal: true, ..e }));
            }
            self.publish_running();
            return self.error_and_ready(e).await;
        }
        if mode == FanMode::Ddl {
            self.after_ddl(&mut parts, &mut total).await;
        }
        self.complete_parts(parts, total, in_tx, commit).await
    }

    /// Sends each part its SQL (a Query message built by `sql_for`), then
    /// relays the answers shard after shard. Returns a lost connection's error.
    pub(super) async fn run_on_parts(
        &mut self,
        parts: &mut [Part],
        sql_for: impl Fn(usize) -> Vec<u8>,
        total: &mut Answer,
        mut rows: Option<&mut Vec<Vec<BytesMut>>>,
    ) -> Option<SqlError> {
        // Send to every shard first, so they work in parallel.
        for (i, p) in parts.iter_mut().enumerate() {
            let msg = sql_for(i);
            if let Err(e) = p.lease.backend().send(&msg).await {
                return Some(SqlError::shard_unavailable(&p.lease.pool().name, e));
            }
            p.lease.pool().stats.queries.fetch_add(1, Relaxed);
        }
        let mut described = false;
        let mut copy_out = false;
        let mut lost = None;
        for (i, p) in parts.iter_mut().enumerate() {
            let sink = rows.as_deref_mut().and_then(|r| r.get_mut(i));
            if let Err(Lost(e)) = self
                .relay_part(p, &mut described, &mut copy_out, total, sink)
                .await
            {
                lost.get_or_insert(SqlError::shard_unavailable(&p.lease.pool().name, e));
            }
        }
        total.copy_out = copy_out;
        lost
    }

    /// Finishes a multi-shard statement: commit or roll back (outside a
    /// transaction), give the backends back, and answer the client.
    pub(super) async fn complete_parts(
        &mut self,
        parts: Vec<Part>,
        total: Answer,
        in_tx: bool,
        commit: Commit,
    ) -> Result<(), End> {
        self.settle_parts(parts, total, in_tx, commit).await;
        messages::ready_for_query(&mut self.out, self.tx);
        self.flush_client().await
    }

    /// [`Session::complete_parts`] without the ReadyForQuery: the
    /// statement's error or CommandComplete goes to the client's buffer.
    /// Returns whether the statement succeeded.
    pub(super) async fn settle_parts(
        &mut self,
        mut parts: Vec<Part>,
        mut total: Answer,
        in_tx: bool,
        commit: Commit,
    ) -> bool {
        if let Some((err, _)) = total.error.take() {
            if in_tx {
                self.put_parts(parts);
                self.tx = b'E';
            } else {
                if commit != Commit::Skip {
                    self.rollback_all(&mut parts).await;
                }
                self.finish_parts(parts);
            }
            self.out.extend_from_slice(&err);
            return false;
        }
        if in_tx {
            self.put_parts(parts);
        } else {
            if commit != Commit::Skip {
                if let Err(e) = self.commit_all(&mut parts, commit).await {
                    // Closed, not reused: their state after a failed commit is unknown.
                    drop(parts);
                    self.publish_running();
                    e.encode(&mut self.out);
                    return false;
                }
            }
            self.finish_parts(parts);
        }
        if total.copy_trailer {
            self.out.extend_from_slice(&TRAILER_MESSAGE);
        }
        if total.copy_out {
            messages::empty(&mut self.out, b'c');
        }
        match (&total.verb, total.count) {
            (Some(verb), Some(n)) => {
                messages::command_complete(&mut self.out, &format!("{verb} {n}"))
            }
            (Some(verb), None) => messages::command_complete(&mut self.out, verb),
            (None, _) => {}
        }
        true
    }

    /// Returns fan-out backends to their pools (they are idle and clean).
    pub(super) fn finish_parts(&mut self, parts: Vec<Part>) {
        // Unlisted before they go back: a late CancelRequest must not reach
        // their next client.
        self.publish_running();
        for p in parts {
            p.lease.pool().stats.transactions.fetch_add(1, Relaxed);
            p.lease.release();
        }
    }

    /// Relays one shard's answer to a fanned-out simple query up to its
    /// ReadyForQuery, forwarding rows and folding the rest into `total`.
    async fn relay_part(
        &mut self,
        p: &mut Part,
        described: &mut bool,
        copy_out: &mut bool,
        total: &mut Answer,
        mut sink: Option<&mut Vec<BytesMut>>,
    ) -> Result<(), Lost> {
        let started = std::time::Instant::now();
        let pool = p.lease.pool().clone();
        // A later copy of a reference table: its rows and count repeat the first's.
        let repeat = total.copies && total.verb.is_some();
        loop {
            let be = p.lease.backend();
            let frame = match peek_frame(&be.reader.buf, be.reader.max) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    if !self.out.is_empty() {
                        use tokio::io::AsyncWriteExt;
                        self.client.write_all(&self.out).await.map_err(Lost)?;
                        self.out.clear();
                    }
                    be.next_frame().await.map_err(Lost)?
                }
                Err(e) => {
                    return Err(Lost(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        e,
                    )))
                }
            };
            let bytes = &be.reader.buf[..frame.len];
            match frame.tag {
                b'T' if !*described => {
                    self.out.extend_from_slice(bytes);
                    *described = true;
                }
                b'H' if !*copy_out => {
                    self.out.extend_from_slice(bytes);
                    *copy_out = true;
                }
                b'D' if repeat => {}
                b'D' => match sink.as_deref_mut() {
                    Some(rows) => rows.push(BytesMut::from(bytes)),
                    None => self.out.extend_from_slice(bytes),
                },
                b'd' => {
                    let body = frame.body(bytes);
                    total.copy_trailer |=
                        forward_copy_data(bytes, body, &mut total.copy_header_sent, &mut self.out);
                }
                b'N' => self.out.extend_from_slice(bytes),
                b'C' if repeat => {}
                b'C' => {
                    let body = frame.body(bytes);
                    let (verb, n) = split_complete(body);
                    if let Some(n) = n {
                        *total.count.get_or_insert(0) += n;
                    }
                    total.verb.get_or_insert(verb);
                }
                b'I' if total.verb.is_none() && !*described => {
                    self.out.extend_from_slice(bytes);
                    *described = true;
                }
                b'E' => {
                    pool.stats.errors.fetch_add(1, Relaxed);
                    if total.error.is_none() {
                        let (code, _) = parse_error_fields(frame.body(bytes));
                        total.error = Some((BytesMut::from(bytes), code));
                    }
                }
                b'G' => {
                    // COPY FROM STDIN into several shards goes through the COPY splitter, never here.
                    let mut fail = BytesMut::new();
                    postgres_protocol::message::frontend::copy_fail(
                        "COPY FROM STDIN cannot fan out",
                        &mut fail,
                    )
                    .ok();
                    be.reader.skip(frame);
                    be.send(&fail).await.map_err(Lost)?;
                    continue;
                }
                b'Z' => {
                    be.reader.skip(frame);
                    pool.stats
                        .latency_us_total
                        .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
                    return Ok(());
                }
                b'S' => self.parameter_status(frame.body(bytes)),
                // CopyDone ('c') is sent once at the end; ParameterStatus is per backend.
                _ => {}
            }
            p.lease.backend().reader.skip(frame);
            if self.standard_strings_off {
                p.lease.backend().standard_strings_off = true;
            }
        }
    }
}

/// A backend connection failed during a fan-out.
pub(super) struct Lost(pub std::io::Error);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_command_tags() {
        assert_eq!(split_tag("SELECT 5"), ("SELECT".into(), Some(5)));
        assert_eq!(split_tag("INSERT 0 12"), ("INSERT 0".into(), Some(12)));
        assert_eq!(split_tag("CREATE TABLE"), ("CREATE TABLE".into(), None));
        assert_eq!(split_tag("COPY 3"), ("COPY".into(), Some(3)));
    }
}
