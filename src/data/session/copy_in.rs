//! `COPY sharded_table FROM STDIN` across shards: the same COPY is opened on
//! every shard, the client's data rows are split by shard key (text, CSV or
//! binary), and the shards' row counts are summed. `COPY reference_table
//! FROM STDIN` sends every row to every shard and reports one copy's count.
//! Outside a transaction the load is all-or-nothing (two-phase commit).
//! Through the simple protocol or as the Execute of an extended-protocol
//! batch ([`CopyVia`]). Each shard's rows are gathered straight into one
//! CopyData message (its header written first, its length at the end), so
//! a row is copied once on its way through.

use super::fanout::{split_complete, Part};
use super::twophase::Commit;
use super::{End, Session};
use crate::data::codec::error::{parse_error_fields, sqlstate};
use crate::data::codec::{messages, SqlError};
use crate::data::planner::{CopyDest, CopySpec, CopySplitter};
use bytes::{BufMut, BytesMut};

/// Bytes of rows buffered per shard before they are sent as one CopyData.
const FLUSH_AT: usize = 64 * 1024;

/// How the client started the COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CopyVia {
    /// A simple query: the answer ends with ReadyForQuery.
    Simple,
    /// The Execute of an extended-protocol batch: the answer ends with
    /// CommandComplete (or the error), and ReadyForQuery answers the Sync
    /// the client sends after CopyDone. `synced`: the batch already ended
    /// in a Sync (which Postgres ignores once the COPY runs), so an error
    /// before the COPY starts is answered with ReadyForQuery at once.
    Extended { synced: bool },
}

