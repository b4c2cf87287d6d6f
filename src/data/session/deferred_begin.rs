//! A BEGIN at the head of an extended-protocol batch whose other statements
//! span shards (JDBC with autocommit off sends BEGIN in the same pipeline
//! as the transaction's first statement): the proxy answers it and defers
//! it, as it does a simple-protocol BEGIN, so the rest of the batch routes
//! like the first statement of a transaction. A single-shard batch keeps
//! its BEGIN: it goes to that shard with the statement, in one round trip.

use super::extended::frames;
use super::Session;
use crate::data::codec::frontend::{BindMsg, ExecuteMsg, ParseMsg, TargetMsg};
use crate::data::codec::messages;
use crate::data::planner::StmtKind;

impl Session {
    /// If `batch` starts with a BEGIN (an optional Parse of it, its Bind,
    /// an optional Describe of the portal, its Execute) and the session is
    /// between transactions, answers those messages, defers the BEGIN and
    /// returns where the rest of the batch starts.
    pub(super) fn defer_leading_begin(&mut self, batch: &[u8]) -> Option<usize> {
        if self.tx != b'I' || self.lease.is_some() || self.pending_begin.is_some() {
            return None;
        }
        let mut at = 0;
        let mut parsed = None;
        let mut portal = None;
        let mut replies = Vec::new();
        let mut text = None;
        for (tag, body) in frames(batch) {
            match (tag, &portal) {
                (b'P', None) if parsed.is_none() => {
                    let p = ParseMsg::decode(body).ok()?;
                    let stmt = self.statement_of(&p);
                    if !is_begin(&stmt.plan)
                        || (!p.name.is_empty() && self.prepared.contains(p.name))
                    {
                        return None;
                    }
                    parsed = Some((p.name.to_string(), stmt));
                    replies.push(b'1');
                }
                (b'B', None) => {
                    let b = BindMsg::decode(body).ok()?;
                    let stmt = match &parsed {
                        Some((name, stmt)) if *name == b.statement => stmt.clone(),
                        Some(_) => return None,
                        None => self.prepared.get(b.statement)?.clone(),
                    };
                    if !is_begin(&stmt.plan) {
                        return None;
                    }
                    text = Some(stmt.query().trim().trim_end_matches(';').to_string());
                    portal = Some(b.portal.to_string());
                    replies.push(b'2');
                }
                (b'D', Some(name)) => {
                    let d = TargetMsg::decode(body, "Describe").ok()?;
                    if d.kind != b'P' || d.name != name {
                        return None;
                    }
                    replies.push(b'n');
                }
                (b'E', Some(name)) => {
                    let e = ExecuteMsg::decode(body).ok()?;
                    if e.portal != name {
                        return None;
                    }
                    at += 5 + body.len();
                    replies.push(b'C');
                    break;
                }
                _ => return None,
            }
            at += 5 + body.len();
        }
        if replies.last() != Some(&b'C') {
            return None;
        }
        if let Some((name, stmt)) = parsed {
            self.prepared.insert(&name, stmt);
        }
        for r in replies {
            match r {
                b'C' => messages::command_complete(&mut self.out, "BEGIN"),
                tag => messages::empty(&mut self.out, tag),
            }
        }
        self.pending_begin = text;
        self.tx = b'T';
        self.info
            .state
            .store(b'T', std::sync::atomic::Ordering::Relaxed);
        Some(at)
    }
}

fn is_begin(plan: &crate::data::planner::Plan) -> bool {
    matches!(plan.stmts.as_slice(), [s] if s.kind == StmtKind::Begin)
}
