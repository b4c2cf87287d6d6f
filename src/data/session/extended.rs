//! The extended query protocol. Client messages are collected up to a Sync
//! (or Flush), routed as one batch, translated for the backend (statement
//! names made global, statements the backend lacks prepared first, Close of
//! a statement answered by the proxy), sent in one write and relayed back.

use super::fanout::FanMode;
use super::prepared::PreparedStmt;
use super::relay::Expect;
use super::route::Dispatch;
use super::{End, Session};
use crate::data::codec::error::sqlstate;
use crate::data::codec::frontend::{BindMsg, ExecuteMsg, ParseMsg, TargetMsg};
use crate::data::codec::{messages, Frame, SqlError};
use crate::data::planner::{Hint, Params, StmtKind};
use crate::data::pool::{Backend, Lease};
use bytes::{BufMut, BytesMut};
use std::collections::VecDeque;
use std::sync::Arc;

/// Why a batch could not be routed, and where.
struct RouteFailure {
    /// Boxed: routing returns this on its rare error path only.
    error: Box<SqlError>,
    /// The offset of the Bind whose statement could not be routed (None:
    /// the batch as a whole was refused).
    at_bind: Option<usize>,
    /// Routing can go on once the session has done this.
    learn: Option<Learn>,
}

/// What the session must do before routing a batch again.
enum Learn {
    /// Read this table's column order (INSERT without a column list).
    Columns(String),
    /// Plan prepared statements again: column orders they used changed.
    Replan,
}

impl From<SqlError> for RouteFailure {
    fn from(error: SqlError) -> RouteFailure {
        RouteFailure {
            error: Box::new(error),
            at_bind: None,
            learn: None,
        }
    }
}

impl RouteFailure {
    fn learn(what: Learn) -> RouteFailure {
        RouteFailure {
            error: Box::new(SqlError::new(
                sqlstate::INTERNAL_ERROR,
                "routing needs the tables' columns",
            )),
            at_bind: None,
            learn: Some(what),
        }
    }
}

/// Most bytes of extended-protocol messages buffered before a Sync or Flush.
const MAX_BATCH_EXTRA: usize = 1 << 20;

/// Largest translated-batch buffer a session keeps for its next batch.
const KEPT_WIRE_BUFFER: usize = 16 * 1024;
/// Largest reply queue a session keeps for its next batch.
const KEPT_EXPECT_ENTRIES: usize = 256;

impl Session {
    /// Takes one extended-protocol message (the frame at the front of the
    /// client read buffer, moved into the batch) and those right behind it
    /// that are already buffered, so a pipelined batch makes one pass
    /// through the session loop; a Sync or Flush runs the batch.
    pub(super) async fn extended_message(&mut self, first: Frame) -> Result<(), End> {
        let mut frame = first;
        loop {
            let tag = frame.tag;
            if self.skip_to_sync && tag != b'S' {
                self.creader.skip(frame);
            } else {
                if self.skip_to_sync {
                    self.skip_to_sync = false;
                    self.batch.clear();
                }
                if self.batch.len() + frame.len
                    > self.rt.config.proxy.max_message_bytes + MAX_BATCH_EXTRA
                {
                    return Err(End::Fatal(
                        SqlError::fatal(
                            sqlstate::PROGRAM_LIMIT_EXCEEDED,
                            "too many pipelined messages without Sync or Flush",
                        )
                        .with_hint(
                            "Send Sync (or Flush) at least every few megabytes of pipelined messages.",
                        ),
                    ));
                }
                self.batch.extend_from_slice(&self.creader.buf[..frame.len]);
                self.creader.skip(frame);
                if tag == b'S' || tag == b'H' {
                    let batch = std::mem::take(&mut self.batch);
                    let r = self.run_batch(&batch, tag == b'S').await;
                    self.batch = batch;
                    self.batch.clear();
                    return r;
                }
            }
            // Anything else (or a frame still arriving) goes back to the
            // session loop, which also reports a malformed one.
            match self.creader.peek() {
                Ok(Some(f)) if is_extended(f.tag) => frame = f,
                _ => return Ok(()),
            }
        }
    }

