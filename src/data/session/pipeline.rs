//! Extended-protocol pipelines whose statements go to several shards (JDBC
//! `executeBatch`, psycopg `executemany` and pipeline mode, pgx batches,
//! several Bind/Execute before one Sync).
//!
//! Postgres runs a pipeline up to Sync as one implicit transaction: each
//! Execute answers in order, the first error skips the rest up to Sync and
//! rolls everything back. Here the same pipeline runs on every shard it
//! touches as one transaction: each shard joining gets BEGIN (sent with its
//! first message, as a named statement so the client's unnamed statement
//! and portal are left alone), its share of the messages, then Flush or
//! Sync; the replies are read back in the client's order (a step at a
//! time, from the shard that ran it) and forwarded as they come. At Sync
//! the shards commit with two-phase commit, or all roll back after an
//! error. Inside an explicit transaction (open before, or begun by the
//! client's BEGIN in the pipeline) the shards stay in it, joining as
//! needed, and the client's COMMIT ends it ([`super::txn`]).
//!
//! A pipeline ended by Flush keeps its backends here until its Sync.
//! Translation is in [`super::pipeline_wire`], reading the replies in
//! [`super::pipeline_relay`].

use super::fanout::Part;
use super::prepared::PreparedStmt;
use super::twophase::{twophase_ready, twophase_refusal, Commit};
use super::{End, Session};
use crate::data::codec::{messages, SqlError};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// A multi-shard pipeline in progress (until its Sync).
pub(super) struct Pipe {
    /// Backends taking part, in the order they joined (the first is the
    /// two-phase commit's coordinator).
    pub parts: Vec<Part>,
    /// What the proxy knows of each part's backend (same index).
    pub state: Vec<PartState>,
    /// Portals bound in this pipeline, and where.
    pub portals: Vec<(String, Place)>,
    /// Statement names this pipeline's Parse and Close messages changed,
    /// with what they named before: undone for the messages an error skips.
    pub undo: Vec<Undo>,
    /// An error ended the pipeline: the rest is skipped until Sync.
    pub failed: bool,
    /// A transaction block is open (it was before the pipeline, or the
    /// client's BEGIN ran in it): Sync leaves it open.
    pub explicit: bool,
    /// The client's BEGIN was translated (it runs unless an error comes first).
    pub begin_seen: bool,
    /// What opens the transaction on a shard that joins (None: not known
    /// yet, read from the transaction's first shard when needed).
    pub begin: Option<String>,
    /// Steps (client messages) numbered across the pipeline's segments.
    pub steps: usize,
    /// A statement that may write ran: several shards need two-phase commit.
    pub writes: bool,
}

/// One part's backend as the pipeline sees it.
#[derive(Debug, Default)]
pub(super) struct PartState {
    /// The hash of the client statement that is this backend's unnamed
    /// statement (None: not one of the client's).
    pub unnamed: Option<u64>,
    /// Inside the pipeline's transaction block.
    pub begun: bool,
    /// The backend reported an error: it skips everything up to Sync.
    pub failed: bool,
    /// Messages for this backend in the current segment.
    pub wire: BytesMut,
    /// The replies they will get, in order.
    pub queue: VecDeque<Entry>,
}

/// One expected reply of a part.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// The client message (step) it belongs to.
    pub step: usize,
    /// A message the proxy added: its reply is not the client's.
    pub swallow: bool,
    /// The statement this message prepares on the backend (forgotten
    /// again if the backend rejects or skips it).
    pub parsed: Option<u64>,
}

/// Where a portal (or a step) runs.
#[derive(Debug, Clone)]
pub(super) enum Place {
    /// One part.
    Part(usize),
    /// Several parts: a statement fanned out, or a multi-row INSERT split.
    Many(Arc<Spread>),
    /// Answered by the proxy (the client's BEGIN).
    Proxy,
}

/// The parts of a statement that runs on several of them.
#[derive(Debug)]
pub(super) struct Spread {
    pub parts: Vec<usize>,
    /// A split multi-row INSERT: the original row indexes each part got, so
    /// RETURNING rows go back in VALUES order.
    pub rows: Option<Vec<Vec<usize>>>,
    /// Copies of a reference table: one part's rows and count stand for all.
    pub copies: bool,
}

