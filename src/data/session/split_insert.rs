//! A multi-row INSERT whose rows belong to several shards: one INSERT per
//! shard (built by the planner from the AST), run all-or-nothing, with
//! RETURNING rows put back in the order of the original VALUES list.

use super::fanout::Answer;
use super::twophase::Commit;
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
            let idx: Vec<Vec<usize>> = pieces.into_iter().map(|p| p.rows).collect();
            for row in values_order(rows, &idx) {
                self.out.extend_from_slice(&row);
            }
        }
        let commit = if in_tx { Commit::Skip } else { Commit::Atomic };
        self.complete_parts(parts, total, in_tx, commit).await
    }
}

/// RETURNING rows of a split INSERT (`rows[k]`: part k's, which inserted the
/// original rows `idx[k]`) back in VALUES order, when each part returned
/// one row per inserted row; otherwise (ON CONFLICT DO NOTHING may return
/// fewer) in part order, which is all that can be kept.
pub(super) fn values_order(mut rows: Vec<Vec<BytesMut>>, idx: &[Vec<usize>]) -> Vec<BytesMut> {
    let exact = rows
        .iter()
        .zip(idx)
        .all(|(r, i)| r.is_empty() || r.len() == i.len());
    if !exact {
        return rows.into_iter().flatten().collect();
    }
    let n: usize = idx.iter().map(Vec::len).sum();
    let mut ordered: Vec<Option<BytesMut>> = vec![None; n];
    for (r, i) in rows.iter_mut().zip(idx) {
        for (row, &at) in r.drain(..).zip(i) {
            if let Some(slot) = ordered.get_mut(at) {
                *slot = Some(row);
            }
        }
    }
    ordered.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returning_rows_go_back_in_values_order() {
        let r = |s: &str| BytesMut::from(s);
        let rows = vec![vec![r("a1"), r("a2")], vec![r("b1")]];
        let got = values_order(rows, &[vec![0, 2], vec![1]]);
        assert_eq!(got, vec![r("a1"), r("b1"), r("a2")]);
        // A part that returned fewer rows than it inserted: part order.
        let rows = vec![vec![r("a1")], vec![r("b1")]];
        let got = values_order(rows, &[vec![0, 2], vec![1]]);
        assert_eq!(got, vec![r("a1"), r("b1")]);
    }
}
