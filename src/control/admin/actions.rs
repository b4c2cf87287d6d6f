//! Admin commands that change the running proxy rather than show it.

use super::Reply;
use crate::data::codec::error::sqlstate;
use crate::data::codec::SqlError;
use crate::runtime::{listener, Proxy};
use std::sync::Arc;

/// SQLSTATE 55000: the proxy is not in a state that allows the command.
const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
/// SQLSTATE F0000: the config file is wrong.
const CONFIG_FILE_ERROR: &str = "F0000";

/// `RELOAD`: re-reads the config file. Sessions pick the new configuration up
/// at their next transaction; on any error nothing changes.
pub async fn reload(proxy: &Arc<Proxy>) -> Result<Reply, SqlError> {
    if proxy.runtime().config.source.is_none() {
        return Err(SqlError::new(
            OBJECT_NOT_IN_PREREQUISITE_STATE,
            "the proxy was not started from a config file; nothing to reload",
        ));
    }
    // Reading the file and building TLS acceptors is blocking work.
    let p = proxy.clone();
    match tokio::task::spawn_blocking(move || p.reload()).await {
        Ok(Ok(summary)) => {
            tracing::info!("admin console RELOAD: {summary}");
            crate::control::shard_checks::spawn_after_load(proxy);
            Ok(Reply::Done {
                tag: "RELOAD",
                notice: Some(summary),
            })
        }
        Ok(Err(why)) => {
            tracing::warn!("admin console RELOAD failed, keeping the running config: {why}");
            Err(
                SqlError::new(CONFIG_FILE_ERROR, format!("reload failed: {why}"))
                    .with_detail("The running configuration was kept unchanged.")
                    .with_hint("Fix the config file and run RELOAD again."),
            )
        }
        Err(e) => Err(SqlError::new(
            sqlstate::INTERNAL_ERROR,
            format!("reload did not finish: {e}"),
        )),
    }
}

/// `SHUTDOWN`: starts the same drain as SIGTERM.
pub fn shutdown(proxy: &Proxy) -> Reply {
    tracing::info!("admin console SHUTDOWN: draining");
    listener::begin_shutdown(proxy);
    Reply::Done {
        tag: "SHUTDOWN",
        notice: Some(
            "shardproxy is draining: no new clients; sessions end after their transaction".into(),
        ),
    }
}

/// `SHOW SEQUENCES`: every id sequence of a sharded table on every shard
/// (see [`crate::control::unique_ids`]).
pub async fn show_sequences(rt: &crate::runtime::Runtime) -> super::show::ResultSet {
    use crate::control::unique_ids::{report, survey, Cluster, REPORT_COLUMNS};
    let mut r = super::show::ResultSet::new(REPORT_COLUMNS);
    let shards = survey(&Cluster::of_runtime(rt)).await;
    for row in report(&shards, rt.config.sharding.id_stride) {
        r.push(row);
    }
    r
}

/// `FIX SEQUENCES`: slots for shards without one, interleaved sequences
/// where they collide; the changes come back as a NOTICE.
pub async fn fix_sequences(rt: &crate::runtime::Runtime) -> Result<Reply, SqlError> {
    let cluster = crate::control::unique_ids::Cluster::of_runtime(rt);
    match crate::control::unique_ids::interleave(&cluster).await {
        Ok(changes) => {
            for c in &changes {
                tracing::info!("admin console FIX SEQUENCES: {c}");
            }
            Ok(Reply::Done {
                tag: "FIX SEQUENCES",
                notice: Some(if changes.is_empty() {
                    "every sequence already hands out ids unique across shards".into()
                } else {
                    changes.join("\n")
                }),
            })
        }
        Err(why) => Err(SqlError::new(
            OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("sequences not fixed: {why}"),
        )
        .with_hint("Every shard must be reachable; run FIX SEQUENCES again then.")),
    }
}
