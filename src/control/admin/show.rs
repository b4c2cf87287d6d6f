//! The result sets of the `SHOW` commands, built from the running state. All
//! columns are text (as pgbouncer's console does): psql prints them as they
//! are and drivers read them with `simple_query`.

use super::commands::COMMANDS;
use super::timestamp::rfc3339_utc;
use crate::data::pool::health::format_lsn;
use crate::data::pool::{Role, ServerPool, ShardPool};
use crate::runtime::{Proxy, Runtime};
use std::sync::atomic::Ordering::Relaxed;

/// Rows of text columns (None is NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl ResultSet {
    pub fn new(columns: &[&'static str]) -> ResultSet {
        ResultSet {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Appends a row of non-NULL values.
    pub fn push<I, S>(&mut self, values: I)
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        let row: Vec<Option<String>> = values.into_iter().map(|v| Some(v.to_string())).collect();
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }
}

/// `SHOW HELP`.
pub fn help() -> ResultSet {
    let mut r = ResultSet::new(&["command", "description"]);
    for spec in COMMANDS {
        r.push([spec.syntax(), spec.about.to_string()]);
    }
    r
}

/// `SHOW SHARDS`: one row per server (the primary first, then the
/// replicas in config order).
pub fn shards(rt: &Runtime) -> ResultSet {
    let mut r = ResultSet::new(&[
        "name",
        "address",
        "database",
        "status",
        "in_use",
        "idle",
        "waiting",
        "pool_size",
        "role",
        "state",
        "lag_ms",
        "lsn",
    ]);
    for p in &rt.pools {
        let floor = p.replay_floor();
        for sv in servers_in_order(p) {
            let st = &sv.stats;
            let known = |v: u64| (v != u64::MAX).then(|| v.to_string());
            let role = st.role();
            let lsn = st.lsn.load(Relaxed);
            r.rows.push(vec![
                Some(p.name.clone()),
                Some(sv.endpoint.addr.display()),
                Some(sv.endpoint.addr.database.clone()),
                Some(if st.up.load(Relaxed) { "up" } else { "down" }.to_string()),
                Some(st.in_use.load(Relaxed).to_string()),
                Some(st.idle.load(Relaxed).to_string()),
                Some(st.waiting.load(Relaxed).to_string()),
                Some(p.settings.size.to_string()),
                Some(role.as_str().to_string()),
                Some(sv.state(floor).to_string()),
                if role == Role::Replica {
                    known(st.lag_ms.load(Relaxed))
                } else {
                    None
                },
                (lsn != 0).then(|| format_lsn(lsn)),
            ]);
        }
    }
    r
}

/// A shard's servers, the current primary first.
fn servers_in_order(p: &ShardPool) -> impl Iterator<Item = &ServerPool> {
    let primary = p.primary_index();
    let all = p.servers();
    std::iter::once(&all[primary]).chain(
        all.iter()
            .enumerate()
            .filter(move |(i, _)| *i != primary)
            .map(|(_, s)| s),
    )
}

/// `SHOW POOLS`: one row per server.
pub fn pools(rt: &Runtime) -> ResultSet {
    let mut r = ResultSet::new(&[
        "name",
        "in_use",
        "idle",
        "waiting",
        "size",
        "connects",
        "connect_errors",
        "server",
        "role",
        "checkouts",
    ]);
    for p in &rt.pools {
        for sv in servers_in_order(p) {
            let st = &sv.stats;
            r.push([
                p.name.clone(),
                st.in_use.load(Relaxed).to_string(),
                st.idle.load(Relaxed).to_string(),
                st.waiting.load(Relaxed).to_string(),
                p.settings.size.to_string(),
                st.connects.load(Relaxed).to_string(),
                st.connect_errors.load(Relaxed).to_string(),
                sv.endpoint.addr.display(),
                st.role().as_str().to_string(),
                st.checkouts.load(Relaxed).to_string(),
            ]);
        }
    }
    r
}

/// `SHOW STATS`.
pub fn stats(rt: &Runtime) -> ResultSet {
    let mut r = ResultSet::new(&[
        "name",
        "queries",
        "transactions",
        "errors",
        "bytes_sent",
        "bytes_received",
        "avg_latency_us",
    ]);
    for p in &rt.pools {
        let st = &p.stats;
        r.push([
            p.name.clone(),
            st.queries.load(Relaxed).to_string(),
            st.transactions.load(Relaxed).to_string(),
            st.errors.load(Relaxed).to_string(),
            st.bytes_sent.load(Relaxed).to_string(),
            st.bytes_received.load(Relaxed).to_string(),
            st.avg_latency_us().to_string(),
        ]);
    }
    r
}

/// `SHOW CLIENTS` (admin console sessions included).
pub fn clients(proxy: &Proxy) -> ResultSet {
    let mut r = ResultSet::new(&[
        "id",
        "user",
        "database",
        "application_name",
        "address",
        "state",
        "connected_at",
        "queries",
    ]);
    let text = |m: &std::sync::Mutex<String>| m.lock().map(|s| s.clone()).unwrap_or_default();
    for c in proxy.clients.snapshot() {
        let state = match c.state.load(std::sync::atomic::Ordering::Relaxed) {
            b'I' => "idle",
            b'T' => "in transaction",
            b'E' => "failed transaction",
            b'S' => "startup",
            _ => "unknown",
        };
        r.push([
            c.id.to_string(),
            text(&c.user),
            text(&c.database),
            text(&c.application_name),
            c.peer.map(|p| p.to_string()).unwrap_or_default(),
            state.to_string(),
            rfc3339_utc(c.connected_at),
            c.queries.load(Relaxed).to_string(),
        ]);
    }
    r
}

/// `SHOW VERSION`.
pub fn version() -> ResultSet {
    let mut r = ResultSet::new(&["version"]);
    r.push([concat!("shardproxy ", env!("CARGO_PKG_VERSION"))]);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_command_once() {
        let h = help();
        assert_eq!(h.columns, ["command", "description"]);
        assert_eq!(h.rows.len(), COMMANDS.len());
        let first = h.rows[0][0].as_deref().unwrap();
        assert_eq!(first, "SHOW HELP");
        assert!(h
            .rows
            .iter()
            .any(|r| r[0].as_deref() == Some("RELOAD") && r[1].as_deref().unwrap().len() > 10));
    }

    #[test]
    fn version_names_the_crate_version() {
        let v = version();
        assert_eq!(
            v.rows[0][0].as_deref(),
            Some(format!("shardproxy {}", env!("CARGO_PKG_VERSION")).as_str())
        );
    }
}
