//! Reading a multi-shard pipeline's replies in the client's order
//! ([`super::pipeline`]): step after step, from the part (or parts) that
//! ran it. Each part's replies arrive in the order its messages were sent,
//! which is the client's order restricted to that part, so the relay reads
//! the part of the next step, passes that step's reply on (or merges it
//! from several parts), and the other parts' replies wait in their sockets
//! until their turn. Replies to the proxy's own messages (BEGIN, Parses it
//! added) are swallowed, except errors.
//!
//! The first error ends the client's view of the pipeline, as in Postgres:
//! it is forwarded, the replies still due for later steps are read and
//! dropped, and the statement-name changes of the skipped steps undone.

use super::fanout::split_complete;
use super::pipeline::{Pipe, Spread, StepKind};
use super::relay::completes_reply;
use super::split_insert::values_order;
use super::{End, Session};
use crate::data::codec::error::sqlstate;
use crate::data::codec::frame::peek_frame;
use crate::data::codec::{messages, Frame, SqlError};
use bytes::BytesMut;
use std::sync::atomic::Ordering::Relaxed;
use tokio::io::AsyncWriteExt;

/// Client output buffered before it is written out between steps.
const FLUSH_AT: usize = 64 * 1024;

/// What a part answered to one step.
enum Read {
    Done,
    /// The backend's ErrorResponse (it skips the rest up to Sync).
    Error(BytesMut),
    /// The connection to this part's backend failed.
    Lost(usize, std::io::Error),
}

/// Where the frames of a step's reply go.
enum Sink<'a> {
    Forward,
    /// Nothing but errors reaches the client (another part answers for all).
    Discard,
    /// An Execute on several parts: rows forwarded or kept, counts summed.
    Collect(&'a mut Collected),
}

#[derive(Default)]
struct Collected {
    /// Rows go to the client as they come (else into `rows`).
    forward_rows: bool,
    rows: Vec<BytesMut>,
    /// The CommandComplete tag's verb ("INSERT 0", "UPDATE") and summed count.
    verb: Option<String>,
    count: Option<u64>,
}

impl Sink<'_> {
    fn take(&mut self, out: &mut BytesMut, tag: u8, bytes: &[u8]) {
        match self {
            Sink::Forward => out.extend_from_slice(bytes),
            Sink::Discard => {}
            Sink::Collect(c) => match tag {
                b'D' if c.forward_rows => out.extend_from_slice(bytes),
                b'D' => c.rows.push(BytesMut::from(bytes)),
                b'C' => {
                    let (verb, n) = split_complete(&bytes[5..]);
                    c.verb.get_or_insert(verb);
                    if let Some(n) = n {
                        *c.count.get_or_insert(0) += n;
                    }
                }
                _ => {}
            },
        }
    }
}

impl Session {
    /// Relays the steps' replies; on a lost backend returns its shard name
    /// and the error (the caller ends the pipeline).
    pub(super) async fn pipe_relay(
        &mut self,
        pipe: &mut Pipe,
        steps: Vec<super::pipeline::Step>,
    ) -> Result<Result<(), (String, std::io::Error)>, End> {
        for step in steps {
            if pipe.failed {
                break;
            }
            let no = step.no;
            let read = match step.kind {
                StepKind::Synth(b) => {
                    self.out.extend_from_slice(&b);
                    Read::Done
                }
                StepKind::Begin => {
                    messages::command_complete(&mut self.out, "BEGIN");
                    pipe.explicit = true;
                    Read::Done
                }
                StepKind::Fail(e) => {
                    e.encode(&mut self.out);
                    fail_at(self, pipe, no);
                    Read::Done
                }
                StepKind::Part(p) => self.pipe_read(pipe, p, no, Sink::Forward).await?,
                StepKind::Many {
                    spread,
                    execute: Some(limit),
                } => self.pipe_read_many(pipe, &spread, no, limit).await?,
                StepKind::Many { spread, .. } => {
                    let mut read = Read::Done;
                    for (k, &p) in spread.parts.iter().enumerate() {
                        let sink = if k == 0 { Sink::Forward } else { Sink::Discard };
                        read = self.pipe_read(pipe, p, no, sink).await?;
                        if !matches!(read, Read::Done) {
                            break;
                        }
                    }
                    read
                }
            };
            match read {
                Read::Done => {}
                Read::Error(e) => {
                    self.out.extend_from_slice(&e);
                    fail_at(self, pipe, no);
                }
                Read::Lost(p, e) => return Ok(Err((pipe.parts[p].lease.pool().name.clone(), e))),
            }
            if self.out.len() >= FLUSH_AT {
                self.flush_client().await?;
            }
        }
        // After an error: read and drop what is still due for skipped steps.
        for p in 0..pipe.parts.len() {
            while let Some(e) = pipe.state[p].queue.front().copied() {
                if let Read::Lost(p, err) = self.pipe_read(pipe, p, e.step, Sink::Discard).await? {
                    return Ok(Err((pipe.parts[p].lease.pool().name.clone(), err)));
                }
            }
        }
        Ok(Ok(()))
    }