    /// Whether the batch's first statement is a BEGIN the session could
    /// defer (see `deferred_begin.rs`); a cheap look at the first frames.
    fn begins_batch(&self, batch: &[u8]) -> bool {
        self.tx == b'I'
            && self.lease.is_none()
            && frames(batch).take(1).any(|(t, body)| match t {
                b'P' => ParseMsg::decode(body).is_ok_and(|p| {
                    let q = p.query.trim_start();
                    q.get(..5).is_some_and(|w| w.eq_ignore_ascii_case("begin"))
                        || q.get(..5).is_some_and(|w| w.eq_ignore_ascii_case("start"))
                }),
                b'B' => BindMsg::decode(body).is_ok_and(|b| {
                    self.prepared.get(b.statement).is_some_and(
                        |s| matches!(s.plan.stmts.as_slice(), [st] if st.kind == StmtKind::Begin),
                    )
                }),
                _ => false,
            })
    }

    /// Routes, translates, sends and relays one batch.
    async fn run_batch(&mut self, batch: &[u8], sync: bool) -> Result<(), End> {
        self.columns_watch = None;
        let r = self.dispatch_batch(batch, sync).await;
        // The statements routing made are keyed by offsets in this batch
        // only: never let a later batch's `translate` see them.
        self.parsed_in_batch.clear();
        r
    }

    async fn dispatch_batch(&mut self, batch: &[u8], sync: bool) -> Result<(), End> {
        // Inside a deferred BEGIN, a batch that executes nothing (Parse,
        // Describe: a client preparing its next statement) must not pin the
        // transaction: it runs on a backend outside the transaction, and
        // its ReadyForQuery still says "in transaction".
        let executes = frames(batch).any(|(t, _)| t == b'B' || t == b'E');
        if !executes && sync && self.lease.is_none() && self.pending_begin.is_some() {
            let pending = self.pending_begin.take();
            self.force_status = Some(b'T');
            let r = self.run_routed_batch(batch, sync, false).await;
            self.force_status = None;
            if self.lease.is_none() {
                self.pending_begin = pending;
                self.tx = b'T';
            }
            return r;
        }
        self.run_routed_batch(batch, sync, false).await
    }

