//! Runs a distributed plan on the shards' backends and streams the merged
//! result to the client.
//!
//! 1. The statement as the client wrote it is described on shard 0 (its
//!    exact RowDescription and parameter types; an invalid statement gets
//!    Postgres's own error). With parameters, or a select list whose width
//!    is unknown (`*`), this is a round trip of its own; otherwise it rides
//!    in front of the shard query on shard 0.
//! 2. Every shard gets the shard query (shard 0 the collation probe first),
//!    sent before any answer is read so they work in parallel.
//! 3. Rows are merged as they arrive: a k-way merge reads a shard only when
//!    its row is the next one out, and the client's socket is written as
//!    the output fills, so a slow client slows the reads from the shards
//!    (backpressure) and memory stays at a few rows per shard. Groups are
//!    read whole, then sorted and sent.
//! 4. At the LIMIT, or on a shard's error, the other shards' statements are
//!    cancelled (outside a transaction; inside one their rows are read and
//!    dropped, so the transaction stays valid) and their backends read up
//!    to ReadyForQuery, ready for the pool. The client gets one error.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::BytesMut;

use super::datarow::{columns, fields, with_formats, Cols};
use super::group::GroupMerge;
use super::layout::{Layout, Probe};
use super::request::{self, ClientParams};
use super::row_merge::{RowMerge, Step};
use super::types::oid;
use super::value::EvalError;
use crate::data::codec::frame::Frame;
use crate::data::codec::SqlError;
use crate::data::planner::dist::{DistPlan, Shape};
use crate::data::pool::{cancel_fence, Backend, Lease, ShardPool};

/// Output is written to the client whenever this much is buffered.
const FLUSH_AT: usize = 64 * 1024;
/// A shard limited to at most this many rows is drained at the LIMIT
/// instead of cancelled (reading them is cheaper than a cancel).
const DRAIN_BELOW: i64 = 1000;

/// One execution of a distributed plan.
pub struct Request<'a> {
    pub plan: &'a DistPlan,
    /// The statement as the client sent it (described on shard 0).
    pub sql: &'a str,
    /// The client's declared parameter types (0: unspecified).
    pub param_types: Vec<u32>,
    pub params: ClientParams<'a>,
    /// The client's result format codes (none: all text).
    pub result_formats: &'a [i16],
    pub memory_limit: usize,
    pub in_transaction: bool,
}

impl Request<'_> {
    fn client_format(&self, i: usize) -> i16 {
        match self.result_formats.len() {
            0 => 0,
            1 => self.result_formats[0],
            _ => self.result_formats.get(i).copied().unwrap_or(0),
        }
    }
}

/// The statement's shape, for the client's Describe replies.
pub struct Described {
    /// ParameterDescription.
    pub params: BytesMut,
    /// RowDescription as a statement Describe gives it (text formats).
    pub statement: BytesMut,
    /// RowDescription with the client's result formats (a portal Describe).
    pub portal: BytesMut,
}

/// Where the merged rows go.
#[allow(async_fn_in_trait)]
pub trait Client {
    fn out(&mut self) -> &mut BytesMut;
    /// Writes `out` to the client's socket.
    async fn flush(&mut self) -> std::io::Result<()>;
    /// The statement is described and rows follow: the session writes the
    /// replies owed before them (ParseComplete, BindComplete, RowDescription).
    fn described(&mut self, d: &Described);
    /// A shard's ParameterStatus.
    fn parameter_status(&mut self, body: &[u8]);
}

/// How an execution ended.
#[derive(Debug)]
pub enum Outcome {
    Done {
        rows: u64,
    },
    /// An ErrorResponse for the client; every shard is idle again.
    Failed(BytesMut),
    /// Shard `n`'s connection failed (every backend is to be dropped).
    Lost(usize, std::io::Error),
    /// The client went away.
    ClientGone,
}

enum Fail {
    Client(BytesMut),
    Lost(usize, std::io::Error),
    ClientGone,
}

