//! Reads that need a cross-shard merge (ORDER BY, LIMIT, DISTINCT,
//! aggregates): the session's side of [`crate::data::merge::exec`]. It takes
//! the backends (fresh, or joined to the open transaction), hands the
//! statement to the merge engine, answers the client's own messages around
//! the merged rows (ParseComplete, BindComplete, Describe replies,
//! CommandComplete, ReadyForQuery) and gives the backends back.

use super::fanout::Part;
use super::{End, Session};
use crate::data::codec::error::sqlstate;
use crate::data::codec::frontend::{BindMsg, ExecuteMsg, ParseMsg, TargetMsg};
use crate::data::codec::{messages, SqlError};
use crate::data::merge::exec::{self, Client, Described, Outcome, Request};
use crate::data::merge::request::ClientParams;
use crate::data::planner::DistRef;
use crate::data::pool::reports_standard_strings_off;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

/// A reply the client is owed before the rows, in its batch's order.
#[derive(Debug, Clone, Copy)]
enum Owed {
    ParseComplete,
    BindComplete,
    /// Describe of the statement: ParameterDescription and RowDescription.
    Statement,
    /// Describe of the portal: RowDescription in the Bind's formats.
    Portal,
    CloseComplete,
}

/// Where the merge engine writes: the client's socket and buffer.
struct Sink<'a> {
    client: &'a mut super::client_stream::ClientStream,
    out: &'a mut BytesMut,
    owed: &'a [Owed],
    strings_off: &'a mut bool,
}