impl Session {
    /// `spec`: how to split rows by key; `None` copies every row to every
    /// shard. `query` is the COPY as a Query message for the shards.
    pub(super) async fn copy_split(
        &mut self,
        query: &[u8],
        spec: Option<&CopySpec>,
        via: CopyVia,
    ) -> Result<(), End> {
        let shards: Vec<usize> = (0..self.rt.pools.len()).collect();
        // BEGIN comes after the column lookup below, which may still fail.
        let (mut parts, in_tx) = match self.open_parts(&shards, false).await {
            Ok(p) => p,
            Err(e) => return self.copy_refused(via, e).await,
        };
        if spec.is_some() && !in_tx && parts.len() > 1 && !self.twophase_possible(&mut parts).await
        {
            // Refused before any row is read, not after loading them all.
            let e = super::twophase::twophase_refusal(
                &parts
                    .iter()
                    .map(|p| p.lease.pool())
                    .filter(|p| {
                        p.twophase.load(std::sync::atomic::Ordering::Relaxed)
                            != super::twophase::TWOPHASE_YES
                    })
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>(),
            );
            return self.copy_abandon(parts, in_tx, via, e).await;
        }
        let mut splitter = match spec {
            Some(spec) => {
                let columns = if spec.columns.is_empty() {
                    match self
                        .table_columns(&spec.table, Some(parts[0].lease.backend()))
                        .await
                    {
                        Ok(c) => c.to_vec(),
                        Err(e) => return self.copy_abandon(parts, in_tx, via, e).await,
                    }
                } else {
                    spec.columns.clone()
                };
                match CopySplitter::new(spec, &columns, &self.rt.map) {
                    Ok(s) => Some(s),
                    Err(e) => return self.copy_abandon(parts, in_tx, via, e.into()).await,
                }
            }
            None => None,
        };
        if !in_tx {
            if let Err(e) = self.begin_all(&mut parts).await {
                return self.copy_abandon(parts, in_tx, via, e).await;
            }
        }
        // Open the COPY everywhere; forward the first CopyInResponse.
        let mut response = None;
        for p in parts.iter_mut() {
            let name = p.lease.pool().name.clone();
            let be = p.lease.backend();
            if let Err(e) = be.send(query).await {
                return self
                    .copy_abandon(parts, in_tx, via, SqlError::shard_unavailable(&name, e))
                    .await;
            }
            match read_until_copy_in(p).await {
                Ok(Ok(frame)) => {
                    response.get_or_insert(frame);
                }
                Ok(Err(err)) => {
                    return self.copy_abandon(parts, in_tx, via, err).await;
                }
                Err(e) => {
                    return self
                        .copy_abandon(parts, in_tx, via, SqlError::shard_unavailable(&name, e))
                        .await
                }
            }
        }
        if let Some(r) = response {
            self.out.extend_from_slice(&r);
        }
        self.flush_client().await?;
        // Stream the client's rows to their shards.
        let mut bufs: Vec<BytesMut> = (0..parts.len()).map(|_| copy_data_buf()).collect();
        let mut failure: Option<SqlError> = None;
        let mut client_failed = false;
        loop {
            let f = match self.creader.next(&mut self.client).await {
                Ok(Some(f)) => f,
                _ => {
                    // Client gone: roll everything back.
                    fail_all(&mut parts, "client disconnected during COPY").await;
                    drop(parts);
                    return Err(End::Client);
                }
            };
            let tag = f.tag;
            if tag == b'd' && failure.is_none() {
                let body = f.body(&self.creader.buf);
                match splitter.as_mut() {
                    Some(s) => {
                        let r = s.feed(body, &mut |dest, row| route_row(&mut bufs, dest, row));
                        if let Err(e) = r {
                            failure = Some(e.into());
                        }
                    }
                    // Copies: the data as it came, whatever its format.
                    None => route_row(&mut bufs, CopyDest::All, body),
                }
            }
            self.creader.skip(f);
            match tag {
                b'd' => {}
                b'c' => {
                    if let (None, Some(s)) = (&failure, splitter.as_mut()) {
                        if let Err(e) = s.finish(&mut |dest, row| route_row(&mut bufs, dest, row)) {
                            failure = Some(e.into());
                        }
                    }
                    break;
                }
                b'f' => {
                    client_failed = true;
                    break;
                }
                b'H' | b'S' => continue,
                other => {
                    fail_all(&mut parts, "protocol violation").await;
                    return Err(End::Fatal(SqlError::protocol(format!(
                        "unexpected message type 0x{other:02X} during COPY from stdin"
                    ))));
                }
            }
            if failure.is_none() {
                for (i, p) in parts.iter_mut().enumerate() {
                    if bufs[i].len() >= FLUSH_AT + 5 {
                        if let Err(e) = send_copy_data(p, &mut bufs[i]).await {
                            failure = Some(SqlError::shard_unavailable(&p.lease.pool().name, e));
                        }
                    }
                }
            }
        }
        // End the COPY on every shard.
        let mut total = 0u64;
        let mut error: Option<BytesMut> = None;
        for (i, p) in parts.iter_mut().enumerate() {
            let mut end = BytesMut::new();
            if failure.is_some() || client_failed {
                postgres_protocol::message::frontend::copy_fail(
                    "COPY aborted by shardproxy",
                    &mut end,
                )
                .ok();
            } else {
                if bufs[i].len() > 5 && send_copy_data(p, &mut bufs[i]).await.is_err() {
                    error.get_or_insert_with(|| {
                        encoded(&SqlError::shard_unavailable(
                            &p.lease.pool().name,
                            "connection lost",
                        ))
                    });
                    continue;
                }
                messages::empty(&mut end, b'c');
            }
            let name = p.lease.pool().name.clone();
            if p.lease.backend().send(&end).await.is_err() {
                error.get_or_insert_with(|| {
                    encoded(&SqlError::shard_unavailable(&name, "connection lost"))
                });
                continue;
            }
            match read_copy_result(p).await {
                Ok((n, err)) => {
                    // Copies each load the same rows: report one copy's count.
                    total = if spec.is_some() { total + n } else { n };
                    if let Some(e) = err {
                        error.get_or_insert(e);
                    }
                }
                Err(e) => {
                    error.get_or_insert_with(|| encoded(&SqlError::shard_unavailable(&name, e)));
                }
            }
        }
        if let Some(f) = failure {
            error = Some(encoded(&f));
        }
        let mut answer = super::fanout::Answer::default();
        if let Some(e) = error {
            answer.error = Some((e, String::new()));
        } else {
            answer.verb = Some("COPY".into());
            answer.count = Some(total);
        }
        let commit = match (in_tx, spec) {
            (true, _) => Commit::Skip,
            (false, Some(_)) => Commit::Atomic,
            // Every row to every copy of a reference table.
            (false, None) => Commit::BestEffort,
        };
        match via {
            CopyVia::Simple => self.complete_parts(parts, answer, in_tx, commit).await,
            CopyVia::Extended { .. } => {
                self.settle_parts(parts, answer, in_tx, commit).await;
                self.flush_client().await
            }
        }
    }