fn sql_error(e: EvalError) -> Fail {
    let mut b = BytesMut::new();
    let mut err = SqlError::new(e.code, e.message);
    if e.code == "0A000" {
        err = err.with_hint(
            "Add the shard key to WHERE (or a /* shard_key=… */ hint) to run the query on one shard.",
        );
    }
    err.encode(&mut b);
    Fail::Client(b)
}

impl From<EvalError> for Fail {
    fn from(e: EvalError) -> Fail {
        sql_error(e)
    }
}

struct Exec<'a, 'r, C: Client> {
    client: &'a mut C,
    bes: Vec<&'a mut Backend>,
    pools: Vec<Arc<ShardPool>>,
    /// Shards that still owe replies up to ReadyForQuery.
    pending: Vec<bool>,
    req: &'a Request<'r>,
}

/// Runs `req` on `shards` (shard 0 describes) and streams the result.
pub async fn run<C: Client>(client: &mut C, shards: Vec<&mut Lease>, req: &Request<'_>) -> Outcome {
    let pools = shards.iter().map(|l| l.pool().clone()).collect();
    let bes: Vec<&mut Backend> = shards.into_iter().map(|l| l.backend()).collect();
    let n = bes.len();
    let mut x = Exec {
        client,
        bes,
        pools,
        pending: vec![false; n],
        req,
    };
    match x.run().await {
        Ok(rows) => Outcome::Done { rows },
        Err(Fail::Lost(i, e)) => Outcome::Lost(i, e),
        Err(Fail::ClientGone) => Outcome::ClientGone,
        Err(Fail::Client(e)) => {
            let cancel = !req.in_transaction;
            match x.drain_all(cancel).await {
                Ok(()) => Outcome::Failed(e),
                Err(Fail::Lost(i, err)) => Outcome::Lost(i, err),
                Err(_) => Outcome::Failed(e),
            }
        }
    }
}

