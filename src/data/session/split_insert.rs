//! A multi-row INSERT whose rows belong to several shards: one INSERT per
//! shard (built by the planner from the AST), run all-or-nothing, with
//! RETURNING rows put back in the order of the original VALUES list.

use super::fanout::Answer;
use super::{End, Session};
use crate::data::codec::messages;
use crate::data::planner::{split_insert, Params, StmtPlan};
use bytes::BytesMut;

impl Session {
    pub(super) async fn split_insert_simple(&mut self, stmt: &StmtPlan) -> Result<(), End> {
        let pieces = match split_insert(stmt, &Params::none(), &self.rt.map) {
            Ok(p) => p,
            Err(e) => return self.error_and_ready(e.into()).await,
        };
        let shards: Vec<usize> = pieces.iter().map(|p| p.shard).collect();
        let (mut parts, in_tx) = match self.open_parts(&shards, true).await {
            Ok(p) => p,
            Err(e) => return self.error_and_ready(e).await,
        };
        let mut total = Answer::default();
        let mut rows: Vec<Vec<BytesMut>> = vec![Vec::new(); parts.len()];
        let queries: Vec<Vec<u8>> = pieces
            .iter()
            .map(|p| {
                let mut b = BytesMut::new();
                messages::query(&mut b, &p.sql);
                b.to_vec()
            })
            .collect();
        let lost = self
            .run_on_parts(
                &mut parts,
                |i| queries[i].clone(),
                &mut total,
                Some(&mut rows),
            )
            .await;
        if let Some(e) = lost {
            drop(parts);
            self.publish_running();
            if in_tx {
                return Err(End::Fatal(crate::data::codec::SqlError {
                    fatal: true,
                    ..e
                }));
            }
            return self.error_and_ready(e).await;
        }
        if total.error.is_none() {
            // RETURNING rows: back into VALUES order when each shard returned
            // one row per inserted row (ON CONFLICT DO NOTHING may return fewer;
            // then shard order is all that can be kept).
            let exact = rows
                .iter()
                .zip(&pieces)
                .all(|(r, p)| r.is_empty() || r.len() == p.rows.len());
            if exact {
                let n: usize = pieces.iter().map(|p| p.rows.len()).sum();
                let mut ordered: Vec<Option<BytesMut>> = vec![None; n];
                for (r, p) in rows.iter_mut().zip(&pieces) {
                    for (row, &idx) in r.drain(..).zip(&p.rows) {
                        if let Some(slot) = ordered.get_mut(idx) {
                            *slot = Some(row);
                        }
                    }
                }
                for row in ordered.into_iter().flatten() {
                    self.out.extend_from_slice(&row);
                }
            } else {
                for r in rows {
                    for row in r {
                        self.out.extend_from_slice(&row);
                    }
                }
            }
        }
        self.complete_parts(parts, total, in_tx, !in_tx).await
    }
}
