//! What the bench reads from shardproxy's admin console while it runs:
//! per-shard statement counters (`SHOW STATS`, sampled every second, so the
//! per-shard load share is measured over the bench's own seconds) and the
//! rebalancer's moves (`SHOW MOVES`: each change of a move's state is an
//! event on the plot).

use super::driver::describe;
use serde::Serialize;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Statements per shard in one second of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ShardSecond {
    pub t: u64,
    /// `(shard, statements)` in `SHOW STATS` order.
    pub statements: Vec<(String, u64)>,
}

/// A connection to the admin console.
pub struct Admin {
    client: Client,
}

impl Admin {
    pub async fn connect(url: &str) -> Result<Admin, String> {
        let (client, conn) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| format!("--admin-url: {}", describe(&e)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Admin { client })
    }

    /// `(column name → value)` rows of an admin command.
    pub async fn rows(&self, sql: &str) -> Result<Vec<Vec<(String, String)>>, String> {
        let msgs = self
            .client
            .simple_query(sql)
            .await
            .map_err(|e| format!("admin console {sql}: {}", describe(&e)))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(
                    r.columns()
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.name().to_string(), r.get(i).unwrap_or("").to_string()))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    /// Cumulative statements per shard (`SHOW STATS` name, queries).
    pub async fn statements(&self) -> Result<Vec<(String, u64)>, String> {
        let rows = self.rows("SHOW STATS").await?;
        rows.iter()
            .map(|r| {
                let get = |k: &str| {
                    r.iter()
                        .find(|(c, _)| c == k)
                        .map(|(_, v)| v.as_str())
                        .ok_or_else(|| format!("SHOW STATS has no column {k}"))
                };
                Ok((
                    get("name")?.to_string(),
                    get("queries")?
                        .parse()
                        .map_err(|_| "SHOW STATS: queries is not a number".to_string())?,
                ))
            })
            .collect()
    }
}

/// One move as `SHOW MOVES` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveState {
    pub id: String,
    pub state: String,
    /// `kind group source → target`.
    pub what: String,
}

impl Admin {
    /// The moves the rebalancer knows, or `None` when this proxy's console
    /// has no `SHOW MOVES` (a proxy without the rebalancer, or no
    /// `[catalog]`): there are no rebalance events to mark then.
    pub async fn moves(&self) -> Option<Vec<MoveState>> {
        let msgs = self.client.simple_query("SHOW MOVES").await.ok()?;
        Some(
            msgs.into_iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(r) => {
                        let get = |k: &str| r.try_get(k).ok().flatten().unwrap_or("").to_string();
                        Some(MoveState {
                            id: get("id"),
                            state: get("state"),
                            what: format!(
                                "{} {} {} → {}",
                                get("kind"),
                                get("group"),
                                get("source"),
                                get("target")
                            ),
                        })
                    }
                    _ => None,
                })
                .collect(),
        )
    }
}

/// The events between two polls of `SHOW MOVES`: every move new in `now`
/// or whose state changed.
pub fn move_events(before: &[MoveState], now: &[MoveState]) -> Vec<String> {
    now.iter()
        .filter(|m| {
            before
                .iter()
                .find(|b| b.id == m.id)
                .is_none_or(|b| b.state != m.state)
        })
        .map(|m| format!("move {} {}: {}", m.id, m.what, m.state))
        .collect()
}

/// `now - before` per shard (a shard absent before counts from 0).
pub fn delta(before: &[(String, u64)], now: &[(String, u64)]) -> Vec<(String, u64)> {
    now.iter()
        .map(|(name, n)| {
            let b = before
                .iter()
                .find(|(m, _)| m == name)
                .map_or(0, |(_, v)| *v);
            (name.clone(), n.saturating_sub(b))
        })
        .collect()
}

/// Each shard's share of the statements in `per_shard`.
pub fn shares(per_shard: &[(String, u64)]) -> Vec<(String, f64)> {
    let total: u64 = per_shard.iter().map(|(_, n)| n).sum();
    per_shard
        .iter()
        .map(|(name, n)| {
            (
                name.clone(),
                if total == 0 {
                    0.0
                } else {
                    *n as f64 / total as f64
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(id: &str, state: &str) -> MoveState {
        MoveState {
            id: id.into(),
            state: state.into(),
            what: "key bench s1 → s4".into(),
        }
    }

    #[test]
    fn new_moves_and_state_changes_are_events() {
        let before = vec![mv("1", "copying"), mv("2", "done")];
        let now = vec![mv("1", "fencing"), mv("2", "done"), mv("3", "planned")];
        assert_eq!(
            move_events(&before, &now),
            vec![
                "move 1 key bench s1 → s4: fencing".to_string(),
                "move 3 key bench s1 → s4: planned".to_string()
            ]
        );
        assert!(move_events(&now, &now).is_empty());
        let per = vec![("a".to_string(), 10), ("b".to_string(), 5)];
        assert_eq!(
            delta(&[("a".into(), 4)], &per),
            vec![("a".to_string(), 6), ("b".to_string(), 5)]
        );
        assert_eq!(shares(&per)[0].1, 10.0 / 15.0);
    }
}