    /// An Execute on several parts: their rows (in VALUES order for a
    /// split INSERT with RETURNING) and one CommandComplete with the
    /// summed count (one copy's for a reference table).
    async fn pipe_read_many(
        &mut self,
        pipe: &mut Pipe,
        spread: &Spread,
        no: usize,
        limit: u32,
    ) -> Result<Read, End> {
        let mut c = Collected {
            forward_rows: spread.rows.is_none() && limit == 0,
            ..Collected::default()
        };
        let mut per_part = Vec::new();
        for (k, &p) in spread.parts.iter().enumerate() {
            let sink = if spread.copies && k > 0 {
                Sink::Discard
            } else {
                Sink::Collect(&mut c)
            };
            let read = self.pipe_read(pipe, p, no, sink).await?;
            if !matches!(read, Read::Done) {
                return Ok(read);
            }
            if spread.rows.is_some() {
                per_part.push(std::mem::take(&mut c.rows));
            }
        }
        let rows = match &spread.rows {
            Some(idx) => values_order(per_part, idx),
            None => c.rows,
        };
        if limit > 0 && rows.len() > limit as usize {
            let e = SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "a statement that ran on several shards returned {} rows, more than the Execute's row limit of {limit}",
                    rows.len()
                ),
            )
            .with_hint("Execute statements that span shards without a row limit (no fetch size).");
            let mut b = BytesMut::new();
            e.encode(&mut b);
            return Ok(Read::Error(b));
        }
        for row in rows {
            self.out.extend_from_slice(&row);
        }
        match (c.verb, c.count) {
            (Some(v), Some(n)) => messages::command_complete(&mut self.out, &format!("{v} {n}")),
            (Some(v), None) => messages::command_complete(&mut self.out, &v),
            _ => {}
        }
        Ok(Read::Done)
    }

    /// Reads part `p`'s replies for step `no` (the proxy's messages first,
    /// then the client's), passing the client's to `sink`.
    async fn pipe_read(
        &mut self,
        pipe: &mut Pipe,
        p: usize,
        no: usize,
        mut sink: Sink<'_>,
    ) -> Result<Read, End> {
        while let Some(entry) = pipe.state[p].queue.front().copied() {
            if entry.step != no {
                break;
            }
            pipe.state[p].queue.pop_front();
            loop {
                let frame = match self.pipe_frame(pipe, p).await? {
                    Ok(f) => f,
                    Err(e) => return Ok(Read::Lost(p, e)),
                };
                let (pool, be) = pipe.parts[p].lease.parts();
                let bytes = &be.reader.buf[..frame.len];
                let tag = frame.tag;
                match tag {
                    b'E' => {
                        pool.stats.errors.fetch_add(1, Relaxed);
                        if self.columns_watch.is_some() {
                            self.column_error(frame.body(bytes));
                        }
                        let err = BytesMut::from(bytes);
                        be.reader.skip(frame);
                        // The backend skips everything up to Sync: the
                        // statements those messages prepared are not there.
                        let st = &mut pipe.state[p];
                        st.failed = true;
                        for e in std::iter::once(entry).chain(st.queue.drain(..)) {
                            if let Some(h) = e.parsed {
                                be.prepared.remove(&h);
                            }
                        }
                        return Ok(Read::Error(err));
                    }
                    b'Z' => {
                        return Ok(Read::Lost(
                            p,
                            std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                "ReadyForQuery in the middle of a pipeline",
                            ),
                        ))
                    }
                    b'S' => {
                        self.parameter_status(frame.body(bytes));
                        self.out.extend_from_slice(bytes);
                    }
                    // Asynchronous: NoticeResponse, NotificationResponse.
                    b'N' | b'A' => self.out.extend_from_slice(bytes),
                    _ if !entry.swallow => sink.take(&mut self.out, tag, bytes),
                    _ => {}
                }
                be.reader.skip(frame);
                if self.standard_strings_off {
                    be.standard_strings_off = true;
                }
                if completes_reply(tag) {
                    break;
                }
            }
        }
        Ok(Read::Done)
    }

    /// The next frame from part `p`; what the client is owed so far goes
    /// out while the backend is waited for.
    async fn pipe_frame(
        &mut self,
        pipe: &mut Pipe,
        p: usize,
    ) -> Result<std::io::Result<Frame>, End> {
        let be = pipe.parts[p].lease.backend();
        match peek_frame(&be.reader.buf, be.reader.max) {
            Ok(Some(f)) => return Ok(Ok(f)),
            Ok(None) => {}
            Err(e) => return Ok(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e))),
        }
        if !self.out.is_empty() {
            self.client.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(be.next_frame().await)
    }
}

/// The pipeline failed at step `no`: the client's statement names are put
/// back as they were before the steps Postgres would have skipped.
fn fail_at(s: &mut Session, pipe: &mut Pipe, no: usize) {
    pipe.failed = true;
    while pipe.undo.last().is_some_and(|u| u.step > no) {
        if let Some(u) = pipe.undo.pop() {
            match u.before {
                Some(stmt) => s.prepared.insert(&u.name, stmt),
                None => s.prepared.remove(&u.name),
            }
        }
    }
}
