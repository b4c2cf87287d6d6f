//! A routing proxy running in-process in front of real shard clusters, plus
//! an unsharded "oracle" cluster, for the differential routing tests: the
//! same statements run through the proxy and on the oracle must give the same
//! rows, and every row must sit on the shard the shard map says owns it.

#![allow(dead_code)]

use super::{temp_clusters_with, temp_dir, TempCluster};
use shardproxy::control::cluster::{free_port, ClusterOptions};
use shardproxy::data::router::{KeyValue, ShardMap};
use shardproxy::runtime::Proxy;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres::SimpleQueryMessage;

pub const APP_USER: &str = "app";
pub const APP_PW: &str = "apppw";

/// Shards, oracle and a serving proxy.
pub struct Routed {
    pub proxy: Arc<Proxy>,
    pub port: u16,
    /// The config file (rewrite it and call `proxy.reload()`).
    pub config_path: PathBuf,
    pub shards: Vec<TempCluster>,
    pub oracle: Option<TempCluster>,
    pub serve: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

/// The config text for `shards` (named s0, s1, …) listening on `port`;
/// `tables` is appended verbatim (`[[tables]]` blocks and the like).
pub fn config_text(port: u16, shards: &[String], two_pc: bool, tables: &str) -> String {
    let mut s = format!(
        "[proxy]\nlisten = \"127.0.0.1:{port}\"\nshutdown_timeout_ms = 2000\n\
         two_phase_commit = {two_pc}\n\n\
         [admin]\nuser = \"admin\"\npassword = \"adminpw\"\n\n\
         [[users]]\nname = \"{APP_USER}\"\npassword = \"{APP_PW}\"\n\n\
         [pool]\nsize = 8\n\n"
    );
    for (i, url) in shards.iter().enumerate() {
        s.push_str(&format!("[[shards]]\nname = \"s{i}\"\nurl = \"{url}\"\n\n"));
    }
    s.push_str(tables);
    s
}

impl Routed {
    /// Starts `n` shards (+ an oracle when `oracle`), writes the config built
    /// by [`config_text`] and serves the proxy on a free port.
    pub async fn start(n: usize, oracle: bool, two_pc: bool, tables: &str) -> Routed {
        Routed::start_with(n, oracle, |port, urls| {
            config_text(port, urls, two_pc, tables)
        })
        .await
    }

    /// Like [`Routed::start`] with a config that leaves
    /// `proxy.two_phase_commit` at its default, as a new user's would.
    pub async fn start_fresh(n: usize, oracle: bool, tables: &str) -> Routed {
        Routed::start_with(n, oracle, |port, urls| {
            config_text(port, urls, true, tables).replace("two_phase_commit = true\n", "")
        })
        .await
    }

    /// [`Routed::start`] with cluster options (every shard and the oracle),
    /// e.g. an ICU default collation.
    pub async fn start_opts(
        n: usize,
        oracle: bool,
        two_pc: bool,
        tables: &str,
        opts: ClusterOptions,
    ) -> Routed {
        Routed::start_inner(n, oracle, opts, |port, urls| {
            config_text(port, urls, two_pc, tables)
        })
        .await
    }

    /// Starts the clusters and serves the config `text(port, shard urls)`.
    pub async fn start_with(
        n: usize,
        oracle: bool,
        text: impl FnOnce(u16, &[String]) -> String,
    ) -> Routed {
        Routed::start_inner(n, oracle, ClusterOptions::default(), text).await
    }

    async fn start_inner(
        n: usize,
        oracle: bool,
        opts: ClusterOptions,
        text: impl FnOnce(u16, &[String]) -> String,
    ) -> Routed {
        let mut clusters =
            tokio::task::spawn_blocking(move || temp_clusters_with(n + usize::from(oracle), &opts))
                .await
                .unwrap();
        let oracle = oracle.then(|| clusters.pop().unwrap());
        let urls: Vec<String> = clusters.iter().map(|c| c.url("postgres")).collect();
        let dir = temp_dir();
        let config_path = dir.path().join("shardproxy.toml");
        let port = free_port();
        std::fs::write(&config_path, text(port, &urls)).unwrap();
        let config = shardproxy::config::Config::load(&config_path).unwrap();
        let b = shardproxy::app::bind(config).await.unwrap();
        let serve = tokio::spawn(shardproxy::runtime::listener::serve(
            b.proxy.clone(),
            b.listener,
        ));
        Routed {
            proxy: b.proxy,
            port: b.addr.port(),
            config_path,
            shards: clusters,
            oracle,
            serve,
            _dir: dir,
        }
    }

