//! Multi-shard statements through the extended protocol: one statement per
//! pipeline (Parse/Bind/Describe/Execute up to Sync). The first shard's
//! answer is relayed as usual except that its CommandComplete, and what
//! follows it, are held back; the other shards contribute their rows; then
//! one CommandComplete with the summed count and the held tail go out.

use super::copy_out::{forward_copy_data, TRAILER_MESSAGE};
use super::fanout::{split_complete, split_tag, Answer, FanMode, Part};
use super::relay::Relayed;
use super::twophase::Commit;
use super::{End, Session};
use crate::data::codec::error::sqlstate;
use crate::data::codec::frontend::{ExecuteMsg, ParseMsg, TargetMsg};
use crate::data::codec::{messages, SqlError};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

/// The first shard's CommandComplete and everything after it, held back
/// while the other shards' rows are relayed.
#[derive(Debug, Default)]
pub(super) struct FanHold {
    /// CommandComplete seen: later frames go to `tail`.
    pub after: bool,
    pub tag: Option<String>,
    pub tail: BytesMut,
    /// The first shard's CopyDone of a COPY TO STDOUT, held until every
    /// shard's CopyData has been forwarded.
    pub copy_done: bool,
    /// A binary COPY TO: the header went out, a trailer is held for the end.
    pub copy_header_sent: bool,
    pub copy_trailer: bool,
}

impl Session {
    /// Emits a backend frame to the client (or to the held tail).
    #[inline]
    pub(super) fn emit(&mut self, bytes: &[u8]) {
        match &mut self.fan_hold {
            Some(h) if h.after => h.tail.extend_from_slice(bytes),
            _ => self.out.extend_from_slice(bytes),
        }
    }

