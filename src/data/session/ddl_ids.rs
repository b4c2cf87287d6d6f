//! After DDL that ran on several shards, inside its transaction (before the
//! commit, so no row can take an id first): the sequences of sharded tables
//! are set to the unique-id scheme of [`crate::control::unique_ids`] on each
//! shard (a `CREATE TABLE … (id bigserial …)` gets its interleaved sequences
//! here).

use super::fanout::{Answer, Part};
use super::Session;
use crate::data::codec::SqlError;

impl Session {
    pub(super) async fn after_ddl(&mut self, parts: &mut [Part], total: &mut Answer) {
        let c = &self.rt.config;
        if total.error.is_some() || !c.sharding.unique_ids {
            return;
        }
        let tables = crate::control::unique_ids::sharded_tables(c);
        if tables.is_empty() {
            return;
        }
        let sql = crate::control::unique_ids::ddl_fix_sql(c.sharding.id_stride, &tables);
        for p in parts.iter_mut() {
            let name = p.lease.pool().name.clone();
            // Its own failures are warnings inside the block; only a lost
            // connection (or a broken transaction) gets here.
            match p.lease.backend().execute_silently(&sql).await {
                Ok(Ok(())) => {}
                Ok(Err((code, msg))) => {
                    let mut b = bytes::BytesMut::new();
                    SqlError::new(
                        crate::data::codec::error::sqlstate::CONNECTION_EXCEPTION,
                        format!("setting the id sequences on shard \"{name}\" failed: {msg}"),
                    )
                    .with_detail(format!("SQLSTATE {code}"))
                    .encode(&mut b);
                    total.error = Some((b, code));
                    return;
                }
                Err(e) => {
                    let mut b = bytes::BytesMut::new();
                    SqlError::shard_unavailable(&name, e).encode(&mut b);
                    total.error = Some((b, String::new()));
                    return;
                }
            }
        }
    }
}
