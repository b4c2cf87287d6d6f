//! The proxy under test, run in-process: start it on a free port in front of
//! given shards (config written as TOML text, exactly what an operator would
//! write), plus a raw wire-protocol client for tests that must send bytes no
//! well-behaved driver would (truncated frames, bad lengths, stalled startups).

use bytes::{Buf, BufMut, BytesMut};
use shardproxy::config::Config;
use shardproxy::control::cluster::free_port;
use shardproxy::data::codec::error::parse_error_fields;
use shardproxy::runtime::Proxy;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The application user every test proxy knows.
pub const USER: &str = "app";
pub const PASSWORD: &str = "app-secret";

/// A proxy serving on a local port until the test's runtime ends.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    pub serve: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestProxy {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `postgres://app:app-secret@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_as(USER, PASSWORD)
    }

    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/postgres",
            self.port()
        )
    }

    /// A tokio-postgres / libpq key-value connection string.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname=postgres",
            self.port()
        )
    }

    /// Backends of shard `i` currently handed out.
    pub fn in_use(&self, i: usize) -> usize {
        self.proxy.runtime().pools[i].in_use()
    }

    /// Waits (up to 5 s) until no backend of shard `i` is handed out.
    pub async fn wait_pool_idle(&self, i: usize) {
        for _ in 0..250 {
            if self.in_use(i) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "shard {i}: {} backends still in use after 5 s",
            self.in_use(i)
        );
    }
}

/// Config TOML for a proxy on `listen` in front of `shards` (name, url).
/// `root` holds dotted keys such as `proxy.auth = "md5"` or `pool.size = 2`
/// (one per line); `tail` is appended after the tables (e.g. more `[[users]]`).
pub fn config_toml(listen: &str, shards: &[(&str, String)], root: &str, tail: &str) -> String {
    let mut t = format!("proxy.listen = \"{listen}\"\n{root}\n");
    t.push_str(&format!(
        "[[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n"
    ));
    for (name, url) in shards {
        t.push_str(&format!("[[shards]]\nname = \"{name}\"\nurl = \"{url}\"\n"));
    }
    t.push_str(tail);
    t
}

/// Starts a proxy in front of `shards` with config tweaks `root` (dotted keys).
pub async fn start_proxy(shards: &[(&str, String)], root: &str) -> TestProxy {
    start_proxy_with(shards, root, "").await
}

/// Like [`start_proxy`], with extra TOML `tail` after the tables.
pub async fn start_proxy_with(shards: &[(&str, String)], root: &str, tail: &str) -> TestProxy {
    let mut last = String::new();
    // The free port may be taken between the probe and the bind: retry.
    for _ in 0..3 {
        let listen = format!("127.0.0.1:{}", free_port());
        let text = config_toml(&listen, shards, root, tail);
        let config = Config::parse(&text, "test.toml")
            .unwrap_or_else(|e| panic!("bad test config: {e}\n{text}"));
        match shardproxy::app::bind(config).await {
            Ok(b) => {
                let serve = tokio::spawn(shardproxy::runtime::listener::serve(
                    b.proxy.clone(),
                    b.listener,
                ));
                return TestProxy {
                    addr: b.addr,
                    proxy: b.proxy,
                    serve,
                };
            }
            Err(e) => last = e,
        }
    }
    panic!("could not start the proxy: {last}");
}

/// Connects with tokio-postgres and returns the connection task's handle,
/// whose result tells how the connection ended (e.g. a FATAL 57P01).
pub async fn connect_watched(
    url: &str,
) -> (
    tokio_postgres::Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    (client, tokio::spawn(conn))
}