    /// An error before the COPY reached the shards.
    async fn copy_refused(&mut self, via: CopyVia, e: SqlError) -> Result<(), End> {
        match via {
            CopyVia::Simple | CopyVia::Extended { synced: true } => self.error_and_ready(e).await,
            CopyVia::Extended { synced: false } => self.batch_error(e, false).await,
        }
    }

    /// Gives up before the client's COPY started: error, parts back.
    async fn copy_abandon(
        &mut self,
        mut parts: Vec<Part>,
        in_tx: bool,
        via: CopyVia,
        e: SqlError,
    ) -> Result<(), End> {
        if in_tx {
            self.put_parts(parts);
        } else {
            self.rollback_all(&mut parts).await;
            self.finish_parts(parts);
        }
        self.copy_refused(via, e).await
    }
}

fn encoded(e: &SqlError) -> BytesMut {
    let mut b = BytesMut::new();
    e.encode(&mut b);
    b
}

fn route_row(bufs: &mut [BytesMut], dest: CopyDest, row: &[u8]) {
    match dest {
        CopyDest::Shard(i) => {
            if let Some(b) = bufs.get_mut(i) {
                b.extend_from_slice(row);
            }
        }
        CopyDest::All => {
            for b in bufs.iter_mut() {
                b.extend_from_slice(row);
            }
        }
    }
}

/// A per-shard buffer of rows: a CopyData header (its length written when
/// the message is sent), then the rows.
fn copy_data_buf() -> BytesMut {
    let mut b = BytesMut::with_capacity(FLUSH_AT + 16 * 1024);
    b.put_u8(b'd');
    b.put_i32(0);
    b
}

/// Sends the buffered rows as one CopyData message and empties the buffer
/// (down to a new header).
async fn send_copy_data(p: &mut Part, msg: &mut BytesMut) -> std::io::Result<()> {
    let len = (msg.len() - 1) as i32;
    msg[1..5].copy_from_slice(&len.to_be_bytes());
    let r = p.lease.backend().send(msg).await;
    msg.truncate(1);
    msg.put_i32(0);
    r
}

async fn fail_all(parts: &mut [Part], why: &str) {
    let mut fail = BytesMut::new();
    postgres_protocol::message::frontend::copy_fail(why, &mut fail).ok();
    for p in parts.iter_mut() {
        let _ = p.lease.backend().send(&fail).await;
    }
}

/// Reads a shard's answer to the COPY statement: CopyInResponse (its bytes),
/// or the error it raised instead (after its ReadyForQuery).
async fn read_until_copy_in(p: &mut Part) -> std::io::Result<Result<BytesMut, SqlError>> {
    let name = p.lease.pool().name.clone();
    let be = p.lease.backend();
    let mut err = None;
    loop {
        let f = be.next_frame().await?;
        let bytes = BytesMut::from(&be.reader.buf[..f.len]);
        be.reader.skip(f);
        match f.tag {
            b'G' => return Ok(Ok(bytes)),
            b'E' => {
                let (code, msg) = parse_error_fields(&bytes[5..]);
                err = Some(
                    SqlError::new(
                        sqlstate::CONNECTION_EXCEPTION,
                        format!("shard \"{name}\": {msg}"),
                    )
                    .with_detail(format!("SQLSTATE {code}")),
                );
            }
            b'Z' => {
                return Ok(Err(err.unwrap_or_else(|| {
                    SqlError::new(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!("shard \"{name}\" did not start the COPY"),
                    )
                })))
            }
            _ => {}
        }
    }
}

/// Reads a shard's answer after CopyDone/CopyFail: rows copied, or its error.
async fn read_copy_result(p: &mut Part) -> std::io::Result<(u64, Option<BytesMut>)> {
    let be = p.lease.backend();
    let mut n = 0;
    let mut err = None;
    loop {
        let f = be.next_frame().await?;
        let body = f.body(&be.reader.buf);
        match f.tag {
            b'C' => {
                n = split_complete(body).1.unwrap_or(0);
            }
            b'E' if err.is_none() => err = Some(BytesMut::from(&be.reader.buf[..f.len])),
            b'Z' => {
                be.reader.skip(f);
                return Ok((n, err));
            }
            _ => {}
        }
        be.reader.skip(f);
    }
}