/// A registry change to undo.
#[derive(Debug)]
pub(super) struct Undo {
    pub step: usize,
    pub name: String,
    pub before: Option<Arc<PreparedStmt>>,
}

/// One client message and where its reply comes from.
#[derive(Debug)]
pub(super) struct Step {
    pub no: usize,
    pub kind: StepKind,
}

#[derive(Debug)]
pub(super) enum StepKind {
    /// From one part.
    Part(usize),
    /// From several: an Execute's rows and counts are merged (`execute`:
    /// its row limit, 0 for none), anything else answers once.
    Many {
        spread: Arc<Spread>,
        execute: Option<u32>,
    },
    /// The proxy's own reply.
    Synth(BytesMut),
    /// The client's BEGIN executes: the pipeline becomes a transaction block.
    Begin,
    /// The proxy refuses this message: the pipeline fails here.
    Fail(SqlError),
}

impl Pipe {
    /// The part of `shard`, if it is in the pipeline.
    pub(super) fn part_of(&self, shard: usize) -> Option<usize> {
        self.parts.iter().position(|p| p.shard == shard)
    }

    /// Forgets, on each backend, the statements prepared by messages that
    /// were never sent or never answered, and drops those messages.
    pub(super) fn discard_unsent(&mut self) {
        for (p, st) in self.parts.iter_mut().zip(self.state.iter_mut()) {
            for e in st.queue.drain(..) {
                if let Some(h) = e.parsed {
                    p.lease.backend().prepared.remove(&h);
                }
            }
            st.wire.clear();
        }
    }
}

impl Session {
    /// Runs one segment of a multi-shard pipeline (its messages up to Sync,
    /// or up to Flush: then the pipeline stays open for the next segment).
    pub(super) async fn run_pipeline(&mut self, batch: &[u8], sync: bool) -> Result<(), End> {
        let mut pipe = match self.pipe.take() {
            Some(p) => p,
            None => Box::new(self.open_pipe()),
        };
        let steps = match self.pipe_translate(&mut pipe, batch).await {
            Ok(s) => s,
            Err(end) => {
                self.abandon_pipe(*pipe);
                return Err(end);
            }
        };
        let steps = self.pipe_preflight(&mut pipe, steps).await;
        // Every part gets its messages and the segment's end, in one write each.
        for i in 0..pipe.parts.len() {
            let st = &mut pipe.state[i];
            if st.wire.is_empty() && !sync {
                continue;
            }
            if sync {
                messages::sync(&mut st.wire);
            } else {
                messages::empty(&mut st.wire, b'H');
            }
            let wire = std::mem::take(&mut st.wire);
            let p = &mut pipe.parts[i];
            let sent = p.lease.backend().send(&wire).await;
            let stats = &p.lease.pool().stats;
            stats.queries.fetch_add(1, Relaxed);
            stats.bytes_sent.fetch_add(wire.len() as u64, Relaxed);
            pipe.state[i].wire = wire;
            pipe.state[i].wire.clear();
            if let Err(e) = sent {
                let name = pipe.parts[i].lease.pool().name.clone();
                return self.pipe_lost(pipe, &name, e).await;
            }
        }
        if let Err((name, e)) = self.pipe_relay(&mut pipe, steps).await? {
            return self.pipe_lost(pipe, &name, e).await;
        }
        if !sync {
            if pipe.failed {
                // As Postgres: everything up to Sync is skipped.
                self.skip_to_sync = true;
            }
            self.pipe = Some(pipe);
            return self.flush_client().await;
        }
        match self.pipe_read_ready(&mut pipe).await {
            Ok(()) => {}
            Err((name, e)) => return self.pipe_lost(pipe, &name, e).await,
        }
        self.finish_pipe(*pipe).await
    }