/// The SQLSTATE of a tokio-postgres error (empty when not a server error).
pub fn code_of(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

/// A frontend message: tag, length, body.
pub fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A startup-phase packet: length, then `code` and NUL-terminated params.
pub fn startup_packet(code: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    p.extend_from_slice(&body);
    p
}

/// A CancelRequest packet.
pub fn cancel_packet(pid: i32, secret: i32) -> Vec<u8> {
    let mut p = 16i32.to_be_bytes().to_vec();
    p.extend_from_slice(&80877102u32.to_be_bytes());
    p.extend_from_slice(&pid.to_be_bytes());
    p.extend_from_slice(&secret.to_be_bytes());
    p
}

/// A NUL-terminated string.
pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// (SQLSTATE, message) of an ErrorResponse body.
pub fn error_fields(body: &[u8]) -> (String, String) {
    parse_error_fields(body)
}

/// How long a raw read may wait before the test calls it a hang.
const RAW_TIMEOUT: Duration = Duration::from_secs(5);

/// A hand-driven client connection.
pub struct Raw {
    pub s: TcpStream,
    buf: BytesMut,
    /// BackendKeyData from the handshake.
    pub key: (i32, i32),
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).await.expect("connect to proxy");
        s.set_nodelay(true).ok();
        Raw {
            s,
            buf: BytesMut::new(),
            key: (0, 0),
        }
    }

    /// Connects and completes startup as [`USER`] (trust or SCRAM).
    pub async fn login(addr: SocketAddr) -> Raw {
        let mut r = Raw::connect(addr).await;
        r.startup(USER, PASSWORD).await;
        r
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("write to proxy");
    }

    /// Writes, ignoring errors (the proxy may already have closed the socket).
    pub async fn try_send(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes).await;
    }

    /// The next backend message, or None when the proxy closed the socket.
    /// Panics if nothing arrives within 5 s (a hang is a bug).
    pub async fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        match tokio::time::timeout(RAW_TIMEOUT, self.recv_inner()).await {
            Ok(r) => r,
            Err(_) => panic!("no message from the proxy within {RAW_TIMEOUT:?}"),
        }
    }

    async fn recv_inner(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let total = len as usize + 1;
                if self.buf.len() >= total {
                    let tag = self.buf[0];
                    let body = self.buf[5..total].to_vec();
                    self.buf.advance(total);
                    return Some((tag, body));
                }
            }
            match self.s.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads one raw byte (the answer to an SSLRequest).
    pub async fn recv_byte(&mut self) -> u8 {
        tokio::time::timeout(RAW_TIMEOUT, self.s.read_u8())
            .await
            .expect("SSL answer in time")
            .expect("SSL answer")
    }

    /// Messages up to and including ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut v = Vec::new();
        loop {
            let m = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("connection closed; got {:?}", tags(&v)));
            let done = m.0 == b'Z';
            v.push(m);
            if done {
                return v;
            }
        }
    }

    /// Sends a simple query and returns every message up to ReadyForQuery.
    pub async fn query(&mut self, sql: &str) -> Vec<(u8, Vec<u8>)> {
        self.send(&msg(b'Q', &cstr(sql))).await;
        self.until_ready().await
    }

    /// Reads until the proxy closes the socket (panics after 5 s without
    /// it); returns (SQLSTATE, message) of the last ErrorResponse seen.
    pub async fn error_then_close(&mut self) -> Option<(String, String)> {
        let mut err = None;
        while let Some((tag, body)) = self.recv().await {
            if tag == b'E' {
                err = Some(error_fields(&body));
            }
        }
        err
    }

    /// Like [`Raw::error_then_close`], just the SQLSTATE.
    pub async fn code_then_close(&mut self) -> Option<String> {
        self.error_then_close().await.map(|e| e.0)
    }

    /// Runs startup as `user`, answering SCRAM or md5 with `password`.
    pub async fn startup(&mut self, user: &str, password: &str) {
        self.send(&startup_packet(
            196608,
            &[("user", user), ("database", "postgres")],
        ))
        .await;
        let mut scram: Option<postgres_protocol::authentication::sasl::ScramSha256> = None;
        loop {
            let (tag, body) = self.recv().await.expect("proxy closed during startup");
            match tag {
                b'R' => {
                    let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    let mut out = BytesMut::new();
                    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
                    use postgres_protocol::message::frontend;
                    match code {
                        0 => {}
                        5 => {
                            let salt = [body[4], body[5], body[6], body[7]];
                            let h = postgres_protocol::authentication::md5_hash(
                                user.as_bytes(),
                                password.as_bytes(),
                                salt,
                            );
                            frontend::password_message(h.as_bytes(), &mut out).unwrap();
                        }
                        10 => {
                            let s = ScramSha256::new(
                                password.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut out)
                                .unwrap();
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().expect("SASL started");
                            s.update(&body[4..]).unwrap();
                            frontend::sasl_response(s.message(), &mut out).unwrap();
                        }
                        12 => scram.as_mut().expect("SASL").finish(&body[4..]).unwrap(),
                        other => panic!("unexpected auth request {other}"),
                    }
                    if !out.is_empty() {
                        self.send(&out).await;
                    }
                }
                b'K' => {
                    let pid = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    let secret = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                    self.key = (pid, secret);
                }
                b'E' => panic!("startup failed: {:?}", error_fields(&body)),
                b'Z' => return,
                _ => {}
            }
        }
    }
}