    pub(super) async fn fanout_extended(
        &mut self,
        batch: &[u8],
        shards: &[usize],
        mode: FanMode,
    ) -> Result<(), End> {
        let executes = super::extended::frames(batch)
            .filter(|(t, _)| *t == b'E')
            .count();
        let limited = super::extended::frames(batch)
            .any(|(t, b)| t == b'E' && ExecuteMsg::decode(b).is_ok_and(|e| e.max_rows != 0));
        if executes != 1 || limited {
            let e = SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "a statement that spans shards must be executed once per pipeline and without a row limit",
            )
            .with_hint("Send one Execute (max rows 0) before Sync for statements without a shard key.");
            return self.error_and_ready(e).await;
        }
        let begin = mode.begins();
        let (mut parts, in_tx) = match self.open_parts(shards, begin).await {
            Ok(p) => p,
            Err(e) => return self.error_and_ready(e).await,
        };
        let commit = mode.commit(in_tx);
        let atomic = commit != Commit::Skip;
        // The first part is relayed with the usual reply queue.
        let mut queues = Vec::with_capacity(parts.len());
        // Each shard's copy of the batch must meet the client's statements
        // as they were before it: Parse and Close change them as a copy is
        // translated, so every copy after the first starts again from the
        // entries the batch names (and all end in the same state, with the
        // same errors).
        let touched = super::extended::frames(batch).filter_map(|(t, body)| match t {
            b'P' => ParseMsg::decode(body).ok().map(|p| p.name),
            b'C' => TargetMsg::decode(body, "Close")
                .ok()
                .filter(|c| c.kind == b'S')
                .map(|c| c.name),
            _ => None,
        });
        let before = self.prepared.save(touched);
        for (i, p) in parts.iter_mut().enumerate() {
            let mut wire = BytesMut::with_capacity(batch.len() + 64);
            let mut queue = VecDeque::new();
            let saved = (self.unnamed_on_lease, i > 0);
            self.unnamed_on_lease = false;
            if i > 0 {
                self.prepared.restore(&before);
            }
            self.translate(batch, Some(p.lease.backend()), &mut wire, &mut queue)?;
            if saved.1 {
                self.unnamed_on_lease = saved.0;
            }
            if let Err(e) = p.lease.backend().send(&wire).await {
                let e = SqlError::shard_unavailable(&p.lease.pool().name, e);
                drop(parts);
                self.publish_running();
                return self.error_and_ready(e).await;
            }
            p.lease.pool().stats.queries.fetch_add(1, Relaxed);
            queues.push(queue);
        }
        self.fan_hold = Some(FanHold::default());
        let mut first = parts.remove(0);
        let r = self.relay(&mut first.lease, Some(&mut queues[0])).await;
        let hold = self.fan_hold.take().unwrap_or_default();
        parts.insert(0, first);
        let mut total = Answer {
            copies: mode == FanMode::Copies,
            // The first shard's binary COPY header went out, its trailer is held.
            copy_header_sent: hold.copy_header_sent,
            copy_trailer: hold.copy_trailer,
            ..Answer::default()
        };
        let first_status = match r {
            Ok(Relayed::Ready(s)) => s,
            Ok(_) | Err(_) => {
                drop(parts);
                self.publish_running();
                let e = SqlError::shard_unavailable(
                    "(fan-out)",
                    "connection lost during a multi-shard statement",
                );
                return if in_tx {
                    Err(End::Fatal(SqlError { fatal: true, ..e }))
                } else {
                    self.error_and_ready(e).await
                };
            }
        };
        let first_failed = hold.tag.is_none();
        if first_failed {
            // The first shard's error and ReadyForQuery already reached the
            // client: drain the others and undo.
            for p in parts.iter_mut().skip(1) {
                let _ = self.rows_only(p, false, &mut total).await;
            }
            if in_tx {
                self.put_parts(parts);
                self.tx = first_status;
            } else {
                if atomic {
                    self.rollback_all(&mut parts).await;
                }
                self.finish_parts(parts);
            }
            return self.flush_client().await;
        }
        if let Some(tag) = &hold.tag {
            let (verb, n) = split_tag(tag);
            total.verb = Some(verb);
            total.count = n;
        }
        for p in parts.iter_mut().skip(1) {
            let name = p.lease.pool().name.clone();
            match self.rows_only(p, !first_failed, &mut total).await {
                Ok(()) => {}
                Err(e) => {
                    total.error.get_or_insert_with(|| {
                        let mut b = BytesMut::new();
                        SqlError::shard_unavailable(&name, e).encode(&mut b);
                        (b, String::new())
                    });
                }
            }
        }
        if mode == FanMode::Ddl {
            self.after_ddl(&mut parts, &mut total).await;
        }
        // Commit or roll back, then answer: summed CommandComplete, then the tail (ReadyForQuery).
        let failed = first_failed || total.error.is_some();
        if in_tx {
            self.put_parts(parts);
        } else if atomic {
            if failed {
                self.rollback_all(&mut parts).await;
            } else if let Err(e) = self.commit_all(&mut parts, commit).await {
                drop(parts);
                self.publish_running();
                e.encode(&mut self.out);
                messages::ready_for_query(&mut self.out, b'I');
                return self.flush_client().await;
            }
            self.finish_parts(parts);
        } else {
            self.finish_parts(parts);
        }
        if let Some((err, _)) = total.error.take() {
            if !first_failed {
                self.out.extend_from_slice(&err);
            }
            if in_tx {
                self.tx = b'E';
            }
            messages::ready_for_query(&mut self.out, self.tx);
            return self.flush_client().await;
        }
        if !first_failed {
            if total.copy_trailer {
                self.out.extend_from_slice(&TRAILER_MESSAGE);
            }
            if hold.copy_done {
                messages::empty(&mut self.out, b'c');
            }
            match (&total.verb, total.count) {
                (Some(v), Some(n)) => {
                    messages::command_complete(&mut self.out, &format!("{v} {n}"))
                }
                (Some(v), None) => messages::command_complete(&mut self.out, v),
                _ => {}
            }
        }
        let tail_status = hold.tail.last().copied();
        self.out.extend_from_slice(&hold.tail);
        if in_tx {
            self.tx = if failed {
                b'E'
            } else {
                tail_status.unwrap_or(b'T')
            };
        }
        self.flush_client().await
    }

    /// Reads one shard's answer to a fanned-out batch, forwarding only its
    /// rows (when `forward`) and folding its count and first error into `total`.
    async fn rows_only(
        &mut self,
        p: &mut Part,
        forward: bool,
        total: &mut Answer,
    ) -> std::io::Result<()> {
        loop {
            let be = p.lease.backend();
            let f = match crate::data::codec::frame::peek_frame(&be.reader.buf, be.reader.max) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    if !self.out.is_empty() {
                        use tokio::io::AsyncWriteExt;
                        self.client.write_all(&self.out).await?;
                        self.out.clear();
                    }
                    be.next_frame().await?
                }
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            };
            let bytes = &be.reader.buf[..f.len];
            match f.tag {
                b'd' if forward && !total.copies => {
                    let body = f.body(bytes);
                    total.copy_trailer |=
                        forward_copy_data(bytes, body, &mut total.copy_header_sent, &mut self.out);
                }
                b'D' if forward && !total.copies => self.out.extend_from_slice(bytes),
                b'C' if !total.copies => {
                    let body = f.body(bytes);
                    if let (_, Some(n)) = split_complete(body) {
                        *total.count.get_or_insert(0) += n;
                    }
                }
                b'E' if total.error.is_none() => {
                    total.error = Some((BytesMut::from(bytes), String::new()))
                }
                b'Z' => {
                    be.reader.skip(f);
                    return Ok(());
                }
                b'S' => self.parameter_status(f.body(bytes)),
                _ => {}
            }
            be.reader.skip(f);
            if self.standard_strings_off {
                be.standard_strings_off = true;
            }
        }
    }

    /// COMMIT/ROLLBACK of a multi-shard transaction sent through the
    /// extended protocol: the proxy answers every message itself.
    pub(super) async fn end_multi_extended(
        &mut self,
        batch: &[u8],
        commit: bool,
    ) -> Result<(), End> {
        let result = self.finish_multi(commit).await;
        for (tag, body) in super::extended::frames(batch) {
            match tag {
                b'P' => {
                    if let Ok(p) = ParseMsg::decode(body) {
                        let plan = self.rt.planner.plan(p.query);
                        let stmt = std::sync::Arc::new(super::prepared::PreparedStmt::new(
                            p.query,
                            p.param_types,
                            plan,
                        ));
                        if !p.name.is_empty() {
                            self.prepared.insert(p.name, stmt);
                        }
                    }
                    messages::empty(&mut self.out, b'1');
                }
                b'B' => messages::empty(&mut self.out, b'2'),
                b'C' => {
                    if let Ok(c) = TargetMsg::decode(body, "Close") {
                        if c.kind == b'S' {
                            self.prepared.remove(c.name);
                        }
                    }
                    messages::empty(&mut self.out, b'3');
                }
                b'D' => messages::empty(&mut self.out, b'n'),
                b'E' => match &result {
                    Ok(t) => messages::command_complete(&mut self.out, t),
                    Err(e) => e.encode(&mut self.out),
                },
                _ => {}
            }
        }
        messages::ready_for_query(&mut self.out, b'I');
        self.flush_client().await
    }
}
