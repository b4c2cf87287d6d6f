//! `COPY … FROM STDIN` whose rows go to several shards, sent through the
//! extended protocol (tokio-postgres' `copy_in`, drivers that prepare every
//! statement): the batch holding the COPY's Parse, Bind, Describe and
//! Execute is answered by the proxy, and the Execute starts the split COPY
//! of [`super::copy_in`] on the shards, which get the COPY as a simple query.

use super::copy_in::CopyVia;
use super::extended::frames;
use super::{End, Session};
use crate::data::codec::error::sqlstate;
use crate::data::codec::frontend::{BindMsg, ExecuteMsg, ParseMsg, TargetMsg};
use crate::data::codec::{messages, SqlError};
use crate::data::planner::CopySpec;
use bytes::BytesMut;

impl Session {
    /// Runs the batch `[Parse] Bind [Describe] Execute [Sync|Flush]` of a
    /// COPY FROM STDIN into a sharded (`spec`) or reference (None) table.
    pub(super) async fn copy_extended(
        &mut self,
        batch: &[u8],
        spec: Option<CopySpec>,
        sync: bool,
    ) -> Result<(), End> {
        let mut query = None;
        let mut executed = false;
        let mut replies = BytesMut::new();
        for (tag, body) in frames(batch) {
            let start = body.as_ptr() as usize - batch.as_ptr() as usize - 5;
            let ok = match tag {
                _ if executed => matches!(tag, b'S' | b'H'),
                b'P' => match ParseMsg::decode(body) {
                    Ok(p) if p.name.is_empty() || !self.prepared.contains(p.name) => {
                        let stmt = self.batch_statement(start, &p);
                        self.prepared.insert(p.name, stmt);
                        messages::empty(&mut replies, b'1');
                        true
                    }
                    _ => false,
                },
                b'B' => match BindMsg::decode(body) {
                    Ok(b) => match self.prepared.get(b.statement) {
                        Some(stmt) => {
                            query = Some(stmt.query().to_string());
                            messages::empty(&mut replies, b'2');
                            true
                        }
                        None => false,
                    },
                    Err(_) => false,
                },
                b'D' => match TargetMsg::decode(body, "Describe") {
                    // A COPY has no parameters and returns no rows.
                    Ok(d) => {
                        if d.kind == b'S' {
                            replies.extend_from_slice(&[b't', 0, 0, 0, 6, 0, 0]);
                        }
                        messages::empty(&mut replies, b'n');
                        true
                    }
                    Err(_) => false,
                },
                b'E' => {
                    executed = ExecuteMsg::decode(body).is_ok() && query.is_some();
                    executed
                }
                b'S' | b'H' => true,
                _ => false,
            };
            if !ok {
                let e = SqlError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "a COPY whose rows go to several shards must be alone in its pipeline (its Parse, Bind, Describe and Execute, then Sync)",
                )
                .with_hint("Send the COPY in a pipeline of its own.");
                return self.batch_error(e, sync).await;
            }
        }
        let Some(sql) = query.filter(|_| executed) else {
            // Parse/Bind without Execute: answered, the COPY waits.
            self.out.extend_from_slice(&replies);
            if sync {
                messages::ready_for_query(&mut self.out, self.tx);
            }
            return self.flush_client().await;
        };
        self.out.extend_from_slice(&replies);
        let mut msg = BytesMut::new();
        messages::query(&mut msg, &sql);
        Box::pin(self.copy_split(&msg, spec.as_ref(), CopyVia::Extended { synced: sync })).await
    }
}