/// The message tags of a reply, as a string (e.g. "TDCZ").
pub fn tags(v: &[(u8, Vec<u8>)]) -> String {
    v.iter().map(|(t, _)| *t as char).collect()
}

/// The first ErrorResponse's SQLSTATE in a reply.
pub fn first_error(v: &[(u8, Vec<u8>)]) -> Option<(String, String)> {
    v.iter()
        .find(|(t, _)| *t == b'E')
        .map(|(_, b)| error_fields(b))
}

/// The columns of every DataRow in a reply (text or raw bytes; NULL = None).
pub fn data_rows(v: &[(u8, Vec<u8>)]) -> Vec<Vec<Option<Vec<u8>>>> {
    v.iter()
        .filter(|(t, _)| *t == b'D')
        .map(|(_, b)| {
            let mut b = &b[..];
            let n = b.get_i16();
            (0..n)
                .map(|_| {
                    let len = b.get_i32();
                    if len < 0 {
                        None
                    } else {
                        let v = b[..len as usize].to_vec();
                        b.advance(len as usize);
                        Some(v)
                    }
                })
                .collect()
        })
        .collect()
}

/// Parse message: statement name, query, parameter type OIDs.
pub fn parse_msg(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut b = cstr(name);
    b.extend(cstr(sql));
    b.put_i16(types.len() as i16);
    for t in types {
        b.put_u32(*t);
    }
    msg(b'P', &b)
}

/// Bind message: portal, statement, parameter formats, values, result formats.
pub fn bind_msg(
    portal: &str,
    stmt: &str,
    param_formats: &[i16],
    values: &[Option<&[u8]>],
    result_formats: &[i16],
) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(cstr(stmt));
    b.put_i16(param_formats.len() as i16);
    for f in param_formats {
        b.put_i16(*f);
    }
    b.put_i16(values.len() as i16);
    for v in values {
        match v {
            Some(v) => {
                b.put_i32(v.len() as i32);
                b.put_slice(v);
            }
            None => b.put_i32(-1),
        }
    }
    b.put_i16(result_formats.len() as i16);
    for f in result_formats {
        b.put_i16(*f);
    }
    msg(b'B', &b)
}

/// Execute message for `portal` with a row limit (0 = all).
pub fn execute_msg(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut b = cstr(portal);
    b.put_i32(max_rows);
    msg(b'E', &b)
}

/// Bind of statement `stmt` with one text-format value into the unnamed
/// portal, then Execute of all its rows.
pub fn bind_execute(stmt: &str, value: &[u8]) -> Vec<u8> {
    [
        bind_msg("", stmt, &[], &[Some(value)], &[]),
        execute_msg("", 0),
    ]
    .concat()
}

/// Parse of `sql` as statement `stmt`, then [`bind_execute`].
pub fn parse_bind_execute(stmt: &str, sql: &str, value: &[u8]) -> Vec<u8> {
    [parse_msg(stmt, sql, &[]), bind_execute(stmt, value)].concat()
}

/// Close message for prepared statement `name`.
pub fn close_statement_msg(name: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    b.extend(cstr(name));
    msg(b'C', &b)
}

pub fn sync_msg() -> Vec<u8> {
    msg(b'S', &[])
}

/// Runs a test body with a deadline: a hang becomes a panic (which stops the
/// test's clusters on the way out) instead of a stuck test run.
pub async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {secs} s (hang?)"))
}

/// `GET path` over plain HTTP/1.1 from 127.0.0.1:`port` (the metrics endpoint).
pub async fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut body = Vec::new();
    s.read_to_end(&mut body).await.unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

/// The value on the Prometheus sample line `series value`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
