//! Translating one segment of a multi-shard pipeline ([`super::pipeline`]):
//! each client message, in order, becomes the messages of the parts that
//! run it and one [`Step`] saying where its reply comes from.
//!
//! - Parse: recorded in the client's statement registry and answered by
//!   the proxy; the statement is prepared (its reply swallowed) on each
//!   backend just before its first use there, as between pipelines.
//! - Bind: routed with its parameters; it creates the portal on the shard
//!   the statement runs on (or on several: a statement that fans out, or a
//!   multi-row INSERT split per shard, each shard's share bound to a
//!   statement of its own with the parameters renumbered).
//! - Describe, Execute, Close of a portal: where the portal was bound.
//! - The client's BEGIN is answered by the proxy: every shard of the
//!   pipeline runs inside a transaction block already.
//!
//! A message the proxy refuses (a statement that cannot route, COPY,
//! COMMIT inside the pipeline, …) fails the pipeline at that step; nothing
//! after it is translated, as Postgres skips the rest up to Sync.

use super::extended::frames;
use super::fanout::FanMode;
use super::pipeline::{Entry, Pipe, Place, Spread, Step, StepKind, Undo};
use super::prepared::PreparedStmt;
use super::route::Dispatch;
use super::{End, Session};
use crate::data::codec::error::sqlstate;
use crate::data::codec::frontend::{
    encode_bind, BindMsg, ExecuteMsg, MalformedMessage, ParseMsg, TargetMsg,
};
use crate::data::codec::{messages, SqlError};
use crate::data::planner::{split_insert, Params, Plan, StmtKind};
use bytes::BytesMut;
use std::sync::Arc;

/// The portal the proxy opens its BEGIN in (closed right after).
const BEGIN_PORTAL: &str = "shardproxy_begin";

fn malformed(e: MalformedMessage) -> End {
    End::Fatal(SqlError::protocol(e.to_string()))
}

fn synth(tag: u8) -> StepKind {
    let mut b = BytesMut::with_capacity(5);
    messages::empty(&mut b, tag);
    StepKind::Synth(b)
}

fn refuse(message: &str, hint: &str) -> StepKind {
    StepKind::Fail(SqlError::new(sqlstate::FEATURE_NOT_SUPPORTED, message).with_hint(hint))
}

impl Session {
    /// Translates the segment's messages (up to Sync or Flush) into the
    /// parts' wires and the steps, in client order.
    pub(super) async fn pipe_translate(
        &mut self,
        pipe: &mut Pipe,
        batch: &[u8],
    ) -> Result<Vec<Step>, End> {
        let mut steps = Vec::new();
        for (tag, body) in frames(batch) {
            if matches!(tag, b'S' | b'H') {
                continue;
            }
            let start = body.as_ptr() as usize - batch.as_ptr() as usize - 5;
            let raw = &batch[start..start + 5 + body.len()];
            let no = pipe.steps;
            pipe.steps += 1;
            let kind = match tag {
                b'P' => {
                    let p = ParseMsg::decode(body).map_err(malformed)?;
                    self.pipe_parse(pipe, no, start, &p)
                }
                b'B' => {
                    let b = BindMsg::decode(body).map_err(malformed)?;
                    self.pipe_bind(pipe, no, &b, raw).await?
                }
                b'D' => {
                    let d = TargetMsg::decode(body, "Describe").map_err(malformed)?;
                    self.pipe_describe(pipe, no, &d, raw).await
                }
                b'E' => {
                    let e = ExecuteMsg::decode(body).map_err(malformed)?;
                    self.pipe_execute(pipe, no, &e, raw).await
                }
                b'C' => {
                    let c = TargetMsg::decode(body, "Close").map_err(malformed)?;
                    self.pipe_close(pipe, no, &c, raw).await
                }
                // The session loop only hands over extended-protocol messages.
                _ => continue,
            };
            let failed = matches!(kind, StepKind::Fail(_));
            steps.push(Step { no, kind });
            if failed {
                break;
            }
        }
        Ok(steps)
    }

    fn pipe_parse(&mut self, pipe: &mut Pipe, no: usize, at: usize, p: &ParseMsg<'_>) -> StepKind {
        if !p.name.is_empty() && self.prepared.contains(p.name) {
            return StepKind::Fail(SqlError::new(
                sqlstate::DUPLICATE_PREPARED_STATEMENT,
                format!("prepared statement \"{}\" already exists", p.name),
            ));
        }
        let stmt = self.batch_statement(at, p);
        pipe.undo.push(Undo {
            step: no,
            name: p.name.to_string(),
            before: self.prepared.get(p.name).cloned(),
        });
        self.prepared.insert(p.name, stmt);
        synth(b'1')
    }