impl Client for Sink<'_> {
    fn out(&mut self) -> &mut BytesMut {
        self.out
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.client.write_all(self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    fn described(&mut self, d: &Described) {
        for o in self.owed {
            match o {
                Owed::ParseComplete => messages::empty(self.out, b'1'),
                Owed::BindComplete => messages::empty(self.out, b'2'),
                Owed::CloseComplete => messages::empty(self.out, b'3'),
                Owed::Statement => {
                    self.out.extend_from_slice(&d.params);
                    self.out.extend_from_slice(&d.statement);
                }
                Owed::Portal => self.out.extend_from_slice(&d.portal),
            }
        }
    }

    fn parameter_status(&mut self, body: &[u8]) {
        if reports_standard_strings_off(body) {
            *self.strings_off = true;
        }
    }
}

impl Session {
    /// A simple-protocol read planned for a merge (`sql` as written).
    pub(super) async fn merge_simple(
        &mut self,
        sql: &str,
        shards: &[usize],
        dist: DistRef,
    ) -> Result<(), End> {
        let req = Request {
            plan: &dist,
            sql,
            param_types: Vec::new(),
            params: ClientParams::default(),
            result_formats: &[],
            memory_limit: self.rt.config.merge.memory_limit_bytes,
            in_transaction: self.tx != b'I',
        };
        self.run_merge(shards, &req, &[Owed::Portal], &[]).await
    }

    /// An extended-protocol batch (Parse, Bind, Describe, Execute, Sync)
    /// of one statement planned for a merge.
    pub(super) async fn merge_extended(
        &mut self,
        batch: &[u8],
        shards: &[usize],
        dist: DistRef,
    ) -> Result<(), End> {
        let malformed = |e: crate::data::codec::frontend::MalformedMessage| {
            End::Fatal(SqlError::protocol(e.to_string()))
        };
        let mut before = Vec::new();
        let mut after = Vec::new();
        let mut executed = false;
        let mut bind = None;
        let mut executes = 0;
        for (tag, body) in super::extended::frames(batch) {
            let owed = if executed { &mut after } else { &mut before };
            match tag {
                b'P' => {
                    let p = ParseMsg::decode(body).map_err(malformed)?;
                    if !p.name.is_empty() && self.prepared.contains(p.name) {
                        let e = SqlError::new(
                            sqlstate::DUPLICATE_PREPARED_STATEMENT,
                            format!("prepared statement \"{}\" already exists", p.name),
                        );
                        return self.error_and_ready(e).await;
                    }
                    let at = body.as_ptr() as usize - batch.as_ptr() as usize - 5;
                    let stmt = self.batch_statement(at, &p);
                    self.prepared.insert(p.name, stmt);
                    owed.push(Owed::ParseComplete);
                }
                b'B' => {
                    bind = Some(BindMsg::decode(body).map_err(malformed)?);
                    owed.push(Owed::BindComplete);
                }
                b'D' => {
                    let d = TargetMsg::decode(body, "Describe").map_err(malformed)?;
                    owed.push(if d.kind == b'S' {
                        Owed::Statement
                    } else {
                        Owed::Portal
                    });
                }
                b'C' => {
                    let c = TargetMsg::decode(body, "Close").map_err(malformed)?;
                    if c.kind == b'S' {
                        self.prepared.remove(c.name);
                    }
                    owed.push(Owed::CloseComplete);
                }
                b'E' => {
                    let e = ExecuteMsg::decode(body).map_err(malformed)?;
                    executes += 1;
                    if e.max_rows != 0 {
                        executes += 1;
                    }
                    executed = true;
                }
                _ => {}
            }
        }
        let Some(bind) = bind.filter(|_| executes == 1) else {
            let e = SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "a statement that spans shards must be executed once per pipeline and without a row limit",
            )
            .with_hint("Send one Execute (max rows 0) before Sync for statements without a shard key.");
            return self.error_and_ready(e).await;
        };
        let Some(stmt) = self.prepared.get(bind.statement).cloned() else {
            let e = SqlError::new(
                sqlstate::INVALID_SQL_STATEMENT_NAME,
                format!("prepared statement \"{}\" does not exist", bind.statement),
            );
            return self.error_and_ready(e).await;
        };
        let params = bind.params().map_err(malformed)?;
        let result_formats = bind.result_formats().map_err(malformed)?;
        let param_types = stmt
            .param_types()
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let req = Request {
            plan: &dist,
            sql: stmt.query(),
            param_types,
            params: ClientParams {
                values: params.values.to_vec(),
                formats: params.formats.to_vec(),
            },
            result_formats: &result_formats,
            memory_limit: self.rt.config.merge.memory_limit_bytes,
            in_transaction: self.tx != b'I',
        };
        self.run_merge(shards, &req, &before, &after).await
    }

    async fn run_merge(
        &mut self,
        shards: &[usize],
        req: &Request<'_>,
        before: &[Owed],
        after: &[Owed],
    ) -> Result<(), End> {
        let (mut parts, in_tx) = match self.open_parts(shards, false).await {
            Ok(p) => p,
            Err(e) => return self.error_and_ready(e).await,
        };
        let mut strings_off = false;
        let outcome = {
            let mut sink = Sink {
                client: &mut self.client,
                out: &mut self.out,
                owed: before,
                strings_off: &mut strings_off,
            };
            let leases = parts.iter_mut().map(|p| &mut p.lease).collect();
            exec::run(&mut sink, leases, req).await
        };
        if strings_off {
            self.standard_strings_off = true;
            for p in &mut parts {
                p.lease.backend().standard_strings_off = true;
            }
        }
        // The unnamed statement on these backends is the merge's now.
        self.unnamed_on_lease = false;
        let failed = match outcome {
            Outcome::Done { rows } => {
                messages::command_complete(&mut self.out, &format!("SELECT {rows}"));
                for o in after {
                    if let Owed::CloseComplete = o {
                        messages::empty(&mut self.out, b'3');
                    }
                }
                false
            }
            Outcome::Failed(err) => {
                self.out.extend_from_slice(&err);
                true
            }
            Outcome::ClientGone => {
                drop(parts);
                self.publish_running();
                return Err(End::Client);
            }
            Outcome::Lost(i, e) => {
                let name = parts
                    .get(i)
                    .map(|p| p.lease.pool().name.clone())
                    .unwrap_or_default();
                // Backends of a failed fan-out are dropped, not reused.
                drop(parts);
                self.publish_running();
                let e = SqlError::shard_unavailable(&name, e);
                if in_tx {
                    return Err(End::Fatal(SqlError { fatal: true, ..e }));
                }
                e.encode(&mut self.out);
                messages::ready_for_query(&mut self.out, self.tx);
                return self.flush_client().await;
            }
        };
        self.give_back(parts, in_tx, failed);
        messages::ready_for_query(&mut self.out, self.tx);
        self.flush_client().await
    }

    /// Backends of a merged read, idle again: back to the transaction or
    /// to their pools.
    fn give_back(&mut self, parts: Vec<Part>, in_tx: bool, failed: bool) {
        if in_tx {
            self.put_parts(parts);
            if failed {
                self.tx = b'E';
            }
        } else {
            self.finish_parts(parts);
        }
    }
}