    /// The application URL through the proxy.
    pub fn url(&self) -> String {
        format!(
            "postgres://{APP_USER}:{APP_PW}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// The admin console URL.
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://admin:adminpw@127.0.0.1:{}/shardproxy",
            self.port
        )
    }

    pub fn shard_urls(&self) -> Vec<String> {
        self.shards.iter().map(|c| c.url("postgres")).collect()
    }

    pub fn oracle_url(&self) -> String {
        self.oracle.as_ref().expect("no oracle").url("postgres")
    }

    /// The running shard map.
    pub fn map(&self) -> ShardMap {
        self.proxy.runtime().map.clone()
    }

    /// The shard (index) the map gives integer key `k` of `table`.
    pub fn shard_of_int(&self, table: &str, k: i64) -> usize {
        let map = self.map();
        let g = map.table(table).expect("table in map").group;
        map.shard_for(g, &KeyValue::Int(k))
    }

    /// The shard the map gives text key `k` of `table`.
    pub fn shard_of_text(&self, table: &str, k: &str) -> usize {
        let map = self.map();
        let g = map.table(table).expect("table in map").group;
        map.shard_for(g, &KeyValue::Text(k))
    }

    /// The shard the map gives a NULL key of `table`.
    pub fn shard_of_null(&self, table: &str) -> usize {
        let map = self.map();
        let g = map.table(table).expect("table in map").group;
        map.shard_for(g, &KeyValue::Null)
    }

    /// A client per shard, connected directly.
    pub async fn shard_clients(&self) -> Vec<tokio_postgres::Client> {
        let mut v = Vec::new();
        for u in self.shard_urls() {
            v.push(super::connect(&u).await);
        }
        v
    }

