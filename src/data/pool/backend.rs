//! One connection to a shard: connect, authenticate as the URL's user, then
//! read frames for the session to relay.

use super::cancel_fence::CancelFence;
use super::endpoint::Endpoint;
use super::stream::BackendStream;
use crate::data::codec::error::parse_error_fields;
use crate::data::codec::{messages, Frame, FrameReader, SqlError};
use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest message accepted from a backend (Postgres' own limit is 1 GiB).
const MAX_BACKEND_MESSAGE: usize = 1 << 30;

/// Where to send a CancelRequest for the query a backend is running.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    /// The backend's server; the cancel connection negotiates TLS as the
    /// backend's did (what libpq 17's cancel functions do).
    pub endpoint: Arc<Endpoint>,
    pub pid: i32,
    pub secret: i32,
}

impl CancelTarget {
    /// Sends the CancelRequest on a new connection (as Postgres requires)
    /// and waits for the server to close that connection: by then Postgres
    /// has signalled the backend (see [`super::cancel_fence`]). Gives up
    /// after `limit`.
    pub async fn cancel(&self, limit: Duration) -> Result<(), CancelFailed> {
        let mut buf = BytesMut::new();
        frontend::cancel_request(self.pid, self.secret, &mut buf);
        let mut sent = false;
        let exchange = async {
            let mut s = self.endpoint.open().await?;
            s.write_all(&buf).await?;
            s.flush().await?;
            sent = true;
            // The server answers nothing; it closes the connection when
            // done. A reset counts too: the server's side is gone, so its
            // signals are sent.
            let mut sink = [0u8; 64];
            while let Ok(1..) = s.read(&mut sink).await {}
            Ok(())
        };
        let r = match tokio::time::timeout(limit, exchange).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the server did not finish the cancel within {limit:?}"),
            )),
        };
        r.map_err(|error| CancelFailed { sent, error })
    }
}

/// A cancel that failed; `sent` if the request went out (the server may
/// still act on it).
#[derive(Debug)]
pub struct CancelFailed {
    pub sent: bool,
    pub error: std::io::Error,
}

/// Whether a ParameterStatus body (`name\0value\0`) reports
/// standard_conforming_strings off. Postgres reports it whenever it changes,
/// so this catches a client that turned it off by a route the planner cannot
/// see (an UPDATE of pg_settings, a function calling set_config).
pub fn reports_standard_strings_off(body: &[u8]) -> bool {
    let mut parts = body.split(|&b| b == 0);
    matches!((parts.next(), parts.next()), (Some(name), Some(value))
        if name.eq_ignore_ascii_case(b"standard_conforming_strings") && value != b"on")
}

/// An authenticated connection to one shard.
#[derive(Debug)]
pub struct Backend {
    pub stream: BackendStream,
    pub reader: FrameReader,
    /// Shared so a session can publish it for CancelRequests without copying.
    pub cancel: std::sync::Arc<CancelTarget>,
    /// Its pool's cancels in flight: every statement sent waits out this
    /// backend's (see [`super::cancel_fence`]).
    fence: std::sync::Arc<CancelFence>,
    /// ParameterStatus values the server reported at startup.
    pub server_params: Vec<(String, String)>,
    /// Names of the statements prepared on this connection (see session::prepared).
    pub prepared: HashSet<u64>,
    /// Fingerprint of the session settings (SET) applied to this connection.
    pub settings_fingerprint: u64,
    /// The server reported standard_conforming_strings = off (see
    /// [`reports_standard_strings_off`]): never returned to the pool.
    pub standard_strings_off: bool,
    pub created: Instant,
    /// When the pool's reaper first saw it idle (None while in use or
    /// returned since the reaper's last round).
    pub idle_since: Option<Instant>,
}

