//! One client connection, from handshake to goodbye: the per-client task of
//! the data path. It reads client messages, decides where each statement
//! goes, holds a pooled backend for the length of a transaction and relays
//! the backend's answer.
//!
//! - [`startup`]: handshake and authentication
//! - [`simple`]: the simple query protocol ('Q')
//! - [`extended`]: Parse/Bind/Describe/Execute/Close/Flush/Sync batches
//! - [`relay`]: backend → client forwarding, COPY, synthesized replies
//! - [`prepared`] and [`settings`]: state that must survive transaction pooling

pub mod client_stream;
mod columns;
mod copy_extended;
mod copy_in;
mod copy_out;
mod ddl_ids;
mod deferred_begin;
mod extended;
mod fanout;
mod fanout_ext;
mod fanout_merge;
mod pipeline;
mod pipeline_relay;
mod pipeline_wire;
pub mod prepared;
mod relay;
mod route;
pub mod settings;
mod simple;
mod split_insert;
pub mod startup;
mod target;
pub mod twophase;
mod txn;

use crate::data::codec::error::sqlstate;
use crate::data::codec::{messages, FrameReader, SqlError};
use crate::data::pool::Lease;
use crate::runtime::{ClientInfo, Proxy, Runtime};
use bytes::BytesMut;
use client_stream::ClientStream;
use prepared::PreparedRegistry;
use settings::Settings;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Why a session stops.
#[derive(Debug)]
pub enum End {
    /// The client said goodbye or went away.
    Client,
    /// The proxy closes the session (after sending this FATAL error).
    Fatal(SqlError),
}

impl From<std::io::Error> for End {
    fn from(_: std::io::Error) -> End {
        End::Client
    }
}

/// Runs a session whose handshake is done, until the client leaves.
pub async fn run(proxy: Arc<Proxy>, info: Arc<ClientInfo>, hs: startup::Handshake) {
    let rt_generation = proxy.generation();
    let rt = proxy.runtime();
    info.set_session_runtime(rt.clone());
    let max = rt.config.proxy.max_message_bytes;
    let target_primary = target::initial_target_primary(&rt.config, &hs.user);
    let hot_on = rt.config.hot.enabled;
    let mut s = Session {
        target_primary,
        replica_read: false,
        user: hs.user.clone(),
        settings: Settings::from_startup(&hs.params),
        proxy,
        rt,
        rt_generation,
        info,
        client: hs.stream,
        creader: FrameReader::new(max),
        out: BytesMut::new(),
        lease: None,
        lease_shard: 0,
        tx: b'I',
        prepared: PreparedRegistry::default(),
        settings_dirty: false,
        prepared_unsure: false,
        skip_to_sync: false,
        unnamed_on_lease: false,
        hint_shard: None,
        hint_key: None,
        others: Vec::new(),
        fan_hold: None,
        pending_begin: None,
        force_status: None,
        batch: BytesMut::new(),
        query_buf: Vec::new(),
        wire_buf: BytesMut::new(),
        expect_buf: Default::default(),
        parsed_in_batch: Vec::new(),
        batch_verbatim: false,
        many_running: false,
        standard_strings_off: false,
        last_plan: Default::default(),
        load: crate::data::load::SessionTally::new(hot_on),
        pipe: None,
        columns_watch: None,
    };
    let end = s.serve().await;
    if let End::Fatal(e) = &end {
        s.out.clear();
        e.encode(&mut s.out);
        let _ = s.client.write_all(&s.out).await;
    }
    s.finish().await;
}