    /// Runs `sql` (simple protocol) on every shard directly.
    pub async fn on_every_shard(&self, sql: &str) {
        for c in self.shard_clients().await {
            c.batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
    }
}

/// Checks that every row of `table` sits on the shard that owns its integer
/// shard key `key` (NULL keys where the map sends NULL), reading each shard
/// directly; returns how many rows the shards hold in all.
pub async fn assert_placement(
    r: &Routed,
    shards: &[tokio_postgres::Client],
    table: &str,
    key: &str,
) -> i64 {
    let mut total = 0;
    for (i, c) in shards.iter().enumerate() {
        let rows = c
            .query(&format!("select {key}::int8 from {table}"), &[])
            .await
            .unwrap_or_else(|e| panic!("{table} on s{i}: {e:?}"));
        for row in &rows {
            let k: Option<i64> = row.get(0);
            let owner = match k {
                Some(k) => r.shard_of_int(table, k),
                None => r.shard_of_null(table),
            };
            assert_eq!(
                owner, i,
                "{table}.{key}={k:?} found on shard s{i}, owner s{owner}"
            );
        }
        total += rows.len() as i64;
    }
    total
}

/// Every shard's rows of `sql` (run on each shard directly), sorted: what
/// one Postgres holding all rows would answer, unordered.
pub async fn union_of_shards(
    shards: &[tokio_postgres::Client],
    sql: &str,
) -> Vec<Vec<Option<String>>> {
    let mut all = Vec::new();
    for c in shards {
        all.extend(text_rows(c, sql).await);
    }
    all.sort();
    all
}

/// Rows of a simple query as text (None = NULL), from every result set.
pub async fn text_rows(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    msgs.into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// [`text_rows`] sorted (fan-out concatenates shard results in any order).
pub async fn sorted_rows(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut r = text_rows(c, sql).await;
    r.sort();
    r
}

/// The SQLSTATE and message of a failing simple query.
pub async fn sql_error(c: &tokio_postgres::Client, sql: &str) -> (String, String) {
    match c.simple_query(sql).await {
        Ok(_) => panic!("{sql}: expected an error, it succeeded"),
        Err(e) => {
            let db = e
                .as_db_error()
                .unwrap_or_else(|| panic!("{sql}: not a server error: {e:?}"));
            (db.code().code().to_string(), db.message().to_string())
        }
    }
}

/// `select count(*)` of `table` on each shard directly.
pub async fn counts_per_shard(shards: &[tokio_postgres::Client], table: &str) -> Vec<i64> {
    let mut v = Vec::new();
    for c in shards {
        let row = c
            .query_one(&format!("select count(*) from {table}"), &[])
            .await
            .unwrap();
        v.push(row.get::<_, i64>(0));
    }
    v
}

/// Runs `sql` with the extended protocol sending every parameter in TEXT
/// format (tokio-postgres always sends binary), as user app over SCRAM, and
/// returns the rows as text. Panics on an ErrorResponse.
pub async fn text_param_query(
    port: u16,
    sql: &str,
    params: &[Option<&str>],
) -> Vec<Vec<Option<String>>> {
    extended_text(port, APP_USER, APP_PW, sql, params)
        .await
        .unwrap_or_else(|(code, msg)| panic!("{sql}: C={code} {msg}"))
}

/// Parse (no parameter types), Bind with text parameters and text results,
/// Execute, Sync, as `user` (SCRAM with `password`, or trust); the rows as
/// text, or the ErrorResponse's SQLSTATE and message.
pub async fn extended_text(
    port: u16,
    user: &str,
    password: &str,
    sql: &str,
    params: &[Option<&str>],
) -> Result<Vec<Vec<Option<String>>>, (String, String)> {
    use bytes::BytesMut;
    use fallible_iterator::FallibleIterator;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use postgres_protocol::message::{backend::Message, frontend};
    use postgres_protocol::IsNull;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut out = BytesMut::new();
    frontend::startup_message([("user", user), ("database", "postgres")], &mut out).unwrap();
    let mut inb = BytesMut::new();
    let mut scram: Option<ScramSha256> = None;
    let mut rows = Vec::new();
    let mut error = None;
    let mut sent_query = false;
    loop {
        if !out.is_empty() {
            s.write_all(&out).await.unwrap();
            out.clear();
        }
        let msg = loop {
            if let Some(m) = Message::parse(&mut inb).unwrap() {
                break m;
            }
            let n = s.read_buf(&mut inb).await.unwrap();
            assert!(n > 0, "server closed the connection");
        };
        match msg {
            Message::AuthenticationSasl(_) => {
                let sc = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response("SCRAM-SHA-256", sc.message(), &mut out).unwrap();
                scram = Some(sc);
            }
            Message::AuthenticationSaslContinue(b) => {
                let sc = scram.as_mut().unwrap();
                sc.update(b.data()).unwrap();
                frontend::sasl_response(sc.message(), &mut out).unwrap();
            }
            Message::AuthenticationSaslFinal(b) => {
                scram.as_mut().unwrap().finish(b.data()).unwrap()
            }
            Message::ReadyForQuery(_) if sent_query => break,
            Message::ReadyForQuery(_) => {
                sent_query = true;
                frontend::parse("", sql, std::iter::empty(), &mut out).unwrap();
                frontend::bind(
                    "",
                    "",
                    [0i16],
                    params.iter().copied(),
                    |p, buf| match p {
                        Some(v) => {
                            buf.extend_from_slice(v.as_bytes());
                            Ok(IsNull::No)
                        }
                        None => Ok(IsNull::Yes),
                    },
                    [0i16],
                    &mut out,
                )
                .map_err(|_| "bind")
                .unwrap();
                frontend::execute("", 0, &mut out).unwrap();
                frontend::sync(&mut out);
            }
            Message::DataRow(body) => {
                use postgres_protocol::message::backend::DataRowBody;
                let b: &DataRowBody = &body;
                let buf = b.buffer();
                let mut it = b.ranges();
                let mut row = Vec::new();
                while let Some(r) = it.next().unwrap() {
                    row.push(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned()));
                }
                rows.push(row);
            }
            Message::ErrorResponse(body) => {
                let mut fields = body.fields();
                let (mut code, mut text) = (String::new(), String::new());
                while let Some(f) = fields.next().unwrap() {
                    let v = String::from_utf8_lossy(f.value_bytes()).into_owned();
                    match f.type_() {
                        b'C' => code = v,
                        b'M' => text = v,
                        _ => {}
                    }
                }
                if !sent_query {
                    return Err((code, text));
                }
                error.get_or_insert((code, text));
            }
            _ => {}
        }
    }
    let mut bye = BytesMut::new();
    frontend::terminate(&mut bye);
    let _ = s.write_all(&bye).await;
    match error {
        Some(e) => Err(e),
        None => Ok(rows),
    }
}

/// Runs one statement with the simple protocol; returns its row count.
pub async fn exec_simple(c: &tokio_postgres::Client, sql: &str) -> u64 {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .sum()
}

/// Any column as its raw binary bytes (for comparing binary results).
pub struct RawValue(pub Option<Vec<u8>>);

impl<'a> tokio_postgres::types::FromSql<'a> for RawValue {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(Some(raw.to_vec())))
    }
    fn from_sql_null(
        _: &tokio_postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(None))
    }
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}