impl Backend {
    /// Connects and authenticates, with `timeout` for the whole handshake.
    /// `fence` is the pool's (see [`super::cancel_fence`]).
    pub async fn connect(
        endpoint: &Arc<Endpoint>,
        shard: &str,
        timeout: Duration,
        fence: std::sync::Arc<CancelFence>,
    ) -> Result<Backend, SqlError> {
        let addr = &endpoint.addr;
        match tokio::time::timeout(timeout, Backend::connect_inner(endpoint, shard, fence)).await {
            Ok(r) => r,
            Err(_) => Err(SqlError::shard_unavailable(
                shard,
                format!(
                    "connecting to {} timed out after {:?}",
                    addr.display(),
                    timeout
                ),
            )),
        }
    }

    async fn connect_inner(
        endpoint: &Arc<Endpoint>,
        shard: &str,
        fence: std::sync::Arc<CancelFence>,
    ) -> Result<Backend, SqlError> {
        let addr = &endpoint.addr;
        let unavailable = |e: &dyn std::fmt::Display| {
            SqlError::shard_unavailable(shard, format!("{}: {e}", addr.display()))
        };
        let stream = endpoint.open().await.map_err(|e| unavailable(&e))?;
        let mut be = Backend {
            stream,
            reader: FrameReader::new(MAX_BACKEND_MESSAGE),
            cancel: std::sync::Arc::new(CancelTarget {
                endpoint: endpoint.clone(),
                pid: 0,
                secret: 0,
            }),
            fence,
            server_params: Vec::new(),
            prepared: HashSet::new(),
            settings_fingerprint: 0,
            standard_strings_off: false,
            created: Instant::now(),
            idle_since: None,
        };
        let mut params: Vec<(&str, &str)> = vec![
            ("user", addr.user.as_str()),
            ("database", addr.database.as_str()),
            ("client_encoding", "UTF8"),
            // Over any role or database default: the router reads SQL with
            // it on (planner/standard_strings.rs).
            ("standard_conforming_strings", "on"),
        ];
        for (k, v) in &addr.params {
            params.push((k.as_str(), v.as_str()));
        }
        let mut buf = BytesMut::new();
        frontend::startup_message(params.iter().copied(), &mut buf).map_err(|e| unavailable(&e))?;
        be.send(&buf).await.map_err(|e| unavailable(&e))?;
        let mut scram: Option<ScramSha256> = None;
        loop {
            let f = be.next_frame().await.map_err(|e| unavailable(&e))?;
            let body = f.body(&be.reader.buf).to_vec();
            be.reader.skip(f);
            match f.tag {
                b'R' => {
                    let code = read_i32(&body, 0);
                    let mut out = BytesMut::new();
                    let password = || {
                        addr.password.clone().ok_or_else(|| {
                            SqlError::shard_unavailable(
                                shard,
                                format!(
                                    "{} asks for a password but the shard URL has none",
                                    addr.display()
                                ),
                            )
                        })
                    };
                    match code {
                        0 => {}
                        3 => {
                            frontend::password_message(password()?.as_bytes(), &mut out)
                                .map_err(|e| unavailable(&e))?;
                        }
                        5 => {
                            let salt: [u8; 4] = body
                                .get(4..8)
                                .and_then(|s| s.try_into().ok())
                                .ok_or_else(|| unavailable(&"malformed md5 request"))?;
                            let hash = postgres_protocol::authentication::md5_hash(
                                addr.user.as_bytes(),
                                password()?.as_bytes(),
                                salt,
                            );
                            frontend::password_message(hash.as_bytes(), &mut out)
                                .map_err(|e| unavailable(&e))?;
                        }
                        10 => {
                            let s = ScramSha256::new(
                                password()?.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut out)
                                .map_err(|e| unavailable(&e))?;
                            scram = Some(s);
                        }
                        11 | 12 => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| unavailable(&"unexpected SASL message"))?;
                            if code == 11 {
                                s.update(body.get(4..).unwrap_or(&[]))
                                    .map_err(|e| unavailable(&e))?;
                                frontend::sasl_response(s.message(), &mut out)
                                    .map_err(|e| unavailable(&e))?;
                            } else {
                                s.finish(body.get(4..).unwrap_or(&[]))
                                    .map_err(|e| unavailable(&e))?;
                            }
                        }
                        other => {
                            return Err(unavailable(&format!(
                                "unsupported authentication method {other}"
                            )))
                        }
                    }
                    if !out.is_empty() {
                        be.send(&out).await.map_err(|e| unavailable(&e))?;
                    }
                }
                b'S' => {
                    let mut parts = body.split(|&b| b == 0);
                    let k = String::from_utf8_lossy(parts.next().unwrap_or(&[])).into_owned();
                    let v = String::from_utf8_lossy(parts.next().unwrap_or(&[])).into_owned();
                    be.server_params.push((k, v));
                }
                b'K' if body.len() >= 8 => {
                    be.cancel = std::sync::Arc::new(CancelTarget {
                        endpoint: endpoint.clone(),
                        pid: read_i32(&body, 0),
                        secret: read_i32(&body, 4),
                    });
                }
                b'E' => {
                    let (_, msg) = parse_error_fields(&body);
                    return Err(unavailable(&msg));
                }
                b'Z' => return Ok(be),
                _ => {}
            }
        }
    }

    /// False when the server closed the socket while the backend sat idle
    /// (restart, idle timeout): checked without blocking before reuse.
    pub fn is_alive(&self) -> bool {
        let mut b = [0u8; 1];
        let r = self.stream.try_read_raw(&mut b);
        matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Writes bytes to the backend, once no cancel is in flight for it.
    #[inline]
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        // A late signal of a cancel in flight must not reach the statement
        // sent next; a backend whose cancel was never confirmed sends
        // nothing more.
        if self.fence.is_raised() && !self.cancel_settled().await {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the server never confirmed a cancel of this connection; it is closed",
            ));
        }
        self.stream.write_all(bytes).await?;
        if let BackendStream::Tls(s) = &mut self.stream {
            // rustls may hold the last records when the socket was full:
            // they must go before we wait for the answer.
            s.flush().await?;
        }
        Ok(())
    }

    /// Whether a cancel of this backend was sent but never confirmed done
    /// (then it is closed, not reused).
    pub fn is_doomed(&self) -> bool {
        self.fence.is_raised() && self.fence.is_doomed(self.cancel.pid, self.cancel.secret)
    }

    /// Waits out a cancel in flight for this backend; false if it is
    /// doomed (to be closed).
    pub async fn cancel_settled(&self) -> bool {
        !self.fence.is_raised()
            || self
                .fence
                .settle(self.cancel.pid, self.cancel.secret)
                .await
                .is_ok()
    }

    /// Whether a statement sent now would go at once (no cancel of this
    /// backend in flight).
    pub fn is_unfenced(&self) -> bool {
        !self.fence.is_raised() || self.fence.is_clear(self.cancel.pid, self.cancel.secret)
    }

    /// Reads until a whole frame is buffered; EOF is an error (the server went away).
    #[inline]
    pub async fn next_frame(&mut self) -> std::io::Result<Frame> {
        match self.reader.next(&mut self.stream).await? {
            Some(f) => Ok(f),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "server closed the connection",
            )),
        }
    }

    /// Runs a simple query for the proxy's own bookkeeping and returns its
    /// rows as text (errors are returned as io errors: this SQL is ours).
    pub async fn query_rows(&mut self, sql: &str) -> std::io::Result<Vec<Vec<Option<String>>>> {
        let mut out = BytesMut::new();
        messages::query(&mut out, sql);
        self.send(&out).await?;
        let mut rows = Vec::new();
        let mut err = None;
        loop {
            let f = self.next_frame().await?;
            match f.tag {
                b'D' => rows.push(data_row_values(f.body(&self.reader.buf))),
                b'E' => err = Some(parse_error_fields(f.body(&self.reader.buf)).1),
                b'Z' => {
                    self.reader.skip(f);
                    return match err {
                        Some(e) => Err(std::io::Error::other(e)),
                        None => Ok(rows),
                    };
                }
                _ => {}
            }
            self.reader.skip(f);
        }
    }

    /// Brings a backend a client left in any state back to idle, never
    /// committing what the client did not: a Bind of a statement that cannot
    /// exist raises an error (aborting an open pipeline's implicit
    /// transaction; skipped if the pipeline already failed), Sync ends the
    /// pipeline, and ROLLBACK ends an explicit transaction. True when the
    /// backend then reports idle.
    pub async fn reset(&mut self) -> std::io::Result<bool> {
        let mut out = BytesMut::new();
        // Bind: portal "", the statement name, no formats, params or results.
        let name: &[u8] = b"shardproxy_reset_no_such_statement\0";
        out.extend_from_slice(b"B");
        out.extend_from_slice(&((4 + 1 + name.len() + 6) as i32).to_be_bytes());
        out.extend_from_slice(&[0]);
        out.extend_from_slice(name);
        out.extend_from_slice(&[0; 6]);
        messages::sync(&mut out);
        messages::query(&mut out, "ROLLBACK");
        self.send(&out).await?;
        let mut ready = 0;
        loop {
            let f = self.next_frame().await?;
            let status = f.body(&self.reader.buf).first().copied();
            self.reader.skip(f);
            if f.tag == b'Z' {
                ready += 1;
                if ready == 2 {
                    return Ok(status == Some(b'I'));
                }
            }
        }
    }

    /// Runs `sql` as a simple query, discarding its results, and returns the
    /// first error (for the proxy's own housekeeping: ROLLBACK, SET replay).
    pub async fn execute_silently(
        &mut self,
        sql: &str,
    ) -> Result<Result<(), (String, String)>, std::io::Error> {
        let mut out = BytesMut::new();
        messages::query(&mut out, sql);
        self.send(&out).await?;
        let mut err = None;
        // Postgres answers COMMIT and PREPARE TRANSACTION of a transaction
        // that had failed with the tag ROLLBACK and no error: for the proxy
        // that is a failed commit.
        // (COMMIT PREPARED answers with its own tag.)
        let starts = |p: &str| {
            sql.get(..p.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(p))
        };
        let committing = starts("COMMIT") || starts("PREPARE TRANSACTION");
        loop {
            let f = self.next_frame().await?;
            match f.tag {
                b'E' if err.is_none() => err = Some(parse_error_fields(f.body(&self.reader.buf))),
                b'C' if committing
                    && err.is_none()
                    && f.body(&self.reader.buf) == b"ROLLBACK\0" =>
                {
                    err = Some((
                        "40000".to_string(),
                        "the transaction had failed on this shard and was rolled back".to_string(),
                    ));
                }
                b'Z' => {
                    self.reader.skip(f);
                    return Ok(match err {
                        Some(e) => Err(e),
                        None => Ok(()),
                    });
                }
                // COPY started by housekeeping SQL can't happen; refuse politely if it does.
                b'G' => {
                    let mut fail = BytesMut::new();
                    frontend::copy_fail("shardproxy housekeeping", &mut fail).ok();
                    self.reader.skip(f);
                    self.send(&fail).await?;
                    continue;
                }
                _ => {}
            }
            self.reader.skip(f);
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if self.fence.is_raised() {
            self.fence.forget(self.cancel.pid, self.cancel.secret);
        }
    }
}

/// Splits a DataRow body into text values.
fn data_row_values(body: &[u8]) -> Vec<Option<String>> {
    let n = i16::from_be_bytes([
        body.first().copied().unwrap_or(0),
        body.get(1).copied().unwrap_or(0),
    ])
    .max(0);
    let mut at = 2;
    let mut row = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let len = read_i32(body, at);
        at += 4;
        if len < 0 {
            row.push(None);
        } else {
            let v = body.get(at..at + len as usize).unwrap_or(&[]);
            row.push(Some(String::from_utf8_lossy(v).into_owned()));
            at += len as usize;
        }
    }
    row
}

fn read_i32(b: &[u8], at: usize) -> i32 {
    // Out-of-range reads give -1 (NULL / unknown) rather than panicking on a short message.
    match b.get(at..at + 4) {
        Some(v) => i32::from_be_bytes([v[0], v[1], v[2], v[3]]),
        None => -1,
    }
}