    /// A new pipeline, taking over the backends the session holds: the
    /// current one (with its unnamed statement and portals, mid-pipeline
    /// after a Flush, or inside a transaction) and a transaction's others.
    fn open_pipe(&mut self) -> Pipe {
        let explicit = self.tx != b'I';
        let mut pipe = Pipe {
            parts: Vec::new(),
            state: Vec::new(),
            portals: Vec::new(),
            undo: Vec::new(),
            failed: false,
            explicit,
            begin_seen: false,
            begin: None,
            steps: 0,
            writes: false,
        };
        match self.pending_begin.take() {
            // A deferred BEGIN: every shard opens the transaction with it.
            Some(text) => pipe.begin = Some(text),
            None if !explicit => pipe.begin = Some("BEGIN".into()),
            None => {}
        }
        if let Some(lease) = self.lease.take() {
            let unnamed = if self.unnamed_on_lease {
                self.prepared.get("").map(|s| s.hash)
            } else {
                None
            };
            pipe.parts.push(Part {
                shard: self.lease_shard,
                lease,
            });
            pipe.state.push(PartState {
                unnamed,
                begun: explicit,
                ..PartState::default()
            });
        }
        self.unnamed_on_lease = false;
        for p in self.others.drain(..) {
            pipe.parts.push(p);
            pipe.state.push(PartState {
                begun: true,
                ..PartState::default()
            });
        }
        pipe
    }

    /// The part for `shard`: held already, or checked out now (and, inside
    /// an explicit transaction, allowed to join it).
    pub(super) async fn pipe_part(
        &mut self,
        pipe: &mut Pipe,
        shard: usize,
    ) -> Result<usize, SqlError> {
        if let Some(i) = pipe.part_of(shard) {
            return Ok(i);
        }
        if (pipe.explicit || pipe.begin_seen) && !pipe.parts.is_empty() {
            // Pinned transactions (two_phase_commit = false) stay on one shard.
            self.may_join(shard)?;
        }
        if pipe.begin.is_none() {
            pipe.begin = Some(self.pipe_isolation(pipe).await);
        }
        let pool = self
            .rt
            .pools
            .get(shard)
            .ok_or_else(|| {
                SqlError::new(
                    crate::data::codec::error::sqlstate::INTERNAL_ERROR,
                    format!("no shard {shard}"),
                )
            })?
            .clone();
        let lease = self.with_settings(pool.checkout().await?).await?;
        pipe.parts.push(Part { shard, lease });
        pipe.state.push(PartState::default());
        self.publish_with(&mut pipe.parts);
        Ok(pipe.parts.len() - 1)
    }

    /// `BEGIN ISOLATION LEVEL …` of the open transaction, read from its first
    /// shard (a shard joining an explicit transaction gets the same level).
    async fn pipe_isolation(&mut self, pipe: &mut Pipe) -> String {
        let level = match pipe.parts.first_mut() {
            Some(p) => p
                .lease
                .backend()
                .query_rows("SELECT pg_catalog.current_setting('transaction_isolation')")
                .await
                .ok()
                .and_then(|r| r.into_iter().next())
                .and_then(|r| r.into_iter().next().flatten()),
            None => None,
        };
        format!(
            "BEGIN ISOLATION LEVEL {}",
            match level.as_deref() {
                Some("serializable") => "SERIALIZABLE",
                Some("repeatable read") => "REPEATABLE READ",
                Some("read uncommitted") => "READ UNCOMMITTED",
                _ => "READ COMMITTED",
            }
        )
    }

    /// Before anything is sent: a pipeline that writes on several shards
    /// needs every one of them to prepare transactions; if one cannot,
    /// the segment is refused at its first step (0A000) and nothing runs.
    async fn pipe_preflight(&mut self, pipe: &mut Pipe, steps: Vec<Step>) -> Vec<Step> {
        if pipe.parts.len() < 2 || !pipe.writes {
            return steps;
        }
        let mut cannot = Vec::new();
        for p in &pipe.parts {
            if !twophase_ready(p.lease.pool()).await {
                cannot.push(p.lease.pool().name.clone());
            }
        }
        if cannot.is_empty() {
            return steps;
        }
        pipe.discard_unsent();
        let names: Vec<&str> = cannot.iter().map(String::as_str).collect();
        let no = steps.first().map_or(pipe.steps, |s| s.no);
        vec![Step {
            no,
            kind: StepKind::Fail(twophase_refusal(&names)),
        }]
    }