    async fn pipe_bind(
        &mut self,
        pipe: &mut Pipe,
        no: usize,
        b: &BindMsg<'_>,
        raw: &[u8],
    ) -> Result<StepKind, End> {
        let Some(stmt) = self.prepared.get(b.statement).cloned() else {
            return Ok(StepKind::Fail(SqlError::new(
                sqlstate::INVALID_SQL_STATEMENT_NAME,
                super::extended::missing(b.statement),
            )));
        };
        let plan: &Plan = &stmt.plan;
        if let Some(refusal) = pipeline_refusal(plan) {
            return Ok(refusal);
        }
        if stmt.rewritten() {
            self.columns_watch = plan.stmts.first().and_then(|s| s.tables.first().cloned());
        }
        if plan.stmts.len() == 1 && plan.stmts[0].kind == StmtKind::Begin {
            pipe.begin_seen = true;
            if !pipe.explicit {
                // The shards joining from now on open the client's kind of
                // transaction (isolation level, read only).
                pipe.begin = Some(stmt.query().to_string());
            }
            pipe.portals.retain(|(n, _)| n != b.portal);
            pipe.portals.push((b.portal.to_string(), Place::Proxy));
            return Ok(synth(b'2'));
        }
        let (bp, results) = b.params_and_results().map_err(malformed)?;
        let params = Params {
            values: bp.values.clone(),
            formats: bp.formats.clone(),
        };
        let mut key = None;
        let routed = self.dispatch(plan, &params, &mut key);
        self.load.key(key, &self.proxy.load, &self.rt);
        let dispatch = match routed {
            Ok(d) => d,
            Err(e) => return Ok(StepKind::Fail(e)),
        };
        if !plan.stmts.iter().all(|s| s.read_only) {
            pipe.writes = true;
        }
        let place = match dispatch {
            Dispatch::One(s) => match self.pipe_part(pipe, s).await {
                Ok(p) => {
                    self.pipe_bind_on(pipe, no, p, &stmt, b, raw);
                    Place::Part(p)
                }
                Err(e) => return Ok(StepKind::Fail(e)),
            },
            Dispatch::Any => match self.pipe_home(pipe).await {
                Ok(p) => {
                    self.pipe_bind_on(pipe, no, p, &stmt, b, raw);
                    Place::Part(p)
                }
                Err(e) => return Ok(StepKind::Fail(e)),
            },
            Dispatch::Fan { shards, mode } => {
                let copies = match mode {
                    FanMode::Read | FanMode::Atomic | FanMode::Ddl => false,
                    FanMode::Copies => true,
                    FanMode::Merge(_) | FanMode::Maintenance => {
                        return Ok(refuse(
                            "this statement reads every shard and needs its results merged; in a pipeline whose statements go to several shards it cannot be merged",
                            "Send it in a pipeline of its own (Sync before and after it).",
                        ))
                    }
                };
                let mut parts = Vec::with_capacity(shards.len());
                for s in shards {
                    match self.pipe_part(pipe, s).await {
                        Ok(p) => parts.push(p),
                        Err(e) => return Ok(StepKind::Fail(e)),
                    }
                }
                for &p in &parts {
                    self.pipe_bind_on(pipe, no, p, &stmt, b, raw);
                }
                Place::Many(Arc::new(Spread {
                    parts,
                    rows: None,
                    copies,
                }))
            }
            Dispatch::SplitInsert => {
                let pieces = match split_insert(&plan.stmts[0], &params, &self.rt.map) {
                    Ok(p) => p,
                    Err(e) => return Ok(StepKind::Fail(e.into())),
                };
                let mut parts = Vec::with_capacity(pieces.len());
                let mut rows = Vec::with_capacity(pieces.len());
                for piece in pieces {
                    let p = match self.pipe_part(pipe, piece.shard).await {
                        Ok(p) => p,
                        Err(e) => return Ok(StepKind::Fail(e)),
                    };
                    let types = renumbered_types(stmt.param_types(), &piece.params);
                    let part_stmt = PreparedStmt::new(&piece.sql, &types, Arc::default());
                    let formats: smallvec::SmallVec<[i16; 4]> = match bp.formats.len() {
                        0 | 1 => bp.formats.clone(),
                        _ => piece.params.iter().map(|&o| bp.format(o - 1)).collect(),
                    };
                    let values: Vec<Option<&[u8]>> = piece
                        .params
                        .iter()
                        .map(|&o| bp.values.get(o - 1).copied().flatten())
                        .collect();
                    self.pipe_ensure(pipe, no, p, &part_stmt, false);
                    let st = &mut pipe.state[p];
                    encode_bind(
                        b.portal,
                        &part_stmt.global_name,
                        &formats,
                        &values,
                        results,
                        &mut st.wire,
                    );
                    st.queue.push_back(Entry {
                        step: no,
                        swallow: false,
                        parsed: None,
                    });
                    parts.push(p);
                    rows.push(piece.rows);
                }
                Place::Many(Arc::new(Spread {
                    parts,
                    rows: Some(rows),
                    copies: false,
                }))
            }
            Dispatch::SplitCopy(_) => {
                return Ok(refuse(
                    "COPY cannot be part of a pipeline whose statements go to several shards",
                    "Send the COPY in a pipeline of its own (Sync before it).",
                ))
            }
            Dispatch::EndMulti { .. } | Dispatch::Pipeline => {
                return Ok(refuse(
                    "COMMIT and ROLLBACK cannot be part of a pipeline whose statements go to several shards",
                    "Send COMMIT or ROLLBACK in a pipeline of its own (Sync before it).",
                ))
            }
        };
        let kind = match &place {
            Place::Part(p) => StepKind::Part(*p),
            Place::Many(spread) => StepKind::Many {
                spread: spread.clone(),
                execute: None,
            },
            Place::Proxy => synth(b'2'),
        };
        pipe.portals.retain(|(n, _)| n != b.portal);
        pipe.portals.push((b.portal.to_string(), place));
        Ok(kind)
    }

