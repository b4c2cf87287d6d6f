//! Backend → client forwarding. Frames are copied through as they are (never
//! decoded) except the few the proxy must see: ReadyForQuery (transaction
//! status), ErrorResponse (an extended-protocol batch skips to Sync), the
//! replies to messages the proxy injected (swallowed), and CopyInResponse
//! (the client's COPY data then flows the other way).

use super::copy_out::forward_copy_data;
use super::{End, Session};
use crate::data::codec::frame::peek_frame;
use crate::data::codec::{messages, FrameError, SqlError};
use crate::data::pool::{reports_standard_strings_off, Lease};
use bytes::{Buf, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

/// What the proxy expects back for each message it sent in an
/// extended-protocol batch, in order.
#[derive(Debug)]
pub(super) enum Expect {
    /// The backend's reply to a message: forwarded, or swallowed when the
    /// proxy injected the message. `parsed` names a statement this message
    /// prepares, forgotten again if the backend rejects it.
    Reply { swallow: bool, parsed: Option<u64> },
    /// A reply the proxy makes itself, emitted in its turn.
    Synth(BytesMut),
    /// The ReadyForQuery answering a Sync.
    Sync,
}

/// How a relay ended.
pub(super) enum Relayed {
    /// ReadyForQuery with this transaction status.
    Ready(u8),
    /// Every expected reply arrived (a batch ending in Flush).
    Drained,
    /// The backend connection failed; the lease is gone.
    Lost(std::io::Error),
}

/// Where a run of buffered frames ended (see [`Session::forward_buffered`]).
enum Run {
    /// Every whole frame buffered went; the answer goes on.
    More,
    /// ReadyForQuery with this transaction status.
    Ready(u8),
    /// CopyInResponse: the client's COPY data comes next.
    CopyIn,
}

/// Messages that complete the reply to one extended-protocol message.
#[inline]
pub(super) fn completes_reply(tag: u8) -> bool {
    matches!(tag, b'1' | b'2' | b'3' | b'n' | b'T' | b'C' | b'I' | b's')
}

/// Adds a relayed answer's bytes to its pool's stats.
#[inline]
fn tally(lease: &Lease, received: u64) {
    lease
        .pool()
        .stats
        .bytes_received
        .fetch_add(received, Relaxed);
}

impl Session {
    /// Notes a backend's ParameterStatus: standard_conforming_strings off
    /// ends the session before its next message (and its backend is closed,
    /// not pooled).
    pub(super) fn parameter_status(&mut self, body: &[u8]) {
        if reports_standard_strings_off(body) {
            self.standard_strings_off = true;
        }
    }

    /// Emits leading synthesized replies.
    fn emit_synth(&mut self, queue: &mut VecDeque<Expect>) {
        while let Some(Expect::Synth(_)) = queue.front() {
            if let Some(Expect::Synth(b)) = queue.pop_front() {
                self.emit(&b);
            }
        }
    }

    /// Sends `bytes` to the leased backend, then relays its answer (`queue`
    /// as for [`Session::relay`]); a failed send is a lost connection.
    pub(super) async fn send_then_relay(
        &mut self,
        lease: &mut Lease,
        bytes: &[u8],
        queue: Option<&mut VecDeque<Expect>>,
    ) -> Result<Relayed, End> {
        if let Err(e) = lease.backend().send(bytes).await {
            return Ok(Relayed::Lost(e));
        }
        lease
            .pool()
            .stats
            .bytes_sent
            .fetch_add(bytes.len() as u64, Relaxed);
        self.relay(lease, queue).await
    }

    /// Forwards every whole frame already read from the backend, up to and
    /// including a ReadyForQuery or CopyInResponse, to the client in one
    /// copy: the simple protocol's relay, which passes everything on, looks
    /// only at the tags. Returns the bytes taken and where the run ended.
    fn forward_buffered(&mut self, lease: &mut Lease) -> Result<(u64, Run), FrameError> {
        let (pool, be) = lease.parts();
        let buf = &be.reader.buf[..];
        let mut at = 0;
        let mut end = Run::More;
        while let Some(f) = peek_frame(&buf[at..], be.reader.max)? {
            let bytes = &buf[at..at + f.len];
            at += f.len;
            match f.tag {
                b'S' => self.parameter_status(f.body(bytes)),
                b'E' => {
                    pool.stats.errors.fetch_add(1, Relaxed);
                    if self.columns_watch.is_some() {
                        self.column_error(f.body(bytes));
                    }
                }
                b'Z' => {
                    if let Some(&status) = bytes.get(5) {
                        end = Run::Ready(status);
                        break;
                    }
                }
                b'C' if self.fan_hold.is_none() => {
                    let rows = crate::data::load::command_rows(f.body(bytes));
                    self.load
                        .rows(self.lease_shard, rows, &self.proxy.load, &self.rt);
                }
                b'G' => {
                    end = Run::CopyIn;
                    break;
                }
                _ => {}
            }
        }
        self.out.extend_from_slice(&buf[..at]);
        be.reader.buf.advance(at);
        if self.standard_strings_off {
            be.standard_strings_off = true;
        }
        Ok((at as u64, end))
    }

    /// Relays the backend's answer to what was just sent on `lease`:
    /// everything up to ReadyForQuery for the simple protocol (`queue`
    /// None), or the replies `queue` expects for an extended batch.
    pub(super) async fn relay(
        &mut self,
        lease: &mut Lease,
        queue: Option<&mut VecDeque<Expect>>,
    ) -> Result<Relayed, End> {
        // quanta reads the TSC: a few ns, against ~40 for clock_gettime here.
        let started = quanta::Instant::now();
        lease.pool().stats.queries.fetch_add(1, Relaxed);
        match queue {
            None => self.relay_all(lease, started).await,
            Some(q) => self.relay_queued(lease, q, started).await,
        }
    }

    /// The simple protocol's relay: every frame up to ReadyForQuery goes to
    /// the client, a buffered run at a time.
    async fn relay_all(
        &mut self,
        lease: &mut Lease,
        started: quanta::Instant,
    ) -> Result<Relayed, End> {
        // Counted here and added to the pool's stats once at the end (one
        // atomic add per answer, not per frame).
        let mut received = 0u64;
        loop {
            let (n, end) = match self.forward_buffered(lease) {
                Ok(r) => r,
                Err(e) => {
                    tally(lease, received);
                    return Ok(Relayed::Lost(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        e,
                    )));
                }
            };
            received += n;
            match end {
                Run::Ready(s) => {
                    tally(lease, received);
                    self.flush_client().await?;
                    lease.pool().stats.record_latency(started.elapsed());
                    return Ok(Relayed::Ready(s));
                }
                Run::CopyIn => {
                    if let Err(e) = Box::pin(self.copy_in(lease, false)).await? {
                        tally(lease, received);
                        return Ok(Relayed::Lost(e));
                    }
                }
                Run::More => {
                    // What went so far reaches the client while the
                    // rest is read (a large result streams).
                    self.flush_client().await?;
                    if let Err(e) = lease.backend().next_frame().await {
                        tally(lease, received);
                        return Ok(Relayed::Lost(e));
                    }
                }
            }
        }
    }

    /// An extended batch's relay: each frame is matched with the reply
    /// `q` expects (swallowed for injected messages, the proxy's own
    /// replies emitted in their turn).
    async fn relay_queued(
        &mut self,
        lease: &mut Lease,
        q: &mut VecDeque<Expect>,
        started: quanta::Instant,
    ) -> Result<Relayed, End> {
        let mut swallowing = false;
        let mut received = 0u64;
        self.emit_synth(q);
        if q.is_empty() {
            self.flush_client().await?;
            return Ok(Relayed::Drained);
        }
        loop {
            let be = lease.backend();
            let frame = match peek_frame(&be.reader.buf, be.reader.max) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    self.flush_client().await?;
                    match be.next_frame().await {
                        Ok(f) => f,
                        Err(e) => {
                            tally(lease, received);
                            return Ok(Relayed::Lost(e));
                        }
                    }
                }
                Err(e) => {
                    tally(lease, received);
                    return Ok(Relayed::Lost(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        e,
                    )));
                }
            };
            let tag = frame.tag;
            let (pool, be) = lease.parts();
            let bytes = &be.reader.buf[..frame.len];
            received += frame.len as u64;
            if tag == b'S' {
                self.parameter_status(frame.body(bytes));
            }
            if tag == b'Z' || tag == b'E' || completes_reply(tag) {
                self.emit_synth(q);
            }
            match tag {
                b'Z' => {
                    if let Some(Expect::Sync) = q.front() {
                        q.pop_front();
                    }
                    match self.force_status {
                        Some(st) => self.emit(&[b'Z', 0, 0, 0, 5, st]),
                        None => self.emit(bytes),
                    }
                }
                b'E' => {
                    pool.stats.errors.fetch_add(1, Relaxed);
                    if self.columns_watch.is_some() {
                        self.column_error(frame.body(bytes));
                    }
                    // Errors always reach the client, even for injected messages.
                    self.emit(bytes);
                    let mut forget = Vec::new();
                    if let Some(Expect::Reply {
                        parsed: Some(h), ..
                    }) = q.front()
                    {
                        forget.push(*h);
                    }
                    if matches!(q.front(), Some(Expect::Reply { .. })) {
                        q.pop_front();
                    }
                    // The backend skips everything up to Sync.
                    while let Some(e) = q.front() {
                        match e {
                            Expect::Sync => break,
                            Expect::Reply {
                                parsed: Some(h), ..
                            } => forget.push(*h),
                            _ => {}
                        }
                        q.pop_front();
                    }
                    for h in forget {
                        be.prepared.remove(&h);
                    }
                    swallowing = false;
                }
                t if completes_reply(t) => {
                    let swallow = match q.pop_front() {
                        Some(Expect::Reply { swallow, .. }) => swallow,
                        _ => false,
                    };
                    let hold =
                        t == b'C' && !swallow && self.fan_hold.as_ref().is_some_and(|h| !h.after);
                    if hold {
                        if let Some(h) = self.fan_hold.as_mut() {
                            let body = frame.body(bytes);
                            h.tag = Some(
                                String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(body))
                                    .into_owned(),
                            );
                            h.after = true;
                        }
                    } else if !swallow {
                        self.emit(bytes);
                        if t == b'C' && self.fan_hold.is_none() {
                            let rows = crate::data::load::command_rows(frame.body(bytes));
                            self.load
                                .rows(self.lease_shard, rows, &self.proxy.load, &self.rt);
                        }
                    }
                    swallowing = false;
                    self.emit_synth(q);
                }
                // Part of the reply in progress (ParameterDescription, DataRow, COPY).
                // A fanned-out COPY TO: CopyDone waits for the other shards' data.
                b'c' if self.fan_hold.as_ref().is_some_and(|h| !h.after) => {
                    if let Some(h) = self.fan_hold.as_mut() {
                        h.copy_done = true;
                    }
                }
                // A fanned-out binary COPY TO: one header, the trailer at the end.
                b'd' if self.fan_hold.as_ref().is_some_and(|h| !h.after) => {
                    if let Some(h) = self.fan_hold.as_mut() {
                        // The first shard: before its CommandComplete, straight out.
                        h.copy_trailer |= forward_copy_data(
                            bytes,
                            frame.body(bytes),
                            &mut h.copy_header_sent,
                            &mut self.out,
                        );
                    }
                }
                b't' | b'D' | b'd' | b'c' | b'H' | b'G' => {
                    if !swallowing {
                        swallowing = matches!(q.front(), Some(Expect::Reply { swallow: true, .. }));
                    }
                    if !swallowing {
                        self.emit(bytes);
                    }
                }
                // Asynchronous: NoticeResponse, ParameterStatus, NotificationResponse.
                _ => self.emit(bytes),
            }
            let status = if tag == b'Z' {
                bytes.get(5).copied()
            } else {
                None
            };
            lease.backend().reader.buf.advance(frame.len);
            if self.standard_strings_off {
                lease.backend().standard_strings_off = true;
            }
            if tag == b'G' {
                // Postgres ignores a Sync that reaches it in copy-in mode
                // (libpq and tokio-postgres pipeline one right after the
                // COPY's Execute): the Sync the client sends after CopyDone
                // is the one that gets the ReadyForQuery.
                let ate_sync = q.iter().any(|e| matches!(e, Expect::Sync));
                match Box::pin(self.copy_in(lease, ate_sync)).await? {
                    Err(e) => {
                        tally(lease, received);
                        return Ok(Relayed::Lost(e));
                    }
                    Ok(true) => {}
                    Ok(false) => {
                        // No Sync followed CopyDone: the backend holds
                        // CommandComplete until one comes, so ask for it
                        // with a Flush rather than wait forever.
                        q.retain(|e| !matches!(e, Expect::Sync));
                        let mut flush = BytesMut::with_capacity(5);
                        messages::empty(&mut flush, b'H');
                        if let Err(e) = lease.backend().send(&flush).await {
                            tally(lease, received);
                            return Ok(Relayed::Lost(e));
                        }
                    }
                }
                continue;
            }
            if let Some(s) = status {
                tally(lease, received);
                self.flush_client().await?;
                lease.pool().stats.record_latency(started.elapsed());
                return Ok(Relayed::Ready(s));
            }
            if q.is_empty() {
                tally(lease, received);
                self.flush_client().await?;
                return Ok(Relayed::Drained);
            }
        }
    }

    /// COPY FROM STDIN: forwards the client's CopyData until CopyDone or
    /// CopyFail. The outer result is the client side, the inner the backend.
    /// With `take_sync`, a Sync right after CopyDone/CopyFail is forwarded
    /// with it; the inner value says whether one was.
    async fn copy_in(
        &mut self,
        lease: &mut Lease,
        take_sync: bool,
    ) -> Result<Result<bool, std::io::Error>, End> {
        self.flush_client().await?;
        let mut chunk = BytesMut::new();
        loop {
            let f = match self.creader.next(&mut self.client).await {
                Ok(Some(f)) => f,
                Ok(None) | Err(_) => {
                    // Client gone mid-COPY: abort the COPY so the backend is reusable.
                    let mut fail = BytesMut::new();
                    postgres_protocol::message::frontend::copy_fail(
                        "client disconnected during COPY",
                        &mut fail,
                    )
                    .ok();
                    let _ = lease.backend().send(&fail).await;
                    return Err(End::Client);
                }
            };
            match f.tag {
                b'd' | b'c' | b'f' | b'H' | b'S' => {
                    chunk.extend_from_slice(&self.creader.buf[..f.len]);
                    self.creader.skip(f);
                    let done = matches!(f.tag, b'c' | b'f');
                    let mut synced = false;
                    if done && take_sync {
                        // A client that works against Postgres sends Sync (or
                        // Flush) next: Postgres answers nothing before it.
                        if let Ok(Some(n)) = self.creader.next(&mut self.client).await {
                            if n.tag == b'S' {
                                chunk.extend_from_slice(&self.creader.buf[..n.len]);
                                self.creader.skip(n);
                                synced = true;
                            }
                        }
                    }
                    // Send what is buffered when the input runs dry or COPY ends.
                    if done
                        || chunk.len() > 64 * 1024
                        || self.creader.peek().ok().flatten().is_none()
                    {
                        if let Err(e) = lease.backend().send(&chunk).await {
                            return Ok(Err(e));
                        }
                        lease
                            .pool()
                            .stats
                            .bytes_sent
                            .fetch_add(chunk.len() as u64, Relaxed);
                        chunk.clear();
                    }
                    if done {
                        return Ok(Ok(synced));
                    }
                }
                other => {
                    let mut fail = BytesMut::new();
                    postgres_protocol::message::frontend::copy_fail(
                        "protocol violation",
                        &mut fail,
                    )
                    .ok();
                    let _ = lease.backend().send(&fail).await;
                    return Err(End::Fatal(SqlError::protocol(format!(
                        "unexpected message type 0x{other:02X} during COPY from stdin"
                    ))));
                }
            }
        }
    }

    /// Handles the end of a relay: keeps or releases the backend, and turns a
    /// lost backend into an error for the client.
    pub(super) async fn after_relay(
        &mut self,
        lease: Lease,
        r: Relayed,
        was_sync: bool,
    ) -> Result<(), End> {
        match r {
            Relayed::Ready(status) => {
                self.tx = status;
                self.info
                    .state
                    .store(status, std::sync::atomic::Ordering::Relaxed);
                self.lease = Some(lease);
                if status == b'I' {
                    self.release().await;
                }
                Ok(())
            }
            Relayed::Drained => {
                self.lease = Some(lease);
                Ok(())
            }
            Relayed::Lost(e) => {
                let name = lease.pool().name.clone();
                lease.pool().stats.errors.fetch_add(1, Relaxed);
                drop(lease);
                self.discard_backend();
                let err = SqlError::shard_unavailable(&name, format!("connection lost: {e}"));
                if self.tx != b'I' {
                    // The transaction died with its backend: like Postgres, end the session.
                    return Err(End::Fatal(SqlError { fatal: true, ..err }));
                }
                err.encode(&mut self.out);
                if was_sync {
                    messages::ready_for_query(&mut self.out, b'I');
                } else {
                    self.skip_to_sync = true;
                }
                self.flush_client().await
            }
        }
    }
}