/// The state of one client session.
pub struct Session {
    proxy: Arc<Proxy>,
    /// The runtime snapshot this session currently works with (refreshed
    /// between transactions, so a RELOAD never changes a transaction's view).
    rt: Arc<Runtime>,
    /// `Proxy::generation` when `rt` was loaded.
    rt_generation: u64,
    info: Arc<ClientInfo>,
    client: ClientStream,
    creader: FrameReader,
    /// Bytes waiting to be written to the client.
    out: BytesMut,
    /// The backend held for the current transaction (or pipeline up to Sync).
    lease: Option<Lease>,
    lease_shard: usize,
    /// Transaction status from the last ReadyForQuery: b'I', b'T' or b'E'.
    tx: u8,
    prepared: PreparedRegistry,
    settings: Settings,
    /// Statements run under the current lease may have changed settings.
    settings_dirty: bool,
    /// A DISCARD ALL / DEALLOCATE ran under the current lease and may have
    /// failed (e.g. inside a transaction block), so the backend's statements
    /// are unknown: they are all deallocated before the backend goes back.
    prepared_unsure: bool,
    /// After an error in an extended-protocol batch, client messages are
    /// skipped until Sync (as Postgres does).
    skip_to_sync: bool,
    /// The client's unnamed statement is on the held backend.
    unnamed_on_lease: bool,
    /// Shard chosen by `SET shardproxy.shard`.
    hint_shard: Option<usize>,
    /// Shard key chosen by `SET shardproxy.shard_key`.
    hint_key: Option<String>,
    /// Other shards' backends in a transaction that spans shards (see [`txn`]).
    others: Vec<fanout::Part>,
    /// A BEGIN the client sent before any statement that names a shard: it
    /// is answered by the proxy and replayed on the shard of the first
    /// routed statement, which pins the transaction there.
    pending_begin: Option<String>,
    /// The transaction status to report in relayed ReadyForQuery messages
    /// (while a deferred BEGIN is open on no backend yet).
    force_status: Option<u8>,
    /// Set while relaying the first shard of an extended-protocol fan-out.
    fan_hold: Option<fanout_ext::FanHold>,
    /// Extended-protocol messages waiting for Sync or Flush.
    batch: BytesMut,
    /// The simple query being run (kept between queries when small).
    query_buf: Vec<u8>,
    /// A batch as translated for the backend, and the replies it expects
    /// (kept between batches; see `extended`).
    wire_buf: BytesMut,
    expect_buf: std::collections::VecDeque<relay::Expect>,
    /// The statement each Parse of the current batch makes, by the Parse's
    /// offset in the batch: made once while routing, used by `translate`.
    parsed_in_batch: Vec<(usize, Arc<prepared::PreparedStmt>)>,
    /// Set by routing: the current extended batch can reach the backend as
    /// the client sent it. Only Parse of the unnamed statement (no settings,
    /// DISCARD or COPY FROM in it), Binds and Describes of that statement
    /// after it, Describes of portals, Executes and Flushes, ending in Sync.
    /// Translation would reproduce the same bytes, and the answer needs no
    /// reply queue: everything up to ReadyForQuery goes to the client.
    batch_verbatim: bool,
    /// The shape of the last simple-protocol statement and its plan.
    last_plan: crate::data::planner::LastPlan,
    /// `info.running_on` lists backends (a multi-shard statement or
    /// transaction published them); the one-backend path clears it.
    many_running: bool,
    /// A backend reported standard_conforming_strings off: the session ends
    /// before its next message.
    standard_strings_off: bool,
    /// The user the client logged in as.
    user: String,
    /// Every statement goes to the primaries (see [`target`]).
    target_primary: bool,
    /// The statement (or batch) being routed may be read from a replica:
    /// set where it is routed, read where backends are checked out.
    replica_read: bool,
    /// This client's load not yet merged into `proxy.load`.
    load: crate::data::load::SessionTally,
    /// A pipeline whose statements go to several shards, open until its
    /// Sync (see [`pipeline`]); it holds the session's backends meanwhile.
    pipe: Option<Box<pipeline::Pipe>>,
    /// The table whose cached column order the running statement used (see
    /// `columns.rs`): an undefined-column error drops it.
    columns_watch: Option<String>,
}

/// Largest query buffer a session keeps for its next query: enough for
/// OLTP texts, small enough that idle clients stay cheap.
const KEPT_QUERY_BUFFER: usize = 8 * 1024;