    /// Appends a Bind of the client's statement to part `p`, preparing the
    /// statement there first if needed.
    fn pipe_bind_on(
        &mut self,
        pipe: &mut Pipe,
        no: usize,
        p: usize,
        stmt: &PreparedStmt,
        b: &BindMsg<'_>,
        raw: &[u8],
    ) {
        self.pipe_ensure(pipe, no, p, stmt, b.statement.is_empty());
        let st = &mut pipe.state[p];
        if b.statement.is_empty() {
            st.wire.extend_from_slice(raw);
        } else {
            b.encode_renamed(&stmt.global_name, &mut st.wire);
        }
        st.queue.push_back(Entry {
            step: no,
            swallow: false,
            parsed: None,
        });
    }

    /// Makes part `p` ready for a message of step `no` about `stmt` (the
    /// client's `unnamed` statement, or a named one: the client's or the
    /// proxy's own): its transaction block is open, and the statement
    /// prepared there (replies swallowed).
    fn pipe_ensure(
        &mut self,
        pipe: &mut Pipe,
        no: usize,
        p: usize,
        stmt: &PreparedStmt,
        unnamed: bool,
    ) {
        self.pipe_begin_on(pipe, no, p);
        let be = pipe.parts[p].lease.backend();
        let st = &mut pipe.state[p];
        if unnamed {
            if st.unnamed != Some(stmt.hash) {
                parse_into(&mut st.wire, "", stmt);
                st.queue.push_back(Entry {
                    step: no,
                    swallow: true,
                    parsed: None,
                });
                st.unnamed = Some(stmt.hash);
            }
        } else if !be.prepared.contains(&stmt.hash) {
            parse_into(&mut st.wire, &stmt.global_name, stmt);
            be.prepared.insert(stmt.hash);
            st.queue.push_back(Entry {
                step: no,
                swallow: true,
                parsed: Some(stmt.hash),
            });
        }
        if stmt.plan.touches_settings {
            self.settings_dirty = true;
        }
    }

    /// Opens the pipeline's transaction block on part `p` before its first
    /// message: the BEGIN is a named statement in a named portal, so the
    /// client's unnamed ones on a backend it held stay as they were.
    fn pipe_begin_on(&mut self, pipe: &mut Pipe, no: usize, p: usize) {
        if pipe.state[p].begun {
            return;
        }
        pipe.state[p].begun = true;
        let text = pipe.begin.clone().unwrap_or_else(|| "BEGIN".into());
        let begin = PreparedStmt::new(&text, &[], Arc::default());
        let be = pipe.parts[p].lease.backend();
        let st = &mut pipe.state[p];
        let swallowed = |parsed| Entry {
            step: no,
            swallow: true,
            parsed,
        };
        if !be.prepared.contains(&begin.hash) {
            parse_into(&mut st.wire, &begin.global_name, &begin);
            be.prepared.insert(begin.hash);
            st.queue.push_back(swallowed(Some(begin.hash)));
        }
        encode_bind(
            BEGIN_PORTAL,
            &begin.global_name,
            &[],
            &[],
            &[0, 0],
            &mut st.wire,
        );
        st.queue.push_back(swallowed(None));
        execute_into(&mut st.wire, BEGIN_PORTAL);
        st.queue.push_back(swallowed(None));
        TargetMsg {
            kind: b'P',
            name: BEGIN_PORTAL,
        }
        .encode_renamed(b'C', BEGIN_PORTAL, &mut st.wire);
        st.queue.push_back(swallowed(None));
    }

