//! The simple query protocol: one 'Q' message, relayed whole to one shard.

use super::copy_in::CopyVia;
use super::fanout::FanMode;
use super::route::Dispatch;
use super::{End, Session};
use crate::data::codec::frontend::query_text;
use crate::data::codec::SqlError;
use crate::data::planner::{Params, Plan, StmtKind};
use bytes::BytesMut;
use std::sync::atomic::Ordering::Relaxed;

impl Session {
    pub(super) async fn simple_query(&mut self, msg: &[u8]) -> Result<(), End> {
        let sql = match query_text(&msg[5..]) {
            Ok(s) => s,
            // Like Postgres: bad text is an ERROR, a broken message is FATAL.
            Err(e) if e.why.contains("UTF-8") => {
                return self
                    .error_and_ready(SqlError::new(
                        crate::data::codec::error::sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                        "invalid byte sequence for encoding \"UTF8\" in the query text",
                    ))
                    .await
            }
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
        let (mut plan, mut literals) = self.rt.planner.plan_literals_with(sql, &mut self.last_plan);
        if let Some(table) = plan.needs_columns() {
            // INSERT without a column list: learn the table's columns, plan again.
            let table = table.to_string();
            // Not cached, or too few columns cached: read them again.
            self.rt.planner.columns.forget(&table);
            if let Err(e) = self.table_columns(&table, None).await {
                return self.error_and_ready(e).await;
            }
            (plan, literals) = self.rt.planner.plan_literals_with(sql, &mut self.last_plan);
        }
        self.watch_columns(&plan);
        // The shards get the INSERT naming the columns its values fill.
        let named;
        let msg = match &plan.sent_text {
            Some(text) => {
                let mut b = bytes::BytesMut::new();
                crate::data::codec::messages::query(&mut b, text);
                named = b;
                &named[..]
            }
            None => msg,
        };
        let params = Params {
            values: literals.iter().map(|l| Some(l.as_bytes())).collect(),
            formats: Default::default(),
        };
        if let Some(r) = self.deferred_transaction(&plan, sql) {
            return r.await;
        }
        self.replica_read = self.may_read_replica(plan.replica_ok);
        // The rare paths are boxed: their futures are large, and inline they
        // would size every session's task for them.
        let mut key = None;
        let mut routed = self.dispatch(&plan, &params, &mut key);
        if matches!(&routed, Err(e) if e.code == crate::data::codec::error::sqlstate::FEATURE_NOT_SUPPORTED)
            && !literals.is_empty()
        {
            // A refusal names the statement's constructs: as written, not
            // with the normalized text's parameters in place of literals.
            routed = self.dispatch(&self.rt.planner.plan(sql), &Params::none(), &mut key);
        }
        self.load.key(key, &self.proxy.load, &self.rt);
        let shard = match routed {
            Ok(Dispatch::One(s)) => s,
            Ok(Dispatch::Any) => self.default_shard(),
            Ok(Dispatch::Fan {
                shards,
                mode: FanMode::Merge(dist),
            }) => return Box::pin(self.merge_simple_text(sql, &literals, &shards, dist)).await,
            Ok(Dispatch::Fan { shards, mode }) => {
                return Box::pin(self.fanout_simple(msg, &shards, mode)).await
            }
            Ok(Dispatch::SplitInsert) => {
                return Box::pin(self.split_insert_simple(&plan.stmts[0])).await
            }
            Ok(Dispatch::SplitCopy(spec)) => {
                return Box::pin(self.copy_split(msg, spec.as_ref(), CopyVia::Simple)).await
            }
            Ok(Dispatch::EndMulti { commit }) => return Box::pin(self.end_multi(commit)).await,
            // Only routing an extended-protocol batch yields it.
            Ok(Dispatch::Pipeline) => {
                return self
                    .error_and_ready(SqlError::new(
                        crate::data::codec::error::sqlstate::INTERNAL_ERROR,
                        "a simple query was routed as a pipeline",
                    ))
                    .await
            }
            Err(e) => return self.error_and_ready(e).await,
        };
        let touches_settings = plan.touches_settings;
        let drops_statements = plan.drops_statements;
        if let Err(e) = self.acquire(shard).await {
            return self.error_and_ready(e).await;
        }
        self.settings_dirty |= touches_settings;
        self.unnamed_on_lease = false;
        let Some(mut lease) = self.lease.take() else {
            return Ok(());
        };
        let r = self.send_then_relay(&mut lease, msg, None).await?;
        if drops_statements {
            lease.backend().prepared.clear();
            self.prepared_unsure = true;
        }
        self.after_relay(lease, r, true).await
    }

    /// A merged read of a simple query. A text normalized for the plan
    /// cache has parameters where the client wrote literals, and a merge
    /// computes with some of them: it is planned as written instead (and
    /// that plan cached under the text itself).
    async fn merge_simple_text(
        &mut self,
        sql: &str,
        literals: &crate::data::planner::normalize::Literals<'_>,
        shards: &[usize],
        dist: crate::data::planner::DistRef,
    ) -> Result<(), End> {
        if literals.is_empty() {
            return self.merge_simple(sql, shards, dist).await;
        }
        let plan = self.rt.planner.plan(sql);
        match plan.stmts.first().map(|s| (&s.target, &s.dist)) {
            Some((crate::data::planner::Target::Refused { sqlstate, message }, _)) => {
                let e = SqlError::new(sqlstate, message.clone());
                self.error_and_ready(e).await
            }
            Some((_, Some(d))) => self.merge_simple(sql, shards, d.clone()).await,
            _ => {
                let mut q = BytesMut::new();
                crate::data::codec::messages::query(&mut q, sql);
                self.fanout_simple(&q, shards, FanMode::Read).await
            }
        }
    }

    /// Statements the proxy answers itself: `SET shardproxy.shard = '…'`,
    /// `SET shardproxy.shard_key = '…'` and their RESETs (routing hints for
    /// this session).
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
        if let Some(r) = self.target_session_command(&lower) {
            return Some(r);
        }
        if lower == "reset shardproxy.shard" {
            self.hint_shard = None;
            return Some(Ok("RESET".into()));
        }
        if lower == "reset shardproxy.shard_key" {
            self.hint_key = None;
            return Some(Ok("RESET".into()));
        }
        let rest = lower.strip_prefix("set ")?.trim_start();
        let rest = rest.strip_prefix("session ").unwrap_or(rest).trim_start();
        let (is_key, value) = match rest.strip_prefix("shardproxy.shard_key") {
            Some(v) => (true, v),
            None => (false, rest.strip_prefix("shardproxy.shard")?),
        };
        let value = value.trim_start();
        let value = value
            .strip_prefix('=')
            .or_else(|| value.strip_prefix("to "))?
            .trim();
        // Take the value from the original text to keep its case.
        let original = &t[t.len() - value.len()..];
        let name = original.trim_matches(['\'', '"']);
        if is_key {
            self.hint_key = Some(name.to_string());
            return Some(Ok("SET".into()));
        }
        Some(self.shard_by_name(name).map(|i| {
            self.hint_shard = Some(i);
            "SET".to_string()
        }))
    }

