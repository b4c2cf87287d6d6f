//! The admin console (`psql -d shardproxy` as the `[admin]` user): a session
//! that answers `SHOW ...`, `RELOAD` and `SHUTDOWN` itself, with text result
//! sets, over the simple query protocol.
//!
//! The listener has already run the handshake (startup packet, admin
//! authentication, ReadyForQuery) when [`run`] is called, so pgwire's
//! high-level server handlers (which want to own the connection from the
//! startup packet on) cannot be used; pgwire's message types still encode
//! every reply, through `codec::messages`.
//!
//! - [`commands`]: splitting a query string and parsing commands
//! - [`show`]: the `SHOW` result sets; [`config_view`]: `SHOW CONFIG`
//! - [`routing`]: `SHOW SHARDMAP`, `SHOW ROUTE`
//! - [`hot`]: `SHOW HOT`, `SHOW REBALANCE ADVICE`
//! - [`actions`]: `RELOAD`, `SHUTDOWN`

pub mod actions;
pub mod commands;
pub mod config_view;
pub mod hot;
pub mod routing;
pub mod show;
mod timestamp;

use crate::data::codec::error::sqlstate;
use crate::data::codec::frontend::query_text;
use crate::data::codec::{messages, FrameReader, SqlError};
use crate::data::session::client_stream::ClientStream;
use crate::data::session::startup::Handshake;
use crate::runtime::{ClientInfo, Proxy};
use bytes::BytesMut;
use commands::Command;
use pgwire::messages::response::NoticeResponse;
use pgwire::messages::Message;
use show::ResultSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// What a command answers.
#[derive(Debug)]
pub enum Reply {
    /// A result set (command tag `SHOW`).
    Rows(ResultSet),
    /// A command without rows: its tag, and a NOTICE to send before it.
    Done {
        tag: &'static str,
        notice: Option<String>,
    },
}

/// Runs an admin console session whose handshake is done, until the client
/// leaves or the proxy shuts down.
pub async fn run(proxy: Arc<Proxy>, info: Arc<ClientInfo>, hs: Handshake) {
    info.state.store(b'I', std::sync::atomic::Ordering::Relaxed);
    let max = proxy.runtime().config.proxy.max_message_bytes;
    let mut console = Console {
        proxy,
        info,
        client: hs.stream,
        reader: FrameReader::new(max),
        out: BytesMut::with_capacity(4096),
        skip_to_sync: false,
    };
    if let Some(fatal) = console.serve().await {
        console.out.clear();
        fatal.encode(&mut console.out);
        let _ = console.client.write_all(&console.out).await;
    }
    let _ = console.client.shutdown().await;
}

/// Runs one command.
async fn execute(proxy: &Arc<Proxy>, cmd: Command) -> Result<Reply, SqlError> {
    let rt = proxy.runtime();
    Ok(match cmd {
        Command::ShowHelp => Reply::Rows(show::help()),
        Command::ShowShards => Reply::Rows(show::shards(&rt)),
        Command::ShowPools => Reply::Rows(show::pools(&rt)),
        Command::ShowClients => Reply::Rows(show::clients(proxy)),
        Command::ShowStats => Reply::Rows(show::stats(&rt)),
        Command::ShowConfig => Reply::Rows(config_view::show_config(&rt.config)?),
        Command::ShowVersion => Reply::Rows(show::version()),
        Command::ShowShardmap => Reply::Rows(routing::shardmap(&rt.map)),
        Command::ShowRoute { table, key } => Reply::Rows(routing::route(&rt.map, &table, &key)?),
        Command::ShowSequences => Reply::Rows(actions::show_sequences(&rt).await),
        Command::FixSequences => return actions::fix_sequences(&rt).await,
        Command::ShowHot => Reply::Rows(hot::show_hot(
            &proxy.load.snapshot(&rt.map),
            &rt.map,
            rt.config.hot.enabled,
        )),
        Command::ShowAdvice => {
            Reply::Rows(hot::show_advice(&proxy.load.snapshot(&rt.map), &rt.map))
        }
        Command::Reload => return actions::reload(proxy).await,
        Command::Shutdown => actions::shutdown(proxy),
    })
}

struct Console {
    proxy: Arc<Proxy>,
    info: Arc<ClientInfo>,
    client: ClientStream,
    reader: FrameReader,
    /// Replies not yet written.
    out: BytesMut,
    /// After rejecting an extended-protocol message, skip to Sync (as Postgres does).
    skip_to_sync: bool,
}

