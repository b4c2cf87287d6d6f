//! What the proxy checks on every shard when a configuration is loaded (at
//! start and after each RELOAD or SIGHUP), in the background so serving
//! never waits for a slow shard: whether the shard can take part in
//! two-phase commit (`max_prepared_transactions > 0`; a transaction that
//! would write on several shards is refused with 0A000 where one cannot;
//! a shard that cannot be reached now is asked again when a transaction
//! first needs it), and whether the sequences of sharded tables hand out
//! unique ids (set where not, see [`crate::control::unique_ids`]).

use crate::data::session::twophase::probe;
use crate::runtime::Proxy;
use std::sync::Arc;

/// Starts the checks for the proxy's current configuration.
pub fn spawn_after_load(proxy: &Arc<Proxy>) {
    let rt = proxy.runtime();
    tokio::spawn(async move {
        for pool in &rt.pools {
            match probe(pool).await {
                Some(true) => {}
                Some(false) => tracing::warn!(
                    "shard \"{}\" has max_prepared_transactions = 0: transactions that write on it and on another shard will be refused (set max_prepared_transactions > 0 and restart it)",
                    pool.name
                ),
                None => tracing::info!(
                    "shard \"{}\" could not be reached to check two-phase commit; it is asked again when needed",
                    pool.name
                ),
            }
        }
        let c = &rt.config;
        let cluster = crate::control::unique_ids::Cluster::of_runtime(&rt);
        if c.sharding.unique_ids {
            match crate::control::unique_ids::interleave(&cluster).await {
                Ok(changes) => {
                    for ch in changes {
                        tracing::info!("unique ids: {ch}");
                    }
                }
                Err(e) => tracing::warn!(
                    "unique ids: the sequences of sharded tables were not checked: {e}; run FIX SEQUENCES in the admin console once every shard is up"
                ),
            }
        } else {
            let shards = crate::control::unique_ids::survey(&cluster).await;
            for row in crate::control::unique_ids::report(&shards, c.sharding.id_stride) {
                if row[6] != "ok" {
                    tracing::warn!(
                        "unique ids: {}.{} on shard {}: {} (sharding.unique_ids = false)",
                        row[0],
                        row[1],
                        row[2],
                        row[6]
                    );
                }
            }
        }
    });
}
