//! The simple query protocol: one 'Q' message, relayed whole to one shard.

use super::relay::Relayed;
use super::settings::{may_change_settings, may_drop_statements};
use super::{End, Session};
use crate::data::codec::frontend::query_text;
use crate::data::codec::SqlError;
use bytes::BytesMut;
use std::sync::atomic::Ordering::Relaxed;

impl Session {
    pub(super) async fn simple_query(&mut self, msg: BytesMut) -> Result<(), End> {
        let sql = match query_text(&msg[5..]) {
            Ok(s) => s,
            Err(e) => return Err(End::Fatal(SqlError::protocol(e.to_string()))),
        };
        self.info.queries.fetch_add(1, Relaxed);
        if let Some(r) = self.session_command(sql) {
            return match r {
                Ok(tag) => {
                    crate::data::codec::messages::command_complete(&mut self.out, &tag);
                    crate::data::codec::messages::ready_for_query(&mut self.out, self.tx);
                    self.flush_client().await
                }
                Err(e) => self.error_and_ready(e).await,
            };
        }
        let shard = match self.route_sql(sql) {
            Ok(s) => s,
            Err(e) => return self.error_and_ready(e).await,
        };
        let touches_settings = may_change_settings(sql);
        let drops_statements = touches_settings && may_drop_statements(sql);
        if let Err(e) = self.acquire(shard).await {
            return self.error_and_ready(e).await;
        }
        self.settings_dirty |= touches_settings;
        self.unnamed_on_lease = false;
        let Some(mut lease) = self.lease.take() else {
            return Ok(());
        };
        if let Err(e) = lease.backend().send(&msg).await {
            return self.after_relay(lease, Relayed::Lost(e), true).await;
        }
        lease
            .pool()
            .stats
            .bytes_sent
            .fetch_add(msg.len() as u64, Relaxed);
        let r = self.relay(&mut lease, None).await?;
        if drops_statements {
            lease.backend().prepared.clear();
        }
        self.after_relay(lease, r, true).await
    }

    /// Statements the proxy answers itself: `SET shardproxy.shard = '…'`
    /// and `RESET shardproxy.shard` (routing hints for this session).
    fn session_command(&mut self, sql: &str) -> Option<Result<String, SqlError>> {
        let head = sql.trim_start().as_bytes();
        let maybe = head.len() >= 5
            && (head[..4].eq_ignore_ascii_case(b"set ")
                || head[..5].eq_ignore_ascii_case(b"reset"));
        if !maybe {
            return None;
        }
        let t = sql.trim().trim_end_matches(';').trim();
        let lower = t.to_ascii_lowercase();
        if lower == "reset shardproxy.shard" {
            self.hint_shard = None;
            return Some(Ok("RESET".into()));
        }
        let rest = lower.strip_prefix("set ")?.trim_start();
        let rest = rest.strip_prefix("session ").unwrap_or(rest).trim_start();
        let value = rest.strip_prefix("shardproxy.shard")?.trim_start();
        let value = value
            .strip_prefix('=')
            .or_else(|| value.strip_prefix("to "))?
            .trim();
        // Take the value from the original text to keep its case.
        let original = &t[t.len() - value.len()..];
        let name = original.trim_matches(['\'', '"']);
        Some(self.shard_by_name(name).map(|i| {
            self.hint_shard = Some(i);
            "SET".to_string()
        }))
    }
}
