//! Where a session's reads may go: a shard's replicas or only its primary.
//!
//! A read goes to a replica (`ShardPool::checkout_read`) when its plan is a
//! plain read (`Plan::replica_ok`: no `/* primary */` hint, no `FOR UPDATE`,
//! no writing function), it runs outside a transaction (no BEGIN pending,
//! no backend held), and the session's target is not `primary`. The target
//! starts from the user's `target_session` (else `replicas.target_session`)
//! and `SET shardproxy.target_session = 'primary' | 'prefer-standby'`
//! (answered by the proxy) changes it for the session; `RESET` goes back.

use super::Session;
use crate::data::codec::error::sqlstate;
use crate::data::codec::SqlError;

/// The target a session starts with: the user's, else the proxy's default.
pub(super) fn initial_target_primary(config: &crate::config::Config, user: &str) -> bool {
    let target = config
        .users
        .iter()
        .find(|u| u.name == user)
        .and_then(|u| u.target_session.as_deref())
        .unwrap_or(config.replicas.target_session.as_str());
    target == "primary"
}

impl Session {
    /// Whether the statement about to be routed, with `plan_ok` its plan's
    /// [`crate::data::planner::Plan::replica_ok`], may be read from a replica.
    #[inline]
    pub(super) fn may_read_replica(&self, plan_ok: bool) -> bool {
        plan_ok
            && !self.target_primary
            && self.tx == b'I'
            && self.lease.is_none()
            && self.pending_begin.is_none()
            && self.others.is_empty()
    }

    /// `SET shardproxy.target_session …` / `RESET shardproxy.target_session`
    /// (`lower` the trimmed statement lower-cased), or None for anything else.
    pub(super) fn target_session_command(
        &mut self,
        lower: &str,
    ) -> Option<Result<String, SqlError>> {
        if lower == "reset shardproxy.target_session" {
            self.target_primary = initial_target_primary(&self.rt.config, &self.user);
            return Some(Ok("RESET".into()));
        }
        let rest = lower.strip_prefix("set ")?.trim_start();
        let rest = rest.strip_prefix("session ").unwrap_or(rest).trim_start();
        let value = rest.strip_prefix("shardproxy.target_session")?.trim_start();
        let value = value
            .strip_prefix('=')
            .or_else(|| value.strip_prefix("to "))?
            .trim()
            .trim_matches(['\'', '"']);
        Some(match value {
            "primary" => {
                self.target_primary = true;
                Ok("SET".into())
            }
            "prefer-standby" | "default" => {
                self.target_primary = value == "default"
                    && initial_target_primary(&self.rt.config, &self.user);
                Ok("SET".into())
            }
            other => Err(SqlError::new(
                sqlstate::INVALID_TEXT,
                format!("invalid value for shardproxy.target_session: \"{other}\""),
            )
            .with_hint("Use 'primary' (every statement to the primary) or 'prefer-standby' (reads outside a transaction to a replica).")),
        })
    }
}