    /// The part for statements that may run anywhere: the pipeline's first.
    async fn pipe_home(&mut self, pipe: &mut Pipe) -> Result<usize, SqlError> {
        if pipe.parts.is_empty() {
            let shard = self.default_shard();
            return self.pipe_part(pipe, shard).await;
        }
        Ok(0)
    }

    /// Where a portal named by Describe, Execute or Close is: bound in this
    /// pipeline, else on the pipeline's first part (a portal bound before
    /// a Flush on the backend the session held).
    async fn pipe_portal(&mut self, pipe: &mut Pipe, name: &str) -> Result<Place, SqlError> {
        if let Some((_, place)) = pipe.portals.iter().rev().find(|(n, _)| n == name) {
            return Ok(place.clone());
        }
        self.pipe_home(pipe).await.map(Place::Part)
    }

    async fn pipe_describe(
        &mut self,
        pipe: &mut Pipe,
        no: usize,
        d: &TargetMsg<'_>,
        raw: &[u8],
    ) -> StepKind {
        if d.kind == b'S' {
            let Some(stmt) = self.prepared.get(d.name).cloned() else {
                return StepKind::Fail(SqlError::new(
                    sqlstate::INVALID_SQL_STATEMENT_NAME,
                    super::extended::missing(d.name),
                ));
            };
            if stmt.plan.stmts.len() == 1 && stmt.plan.stmts[0].kind == StmtKind::Begin {
                // No parameters, no rows.
                let mut b = BytesMut::with_capacity(12);
                b.extend_from_slice(&[b't', 0, 0, 0, 6, 0, 0]);
                messages::empty(&mut b, b'n');
                return StepKind::Synth(b);
            }
            let p = match self.pipe_home(pipe).await {
                Ok(p) => p,
                Err(e) => return StepKind::Fail(e),
            };
            self.pipe_ensure(pipe, no, p, &stmt, d.name.is_empty());
            let st = &mut pipe.state[p];
            let name = if d.name.is_empty() {
                ""
            } else {
                &stmt.global_name
            };
            d.encode_renamed(b'D', name, &mut st.wire);
            st.queue.push_back(Entry {
                step: no,
                swallow: false,
                parsed: None,
            });
            return StepKind::Part(p);
        }
        match self.pipe_portal(pipe, d.name).await {
            Ok(Place::Proxy) => synth(b'n'),
            Ok(Place::Part(p)) => self.pipe_forward(pipe, no, p, raw),
            // Every part's portal has the same columns: one describes them.
            Ok(Place::Many(s)) => self.pipe_forward(pipe, no, s.parts[0], raw),
            Err(e) => StepKind::Fail(e),
        }
    }

    async fn pipe_execute(
        &mut self,
        pipe: &mut Pipe,
        no: usize,
        e: &ExecuteMsg<'_>,
        raw: &[u8],
    ) -> StepKind {
        match self.pipe_portal(pipe, e.portal).await {
            Ok(Place::Proxy) => StepKind::Begin,
            Ok(Place::Part(p)) => self.pipe_forward(pipe, no, p, raw),
            Ok(Place::Many(spread)) => {
                // Each shard runs the whole statement (a limit per shard
                // could not be continued); the merged rows are held to the
                // client's limit. Drivers set one for statements whose rows
                // they ignore (pgjdbc's batches use 1).
                let mut unlimited = BytesMut::with_capacity(raw.len());
                execute_into(&mut unlimited, e.portal);
                for &p in &spread.parts {
                    self.pipe_forward(pipe, no, p, &unlimited);
                }
                StepKind::Many {
                    spread,
                    execute: Some(e.max_rows.max(0) as u32),
                }
            }
            Err(e) => StepKind::Fail(e),
        }
    }