impl Session {
    async fn serve(&mut self) -> End {
        // One future for the whole session: creating a `changed()` future
        // per message would register and unregister a waiter (two lock
        // round trips) on every statement.
        let mut shutdown = self.proxy.shutdown.subscribe();
        // Unconstrained: with the task's cooperative budget spent, a watch
        // future returns Pending without registering its waiter, and the
        // single registering poll below would be lost.
        let stop = tokio::task::unconstrained(async move {
            // An Err means the sender is gone: the proxy is going away too.
            let _ = shutdown.wait_for(|down| *down).await;
        });
        tokio::pin!(stop);
        // `stop` is polled once to register its waiter, then only after the
        // draining flag (set before the channel fires) says it may be ready:
        // each poll of a registered watch waiter takes its lock.
        let mut stop_registered = false;
        let mut stopping = false;
        loop {
            // Outside a transaction (a BEGIN the proxy answered, not yet
            // sent to a shard, holds no backend but is one). `draining` is
            // set before the channel fires; it catches a client whose next
            // message is always ready, so `stop` is never polled.
            stopping = stopping || self.proxy.draining.load(Ordering::Relaxed);
            if stopping && self.lease.is_none() && self.pipe.is_none() && self.tx == b'I' {
                return End::Fatal(
                    SqlError::fatal(
                        sqlstate::ADMIN_SHUTDOWN,
                        "terminating connection due to administrator command",
                    )
                    .with_hint(
                        "shardproxy is shutting down; reconnect to another proxy or retry later.",
                    ),
                );
            }
            let frame = tokio::select! {
                biased;
                r = self.creader.next(&mut self.client) => match r {
                    Ok(Some(f)) => f,
                    Ok(None) => return End::Client,
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        return End::Fatal(SqlError::protocol(format!("invalid message from client: {e}")))
                    }
                    Err(_) => return End::Client,
                },
                _ = std::future::poll_fn(|cx| {
                    if stop_registered && !self.proxy.draining.load(Ordering::Acquire) {
                        return std::task::Poll::Pending;
                    }
                    stop_registered = true;
                    std::future::Future::poll(stop.as_mut(), cx)
                }), if !stopping => {
                    stopping = true;
                    continue;
                }
            };
            if self.standard_strings_off {
                // This message would be read differently by the router and by
                // Postgres: the answer to it is the end of the session.
                return End::Fatal(
                    SqlError::fatal(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "standard_conforming_strings was turned off, which shardproxy's router cannot follow; terminating the session",
                    )
                    .with_hint("Leave standard_conforming_strings on and use E'…' strings for backslash escapes."),
                );
            }
            if self.lease.is_none() && self.pipe.is_none() {
                // Between transactions: a reloaded configuration applies
                // from this message on (a replaced pool only takes back the
                // leases it handed out).
                let generation = self.proxy.generation();
                if generation != self.rt_generation {
                    let current = self.proxy.runtime();
                    if !Arc::ptr_eq(&current.planner, &self.rt.planner) {
                        // New table definitions: nothing planned under the
                        // old ones may route another statement.
                        self.prepared.replan(&current.planner);
                        self.last_plan = Default::default();
                    }
                    self.info.set_session_runtime(current.clone());
                    self.load
                        .set_on(current.config.hot.enabled, &self.proxy.load, &self.rt);
                    self.rt = current;
                    self.rt_generation = generation;
                }
            }
            let r =
                match frame.tag {
                    b'Q' => {
                        // Copied into a buffer the session keeps: splitting
                        // the read buffer would allocate per query.
                        let mut msg = std::mem::take(&mut self.query_buf);
                        msg.clear();
                        msg.extend_from_slice(&self.creader.buf[..frame.len]);
                        self.creader.skip(frame);
                        let r = self.simple_query(&msg).await;
                        if msg.capacity() <= KEPT_QUERY_BUFFER {
                            self.query_buf = msg;
                        }
                        r
                    }
                    t if extended::is_extended(t) => self.extended_message(frame).await,
                    b'X' => return End::Client,
                    // CopyData/CopyDone/CopyFail outside COPY: Postgres ignores them too.
                    b'd' | b'c' | b'f' => {
                        self.creader.skip(frame);
                        Ok(())
                    }
                    b'F' => {
                        self.creader.skip(frame);
                        self.error_and_ready(SqlError::new(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "the fastpath function call protocol is not supported by shardproxy",
                    )
                    .with_hint("Call the function with SELECT instead."))
                    .await
                    }
                    other => {
                        return End::Fatal(SqlError::protocol(format!(
                            "invalid frontend message type {}",
                            if other.is_ascii_graphic() {
                                (other as char).to_string()
                            } else {
                                format!("0x{other:02x}")
                            }
                        )))
                    }
                };
            if let Err(end) = r {
                return end;
            }
        }
    }

    /// Sends an ErrorResponse and ReadyForQuery (for errors the proxy raises
    /// before a statement reaches a backend).
    async fn error_and_ready(&mut self, e: SqlError) -> Result<(), End> {
        if e.fatal {
            return Err(End::Fatal(e));
        }
        e.encode(&mut self.out);
        if self.tx == b'T' {
            // Postgres aborts the transaction on any error inside it; the
            // backend must agree, so fail it there too.
            self.tx = b'E';
            if let Some(lease) = self.lease.as_mut() {
                let sql = extended::raise_sql(e.code, &e.message);
                let _ = lease.backend().execute_silently(&sql).await;
            }
        }
        messages::ready_for_query(&mut self.out, self.tx);
        self.flush_client().await
    }

    async fn flush_client(&mut self) -> Result<(), End> {
        if !self.out.is_empty() {
            self.client.write_all(&self.out).await?;
            self.out.clear();
            // Give back what a large result grew; idle sessions stay small.
            if self.out.capacity() > 256 * 1024 {
                self.out = BytesMut::new();
            }
        }
        Ok(())
    }

    /// Makes sure a backend of `shard` is held and ready for this client's
    /// settings. Within a transaction the held backend's shard must match.
    async fn acquire(&mut self, shard: usize) -> Result<(), SqlError> {
        if self.lease.is_some() {
            if self.lease_shard == shard {
                return Ok(());
            }
            match self.tx {
                // A failed transaction answers "current transaction is aborted" wherever it runs.
                b'E' => return Ok(()),
                b'T' => return Box::pin(self.switch_in_transaction(shard)).await,
                _ => self.sync_and_release().await,
            }
        }
        let Some(pool) = self.rt.pools.get(shard) else {
            return Err(SqlError::new(
                sqlstate::INTERNAL_ERROR,
                format!("no shard with index {shard}"),
            ));
        };
        // Settings first: replayed inside the client's transaction they
        // would be undone by its ROLLBACK while the fingerprint stayed.
        // The replica path is boxed, as the session's other rare paths:
        // inline, its future would size every acquire for it.
        let checkout = if self.replica_read && pool.has_replicas() && self.pending_begin.is_none() {
            Box::pin(pool.checkout_read()).await?
        } else {
            pool.checkout().await?
        };
        let mut lease = self.with_settings(checkout).await?;
        if let Some(begin) = self.pending_begin.take() {
            match lease.backend().execute_silently(&begin).await {
                Ok(Ok(())) => {}
                Ok(Err((code, msg))) => {
                    let name = lease.pool().name.clone();
                    lease.release();
                    return Err(SqlError::new(
                        sqlstate::INTERNAL_ERROR,
                        format!("{begin} failed on shard \"{name}\": {code} {msg}"),
                    ));
                }
                Err(e) => return Err(SqlError::shard_unavailable(&lease.pool().name, e)),
            }
        }
        let server = lease.server();
        let cancel = &lease.backend().cancel;
        self.info
            .set_running_one(shard, server, cancel.pid, cancel.secret);
        self.forget_many_running();
        self.lease = Some(lease);
        self.lease_shard = shard;
        if !self.others.is_empty() {
            // Still part of a transaction on other shards: list them all.
            self.publish_running();
        }
        Ok(())
    }

    /// Makes a freshly checked-out backend's session match this client's
    /// settings (a no-op when its fingerprint already matches).
    async fn with_settings(&self, mut lease: Lease) -> Result<Lease, SqlError> {
        match self.settings.apply_to(lease.backend()).await {
            Ok(Ok(())) => Ok(lease),
            Ok(Err((code, msg))) => {
                let name = lease.pool().name.clone();
                lease.release();
                Err(SqlError::new(
                    sqlstate::INVALID_AUTHORIZATION,
                    format!("cannot apply session settings on shard \"{name}\": {code} {msg}"),
                ))
            }
            Err(e) => Err(SqlError::shard_unavailable(&lease.pool().name, e)),
        }
    }

    /// Ends an extended-protocol batch left open by Flush on the held backend
    /// (Sync, then ReadyForQuery swallowed) and releases it.
    async fn sync_and_release(&mut self) {
        if let Some(mut lease) = self.lease.take() {
            let mut sync = BytesMut::new();
            messages::sync(&mut sync);
            let be = lease.backend();
            let ok = be.send(&sync).await.is_ok()
                && loop {
                    match be.next_frame().await {
                        Ok(f) => {
                            be.reader.skip(f);
                            if f.tag == b'Z' {
                                break true;
                            }
                        }
                        Err(_) => break false,
                    }
                };
            self.lease = Some(lease);
            if ok {
                self.release().await;
            } else {
                self.discard_backend();
            }
        }
    }

    /// Returns the held backend to its pool (after reading back settings the
    /// transaction may have changed). Only called when the backend is idle.
    async fn release(&mut self) {
        let Some(mut lease) = self.lease.take() else {
            return;
        };
        lease
            .pool()
            .stats
            .transactions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.info.clear_running_one();
        self.forget_many_running();
        self.unnamed_on_lease = false;
        if self.settings_dirty {
            self.settings_dirty = false;
            if self.settings.capture_from(lease.backend()).await.is_err() {
                return; // dropping the lease closes the backend
            }
        }
        if std::mem::take(&mut self.prepared_unsure) {
            match lease.backend().execute_silently("DEALLOCATE ALL").await {
                Ok(Ok(())) => lease.backend().prepared.clear(),
                _ => return, // closes the backend
            }
        }
        self.unnamed_on_lease = false;
        lease.release();
    }

    /// Empties the list of backends published for a multi-shard statement
    /// or transaction, if there is one (no lock otherwise).
    fn forget_many_running(&mut self) {
        if std::mem::take(&mut self.many_running) {
            if let Ok(mut r) = self.info.running_on.lock() {
                r.clear();
            }
        }
    }

    /// Drops the held backend without reuse (its state is unknown).
    fn discard_backend(&mut self) {
        self.lease = None;
        self.prepared_unsure = false;
        self.unnamed_on_lease = false;
        self.info.clear_running_one();
        self.forget_many_running();
    }

    /// End of session: a backend left inside a transaction is rolled back and
    /// returned to the pool in the background.
    async fn finish(&mut self) {
        self.load.flush(&self.proxy.load, &self.rt);
        // The backends go back to their pools (after a reset) while this
        // client may still be registered: no cancel may reach them now.
        self.info.clear_running_one();
        self.forget_many_running();
        for p in std::mem::take(&mut self.others) {
            tokio::spawn(reset_and_release(p.lease));
        }
        if let Some(pipe) = self.pipe.take() {
            self.abandon_pipe(*pipe);
        }
        if let Some(lease) = self.lease.take() {
            if self.prepared_unsure {
                // Its statements are unknown: close it rather than reuse it.
                drop(lease);
            } else {
                // Held with status 'I' means an extended-protocol pipeline
                // ended by Flush, not Sync: its implicit transaction is
                // still open and must be rolled back like an explicit one
                // (ROLLBACK only warns when nothing is open).
                tokio::spawn(reset_and_release(lease));
            }
        }
        let _ = self.client.shutdown().await;
    }
}

/// Returns a backend a departed client left behind to its pool once it is
/// idle again (closes it if that fails or takes too long).
async fn reset_and_release(mut lease: Lease) {
    let clean = tokio::time::timeout(Duration::from_secs(10), lease.backend().reset()).await;
    if matches!(clean, Ok(Ok(true))) {
        lease.release();
    }
}