    /// After the Sync: every part's ReadyForQuery (the answers to
    /// messages an error skipped never come).
    async fn pipe_read_ready(&mut self, pipe: &mut Pipe) -> Result<(), (String, std::io::Error)> {
        for (p, st) in pipe.parts.iter_mut().zip(pipe.state.iter_mut()) {
            let be = p.lease.backend();
            loop {
                let f = match be.next_frame().await {
                    Ok(f) => f,
                    Err(e) => return Err((p.lease.pool().name.clone(), e)),
                };
                let tag = f.tag;
                let status = f.body(&be.reader.buf).first().copied();
                if tag == b'E' {
                    // An answer the relay did not wait for (it stopped at
                    // the client's first error): the pipeline failed anyway.
                    st.failed = true;
                    pipe.failed = true;
                }
                be.reader.skip(f);
                if tag == b'Z' {
                    if status == Some(b'E') {
                        st.failed = true;
                    }
                    break;
                }
            }
            for e in st.queue.drain(..) {
                if let Some(h) = e.parsed {
                    be.prepared.remove(&h);
                }
            }
        }
        Ok(())
    }

    /// Ends the pipeline at its Sync: commit or roll back (implicit
    /// transaction), or leave the transaction open with the parts back in
    /// the session (explicit), then ReadyForQuery.
    async fn finish_pipe(&mut self, pipe: Pipe) -> Result<(), End> {
        let Pipe {
            mut parts,
            state,
            failed,
            explicit,
            writes,
            ..
        } = pipe;
        if explicit {
            if failed {
                // The transaction is aborted on every shard, as it would be
                // on one Postgres: whatever runs next answers 25P02.
                let sql = super::extended::raise_sql(
                    "25P02",
                    "current transaction is aborted, commands ignored until end of transaction block",
                );
                for (p, st) in parts.iter_mut().zip(&state) {
                    if !st.failed {
                        let _ = p.lease.backend().execute_silently(&sql).await;
                    }
                }
            }
            let registry_unnamed = self.prepared.get("").map(|s| s.hash);
            self.unnamed_on_lease = registry_unnamed.is_some()
                && state.first().and_then(|s| s.unnamed) == registry_unnamed;
            self.put_parts(parts);
            self.tx = if failed { b'E' } else { b'T' };
        } else {
            self.unnamed_on_lease = false;
            if failed {
                self.rollback_all(&mut parts).await;
                self.finish_parts(parts);
            } else {
                let need = if writes {
                    Commit::Atomic
                } else {
                    Commit::BestEffort
                };
                match self.commit_all(&mut parts, need).await {
                    Ok(()) => self.finish_parts(parts),
                    Err(e) => {
                        // Closed, not reused: their state after a failed commit is unknown.
                        drop(parts);
                        self.publish_running();
                        e.encode(&mut self.out);
                    }
                }
            }
            self.tx = b'I';
        }
        self.info.state.store(self.tx, Relaxed);
        messages::ready_for_query(&mut self.out, self.tx);
        self.flush_client().await
    }

    /// A backend of the pipeline failed: its connection is gone, so the
    /// pipeline's transaction is lost on every shard.
    async fn pipe_lost(
        &mut self,
        mut pipe: Box<Pipe>,
        shard: &str,
        e: std::io::Error,
    ) -> Result<(), End> {
        pipe.discard_unsent();
        let explicit = pipe.explicit;
        let parts = std::mem::take(&mut pipe.parts);
        // Dropped, not reused: the others are mid-pipeline.
        drop(parts);
        self.publish_running();
        self.tx = b'I';
        self.info.state.store(b'I', Relaxed);
        let err = SqlError::shard_unavailable(shard, format!("connection lost: {e}"));
        if explicit {
            // The transaction died with its backend: like Postgres, end the session.
            return Err(End::Fatal(SqlError { fatal: true, ..err }));
        }
        err.encode(&mut self.out);
        messages::ready_for_query(&mut self.out, b'I');
        self.flush_client().await
    }

    /// The session ends mid-pipeline: its backends go back to their pools
    /// once rolled back (see `Session::finish`).
    pub(super) fn abandon_pipe(&mut self, mut pipe: Pipe) {
        pipe.discard_unsent();
        for p in std::mem::take(&mut pipe.parts) {
            tokio::spawn(super::reset_and_release(p.lease));
        }
        self.publish_running();
    }
}