/// A ParameterDescription's type OIDs.
fn param_oids(frame: &[u8]) -> Vec<u32> {
    let n = frame
        .get(5..7)
        .map(|b| i16::from_be_bytes([b[0], b[1]]).max(0) as usize)
        .unwrap_or(0);
    (0..n)
        .filter_map(|i| frame.get(7 + 4 * i..11 + 4 * i))
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

impl<C: Client> Exec<'_, '_, C> {
    async fn run(&mut self) -> Result<u64, Fail> {
        let req = self.req;
        let plan = req.plan;
        let n = self.bes.len();
        // 1. The statement's own description.
        let known_width = if plan.visible_prefix {
            plan.visible
        } else {
            Some(0)
        };
        let two_step = plan.params > 0 || known_width.is_none() || !plan.alias_checks.is_empty();
        let mut described: Option<(BytesMut, BytesMut)> = None;
        if two_step {
            let mut b = BytesMut::new();
            request::parse(&mut b, req.sql, &req.param_types);
            request::describe_statement(&mut b);
            request::sync(&mut b);
            self.send(0, &b).await?;
            self.pending[0] = true;
            described = Some(self.read_description(0).await?);
            self.expect(0, b'Z').await?;
            self.skip(0, b'Z');
            for (name, sql) in &plan.alias_checks {
                if self.parses(0, sql).await? {
                    return Err(sql_error(EvalError::unsupported(format!(
                        "GROUP BY \"{name}\" names both an output column and a column of the tables, which Postgres groups by; shardproxy took it for the output column"
                    ))));
                }
            }
        }
        let mut param_types: Vec<u32> = match &described {
            Some((t, _)) => param_oids(t),
            None => Vec::new(),
        };
        if plan.shard_limit_param.is_some() {
            param_types.push(oid::INT8);
        }
        let visible = match (&described, known_width) {
            (Some((_, rd)), _) if plan.visible_prefix => fields(rd).map_err(malformed)?.len(),
            (_, Some(w)) => w,
            _ => 0,
        };
        let layout_guess = Layout::new(plan, visible);
        let formats = layout_guess.formats(plan, |i| req.client_format(i));
        // LIMIT/OFFSET of this execution, and the shards' LIMIT parameter.
        let limit = request::count(plan.limit, &req.params, &param_types, "LIMIT")?;
        let offset = request::count(plan.offset, &req.params, &param_types, "OFFSET")?.unwrap_or(0);
        let (ulimit, uoffset) = (limit.map(|l| l as u64), offset as u64);
        let shard_limit = plan.shard_limit_param.map(|_| match limit {
            Some(l) => l.saturating_add(offset).to_string(),
            None => String::new(),
        });
        let extra: Option<&[u8]> = match (&shard_limit, limit) {
            (Some(s), Some(_)) => Some(s.as_bytes()),
            // LIMIT NULL/ALL: a NULL parameter is no limit.
            _ => None,
        };
        // 2. The shard query everywhere (describe and probe first on shard 0).
        for i in 0..n {
            let mut b = BytesMut::new();
            if i == 0 {
                if !two_step {
                    request::parse(&mut b, req.sql, &req.param_types);
                    request::describe_statement(&mut b);
                }
                request::parse(&mut b, &plan.probe_sql, &param_types);
                bind_shard(&mut b, req, plan, extra, &[]);
                request::execute(&mut b);
            }
            request::parse(&mut b, &plan.shard_sql, &param_types);
            bind_shard(&mut b, req, plan, extra, &formats);
            request::describe_portal(&mut b);
            request::execute(&mut b);
            request::sync(&mut b);
            self.send(i, &b).await?;
            self.pending[i] = true;
        }
        // Shard 0: description (if pipelined), probe row, shard query's
        // description; the others: the shard query's description.
        let (params_desc, statement) = match described {
            Some(d) => d,
            None => self.read_description(0).await?,
        };
        let probe = self.read_probe().await?;
        let mut layout = layout_guess;
        let orig_fields = fields(&statement).map_err(malformed)?;
        if plan.visible_prefix && orig_fields.len() != layout.visible {
            return Err(internal(
                "the statement's column count changed between describe and run",
            ));
        }
        for i in 0..n {
            self.expect(i, b'1').await?;
            self.skip(i, b'1');
            self.expect(i, b'2').await?;
            self.skip(i, b'2');
            let f = self.expect(i, b'T').await?;
            let shard_fields = fields(&self.bes[i].reader.buf[..f.len]).map_err(malformed)?;
            self.bes[i].reader.skip(f);
            if shard_fields.len() != layout.width() {
                return Err(internal(
                    "a shard's query returned an unexpected number of columns",
                ));
            }
            for (c, sf) in shard_fields.iter().enumerate() {
                if i == 0 {
                    layout.types[c] = sf.type_oid;
                } else if layout.types[c] != sf.type_oid {
                    return Err(sql_error(EvalError::new(
                        "42804",
                        format!(
                            "shards disagree on the type of a column of this query ({} and {}): their schemas differ",
                            super::types::type_name(layout.types[c]),
                            super::types::type_name(sf.type_oid)
                        ),
                    )));
                }
            }
        }
        // 3. Merge.
        let portal = with_formats(&statement, &orig_fields, |i| req.client_format(i));
        match &plan.shape {
            Shape::Rows { .. } => {
                let rm = RowMerge::new(plan, &layout, &probe, uoffset, ulimit, req.memory_limit)?;
                self.client.described(&Described {
                    params: params_desc,
                    statement,
                    portal,
                });
                self.rows(rm, plan).await
            }
            Shape::Groups(g) => {
                let mut gm =
                    GroupMerge::new(plan, g, &layout, &probe, &orig_fields, req.memory_limit)?;
                for i in 0..n {
                    loop {
                        let f = self.frame(i).await?;
                        match f.tag {
                            b'D' => {
                                let r = gm.add(&self.bes[i].reader.buf[..f.len]);
                                self.bes[i].reader.skip(f);
                                r?;
                            }
                            b'C' => {
                                self.bes[i].reader.skip(f);
                                self.expect(i, b'Z').await?;
                                self.skip(i, b'Z');
                                break;
                            }
                            _ => return Err(self.unexpected(i, f)),
                        }
                    }
                }
                self.client.described(&Described {
                    params: params_desc,
                    statement,
                    portal,
                });
                let binary = |i: usize| req.client_format(i) == 1;
                let rows = gm.finish(&orig_fields, &binary, uoffset, ulimit, self.client.out())?;
                self.flush().await?;
                Ok(rows)
            }
        }
    }

    /// The k-way merge (or concatenation) of the shards' rows.
    async fn rows(&mut self, mut rm: RowMerge, plan: &DistPlan) -> Result<u64, Fail> {
        let n = self.bes.len();
        let mut heads: Vec<Option<(Frame, Cols)>> = Vec::with_capacity(n);
        let mut full = rm.full();
        if rm.ordered() && !full {
            for i in 0..n {
                heads.push(self.next_row(i).await?);
            }
            loop {
                let mut best: Option<usize> = None;
                for i in 0..n {
                    let Some((f, cols)) = &heads[i] else { continue };
                    best = match best {
                        None => Some(i),
                        Some(b) => {
                            let (bf, bc) = heads[b].as_ref().expect("best has a head");
                            let o = rm.cmp(
                                &self.bes[i].reader.buf[..f.len],
                                cols,
                                &self.bes[b].reader.buf[..bf.len],
                                bc,
                            )?;
                            // Ties keep the lower shard: any order of equal rows is right.
                            if o == std::cmp::Ordering::Less {
                                Some(i)
                            } else {
                                Some(b)
                            }
                        }
                    };
                }
                let Some(b) = best else { break };
                let (f, cols) = heads[b].take().expect("best has a head");
                let step = rm.take(&self.bes[b].reader.buf[..f.len], &cols, self.client.out())?;
                self.bes[b].reader.skip(f);
                self.maybe_flush().await?;
                if step == Step::Full {
                    full = true;
                    break;
                }
                heads[b] = self.next_row(b).await?;
            }
        } else if !full {
            'shards: for i in 0..n {
                while let Some((f, cols)) = self.next_row(i).await? {
                    let step =
                        rm.take(&self.bes[i].reader.buf[..f.len], &cols, self.client.out())?;
                    self.bes[i].reader.skip(f);
                    self.maybe_flush().await?;
                    if step == Step::Full {
                        full = true;
                        break 'shards;
                    }
                }
            }
        }
        if full {
            // Rows a shard still owes are not needed.
            let bounded = matches!(plan.limit, Some(crate::data::planner::dist::Count::Value(l)) if l < DRAIN_BELOW)
                && plan.offset.is_none();
            self.drain_all(!self.req.in_transaction && !bounded).await?;
        }
        self.flush().await?;
        Ok(rm.emitted)
    }

    /// The next DataRow of shard `i` (left in its buffer), or None after
    /// its CommandComplete (ReadyForQuery read too).
    async fn next_row(&mut self, i: usize) -> Result<Option<(Frame, Cols)>, Fail> {
        let f = self.frame(i).await?;
        match f.tag {
            b'D' => {
                let mut cols = Cols::new();
                columns(&self.bes[i].reader.buf[..f.len], &mut cols).map_err(malformed)?;
                Ok(Some((f, cols)))
            }
            b'C' => {
                self.bes[i].reader.skip(f);
                self.expect(i, b'Z').await?;
                self.skip(i, b'Z');
                Ok(None)
            }
            _ => Err(self.unexpected(i, f)),
        }
    }

    /// The statement's ParameterDescription and RowDescription, from
    /// shard 0 (ParseComplete first).
    async fn read_description(&mut self, i: usize) -> Result<(BytesMut, BytesMut), Fail> {
        self.expect(i, b'1').await?;
        self.skip(i, b'1');
        let f = self.expect(i, b't').await?;
        let params = BytesMut::from(&self.bes[i].reader.buf[..f.len]);
        self.bes[i].reader.skip(f);
        let f = self.frame(i).await?;
        match f.tag {
            b'T' => {
                let rd = BytesMut::from(&self.bes[i].reader.buf[..f.len]);
                self.bes[i].reader.skip(f);
                Ok((params, rd))
            }
            b'n' => Err(internal("the statement returns no rows")),
            _ => Err(self.unexpected(i, f)),
        }
    }

    /// Whether `sql` parses on shard `i` (Parse and Sync only).
    async fn parses(&mut self, i: usize, sql: &str) -> Result<bool, Fail> {
        let mut b = BytesMut::new();
        request::parse(&mut b, sql, &[]);
        request::sync(&mut b);
        self.send(i, &b).await?;
        let mut ok = true;
        loop {
            let f = self.bes[i]
                .next_frame()
                .await
                .map_err(|e| Fail::Lost(i, e))?;
            let tag = f.tag;
            if tag == b'E' {
                let (code, _) =
                    crate::data::codec::error::parse_error_fields(f.body(&self.bes[i].reader.buf));
                // Undefined column: the name is no input column.
                ok = code != "42703";
            }
            self.bes[i].reader.skip(f);
            if tag == b'Z' {
                return Ok(ok);
            }
        }
    }

    /// The probe's one row on shard 0.
    async fn read_probe(&mut self) -> Result<Probe, Fail> {
        self.expect(0, b'1').await?;
        self.skip(0, b'1');
        self.expect(0, b'2').await?;
        self.skip(0, b'2');
        let f = self.expect(0, b'D').await?;
        let mut cols = Cols::new();
        let buf = &self.bes[0].reader.buf[..f.len];
        columns(buf, &mut cols).map_err(malformed)?;
        let values: Vec<Option<&[u8]>> = (0..cols.len())
            .map(|c| super::datarow::value(buf, &cols, c))
            .collect();
        let probe = Probe::parse(&values)
            .ok_or_else(|| internal("the collation probe's answer does not parse"))?;
        self.bes[0].reader.skip(f);
        self.expect(0, b'C').await?;
        self.skip(0, b'C');
        Ok(probe)
    }

    /// The next frame of shard `i` that is not a notice or ParameterStatus
    /// (notices go to the client; an ErrorResponse is the statement's).
    async fn frame(&mut self, i: usize) -> Result<Frame, Fail> {
        loop {
            let f = self.bes[i]
                .next_frame()
                .await
                .map_err(|e| Fail::Lost(i, e))?;
            match f.tag {
                b'N' => {
                    let bytes = &self.bes[i].reader.buf[..f.len];
                    self.client.out().extend_from_slice(bytes);
                    self.bes[i].reader.skip(f);
                }
                b'S' => {
                    self.client
                        .parameter_status(f.body(&self.bes[i].reader.buf));
                    self.bes[i].reader.skip(f);
                }
                b'E' => {
                    let e = BytesMut::from(&self.bes[i].reader.buf[..f.len]);
                    self.bes[i].reader.skip(f);
                    self.pools[i].stats.errors.fetch_add(1, Relaxed);
                    self.finish_shard(i).await?;
                    return Err(Fail::Client(e));
                }
                _ => return Ok(f),
            }
        }
    }

    async fn expect(&mut self, i: usize, tag: u8) -> Result<Frame, Fail> {
        let f = self.frame(i).await?;
        if f.tag != tag {
            return Err(self.unexpected(i, f));
        }
        Ok(f)
    }

    /// Drops the frame at the front of shard `i`'s buffer (just checked to
    /// be `tag`); ReadyForQuery ends what the shard owes.
    fn skip(&mut self, i: usize, tag: u8) {
        if let Ok(Some(f)) = self.bes[i].reader.peek() {
            self.bes[i].reader.skip(f);
        }
        if tag == b'Z' {
            self.pending[i] = false;
        }
    }

    fn unexpected(&mut self, i: usize, f: Frame) -> Fail {
        let tag = f.tag;
        self.bes[i].reader.skip(f);
        internal(&format!(
            "unexpected message '{}' from shard \"{}\" during a merged read",
            tag as char, self.pools[i].name
        ))
    }

    /// Reads shard `i` up to its ReadyForQuery, dropping what comes.
    async fn finish_shard(&mut self, i: usize) -> Result<(), Fail> {
        while self.pending[i] {
            let f = self.bes[i]
                .next_frame()
                .await
                .map_err(|e| Fail::Lost(i, e))?;
            let tag = f.tag;
            if tag == b'S' {
                self.client
                    .parameter_status(f.body(&self.bes[i].reader.buf));
            }
            self.bes[i].reader.skip(f);
            if tag == b'Z' {
                self.pending[i] = false;
            }
        }
        Ok(())
    }

    /// Stops every shard still answering (a CancelRequest each when
    /// `cancel`) and reads them up to ReadyForQuery.
    async fn drain_all(&mut self, cancel: bool) -> Result<(), Fail> {
        if cancel {
            for i in 0..self.bes.len() {
                if self.pending[i] {
                    self.cancel(i);
                }
            }
        }
        for i in 0..self.bes.len() {
            self.finish_shard(i).await?;
        }
        Ok(())
    }

    /// Sends a CancelRequest for shard `i`'s statement in the background;
    /// the backend's next statement waits until Postgres has acted on it
    /// (see `pool::cancel_fence`).
    fn cancel(&mut self, i: usize) {
        let pool = &self.pools[i];
        let target = self.bes[i].cancel.clone();
        let fenced = cancel_fence::raise(&pool.cancels, target.pid, target.secret);
        let limit = pool.settings.connect_timeout;
        tokio::spawn(async move {
            match target.cancel(limit).await {
                Ok(()) => drop(fenced),
                Err(e) if e.sent => fenced.doom(),
                Err(_) => drop(fenced),
            }
        });
    }

    async fn send(&mut self, i: usize, bytes: &[u8]) -> Result<(), Fail> {
        self.bes[i]
            .send(bytes)
            .await
            .map_err(|e| Fail::Lost(i, e))?;
        let stats = &self.pools[i].stats;
        stats.queries.fetch_add(1, Relaxed);
        stats.bytes_sent.fetch_add(bytes.len() as u64, Relaxed);
        Ok(())
    }

    async fn maybe_flush(&mut self) -> Result<(), Fail> {
        if self.client.out().len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Fail> {
        self.client.flush().await.map_err(|_| Fail::ClientGone)
    }
}

fn bind_shard(
    b: &mut BytesMut,
    req: &Request<'_>,
    plan: &DistPlan,
    extra: Option<&[u8]>,
    formats: &[i16],
) {
    // The shard limit parameter is bound even when NULL (no limit), so
    // the statement's parameter count always matches.
    let null_limit: Option<&[u8]> = None;
    match (plan.shard_limit_param, extra) {
        (Some(_), Some(v)) => request::bind(b, &req.params, Some(v), formats),
        (Some(_), None) => bind_with_null(b, &req.params, formats),
        (None, _) => request::bind(b, &req.params, null_limit, formats),
    }
}

fn bind_with_null(b: &mut BytesMut, params: &ClientParams<'_>, formats: &[i16]) {
    let mut p = params.clone();
    let n = p.values.len();
    let fmts: Vec<i16> = (0..n).map(|i| params.format(i)).chain([0]).collect();
    p.values.push(None);
    p.formats = fmts;
    request::bind(b, &p, None, formats);
}

fn malformed(_: super::compare::Malformed) -> Fail {
    internal("a shard sent a malformed message during a merged read")
}

fn internal(m: &str) -> Fail {
    sql_error(EvalError::new("XX000", m.to_string()))
}