    async fn pipe_close(
        &mut self,
        pipe: &mut Pipe,
        no: usize,
        c: &TargetMsg<'_>,
        raw: &[u8],
    ) -> StepKind {
        if c.kind == b'S' {
            // Other clients may share the server-side statement: answered here.
            pipe.undo.push(Undo {
                step: no,
                name: c.name.to_string(),
                before: self.prepared.get(c.name).cloned(),
            });
            self.prepared.remove(c.name);
            return synth(b'3');
        }
        let place = self.pipe_portal(pipe, c.name).await;
        pipe.portals.retain(|(n, _)| n != c.name);
        match place {
            Ok(Place::Proxy) => synth(b'3'),
            Ok(Place::Part(p)) => self.pipe_forward(pipe, no, p, raw),
            Ok(Place::Many(spread)) => {
                for &p in &spread.parts {
                    self.pipe_forward(pipe, no, p, raw);
                }
                StepKind::Many {
                    spread,
                    execute: None,
                }
            }
            Err(e) => StepKind::Fail(e),
        }
    }

    /// Sends a client message to part `p` as it is.
    fn pipe_forward(&mut self, pipe: &mut Pipe, no: usize, p: usize, raw: &[u8]) -> StepKind {
        self.pipe_begin_on(pipe, no, p);
        let st = &mut pipe.state[p];
        st.wire.extend_from_slice(raw);
        st.queue.push_back(Entry {
            step: no,
            swallow: false,
            parsed: None,
        });
        StepKind::Part(p)
    }
}

/// Why a statement cannot be part of a multi-shard pipeline (None: it can).
fn pipeline_refusal(plan: &Plan) -> Option<StepKind> {
    if plan.touches_settings || plan.drops_statements {
        return Some(refuse(
            "a statement that changes session settings or prepared statements cannot be part of a pipeline whose statements go to several shards",
            "Send it in a pipeline of its own (Sync before and after it).",
        ));
    }
    for s in &plan.stmts {
        match s.kind {
            StmtKind::Commit | StmtKind::Rollback | StmtKind::Savepoint | StmtKind::Prepare2pc => {
                return Some(refuse(
                    "COMMIT, ROLLBACK, savepoints and PREPARE TRANSACTION cannot be part of a pipeline whose statements go to several shards",
                    "Send them in a pipeline of their own (Sync before it).",
                ))
            }
            StmtKind::CopyFrom | StmtKind::CopyTo => {
                return Some(refuse(
                    "COPY cannot be part of a pipeline whose statements go to several shards",
                    "Send the COPY in a pipeline of its own (Sync before it).",
                ))
            }
            _ => {}
        }
    }
    None
}

/// The parameter type OIDs (raw, 4 bytes each) of a statement whose
/// parameter `$i` is the original's `$params[i-1]`; unspecified (0) where
/// the original did not say.
pub(super) fn renumbered_types(original: &[u8], params: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(params.len() * 4);
    for &o in params {
        let at = (o - 1) * 4;
        match original.get(at..at + 4) {
            Some(t) => out.extend_from_slice(t),
            None => out.extend_from_slice(&[0; 4]),
        }
    }
    // Trailing unspecified types need not be sent.
    while out.len() >= 4 && out[out.len() - 4..] == [0; 4] {
        out.truncate(out.len() - 4);
    }
    out
}

/// A Parse of `stmt` as `name`.
fn parse_into(wire: &mut BytesMut, name: &str, stmt: &PreparedStmt) {
    ParseMsg {
        name,
        query: stmt.query(),
        param_types: stmt.param_types(),
    }
    .encode_renamed(name, wire);
}

/// An Execute of `portal` with no row limit.
fn execute_into(wire: &mut BytesMut, portal: &str) {
    use bytes::BufMut;
    wire.put_u8(b'E');
    wire.put_i32((4 + portal.len() + 1 + 4) as i32);
    wire.put_slice(portal.as_bytes());
    wire.put_u8(0);
    wire.put_i32(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumbered_types_follow_the_mapping() {
        let orig = [0, 0, 0, 20, 0, 0, 0, 25, 0, 0, 0, 23];
        assert_eq!(
            renumbered_types(&orig, &[3, 1]),
            vec![0, 0, 0, 23, 0, 0, 0, 20]
        );
        // Parameters past the declared types are unspecified; trailing ones dropped.
        assert_eq!(renumbered_types(&orig, &[2, 5]), vec![0, 0, 0, 25]);
        assert_eq!(renumbered_types(&[], &[1, 2]), Vec::<u8>::new());
    }
}