    /// BEGIN before any routed statement is answered here and replayed on
    /// the first statement's shard; COMMIT/ROLLBACK of such an empty
    /// transaction never reach a shard either.
    fn deferred_transaction<'a>(
        &'a mut self,
        plan: &Plan,
        sql: &str,
    ) -> Option<impl std::future::Future<Output = Result<(), End>> + 'a> {
        let [stmt] = plan.stmts.as_slice() else {
            return None;
        };
        let tag = match (
            &stmt.kind,
            self.lease.is_none(),
            self.pending_begin.is_some(),
            self.tx,
        ) {
            (StmtKind::Begin, true, false, b'I') => {
                self.pending_begin = Some(sql.trim().trim_end_matches(';').to_string());
                self.tx = b'T';
                "BEGIN"
            }
            (StmtKind::Commit, true, true, _) | (StmtKind::Rollback, true, true, _) => {
                self.pending_begin = None;
                let was = self.tx;
                self.tx = b'I';
                // COMMIT of a failed transaction rolls back, as in Postgres.
                if stmt.kind == StmtKind::Commit && was == b'T' {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                }
            }
            _ => return None,
        };
        self.info
            .state
            .store(self.tx, std::sync::atomic::Ordering::Relaxed);
        Some(async move {
            crate::data::codec::messages::command_complete(&mut self.out, tag);
            crate::data::codec::messages::ready_for_query(&mut self.out, self.tx);
            self.flush_client().await
        })
    }
}