    /// Routes and runs a batch; `learned`: routing asked for column orders
    /// once already (see [`Learn`]).
    async fn run_routed_batch(
        &mut self,
        batch: &[u8],
        sync: bool,
        learned: bool,
    ) -> Result<(), End> {
        if self.pipe.is_some() {
            // A multi-shard pipeline continues after a Flush.
            return Box::pin(self.run_pipeline(batch, sync)).await;
        }
        let routed = self.route_batch(batch);
        if matches!(
            routed,
            Ok(Dispatch::Pipeline | Dispatch::SplitInsert | Dispatch::Fan { .. })
        ) && self.begins_batch(batch)
        {
            // BEGIN, then statements for several shards: the BEGIN is
            // deferred and the rest routes as a transaction's first.
            if let Some(rest) = self.defer_leading_begin(batch) {
                self.parsed_in_batch.clear();
                return Box::pin(self.run_routed_batch(&batch[rest..], sync, false)).await;
            }
        }
        let shard = match routed {
            Ok(Dispatch::One(s)) => s,
            Ok(Dispatch::Any) => self.default_shard(),
            Ok(Dispatch::Fan {
                shards,
                mode: FanMode::Merge(dist),
            }) if sync => return Box::pin(self.merge_extended(batch, &shards, dist)).await,
            // A failed transaction answers 25P02 to everything: its backend does.
            Ok(Dispatch::Pipeline) if self.tx == b'E' && self.lease.is_some() => self.lease_shard,
            Ok(Dispatch::Fan { shards, mode }) if sync => {
                return Box::pin(self.fanout_extended(batch, &shards, mode)).await
            }
            Ok(Dispatch::Pipeline | Dispatch::SplitInsert | Dispatch::Fan { .. }) => {
                return Box::pin(self.run_pipeline(batch, sync)).await
            }
            Ok(Dispatch::EndMulti { commit }) if sync => {
                return Box::pin(self.end_multi_extended(batch, commit)).await
            }
            Ok(Dispatch::SplitCopy(spec)) => {
                return Box::pin(self.copy_extended(batch, spec, sync)).await
            }
            Ok(_) => {
                let e = SqlError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "this statement spans shards; through the extended protocol shardproxy can fan out single statements that end in Sync",
                )
                .with_hint("Multi-row INSERTs and COPY that span shards need the simple query protocol; or send one row per statement.");
                return self.batch_error(e, sync).await;
            }
            Err(RouteFailure {
                learn: Some(what), ..
            }) if !learned => {
                if let Learn::Columns(table) = what {
                    self.rt.planner.columns.forget(&table);
                    if let Err(e) = self.table_columns(&table, None).await {
                        return self.batch_error(e, sync).await;
                    }
                }
                self.prepared.replan_stale(&self.rt.planner);
                self.parsed_in_batch.clear();
                return Box::pin(self.run_routed_batch(batch, sync, true)).await;
            }
            Err(f) => {
                if let Some(at) = f.at_bind {
                    self.accept_leading_parses(batch, at);
                }
                return self.batch_error(*f.error, sync).await;
            }
        };
        // A batch of only proxy-answered messages needs no backend.
        if self.lease.is_none() && !needs_backend(batch) {
            let mut q = VecDeque::new();
            let mut sink = BytesMut::new();
            self.translate(batch, None, &mut sink, &mut q)?;
            for e in q {
                if let Expect::Synth(b) = e {
                    self.out.extend_from_slice(&b);
                }
            }
            if sync {
                messages::ready_for_query(&mut self.out, self.tx);
            }
            return self.flush_client().await;
        }
        if let Err(e) = self.acquire(shard).await {
            return self.batch_error(e, sync).await;
        }
        let Some(lease) = self.lease.take() else {
            return Ok(());
        };
        if self.batch_verbatim && sync && self.force_status.is_none() && self.fan_hold.is_none() {
            return self.send_verbatim(lease, batch).await;
        }
        // Buffers the session keeps between batches (no allocation per batch).
        let mut wire = std::mem::take(&mut self.wire_buf);
        let mut queue = std::mem::take(&mut self.expect_buf);
        wire.clear();
        queue.clear();
        let r = self
            .send_and_relay(lease, batch, sync, &mut wire, &mut queue)
            .await;
        if wire.capacity() <= KEPT_WIRE_BUFFER {
            self.wire_buf = wire;
        }
        if queue.capacity() <= KEPT_EXPECT_ENTRIES {
            self.expect_buf = queue;
        }
        r
    }

    async fn send_and_relay(
        &mut self,
        mut lease: Lease,
        batch: &[u8],
        sync: bool,
        wire: &mut BytesMut,
        queue: &mut VecDeque<Expect>,
    ) -> Result<(), End> {
        if let Err(end) = self.translate(batch, Some(lease.backend()), wire, queue) {
            self.lease = Some(lease);
            return Err(end);
        }
        let r = self.send_then_relay(&mut lease, wire, Some(queue)).await?;
        self.after_relay(lease, r, sync).await
    }

    /// Sends a batch the backend can take as the client sent it (see
    /// `batch_verbatim`) and relays the answer up to ReadyForQuery as the
    /// simple protocol does: no translation, no reply queue. This is the
    /// usual shape of a driver's unnamed statement (pgbench -M extended).
    async fn send_verbatim(&mut self, mut lease: Lease, batch: &[u8]) -> Result<(), End> {
        // What translate would have left: the last Parse is the client's
        // unnamed statement, and it is on this backend.
        if let Some((_, stmt)) = self.parsed_in_batch.pop() {
            self.prepared.insert("", stmt);
        }
        self.unnamed_on_lease = true;
        let r = self.send_then_relay(&mut lease, batch, None).await?;
        self.after_relay(lease, r, true).await
    }

    /// An error raised before the batch reached a backend.
    pub(super) async fn batch_error(&mut self, e: SqlError, sync: bool) -> Result<(), End> {
        if sync {
            self.error_and_ready(e).await
        } else {
            if e.fatal {
                return Err(End::Fatal(e));
            }
            e.encode(&mut self.out);
            self.skip_to_sync = true;
            self.flush_client().await
        }
    }

    /// Where a batch runs: every Bind's statement is routed with its
    /// parameters; statements needing no particular shard go along.
    fn route_batch(&mut self, batch: &[u8]) -> Result<Dispatch, RouteFailure> {
        // The batch's Parses by name, as indexes into `parsed_in_batch`;
        // inline for the usual one or two: no allocation or reference count
        // per batch.
        let mut parsed: smallvec::SmallVec<[(&str, usize); 2]> = smallvec::SmallVec::new();
        let mut chosen = Dispatch::Any;
        let mut binds = 0;
        self.parsed_in_batch.clear();
        // Whether the batch can go to the backend as it is (see
        // `batch_verbatim`): only the unnamed statement, Parsed here first.
        let mut verbatim = true;
        let mut unnamed_parsed = false;
        let mut last_tag = 0;
        self.batch_verbatim = false;
        self.replica_read = false;
        // Every statement the batch executes is a plain read.
        let mut reads_only = true;
        for (tag, body) in frames(batch) {
            last_tag = tag;
            match tag {
                b'P' => {
                    let Ok(p) = ParseMsg::decode(body) else {
                        verbatim = false;
                        continue;
                    };
                    parsed.retain(|(n, _)| *n != p.name);
                    let stmt = self.statement_of(&p);
                    let plan = &stmt.plan;
                    if let Some(t) = plan.needs_columns() {
                        return Err(RouteFailure::learn(Learn::Columns(t.to_string())));
                    }
                    if !self.rt.planner.is_current(plan) {
                        return Err(RouteFailure::learn(Learn::Replan));
                    }
                    if !p.name.is_empty()
                        || plan.touches_settings
                        || plan.drops_statements
                        || plan.sent_text.is_some()
                        || plan.stmts.iter().any(|s| s.kind == StmtKind::CopyFrom)
                    {
                        verbatim = false;
                    }
                    unnamed_parsed |= p.name.is_empty();
                    parsed.push((p.name, self.parsed_in_batch.len()));
                    self.parsed_in_batch.push((frame_start(batch, body), stmt));
                }
                b'D' => match TargetMsg::decode(body, "Describe") {
                    Ok(d) if d.kind == b'P' || (d.name.is_empty() && unnamed_parsed) => {}
                    _ => verbatim = false,
                },
                b'E' => verbatim &= ExecuteMsg::decode(body).is_ok(),
                b'H' | b'S' => {}
                b'B' => {
                    let Ok(b) = BindMsg::decode(body) else {
                        verbatim = false;
                        continue;
                    };
                    verbatim &= b.statement.is_empty() && unnamed_parsed;
                    let plan = match parsed.iter().rev().find(|(n, _)| *n == b.statement) {
                        Some(&(_, i)) => &self.parsed_in_batch[i].1.plan,
                        None => match self.prepared.get(b.statement) {
                            Some(s) => &s.plan,
                            // A missing statement is reported by translate().
                            None => continue,
                        },
                    };
                    if plan.column_generation.is_some() && !self.rt.planner.is_current(plan) {
                        return Err(RouteFailure::learn(Learn::Replan));
                    }
                    if let Some(t) = plan.needs_columns() {
                        return Err(RouteFailure::learn(Learn::Columns(t.to_string())));
                    }
                    let Ok(bp) = b.params() else {
                        verbatim = false;
                        continue;
                    };
                    let params = Params {
                        values: bp.values,
                        formats: bp.formats,
                    };
                    binds += 1;
                    reads_only &= plan.replica_ok;
                    let mut key = None;
                    let d = match self.dispatch(plan, &params, &mut key) {
                        Ok(d) => d,
                        // Statements before this one run first (then all
                        // roll back), as Postgres would: the pipeline
                        // executor answers the error in its place.
                        Err(_) if binds > 1 => return Ok(Dispatch::Pipeline),
                        Err(e) => {
                            return Err(RouteFailure {
                                error: Box::new(e),
                                at_bind: Some(frame_start(batch, body)),
                                learn: None,
                            })
                        }
                    };
                    self.load.key(key, &self.proxy.load, &self.rt);
                    chosen = match (chosen, d) {
                        (Dispatch::Any, d) => d,
                        (c, Dispatch::Any) => c,
                        (Dispatch::One(a), Dispatch::One(b)) if a == b => Dispatch::One(a),
                        // Statements for several shards, or one that spans
                        // shards beside others: one transaction over them.
                        _ => return Ok(Dispatch::Pipeline),
                    };
                }
                _ => {}
            }
        }
        self.batch_verbatim = verbatim && last_tag == b'S';
        self.replica_read = self.may_read_replica(reads_only && binds > 0 && last_tag == b'S');
        if binds > 1 && !matches!(chosen, Dispatch::One(_) | Dispatch::Any) {
            return Ok(Dispatch::Pipeline);
        }
        if binds == 0 {
            // Only Parse/Describe (a client preparing a statement): describe
            // it where its /* shard=… */ hint points, as its Binds will run;
            // the default shard may lack its tables, or be down.
            let hinted = parsed.iter().rev().find_map(|&(_, i)| {
                match &self.parsed_in_batch[i].1.plan.hint {
                    Some(Hint::Shard(name)) => Some(name),
                    _ => None,
                }
            });
            if let Some(name) = hinted {
                return Ok(Dispatch::One(
                    self.shard_by_name(name).map_err(RouteFailure::from)?,
                ));
            }
        }
        Ok(chosen)
    }

    /// Translates client messages into what the backend gets (`wire`) and
    /// what the proxy expects back (`queue`). With no backend, only
    /// proxy-answered messages may be present.
    pub(super) fn translate(
        &mut self,
        batch: &[u8],
        mut backend: Option<&mut Backend>,
        wire: &mut BytesMut,
        queue: &mut VecDeque<Expect>,
    ) -> Result<(), End> {
        let malformed = |e: crate::data::codec::frontend::MalformedMessage| {
            End::Fatal(SqlError::protocol(e.to_string()))
        };
        let mut failed = false;
        for (tag, body) in frames(batch) {
            let start = frame_start(batch, body);
            let raw = &batch[start..start + 5 + body.len()];
            if failed && tag != b'S' {
                continue;
            }
            match tag {
                b'P' => {
                    let p = ParseMsg::decode(body).map_err(malformed)?;
                    if !p.name.is_empty() && self.prepared.contains(p.name) {
                        raise(
                            wire,
                            queue,
                            sqlstate::DUPLICATE_PREPARED_STATEMENT,
                            &format!("prepared statement \"{}\" already exists", p.name),
                        );
                        failed = true;
                        continue;
                    }
                    let stmt = self.batch_statement(start, &p);
                    if stmt.rewritten() {
                        self.columns_watch = stmt
                            .plan
                            .stmts
                            .first()
                            .and_then(|s| s.tables.first().cloned());
                    }
                    if p.name.is_empty() {
                        if stmt.rewritten() {
                            // The backend prepares the INSERT naming its columns.
                            ParseMsg {
                                name: "",
                                query: stmt.query(),
                                param_types: p.param_types,
                            }
                            .encode_renamed("", wire);
                        } else {
                            wire.extend_from_slice(raw);
                        }
                        self.prepared.insert(p.name, stmt);
                        queue.push_back(Expect::Reply {
                            swallow: false,
                            parsed: None,
                        });
                        self.unnamed_on_lease = true;
                        continue;
                    }
                    self.prepared.insert(p.name, stmt.clone());
                    if let Some(be) = backend.as_deref_mut() {
                        if be.prepared.contains(&stmt.hash) {
                            let mut b = BytesMut::new();
                            messages::empty(&mut b, b'1');
                            queue.push_back(Expect::Synth(b));
                        } else {
                            ParseMsg {
                                name: p.name,
                                query: stmt.query(),
                                param_types: p.param_types,
                            }
                            .encode_renamed(&stmt.global_name, wire);
                            be.prepared.insert(stmt.hash);
                            queue.push_back(Expect::Reply {
                                swallow: false,
                                parsed: Some(stmt.hash),
                            });
                        }
                    }
                }
                b'B' => {
                    let b = BindMsg::decode(body).map_err(malformed)?;
                    match self.ensure_prepared(b.statement, backend.as_deref_mut(), wire, queue) {
                        Some(stmt) => {
                            if b.statement.is_empty() {
                                wire.extend_from_slice(raw);
                            } else {
                                b.encode_renamed(&stmt.global_name, wire);
                            }
                            let drops = stmt.plan.drops_statements;
                            if let (true, Some(be)) = (drops, backend.as_deref_mut()) {
                                // DISCARD/DEALLOCATE ALL is about to drop every
                                // server-side statement (itself included): later
                                // messages prepare what they use again.
                                be.prepared.clear();
                                self.prepared_unsure = true;
                            }
                            queue.push_back(Expect::Reply {
                                swallow: false,
                                parsed: None,
                            });
                        }
                        None => {
                            failed = true;
                            raise(
                                wire,
                                queue,
                                sqlstate::INVALID_SQL_STATEMENT_NAME,
                                &missing(b.statement),
                            );
                        }
                    }
                }
                b'D' => {
                    let d = TargetMsg::decode(body, "Describe").map_err(malformed)?;
                    if d.kind == b'S' {
                        match self.ensure_prepared(d.name, backend.as_deref_mut(), wire, queue) {
                            Some(stmt) => d.encode_renamed(
                                b'D',
                                if d.name.is_empty() {
                                    ""
                                } else {
                                    &stmt.global_name
                                },
                                wire,
                            ),
                            None => {
                                failed = true;
                                raise(
                                    wire,
                                    queue,
                                    sqlstate::INVALID_SQL_STATEMENT_NAME,
                                    &missing(d.name),
                                );
                                continue;
                            }
                        }
                    } else {
                        wire.extend_from_slice(raw);
                    }
                    queue.push_back(Expect::Reply {
                        swallow: false,
                        parsed: None,
                    });
                }
                b'E' => {
                    ExecuteMsg::decode(body).map_err(malformed)?;
                    wire.extend_from_slice(raw);
                    queue.push_back(Expect::Reply {
                        swallow: false,
                        parsed: None,
                    });
                }
                b'C' => {
                    let c = TargetMsg::decode(body, "Close").map_err(malformed)?;
                    if c.kind == b'S' {
                        // Other clients may share the server-side statement: answer here.
                        self.prepared.remove(c.name);
                        let mut b = BytesMut::new();
                        messages::empty(&mut b, b'3');
                        queue.push_back(Expect::Synth(b));
                    } else {
                        wire.extend_from_slice(raw);
                        queue.push_back(Expect::Reply {
                            swallow: false,
                            parsed: None,
                        });
                    }
                }
                b'H' => wire.extend_from_slice(raw),
                b'S' => {
                    wire.extend_from_slice(raw);
                    queue.push_back(Expect::Sync);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A batch whose first Bind (at offset `at`) failed to route: when only
    /// Parse messages come before it, Postgres would have run them (a
    /// ParseComplete each, the statements kept) before the error, so the
    /// proxy does the same; statements need no backend until they are used.
    /// Anything else first (or a Parse Postgres would refuse) leaves the
    /// error alone.
    fn accept_leading_parses(&mut self, batch: &[u8], at: usize) {
        let mut parses: smallvec::SmallVec<[(usize, ParseMsg<'_>); 2]> = smallvec::SmallVec::new();
        for (tag, body) in frames(batch) {
            let start = frame_start(batch, body);
            if start >= at {
                break;
            }
            match (tag, ParseMsg::decode(body)) {
                (b'P', Ok(p)) => parses.push((start, p)),
                _ => return,
            }
        }
        for (i, (_, p)) in parses.iter().enumerate() {
            let named_twice = parses[..i].iter().any(|(_, q)| q.name == p.name);
            if !p.name.is_empty() && (named_twice || self.prepared.contains(p.name)) {
                return;
            }
        }
        for (start, p) in parses {
            let stmt = self.batch_statement(start, &p);
            self.prepared.insert(p.name, stmt);
            messages::empty(&mut self.out, b'1');
        }
    }

    /// The statement of the Parse at offset `at` of the current batch: the
    /// one routing made (taken, as each Parse is translated once), if it saw
    /// that Parse.
    pub(super) fn batch_statement(&mut self, at: usize, p: &ParseMsg<'_>) -> Arc<PreparedStmt> {
        match self.parsed_in_batch.iter().position(|(o, _)| *o == at) {
            Some(i) => self.parsed_in_batch.swap_remove(i).1,
            None => self.statement_of(p),
        }
    }

    /// The statement a Parse makes: the client's unnamed one again when the
    /// Parse repeats it, else a new one planned now.
    pub(super) fn statement_of(&self, p: &ParseMsg<'_>) -> Arc<PreparedStmt> {
        match self.prepared.reusable(p) {
            Some(s) => s,
            None => Arc::new(PreparedStmt::new(
                p.query,
                p.param_types,
                self.rt.planner.plan(p.query),
            )),
        }
    }

    /// Makes sure statement `name` exists on the backend; returns it (its
    /// `global_name` is the backend-side name), or None if the client never
    /// prepared it.
    fn ensure_prepared(
        &mut self,
        name: &str,
        backend: Option<&mut Backend>,
        wire: &mut BytesMut,
        queue: &mut VecDeque<Expect>,
    ) -> Option<&PreparedStmt> {
        // Borrowed, not cloned: the fields touched below are disjoint from
        // the registry, and a clone would cost two atomic operations per
        // Bind and Describe.
        let stmt: &PreparedStmt = self.prepared.get(name)?;
        if stmt.plan.touches_settings {
            self.settings_dirty = true;
        }
        let Some(be) = backend else {
            return Some(stmt);
        };
        if name.is_empty() {
            if !self.unnamed_on_lease {
                inject_parse("", stmt, wire, queue);
                self.unnamed_on_lease = true;
            }
        } else if !be.prepared.contains(&stmt.hash) {
            inject_parse(&stmt.global_name, stmt, wire, queue);
            be.prepared.insert(stmt.hash);
            if let Some(Expect::Reply { parsed, .. }) = queue.back_mut() {
                *parsed = Some(stmt.hash);
            }
        }
        Some(stmt)
    }
}

/// Prepares `stmt` under `name` on the backend; its ParseComplete is swallowed.
fn inject_parse(
    name: &str,
    stmt: &PreparedStmt,
    wire: &mut BytesMut,
    queue: &mut VecDeque<Expect>,
) {
    ParseMsg {
        name,
        query: stmt.query(),
        param_types: stmt.param_types(),
    }
    .encode_renamed(name, wire);
    queue.push_back(Expect::Reply {
        swallow: true,
        parsed: None,
    });
}

/// Makes the backend itself raise an error (so its transaction state agrees
/// with what the client sees) and skip to Sync, as Postgres would.
fn raise(wire: &mut BytesMut, queue: &mut VecDeque<Expect>, code: &str, message: &str) {
    let sql = raise_sql(code, message);
    ParseMsg {
        name: "",
        query: &sql,
        param_types: &[],
    }
    .encode_renamed("", wire);
    queue.push_back(Expect::Reply {
        swallow: true,
        parsed: None,
    });
    // Bind "" with no parameters and no result formats.
    wire.put_u8(b'B');
    wire.put_i32(4 + 1 + 1 + 2 + 2 + 2);
    wire.put_slice(b"\0\0");
    wire.put_i16(0);
    wire.put_i16(0);
    wire.put_i16(0);
    queue.push_back(Expect::Reply {
        swallow: true,
        parsed: None,
    });
    wire.put_u8(b'E');
    wire.put_i32(4 + 1 + 4);
    wire.put_u8(0);
    wire.put_i32(0);
    queue.push_back(Expect::Reply {
        swallow: false,
        parsed: None,
    });
}

/// A `DO` block raising `message` with SQLSTATE `code`, safely quoted.
pub(super) fn raise_sql(code: &str, message: &str) -> String {
    let mut m = String::from("$m$");
    while message.contains(&m) {
        m.insert(m.len() - 1, 'x');
    }
    let mut b = String::from("$b$");
    while message.contains(&b) || m.contains(&b) {
        b.insert(b.len() - 1, 'x');
    }
    format!(
        "DO {b} BEGIN RAISE EXCEPTION USING ERRCODE = '{code}', MESSAGE = {m}{message}{m}; END {b}"
    )
}

pub(super) fn missing(name: &str) -> String {
    if name.is_empty() {
        "unnamed prepared statement does not exist".into()
    } else {
        format!("prepared statement \"{name}\" does not exist")
    }
}

/// Message types of the extended query protocol.
pub(super) fn is_extended(tag: u8) -> bool {
    matches!(tag, b'P' | b'B' | b'D' | b'E' | b'C' | b'H' | b'S')
}

/// True when some message in the batch must reach a backend.
fn needs_backend(batch: &[u8]) -> bool {
    frames(batch).any(|(tag, body)| match tag {
        b'C' => body.first() != Some(&b'S'),
        b'S' | b'H' => false,
        _ => true,
    })
}

/// Iterates (tag, body) over a buffer of complete frames.
pub(super) fn frames(buf: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = buf.get(at..)?;
        if rest.len() < 5 {
            return None;
        }
        let len = i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize + 1;
        let body = rest.get(5..len)?;
        at += len;
        Some((rest[0], body))
    })
}

/// Offset of the frame whose body is `body` within `batch`.
fn frame_start(batch: &[u8], body: &[u8]) -> usize {
    body.as_ptr() as usize - batch.as_ptr() as usize - 5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_sql_quotes_the_message() {
        let s = raise_sql("26000", "statement \"a$m$b\" does not exist");
        assert!(
            s.contains("$mx$statement \"a$m$b\" does not exist$mx$"),
            "{s}"
        );
        assert!(s.starts_with("DO $b$"));
    }

    #[test]
    fn frames_iterates_whole_frames() {
        let mut b = BytesMut::new();
        messages::sync(&mut b);
        messages::query(&mut b, "x");
        let v: Vec<_> = frames(&b).map(|(t, body)| (t, body.len())).collect();
        assert_eq!(v, vec![(b'S', 0), (b'Q', 2)]);
        assert!(!needs_backend(&b[..5]));
    }
}