impl Console {
    /// The message loop; returns the FATAL error to send when the proxy ends
    /// the session, None when the client left.
    async fn serve(&mut self) -> Option<SqlError> {
        let mut shutdown = self.proxy.shutdown.subscribe();
        loop {
            if *shutdown.borrow() {
                return Some(SqlError::fatal(
                    sqlstate::ADMIN_SHUTDOWN,
                    "terminating connection due to administrator command",
                ));
            }
            let frame = tokio::select! {
                biased;
                r = self.reader.next(&mut self.client) => match r {
                    Ok(Some(f)) => f,
                    Ok(None) => return None,
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        return Some(SqlError::protocol(format!("invalid message from client: {e}")))
                    }
                    Err(_) => return None,
                },
                _ = shutdown.changed(), if !*shutdown.borrow() => continue,
            };
            match frame.tag {
                b'Q' => {
                    let msg = self.reader.take(frame);
                    let text = match query_text(&msg[5..]) {
                        Ok(t) => t,
                        Err(e) => return Some(SqlError::protocol(e.to_string())),
                    };
                    self.simple_query(text).await;
                    messages::ready_for_query(&mut self.out, b'I');
                }
                b'P' | b'B' | b'D' | b'E' | b'C' => {
                    self.reader.skip(frame);
                    if !self.skip_to_sync {
                        self.skip_to_sync = true;
                        SqlError::new(
                            sqlstate::FEATURE_NOT_SUPPORTED,
                            "the admin console supports the simple query protocol only",
                        )
                        .with_hint("Use psql, or a driver's simple_query.")
                        .encode(&mut self.out);
                    }
                }
                b'H' => self.reader.skip(frame),
                b'S' => {
                    self.reader.skip(frame);
                    self.skip_to_sync = false;
                    messages::ready_for_query(&mut self.out, b'I');
                }
                b'F' => {
                    self.reader.skip(frame);
                    SqlError::new(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "the admin console does not support function calls",
                    )
                    .encode(&mut self.out);
                    messages::ready_for_query(&mut self.out, b'I');
                }
                b'X' => return None,
                // CopyData/CopyDone/CopyFail outside COPY: ignored, as Postgres does.
                b'd' | b'c' | b'f' => self.reader.skip(frame),
                other => {
                    return Some(SqlError::protocol(format!(
                        "invalid frontend message type 0x{other:02x}"
                    )))
                }
            }
            // Answer once everything the client pipelined so far is handled.
            if !matches!(self.reader.peek(), Ok(Some(_))) && !self.out.is_empty() {
                if self.client.write_all(&self.out).await.is_err() {
                    return None;
                }
                self.out.clear();
            }
        }
    }

    /// Runs every statement of a Query; the first error ends the batch.
    async fn simple_query(&mut self, text: &str) {
        let statements = match commands::split_statements(text) {
            Ok(s) => s,
            Err(e) => return e.encode(&mut self.out),
        };
        if statements.is_empty() {
            return messages::empty(&mut self.out, b'I');
        }
        for tokens in statements {
            self.info.queries.fetch_add(1, Relaxed);
            let reply = match commands::parse(&tokens) {
                Ok(cmd) => execute(&self.proxy, cmd).await,
                Err(e) => Err(e),
            };
            match reply {
                Ok(r) => encode_reply(&r, &mut self.out),
                Err(e) => return e.encode(&mut self.out),
            }
        }
    }
}

fn encode_reply(reply: &Reply, out: &mut BytesMut) {
    match reply {
        Reply::Rows(rs) => {
            messages::row_description_text(out, &rs.columns);
            for row in &rs.rows {
                messages::data_row_text(out, row);
            }
            messages::command_complete(out, "SHOW");
        }
        Reply::Done { tag, notice } => {
            if let Some(n) = notice {
                notice_message(out, n);
            }
            messages::command_complete(out, tag);
        }
    }
}

/// A NoticeResponse of severity NOTICE (SQLSTATE 00000).
fn notice_message(out: &mut BytesMut, message: &str) {
    let fields = vec![
        (b'S', "NOTICE".to_string()),
        (b'V', "NOTICE".to_string()),
        (b'C', "00000".to_string()),
        (b'M', message.to_string()),
    ];
    // Encoding into a BytesMut cannot fail for this message type.
    let _ = NoticeResponse::new(fields).encode(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::codec::frame::peek_frame;

    fn tags(b: &[u8]) -> Vec<u8> {
        let mut rest = b;
        let mut tags = vec![];
        while let Some(f) = peek_frame(rest, 1 << 20).unwrap() {
            tags.push(f.tag);
            rest = &rest[f.len..];
        }
        assert!(rest.is_empty());
        tags
    }

    #[test]
    fn replies_encode_as_whole_messages() {
        let mut out = BytesMut::new();
        encode_reply(&Reply::Rows(show::version()), &mut out);
        assert_eq!(tags(&out), b"TDC");
        out.clear();
        encode_reply(
            &Reply::Done {
                tag: "RELOAD",
                notice: Some("reloaded".into()),
            },
            &mut out,
        );
        assert_eq!(tags(&out), b"NC");
        assert!(out.windows(6).any(|w| w == b"RELOAD"));
    }
}
